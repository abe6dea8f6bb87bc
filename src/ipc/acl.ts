import { execFileSync } from 'node:child_process';
import { MetanetError } from '../core/errors.js';
import { pathMatches } from '../core/path.js';
import type { PeerCred } from './peercred.js';

export type Operation = 'send' | 'listen';

/**
 * One access rule. A rule matches a peer when its user and group match (names or numeric ids;
 * `*` for anyone; a group matches the peer's primary group or any of its supplementary groups)
 * and the mailbox matches one of its patterns. The first matching rule decides, for every
 * operation: what is not in its `allow` list is denied.
 */
export interface AclRule {
  readonly user?: string | number;
  readonly group?: string | number;
  readonly allow?: readonly Operation[];
  readonly deny?: readonly Operation[];
  readonly mailboxes: readonly string[];
}

/**
 * Access policy of a daemon (docs/ipc.md):
 * - no rules configured: whoever can open the socket (its file mode: owner and group) may do
 *   everything;
 * - rules configured: root and the daemon's own user may do everything; anyone else gets what
 *   the first matching rule says, and is denied when no rule matches.
 */
export class Acl {
  constructor(private readonly rules: readonly AclRule[] | undefined) {}

  /** Whether any rule is configured (without rules, the socket's file mode is the only gate). */
  get active(): boolean {
    return this.rules !== undefined && this.rules.length > 0;
  }

  /** Throws EDENIED naming the rule (or the default) when `cred` may not do `op` on `path`. */
  check(op: Operation, path: string, cred: PeerCred | undefined): void {
    const why = this.refusal(op, path, cred);
    if (why !== undefined) throw new MetanetError('EDENIED', why);
  }

  /** Whether `cred` may do `op` on `path`. */
  allows(op: Operation, path: string, cred: PeerCred | undefined): boolean {
    return this.refusal(op, path, cred) === undefined;
  }

  /** Why `cred` may not do `op` on `path`, or undefined when it may. */
  private refusal(op: Operation, path: string, cred: PeerCred | undefined): string | undefined {
    if (this.rules === undefined || this.rules.length === 0) return undefined;
    if (cred === undefined) return `${op} ${path}: the peer's credentials are unknown`;
    if (cred.uid === 0 || cred.uid === process.getuid?.()) return undefined;
    for (let i = 0; i < this.rules.length; i++) {
      const r = this.rules[i]!;
      if (!matchesPeer(r, cred) || !r.mailboxes.some((p) => pathMatches(p, path))) continue;
      if (r.deny?.includes(op) || !r.allow?.includes(op))
        return `${op} ${path} denied to uid ${cred.uid} by rule ${i} (${describe(r)})`;
      return undefined;
    }
    return `${op} ${path} denied to uid ${cred.uid}: no rule allows it (default deny)`;
  }
}

function matchesPeer(r: AclRule, c: PeerCred): boolean {
  if (r.user !== undefined && r.user !== '*' && resolveId(r.user, 'passwd') !== c.uid) return false;
  if (r.group !== undefined && r.group !== '*') {
    const g = resolveId(r.group, 'group');
    if (g === undefined || (g !== c.gid && !c.groups?.includes(g))) return false;
  }
  return true;
}

const ids = new Map<string, number | undefined>();

/** A user or group name to its id (via getent, cached); numbers pass through. */
function resolveId(v: string | number, db: 'passwd' | 'group'): number | undefined {
  if (typeof v === 'number') return v;
  if (/^\d+$/.test(v)) return Number(v);
  const key = `${db}:${v}`;
  if (!ids.has(key)) {
    let id: number | undefined;
    try {
      id = Number(execFileSync('getent', [db, v], { encoding: 'utf8' }).split(':')[2]);
    } catch {
      id = undefined;
    }
    ids.set(key, id);
  }
  return ids.get(key);
}

function describe(r: AclRule): string {
  const parts = [
    r.user !== undefined ? `user ${r.user}` : '',
    r.group !== undefined ? `group ${r.group}` : '',
    r.user === undefined && r.group === undefined ? 'anyone' : '',
    r.allow ? `allow ${r.allow.join(',')}` : '',
    r.deny ? `deny ${r.deny.join(',')}` : '',
    `on ${r.mailboxes.join(' ')}`,
  ];
  return parts.filter(Boolean).join(' ');
}

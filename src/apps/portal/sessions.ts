import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { MetanetError } from '../../core/errors.js';

/** One logged-in client. Times are epoch milliseconds. */
export interface Session {
  readonly ip: string;
  readonly mac: string;
  readonly since: number;
  readonly expires: number;
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/**
 * The portal's sessions, one per client address, kept in a JSON file written atomically
 * (`<file>.tmp`, then rename; mode 0600) on every change, so they survive a restart. Expired
 * sessions are dropped on load, on every read and on every save: the firewall element's timeout
 * (the same session length) is what cuts the traffic; this record agrees with it.
 */
export class Sessions {
  private readonly map = new Map<string, Session>();

  constructor(
    private readonly file?: string,
    private readonly now: () => number = Date.now,
  ) {
    if (file) for (const s of loadSessions(file)) if (s.expires > this.now()) this.map.set(s.ip, s);
  }

  get(ip: string): Session | undefined {
    const s = this.map.get(ip);
    if (s && s.expires <= this.now()) {
      this.map.delete(ip);
      this.save();
      return undefined;
    }
    return s;
  }

  add(ip: string, mac: string, seconds: number): Session {
    const since = this.now();
    const s = { ip, mac, since, expires: since + seconds * 1000 };
    this.map.set(ip, s);
    this.save();
    return s;
  }

  remove(ip: string): boolean {
    const had = this.map.delete(ip);
    if (had) this.save();
    return had;
  }

  /** Every live session; drops the expired ones (and saves when it did). */
  list(): Session[] {
    const now = this.now();
    let dropped = false;
    for (const [ip, s] of this.map)
      if (s.expires <= now) {
        this.map.delete(ip);
        dropped = true;
      }
    if (dropped) this.save();
    return [...this.map.values()];
  }

  private save(): void {
    if (!this.file) return;
    const now = this.now();
    const sessions = [...this.map.values()].filter((s) => s.expires > now);
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, `${JSON.stringify({ version: 1, sessions })}\n`, { mode: 0o600 });
    renameSync(tmp, this.file);
  }
}

/** Read a state file: missing is empty; anything malformed is an ECONFIG error naming the entry. */
export function loadSessions(file: string): Session[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new MetanetError('ECONFIG', `portal state ${file}: ${(e as Error).message}`);
  }
  return parseSessions(text, file);
}

export function parseSessions(text: string, where = 'portal state'): Session[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new MetanetError('ECONFIG', `${where}: not JSON: ${(e as Error).message}`);
  }
  const d = doc as { version?: unknown; sessions?: unknown };
  if (typeof doc !== 'object' || doc === null || d.version !== 1 || !Array.isArray(d.sessions))
    throw new MetanetError('ECONFIG', `${where}: expected {"version":1,"sessions":[…]}`);
  return d.sessions.map((s: unknown, i) => {
    const x = s as Record<string, unknown>;
    const bad = (what: string): never => {
      throw new MetanetError('ECONFIG', `${where}: sessions[${i}]: ${what}`);
    };
    if (typeof s !== 'object' || s === null) return bad('not an object');
    if (typeof x.ip !== 'string' || !isIPv4(x.ip)) return bad('ip is not an IPv4 address');
    if (typeof x.mac !== 'string' || !MAC_RE.test(x.mac)) return bad('mac is not xx:xx:xx:xx:xx:xx');
    for (const k of ['since', 'expires'] as const)
      if (typeof x[k] !== 'number' || !Number.isSafeInteger(x[k]) || (x[k] as number) < 0)
        bad(`${k} is not epoch milliseconds`);
    return { ip: x.ip, mac: x.mac, since: x.since as number, expires: x.expires as number };
  });
}

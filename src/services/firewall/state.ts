import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { MetanetError } from '../../core/errors.js';
import { canonicalIp, ipv4, mac, port, timeout } from './addr.js';
import type { SavedClient, SavedGarden, SavedSmtp } from './ruleset.js';

/**
 * The state file: what the daemon has allowed, so a restart can rebuild the table. Written on
 * every change to `<file>.tmp` and renamed over the file (atomic on one filesystem). Format:
 *
 *   {"version":1,"clients":[{"ip","mac","timeout","expiresAt"}],"smtp":[{"client","server","port","timeout","expiresAt"}],
 *    "garden":[{"ip","timeout","expiresAt"}],"trusted":["mac"],"blocked":["mac"]}
 *
 * `timeout` in seconds, `expiresAt` in epoch milliseconds. `garden`, `trusted` and `blocked` may be
 * absent (files written before they existed).
 */
export interface FirewallState {
  clients: SavedClient[];
  smtp: SavedSmtp[];
  garden: SavedGarden[];
  trusted: string[];
  blocked: string[];
}

export function emptyState(): FirewallState {
  return { clients: [], smtp: [], garden: [], trusted: [], blocked: [] };
}

/** Parse a state file's text; throws ECONFIG naming the first bad entry. Expired entries are dropped. */
export function parseState(text: string, now = Date.now()): FirewallState {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new MetanetError('ECONFIG', `firewall state: not JSON: ${(e as Error).message}`);
  }
  if (!isObject(raw) || raw.version !== 1)
    throw new MetanetError('ECONFIG', 'firewall state: expected an object with "version": 1');
  const clients = list(raw.clients, 'clients').map((c, i): SavedClient => {
    const where = `firewall state clients[${i}]`;
    const ip = canonicalIp(str(c.ip, `${where}.ip`), `${where}.ip`);
    return {
      ip,
      mac: mac(str(c.mac, `${where}.mac`), `${where}.mac`),
      timeout: timeout(num(c.timeout, `${where}.timeout`), `${where}.timeout`),
      expiresAt: num(c.expiresAt, `${where}.expiresAt`),
    };
  });
  const smtp = list(raw.smtp, 'smtp').map((s, i): SavedSmtp => {
    const where = `firewall state smtp[${i}]`;
    return {
      client: ipv4(str(s.client, `${where}.client`), `${where}.client`),
      server: ipv4(str(s.server, `${where}.server`), `${where}.server`),
      port: port(num(s.port, `${where}.port`), `${where}.port`),
      timeout: timeout(num(s.timeout, `${where}.timeout`), `${where}.timeout`),
      expiresAt: num(s.expiresAt, `${where}.expiresAt`),
    };
  });
  const garden = list(raw.garden, 'garden').map((g, i): SavedGarden => {
    const where = `firewall state garden[${i}]`;
    return {
      ip: canonicalIp(str(g.ip, `${where}.ip`), `${where}.ip`),
      timeout: timeout(num(g.timeout, `${where}.timeout`), `${where}.timeout`),
      expiresAt: num(g.expiresAt, `${where}.expiresAt`),
    };
  });
  const macs = (what: 'trusted' | 'blocked'): string[] => {
    const v = raw[what];
    if (v === undefined) return [];
    if (!Array.isArray(v)) throw new MetanetError('ECONFIG', `firewall state: "${what}" must be an array`);
    return [
      ...new Set(
        v.map((x, i) => mac(str(x, `firewall state ${what}[${i}]`), `firewall state ${what}[${i}]`)),
      ),
    ];
  };
  return prune({ clients, smtp, garden, trusted: macs('trusted'), blocked: macs('blocked') }, now);
}

/** Drop what has expired. */
export function prune(s: FirewallState, now = Date.now()): FirewallState {
  return {
    clients: s.clients.filter((c) => c.expiresAt > now),
    smtp: s.smtp.filter((x) => x.expiresAt > now),
    garden: s.garden.filter((g) => g.expiresAt > now),
    trusted: s.trusted,
    blocked: s.blocked,
  };
}

/** Read the file; a missing file is an empty state, a broken one an ECONFIG error. */
export function loadState(file: string, now = Date.now()): FirewallState {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return emptyState();
    throw new MetanetError('ECONFIG', `firewall state ${file}: ${(e as Error).message}`);
  }
  try {
    return parseState(text, now);
  } catch (e) {
    throw new MetanetError('ECONFIG', `${file}: ${(e as Error).message}`);
  }
}

export function saveState(file: string, s: FirewallState): void {
  const tmp = `${file}.tmp`;
  const doc = {
    version: 1,
    clients: s.clients,
    smtp: s.smtp,
    garden: s.garden,
    trusted: s.trusted,
    blocked: s.blocked,
  };
  writeFileSync(tmp, `${JSON.stringify(doc)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function list(v: unknown, what: string): Record<string, unknown>[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new MetanetError('ECONFIG', `firewall state: "${what}" must be an array`);
  return v.map((x, i) => {
    if (!isObject(x)) throw new MetanetError('ECONFIG', `firewall state ${what}[${i}]: not an object`);
    return x;
  });
}

function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new MetanetError('ECONFIG', `${what}: expected a string`);
  return v;
}

function num(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new MetanetError('ECONFIG', `${what}: expected a number`);
  return v;
}

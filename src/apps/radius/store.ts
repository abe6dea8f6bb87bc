import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { MetanetError } from '../../core/errors.js';

/**
 * A small JSON state file, rewritten whole and atomically (`<file>.tmp`, rename; mode 0600) on
 * every change, like the portal's sessions. Without a path it is memory only.
 */
export class JsonFile<T> {
  constructor(
    private readonly file: string | undefined,
    private readonly what: string,
  ) {}

  /** The saved value, `empty` when there is no file; a broken file is ECONFIG naming it. */
  load(empty: T, check: (raw: unknown) => T): T {
    if (!this.file) return empty;
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return empty;
      throw e;
    }
    try {
      return check(JSON.parse(text));
    } catch (e) {
      throw new MetanetError('ECONFIG', `${this.file}: not a valid ${this.what}: ${(e as Error).message}`);
    }
  }

  save(value: T): void {
    if (!this.file) return;
    mkdirSync(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(value)}\n`, { mode: 0o600 });
    renameSync(tmp, this.file);
  }
}

/** One accounted session: what RADIUS accounting needs to go on after a restart. */
export interface AcctSession {
  readonly ip: string;
  readonly mac: string;
  /** Acct-Session-Id: kept across restarts of this app and of the portal. */
  readonly sessionId: string;
  readonly username: string;
  /** Login time, epoch seconds (the portal's `since`). */
  readonly since: number;
  /** Seconds between Interim-Updates; 0: none. */
  readonly interval: number;
  /** Class attributes of the Access-Accept, hex, echoed in accounting (RFC 2865 §5.25). */
  readonly classes: readonly string[];
  /** Acct-Authentic: 1 RADIUS, 2 Local (fail-open, or not authenticated by this app). */
  readonly authentic: number;
  /** Last Interim-Update (or Start), epoch ms. */
  lastUpdate: number;
  /** Counters as last sampled. */
  bytesUp: number;
  bytesDown: number;
  packetsUp: number | undefined;
  packetsDown: number | undefined;
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function checkSession(raw: unknown, i: number): AcctSession {
  const o = raw as Record<string, unknown>;
  const ok =
    typeof raw === 'object' &&
    raw !== null &&
    isStr(o.ip) &&
    isStr(o.mac) &&
    isStr(o.sessionId) &&
    isStr(o.username) &&
    isNum(o.since) &&
    isNum(o.interval) &&
    Array.isArray(o.classes) &&
    o.classes.every(isStr) &&
    isNum(o.authentic) &&
    isNum(o.lastUpdate) &&
    isNum(o.bytesUp) &&
    isNum(o.bytesDown);
  if (!ok) throw new Error(`sessions[${i}] is not a session`);
  return {
    ...(o as unknown as AcctSession),
    packetsUp: isNum(o.packetsUp) ? o.packetsUp : undefined,
    packetsDown: isNum(o.packetsDown) ? o.packetsDown : undefined,
  };
}

/** The accounted sessions by address, on disk (`<stateDir>/radius.sessions.json`). */
export class SessionStore {
  private readonly byIp = new Map<string, AcctSession>();
  private readonly file: JsonFile<{ version: 1; sessions: AcctSession[] }>;

  constructor(path: string | undefined) {
    this.file = new JsonFile(path, 'RADIUS session file');
    const saved = this.file.load({ version: 1, sessions: [] }, (raw) => {
      const o = raw as { version?: unknown; sessions?: unknown };
      if (o?.version !== 1 || !Array.isArray(o.sessions)) throw new Error('no version 1 sessions');
      return { version: 1, sessions: o.sessions.map(checkSession) };
    });
    for (const s of saved.sessions) this.byIp.set(s.ip, s);
  }

  get(ip: string): AcctSession | undefined {
    return this.byIp.get(ip);
  }
  all(): AcctSession[] {
    return [...this.byIp.values()];
  }
  get size(): number {
    return this.byIp.size;
  }
  set(s: AcctSession): void {
    this.byIp.set(s.ip, s);
    this.save();
  }
  delete(ip: string): void {
    if (this.byIp.delete(ip)) this.save();
  }
  save(): void {
    this.file.save({ version: 1, sessions: this.all() });
  }
}

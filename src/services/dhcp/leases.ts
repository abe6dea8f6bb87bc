import { closeSync, fdatasync, fsyncSync, openSync, writeSync } from 'node:fs';
import { type FileHandle, mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../../core/log.js';

/**
 * The lease store: what the server has handed out, kept in memory and in one file that survives
 * `kill -9`. The file is a journal of JSON lines (one per change, appended and fdatasync'd before
 * the change is acknowledged: the server sends its ACK only after `commit()` resolves). On open it
 * is replayed and compacted; compaction writes the current state to `FILE.tmp`, fsyncs it, renames
 * it over FILE and fsyncs the directory, so a crash at any point leaves either the old or the new
 * file whole. A torn last line (a crash mid-append) is ignored with a warning: its change was never
 * acknowledged. Format: docs/services/dhcp.md.
 */

export interface Lease {
  readonly mac: string;
  readonly ip: string;
  /** Milliseconds since the epoch. For a free record: when it became free. */
  readonly expires: number;
  readonly hostname?: string;
  /** `bound`: the client holds it. `free`: released or expired, remembered so the client gets it back. */
  readonly state: 'bound' | 'free';
}

export type FreeReason = 'release' | 'expired' | 'decline';

export type JournalLine =
  | { op: 'header'; version: 1 }
  | { op: 'commit'; mac: string; ip: string; expires: number; hostname?: string }
  | { op: 'free'; mac: string; ip: string; at: number; reason: FreeReason }
  | { op: 'decline'; ip: string; until: number };

/**
 * fdatasyncs in flight at once. One: each sync costs the process a wake-up of a libuv thread, and
 * on a busy machine the woken thread takes the CPU from the event loop (docs/services/dhcp.md,
 * Performance). An ACK may wait for the end of the running sync before its own.
 */
const MAX_SYNCS = 1;

export interface LeaseStoreOptions {
  readonly log?: Logger;
  readonly now?: () => number;
}

export class LeaseStore {
  private readonly byIp = new Map<string, Lease>();
  private readonly ipOfMac = new Map<string, string>();
  private readonly declined = new Map<string, number>();
  private fh: FileHandle | undefined;
  private pending: { line: string; done: (e?: Error) => void }[] = [];
  private lock: Promise<void> = Promise.resolve();
  private flushQueued = false;
  /** fdatasyncs running now (each covers every line written before it started). */
  private syncing = 0;
  /** Compaction or close owns the file: lines wait in `pending`. */
  private paused = false;
  private idleWaiters: (() => void)[] = [];
  /** A write failed, maybe part-way: the next one starts with a newline so a fragment never joins a good line. */
  private torn = false;
  private closed = false;
  /** Lines appended since the last compaction. */
  journalLines = 0;
  private readonly now: () => number;
  private readonly log: Logger | undefined;

  private constructor(
    readonly file: string,
    opts: LeaseStoreOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.log = opts.log;
  }

  /** Open (creating if absent), replay, compact. */
  static async open(file: string, opts: LeaseStoreOptions = {}): Promise<LeaseStore> {
    const s = new LeaseStore(file, opts);
    await mkdir(dirname(file), { recursive: true });
    let text = '';
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    s.replay(text);
    await s.compact();
    return s;
  }

  private replay(text: string): void {
    if (text === '') return;
    const lines = text.split('\n');
    const tail = lines.pop() ?? '';
    if (tail !== '')
      this.log?.log('warn', 'lease journal: ignoring a torn last line (a crash mid-write)', {
        file: this.file,
        line: lines.length + 1,
        text: tail.slice(0, 200),
      });
    lines.forEach((l, i) => {
      if (l === '') return;
      let j: JournalLine;
      try {
        j = JSON.parse(l) as JournalLine;
      } catch {
        this.log?.log('warn', 'lease journal: ignoring a line that is not JSON', {
          file: this.file,
          line: i + 1,
        });
        return;
      }
      if (!this.apply(j))
        this.log?.log('warn', 'lease journal: ignoring an unknown or malformed entry', {
          file: this.file,
          line: i + 1,
        });
    });
  }

  /** Apply one journal entry to memory; false if it is not a valid entry. */
  private apply(j: JournalLine): boolean {
    if (typeof j !== 'object' || j === null) return false;
    switch (j.op) {
      case 'header':
        return true;
      case 'commit': {
        if (typeof j.mac !== 'string' || typeof j.ip !== 'string' || typeof j.expires !== 'number')
          return false;
        const oldIp = this.ipOfMac.get(j.mac);
        if (oldIp !== undefined && oldIp !== j.ip) {
          const old = this.byIp.get(oldIp);
          if (old?.mac === j.mac) this.byIp.delete(oldIp);
        }
        const prev = this.byIp.get(j.ip);
        if (prev && prev.mac !== j.mac && this.ipOfMac.get(prev.mac) === j.ip) this.ipOfMac.delete(prev.mac);
        const lease: Lease = { mac: j.mac, ip: j.ip, expires: j.expires, state: 'bound' };
        this.byIp.set(j.ip, j.hostname === undefined ? lease : { ...lease, hostname: j.hostname });
        this.ipOfMac.set(j.mac, j.ip);
        this.declined.delete(j.ip);
        return true;
      }
      case 'free': {
        if (typeof j.mac !== 'string' || typeof j.ip !== 'string' || typeof j.at !== 'number') return false;
        const l = this.byIp.get(j.ip);
        if (l && l.mac === j.mac) this.byIp.set(j.ip, { ...l, state: 'free', expires: j.at });
        return true;
      }
      case 'decline': {
        if (typeof j.ip !== 'string' || typeof j.until !== 'number') return false;
        const l = this.byIp.get(j.ip);
        if (l) {
          this.byIp.delete(j.ip);
          if (this.ipOfMac.get(l.mac) === j.ip) this.ipOfMac.delete(l.mac);
        }
        this.declined.set(j.ip, j.until);
        return true;
      }
      default:
        return false;
    }
  }

  // ---- reading --------------------------------------------------------------------------

  /** The record (bound or free) for an address. */
  get(ip: string): Lease | undefined {
    return this.byIp.get(ip);
  }

  /** The client's current or last record. */
  ofMac(mac: string): Lease | undefined {
    const ip = this.ipOfMac.get(mac);
    return ip === undefined ? undefined : this.byIp.get(ip);
  }

  /** True if `ip` is bound to a client other than `mac` and not expired. */
  heldByOther(ip: string, mac: string, now = this.now()): boolean {
    const l = this.byIp.get(ip);
    return l !== undefined && l.mac !== mac && l.state === 'bound' && l.expires > now;
  }

  /** The time until which a declined address is out of use (0 if it is not). */
  declinedUntil(ip: string, now = this.now()): number {
    const u = this.declined.get(ip);
    return u !== undefined && u > now ? u : 0;
  }

  /** Every record, bound and free. */
  all(): Lease[] {
    return [...this.byIp.values()];
  }

  /** Bound, unexpired leases. */
  active(now = this.now()): Lease[] {
    return this.all().filter((l) => l.state === 'bound' && l.expires > now);
  }

  // ---- changing (each resolves once the change is on disk) -------------------------------

  /** Bind `ip` to `mac` until `expires`. Refuses (throws) an address bound to another client. */
  commit(lease: { mac: string; ip: string; expires: number; hostname?: string }): Promise<void> {
    if (this.heldByOther(lease.ip, lease.mac))
      return Promise.reject(
        new Error(`lease store: ${lease.ip} is bound to ${this.byIp.get(lease.ip)?.mac}, not ${lease.mac}`),
      );
    const j: JournalLine = { op: 'commit', mac: lease.mac, ip: lease.ip, expires: lease.expires };
    if (lease.hostname !== undefined) j.hostname = lease.hostname;
    return this.change(j);
  }

  /** The client gave the address back (or it expired). No-op unless it is bound to that client. */
  free(mac: string, ip: string, reason: FreeReason): Promise<boolean> {
    const l = this.byIp.get(ip);
    if (!l || l.mac !== mac || l.state !== 'bound') return Promise.resolve(false);
    return this.change({ op: 'free', mac, ip, at: this.now(), reason }).then(() => true);
  }

  /** Keep `ip` out of use until `until` (a client found it in use: DHCPDECLINE). */
  decline(ip: string, until: number): Promise<void> {
    return this.change({ op: 'decline', ip, until });
  }

  /** Move bound leases past their expiry to free; returns them (as they were). */
  async expire(now = this.now()): Promise<Lease[]> {
    const gone = this.all().filter((l) => l.state === 'bound' && l.expires <= now);
    await Promise.all(
      gone.map((l) => this.change({ op: 'free', mac: l.mac, ip: l.ip, at: l.expires, reason: 'expired' })),
    );
    for (const [ip, until] of this.declined) if (until <= now) this.declined.delete(ip);
    return gone;
  }

  private change(j: JournalLine): Promise<void> {
    if (this.closed) return Promise.reject(new Error('lease store is closed'));
    this.apply(j);
    return new Promise((resolve, reject) => {
      this.pending.push({ line: `${JSON.stringify(j)}\n`, done: (e) => (e ? reject(e) : resolve()) });
      this.kick();
    });
  }

  /**
   * Group commit: the lines queued in this turn of the loop are written (one write to the page
   * cache, synchronous: ~10 us) and one fdatasync covers them all. While MAX_SYNCS fdatasyncs run,
   * what arrives meanwhile waits and goes out as one batch when one returns (the kernel makes each
   * sync cover everything written before it).
   */
  private kick(): void {
    if (this.flushQueued || this.paused || this.syncing >= MAX_SYNCS || this.pending.length === 0) return;
    this.flushQueued = true;
    queueMicrotask(this.flush);
  }

  private readonly flush = (): void => {
    this.flushQueued = false;
    if (this.paused || this.syncing >= MAX_SYNCS || this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    const fd = this.fh?.fd;
    const failed = (e: Error): void => {
      this.log?.log('error', 'lease journal write failed', { file: this.file, error: e });
      for (const b of batch) b.done(e);
    };
    try {
      if (fd === undefined) throw new Error('lease store is not open');
      let text = this.torn ? `\n${batch[0]!.line}` : batch[0]!.line;
      for (let i = 1; i < batch.length; i++) text += batch[i]!.line;
      const buf = Buffer.from(text);
      for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
      this.torn = false;
    } catch (e) {
      this.torn = true;
      failed(e as Error);
      this.settled();
      return;
    }
    this.syncing++;
    fdatasync(fd, (e) => {
      this.syncing--;
      if (e) failed(e);
      else {
        this.journalLines += batch.length;
        for (const b of batch) b.done();
      }
      this.settled();
      this.kick();
    });
  };

  /** Wake those waiting for every queued line to be on disk, if that is now. */
  private settled(): void {
    if (this.syncing === 0 && (this.pending.length === 0 || this.paused) && this.idleWaiters.length)
      for (const f of this.idleWaiters.splice(0)) f();
  }

  /** Resolves when no sync runs and (unless paused) every queued line is on disk. */
  private idle(): Promise<void> {
    return new Promise((resolve) => {
      this.idleWaiters.push(resolve);
      this.kick();
      this.settled();
    });
  }

  private exclusive(fn: () => Promise<void>): Promise<void> {
    const next = this.lock.then(fn);
    this.lock = next.catch(() => {});
    return next;
  }

  /** Compact: wait for running syncs, then rewrite the file as the current state. */
  compact(): Promise<void> {
    return this.exclusive(async () => {
      this.paused = true;
      try {
        await this.idle();
        await this.rewrite();
      } finally {
        this.paused = false;
        this.kick();
      }
    });
  }

  /** Rewrite the file as the current state (atomic: temp file, fsync, rename, fsync dir). */
  private async rewrite(): Promise<void> {
    const now = this.now();
    const lines: JournalLine[] = [{ op: 'header', version: 1 }];
    for (const l of this.byIp.values()) {
      const c: JournalLine = { op: 'commit', mac: l.mac, ip: l.ip, expires: l.expires };
      if (l.hostname !== undefined) c.hostname = l.hostname;
      lines.push(c);
      if (l.state === 'free')
        lines.push({ op: 'free', mac: l.mac, ip: l.ip, at: l.expires, reason: 'release' });
    }
    for (const [ip, until] of this.declined) if (until > now) lines.push({ op: 'decline', ip, until });
    const tmp = `${this.file}.tmp`;
    const t = await open(tmp, 'w', 0o640);
    try {
      await t.write(lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
      await t.sync();
    } finally {
      await t.close();
    }
    await this.fh?.close();
    this.fh = undefined;
    await rename(tmp, this.file);
    const d = openSync(dirname(this.file), 'r');
    try {
      fsyncSync(d);
    } finally {
      closeSync(d);
    }
    this.fh = await open(this.file, 'a', 0o640);
    this.journalLines = 0;
    this.torn = false;
  }

  /** Finish pending writes and close the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.exclusive(async () => {
      await this.idle(); // every queued change written and synced
      await this.fh?.close();
      this.fh = undefined;
    });
  }
}

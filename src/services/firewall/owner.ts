import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { MetanetError } from '../../core/errors.js';

/**
 * One firewall table, one owner. The service writes who installed the table into the table's
 * comment (`metanet owner pid=… start=… daemon=… name=…`); a second installer reads it first and
 * refuses to rebuild a table whose owner still runs and holds it (rebuilding drops every element:
 * every logged-in guest). The table's `owner` set holds the owner's pid while its firewall is open
 * (flushed at close). A dead owner's table (the process is gone, or its pid was reused: the start
 * time differs) or a released one is taken over: a restarted portal must get its table back.
 */
export interface Owner {
  readonly pid: number;
  /** The process's start time (field 22 of /proc/<pid>/stat, clock ticks since boot): tells a reused pid apart. */
  readonly start: number;
  /** The bus (daemon) name of the installer. */
  readonly daemon: string;
  /** The service's mailbox prefix. */
  readonly name: string;
}

/**
 * Start time of a running process from /proc: a number; `'dead'` when there is no such process or
 * it is a zombie; undefined when /proc cannot tell (not readable).
 */
export function processState(pid: number): number | 'dead' | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const state = fields[0];
    if (state === 'Z' || state === 'X') return 'dead';
    const start = Number(fields[19]);
    return Number.isSafeInteger(start) ? start : undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'dead' : undefined;
  }
}

/** Start time of a running process (undefined when it is not running or /proc cannot tell). */
export function processStart(pid: number): number | undefined {
  const s = processState(pid);
  return typeof s === 'number' ? s : undefined;
}

/** This process as an owner. */
export function self(daemon: string, name: string): Owner {
  return { pid: process.pid, start: processStart(process.pid) ?? 0, daemon, name };
}

const SAFE = /[^A-Za-z0-9._/:@-]/g;

/** The table comment for an owner (only characters that need no quoting in nft). */
export function ownerComment(o: Owner): string {
  const clean = (s: string): string => s.replace(SAFE, '_').slice(0, 40);
  return `metanet owner pid=${o.pid} start=${o.start} daemon=${clean(o.daemon)} name=${clean(o.name)}`;
}

/** The owner written in `nft -t list table …` output, if any. */
export function parseOwner(listing: string): Owner | undefined {
  const m = /comment "metanet owner pid=(\d+) start=(\d+) daemon=(\S*) name=(\S*)"/.exec(listing);
  if (!m) return undefined;
  return { pid: Number(m[1]), start: Number(m[2]), daemon: m[3]!, name: m[4]! };
}

/** Whether the owner still runs: its pid exists with the same start time. */
export function ownerAlive(o: Owner): boolean {
  const start = processState(o.pid);
  if (start === 'dead') return false;
  if (start !== undefined) return o.start === 0 || start === o.start;
  // No /proc entry we can read: ask the kernel (EPERM = it exists, not ours).
  try {
    process.kill(o.pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The owner of `inet <table>` as nft has it: undefined when the table does not exist or carries no
 * owner (made by an older version, or by hand). `nft -t` leaves the sets' elements out.
 */
export function readOwner(nft: readonly string[], table: string): Promise<Owner | undefined> {
  const [cmd = 'nft', ...pre] = nft;
  return new Promise((resolve, reject) => {
    execFile(cmd, [...pre, '-t', 'list', 'table', 'inet', table], { timeout: 10_000 }, (err, out, stderr) => {
      if (!err) return resolve(parseOwner(out));
      if (/No such file or directory/.test(stderr)) return resolve(undefined);
      reject(
        new MetanetError(
          'ECONFIG',
          `firewall: cannot read table inet ${table}: ${stderr.trim() || err.message}`,
        ),
      );
    });
  });
}

/**
 * Whether the owner still holds the table: its pid is in the table's `owner` set (a firewall that
 * closes flushes it). A table without the set (or an unreadable one) counts as held.
 */
export function ownerHolds(nft: readonly string[], table: string, pid: number): Promise<boolean> {
  const [cmd = 'nft', ...pre] = nft;
  return new Promise((resolve) => {
    execFile(cmd, [...pre, '-j', 'list', 'set', 'inet', table, 'owner'], { timeout: 10_000 }, (err, out) => {
      if (err) return resolve(true);
      try {
        const doc = JSON.parse(out) as { nftables?: { set?: { elem?: unknown[] } }[] };
        const elem = doc.nftables?.find((x) => x.set)?.set?.elem ?? [];
        resolve(elem.includes(pid));
      } catch {
        resolve(true);
      }
    });
  });
}

/** Firewall services alive in this process, by nft command and table: a second one here is refused too. */
const live = new Map<string, Owner>();

export function liveKey(nft: readonly string[], table: string): string {
  return `${nft.join('\0')}\0inet ${table}`;
}

/**
 * Refuse to install when `inet <table>` belongs to a running owner other than this process (or to
 * a firewall still open in this process): an `EEXIST` error naming the owner. Otherwise claim it.
 */
export async function claim(nft: readonly string[], table: string, me: Owner): Promise<() => void> {
  const key = liveKey(nft, table);
  const here = live.get(key);
  if (here) throw taken(table, here);
  const current = await readOwner(nft, table);
  if (current && current.pid !== me.pid && ownerAlive(current) && (await ownerHolds(nft, table, current.pid)))
    throw taken(table, current);
  if (live.has(key)) throw taken(table, live.get(key)!); // claimed meanwhile (same process)
  live.set(key, me);
  return () => {
    if (live.get(key) === me) live.delete(key);
  };
}

function taken(table: string, o: Owner): MetanetError {
  return new MetanetError(
    'EEXIST',
    `firewall: table inet ${table} belongs to daemon "${o.daemon}" (pid ${o.pid}, firewall ${o.name}), which is ` +
      `running: installing it again would rebuild it and drop every logged-in client. Use that firewall's ` +
      `mailboxes (${o.daemon}:${o.name}/…), or another table name`,
  );
}

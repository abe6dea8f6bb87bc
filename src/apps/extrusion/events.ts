import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { MetanetError } from '../../core/errors.js';
import { type ConnEvent, ip4 } from './detectors.js';

/**
 * Where the detectors' events come from: the kernel's conntrack NEW events, read by one
 * long-lived `conntrack -E -e NEW -f ipv4 -s <subnet>` per watched subnet (docs/apps/extrusion.md,
 * "Why conntrack events"). The kernel sends only NEW events to the socket (a multicast group per
 * event type) and the source filter is a BPF filter on that socket, so flows of other hosts cost
 * the reader nothing. conntrack prints one line per event and flushes it: the default text format,
 * ~170 bytes (XML is ~4× that for the same fields).
 */

/** Longest line taken; longer ones (never seen from conntrack) are dropped. */
const MAX_LINE = 4096;

/**
 * One line of `conntrack -E` output → the event, or undefined when it is not a NEW flow with an
 * IPv4/IPv6 source and destination. Takes the default format, `-o extended` (`ipv4 2` after the
 * event type), and `-o timestamp` (`[secs.usecs]` first); only the original direction (the first
 * `src=`…`dport=` before the reply tuple) counts. Never throws.
 */
export function parseConntrackLine(line: string): ConnEvent | undefined {
  if (typeof line !== 'string' || line.length > MAX_LINE) return undefined;
  const at = line.indexOf('[NEW]');
  if (at < 0) return undefined;
  const w = line
    .slice(at + 5)
    .trim()
    .split(/\s+/);
  let k = 0;
  if (w[0] === 'ipv4' || w[0] === 'ipv6') {
    if (!/^\d{1,2}$/.test(w[1] ?? '')) return undefined;
    k = 2;
  }
  const proto = w[k];
  const protonum = Number(w[k + 1]);
  if (proto === undefined || !/^[a-z][a-z0-9-]*$/.test(proto)) return undefined;
  if (!Number.isInteger(protonum) || protonum < 0 || protonum > 255 || !/^\d+$/.test(w[k + 1]!))
    return undefined;
  let src: string | undefined;
  let dst: string | undefined;
  let dport: number | undefined;
  for (let i = k + 2; i < w.length; i++) {
    const x = w[i]!;
    if (x.startsWith('src=')) {
      if (src !== undefined) break; // the reply direction begins
      src = x.slice(4);
    } else if (x.startsWith('dst=')) {
      if (dst === undefined) dst = x.slice(4);
    } else if (x.startsWith('dport=')) {
      if (dport === undefined) {
        const v = x.slice(6);
        if (!/^\d{1,5}$/.test(v) || Number(v) > 65535) return undefined;
        dport = Number(v);
      }
    } else if (x.startsWith('[') && src !== undefined) break; // [UNREPLIED]: the reply follows
  }
  if (src === undefined || dst === undefined) return undefined;
  if (!isAddress(src) || !isAddress(dst)) return undefined;
  return { src, dst, protonum, dport };
}

function isAddress(s: string): boolean {
  return ip4(s) >= 0 || (s.length <= 45 && s.includes(':') && /^[0-9a-fA-F:.]+$/.test(s));
}

export interface ConntrackEventsOptions {
  /** Subnets watched (CIDR): one conntrack process each (conntrack takes one `-s`). */
  readonly subnets: readonly string[];
  /** Prefix for the conntrack command: `['ip','netns','exec','router']` (default none). */
  readonly commandPrefix?: readonly string[];
  /** Netlink receive buffer asked of conntrack (`-b`, bytes): what absorbs a burst. Default 2 MiB. */
  readonly bufferBytes?: number;
  readonly onEvent: (ev: ConnEvent) => void;
  /** The kernel dropped events (socket buffer full), or conntrack died and was restarted. */
  readonly onTrouble?: (what: string, lost: boolean) => void;
}

interface Reader {
  readonly subnet: string;
  child: ChildProcessWithoutNullStreams | undefined;
  buf: string;
  failures: number;
  timer: NodeJS.Timeout | undefined;
  /** CPU (clock ticks) of the children that exited, so the figure survives restarts. */
  ticksBefore: number;
}

const RESTART_MS = [100, 500, 2000, 5000];

/** The conntrack event readers: started by `start()`, which fails when conntrack cannot run. */
export class ConntrackEvents {
  /** Lines read, events passed on, lines that were not events, ENOBUFS reports, restarts. */
  readonly counters = { lines: 0, events: 0, unparsed: 0, overflows: 0, restarts: 0, bytes: 0 };
  private readonly readers: Reader[];
  private readonly o: ConntrackEventsOptions;
  private closed = false;

  constructor(o: ConntrackEventsOptions) {
    if (o.subnets.length === 0) throw new MetanetError('ECONFIG', 'extrusion: no subnet to watch');
    this.o = o;
    this.readers = o.subnets.map((subnet) => ({
      subnet,
      child: undefined,
      buf: '',
      failures: 0,
      timer: undefined,
      ticksBefore: 0,
    }));
  }

  /** The command line of one reader. */
  command(subnet: string): string[] {
    return [
      ...(this.o.commandPrefix ?? []),
      'conntrack',
      '-E',
      '-e',
      'NEW',
      '-f',
      'ipv4',
      '-s',
      subnet,
      '-b',
      String(this.o.bufferBytes ?? 2 << 20),
    ];
  }

  /**
   * Start every reader; resolves once each has run for `settleMs` without exiting (conntrack
   * missing, no ctnetlink in the kernel, a bad argument: it exits at once and this rejects).
   */
  async start(settleMs = 150): Promise<void> {
    await Promise.all(
      this.readers.map(
        (r) =>
          new Promise<void>((resolve, reject) => {
            const child = this.spawn(r);
            let stderr = '';
            const onErr = (d: Buffer): void => {
              stderr += d.toString();
            };
            child.stderr.on('data', onErr);
            const fail = (why: string): void => {
              clearTimeout(t);
              reject(
                new MetanetError(
                  'EFAIL',
                  `extrusion: ${this.command(r.subnet).join(' ')}: ${why}${stderr.trim() ? `: ${stderr.trim()}` : ''}`,
                ),
              );
            };
            const onExit = (code: number | null, signal: string | null): void =>
              fail(`exited at once (${signal ?? code})`);
            const onSpawnError = (e: Error): void => fail(e.message);
            child.once('exit', onExit);
            child.once('error', onSpawnError);
            const t = setTimeout(() => {
              child.off('exit', onExit);
              child.off('error', onSpawnError);
              child.stderr.off('data', onErr);
              resolve();
            }, settleMs);
          }),
      ),
    ).catch(async (e: unknown) => {
      await this.close();
      throw e;
    });
  }

  /** PIDs of the running readers. */
  pids(): number[] {
    return this.readers.flatMap((r) => (r.child?.pid !== undefined ? [r.child.pid] : []));
  }

  /**
   * CPU time the readers used (user + system, ms, the exited ones included), from
   * `/proc/<pid>/stat`; undefined where /proc cannot be read. With a prefix (`ip netns exec`)
   * the pid is conntrack's own: `ip` execs it.
   */
  cpuMs(): number | undefined {
    let ticks = 0;
    for (const r of this.readers) {
      ticks += r.ticksBefore;
      const pid = r.child?.pid;
      if (pid === undefined) continue;
      const t = procTicks(pid);
      if (t === undefined) return undefined;
      ticks += t;
    }
    return (ticks * 1000) / CLK_TCK;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      this.readers.map(async (r) => {
        clearTimeout(r.timer);
        const c = r.child;
        r.child = undefined;
        if (!c || c.exitCode !== null || c.signalCode !== null) return;
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => c.kill('SIGKILL'), 1000);
          c.once('close', () => {
            clearTimeout(t);
            resolve();
          });
          c.kill('SIGTERM');
        });
      }),
    );
  }

  private spawn(r: Reader): ChildProcessWithoutNullStreams {
    const [cmd, ...args] = this.command(r.subnet) as [string, ...string[]];
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    r.child = child;
    r.buf = '';
    child.stdin.end();
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => this.onData(r, d));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      if (/ENOBUFS/.test(d)) {
        this.counters.overflows++;
        this.o.onTrouble?.(
          `conntrack -s ${r.subnet}: the kernel dropped events (socket buffer full: ENOBUFS)`,
          true,
        );
      }
    });
    child.on('error', () => {}); // reported by start() or by 'exit'
    let lastTicks = 0;
    const sample = setInterval(() => {
      if (child.pid !== undefined) lastTicks = procTicks(child.pid) ?? lastTicks;
    }, 5000);
    sample.unref();
    child.on('exit', (code, signal) => {
      clearInterval(sample);
      r.ticksBefore += lastTicks;
      if (r.child !== child) return;
      r.child = undefined;
      if (this.closed) return;
      this.counters.restarts++;
      const wait = RESTART_MS[Math.min(r.failures++, RESTART_MS.length - 1)]!;
      this.o.onTrouble?.(
        `conntrack -s ${r.subnet} exited (${signal ?? code}); restarting in ${wait} ms (events meanwhile are not seen)`,
        true,
      );
      r.timer = setTimeout(() => {
        if (!this.closed) this.spawn(r);
      }, wait);
    });
    return child;
  }

  private onData(r: Reader, d: string): void {
    this.counters.bytes += d.length;
    r.failures = 0;
    let buf = r.buf + d;
    let nl = buf.indexOf('\n');
    let start = 0;
    while (nl >= 0) {
      this.line(buf.slice(start, nl));
      start = nl + 1;
      nl = buf.indexOf('\n', start);
    }
    buf = buf.slice(start);
    r.buf = buf.length > MAX_LINE ? '' : buf;
  }

  private line(l: string): void {
    if (l === '') return;
    this.counters.lines++;
    const ev = parseConntrackLine(l);
    if (!ev) {
      this.counters.unparsed++;
      return;
    }
    this.counters.events++;
    this.o.onEvent(ev);
  }
}

const CLK_TCK = 100; // USER_HZ: 100 on every Linux ABI Node runs on

/** utime + stime of a process in clock ticks, or undefined. */
export function procTicks(pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // after the name: state(3) … utime is field 14, stime 15 (1-based): indexes 11 and 12 here
    return Number(f[11]) + Number(f[12]);
  } catch {
    return undefined;
  }
}

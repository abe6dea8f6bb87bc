import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { threadId } from 'node:worker_threads';
import { ipBatch as ipBatchIn, killAll, pidsIn } from '../../../examples/netns.js';

/**
 * The fairness lab: a line with a rate cap between the internet and the router, and two guests
 * on the router's guest bridge, each in its own namespace.
 *
 *   inet i0 ──── l1 line l0 ──── r1 router br-guest ─┬─ pa ── c0 guest0 (10.78.0.10)
 *   10.78.1.2    (HTB cap each way)  10.78.2.2  10.78.0.1   └─ pb ── c0 guest1 (10.78.0.11)
 *
 * Facts it rests on (docs/LAB-NOTES): new namespaces inherit the host's congestion control (bbr
 * here), so iperf3 asks for cubic per socket (`-C cubic`); veth senders emit 64 KB GSO packets,
 * so the senders (inet's i0, each guest's c0) get `gso_max_segs 1` and queues count real frames;
 * the line's cap sits in its own namespace, so neither the sender's own queue nor the router's
 * decides what the line does. The line is HTB + pfifo (100 frames, a modem-like buffer).
 *
 * Names are `mnshp<pid>[t<thread>]-<n>-<role>`: unique per process, and a new lab removes those
 * of processes that are gone. close() kills every process in them and deletes them.
 */
export interface FairnessLabOptions {
  /** The line's rate each way, bits/s. */
  readonly lineRate: number;
  /** The line's queue, frames (default 100). */
  readonly lineQueue?: number;
  /** Number of guests (default 2). */
  readonly guests?: number;
}

export interface IperfResult {
  /** Goodput the receiver saw, bits/s (after the omitted first second). */
  readonly bps: number;
  readonly streams: number;
  readonly reverse: boolean;
}

const NAME_RE = /^mnshp(\d+)(?:t\d+)?-\d+-/;
let counter = 0;
const open = new Set<FairnessLab>();
let exitHandler = false;

export class FairnessLab {
  readonly prefix: string;
  readonly inet: string;
  readonly line: string;
  readonly router: string;
  readonly guests: readonly string[];
  readonly inetIp = '10.78.1.2';
  readonly routerGuestIp = '10.78.0.1';
  /** The guest-side device on the router. */
  readonly device = 'br-guest';
  private readonly children = new Set<ChildProcess>();
  private closed = false;

  private constructor(n: number) {
    this.prefix = `mnshp${process.pid}${threadId ? `t${threadId}` : ''}-${counter++}`;
    this.inet = `${this.prefix}-inet`;
    this.line = `${this.prefix}-line`;
    this.router = `${this.prefix}-router`;
    this.guests = Array.from({ length: n }, (_, i) => `${this.prefix}-guest${i}`);
  }

  get namespaces(): string[] {
    return [this.inet, this.line, this.router, ...this.guests];
  }

  guestIp(i: number): string {
    return `10.78.0.${10 + i}`;
  }

  static async create(opts: FairnessLabOptions): Promise<FairnessLab> {
    if (process.getuid?.() !== 0) throw new Error('FairnessLab: network namespaces need root');
    const n = opts.guests ?? 2;
    if (!Number.isInteger(n) || n < 1 || n > 20)
      throw new Error(`FairnessLab: guests must be 1..20, got ${n}`);
    sweepStale();
    if (!exitHandler) {
      exitHandler = true;
      process.on('exit', () => {
        for (const lab of open) lab.closeSync();
      });
    }
    const lab = new FairnessLab(n);
    open.add(lab);
    try {
      await lab.build(opts.lineRate, opts.lineQueue ?? 100);
    } catch (e) {
      await lab.close();
      throw e;
    }
    return lab;
  }

  private async build(rate: number, queue: number): Promise<void> {
    const { inet, line, router } = this;
    const root = this.namespaces.map((ns) => `netns add ${ns}`);
    root.push(`link add i0 netns ${inet} type veth peer name l1 netns ${line}`);
    root.push(`link add l0 netns ${line} type veth peer name r1 netns ${router}`);
    this.guests.forEach((g, i) => {
      root.push(`link add c0 netns ${g} type veth peer name p${i} netns ${router}`);
    });
    await ipBatch(undefined, root);
    const routerLines = [
      'link set lo up',
      // a fixed MAC: a bridge takes its lowest port's otherwise, and changes it as ports come and go
      `link add ${this.device} address 02:00:00:00:78:01 type bridge forward_delay 0 stp_state 0`,
      ...this.guests.flatMap((_, i) => [`link set p${i} master ${this.device}`, `link set p${i} up`]),
      `link set ${this.device} up`,
      'link set r1 up',
      `addr add ${this.routerGuestIp}/24 dev ${this.device}`,
      'addr add 10.78.2.2/24 dev r1',
      'route add default via 10.78.2.1',
    ];
    const lineLines = [
      'link set lo up',
      'addr add 10.78.1.1/24 dev l1',
      'addr add 10.78.2.1/24 dev l0',
      'link set l1 up',
      'link set l0 up',
      'route add 10.78.0.0/24 via 10.78.2.2',
    ];
    const inetLines = [
      'link set lo up',
      `addr add ${this.inetIp}/24 dev i0`,
      'link set i0 up',
      'link set i0 gso_max_segs 1',
      'route add default via 10.78.1.1',
    ];
    const guestLines = (i: number): string[] => [
      'link set lo up',
      `addr add ${this.guestIp(i)}/24 dev c0`,
      'link set c0 up',
      'link set c0 gso_max_segs 1',
      `route add default via ${this.routerGuestIp}`,
    ];
    await Promise.all([
      ipBatch(router, routerLines),
      ipBatch(line, lineLines),
      ipBatch(inet, inetLines),
      ...this.guests.map((g, i) => ipBatch(g, guestLines(i))),
    ]);
    for (const ns of [router, line]) {
      const r = await this.exec(ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
      if (r.code !== 0) throw new Error(`FairnessLab: cannot enable forwarding in ${ns}: ${r.stderr}`);
    }
    // Bridge netfilter is on in new namespaces here; nothing in this lab needs it.
    await this.exec(router, 'sysctl', ['-qw', 'net.bridge.bridge-nf-call-iptables=0']);
    await this.exec(router, 'sysctl', ['-qw', 'net.ipv4.conf.all.rp_filter=0']);
    // The line: the same cap each way, on the egress towards the router and towards the internet.
    const cap: string[] = [];
    for (const dev of ['l0', 'l1'])
      cap.push(
        `qdisc add dev ${dev} root handle 1: htb default 1`,
        `class add dev ${dev} parent 1: classid 1:1 htb rate ${rate}bit ceil ${rate}bit quantum 1514`,
        `qdisc add dev ${dev} parent 1:1 handle 10: pfifo limit ${queue}`,
      );
    const r = await this.exec(line, 'tc', ['-batch', '-'], { input: `${cap.join('\n')}\n` });
    if (r.code !== 0) throw new Error(`FairnessLab: line cap refused: ${r.stderr}`);
  }

  /** Run a command in a namespace; resolves with its exit code and output (non-zero is not an error). */
  exec(
    ns: string,
    cmd: string,
    args: readonly string[] = [],
    opts: { timeoutMs?: number; input?: string } = {},
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    const timeout = opts.timeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const child = execFile(
        'ip',
        ['netns', 'exec', ns, cmd, ...args],
        { timeout, killSignal: 'SIGKILL', maxBuffer: 64 << 20 },
        (err, stdout, stderr) => {
          if (err && (err as { killed?: boolean }).killed)
            reject(
              new Error(`FairnessLab: timed out after ${timeout} ms: ${cmd} ${args.join(' ')} in ${ns}`),
            );
          else if (err && typeof (err as { code?: unknown }).code !== 'number')
            reject(new Error(`FairnessLab: cannot run ${cmd} in ${ns}: ${err.message}`));
          else resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout, stderr });
        },
      );
      child.stdin?.on('error', () => {}); // EPIPE from a command that does not read its input
      child.stdin?.end(opts.input ?? '');
    });
  }

  /** iperf3 servers in inet, one per port; resolves when each says it listens. */
  async iperfServers(ports: readonly number[]): Promise<void> {
    await Promise.all(
      ports.map(
        (port) =>
          new Promise<void>((resolve, reject) => {
            const child = spawn(
              'ip',
              ['netns', 'exec', this.inet, 'iperf3', '-s', '-p', String(port), '--forceflush'],
              {
                stdio: ['ignore', 'pipe', 'pipe'],
              },
            );
            this.children.add(child);
            let out = '';
            const t = setTimeout(
              () => reject(new Error(`FairnessLab: iperf3 -s -p ${port} did not start: ${out}`)),
              5000,
            );
            child.stdout.setEncoding('utf8');
            child.stdout.on('data', (d: string) => {
              out += d;
              if (out.includes('Server listening')) {
                clearTimeout(t);
                resolve();
              }
            });
            child.stderr.on('data', (d: Buffer) => (out += d.toString()));
            child.on('error', (e) => {
              clearTimeout(t);
              reject(
                new Error(`FairnessLab: cannot start iperf3 (Debian: apt-get install iperf3): ${e.message}`),
              );
            });
            child.on('exit', () => this.children.delete(child));
          }),
      ),
    );
  }

  /**
   * One iperf3 run from guest `i` to the server on `port`: cubic, `streams` parallel streams,
   * `seconds` measured after one omitted second; `reverse` = download (iperf3 -R).
   */
  async iperf(
    i: number,
    port: number,
    o: { streams: number; seconds: number; reverse: boolean },
  ): Promise<IperfResult> {
    const args = ['-c', this.inetIp, '-p', String(port), '-C', 'cubic', '-P', String(o.streams)];
    args.push('-t', String(o.seconds), '-O', '1', '-J', ...(o.reverse ? ['-R'] : []));
    const r = await this.exec(this.guests[i]!, 'iperf3', args, { timeoutMs: (o.seconds + 20) * 1000 });
    let doc: { error?: string; end?: { sum_received?: { bits_per_second?: number } } };
    try {
      doc = JSON.parse(r.stdout) as typeof doc;
    } catch {
      throw new Error(
        `FairnessLab: iperf3 in guest${i} printed no JSON (exit ${r.code}): ${r.stderr || r.stdout}`,
      );
    }
    if (doc.error) throw new Error(`FairnessLab: iperf3 in guest${i}: ${doc.error}`);
    const bps = doc.end?.sum_received?.bits_per_second;
    if (typeof bps !== 'number') throw new Error(`FairnessLab: iperf3 in guest${i}: no sum_received`);
    return { bps, streams: o.streams, reverse: o.reverse };
  }

  /** For exit handlers: kill and delete without waiting. */
  closeSync(): void {
    if (this.closed) return;
    this.closed = true;
    open.delete(this);
    for (const c of this.children) c.kill('SIGKILL');
    for (const ns of this.namespaces) {
      killAll(ns);
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // not there
      }
    }
  }

  /** Kill every process in the lab's namespaces and delete them. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    open.delete(this);
    for (const c of this.children) c.kill('SIGKILL');
    const end = Date.now() + 3000;
    for (const ns of this.namespaces) {
      killAll(ns);
      while (pidsIn(ns).length > 0 && Date.now() < end) {
        killAll(ns);
        await new Promise((r) => setTimeout(r, 10));
      }
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // not there
      }
    }
  }
}

const ipBatch = (ns: string | undefined, lines: readonly string[]): Promise<void> =>
  ipBatchIn(ns, lines, 'FairnessLab');

function sweepStale(): void {
  let names: string[] = [];
  try {
    names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter(Boolean);
  } catch {
    return;
  }
  for (const ns of names) {
    const m = NAME_RE.exec(ns);
    if (!m) continue;
    try {
      process.kill(Number(m[1]), 0);
      continue; // its process lives
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EPERM') continue;
    }
    killAll(ns);
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // gone
    }
  }
}

/**
 * npm run bench:firewall — firewall open latency for the captive portal: how long from
 * `bus.request('/fw/allow', {ip, mac})` to its reply, with real nft inside a network namespace,
 * against the same `add element` commands given to nft without MetaNet, in the same run:
 *
 * - MetaNet allow (state file): the firewall service as the portal runs it (a JSON state file
 *   rewritten on every change); the request's reply comes after nft's echo, the sync marker's round
 *   and the state-file write. Also the reply's own `latency` tuple (allow received → nft echo).
 * - MetaNet allow (no state file): a second service on a second table, nothing saved.
 * - nft process per change: `ip netns exec NS nft add element inet metanet auth4 { IP . MAC timeout 3600s }`,
 *   one process each, as naive portals do; spawn to exit.
 * - raw nft -e -j -i: the same lines written to one long-lived `ip netns exec NS nft -e -j -i`,
 *   each one when the previous one's JSON echo line arrived; write to echo.
 * - "all at once" rows: N allows issued together (MetaNet: N requests; raw: N lines in one write).
 *
 * Every allow names a client never seen before (its own address and MAC): nft -e echoes nothing
 * for an element that is already in the set (no change), so a raw echo reader would wait forever. Best of ROUNDS
 * (default 3) runs of N (default 500) allows, the methods interleaved. Needs root (network
 * namespaces, nft). The namespaces (and so the tables) are deleted at the end, also on failure.
 * Environment: ROUNDS, N.
 */
import { type ChildProcessWithoutNullStreams, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bus } from '../src/core/bus.js';
import { silentLogger } from '../src/core/log.js';
import { type FirewallService, installFirewallService } from '../src/services/firewall/index.js';
import { Lab } from '../test/support/lab.js';
import { conditions, fmt, ms, pct, table } from './report-support.js';

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const N = Number(process.env.N ?? 500);
const TIMEOUT_S = 3600;
/** Clients already allowed for the second table, and allows per cell there. */
const SIZES = (process.env.SIZES ?? '0,1000,3000').split(',').map(Number);
const N_SCALE = Number(process.env.N_SCALE ?? 100);

const METHODS = ['mn-state', 'mn-nostate', 'process', 'raw', 'raw-marker', 'mn-burst', 'raw-burst'] as const;
type Method = (typeof METHODS)[number];
const LABEL: Record<Method, string> = {
  'mn-state': 'MetaNet allow, state file (as the portal)',
  'mn-nostate': 'MetaNet allow, no state file',
  process: 'nft process per change',
  raw: 'raw nft -e -j -i, one line at a time',
  'raw-marker': 'raw nft -j -i + marker line (no echo)',
  'mn-burst': `MetaNet allow, state file, ${N} at once`,
  'raw-burst': `raw nft -e -j -i, ${N} lines at once`,
};

interface Run {
  /** Latencies (ms) of every allow, issue → answer. */
  lat: number[];
  /** MetaNet only: the reply's `latency` tuple (allow received → nft echo), ms. */
  echo: number[];
  rate: number;
}

/** Client i of batch b: an address and a MAC no other batch uses. */
function client(b: number, i: number): { ip: string; mac: string } {
  if (b > 155 || i > 65535) throw new Error(`bench/firewall: no address for client ${i} of batch ${b}`);
  const h = (x: number): string => x.toString(16).padStart(2, '0');
  return { ip: `10.${100 + b}.${i >> 8}.${i & 255}`, mac: `02:${h(b)}:00:00:${h(i >> 8)}:${h(i & 255)}` };
}

const addLine = (table: string, c: { ip: string; mac: string }): string =>
  `add element inet ${table} auth4 { ${c.ip} . ${c.mac} timeout ${TIMEOUT_S}s }`;

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error(
      'bench/firewall needs root (network namespaces and nft): run it as root, e.g. sudo npm run bench:firewall',
    );
    process.exit(1);
  }
  for (const tool of ['nft', 'ip']) {
    try {
      execFileSync(tool, [tool === 'nft' ? '--version' : '-V'], { stdio: 'ignore' });
    } catch {
      console.error(`bench/firewall needs ${tool} (Debian: apt-get install nftables iproute2)`);
      process.exit(1);
    }
  }
  const nftVersion = execFileSync('nft', ['--version'], { encoding: 'utf8' }).trim();
  const dir = mkdtempSync(join(tmpdir(), 'mn-bench-fw-'));
  const stateFile = join(dir, 'firewall.json');
  let lab: Lab | undefined;
  let bus: Bus | undefined;
  let services: FirewallService[] = [];
  const shells: RawShell[] = [];
  try {
    lab = await Lab.create({});
    const l = lab;
    const ns = lab.router;
    const nft = ['ip', 'netns', 'exec', ns, 'nft'];
    const b = new Bus({ name: 'fwbench', logger: silentLogger });
    bus = b;
    const base = { lan: 'r0', portal: { address: lab.routerLanIp, port: 8080 }, nft };
    /** Both services (re)installed on empty sets and an empty state file: every run starts alike. */
    const reset = async (): Promise<void> => {
      for (const s of services) await s.close({ removeTable: true });
      rmSync(stateFile, { force: true });
      services = [
        await installFirewallService(b, { ...base, name: '/fw', stateFile }),
        await installFirewallService(b, { ...base, name: '/fw2', table: 'mnbench2' }),
      ];
    };
    const count = async (t: string): Promise<number> => {
      const r = await l.exec(ns, 'nft', ['-j', 'list', 'set', 'inet', t, 'auth4']);
      const doc = JSON.parse(r.stdout) as { nftables: { set?: { elem?: unknown[] } }[] };
      return doc.nftables.find((x) => x.set)?.set?.elem?.length ?? 0;
    };
    /** `n` clients already allowed (one `nft -f -` transaction), as a busy portal has. */
    const prefill = async (n: number): Promise<void> => {
      if (n === 0) return;
      const elems = Array.from({ length: n }, (_, i) => client(90, i))
        .map((c) => `${c.ip} . ${c.mac} timeout ${TIMEOUT_S}s`)
        .join(', ');
      const r = await l.exec(ns, 'nft', ['-f', '-'], {
        input: `add element inet metanet auth4 { ${elems} }\n`,
      });
      if (r.code !== 0) throw new Error(`bench/firewall: prefill refused: ${r.stderr}`);
    };
    await reset();
    const echo = new RawShell(nft, 'echo');
    const marker = new RawShell(nft, 'marker');
    shells.push(echo, marker);

    const runs: Record<Method, (batch: number, n?: number) => Promise<Run>> = {
      'mn-state': (batch, n) => metanet(b, '/fw', batch, false, n),
      'mn-nostate': (batch, n) => metanet(b, '/fw2', batch, false, n),
      process: (batch, n) => perProcess(ns, batch, n),
      raw: (batch, n) => echo.sequential(batch, n),
      'raw-marker': (batch, n) => marker.sequential(batch, n),
      'mn-burst': (batch, n) => metanet(b, '/fw', batch, true, n),
      'raw-burst': (batch, n) => echo.burst(batch, n),
    };
    // warm-up: a few of each (JIT, nft's caches)
    // (distinct clients: nft echoes nothing for an element that is already there)
    for (const [i, m] of METHODS.entries()) await runs[m](140 + i, 10);

    const best = new Map<Method, Run>();
    let batch = 0;
    for (let round = 0; round < ROUNDS; round++)
      for (const m of METHODS) {
        await reset();
        if (batch >= 90) throw new Error('bench/firewall: too many runs (batches 90+ are the prefill)');
        const r = await runs[m](batch++);
        // The work was really done: every allow is an element of its table.
        const t = m === 'mn-nostate' ? 'mnbench2' : 'metanet';
        const c = await count(t);
        if (c !== N)
          throw new Error(`bench/firewall: ${m} made ${N} allows, nft lists ${c} elements in ${t}`);
        process.stderr.write(
          `round ${round + 1} ${m}: ${fmt(r.rate)} allows/s, p50 ${ms(pct(r.lat, 50))}, p99 ${ms(pct(r.lat, 99))}\n`,
        );
        const old = best.get(m);
        if (!old || r.rate > old.rate) best.set(m, r);
      }

    // The cost of one allow against the number of clients already allowed.
    const scaleRows: string[][] = [];
    const SCALED: Method[] = ['mn-state', 'raw', 'raw-marker', 'process'];
    for (const size of SIZES) {
      await reset();
      await prefill(size);
      const row = [fmt(size)];
      for (const m of SCALED) {
        const r = await runs[m](batch++, N_SCALE);
        row.push(`${ms(pct(r.lat, 50))} / ${ms(pct(r.lat, 99))}`);
      }
      const c = await count('metanet');
      if (c !== size + SCALED.length * N_SCALE)
        throw new Error(
          `bench/firewall: expected ${size + SCALED.length * N_SCALE} elements, nft lists ${c}`,
        );
      scaleRows.push(row);
      process.stderr.write(`${size} allowed: ${row.slice(1).join(', ')}\n`);
    }

    const ref = best.get('mn-state')!.rate;
    const rows = METHODS.map((m) => {
      const r = best.get(m)!;
      return [
        LABEL[m],
        ms(pct(r.lat, 50)),
        ms(pct(r.lat, 99)),
        r.echo.length ? `${ms(pct(r.echo, 50))} / ${ms(pct(r.echo, 99))}` : '',
        fmt(r.rate),
        (r.rate / ref).toFixed(2),
      ];
    });
    console.log(
      `\nbench/firewall — ${N} allows of distinct clients per run, each run on empty sets, best of ${ROUNDS} ` +
        `(methods interleaved); ${nftVersion} in a network namespace; ${conditions()}\n`,
    );
    console.log(
      table(
        [
          'method',
          ' p50',
          ' p99',
          ' MetaNet echo p50 / p99',
          ' allows/s',
          ' allows/s ÷ MetaNet (state file)',
        ],
        rows,
      ),
    );
    console.log(
      `\nOne allow (p50 / p99) against the clients already in the set: ${N_SCALE} allows per cell, one run; ` +
        "MetaNet here with a fresh state file (its cost is nft's).\n",
    );
    console.log(
      table(
        [
          ' clients allowed',
          ' MetaNet allow',
          ' raw -e -j -i (echo)',
          ' raw -j -i + marker (no echo)',
          ' nft process',
        ],
        scaleRows,
      ),
    );
    console.log(
      '\np50/p99: issue → answer of each allow (request → reply; spawn → exit; line written → JSON echo,' +
        '\nor → the marker line nft rejects after it). "at once" rows: every allow issued together, so their' +
        "\nlatency includes the wait in the queue. MetaNet echo: the reply's latency tuple, allow received by" +
        '\nthe service → nft\'s JSON echo (in the "at once" row it includes the wait for the shell).' +
        '\nWhat limits the figures: nft itself (one netlink transaction per line: the raw rows) and, per' +
        "\nprocess, fork+exec of ip and nft plus nft's start-up. The service runs one command at a time" +
        '\n(nft -j -i, no echo) and follows each with a sync marker so that answers and errors are matched' +
        '\nto their command; with a state file it rewrites it on every change (up to' +
        ` ${N} clients here).` +
        "\nWith -e, nft's time per change grows with the number of elements in the set (second table);" +
        '\nwith no echo and a marker line it stays flat. Other load on the machine moves the p99 most.',
    );
  } finally {
    for (const sh of shells) await sh.close();
    for (const s of services) await s.close({ removeTable: true }).catch(() => {});
    await bus?.close(100).catch(() => {});
    await lab?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** N allows through the service, one after another (or all at once); `n` to run fewer (warm-up). */
async function metanet(bus: Bus, name: string, batch: number, burst: boolean, n = N): Promise<Run> {
  const one = async (i: number): Promise<[number, number]> => {
    const t = performance.now();
    const r = await bus.request(
      `${name}/allow`,
      { ...client(batch, i), timeout: TIMEOUT_S },
      { timeout: burst ? 120_000 : 5000 },
    );
    const dt = performance.now() - t;
    if (r.has('error')) throw new Error(`bench/firewall: ${name}/allow failed: ${r.str('error')}`);
    return [dt, r.float('latency')];
  };
  const t0 = performance.now();
  const res: [number, number][] = [];
  if (burst) res.push(...(await Promise.all(Array.from({ length: n }, (_, i) => one(i)))));
  else for (let i = 0; i < n; i++) res.push(await one(i));
  const rate = n / ((performance.now() - t0) / 1000);
  return { lat: res.map((x) => x[0]), echo: res.map((x) => x[1]), rate };
}

/** N allows as naive portals do them: one `ip netns exec NS nft add element …` process each. */
async function perProcess(ns: string, batch: number, n = N): Promise<Run> {
  const lat: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await new Promise<void>((resolve, reject) =>
      execFile('ip', ['netns', 'exec', ns, 'nft', addLine('metanet', client(batch, i))], (err, _o, stderr) =>
        err ? reject(new Error(`bench/firewall: nft refused: ${stderr.trim() || err.message}`)) : resolve(),
      ),
    );
    lat.push(performance.now() - t);
  }
  return { lat, echo: [], rate: n / ((performance.now() - t0) / 1000) };
}

/**
 * One long-lived nft without MetaNet. `echo`: `nft -e -j -i`, a line in, wait for its JSON echo.
 * `marker`: `nft -j -i` (no echo), a line in followed by a line nft rejects (`mk<n>`), wait for
 * nft's error about it — how to learn a change is done without echo (stderr merged into stdout).
 */
class RawShell {
  private readonly child: ChildProcessWithoutNullStreams;
  private buf = '';
  private readonly waiting: { marker?: string; done: () => void }[] = [];
  private failure?: Error;
  private seq = 0;

  constructor(
    nft: readonly string[],
    private readonly mode: 'echo' | 'marker',
  ) {
    const flags = mode === 'echo' ? ['-e', '-j', '-i'] : ['-j', '-i'];
    this.child = spawn('sh', ['-c', 'exec "$@" 2>&1', 'sh', ...nft, ...flags]);
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (d: string) => {
      this.buf += d;
      let nl = this.buf.indexOf('\n');
      while (nl >= 0) {
        this.onLine(this.buf.slice(0, nl));
        this.buf = this.buf.slice(nl + 1);
        nl = this.buf.indexOf('\n');
      }
    });
  }

  private onLine(line: string): void {
    const w = this.waiting[0];
    if (this.mode === 'echo') {
      if (line.startsWith('{')) this.waiting.shift()?.done();
      else if (line.startsWith('Error:')) {
        this.failure ??= new Error(`bench/firewall: raw nft said: ${line}`);
        this.waiting.shift()?.done();
      }
    } else if (w && line === w.marker) this.waiting.shift()?.done();
  }

  /** The text for client i of a batch, and a promise of its answer. */
  private line(batch: number, i: number): [string, Promise<void>] {
    const marker = this.mode === 'marker' ? `mk${++this.seq}` : undefined;
    const done = new Promise<void>((resolve) => this.waiting.push({ marker, done: resolve }));
    const add = `${addLine('metanet', client(batch, i))}\n`;
    return [marker ? `${add}${marker}\n` : add, done];
  }

  async sequential(batch: number, n = N): Promise<Run> {
    const lat: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      const [text, done] = this.line(batch, i);
      this.child.stdin.write(text);
      await this.within(done);
      lat.push(performance.now() - t);
    }
    return { lat, echo: [], rate: n / ((performance.now() - t0) / 1000) };
  }

  async burst(batch: number, n = N): Promise<Run> {
    const t0 = performance.now();
    const lat: number[] = [];
    const lines = Array.from({ length: n }, (_, i) => this.line(batch, i));
    const all = lines.map(([, done]) => done.then(() => lat.push(performance.now() - t0)));
    this.child.stdin.write(lines.map(([text]) => text).join(''));
    await this.within(Promise.all(all));
    return { lat, echo: [], rate: n / ((performance.now() - t0) / 1000) };
  }

  /** Wait for `p`, failing clearly when nft complained or stayed silent for 60 s. */
  private async within(p: Promise<unknown>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(this.failure ?? new Error('bench/firewall: raw nft gave no answer within 60 s')),
        60_000,
      );
    });
    try {
      await Promise.race([p, limit]);
    } finally {
      clearTimeout(timer);
    }
    if (this.failure) throw this.failure;
  }

  close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      this.child.once('close', () => resolve());
      this.child.stdin.end();
    });
  }
}

await main();

/**
 * npm run bench:cost — what metrics and extrusion detection cost on the gateway's hot paths
 * (DHCP exchanges and portal redirects), in one run, against a baseline measured in the same run:
 *
 *   A = examples/gateway.json as the gateway lab runs it (dhcpd, dns, portal; mailproxy off);
 *   B = A + `metrics: {listen: "10.10.0.1:9100"}` (the router's LAN address) + `apps.extrusion: {}`
 *       (its default detectors, every action `log`), and a LAN host (lan1) scraping /metrics once
 *       a second while B is measured, as Prometheus would.
 *
 * Both set dhcpd's storm limit off (`newClients: {perSecond: 0}`) so it does not cap the rate.
 * A and B run side by side in two gateway labs (examples/gateway-lab/lab.ts), which swap variants
 * every round, so their measurements alternate step by step (A B, B A, …: a few seconds apart, not
 * a minute, which on a machine others load is what keeps the pairs comparable); only the one
 * measured gets traffic.
 * Each round starts both gateways afresh (state dir emptied, the router's conntrack flushed),
 * guest1 and guest2 of each lab take a lease (udhcpc), and then:
 *
 *   1. DHCP exchanges/s: perfdhcp in guest1 as a relay (giaddr = its leased address), `--macs`
 *      random MACs (fewer than the /24 pool, so MACs repeat and the pool never runs dry), a warm-up
 *      second at 200/s, then a climb ×`--dhcp-factor` from `--dhcp-start`/s, `--dhcp-seconds` a
 *      step, up to the first step with ≥ 1 % drops (a dirty step is tried once more, the better
 *      kept; when the very first step drops, it goes down instead), then `--dhcp-bisect` (3)
 *      bisection steps: the figure is the ACKs/s of the best clean step. (A fixed offered rate
 *      above capacity is no use: the server's queue grows, exchanges time out and the completed
 *      rate collapses — 8,000/s offered gave 300–500/s here.)
 *   2. Portal redirects/s: autocannon (node from the repo's node_modules, inside guest2, which is
 *      NOT logged in) against http://10.99.0.1/ (the internet's address, port 80), `--connections`
 *      (default 32, under the portal's 64 per guest): first at a fixed rate (`--http-rate`, also the
 *      warm-up), then `--http-runs` runs as fast as it goes for `--http-seconds` each (figure: the
 *      best); every answer must be the portal's 302 (anything else is printed as OTHER). The portal
 *      answers its redirect with `Connection: close`, so every request is a new TCP connection — a
 *      conntrack NEW event, which extrusion reads — although autocannon keeps connections alive.
 *   3. CPU (user + system of every process in the router namespace: metanet up and its children,
 *      the conntrack readers included) per exchange over the climb's first step and per 302 over
 *      the fixed-rate run: the same offered load in A and B, so these compare when throughputs do
 *      not.
 *
 *   npm run bench:cost -- [--rounds 3] [--dhcp-start 1000] [--dhcp-factor 1.5] [--dhcp-seconds 2]
 *                         [--dhcp-bisect 3] [--macs 200] [--http-seconds 3] [--http-runs 2]
 *                         [--http-rate 1000] [--http-fixed-seconds 3] [--connections 32]
 *                         [--scrape-ms 1000] [--cli dist|src] [--a-a]
 *
 * About 90 s a round here (load average ~10 from others on 2 cores). `--cli`: run the compiled
 * dist (default when built: `npm run build` first) or src through tsx. `--scrape-ms 0`: B without
 * the scraper (to tell the scrapes' share from the rest). `--a-a`: B runs A's config in the second
 * lab: a check that the two labs measure alike.
 * Needs root, perfdhcp, udhcpc, dnsmasq, nft, conntrack, curl.
 * Namespaces and processes are removed on exit and on Ctrl-C (the lab's handlers). Only the labs'
 * 10.x addresses inside their own namespaces are used.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { ADDR, GatewayLab, type Lease, REPO_ROOT } from '../examples/gateway-lab/lab.js';
import { pidsIn } from '../examples/netns.js';
import { parsePerfdhcp, perfdhcpArgs } from './dhcp.js';
import { conditions, fmt, table } from './report-support.js';

const { values: opt } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    'dhcp-start': { type: 'string', default: '1000' },
    'dhcp-factor': { type: 'string', default: '1.5' },
    'dhcp-bisect': { type: 'string', default: '3' },
    'dhcp-seconds': { type: 'string', default: '2' },
    macs: { type: 'string', default: '200' },
    'http-seconds': { type: 'string', default: '3' },
    'http-runs': { type: 'string', default: '2' },
    'http-rate': { type: 'string', default: '1000' },
    'http-fixed-seconds': { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    'scrape-ms': { type: 'string', default: '1000' },
    cli: { type: 'string' },
    'a-a': { type: 'boolean', default: false },
  },
});
const ROUNDS = Number(opt.rounds);
const DHCP_START = Number(opt['dhcp-start']);
const DHCP_FACTOR = Number(opt['dhcp-factor']);
const DHCP_SECONDS = Number(opt['dhcp-seconds']);
const DHCP_BISECT = Number(opt['dhcp-bisect']);
const MACS = Number(opt.macs);
const HTTP_SECONDS = Number(opt['http-seconds']);
const HTTP_RUNS = Number(opt['http-runs']);
const HTTP_RATE = Number(opt['http-rate']);
const HTTP_FIXED_SECONDS = Number(opt['http-fixed-seconds']);
const CONNECTIONS = Number(opt.connections);
/** Harness check: B runs A's config too (no scraper); the ratios should then be 1 within the noise. */
const AA = opt['a-a'] === true;
const SCRAPE_MS = AA ? 0 : Number(opt['scrape-ms']);
const CLI = (opt.cli ?? (existsSync(join(REPO_ROOT, 'dist/src/cli/main.js')) ? 'dist' : 'src')) as
  | 'dist'
  | 'src';
if (
  ![
    ROUNDS,
    DHCP_START,
    DHCP_FACTOR - 1,
    DHCP_BISECT + 1,
    SCRAPE_MS + 1,
    DHCP_SECONDS,
    MACS,
    HTTP_SECONDS,
    HTTP_RUNS,
    HTTP_RATE,
    HTTP_FIXED_SECONDS,
    CONNECTIONS,
  ].every((n) => Number.isFinite(n) && n > 0) ||
  (CLI !== 'dist' && CLI !== 'src')
) {
  process.stderr.write(
    'bench:cost: --rounds, --dhcp-start, … must be positive numbers (--dhcp-factor > 1); --cli dist|src\n',
  );
  process.exit(1);
}
if (CONNECTIONS >= 64)
  process.stderr.write('bench:cost: warning: the portal resets a guest’s connections beyond 64\n');

const METRICS_URL = `http://${ADDR.lan}:9100/metrics`;
const SCRAPER_IP = '10.10.0.250/24';
const TARGET = `http://${ADDR.inet}/`;
const CLEAN_PCT = 1;

type Variant = 'A' | 'B';
const LABEL: Record<Variant, string> = {
  A: 'examples/gateway.json (newClients off)',
  B: AA
    ? 'the same as A, in the second lab (--a-a: a check of the harness)'
    : `the same + metrics (${METRICS_URL}, ${SCRAPE_MS ? `scraped from lan1 every ${SCRAPE_MS} ms` : 'NOT scraped'}) + extrusion {} (default detectors, action log)`,
};

function config(v: Variant): Record<string, unknown> {
  const example = JSON.parse(readFileSync(join(REPO_ROOT, 'examples/gateway.json'), 'utf8')) as {
    apps: Record<string, Record<string, unknown>>;
  } & Record<string, unknown>;
  const apps = { ...example.apps, dhcpd: { ...example.apps.dhcpd, newClients: { perSecond: 0 } } };
  if (v === 'A' || AA) return { ...example, apps };
  return { ...example, apps: { ...apps, extrusion: {} }, metrics: { listen: `${ADDR.lan}:9100` } };
}

// ------------------------------------------------------------------ helper scripts (run in namespaces)

/** autocannon, from the repo's node_modules; prints one JSON line. */
const CANNON = `import { createRequire } from 'node:module';
const autocannon = createRequire(${JSON.stringify(join(REPO_ROOT, 'package.json'))})('autocannon');
const [url, connections, duration, rate] = process.argv.slice(2).map((a, i) => (i ? Number(a) : a));
const r = await autocannon({ url, connections, duration, ...(rate ? { overallRate: rate } : {}), headers: { host: 'www.example.test' } });
process.stdout.write(JSON.stringify({
  duration: r.duration, sent: r.requests.sent,
  codes: Object.fromEntries(Object.entries(r.statusCodeStats ?? {}).map(([k, v]) => [k, v.count])),
  errors: r.errors, timeouts: r.timeouts,
}) + '\\n');
`;

/**
 * Prometheus' part: GET /metrics once a second while active (SIGUSR2 starts, SIGHUP pauses);
 * SIGTERM prints one JSON line (with the last scrape's redirect and extrusion counters) and exits.
 */
const SCRAPER = `const [url, every] = [process.argv[2], Number(process.argv[3])];
let ok = 0, failed = 0, bytes = 0, ms = 0, lastError = '', timer;
const last = { metanet_extrusion_events_total: 0, metanet_portal_redirects_total: 0 };
const once = async () => {
  const t0 = performance.now();
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(900) });
    const text = await r.text();
    if (r.status === 200) {
      ok++; bytes += text.length; ms += performance.now() - t0;
      for (const k of Object.keys(last)) { const m = new RegExp('^' + k + ' (\\\\S+)$', 'm').exec(text); if (m) last[k] = Number(m[1]); }
    } else { failed++; lastError = 'HTTP ' + r.status; }
  } catch (e) { failed++; lastError = String(e.message ?? e); }
};
process.on('SIGUSR2', () => { if (!timer) { timer = setInterval(once, every); void once(); } });
process.on('SIGHUP', () => { clearInterval(timer); timer = undefined; });
process.on('SIGTERM', async () => {
  clearInterval(timer);
  await once();
  process.stdout.write(JSON.stringify({ ok, failed, bytes: ok ? bytes / ok : 0, ms: ok ? ms / ok : 0, lastError, events: last.metanet_extrusion_events_total, redirects: last.metanet_portal_redirects_total }) + '\\n');
  process.exit(0);
});
setInterval(() => {}, 1 << 30);
process.stdout.write('ready\\n');
`;

// ------------------------------------------------------------------ measuring

interface Cannon {
  duration: number;
  sent: number;
  codes: Record<string, number>;
  errors: number;
  timeouts: number;
}

interface Step {
  offered: number;
  /** ACKs per second of the period. */
  rate: number;
  dropPct: number;
  /** CPU of the router namespace's processes, ms, over the step. */
  cpuMs: number;
  acks: number;
}

interface Scrape {
  ok: number;
  failed: number;
  bytes: number;
  ms: number;
  lastError: string;
  events: number;
  redirects: number;
}

/** One variant's gateway in one round: its lab, and what was measured. */
interface Run {
  variant: Variant;
  lab: GatewayLab;
  scraper: ChildProcess | undefined;
  scraperOut: string;
  startMs: number;
  steps: Step[];
  /** The climb's first step (DHCP_START/s offered in A and B alike): its CPU per exchange compares. */
  first: Step | undefined;
  /** The best step with < 1 % drops. */
  best: Step | undefined;
  /** The step that ended the climb (≥ 1 % drops after its retry). */
  dirty: Step | undefined;
  lo: number;
  hi: number;
  /** 302s/s of each closed-loop run. */
  redirectRuns: number[];
  cannons: Cannon[];
  fixed: Cannon | undefined;
  /** CPU µs per 302 over the fixed-rate run, and its 302s/s. */
  redirectCpuUs: number;
  fixedRate: number;
  scrape: Scrape | undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** CPU (user + system, ms) of every process in the router namespace, plus the children they reaped. */
function routerCpuMs(lab: GatewayLab): number {
  let ticks = 0;
  for (const pid of pidsIn(lab.ns.router)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime, stime, cutime, cstime are fields 14–17; f[0] is field 3
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    } catch {
      // gone
    }
  }
  return ticks * 10; // USER_HZ 100
}

/** The scraper: scraping only while its variant is measured. */
function scraping(run: Run, on: boolean): void {
  run.scraper?.kill(on ? 'SIGUSR2' : 'SIGHUP');
}

async function lease(lab: GatewayLab, ns: string): Promise<Lease> {
  const l = await lab.udhcpc(ns);
  if (!l) throw new Error(`no DHCP lease in ${ns}:\n${lab.gatewayLogTail()}`);
  await lab.applyLease(ns, l);
  return l;
}

async function perfdhcp(run: Run, rate: number, seconds: number): Promise<Step> {
  const { lab } = run;
  const args = perfdhcpArgs('c0', rate, MACS, seconds);
  scraping(run, true);
  const cpu0 = routerCpuMs(lab);
  const r = await lab.exec(lab.ns.guest1, 'perfdhcp', [...args, ADDR.guest], {
    timeoutMs: (seconds + 20) * 1000,
  });
  const cpuMs = routerCpuMs(lab) - cpu0;
  scraping(run, false);
  if (r.code !== 0 && r.code !== 3)
    throw new Error(`perfdhcp ${args.join(' ')} exited ${r.code}:\n${r.stderr}\n${r.stdout}`);
  const p = parsePerfdhcp(rate, seconds, r.stdout);
  return { offered: rate, rate: p.rate, dropPct: p.dropPct, cpuMs, acks: p.acks };
}

/** One step, once more if it dropped (a burst of load from elsewhere should not end the climb). */
async function step(run: Run, rate: number): Promise<Step> {
  let s = await perfdhcp(run, rate, DHCP_SECONDS);
  run.steps.push(s);
  if (s.dropPct >= CLEAN_PCT) {
    await sleep(500);
    const again = await perfdhcp(run, rate, DHCP_SECONDS);
    run.steps.push(again);
    if (again.dropPct < s.dropPct) s = again;
  }
  await sleep(300); // let the server drain
  return s;
}

/**
 * The DHCP climb of both variants, step by step alternately (who goes first alternates too): ×factor
 * from DHCP_START until each has a step with ≥ 1 % drops (down ÷factor, up to 4 steps, when the first
 * is already dirty), then DHCP_BISECT bisection steps each.
 */
async function dhcpClimb(runs: readonly Run[]): Promise<void> {
  let turn = 0;
  const inTurn = (): Run[] => (turn++ % 2 ? [...runs].reverse() : [...runs]);
  for (
    let rate = DHCP_START, n = 0;
    n < 16 && runs.some((r) => r.hi === 0);
    rate = Math.round(rate * DHCP_FACTOR), n++
  )
    for (const run of inTurn()) {
      if (run.hi !== 0) continue;
      const s = await step(run, rate);
      run.first ??= s;
      if (s.dropPct >= CLEAN_PCT) {
        run.hi = rate;
        run.dirty = s;
      } else {
        run.best = s;
        run.lo = rate;
      }
    }
  // a first step already dirty (a loaded machine): down ÷factor until one is clean
  for (let k = 1; k <= 4 && runs.some((r) => r.lo === 0); k++)
    for (const run of inTurn()) {
      if (run.lo !== 0) continue;
      const rate = Math.round(DHCP_START / DHCP_FACTOR ** k);
      const s = await step(run, rate);
      if (s.dropPct < CLEAN_PCT) {
        run.best = s;
        run.lo = rate;
      } else run.hi = rate;
    }
  for (let i = 0; i < DHCP_BISECT; i++)
    for (const run of inTurn()) {
      if (run.lo === 0 || run.hi === 0) continue;
      const mid = Math.round((run.lo + run.hi) / 2);
      const s = await step(run, mid);
      if (s.dropPct < CLEAN_PCT) {
        if (!run.best || s.rate > run.best.rate) run.best = s;
        run.lo = mid;
      } else run.hi = mid;
    }
}

async function cannon(run: Run, seconds: number, rate = 0): Promise<Cannon> {
  const { lab } = run;
  const args = [
    lab.file('cost-cannon.mjs', CANNON),
    TARGET,
    String(CONNECTIONS),
    String(seconds),
    String(rate),
  ];
  scraping(run, true);
  const r = await lab.exec(lab.ns.guest2, process.execPath, args, { timeoutMs: (seconds + 30) * 1000 });
  scraping(run, false);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.code !== 0 || !line.startsWith('{'))
    throw new Error(`autocannon in guest2 exited ${r.code}:\n${r.stderr}\n${r.stdout}`);
  return JSON.parse(line) as Cannon;
}

async function redirects(runs: readonly Run[]): Promise<void> {
  // at a fixed rate: the CPU per redirect (and the warm-up)
  for (const run of runs) {
    const cpu0 = routerCpuMs(run.lab);
    const c = await cannon(run, HTTP_FIXED_SECONDS, HTTP_RATE);
    const cpuMs = routerCpuMs(run.lab) - cpu0;
    const n = c.codes['302'] ?? 0;
    run.fixed = c;
    run.redirectCpuUs = n ? (cpuMs * 1000) / n : Number.NaN;
    run.fixedRate = n / c.duration;
    await sleep(300);
  }
  // as fast as it goes, alternately
  for (let i = 0; i < HTTP_RUNS; i++)
    for (const run of i % 2 ? [...runs].reverse() : runs) {
      const c = await cannon(run, HTTP_SECONDS);
      run.cannons.push(c);
      run.redirectRuns.push((c.codes['302'] ?? 0) / c.duration);
      await sleep(300);
    }
}

function emptyDir(dir: string): void {
  for (const e of readdirSync(dir)) rmSync(join(dir, e), { recursive: true, force: true });
}

/** Start the variant's gateway afresh; leases for guest1 and guest2; guest2 sees the portal's 302. */
async function startRun(lab: GatewayLab, v: Variant): Promise<Run> {
  writeFileSync(lab.configFile, `${JSON.stringify({ ...config(v), stateDir: lab.stateDir }, null, 2)}\n`);
  emptyDir(lab.stateDir);
  await lab.exec(lab.ns.router, 'conntrack', ['-F']);
  const gw = await lab.startGateway();
  const run: Run = {
    variant: v,
    lab,
    scraper: undefined,
    scraperOut: '',
    startMs: gw.ms,
    steps: [],
    first: undefined,
    best: undefined,
    dirty: undefined,
    lo: 0,
    hi: 0,
    redirectRuns: [],
    cannons: [],
    fixed: undefined,
    redirectCpuUs: Number.NaN,
    fixedRate: Number.NaN,
    scrape: undefined,
  };
  await Promise.all([lease(lab, lab.ns.guest1), lease(lab, lab.ns.guest2)]);
  const probe = await lab.curl(lab.ns.guest2, TARGET, ['-H', 'Host: www.example.test']);
  if (probe.code !== 302)
    throw new Error(
      `guest2 GET ${TARGET}: expected the portal's 302, got ${probe.code} ${probe.body.slice(0, 300)}`,
    );
  if (v === 'B' && SCRAPE_MS > 0) {
    const sc = lab.spawn(lab.ns.lan1, process.execPath, [
      lab.file('cost-scraper.mjs', SCRAPER),
      METRICS_URL,
      String(SCRAPE_MS),
    ]);
    run.scraper = sc;
    sc.stdout!.on('data', (b: Buffer) => (run.scraperOut += b.toString()));
    await new Promise<void>((res, rej) => {
      sc.stdout!.once('data', () => res());
      sc.once('exit', (c) => rej(new Error(`the scraper exited ${c}`)));
    });
  }
  await perfdhcp(run, 200, 1); // warm-up
  return run;
}

async function stopRun(run: Run): Promise<void> {
  const sc = run.scraper;
  if (sc) {
    const closed = new Promise<void>((res) => sc.once('close', () => res()));
    sc.kill('SIGTERM');
    await Promise.race([closed, sleep(3000)]);
    sc.kill('SIGKILL');
    const line = run.scraperOut.trim().split('\n').pop() ?? '';
    run.scrape = line.startsWith('{') ? (JSON.parse(line) as Scrape) : undefined;
    run.scraper = undefined;
  }
  await run.lab.stopGateway();
}

// ------------------------------------------------------------------ report

const fmtN = (n: number): string => (Number.isFinite(n) ? fmt(n) : '-');

const median = (xs: readonly number[]): number => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const cpuPerAck = (st: Step | undefined): number =>
  st && st.dropPct < CLEAN_PCT && st.acks > 0 ? (st.cpuMs * 1000) / st.acks : Number.NaN;

const redirectRate = (r: Run): number => Math.max(...r.redirectRuns);

function others(c: Cannon): string {
  const o = Object.entries(c.codes)
    .filter(([k]) => k !== '302')
    .map(([k, n]) => `${k}×${n}`)
    .join(' ');
  return `${o ? `, OTHER ${o}` : ''}${c.errors ? `, errors ${c.errors}` : ''}${c.timeouts ? `, timeouts ${c.timeouts}` : ''}`;
}

function roundLine(round: number, r: Run): string {
  const d = r.best;
  const x = r.dirty;
  const dhcp =
    (d
      ? `DHCP ${fmt(d.rate)}/s clean (offered ${fmt(d.offered)}/s, ${d.dropPct.toFixed(2)}% drops)`
      : `DHCP: no step under ${CLEAN_PCT}% drops`) +
    (x ? `, ${fmt(x.offered)}/s → ${fmt(x.rate)}/s ${x.dropPct.toFixed(1)}% drops` : '') +
    `, ${r.steps.length} steps; ${fmtN(cpuPerAck(r.first))} µs CPU/exchange at ${fmt(DHCP_START)}/s`;
  const http =
    `redirects ${r.redirectRuns.map(fmt).join(' and ')}/s (302×${r.cannons.map((c) => c.codes['302'] ?? 0).join('+')}` +
    `${r.cannons.map(others).join('')}); ${fmtN(r.redirectCpuUs)} µs CPU/redirect at ${fmtN(r.fixedRate)}/s` +
    `${r.fixed ? others(r.fixed) : ''}`;
  const sc = r.scrape;
  const scrape = sc
    ? `; scrapes ${sc.ok} ok/${sc.failed} failed${sc.lastError ? ` (${sc.lastError})` : ''}, ${fmt(sc.bytes)} B, ` +
      `${sc.ms.toFixed(1)} ms; at the end metanet counted ${fmt(sc.redirects)} redirects, extrusion ${fmt(sc.events)} NEW events`
    : '';
  return `round ${round} ${r.variant}: ${dhcp}; ${http}${scrape}; up in ${fmt(r.startMs)} ms`;
}

function report(rounds: readonly Record<Variant, Run>[]): string {
  const paths: [string, (r: Run) => number][] = [
    ['DHCP exchanges/s (<1% drops)', (r) => r.best?.rate ?? Number.NaN],
    ['portal redirects/s (new conn. each)', redirectRate],
    [`CPU µs per DHCP exchange at ${fmt(DHCP_START)}/s`, (r) => cpuPerAck(r.first)],
    [
      `CPU µs per redirect at ~${fmt(median(rounds.flatMap((x) => [x.A.fixedRate, x.B.fixedRate])))}/s`,
      (r) => r.redirectCpuUs,
    ],
  ];
  const rows = paths.map(([path, get]) => {
    const a = rounds.map((x) => get(x.A));
    const b = rounds.map((x) => get(x.B));
    const ratios = a.map((y, i) => b[i]! / y).filter((y) => Number.isFinite(y) && y > 0);
    return [
      path,
      fmtN(median(a.filter(Number.isFinite))),
      fmtN(median(b.filter(Number.isFinite))),
      ratios.length ? median(ratios).toFixed(3) : '-',
      ratios.length ? `${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}` : '-',
      String(ratios.length),
    ];
  });
  return table(
    ['path', ' without (median)', ' with (median)', ' ratio median', ' ratio spread (min–max)', ' rounds'],
    rows,
  );
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const started = conditions();
  const labs: GatewayLab[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const lab = await GatewayLab.create({
        config: join(REPO_ROOT, 'examples/gateway.json'),
        gatewayLog: 'warn',
        cli: CLI,
      });
      labs.push(lab);
      await lab.exec(lab.ns.lan1, 'ip', ['addr', 'add', SCRAPER_IP, 'dev', 'c0']);
    }
    process.stdout.write(
      `bench:cost — ${started}; ${ROUNDS} rounds; metanet up from ${CLI}; A and B in two labs (swapped every round), measured alternately\n` +
        `A (without) = ${LABEL.A}\nB (with) = ${LABEL.B}\n` +
        `DHCP: perfdhcp (relay, ${MACS} random MACs) climbing ×${DHCP_FACTOR} from ${DHCP_START}/s, ${DHCP_SECONDS} s a step, ` +
        `to the first step with ≥${CLEAN_PCT}% drops (tried twice), then bisected ${DHCP_BISECT} times → best clean ACKs/s. ` +
        `Redirects: autocannon from guest2 (not logged in) to ${TARGET}, ${CONNECTIONS} connections: ` +
        `${HTTP_FIXED_SECONDS} s at overallRate ${HTTP_RATE} (CPU), then the best of ${HTTP_RUNS} × ${HTTP_SECONDS} s flat out\n`,
    );
    const rounds: Record<Variant, Run>[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const order: Variant[] = round % 2 ? ['A', 'B'] : ['B', 'A'];
      const runs: Run[] = [];
      try {
        // the labs swap variants every round, so whatever differs between them cancels out
        const labOf = (v: Variant): GatewayLab => labs[(v === 'A' ? 0 : 1) ^ (round % 2 ? 0 : 1)]!;
        for (const v of order) runs.push(await startRun(labOf(v), v));
        await dhcpClimb(runs);
        await redirects(runs);
      } finally {
        for (const run of runs) await stopRun(run);
      }
      const byVariant = Object.fromEntries(runs.map((r) => [r.variant, r])) as Record<Variant, Run>;
      rounds.push(byVariant);
      for (const v of order) process.stdout.write(`${roundLine(round, byVariant[v])}\n`);
    }
    process.stdout.write(
      `\n${report(rounds)}\n\n` +
        'ratio = with / without of the same round, then the median: throughput < 1 and CPU > 1 are a cost. ' +
        'CPU = user + system of every process in the router namespace (metanet up and its children: conntrack readers, nft), ' +
        `per ACK over the climb's first step (${fmt(DHCP_START)}/s offered, when clean), per 302 over the fixed-rate run ` +
        `(overallRate ${fmt(HTTP_RATE)}; autocannon also writes one request on each socket the portal closes and counts it against the rate, so about half is answered): ` +
        'the same offered load in A and B, so these compare when throughputs do not.\n' +
        'Redirects: every request is a new TCP connection (the portal answers 302 with Connection: close and autocannon reconnects; ' +
        'the request it first writes on the closing socket is lost, mostly reset by the router), so each is a conntrack NEW event extrusion reads. ' +
        'Redirects/s: the better of the flat-out runs.\n' +
        `conditions at the end: ${conditions()}; ${((performance.now() - t0) / 1000).toFixed(0)} s in all\n`,
    );
  } finally {
    for (const lab of labs) await lab.close();
  }
}

/** Ctrl-C: the lab's handlers remove everything (and re-raise); what fails meanwhile is no error. */
let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.once(sig, () => {
    interrupted = true;
  });

main().catch((e: unknown) => {
  if (interrupted) process.stderr.write('bench:cost: interrupted; the labs are being removed\n');
  else process.stderr.write(`bench:cost: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});

/**
 * DHCP exchanges per second: perfdhcp (Kea's, Debian kea-admin) drives full DORA exchanges against
 * MetaNet's dhcpd and against Kea (and dnsmasq) as baselines, in the same lab and the same run.
 *
 *   npm run bench:dhcp -- [--servers kea,metanet[,dnsmasq]] [--rounds 3] [--rates 500,1000,…]
 *                         [--overload 8000] [--period 3] [--clients 20000]
 *                         [--node-args='--cpu-prof --cpu-prof-dir=/tmp/prof']
 *                         [--env METANET_LOG=debug,…] [--baseline DIR] [--pin 0:1|off]
 *
 * Rounds: the servers run one after the other, `--rounds` times (at least 3 for a median), the
 * order rotated each round (kea, metanet; metanet, kea; …), each round from an empty lease file.
 * The machine is shared and a single round can differ by 30–50 %: only same-round ratios count.
 * The report gives each round's ratio to Kea and the median with its spread (min–max).
 *
 * Lab: perfdhcp runs in the client namespace as a relay (it sends from port 67 with giaddr = its
 * address 10.78.0.2 on c0); each server runs alone in the router namespace on r0 (10.78.0.1/16) and
 * answers giaddr:67. Pool 10.78.1.1–10.78.250.254, `--clients` distinct MACs (perfdhcp -R), every
 * lease persisted. Each server gets a 1 s warm-up at 100/s, not counted; then the rate steps up
 * (`--rates`) until drops reach 20 % or two steps in a row have >= 1 % drops (a step with >= 1 %
 * drops is run twice, the better run kept, so a burst of load from elsewhere does not end the
 * climb); the result is the highest requested rate served with < 1 % drops. Then the overload
 * step: `--overload` per second offered (0: none), whatever the server's capacity, counting the
 * exchanges it still completes; a server that does not collapse past saturation completes about
 * its best clean rate there.
 * Drops = DISCOVERs sent without an ACK back; exchanges/s = ACKs / test period (perfdhcp's own
 * "Rate" also counts its 0.5 s exit wait, so it reads low). "rcvbuf drops" are the datagrams the
 * kernel dropped during the step for a full socket receive buffer (UdpRcvbufErrors of each
 * namespace): the server's, and perfdhcp's (whose replies are lost when it is off the CPU).
 * Many distinct clients is the point: with `--clients 1` nothing new is written per exchange and
 * dnsmasq served 2,000/s clean here, but it slows as its lease count grows (100–250/s with 20,000
 * clients), while Kea's memfile and our journal only append.
 * `--node-args` (split on spaces) and `--env` (KEY=VALUE,…) go to MetaNet's dhcpd process only: a CPU
 * profile is written when it exits at the end of its steps (one per round). `--baseline DIR` adds
 * the server `metanet-base`: MetaNet's dhcpd run from another checkout, to compare two commits in
 * the same run; DIR holds that checkout's `src`, `package.json` (ESM) and a `node_modules` symlink:
 *   mkdir -p /tmp/dhcpbase && git archive HEAD src package.json | tar -x -C /tmp/dhcpbase \
 *     && ln -s "$PWD/node_modules" /tmp/dhcpbase/node_modules
 * Each step also gives the server's CPU time per exchange (/proc/PID/stat, all threads): what an
 * exchange costs whatever share of the CPU the server got, the steadier figure on a busy machine.
 * Pinning (`--pin P:S`, default `0:1` on a machine of 2 CPUs or more, `off` to let the scheduler
 * place them): perfdhcp runs on CPUs P and the server, every thread of it (libuv's pool too), on
 * CPUs S (`taskset -c`), so the load generator and the server do not take the CPU from each
 * other. Whose limit was found the per-round table says, for the first step past each server's
 * best: rcvbuf drops at the server (the server is the limit) or at perfdhcp (the generator is:
 * it loses replies while it is off the CPU; see --perf-rcvbuf). Other work on the machine still runs on both CPUs: the report gives
 * the load average.
 * --perf-rcvbuf BYTES (default 4 MiB; 0 = off): perfdhcp runs with bench/native/rcvbuf.c preloaded
 * (built here with cc), which gives its sockets that receive buffer (SO_RCVBUFFORCE): without it,
 * replies arriving while perfdhcp is off the CPU overflow its default 208 KiB buffer and a fast
 * server's rate reads low (the drops are perfdhcp's, not the server's).
 * Needs root, perfdhcp, kea-dhcp4, dnsmasq (scripts/setup.sh installs them).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Lab } from '../test/support/lab.js';
import { type BenchNet, pinned, type RunningServer, SERVERS, type StartOptions } from './dhcp-servers.js';

export interface PerfResult {
  requested: number;
  /** Completed exchanges (ACKs) per second of the test period. */
  rate: number;
  /** perfdhcp's own figure: it divides by the whole run, exit wait included, so it reads low. */
  perfdhcpRate: number;
  discovers: number;
  acks: number;
  dropPct: number;
  avgDelayMs: number;
  /** Datagrams the kernel dropped for a full receive buffer during the step (UdpRcvbufErrors): the server's namespace, perfdhcp's. */
  rcvbufServer?: number;
  rcvbufPerf?: number;
  /**
   * The server process's CPU time (user + system, all threads) per completed exchange during the
   * step, in µs: what an exchange costs, whatever share of the CPU the server got.
   */
  cpuUsPerExchange?: number;
}

/** Read perfdhcp's report; throws when it is not one. */
export function parsePerfdhcp(requested: number, period: number, out: string): PerfResult {
  const rate = /Rate: ([\d.]+) 4-way exchanges\/second/.exec(out);
  const section = (name: string): { sent: number; received: number; delay: number } => {
    const start = out.indexOf(`***Statistics for: ${name}***`);
    if (start < 0 || !rate) throw new Error(`perfdhcp printed no ${name} statistics:\n${out.slice(0, 2000)}`);
    const s = out.slice(start);
    const n = (re: RegExp): number => Number(re.exec(s)?.[1] ?? Number.NaN);
    return {
      sent: n(/sent packets: (\d+)/),
      received: n(/received packets: (\d+)/),
      delay: n(/avg delay: ([\d.]+) ms/),
    };
  };
  const doff = section('DISCOVER-OFFER');
  const rack = section('REQUEST-ACK');
  const discovers = doff.sent;
  const acks = rack.received;
  return {
    requested,
    rate: acks / period,
    perfdhcpRate: Number(rate![1]),
    discovers,
    acks,
    dropPct: discovers > 0 ? (100 * (discovers - acks)) / discovers : 100,
    avgDelayMs: (doff.delay || 0) + (rack.delay || 0),
  };
}

const NET: BenchNet = {
  iface: 'r0',
  serverIp: '10.78.0.1',
  subnet: '10.78.0.0/16',
  poolStart: '10.78.1.1',
  poolEnd: '10.78.250.254',
  leaseTime: 3600,
};
const PERF_IP = '10.78.0.2';
const CLEAN_PCT = 1;
const GIVE_UP_PCT = 20;

/** UdpRcvbufErrors of a namespace (/proc/net/snmp): datagrams dropped for a full receive buffer. */
async function rcvbufErrors(lab: Lab, ns: string): Promise<number> {
  const r = await lab.exec(ns, 'cat', ['/proc/net/snmp']);
  const udp = r.stdout.split('\n').filter((l) => l.startsWith('Udp: '));
  const names = udp[0]?.split(/\s+/) ?? [];
  const values = udp[1]?.split(/\s+/) ?? [];
  return Number(values[names.indexOf('RcvbufErrors')] ?? Number.NaN);
}

/** CPU time of a process, user + system, all its threads, in µs (/proc/PID/stat; NaN if gone). */
function cpuUs(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1e6) / CLOCK_TICKS; // utime, stime (fields 14, 15)
  } catch {
    return Number.NaN;
  }
}
const CLOCK_TICKS = 100;

/** CPUs of perfdhcp (`taskset -c`), or undefined: not pinned. Set once from `--pin`. */
let perfCpus: string | undefined;
/** perfdhcp's environment: the receive-buffer shim (bench/native/rcvbuf.c) when --perf-rcvbuf. */
let perfEnv: NodeJS.ProcessEnv | undefined;

async function perfdhcp(
  lab: Lab,
  rate: number,
  period: number,
  clients: number,
  pid?: number,
): Promise<PerfResult> {
  const before = await Promise.all([rcvbufErrors(lab, lab.router), rcvbufErrors(lab, lab.client)]);
  const cpu0 = cpuUs(pid);
  const r = await perfdhcpRun(lab, rate, period, clients);
  const cpu = cpuUs(pid) - cpu0;
  const after = await Promise.all([rcvbufErrors(lab, lab.router), rcvbufErrors(lab, lab.client)]);
  return {
    ...r,
    rcvbufServer: after[0] - before[0],
    rcvbufPerf: after[1] - before[1],
    ...(pid !== undefined && r.acks > 0 ? { cpuUsPerExchange: cpu / r.acks } : {}),
  };
}

/**
 * perfdhcp's arguments for full DORA exchanges as a relay from `iface`: `rate` per second,
 * `clients` distinct MACs, for `seconds` of test period, a 0.5 s wait for the last answers.
 */
export function perfdhcpArgs(iface: string, rate: number, clients: number, seconds: number): string[] {
  return [
    '-4',
    '-l',
    iface,
    '-r',
    String(rate),
    '-R',
    String(clients),
    '-p',
    String(seconds),
    '-W',
    '500000',
  ];
}

async function perfdhcpRun(lab: Lab, rate: number, period: number, clients: number): Promise<PerfResult> {
  const args = perfdhcpArgs('c0', rate, clients, period);
  const r = await lab.exec(lab.client, ...pinned(perfCpus, 'perfdhcp', [...args, NET.serverIp]), {
    timeoutMs: (period + 15) * 1000,
    ...(perfEnv ? { env: perfEnv } : {}),
  });
  // perfdhcp exits 3 when anything was dropped; anything else non-zero is a failure to run.
  if (r.code !== 0 && r.code !== 3)
    throw new Error(`perfdhcp ${args.join(' ')} exited ${r.code}:\n${r.stderr}\n${r.stdout}`);
  return parsePerfdhcp(rate, period, r.stdout);
}

/** One server's run in one round: the climb, its best clean step, and the overload step. */
export interface ServerRun {
  readonly steps: PerfResult[];
  readonly best: PerfResult | undefined;
  /** The first step past the limit: the lowest rate with >= 1 % drops above the best clean one. */
  readonly limit: PerfResult | undefined;
  readonly overload: PerfResult | undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));

async function benchServer(
  lab: Lab,
  name: string,
  rates: number[],
  overload: number,
  period: number,
  clients: number,
  startOpts: StartOptions,
): Promise<ServerRun> {
  const start = name === 'metanet-base' ? SERVERS.metanet : SERVERS[name];
  if (!start) throw new Error(`unknown server ${name}; known: ${Object.keys(SERVERS).join(', ')}`);
  let server: RunningServer | undefined;
  const steps: PerfResult[] = [];
  let over: PerfResult | undefined;
  const say = (what: string, r: PerfResult): void => {
    process.stderr.write(
      `${name.padEnd(12)} ${what} ${String(r.requested).padStart(6)}/s → ${r.rate.toFixed(0).padStart(6)}/s, ` +
        `${r.dropPct.toFixed(2)}% drops, ${r.avgDelayMs.toFixed(1)} ms, ${fmt(r.cpuUsPerExchange)} µs CPU/exchange; rcvbuf drops server ${r.rcvbufServer ?? '?'}, perfdhcp ${r.rcvbufPerf ?? '?'}\n`,
    );
  };
  try {
    server = await start(lab, NET, startOpts);
    await perfdhcp(lab, 100, 1, clients); // warm-up (JIT, caches, first lease writes), not counted
    const pid = server.child.pid;
    let unclean = 0;
    for (const rate of rates) {
      let r = await perfdhcp(lab, rate, period, clients, pid);
      if (r.dropPct >= CLEAN_PCT) {
        // One retry, keeping the better run: a burst of load from elsewhere should not end the climb.
        await sleep(500);
        const again = await perfdhcp(lab, rate, period, clients, pid);
        if (again.dropPct < r.dropPct) r = again;
      }
      steps.push(r);
      say('climb   ', r);
      await sleep(500); // let the server drain between steps
      unclean = r.dropPct >= CLEAN_PCT ? unclean + 1 : 0;
      if (r.dropPct >= GIVE_UP_PCT || unclean >= 2) break;
    }
    if (overload > 0) {
      over = await perfdhcp(lab, overload, period, clients, pid);
      say('overload', over);
    }
  } finally {
    await server?.stop();
  }
  const best = bestClean(steps);
  const limit = steps.find((r) => r.dropPct >= CLEAN_PCT && r.requested > (best?.requested ?? 0));
  return { steps, best, limit, overload: over };
}

function bestClean(rs: readonly PerfResult[]): PerfResult | undefined {
  return rs.filter((r) => r.dropPct < CLEAN_PCT).sort((a, b) => b.rate - a.rate)[0];
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const fmt = (x: number | undefined, digits = 0): string =>
  x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);

/** Server order of round `i`: rotated each round, so no server always runs first (or right after another). */
export function roundOrder(servers: readonly string[], i: number): string[] {
  const k = i % servers.length;
  return [...servers.slice(k), ...servers.slice(0, k)];
}

function report(servers: readonly string[], rounds: Map<string, ServerRun>[], overload: number): string {
  const out: string[] = [];
  // Every step of every round.
  const steps: string[][] = [
    [
      'round',
      'server',
      'requested/s',
      'exchanges/s',
      'drops %',
      'avg delay ms',
      'CPU µs/exchange',
      'rcvbuf drops: server',
      'perfdhcp',
    ],
  ];
  rounds.forEach((round, i) => {
    for (const [name, run] of round)
      for (const r of [...run.steps, ...(run.overload ? [run.overload] : [])])
        steps.push([
          String(i + 1),
          name,
          `${r === run.overload ? 'overload ' : ''}${r.requested}`,
          r.rate.toFixed(0),
          r.dropPct.toFixed(2),
          r.avgDelayMs.toFixed(1),
          fmt(r.cpuUsPerExchange),
          String(r.rcvbufServer ?? '-'),
          String(r.rcvbufPerf ?? '-'),
        ]);
  });
  out.push(format(steps));
  // Per round: each server's best clean rate and its overload figure, and the ratios.
  const ref = servers.includes('kea') ? 'kea' : undefined;
  const perRound: string[][] = [
    [
      'round',
      'server',
      `best clean (< ${CLEAN_PCT}%) req/s`,
      'exchanges/s',
      ...(ref ? [`ratio to ${ref}`] : []),
      ...(overload ? [`at ${overload}/s offered`, '% of own best'] : []),
      'CPU µs/exchange (clean steps)',
      'first unclean step: req/s',
      'drops %',
      'rcvbuf drops server',
      'perfdhcp',
    ],
  ];
  const ratios = new Map<string, number[]>();
  const overPct = new Map<string, number[]>();
  const bests = new Map<string, number[]>();
  const overs = new Map<string, number[]>();
  const cpu = new Map<string, number[]>();
  const push = (m: Map<string, number[]>, k: string, v: number): void => {
    if (Number.isFinite(v)) m.set(k, [...(m.get(k) ?? []), v]);
  };
  rounds.forEach((round, i) => {
    const refBest = ref ? round.get(ref)?.best?.rate : undefined;
    for (const name of servers) {
      const run = round.get(name);
      if (!run) continue;
      const best = run.best?.rate;
      const ratio = best !== undefined && refBest ? best / refBest : undefined;
      const pct = best && run.overload ? (100 * run.overload.rate) / best : undefined;
      push(ratios, name, ratio ?? Number.NaN);
      push(overPct, name, pct ?? Number.NaN);
      push(bests, name, best ?? Number.NaN);
      push(overs, name, run.overload?.rate ?? Number.NaN);
      const cpuClean = median(
        run.steps
          .filter((r) => r.dropPct < CLEAN_PCT && r.cpuUsPerExchange !== undefined)
          .map((r) => r.cpuUsPerExchange!),
      );
      push(cpu, name, cpuClean);
      perRound.push([
        String(i + 1),
        name,
        run.best ? String(run.best.requested) : `none (even ${run.steps[0]?.requested ?? '?'}/s dropped)`,
        fmt(best),
        ...(ref ? [fmt(ratio, 2)] : []),
        ...(overload ? [fmt(run.overload?.rate), fmt(pct)] : []),
        fmt(cpuClean),
        run.limit ? String(run.limit.requested) : 'none',
        run.limit ? run.limit.dropPct.toFixed(2) : '-',
        String(run.limit?.rcvbufServer ?? '-'),
        String(run.limit?.rcvbufPerf ?? '-'),
      ]);
    }
  });
  out.push(format(perRound));
  // The medians over the rounds, with their spread (min–max).
  const spread = (xs: readonly number[] | undefined, digits: number): string =>
    xs?.length
      ? `${fmt(median(xs), digits)} (${fmt(Math.min(...xs), digits)}–${fmt(Math.max(...xs), digits)})`
      : '-';
  const summary: string[][] = [
    [
      `median (min–max) of ${rounds.length} rounds`,
      'best clean exchanges/s',
      ...(ref ? [`ratio to ${ref}`] : []),
      ...(overload ? [`exchanges/s at ${overload}/s`, '% of own best', '% of own median best'] : []),
      'CPU µs/exchange',
      ...(ref ? [`CPU ratio to ${ref}`] : []),
    ],
  ];
  const refCpu = ref ? median(cpu.get(ref) ?? []) : Number.NaN;
  for (const name of servers) {
    const ofMedian = (100 * median(overs.get(name) ?? [])) / median(bests.get(name) ?? []);
    summary.push([
      name,
      spread(bests.get(name), 0),
      ...(ref ? [spread(ratios.get(name), 2)] : []),
      ...(overload ? [spread(overs.get(name), 0), spread(overPct.get(name), 0), fmt(ofMedian)] : []),
      spread(cpu.get(name), 0),
      ...(ref ? [fmt(median(cpu.get(name) ?? []) / refCpu, 2)] : []),
    ]);
  }
  out.push(format(summary));
  return out.join('\n\n');
}

function format(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

const load = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

/** Compile bench/native/rcvbuf.c into the lab's directory (cc, as native addons are built); its path. */
function buildRcvbufShim(lab: Lab): string {
  const so = join(lab.dir, 'rcvbuf.so');
  const src = new URL('./native/rcvbuf.c', import.meta.url).pathname;
  const r = spawnSync('cc', ['-shared', '-fPIC', '-O2', '-o', so, src, '-ldl'], { encoding: 'utf8' });
  if (r.error || r.status !== 0)
    throw new Error(`--perf-rcvbuf: cannot build ${src} with cc: ${r.error?.message ?? r.stderr}`);
  return so;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      servers: { type: 'string', default: 'kea,metanet' },
      rounds: { type: 'string', default: '3' },
      rates: { type: 'string', default: '1000,2000,3000,4000,5000,6000,7000,8000,9000,10000,11000,12000' },
      overload: { type: 'string', default: '8000' },
      period: { type: 'string', default: '3' },
      clients: { type: 'string', default: '20000' },
      'node-args': { type: 'string', default: '' },
      env: { type: 'string', default: '' },
      baseline: { type: 'string' },
      pin: { type: 'string', default: cpus().length >= 2 ? '0:1' : 'off' },
      'perf-rcvbuf': { type: 'string', default: String(4 << 20) },
    },
    strict: true,
  });
  const servers = values.servers.split(',').filter(Boolean);
  const rates = values.rates.split(',').map(Number);
  const rounds = Number(values.rounds);
  const overload = Number(values.overload);
  const period = Number(values.period);
  const clients = Number(values.clients);
  if (rates.some((r) => !(r > 0)) || !(period >= 1) || !(clients >= 1))
    throw new Error('--rates must be positive numbers, --period >= 1 s, --clients >= 1');
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be an integer >= 1');
  if (!(overload >= 0)) throw new Error('--overload must be a rate >= 0 (0: no overload step)');

  const env: Record<string, string> = {};
  for (const kv of values.env.split(',').filter(Boolean)) {
    const i = kv.indexOf('=');
    if (i < 1) throw new Error(`--env wants KEY=VALUE pairs separated by commas, not ${kv}`);
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const pin = /^([\d,-]+):([\d,-]+)$/.exec(values.pin);
  if (!pin && values.pin !== 'off')
    throw new Error('--pin wants PERFDHCP_CPUS:SERVER_CPUS (e.g. 0:1) or off');
  perfCpus = pin?.[1];
  const startOpts: StartOptions = {
    nodeArgs: values['node-args'].split(' ').filter(Boolean),
    env,
    ...(pin ? { cpus: pin[2] } : {}),
  };
  if (values.baseline) servers.push('metanet-base');
  const results: Map<string, ServerRun>[] = [];
  const began = Date.now();
  const loadBefore = load();
  const rcvbuf = Number(values['perf-rcvbuf']);
  if (!Number.isInteger(rcvbuf) || rcvbuf < 0)
    throw new Error('--perf-rcvbuf wants a number of bytes (0: off)');
  await Lab.with({}, async (lab) => {
    if (rcvbuf > 0)
      perfEnv = { ...process.env, LD_PRELOAD: buildRcvbufShim(lab), RCVBUF_BYTES: String(rcvbuf) };
    await lab.exec(lab.router, 'ip', ['addr', 'add', `${NET.serverIp}/16`, 'dev', NET.iface]);
    await lab.exec(lab.client, 'ip', ['addr', 'add', `${PERF_IP}/16`, 'dev', 'c0']);
    for (let i = 0; i < rounds; i++) {
      const round = new Map<string, ServerRun>();
      results.push(round);
      const order = roundOrder(servers, i);
      process.stderr.write(`round ${i + 1}/${rounds}: ${order.join(', ')}; load average ${load()}\n`);
      for (const name of order) {
        try {
          const opts: StartOptions = {
            ...startOpts,
            tag: `-r${i + 1}`,
            ...(name === 'metanet-base' ? { root: values.baseline } : {}),
          };
          round.set(name, await benchServer(lab, name, rates, overload, period, clients, opts));
        } catch (e) {
          process.stderr.write(`${name}: ${(e as Error).message}\n`);
        }
      }
    }
  });
  console.log(
    `DHCP DORA exchanges/s, perfdhcp -R ${clients} -p ${period} as a relay, pool of ${250 * 256 - 2} addresses, ` +
      `leases persisted; ${rounds} rounds, servers alternating (order rotated each round); ` +
      `${cpus().length} CPUs, ${pin ? `perfdhcp pinned to CPU ${pin[1]}, the server to CPU ${pin[2]}` : 'not pinned'}; ` +
      `load average ${loadBefore} before, ${load()} after; ` +
      `${((Date.now() - began) / 1000).toFixed(0)} s`,
  );
  console.log(report(servers, results, overload));
}

if (import.meta.url === `file://${process.argv[1]}`)
  main().catch((e: unknown) => {
    process.stderr.write(`bench:dhcp: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });

/**
 * DHCP exchanges per second: perfdhcp (Kea's, Debian kea-admin) drives full DORA exchanges against
 * MetaNet's dhcpd and against Kea and dnsmasq as baselines, in the same lab and the same run.
 *
 *   npm run bench:dhcp -- [--servers metanet,kea,dnsmasq] [--rates 100,250,500,…]
 *                         [--period 3] [--clients 20000] [--node-args='--cpu-prof --cpu-prof-dir=/tmp/prof']
 *                         [--env METANET_LOG=debug,…] [--baseline DIR]
 *
 * Lab: perfdhcp runs in the client namespace as a relay (it sends from port 67 with giaddr = its
 * address 10.78.0.2 on c0); each server runs alone in the router namespace on r0 (10.78.0.1/16) and
 * answers giaddr:67. Pool 10.78.1.1–10.78.250.254, `--clients` distinct MACs (perfdhcp -R), every
 * lease persisted. Each server gets a 1 s warm-up at 100/s, not counted; then the rate steps up
 * until drops reach 20% (a step with >= 1% drops is run twice, the better run kept, so a burst of
 * load from elsewhere does not end the climb); the result is the highest requested rate served
 * with < 1% drops.
 * Drops = DISCOVERs sent without an ACK back; exchanges/s = ACKs / test period (perfdhcp's own
 * "Rate" also counts its 0.5 s exit wait, so it reads low).
 * Many distinct clients is the point: with `--clients 1` nothing new is written per exchange and
 * dnsmasq served 2,000/s clean here, but it slows as its lease count grows (100–250/s with 20,000
 * clients), while Kea's memfile and our journal only append.
 * `--node-args` (split on spaces) and `--env` (KEY=VALUE,…) go to MetaNet's dhcpd process only: a CPU
 * profile is written when it exits at the end of its steps. `--baseline DIR` adds the server
 * `metanet-base`: MetaNet's dhcpd run from another checkout (e.g. `git archive OLD src | tar -x -C DIR`
 * and a node_modules symlink), to compare two commits in the same run.
 * Needs root, perfdhcp, kea-dhcp4, dnsmasq (scripts/setup.sh installs them).
 */
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { Lab } from '../test/support/lab.js';
import { type BenchNet, type RunningServer, SERVERS, type StartOptions } from './dhcp-servers.js';

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

async function perfdhcp(lab: Lab, rate: number, period: number, clients: number): Promise<PerfResult> {
  const args = [
    '-4',
    '-l',
    'c0',
    '-r',
    String(rate),
    '-R',
    String(clients),
    '-p',
    String(period),
    '-W',
    '500000',
  ];
  const r = await lab.exec(lab.client, 'perfdhcp', [...args, NET.serverIp], {
    timeoutMs: (period + 15) * 1000,
  });
  // perfdhcp exits 3 when anything was dropped; anything else non-zero is a failure to run.
  if (r.code !== 0 && r.code !== 3)
    throw new Error(`perfdhcp ${args.join(' ')} exited ${r.code}:\n${r.stderr}\n${r.stdout}`);
  return parsePerfdhcp(rate, period, r.stdout);
}

async function benchServer(
  lab: Lab,
  name: string,
  rates: number[],
  period: number,
  clients: number,
  startOpts: StartOptions,
): Promise<PerfResult[]> {
  const start = name === 'metanet-base' ? SERVERS.metanet : SERVERS[name];
  if (!start) throw new Error(`unknown server ${name}; known: ${Object.keys(SERVERS).join(', ')}`);
  let server: RunningServer | undefined;
  const results: PerfResult[] = [];
  try {
    server = await start(lab, NET, startOpts);
    await perfdhcp(lab, 100, 1, clients); // warm-up (JIT, caches, first lease writes), not counted
    for (const rate of rates) {
      let r = await perfdhcp(lab, rate, period, clients);
      if (r.dropPct >= CLEAN_PCT) {
        // One retry, keeping the better run: a burst of load from elsewhere should not end the climb.
        await new Promise((res) => setTimeout(res, 500));
        const again = await perfdhcp(lab, rate, period, clients);
        if (again.dropPct < r.dropPct) r = again;
      }
      results.push(r);
      process.stderr.write(
        `${name.padEnd(8)} ${String(rate).padStart(6)}/s → ${r.rate.toFixed(0).padStart(6)}/s, ${r.dropPct.toFixed(2)}% drops\n`,
      );
      if (r.dropPct >= GIVE_UP_PCT) break;
      await new Promise((res) => setTimeout(res, 500)); // let the server drain between steps
    }
  } finally {
    await server?.stop();
  }
  return results;
}

function table(all: Map<string, PerfResult[]>): string {
  const kea = all.get('kea') ?? [];
  const keaAt = (req: number): PerfResult | undefined => kea.find((k) => k.requested === req);
  const rows: string[][] = [
    ['server', 'requested/s', 'exchanges/s', 'drops %', 'avg delay ms', 'ratio to Kea'],
  ];
  for (const [name, results] of all)
    for (const r of results) {
      const k = keaAt(r.requested);
      rows.push([
        name,
        String(r.requested),
        r.rate.toFixed(0),
        r.dropPct.toFixed(2),
        r.avgDelayMs.toFixed(1),
        k && k.rate > 0 ? (r.rate / k.rate).toFixed(2) : '-',
      ]);
    }
  const best = (rs: PerfResult[]): PerfResult | undefined =>
    rs.filter((r) => r.dropPct < CLEAN_PCT).sort((a, b) => b.rate - a.rate)[0];
  const keaBest = best(kea);
  const summary: string[][] = [
    ['server', `best rate with < ${CLEAN_PCT}% drops`, 'exchanges/s', 'ratio to Kea'],
  ];
  for (const [name, results] of all) {
    const b = best(results);
    summary.push([
      name,
      b ? String(b.requested) : `none (even ${results[0]?.requested ?? '?'}/s dropped)`,
      b ? b.rate.toFixed(0) : '-',
      b && keaBest ? (b.rate / keaBest.rate).toFixed(2) : '-',
    ]);
  }
  return `${format(rows)}\n\n${format(summary)}`;
}

function format(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      servers: { type: 'string', default: 'metanet,kea,dnsmasq' },
      rates: { type: 'string', default: '100,250,500,750,1000,1500,2000,3000,4000,6000,8000' },
      period: { type: 'string', default: '3' },
      clients: { type: 'string', default: '20000' },
      'node-args': { type: 'string', default: '' },
      env: { type: 'string', default: '' },
      baseline: { type: 'string' },
    },
    strict: true,
  });
  const servers = values.servers.split(',').filter(Boolean);
  const rates = values.rates.split(',').map(Number);
  const period = Number(values.period);
  const clients = Number(values.clients);
  if (rates.some((r) => !(r > 0)) || !(period >= 1) || !(clients >= 1))
    throw new Error('--rates must be positive numbers, --period >= 1 s, --clients >= 1');

  const env: Record<string, string> = {};
  for (const kv of values.env.split(',').filter(Boolean)) {
    const i = kv.indexOf('=');
    if (i < 1) throw new Error(`--env wants KEY=VALUE pairs separated by commas, not ${kv}`);
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const startOpts: StartOptions = { nodeArgs: values['node-args'].split(' ').filter(Boolean), env };
  if (values.baseline) servers.unshift('metanet-base');
  const all = new Map<string, PerfResult[]>();
  await Lab.with({}, async (lab) => {
    await lab.exec(lab.router, 'ip', ['addr', 'add', `${NET.serverIp}/16`, 'dev', NET.iface]);
    await lab.exec(lab.client, 'ip', ['addr', 'add', `${PERF_IP}/16`, 'dev', 'c0']);
    for (const name of servers) {
      try {
        const opts = name === 'metanet-base' ? { ...startOpts, root: values.baseline } : startOpts;
        all.set(name, await benchServer(lab, name, rates, period, clients, opts));
      } catch (e) {
        process.stderr.write(`${name}: ${(e as Error).message}\n`);
        all.set(name, []);
      }
    }
  });
  console.log(
    `DHCP DORA exchanges/s, perfdhcp -R ${clients} -p ${period} as a relay, pool of ${250 * 256 - 2} addresses, ` +
      `leases persisted; ${cpus().length} CPUs, load average ${loadavg()[0]!.toFixed(1)} at the end`,
  );
  console.log(table(all));
}

if (import.meta.url === `file://${process.argv[1]}`)
  main().catch((e: unknown) => {
    process.stderr.write(`bench:dhcp: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });

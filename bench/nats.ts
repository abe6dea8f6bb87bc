/**
 * npm run bench:nats — MetaNet between two "machines" over NATS against raw NATS request/reply
 * between the same two processes, in the same run.
 *
 * This process starts its own `nats-server -a 127.0.0.1 -p <free port>` and forks itself
 * (`responder <url>`): a bus named `benchd` attached with host `hostB`, beside a plain NATS
 * connection answering raw requests. Here a bus `bench` is attached with host `hostA`, and a plain
 * NATS connection asks the raw requests. Rows:
 *
 * - request/reply round trip (sequential): `bus.request('hostB/benchd:/echo', …)`, answered by
 *   `ctx.reply` — three NATS messages (SEND request, the one-way reply, RESULT) — against
 *   `nc.request` of a payload of the same size echoed back by the other process;
 * - send with result (sequential): `bus.send('hostB/benchd:/sink', …)` resolving with the remote
 *   chain's result — one NATS request/reply — against `nc.request` answered with a payload of
 *   RESULT's size;
 * - 100 outstanding: `post()` to a NATS address is a full request by design (a missing daemon is
 *   still reported), so a pipeline is bounded by what is in flight: 100 outstanding `bus.send`s
 *   against 100 outstanding `nc.request`s.
 *
 * Each row: best of ROUNDS (default 3) runs, MetaNet and raw interleaved. CPU µs per operation are
 * measured for the asker (this process), the responder (the child) and nats-server (/proc), to show
 * which one limits the figures. Both node processes run under tsx, as `npm run` starts them.
 * Environment: ROUNDS, N_SEQ (default 3000), N_WIN (default 20000), WINDOW (default 100).
 */
import { type ChildProcess, execFileSync, fork, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Bus } from '../src/core/bus.js';
import { silentLogger } from '../src/core/log.js';
import { msg } from '../src/core/message.js';
import { attachNats } from '../src/ipc/nats/attach.js';
import { resultFrame, sendFrame } from '../src/ipc/nats/frames.js';
import { freePort } from '../test/support/nats.js';
import { until } from '../test/support/wait.js';
import { conditions, fmt, pct, table } from './report-support.js';

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const N_SEQ = Number(process.env.N_SEQ ?? 3000);
const N_WIN = Number(process.env.N_WIN ?? 20000);
const WINDOW = Number(process.env.WINDOW ?? 100);
const PAYLOAD = { n: 1, mac: 'aa:bb:cc:dd:ee:ff' };
const ECHO = 'hostB/benchd:/echo';
const SINK = 'hostB/benchd:/sink';
/** What a MetaNet request carries on the wire (reply-to qualified as the transport does). */
const REQ_BYTES = sendFrame(
  '/echo',
  msg({ ...PAYLOAD, 'reply-to': 'hostA/bench:/system/reply/1000' }),
).length;
const SEND_BYTES = sendFrame('/sink', msg(PAYLOAD)).length;
const RESULT_BYTES = resultFrame({
  mailbox: '/sink',
  delivered: true,
  listeners: 1,
  stopped: false,
  errors: [],
  timedOut: [],
}).length;

if (process.argv[2] === 'responder') await responder(process.argv[3]!);
else await main();

/** The other "machine": a MetaNet bus on host hostB and a raw NATS responder, one process. */
async function responder(url: string): Promise<void> {
  const bus = new Bus({ name: 'benchd', logger: silentLogger });
  bus.append('/echo', function echo(m, ctx) {
    void ctx.reply(m.without('reply-to'));
  });
  bus.append('/sink', function sink() {});
  await attachNats(bus, { servers: url, host: 'hostB' });
  const nc = await connect({ servers: url });
  const result = new Uint8Array(RESULT_BYTES);
  nc.subscribe('raw.echo', { callback: (_e, m) => void m.respond(m.data) });
  nc.subscribe('raw.ack', { callback: (_e, m) => void m.respond(result) });
  await nc.flush();
  let mark = process.cpuUsage();
  process.on('message', (m: string) => {
    if (m === 'mark') mark = process.cpuUsage();
    else {
      const d = process.cpuUsage(mark);
      process.send?.(d.user + d.system);
    }
  });
  process.send?.('ready');
}

interface Run {
  /** Operations per second. */
  rate: number;
  /** Latencies (ms) of sequential runs; empty for windowed ones. */
  lat: number[];
  /** CPU µs per operation: asker, responder, nats-server. */
  cpu: [number, number, number];
}

type Op = () => Promise<unknown>;

async function main(): Promise<void> {
  const port = await freePort();
  const url = `nats://127.0.0.1:${port}`;
  const server = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let child: ChildProcess | undefined;
  let bus: Bus | undefined;
  let nc: NatsConnection | undefined;
  try {
    await until(
      async () => {
        if (server.exitCode !== null) throw new Error(`nats-server exited (${server.exitCode})`);
        return connect({ servers: url }).then(
          (c) => c.close().then(() => true),
          () => false,
        );
      },
      `nats-server on ${url}`,
      5000,
      20,
    );
    const c = fork(new URL(import.meta.url).pathname, ['responder', url], {
      execArgv: ['--import', 'tsx'],
    });
    child = c;
    await new Promise<void>((resolve, reject) => {
      c.once('message', () => resolve());
      c.once('exit', (code) => reject(new Error(`responder exited (${code}) before it was ready`)));
    });
    bus = new Bus({ name: 'bench', logger: silentLogger });
    await attachNats(bus, { servers: url, host: 'hostA' });
    nc = await connect({ servers: url });
    const b = bus;
    const n = nc;
    const reqPayload = new Uint8Array(REQ_BYTES);
    const sendPayload = new Uint8Array(SEND_BYTES);

    const cases: { name: string; mn: Op; raw: Op; windowed: boolean; unit: string }[] = [
      {
        name: 'request/reply (sequential)',
        mn: () => b.request(ECHO, PAYLOAD),
        raw: () => n.request('raw.echo', reqPayload),
        windowed: false,
        unit: 'req/s',
      },
      {
        name: 'send with result (sequential)',
        mn: () => b.send(SINK, PAYLOAD),
        raw: () => n.request('raw.ack', sendPayload),
        windowed: false,
        unit: 'send/s',
      },
      {
        name: `send, ${WINDOW} outstanding`,
        mn: () => b.send(SINK, PAYLOAD),
        raw: () => n.request('raw.ack', sendPayload),
        windowed: true,
        unit: 'send/s',
      },
    ];
    // warm up every path (JIT, subscriptions, the NATS inbox)
    for (const k of cases) for (let i = 0; i < 300; i++) await Promise.all([k.mn(), k.raw()]);

    const best = new Map<string, Run>();
    const keep = (key: string, r: Run): void => {
      const old = best.get(key);
      if (!old || r.rate > old.rate) best.set(key, r);
    };
    for (let round = 0; round < ROUNDS; round++)
      for (const k of cases)
        for (const kind of ['mn', 'raw'] as const)
          keep(`${k.name} ${kind}`, await measure(c, server.pid!, k[kind], k.windowed));

    const rows: string[][] = [];
    const cpu = (r: Run): string => r.cpu.map((x) => x.toFixed(0)).join(' / ');
    for (const k of cases) {
      const mn = best.get(`${k.name} mn`)!;
      const raw = best.get(`${k.name} raw`)!;
      if (!k.windowed)
        for (const q of [50, 99])
          rows.push([
            `${k.name.replace(' (sequential)', '')} round trip p${q}`,
            `${(pct(mn.lat, q) * 1000).toFixed(0)} µs`,
            `${(pct(raw.lat, q) * 1000).toFixed(0)} µs`,
            (pct(mn.lat, q) / pct(raw.lat, q)).toFixed(2),
            '',
            '',
          ]);
      rows.push([
        k.name,
        `${fmt(mn.rate)} ${k.unit}`,
        `${fmt(raw.rate)} ${k.unit}`,
        (mn.rate / raw.rate).toFixed(2),
        cpu(mn),
        cpu(raw),
      ]);
    }
    console.log(
      `\nbench/nats — one nats-server ${natsVersion()} on loopback, asker and responder in two processes (tsx); ` +
        `best of ${ROUNDS}; ${N_SEQ} sequential / ${N_WIN} windowed operations per run; ${conditions()}\n` +
        `payloads: request ${REQ_BYTES} B each way (raw echoes it); send ${SEND_BYTES} B, result ${RESULT_BYTES} B\n`,
    );
    console.log(
      table(
        [
          'benchmark',
          ' MetaNet',
          ' raw NATS',
          ' ratio',
          ' CPU µs/op MetaNet (asker / responder / nats-server)',
          ' CPU µs/op raw',
        ],
        rows,
      ),
    );
    console.log(
      '\nratio: latency rows MetaNet/raw (lower is better); rate rows MetaNet/raw (higher is better).' +
        '\nWhat limits the figures: three processes (asker, responder, nats-server) share the CPUs, and every' +
        '\nmessage crosses nats-server (client → server → client). A MetaNet request is three NATS messages' +
        '\n(SEND, the one-way reply, RESULT) where raw is two; a send is two, like raw, plus MessagePack' +
        '\nframes and the remote chain. CPU µs/op near 1e6/rate (one core busy) marks the process that limits.',
    );
    await verify(b);
  } finally {
    await bus?.close(100).catch(() => {});
    await nc?.close().catch(() => {});
    await stop(child);
    await stop(server);
  }
}

/** Run `op` N_SEQ times one after another, or N_WIN times with WINDOW in flight. */
async function measure(child: ChildProcess, natsPid: number, op: Op, windowed: boolean): Promise<Run> {
  const n = windowed ? N_WIN : N_SEQ;
  const lat: number[] = [];
  await ask(child, 'mark');
  const natsBefore = procCpuUs(natsPid);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  if (windowed) {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next++ < n) await op();
    };
    await Promise.all(Array.from({ length: WINDOW }, worker));
  } else
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await op();
      lat.push(performance.now() - t);
    }
  const wall = performance.now() - t0;
  const d = process.cpuUsage(cpu0);
  const childUs = await ask(child, 'cpu');
  const natsUs = procCpuUs(natsPid) - natsBefore;
  return { rate: n / (wall / 1000), lat, cpu: [(d.user + d.system) / n, childUs / n, natsUs / n] };
}

function ask(child: ChildProcess, cmd: 'mark' | 'cpu'): Promise<number> {
  return new Promise((resolve) => {
    if (cmd === 'mark') {
      child.send(cmd, () => resolve(0));
      return;
    }
    child.once('message', (m) => resolve(m as number));
    child.send(cmd);
  });
}

/** utime + stime of a process, in µs, from /proc. */
function procCpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields 14 and 15 (utime, stime), counted from 1 with pid and comm first; clock ticks of 10 ms
  return (Number(f[11]) + Number(f[12])) * 10_000;
}

/** The measured paths really went through: a last request carries its payload back. */
async function verify(bus: Bus): Promise<void> {
  const r = await bus.request(ECHO, PAYLOAD);
  if (r.str('mac') !== PAYLOAD.mac) throw new Error(`bench/nats: the echo came back wrong: ${r.toString()}`);
  const s = await bus.send(SINK, PAYLOAD);
  if (s.listeners !== 1) throw new Error(`bench/nats: the sink ran ${s.listeners} listeners, not 1`);
}

function natsVersion(): string {
  try {
    return execFileSync('nats-server', ['--version'], { encoding: 'utf8' })
      .replace(/^nats-server:\s*/, '')
      .trim();
  } catch {
    return '(version unknown)';
  }
}

async function stop(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(() => p.kill('SIGKILL'), 2000);
    p.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    p.kill('SIGTERM');
  });
}

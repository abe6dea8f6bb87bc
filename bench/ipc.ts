/**
 * npm run bench:ipc — MetaNet between two processes against raw Unix sockets, same run.
 *
 * - pipelined one-way: messages/s from this process into a daemon's mailbox (bus.post →
 *   SEND without result), against a raw writer sending frames of the same size that the other
 *   process only counts;
 * - round trip: bus.request → listener → ctx.reply, p50/p99, against a raw ping-pong of a
 *   frame of the same size;
 * - sequential: the same round trips as requests per second.
 *
 * The sides alternate, round after round (MetaNet, raw, MetaNet, raw …; with --baseline:
 * MetaNet, baseline, raw, …), after one warm-up round that is not counted. Each row's ratio is
 * taken per round against the raw side of the same round; the table prints the median over the
 * rounds and its spread (lowest–highest), so one noisy round cannot decide.
 *
 *   npm run bench:ipc [-- --rounds 5] [--baseline DIR] [--only pipe|rtt] [--prof DIR] [--pin]
 *
 *   --baseline DIR  also run the MetaNet of another source tree (DIR = …/src, e.g. a copy of the
 *                   sources before a change: `git archive HEAD src | tar -x -C /tmp/base`), in the
 *                   same rounds: the before/after of a change, measured in one run
 *   --pin           this process (the asker and the raw clients) on CPU 0, every server process
 *                   on CPU 1 (taskset, all threads): both sides in the same placement each round,
 *                   so the scheduler's choice of CPUs does not move one side's latency alone
 *   --prof DIR      write CPU profiles of the daemons (--cpu-prof) to DIR; profile this side by
 *                   running `node --cpu-prof --import tsx bench/ipc.ts …`
 * The daemons run in child processes (this file with `server`), the raw peers in another.
 * Everything runs compiled, as production does (bench/compile.ts): this file first compiles
 * itself with today's sources (and the baseline's) into node_modules/.cache/bench-ipc and runs
 * that. TSX=1 runs the sources under tsx instead (to profile this process with
 * `TSX=1 node --cpu-prof --import tsx bench/ipc.ts …`; tsx itself costs µs per round trip).
 */
import { type ChildProcess, execFileSync, fork, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type * as CoreBus from '../src/core/bus.js';
import { transpile, tsFiles } from './compile.js';
import { conditions, fmt, pct, table } from './report-support.js';

const N_PIPE = 300_000;
const N_RTT = 20_000;
const PAYLOAD = { n: 1, mac: 'aa:bb:cc:dd:ee:ff' };
const HERE = new URL(import.meta.url).pathname;
const OWN_SRC = new URL('../src', import.meta.url).pathname;
/** Run as production runs: compiled (bench/compile.ts). Under tsx (TSX=1) only to profile this process. */
const COMPILED = HERE.endsWith('.js');
const EXT = COMPILED ? '.js' : '.ts';
const ROOT = new URL('..', import.meta.url).pathname;
const OUT = join(ROOT, 'node_modules/.cache/bench-ipc');

interface Sources {
  Bus: typeof CoreBus.Bus;
  silentLogger: typeof import('../src/core/log.js').silentLogger;
  msg: typeof import('../src/core/message.js').msg;
  serveDaemon: typeof import('../src/ipc/daemon.js').serveDaemon;
  attachClient: typeof import('../src/ipc/daemon.js').attachClient;
  encodeFrame: typeof import('../src/ipc/wire.js').encodeFrame;
  F: typeof import('../src/ipc/wire.js').F;
  toWire: typeof import('../src/ipc/wire.js').toWire;
}

async function load(src: string): Promise<Sources> {
  const at = (p: string): string => pathToFileURL(join(src, p)).href;
  const [bus, log, message, daemon, wire] = await Promise.all([
    import(at(`core/bus${EXT}`)),
    import(at(`core/log${EXT}`)),
    import(at(`core/message${EXT}`)),
    import(at(`ipc/daemon${EXT}`)),
    import(at(`ipc/wire${EXT}`)),
  ]);
  return {
    Bus: bus.Bus,
    silentLogger: log.silentLogger,
    msg: message.msg,
    serveDaemon: daemon.serveDaemon,
    attachClient: daemon.attachClient,
    encodeFrame: wire.encodeFrame,
    F: wire.F,
    toWire: wire.toWire,
  };
}

// a child leaves when told (exiting normally writes its --cpu-prof profile)
if (process.argv[2] !== undefined && process.send)
  process.on('message', (m) => {
    if (m === 'exit') process.exit(0);
    // the CPU time this process used so far, µs (user + system)
    if (m === 'cpu') {
      const c = process.cpuUsage();
      process.send?.({ cpu: c.user + c.system });
    }
  });
if (process.argv[2] === 'server') await server(process.argv[3]!, process.argv[4]!, process.argv[5]!);
else if (process.argv[2] === 'raw') await rawServers(process.argv[3]!);
else if (!COMPILED && process.env.TSX !== '1') process.exitCode = await compiled();
else await main();

/**
 * Compile this bench with today's sources (and --baseline's) into OUT and run that with node,
 * with this process's node options except tsx's loader; returns its exit code.
 */
async function compiled(): Promise<number> {
  const args = process.argv.slice(2);
  const i = args.indexOf('--baseline');
  const eq = args.findIndex((a) => a.startsWith('--baseline='));
  await transpile(
    join(OUT, 'cur'),
    [...tsFiles(ROOT, 'src'), 'bench/ipc.ts', 'bench/report-support.ts', 'bench/compile.ts'],
    () => ROOT,
  );
  if (i >= 0 || eq >= 0) {
    const given = i >= 0 ? args[i + 1] : args[eq]!.slice('--baseline='.length);
    if (!given || given.startsWith('--'))
      throw new Error('--baseline needs a directory: the src of another tree');
    const src = resolve(process.cwd(), given);
    if (!existsSync(join(src, 'core/bus.ts')))
      throw new Error(`--baseline ${given}: no core/bus.ts there (give the src directory of another tree)`);
    await transpile(join(OUT, 'base/src'), tsFiles(src, '.'), () => src);
    if (i >= 0) args[i + 1] = join(OUT, 'base/src');
    else args[eq] = `--baseline=${join(OUT, 'base/src')}`;
  }
  const execArgv: string[] = [];
  for (let k = 0; k < process.execArgv.length; k++) {
    const a = process.execArgv[k]!;
    if (a === '--import' && process.execArgv[k + 1] === 'tsx') k++;
    else if (a !== '--import=tsx') execArgv.push(a);
  }
  const child = spawn(process.execPath, [...execArgv, join(OUT, 'cur/bench/ipc.js'), ...args], {
    stdio: 'inherit',
  });
  return new Promise((r) => child.on('exit', (code) => r(code ?? 1)));
}

async function server(dir: string, name: string, src: string): Promise<void> {
  const { Bus, silentLogger, serveDaemon } = await load(src);
  const bus = new Bus({ name, logger: silentLogger });
  let count = 0;
  bus.append('/count', function count_() {
    count++;
  });
  bus.append('/count/get', function get(_m, ctx) {
    void ctx.reply({ n: count });
  });
  bus.append('/echo', function echo(m, ctx) {
    void ctx.reply(m.without('reply-to'));
  });
  await serveDaemon(bus, { dir, signals: false });
  process.send?.('ready');
}

/** The raw baselines: an echo server (ping-pong) and a sink that counts frames and answers on request. */
async function rawServers(dir: string): Promise<void> {
  createServer((s) => s.pipe(s)).listen(join(dir, 'raw-echo.sock'));
  createServer((s) => {
    let frames = 0;
    let pending: Buffer = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, d]) : d;
      let off = 0;
      while (pending.length - off >= 4) {
        const len = pending.readUInt32BE(off);
        if (pending.length - off - 4 < len) break;
        if (len === 1) s.write(`${frames}\n`);
        else frames++;
        off += 4 + len;
      }
      pending = pending.subarray(off);
    });
  }).listen(join(dir, 'raw-sink.sock'));
  await new Promise((r) => setTimeout(r, 100));
  process.send?.('ready');
}

interface Figures {
  pipe: number;
  p50: number;
  p99: number;
  seq: number;
  /** CPU time of both processes per one-way message, µs. */
  pipeCpu: number;
  /** CPU time of both processes per round trip, µs. */
  rttCpu: number;
}

/** One side of the comparison: how to run each measurement once. */
interface Side {
  readonly label: string;
  pipe(): Promise<number>;
  rtt(): Promise<number[]>;
  /** CPU time used so far by this process and the side's server process, µs. */
  cpu(): Promise<number>;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string' },
      baseline: { type: 'string' },
      only: { type: 'string' },
      prof: { type: 'string' },
      pin: { type: 'boolean' },
    },
  });
  // --pin: this process (the asker, the raw clients) on CPU 0, every server on CPU 1
  const pin = values.pin === true && cpus().length >= 2;
  if (pin && spawnSync('taskset', ['-V']).error) throw new Error('--pin needs taskset (util-linux)');
  if (pin) execFileSync('taskset', ['-a', '-cp', '0', String(process.pid)], { stdio: 'ignore' });
  const rounds = Math.max(3, Number(values.rounds ?? process.env.ROUNDS ?? 5));
  const only = values.only;
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(process.cwd(), p));
  const dir = mkdtempSync(join(tmpdir(), 'mn-bench-'));
  const children: ChildProcess[] = [];
  const start = (args: string[]): Promise<() => Promise<number>> => {
    const execArgv = COMPILED ? [] : ['--import', 'tsx'];
    if (values.prof) execArgv.push('--cpu-prof', '--cpu-prof-dir', abs(values.prof));
    const child = fork(HERE, args, { execArgv });
    children.push(child);
    if (pin) execFileSync('taskset', ['-a', '-cp', '1', String(child.pid)], { stdio: 'ignore' });
    const cpu = (): Promise<number> =>
      new Promise((r) => {
        child.once('message', (m: { cpu: number }) => {
          const c = process.cpuUsage();
          r(m.cpu + c.user + c.system);
        });
        child.send('cpu');
      });
    return new Promise((r) => child.once('message', () => r(cpu)));
  };

  const own = await load(OWN_SRC);
  const frameBytes = own.encodeFrame([own.F.SEND, 0, '/count', own.toWire(own.msg(PAYLOAD))]).length;
  const sides: Side[] = [await metanet('MetaNet', OWN_SRC, 'benchd', own)];
  if (values.baseline) {
    const src = abs(values.baseline);
    sides.push(await metanet(`baseline (${src})`, src, 'benchbase', await load(src)));
  }
  const rawCpu = await start(['raw', dir]);
  sides.push({
    cpu: rawCpu,
    label: 'raw Unix socket',
    pipe: () => rawPipelined(join(dir, 'raw-sink.sock'), frameBytes),
    rtt: () => rawPingPong(join(dir, 'raw-echo.sock'), frameBytes + 40),
  });

  async function metanet(label: string, src: string, daemon: string, s: Sources): Promise<Side> {
    const cpu = await start(['server', dir, daemon, src]);
    const bus = new s.Bus({ name: `${daemon}-client-${process.pid}`, logger: s.silentLogger });
    s.attachClient(bus, { dir });
    await bus.request(`${daemon}:/echo`, PAYLOAD);
    const m = s.msg(PAYLOAD);
    return {
      label,
      cpu,
      async pipe() {
        const before = (await bus.request(`${daemon}:/count/get`, {})).int('n');
        const t = performance.now();
        for (let i = 0; i < N_PIPE; i++) {
          bus.post(`${daemon}:/count`, m);
          if ((i & 1023) === 1023) await new Promise((r) => setImmediate(r));
        }
        while ((await bus.request(`${daemon}:/count/get`, {})).int('n') < before + N_PIPE) {}
        return N_PIPE / ((performance.now() - t) / 1000);
      },
      async rtt() {
        const lat: number[] = new Array(N_RTT);
        const to = `${daemon}:/echo`;
        for (let i = 0; i < N_RTT; i++) {
          const t = performance.now();
          await bus.request(to, PAYLOAD);
          lat[i] = performance.now() - t;
        }
        return lat;
      },
    };
  }

  const figures: Figures[][] = sides.map(() => []);
  for (let r = 0; r <= rounds; r++) {
    for (let i = 0; i < sides.length; i++) {
      const side = sides[i]!;
      const f: Figures = {
        pipe: Number.NaN,
        p50: Number.NaN,
        p99: Number.NaN,
        seq: Number.NaN,
        pipeCpu: Number.NaN,
        rttCpu: Number.NaN,
      };
      if (only !== 'rtt') {
        const c0 = await side.cpu();
        f.pipe = Math.max(await side.pipe(), await side.pipe());
        f.pipeCpu = ((await side.cpu()) - c0) / (2 * N_PIPE);
      }
      if (only !== 'pipe') {
        const c0 = await side.cpu();
        const lat = await side.rtt();
        f.rttCpu = ((await side.cpu()) - c0) / N_RTT;
        f.p50 = pct(lat, 50);
        f.p99 = pct(lat, 99);
        f.seq = lat.length / (lat.reduce((x, y) => x + y, 0) / 1000);
      }
      if (r > 0) figures[i]!.push(f); // round 0 warms the JIT up
    }
  }

  const raw = figures[figures.length - 1]!;
  const rows: string[][] = [];
  const row = (what: string, key: keyof Figures, show: (x: number) => string): void => {
    if (Number.isNaN(raw[0]![key])) return;
    for (let i = 0; i < sides.length - 1; i++) {
      const ours = figures[i]!;
      const ratios = ours.map((f, k) => f[key] / raw[k]![key]);
      const cells = [
        sides.length > 2 ? `${what} — ${i === 0 ? 'MetaNet' : 'baseline'}` : what,
        show(median(ours.map((f) => f[key]))),
        show(median(raw.map((f) => f[key]))),
        median(ratios).toFixed(2),
        `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`,
        ratios.map((x) => x.toFixed(2)).join(' '),
      ];
      if (sides.length > 2) {
        const base = figures[1]!;
        const vs = ours.map((f, k) => f[key] / base[k]![key]);
        cells.push(
          i === 0
            ? `${median(vs).toFixed(2)} (${Math.min(...vs).toFixed(2)}–${Math.max(...vs).toFixed(2)})`
            : '',
        );
      }
      rows.push(cells);
    }
  };
  const us = (x: number): string => `${(x * 1000).toFixed(0)} µs`;
  row(`pipelined one-way (${frameBytes}-byte frames), msg/s`, 'pipe', fmt);
  row('request/reply round trip p50', 'p50', us);
  row('request/reply round trip p99', 'p99', us);
  row('request/reply sequential, req/s', 'seq', fmt);
  const cpu = (x: number): string => `${x.toFixed(2)} µs`;
  row('CPU per one-way message (both processes)', 'pipeCpu', cpu);
  row('CPU per round trip (both processes)', 'rttCpu', cpu);

  console.log(
    `\nbench/ipc — ${rounds} rounds alternating ${sides.map((s) => s.label).join(', ')} (after a warm-up round); ${N_PIPE.toLocaleString('en-US')} one-way messages (best of 2) and ${N_RTT.toLocaleString('en-US')} round trips per side per round; ${conditions()}\n`,
  );
  const head = ['benchmark', ' MetaNet', ' raw Unix socket', ' ratio (median)', ' spread', ' per round'];
  if (sides.length > 2) head.push(' MetaNet / baseline');
  console.log(table(head, rows));
  console.log(
    '\nratio: pipelined and sequential = MetaNet/raw throughput (higher is better); round trip = MetaNet/raw latency, CPU = MetaNet/raw CPU time (lower is better). CPU time is the sum of both processes, the least sensitive to a loaded machine',
  );
  await Promise.all(children.map((c) => new Promise((r) => c.once('exit', r).send('exit'))));
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}

async function rawPipelined(path: string, size: number): Promise<number> {
  const s = await open(path);
  const frame = Buffer.alloc(size);
  frame.writeUInt32BE(size - 4);
  const done = new Promise<void>((r) => {
    let buf = '';
    s.on('data', (d) => {
      buf += d;
      if (buf.endsWith('\n')) r();
    });
  });
  const t = performance.now();
  const batch = Buffer.concat(Array.from({ length: 1024 }, () => frame));
  for (let i = 0; i < N_PIPE; i += 1024) {
    // the same batching as the MetaNet writer: one write per loop turn
    if (!s.write(batch)) await new Promise((r) => s.once('drain', r));
    await new Promise((r) => setImmediate(r));
  }
  s.write(Buffer.from([0, 0, 0, 1, 0]));
  await done;
  const rate = N_PIPE / ((performance.now() - t) / 1000);
  s.destroy();
  return rate;
}

async function rawPingPong(path: string, size: number): Promise<number[]> {
  const s = await open(path);
  const frame = Buffer.alloc(size);
  const lat: number[] = new Array(N_RTT);
  for (let i = 0; i < N_RTT; i++) {
    const t = performance.now();
    await new Promise<void>((r) => {
      let got = 0;
      const on = (d: Buffer): void => {
        got += d.length;
        if (got >= size) {
          s.off('data', on);
          r();
        }
      };
      s.on('data', on);
      s.write(frame);
    });
    lat[i] = performance.now() - t;
  }
  s.destroy();
  return lat;
}

function open(path: string): Promise<Socket> {
  return new Promise((r) => {
    const s = connect(path, () => r(s));
  });
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
}

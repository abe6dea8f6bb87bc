/**
 * npm run bench:ipc — MetaNet between two processes against raw Unix sockets, same run.
 *
 * - pipelined one-way: messages/s from this process into a daemon's mailbox (bus.post →
 *   SEND without result), against a raw writer sending frames of the same size that the other
 *   process only counts;
 * - round trip: bus.request → listener → ctx.reply, p50/p99, against a raw ping-pong of a
 *   frame of the same size.
 * The server side runs in a child process (this file with `server`).
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bus } from '../src/core/bus.js';
import { silentLogger } from '../src/core/log.js';
import { msg } from '../src/core/message.js';
import { attachClient, serveDaemon } from '../src/ipc/daemon.js';
import { encodeFrame, F, toWire } from '../src/ipc/wire.js';

const N_PIPE = 300_000;
const N_RTT = 10_000;
const PAYLOAD = { n: 1, mac: 'aa:bb:cc:dd:ee:ff' };

if (process.argv[2] === 'server') await server(process.argv[3]!);
else await main();

async function server(dir: string): Promise<void> {
  const bus = new Bus({ name: 'benchd', logger: silentLogger });
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
  // raw baselines: an echo server (ping-pong) and a sink that counts frames and answers on request
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
  process.send?.('ready');
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mn-bench-'));
  const child = fork(new URL(import.meta.url).pathname, ['server', dir], { execArgv: ['--import', 'tsx'] });
  await new Promise<void>((r) => child.once('message', () => r()));
  const bus = new Bus({ name: `bench-${process.pid}`, logger: silentLogger });
  attachClient(bus, { dir });
  const frameBytes = encodeFrame([F.SEND, 0, '/count', toWire(msg(PAYLOAD))]).length;

  // warm up both paths
  await bus.request('benchd:/echo', PAYLOAD);
  const rows: [string, string, string, string][] = [];

  // ---- pipelined one-way ------------------------------------------------------------------
  const pipeMn = await best(3, async () => {
    const before = (await bus.request('benchd:/count/get', {})).int('n');
    const t = performance.now();
    const m = msg(PAYLOAD);
    for (let i = 0; i < N_PIPE; i++) {
      bus.post('benchd:/count', m);
      if ((i & 1023) === 1023) await new Promise((r) => setImmediate(r));
    }
    while ((await bus.request('benchd:/count/get', {})).int('n') < before + N_PIPE) {}
    return N_PIPE / ((performance.now() - t) / 1000);
  });
  const pipeRaw = await best(3, () => rawPipelined(join(dir, 'raw-sink.sock'), frameBytes));
  rows.push([
    `pipelined one-way (${frameBytes}-byte frames)`,
    `${fmt(pipeMn)} msg/s`,
    `${fmt(pipeRaw)} msg/s`,
    (pipeMn / pipeRaw).toFixed(2),
  ]);

  // ---- round trip -------------------------------------------------------------------------
  const mnLat: number[] = [];
  for (let i = 0; i < N_RTT; i++) {
    const t = performance.now();
    await bus.request('benchd:/echo', PAYLOAD);
    mnLat.push(performance.now() - t);
  }
  const rawLat = await rawPingPong(join(dir, 'raw-echo.sock'), frameBytes + 40);
  for (const q of [50, 99] as const) {
    const a = pct(mnLat, q);
    const b = pct(rawLat, q);
    rows.push([
      `request/reply round trip p${q}`,
      `${(a * 1000).toFixed(0)} µs`,
      `${(b * 1000).toFixed(0)} µs`,
      (a / b).toFixed(2),
    ]);
  }
  const rtMn = N_RTT / (mnLat.reduce((x, y) => x + y, 0) / 1000);
  const rtRaw = rawLat.length / (rawLat.reduce((x, y) => x + y, 0) / 1000);
  rows.push([
    'request/reply sequential',
    `${fmt(rtMn)} req/s`,
    `${fmt(rtRaw)} req/s`,
    (rtMn / rtRaw).toFixed(2),
  ]);

  print(rows);
  await bus.close(100);
  child.kill();
  rmSync(dir, { recursive: true, force: true });
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
  const lat: number[] = [];
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
    lat.push(performance.now() - t);
  }
  s.destroy();
  return lat;
}

function open(path: string): Promise<Socket> {
  return new Promise((r) => {
    const s = connect(path, () => r(s));
  });
}

async function best(n: number, f: () => Promise<number>): Promise<number> {
  let b = 0;
  for (let i = 0; i < n; i++) b = Math.max(b, await f());
  return b;
}

function pct(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((q / 100) * s.length))]!;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function print(rows: [string, string, string, string][]): void {
  const head: [string, string, string, string] = ['benchmark', 'MetaNet', 'raw Unix socket', 'ratio'];
  const all = [head, ...rows];
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(w[i]!)).join(' | ')} |`;
  console.log(line(head));
  console.log(`|${w.map((x) => '-'.repeat(x + 2)).join('|')}|`);
  for (const r of rows) console.log(line(r));
  console.log(
    'ratio: pipelined = MetaNet/raw throughput (higher is better); round trip = MetaNet/raw latency (lower is better)',
  );
}

/**
 * bench/bus: messages per second through chains of 1, 3 and 10 listeners, sync and async,
 * against a plain EventEmitter with the same listeners, measured in the same run.
 *
 *   npm run bench:bus                       (ROUNDS=5, N=200000 messages per trial, bursts of 1000)
 *   CHAINS=1 ROUNDS=9 npm run bench:bus     only the chains of one listener, more rounds
 *   npm run bench:bus -- --core DIR         the bus of another checkout's core (DIR = …/src/core),
 *                                           e.g. the sources before a change, for a before/after
 *
 * Rows:
 *   bus.post   fire-and-forget send (queued through the loop, chain run, no result object)
 *   bus.send   send awaiting its SendResult promise
 *   baseline   EventEmitter.emit with the same listeners (sync: the same work;
 *              async: emit does NOT await — the fair async baseline is a hand-written
 *              `for (l of ls) await l(m)` loop, shown as "await loop")
 *
 * Each row alternates its sides, round after round (bus.post, baseline, bus.send, await loop,
 * bus.post, …): a side's figure in a round is the best of TRIALS (default 2) trials of N
 * messages. The ratio is taken per round (bus / baseline of the same round); the table prints
 * the median ratio over the rounds and its spread (lowest–highest), so one noisy round cannot
 * decide. msg/s columns are medians too. Times are the process's CPU time (user + system), so
 * that waiting for a core on a loaded machine does not count; CLOCK=wall measures wall time.
 */
import { EventEmitter } from 'node:events';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type * as Core from '../src/core/index.js';
import { conditions } from './report-support.js';

const { values } = parseArgs({ options: { core: { type: 'string' } } });
const coreDir = values.core
  ? isAbsolute(values.core)
    ? values.core
    : resolve(process.cwd(), values.core)
  : undefined;
const core: typeof Core = coreDir
  ? await import(pathToFileURL(`${coreDir}/index.ts`).href)
  : await import('../src/core/index.js');
const { Bus, msg, silentLogger } = core;
type Bus = Core.Bus;
type Message = Core.Message;

const N = Number(process.env.N ?? 200_000);
const TRIALS = Number(process.env.TRIALS ?? 2);
const ROUNDS = Math.max(3, Number(process.env.ROUNDS ?? 5));
/** Chain lengths to run (CHAINS=1 for the first rows only). */
const CHAINS = (process.env.CHAINS ?? '1,3,10').split(',').map(Number);
/** Messages queued per loop turn (a burst), then awaited: how a daemon sees traffic. */
const BATCH = 1000;

let sink = 0;
const syncListener = (m: Message): undefined => {
  sink += m.str('path').length; // real listeners read a tuple or two
  return undefined;
};
const asyncListener = async (m: Message): Promise<undefined> => {
  sink += m.str('path').length; // real listeners read a tuple or two
  return undefined;
};

/**
 * The clock: the process's CPU time by default (on a machine shared with other jobs a trial's
 * wall time also counts the time the process waited for a core); CLOCK=wall for wall time.
 */
const WALL = process.env.CLOCK === 'wall';
function nowNs(): number {
  if (WALL) return Number(process.hrtime.bigint());
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}

/** One side's figure in one round: msg/s, the best of TRIALS trials. */
async function measure(fn: () => Promise<void> | void): Promise<number> {
  let bestNs = Number.POSITIVE_INFINITY;
  for (let t = 0; t < TRIALS; t++) {
    const t0 = nowNs();
    await fn();
    const ns = nowNs() - t0;
    if (ns < bestNs) bestNs = ns;
  }
  return (N / bestNs) * 1e9;
}

function busWith(k: number, async: boolean): Bus {
  const bus = new Bus({ logger: silentLogger });
  for (let i = 0; i < k; i++) bus.append('/bench/m', async ? asyncListener : syncListener);
  return bus;
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
};

const m = msg({ clientname: '/captive/server/client/1', path: '/index.html', Host: 'example.org' });

type Side = 'post' | 'send' | 'ee' | 'loop';
interface Row {
  label: string;
  ours: Side;
  base: Side;
  what: string;
}
const results: { row: Row; ours: number[]; base: number[]; ratio: number[] }[] = [];

for (const async of [false, true]) {
  for (const k of CHAINS) {
    const label = `${k} ${async ? 'async' : 'sync'}`;
    const b1 = busWith(k, async);
    const b2 = busWith(k, async);
    const ee = new EventEmitter();
    ee.setMaxListeners(20);
    for (let i = 0; i < k; i++) ee.on('m', async ? asyncListener : syncListener);
    const ls = Array.from({ length: k }, () => (async ? asyncListener : syncListener));
    const ps: Promise<unknown>[] = new Array(BATCH);
    const sides: Record<Side, () => Promise<void>> = {
      post: async () => {
        for (let i = 0; i < N; i += BATCH) {
          for (let j = 0; j < BATCH; j++) b1.post('/bench/m', m);
          await b1.settled();
        }
      },
      send: async () => {
        for (let i = 0; i < N; i += BATCH) {
          for (let j = 0; j < BATCH; j++) ps[j] = b2.send('/bench/m', m);
          await Promise.all(ps);
        }
      },
      ee: async () => {
        for (let i = 0; i < N; i++) ee.emit('m', m);
        if (async) await new Promise((r) => setImmediate(r));
      },
      loop: async () => {
        for (let i = 0; i < N; i++) for (const l of ls) await l(m);
      },
    };
    const order: Side[] = async ? ['post', 'ee', 'send', 'loop'] : ['post', 'ee', 'send'];
    for (const s of order) await sides[s](); // warm-up: JIT
    const figures: Record<Side, number[]> = { post: [], send: [], ee: [], loop: [] };
    for (let r = 0; r < ROUNDS; r++) for (const s of order) figures[s].push(await measure(sides[s]));
    await b1.close();
    await b2.close();
    const rows: Row[] = [
      { label: `${label}: bus.post`, ours: 'post', base: 'ee', what: 'EventEmitter' },
      { label: `${label}: bus.send`, ours: 'send', base: 'ee', what: 'EventEmitter' },
    ];
    if (async) rows.push({ label: `${label}: bus.post`, ours: 'post', base: 'loop', what: 'await loop' });
    for (const row of rows) {
      const ours = figures[row.ours];
      const base = figures[row.base];
      results.push({ row, ours, base, ratio: ours.map((x, i) => x / base[i]!) });
    }
  }
}

const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');
console.log(
  `\nbench/bus — core ${coreDir ?? 'src/core'}; ${N.toLocaleString('en-US')} messages per trial, best of ${TRIALS} per round, ${ROUNDS} rounds alternating bus and baseline; ${WALL ? 'wall' : 'CPU'} time; ${conditions()}\n`,
);
console.log('| chain | MetaNet msg/s | baseline msg/s | baseline | ratio (median) | spread |');
console.log('|---|---:|---:|---|---:|---:|');
for (const { row, ours, base, ratio } of results)
  console.log(
    `| ${row.label} | ${fmt(median(ours))} | ${fmt(median(base))} | ${row.what} | ${median(ratio).toFixed(2)} | ${Math.min(...ratio).toFixed(2)}–${Math.max(...ratio).toFixed(2)} |`,
  );
if (sink < 0) console.log(sink);

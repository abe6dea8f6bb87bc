/**
 * bench/bus: messages per second through chains of 1, 3 and 10 listeners, sync and async,
 * against a plain EventEmitter with the same listeners, measured in the same run.
 *
 *   npm run bench:bus            (N=200000 messages per trial in bursts of 1000, best of 5 trials)
 *
 * Rows:
 *   bus.post   fire-and-forget send (queued through the loop, chain run, no result object)
 *   bus.send   send awaiting its SendResult promise
 *   baseline   EventEmitter.emit with the same listeners (sync: the same work;
 *              async: emit does NOT await — the fair async baseline is a hand-written
 *              `for (l of ls) await l(m)` loop, shown as "await loop")
 */
import { EventEmitter } from 'node:events';
import { Bus, type Message, msg, silentLogger } from '../src/core/index.js';

const N = Number(process.env.N ?? 200_000);
const TRIALS = Number(process.env.TRIALS ?? 5);
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

async function best(fn: () => Promise<void> | void): Promise<number> {
  let bestNs = Number.POSITIVE_INFINITY;
  await fn(); // warm-up
  for (let t = 0; t < TRIALS; t++) {
    const t0 = process.hrtime.bigint();
    await fn();
    const ns = Number(process.hrtime.bigint() - t0);
    if (ns < bestNs) bestNs = ns;
  }
  return (N / bestNs) * 1e9;
}

function busWith(k: number, async: boolean): Bus {
  const bus = new Bus({ logger: silentLogger });
  for (let i = 0; i < k; i++) bus.append('/bench/m', async ? asyncListener : syncListener);
  return bus;
}

const m = msg({ clientname: '/captive/server/client/1', path: '/index.html', Host: 'example.org' });
const rows: [string, number, number, string][] = [];

for (const async of [false, true]) {
  for (const k of [1, 3, 10]) {
    const label = `${k} ${async ? 'async' : 'sync'}`;
    const b1 = busWith(k, async);
    const post = await best(async () => {
      for (let i = 0; i < N; i += BATCH) {
        for (let j = 0; j < BATCH; j++) b1.post('/bench/m', m);
        await b1.settled();
      }
    });
    await b1.close();
    const b2 = busWith(k, async);
    const send = await best(async () => {
      const ps: Promise<unknown>[] = new Array(BATCH);
      for (let i = 0; i < N; i += BATCH) {
        for (let j = 0; j < BATCH; j++) ps[j] = b2.send('/bench/m', m);
        await Promise.all(ps);
      }
    });
    await b2.close();

    const ee = new EventEmitter();
    ee.setMaxListeners(20);
    for (let i = 0; i < k; i++) ee.on('m', async ? asyncListener : syncListener);
    const base = await best(async () => {
      for (let i = 0; i < N; i++) ee.emit('m', m);
      if (async) await new Promise((r) => setImmediate(r));
    });
    rows.push([`${label}: bus.post`, post, base, 'EventEmitter']);
    rows.push([`${label}: bus.send`, send, base, 'EventEmitter']);
    if (async) {
      const ls = Array.from({ length: k }, () => asyncListener);
      const loop = await best(async () => {
        for (let i = 0; i < N; i++) for (const l of ls) await l(m);
      });
      rows.push([`${label}: bus.post`, post, loop, 'await loop']);
    }
  }
}

const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');
console.log(
  `\nbench/bus — ${N.toLocaleString('en-US')} messages per trial, best of ${TRIALS}; node ${process.version}\n`,
);
console.log('| chain | MetaNet msg/s | baseline msg/s | baseline | ratio |');
console.log('|---|---:|---:|---|---:|');
for (const [label, ours, base, what] of rows)
  console.log(`| ${label} | ${fmt(ours)} | ${fmt(base)} | ${what} | ${(ours / base).toFixed(2)} |`);
if (sink < 0) console.log(sink);

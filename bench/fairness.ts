/**
 * npm run bench:fairness — what the shaper does for two guests sharing a capped line, against the
 * same line without it, in the same run (test/services/shaper/fairness-lab.ts):
 *
 *   inet (iperf3 servers) ── line (HTB cap LINE each way, 100-frame pfifo) ── router (br-guest + ifb) ── 2 guests
 *
 * Guest A runs 8 parallel TCP streams, guest B one, at the same time (cubic, `-O 1`, SECONDS
 * measured), download (iperf3 -R) and upload. Setups, interleaved per round:
 *
 * - line only: no shaper (the baseline: the line's own FIFO decides);
 * - shaper, uplink 90% of the line (the recommended setting): per-guest HTB classes;
 * - shaper, uplink 100% of the line: the same classes, but the line's queue, not the router's, fills.
 *
 * Then the cap: A capped at CAP each way (B uncapped, both running): A's goodput ÷ CAP. Goodput is
 * TCP payload: the class counts whole frames (1514 bytes for 1448 of payload), so a cap that is
 * exact on the wire reads ~4.4% low here.
 *
 * Then the cost of a change: `/add` then `/remove` of one guest through the service (one long-lived
 * `tc -batch`) with N guests already shaped, against the same tc lines given to a new
 * `ip netns exec NS tc -batch -` process per change (spawn to exit).
 *
 * Each figure: median of ROUNDS (default 2). Needs root (namespaces), tc and iperf3 (Debian:
 * apt-get install iperf3). Environment: ROUNDS, SECONDS (default 5), LINE (bits/s, default 20e6),
 * CAP (default 5e6), COST_N (default 1,50,250), COST_REPS (default 20).
 */
import { execFile, execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { Bus } from '../src/core/bus.js';
import { silentLogger } from '../src/core/log.js';
import { classesOf, upsert } from '../src/services/shaper/guests.js';
import { installShaperService, type ShaperService } from '../src/services/shaper/index.js';
import { clearLines, diffLines, redirectLines, type Tree, treeLines } from '../src/services/shaper/tc.js';
import { FairnessLab } from '../test/services/shaper/fairness-lab.js';
import { conditions, ms, pct, table } from './report-support.js';

const ROUNDS = Number(process.env.ROUNDS ?? 2);
const SECONDS = Number(process.env.SECONDS ?? 5);
const LINE = Number(process.env.LINE ?? 20_000_000);
const CAP = Number(process.env.CAP ?? 5_000_000);
const COST_N = (process.env.COST_N ?? '1,50,250').split(',').map(Number);
const COST_REPS = Number(process.env.COST_REPS ?? 20);
const PORTS = [5201, 5202];

type Setup = 'line' | 'shaper90' | 'shaper100';
const SETUPS: readonly Setup[] = ['line', 'shaper90', 'shaper100'];
const LABEL: Record<Setup, string> = {
  line: 'line only (no shaper: baseline)',
  shaper90: 'shaper, uplink 90% of the line',
  shaper100: 'shaper, uplink 100% of the line',
};
const DIRS = [
  { name: 'download', reverse: true },
  { name: 'upload', reverse: false },
] as const;

const mbit = (bps: number): string => (bps / 1e6).toFixed(2);
const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error('bench/fairness needs root (network namespaces, tc): sudo npm run bench:fairness');
    process.exit(1);
  }
  for (const [tool, arg] of [
    ['iperf3', '--version'],
    ['tc', '-V'],
  ] as const) {
    try {
      execFileSync(tool, [arg], { stdio: 'ignore' });
    } catch {
      console.error(
        `bench/fairness needs ${tool} (Debian: apt-get install ${tool === 'tc' ? 'iproute2' : tool})`,
      );
      process.exit(1);
    }
  }
  const lab = await FairnessLab.create({ lineRate: LINE });
  const bus = new Bus({ name: 'fairbench', logger: silentLogger });
  let shaper: ShaperService | undefined;
  const tc = ['ip', 'netns', 'exec', lab.router, 'tc'];
  const a = lab.guestIp(0);
  const b = lab.guestIp(1);
  const request = async (path: string, init: Record<string, string | number>): Promise<void> => {
    const r = await bus.request(path, init);
    if (r.has('error')) throw new Error(`bench/fairness: ${path}: ${r.str('error')}`);
  };
  /** The shaper with its uplink at `fraction` of the line, both guests shaped; or none. */
  const use = async (fraction: number | undefined, caps: { a?: number } = {}): Promise<void> => {
    await shaper?.close();
    shaper = undefined;
    if (fraction === undefined) return;
    const uplink = Math.round(LINE * fraction);
    shaper = await installShaperService(bus, {
      devices: lab.device,
      uplinkDown: uplink,
      uplinkUp: uplink,
      tc,
    });
    await request(`${shaper.name}/add`, { ip: a, 'rate-up': caps.a ?? 0, 'rate-down': caps.a ?? 0 });
    await request(`${shaper.name}/add`, { ip: b });
  };
  const race = async (reverse: boolean): Promise<[number, number]> => {
    const [x, y] = await Promise.all([
      lab.iperf(0, PORTS[0]!, { streams: 8, seconds: SECONDS, reverse }),
      lab.iperf(1, PORTS[1]!, { streams: 1, seconds: SECONDS, reverse }),
    ]);
    return [x.bps, y.bps];
  };

  try {
    await lab.iperfServers(PORTS);
    const got = new Map<string, { a: number[]; b: number[] }>();
    const cell = (k: string): { a: number[]; b: number[] } => {
      let c = got.get(k);
      if (!c) got.set(k, (c = { a: [], b: [] }));
      return c;
    };
    for (let round = 0; round < ROUNDS; round++) {
      for (const setup of SETUPS) {
        await use(setup === 'line' ? undefined : setup === 'shaper90' ? 0.9 : 1);
        for (const d of DIRS) {
          const [x, y] = await race(d.reverse);
          cell(`${setup} ${d.name}`).a.push(x);
          cell(`${setup} ${d.name}`).b.push(y);
          process.stderr.write(
            `round ${round + 1} ${setup} ${d.name}: A ${mbit(x)} B ${mbit(y)} Mbit/s (B ${((100 * y) / (x + y)).toFixed(0)}%)\n`,
          );
        }
      }
      await use(0.9, { a: CAP });
      for (const d of DIRS) {
        const [x, y] = await race(d.reverse);
        cell(`cap ${d.name}`).a.push(x);
        cell(`cap ${d.name}`).b.push(y);
        process.stderr.write(
          `round ${round + 1} cap ${d.name}: A ${mbit(x)} (cap ${mbit(CAP)}) B ${mbit(y)} Mbit/s\n`,
        );
      }
    }

    const rows: string[][] = [];
    for (const d of DIRS) {
      const base = got.get(`line ${d.name}`);
      if (!base) continue; // ROUNDS=0: the cost table only
      for (const setup of SETUPS) {
        const c = got.get(`${setup} ${d.name}`)!;
        const [x, y] = [median(c.a), median(c.b)];
        rows.push([
          d.name,
          LABEL[setup],
          mbit(LINE),
          mbit(x),
          mbit(y),
          mbit(x + y),
          `${((100 * y) / (x + y)).toFixed(1)}%`,
          (y / median(base.b)).toFixed(2),
        ]);
      }
    }
    const capRows = DIRS.flatMap((d) => {
      const c = got.get(`cap ${d.name}`);
      if (!c) return [];
      const [x, y] = [median(c.a), median(c.b)];
      return [[d.name, mbit(CAP), mbit(x), `${(100 * (x / CAP - 1)).toFixed(1)}%`, mbit(y)]];
    });

    // The cost of a change.
    await use(undefined);
    const costRows: string[][] = [];
    for (const n of COST_N) {
      const uplink = Math.round(LINE * 0.9);
      const svc = await installShaperService(bus, {
        devices: lab.device,
        uplinkDown: uplink,
        uplinkUp: uplink,
        tc,
      });
      shaper = svc;
      const ip = (i: number): string => `10.79.${i >> 8}.${i & 255}`;
      for (let i = 0; i < n; i++) await request(`${svc.name}/add`, { ip: ip(i) });
      const extra = '10.80.0.1';
      const viaService: number[] = [];
      for (let r = 0; r < COST_REPS; r++) {
        const t0 = performance.now();
        await request(`${svc.name}/add`, { ip: extra });
        const t1 = performance.now();
        await request(`${svc.name}/remove`, { ip: extra });
        viaService.push(t1 - t0, performance.now() - t1);
      }
      await svc.close();
      shaper = undefined;
      // The same lines, a process per change: the same two trees built by hand (device + an ifb).
      const trees: Tree[] = [
        { dev: lab.device, key: 'dst', uplink, leaf: 'pfifo', queueMs: 50 },
        { dev: 'ifb-bench', key: 'src', uplink, leaf: 'pfifo', queueMs: 50 },
      ];
      const dirOf = (t: Tree): 'up' | 'down' => (t.key === 'src' ? 'up' : 'down');
      let guests = upsert([], ip(0), 0, 0);
      for (let i = 1; i < n; i++) guests = upsert(guests, ip(i), 0, 0);
      const withExtra = upsert(guests, extra, 0, 0);
      const diff = (from: typeof guests, to: typeof guests) =>
        trees.flatMap((t) =>
          diffLines(t, classesOf(from, dirOf(t), uplink), classesOf(to, dirOf(t), uplink)),
        );
      await lab.exec(lab.router, 'ip', ['link', 'add', 'ifb-bench', 'type', 'ifb']);
      await lab.exec(lab.router, 'ip', ['link', 'set', 'ifb-bench', 'up']);
      await batch(lab.router, clearLines(lab.device, true), true);
      await batch(lab.router, [
        ...trees.flatMap((t) => treeLines(t, classesOf(guests, dirOf(t), uplink))),
        ...redirectLines(lab.device, 'ifb-bench'),
      ]);
      const addLines = diff(guests, withExtra);
      const removeLines = diff(withExtra, guests);
      const perProcess: number[] = [];
      for (let r = 0; r < COST_REPS; r++) {
        let t = performance.now();
        await batch(lab.router, addLines);
        perProcess.push(performance.now() - t);
        t = performance.now();
        await batch(lab.router, removeLines);
        perProcess.push(performance.now() - t);
      }
      await batch(lab.router, clearLines(lab.device, true), true);
      await lab.exec(lab.router, 'ip', ['link', 'del', 'ifb-bench']);
      costRows.push([
        String(n),
        `${addLines.length} + ${removeLines.length}`,
        `${ms(pct(viaService, 50))} / ${ms(pct(viaService, 90))}`,
        `${ms(pct(perProcess, 50))} / ${ms(pct(perProcess, 90))}`,
        (pct(perProcess, 50) / pct(viaService, 50)).toFixed(1),
      ]);
      process.stderr.write(`cost with ${n} guests: ${costRows.at(-1)!.slice(1).join(', ')}\n`);
    }

    console.log(
      `\nbench/fairness — line ${mbit(LINE)} Mbit/s each way (HTB + 100-frame pfifo in its own namespace); ` +
        `guest A: 8 TCP streams, guest B: 1 (cubic, gso_max_segs 1 on senders), at the same time, ` +
        `${SECONDS} s after 1 s omitted; median of ${ROUNDS} rounds, setups interleaved; ${conditions()}\n`,
    );
    console.log(
      table(
        [
          'direction',
          'setup',
          ' line Mbit/s',
          ' A (8 streams) Mbit/s',
          ' B (1 stream) Mbit/s',
          ' A+B',
          " B's share",
          ' B ÷ B without shaper',
        ],
        rows,
      ),
    );
    console.log(
      `\nCap accuracy: A capped at ${mbit(CAP)} Mbit/s each way (shaper at 90%), B uncapped, both running.\n`,
    );
    console.log(
      table([' direction', ' cap Mbit/s', ' A got Mbit/s', ' A ÷ cap − 1', ' B got Mbit/s'], capRows),
    );
    console.log(
      `\nCost of a change: one guest's /add, then its /remove, with N guests shaped (one device + ifb), ` +
        `${COST_REPS} of each; p50 / p90 per change.\n`,
    );
    console.log(
      table(
        [
          ' guests shaped',
          ' tc lines per login+logout',
          ' via the service (long-lived tc -batch)',
          ' tc -batch - process per change',
          ' process ÷ service',
        ],
        costRows,
      ),
    );
    console.log(
      '\nGoodput is TCP payload as iperf3 counts it; HTB counts whole frames (1514 bytes carry 1448 of' +
        '\npayload), so an exact cap reads ~4.4% low. "B\'s share" = B ÷ (A + B). Both cost columns run' +
        "\nthe same lines (the device's tree and the ifb's); the per-process one includes `ip netns exec`" +
        '\n(setns + exec), which the service pays once, at start.',
    );
  } finally {
    await shaper?.close().catch(() => {});
    await bus.close(100).catch(() => {});
    await lab.close();
  }
}

/** One `ip netns exec NS tc -batch -` with these lines; fails with tc's text unless `lenient`. */
function batch(ns: string, lines: readonly { line: string }[], lenient = false): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile('ip', ['netns', 'exec', ns, 'tc', '-force', '-batch', '-'], (err, _o, stderr) =>
      err && !lenient ? reject(new Error(`bench/fairness: tc refused: ${stderr.trim()}`)) : resolve(),
    );
    child.stdin?.end(`${lines.map((l) => l.line).join('\n')}\n`);
  });
}

await main();

/**
 * What extrusion detection costs, measured (docs/apps/extrusion.md, "Cost"): run as root with
 * `node --expose-gc --import tsx test/apps/extrusion/cost-lab.ts [--seconds 5] [--rate 2000]`.
 *
 * Namespaces: guests (many addresses on one veth) ── router (forwarding, conntrack) ── server. A
 * load generator in the guests' namespace opens tcp connections from `--guests` source addresses
 * to the server at `--rate` per second (each one a conntrack NEW event on the router; the server
 * answers RST, so flows are short, like a scan's). Rounds:
 *
 * 1. no reader: the generator alone (the kernel's own conntrack cost is in every round);
 * 2. `conntrack -E -e NEW -s <guests>` (default text format), read by this process: the reader's
 *    CPU (from /proc) and this process's CPU for parsing and the detectors, per event;
 * 3. the same with `-o xml` read and discarded: the reader's CPU and bytes per event;
 * 4. the filter at work: events from addresses outside the watched subnet, reader CPU per event.
 *
 * Then, in-process: the detectors' memory per held event and per guest (heap, after gc), and
 * their CPU per event without any I/O.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Detectors } from '../../../src/apps/extrusion/detectors.js';
import { ConntrackEvents, parseConntrackLine, procTicks } from '../../../src/apps/extrusion/events.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    rate: { type: 'string', default: '2000' },
    guests: { type: 'string', default: '50' },
  },
});
const SECONDS = Number(values.seconds);
const RATE = Number(values.rate);
const GUESTS = Number(values.guests);
const P = `xtrcost${process.pid}`;
const NS = { g: `${P}-g`, r: `${P}-r`, s: `${P}-s` };
const gen = join(tmpdir(), `${P}-gen.mjs`);

function sh(cmd: string): void {
  execFileSync('sh', ['-ec', cmd], { stdio: ['ignore', 'ignore', 'inherit'] });
}

function setup(): void {
  sh(
    [
      ...Object.values(NS).map((n) => `ip netns add ${n}`),
      `ip link add g0 netns ${NS.g} type veth peer name r0 netns ${NS.r}`,
      `ip link add r1 netns ${NS.r} type veth peer name s0 netns ${NS.s}`,
      `ip -n ${NS.g} link set lo up`,
      `ip -n ${NS.g} link set g0 up`,
      `ip -n ${NS.r} link set r0 up`,
      `ip -n ${NS.r} link set r1 up`,
      `ip -n ${NS.s} link set lo up`,
      `ip -n ${NS.s} link set s0 up`,
      `ip -n ${NS.r} addr add 10.20.0.1/16 dev r0`,
      `ip -n ${NS.r} addr add 10.30.0.1/16 dev r0`,
      `ip -n ${NS.r} addr add 10.99.0.2/24 dev r1`,
      `ip -n ${NS.s} addr add 10.99.0.1/24 dev s0`,
      `ip -n ${NS.s} route add 10.0.0.0/8 via 10.99.0.2`,
      `ip netns exec ${NS.r} sysctl -qw net.ipv4.ip_forward=1`,
    ].join('\n'),
  );
  const batch = [];
  for (let i = 0; i < GUESTS; i++) {
    batch.push(`addr add 10.20.${1 + (i >> 8)}.${i & 255}/16 dev g0`);
    batch.push(`addr add 10.30.${1 + (i >> 8)}.${i & 255}/16 dev g0`);
  }
  batch.push('route add default via 10.20.0.1');
  execFileSync('ip', ['-n', NS.g, '-batch', '-'], { input: `${batch.join('\n')}\n` });
  // conntrack on the router: a filter chain with a ct expression makes it track forwarded flows
  execFileSync('ip', ['netns', 'exec', NS.r, 'nft', '-f', '-'], {
    input:
      'table inet cost {\n  chain f {\n    type filter hook forward priority 0;\n    ct state new counter\n  }\n}\n',
  });
  writeFileSync(
    gen,
    `import net from 'node:net';
const [rate, seconds, guests, net16] = process.argv.slice(2).map(String);
const n = Number(guests);
let made = 0, i = 0;
const end = Date.now() + Number(seconds) * 1000;
const perTick = Math.max(1, Math.round(Number(rate) / 100));
const t = setInterval(() => {
  if (Date.now() >= end) { clearInterval(t); setTimeout(() => { console.log(made); process.exit(0); }, 300); return; }
  for (let k = 0; k < perTick; k++) {
    const g = i++ % n;
    const s = net.connect({ host: '10.99.0.1', port: 1 + (i % 60000), localAddress: '10.' + net16 + '.' + (1 + (g >> 8)) + '.' + (g & 255) });
    s.on('error', () => {}); s.on('connect', () => s.destroy());
    made++;
  }
}, 10);
`,
  );
}

function teardown(): void {
  for (const n of Object.values(NS)) {
    try {
      const pids = execFileSync('ip', ['netns', 'pids', n], { encoding: 'utf8' })
        .split(/\s+/)
        .filter(Boolean);
      for (const p of pids) process.kill(Number(p), 'SIGKILL');
    } catch {
      // gone
    }
    try {
      execFileSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
    } catch {
      // gone
    }
  }
}

/** Run the generator from the 10.20 (watched) or 10.30 (not watched) addresses; resolves with connections made. */
function generate(net16: '20' | '30'): Promise<{ made: number; genCpuMs: number }> {
  return new Promise((resolve, reject) => {
    const c: ChildProcess = spawn(
      'ip',
      ['netns', 'exec', NS.g, process.execPath, gen, String(RATE), String(SECONDS), String(GUESTS), net16],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    let ticks = 0;
    const sample = setInterval(() => {
      if (c.pid !== undefined) ticks = procTicks(c.pid) ?? ticks;
    }, 200);
    c.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    c.on('error', reject);
    c.on('exit', () => {
      clearInterval(sample);
      resolve({ made: Number(out.trim()), genCpuMs: ticks * 10 });
    });
  });
}

const cpuMs = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1000;
const us = (ms: number, n: number): string => (n > 0 ? ((ms * 1000) / n).toFixed(1) : '-');

async function roundPipeline(): Promise<void> {
  const det = new Detectors({
    windowMs: 60_000,
    rules: {
      portScanPorts: 100,
      portScanHosts: 250,
      hostsExcept: [80, 443],
      smtpCount: 20,
      smtpPorts: [25, 465, 587],
      floodCount: 1000,
      blocklistCount: 1,
      blocklist: ['198.51.100.0/24'],
    },
    limits: { perGuest: 4096, guests: 4096, events: 262_144, sample: 10 },
    subnets: ['10.20.0.0/16'],
  });
  let found = 0;
  const reader = new ConntrackEvents({
    subnets: ['10.20.0.0/16'],
    commandPrefix: ['ip', 'netns', 'exec', NS.r],
    onEvent: (ev) => {
      found += det.observe(ev, Date.now()).length;
    },
    onTrouble: (what) => process.stderr.write(`  trouble: ${what}\n`),
  });
  await reader.start();
  const before = process.cpuUsage();
  const r0 = reader.cpuMs() ?? 0;
  const g = await generate('20');
  await new Promise((r) => setTimeout(r, 500));
  const node = cpuMs(process.cpuUsage(before));
  const rd = (reader.cpuMs() ?? 0) - r0;
  const n = reader.counters.events;
  await reader.close();
  console.log(
    `reader (text) + detectors: ${g.made} connections, generator ${g.genCpuMs} ms CPU, ${n} events (${reader.counters.overflows} overflows), ` +
      `conntrack ${rd} ms = ${us(rd, n)} µs/event; this process (read, parse, detect, idle loop) ${node.toFixed(0)} ms = ${us(node, n)} µs/event; ` +
      `${(reader.counters.bytes / Math.max(1, n)).toFixed(0)} bytes/event; detections ${found}; held ${det.size().events}`,
  );
}

async function roundRaw(label: string, args: string[], net16: '20' | '30'): Promise<void> {
  const c = spawn('ip', ['netns', 'exec', NS.r, 'conntrack', '-E', '-e', 'NEW', '-f', 'ipv4', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let bytes = 0;
  let lines = 0;
  c.stdout.on('data', (d: Buffer) => {
    bytes += d.length;
    for (const b of d) if (b === 10) lines++;
  });
  await new Promise((r) => setTimeout(r, 300));
  const t0 = procTicks(c.pid!) ?? 0;
  const g = await generate(net16);
  await new Promise((r) => setTimeout(r, 500));
  const rd = ((procTicks(c.pid!) ?? 0) - t0) * 10;
  c.kill();
  console.log(
    `${label}: ${g.made} connections, generator ${g.genCpuMs} ms CPU, ${lines} lines, ${(bytes / Math.max(1, lines)).toFixed(0)} bytes/line, conntrack ${rd} ms CPU = ${us(rd, g.made)} µs/connection`,
  );
}

/** Detectors with every rule off (what is measured is the windows). */
const mk = (perGuest: number): Detectors =>
  new Detectors({
    windowMs: 60_000,
    rules: {
      portScanPorts: 0,
      portScanHosts: 0,
      smtpCount: 0,
      smtpPorts: [25],
      floodCount: 0,
      blocklistCount: 0,
      blocklist: [],
    },
    limits: { perGuest, guests: 100_000, events: 100_000_000, sample: 10 },
    subnets: ['10.0.0.0/8'],
  });

function inProcess(): void {
  const lines: string[] = [];
  for (let i = 0; i < 1000; i++)
    lines.push(
      `    [NEW] tcp      6 120 SYN_SENT src=10.20.${i >> 8}.${i & 255} dst=93.184.${i % 7}.${i % 200} sport=${40000 + i} dport=${1 + (i % 1000)} [UNREPLIED] src=93.184.${i % 7}.${i % 200} dst=10.20.${i >> 8}.${i & 255} sport=${1 + (i % 1000)} dport=${40000 + i}`,
    );
  // parse
  let t = process.cpuUsage();
  let n = 0;
  for (let k = 0; k < 300; k++) for (const l of lines) if (parseConntrackLine(l)) n++;
  const parseMs = cpuMs(process.cpuUsage(t));
  // detect: 1000 guests, each with a window of 100 events (distinct ports and hosts)
  const d = mk(4096);
  const evs = lines.map((l) => parseConntrackLine(l)!);
  t = process.cpuUsage();
  let m = 0;
  for (let k = 0; k < 300; k++) for (const e of evs) d.observe(e, k * 10 + (m++ % 10));
  const detMs = cpuMs(process.cpuUsage(t));
  console.log(
    `in process: parse ${us(parseMs, n)} µs/line, detectors ${us(detMs, m)} µs/event (${d.size().guests} guests, ${d.size().events} held)`,
  );
}

/** Heap a detector holding `guests` × `per` events takes (after gc): its own frame, so nothing else lives on. */
function heapOf(gc: () => void, guests: number, per: number): { bytes: number; held: number } {
  gc();
  gc();
  const h0 = process.memoryUsage().heapUsed;
  const det = mk(4096);
  for (let k = 0; k < per; k++)
    for (let g = 0; g < guests; g++)
      det.observe(
        {
          src: `10.${20 + (g >> 16)}.${(g >> 8) & 255}.${g & 255}`,
          dst: `93.184.${k & 255}.${(k * 7 + g) & 255}`,
          protonum: 6,
          dport: 1 + ((k * 13 + g) % 5000),
        },
        k,
      );
  gc();
  gc();
  const bytes = process.memoryUsage().heapUsed - h0;
  return { bytes, held: det.size().events };
}

/** Heap per held event and per guest. */
function memory(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) {
    console.log('memory: run with node --expose-gc for the memory figures');
    return;
  }
  for (const [guests, per] of [
    [1000, 100],
    [1000, 1000],
    [250, 4096],
  ] as const) {
    const { bytes, held } = heapOf(gc, guests, per);
    console.log(
      `memory: ${guests} guests × ${per} events in the window: ${(bytes / 1048576).toFixed(1)} MiB heap = ${(bytes / held).toFixed(0)} bytes/event, ${(bytes / guests / 1024).toFixed(1)} KiB/guest`,
    );
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('cost-lab: needs root (network namespaces)');
  console.log(`cost lab: ${RATE}/s new tcp connections for ${SECONDS} s from ${GUESTS} guests`);
  inProcess();
  memory();
  try {
    setup();
    const base = await generate('20');
    console.log(`no reader: ${base.made} connections, generator ${base.genCpuMs} ms CPU`);
    await roundPipeline();
    await roundRaw('reader -o xml, discarded', ['-s', '10.20.0.0/16', '-o', 'xml'], '20');
    await roundRaw('reader (text), discarded', ['-s', '10.20.0.0/16'], '20');
    await roundRaw('reader (text), traffic from an unwatched subnet', ['-s', '10.20.0.0/16'], '30');
    await roundRaw('reader (text), no filter, traffic from an unwatched subnet', [], '30');
  } finally {
    teardown();
  }
}

process.on('SIGINT', () => {
  teardown();
  process.exit(130);
});
await main();

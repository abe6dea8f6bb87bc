/**
 * npm run bench:footprint — memory of the gateway against bare Node, in one run:
 *
 *   1. bare `node -e` (a process that idles);
 *   2. an empty daemon (`metanet daemon empty`);
 *   3. `metanet up` with the example stack (dhcpd, dns, portal; mailproxy named but disabled, as in
 *      examples/gateway.json) idle, then after `--guests` (1,000) DHCP leases, then after as many
 *      guests also logged in through the portal;
 *
 * each as the RSS of the node process itself (/proc/PID/status VmRSS; the `nft`/`conntrack`
 * children the portal runs are counted apart), its heap used, and the ratio to bare node. The
 * goal: the whole stack in one process within 1.5× bare node's RSS. A second table
 * weighs what the stack imports: one process per package or module that only imports it.
 *
 *   npm run bench:footprint -- [--guests 1000] [--rate 500] [--exchanges 3000]
 *                              [--concurrency 20] [--settle 2000]
 *                              [--repeat 3] [--apps dhcpd,dns,portal,mailproxy] [--root DIR]
 *                              [--node-args='--max-semi-space-size=1 …']
 *
 * `--apps`: the config's app sections (mailproxy is always `enabled: false`, as in the example; leave
 * it out to see what naming it costs). `--root DIR`: measure another tree's dist/src (e.g. a copy
 * in /tmp with a change tried out; it needs a node_modules there, a symlink will do).
 * `--node-args` (split on spaces) go to the `metanet up` process only. The environment goes to
 * every measured process (MSGPACKR_NATIVE_ACCELERATION_DISABLED=true, MALLOC_ARENA_MAX=2, say).
 *
 * How it is measured:
 * - Every measured process is `node --expose-gc -r PROBE …`, PROBE a few lines of CommonJS that,
 *   on SIGUSR2, write `process.memoryUsage()` to a file, run a full GC and write it again (heap
 *   used, and what is live after GC, come from there). Flag and probe cost ~0.5 MB RSS; the row
 *   "bare node -e, no probe" shows it. RSS is read from /proc after `--settle` ms of idling,
 *   before the probe is signalled (the GC happens after the reading).
 * - Lab (namespaces `mnfp<pid>-…`, always deleted, also on Ctrl-C and on the next run after a
 *   SIGKILL): inet (wan0 10.99.0.1/24, dnsmasq answering every name with 10.99.0.1) ── router
 *   (eth0 10.99.0.2/24; br-lan 10.10.0.1/24 with one veth port; br-guest 10.20.0.1/22) ── guest
 *   (g0 10.20.3.250/22 on br-guest). `metanet up` runs in the router namespace with a config like
 *   examples/gateway.json (guest network /22, upstreamDns 10.99.0.1, state in a temp dir).
 * - Leases: perfdhcp in the guest namespace, as a relay (giaddr 10.20.3.250, so dhcpd serves the
 *   guest subnet), `-R guests` random MACs, rounds of `--exchanges` at `--rate` until dhcpd:/dhcpd/stats
 *   counts 99% of the guests (perfdhcp draws MACs at random, so repeats are expected).
 * - Logins: `guests` addresses 10.20.0.10… added to g0 in one `ip -batch`; bench/footprint-login.ts
 *   in the guest namespace GETs the splash from each address and POSTs /accept with its CSRF token
 *   (`--concurrency` at a time); then portal:/portal/clients is asked how many it counts.
 * - "packages it loads" follows the modules' static imports; "(lazy)" marks a package reached only
 *   through a literal `import('x')`, loaded when that code runs (an import-only row does not load
 *   it). `createRequire` is not followed (configfile loads yaml that way, for YAML configs only).
 * Needs root, a built tree (npm run build), perfdhcp, dnsmasq, nft, conntrack.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { parsePerfdhcp } from './dhcp.js';
import { conditions, table } from './report-support.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The tree measured: this checkout's dist by default, another with `--root DIR` (its dist/src). */
let DIST = join(ROOT, 'dist', 'src');
let MAIN = join(DIST, 'cli', 'main.js');
const MB = 1024 * 1024;
const NS_PREFIX = `mnfp${process.pid}`;
const NS_RE = /^mnfp(\d+)-/;

const ROUTER = `${NS_PREFIX}-router`;
const INET = `${NS_PREFIX}-inet`;
const GUEST = `${NS_PREFIX}-guest`;
const PORTAL_IP = '10.20.0.1';
const PORTAL_PORT = 8080;
const PERF_IP = '10.20.3.250';
const FIRST_GUEST = '10.20.0.10';
const INET_IP = '10.99.0.1';

// ------------------------------------------------------------------ processes and teardown

const live = new Set<ChildProcess>();
const namespaces: string[] = [];
let workDir = '';
let tornDown = false;

/** Kill what this run started, delete its namespaces and temp dir. Synchronous: also runs on exit and signals. */
function teardown(): void {
  if (tornDown) return;
  tornDown = true;
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const ns of namespaces) deleteNamespace(ns);
  if (workDir) rmSync(workDir, { recursive: true, force: true });
}

function deleteNamespace(ns: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: 'pipe' });
    for (const p of pids.split('\n').filter(Boolean))
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {}
  } catch {}
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  } catch {}
}

/** Namespaces left by a run that died without cleaning up (SIGKILL): its pid is gone. */
function sweepStale(): void {
  let names: string[] = [];
  try {
    names = readdirSync('/run/netns');
  } catch {
    return;
  }
  for (const ns of names) {
    const pid = NS_RE.exec(ns)?.[1];
    if (!pid || Number(pid) === process.pid) continue;
    try {
      process.kill(Number(pid), 0);
    } catch {
      deleteNamespace(ns);
    }
  }
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function run(
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs?: number; input?: string } = {},
): Promise<Result> {
  const timeout = opts.timeoutMs ?? 30_000;
  return new Promise((res, rej) => {
    const c = execFile(
      cmd,
      args,
      { timeout, killSignal: 'SIGKILL', cwd: ROOT, env: childEnv(), maxBuffer: 256 << 20 },
      (err, stdout, stderr) => {
        live.delete(c);
        if (err && (err as { killed?: boolean }).killed)
          rej(new Error(`timed out after ${timeout} ms: ${cmd} ${args.join(' ')}\n${stderr}`));
        else if (err && typeof (err as { code?: unknown }).code !== 'number')
          rej(new Error(`cannot run ${cmd}: ${err.message}`));
        else res({ code: err ? Number((err as { code?: number }).code) : 0, stdout, stderr });
      },
    );
    live.add(c);
    if (opts.input !== undefined) c.stdin?.end(opts.input);
  });
}

async function must(cmd: string, args: readonly string[], opts: { timeoutMs?: number; input?: string } = {}) {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r;
}

const inNs = (ns: string, cmd: string, args: readonly string[]): [string, string[]] => [
  'ip',
  ['netns', 'exec', ns, cmd, ...args],
];

function ipBatch(ns: string | undefined, lines: readonly string[]): Promise<Result> {
  return must('ip', [...(ns ? ['-n', ns] : []), '-batch', '-'], { input: `${lines.join('\n')}\n` });
}

/** The environment of every child: ours without NODE_OPTIONS (nothing extra may load into a measured node). */
function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  return env;
}

interface Started {
  child: ChildProcess;
  /** The node process's own pid when the command runs node (`ip netns exec` execs it, but we check). */
  pid: number;
  output(): string;
  exited: Promise<number | null>;
}

/** Start a long-running process; resolves once `ready` matches its stdout or stderr. */
async function startProcess(
  cmd: string,
  args: readonly string[],
  ready: RegExp,
  timeoutMs = 30_000,
): Promise<Started & { match: RegExpExecArray }> {
  const child = spawn(cmd, args, { cwd: ROOT, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  const isNodeCmd = cmd === process.execPath || args.includes(process.execPath);
  let out = '';
  const exited = new Promise<number | null>((r) =>
    child.on('exit', (code) => {
      live.delete(child);
      r(code);
    }),
  );
  const match = await new Promise<RegExpExecArray>((res, rej) => {
    const timer = setTimeout(
      () => rej(new Error(`no ${ready} from ${cmd} ${args.join(' ')} within ${timeoutMs} ms:\n${tail(out)}`)),
      timeoutMs,
    );
    const onData = (d: Buffer): void => {
      out += d.toString('utf8');
      if (out.length > 1 << 20) out = out.slice(-(1 << 19));
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        res(m);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('error', (e) => {
      clearTimeout(timer);
      rej(e);
    });
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`${cmd} ${args.join(' ')} exited ${code} before it was ready:\n${tail(out)}`));
    });
  });
  return { child, pid: isNodeCmd ? nodePid(child.pid!) : child.pid!, output: () => out, exited, match };
}

const tail = (s: string, n = 3000): string => (s.length > n ? `…${s.slice(-n)}` : s);

function children(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`))
      out.push(
        ...readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number),
      );
  } catch {}
  return out;
}

function descendants(pid: number): number[] {
  const all: number[] = [];
  for (const c of children(pid)) all.push(c, ...descendants(c));
  return all;
}

function isNode(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'node';
  } catch {
    return false;
  }
}

/** `ip netns exec` execs its command (same pid); if a wrapper ever forks, take its node descendant. */
function nodePid(pid: number): number {
  if (isNode(pid)) return pid;
  const n = descendants(pid).find(isNode);
  if (n === undefined) throw new Error(`no node process under pid ${pid}`);
  return n;
}

// ------------------------------------------------------------------ measuring

interface Mem {
  /** Bytes. */
  rss: number;
  hwm: number;
  anon: number;
  file: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  /** After the probe's full GC: what is live, and the RSS then. */
  heapLive: number;
  rssAfterGc: number;
  /** RSS of the process's descendants (nft, conntrack…), summed. */
  childRss: number;
  childNames: string[];
}

function procStatus(pid: number): Record<string, number> | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb: Record<string, number> = {};
    for (const m of s.matchAll(/^(\w+):\s+(\d+) kB$/gm)) kb[m[1]!] = Number(m[2]) * 1024;
    return kb;
  } catch {
    return undefined;
  }
}

/** Loaded with `node --expose-gc -r PROBE`: memoryUsage() as it is, then after a full GC. */
const PROBE = (dir: string): string => `'use strict';
const { writeFileSync, renameSync } = require('node:fs');
process.on('SIGUSR2', () => {
  const f = ${JSON.stringify(dir)} + '/mem-' + process.pid + '.json';
  const before = process.memoryUsage();
  globalThis.gc();
  writeFileSync(f + '.tmp', JSON.stringify({ before, after: process.memoryUsage() }));
  renameSync(f + '.tmp', f);
});
`;

/** The node flags of every measured process. */
const probed = (): string[] => ['--expose-gc', '-r', join(workDir, 'probe.cjs')];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** RSS from /proc first, then the probe's memoryUsage(). */
async function measure(pid: number, probe = true): Promise<Mem> {
  const s = procStatus(pid);
  if (!s) throw new Error(`process ${pid} is gone`);
  let childRss = 0;
  const childNames: string[] = [];
  for (const c of descendants(pid)) {
    const cs = procStatus(c);
    if (!cs) continue;
    childRss += cs.VmRSS ?? 0;
    try {
      childNames.push(readFileSync(`/proc/${c}/comm`, 'utf8').trim());
    } catch {}
  }
  const mem: Mem = {
    rss: s.VmRSS ?? 0,
    hwm: s.VmHWM ?? 0,
    anon: s.RssAnon ?? 0,
    file: s.RssFile ?? 0,
    heapUsed: Number.NaN,
    heapTotal: Number.NaN,
    external: Number.NaN,
    heapLive: Number.NaN,
    rssAfterGc: Number.NaN,
    childRss,
    childNames,
  };
  if (!probe) return mem;
  const f = join(workDir, `mem-${pid}.json`);
  rmSync(f, { force: true });
  process.kill(pid, 'SIGUSR2');
  for (let i = 0; i < 100 && !existsSync(f); i++) await sleep(20);
  if (!existsSync(f)) throw new Error(`process ${pid} did not answer the memory probe`);
  const u = JSON.parse(readFileSync(f, 'utf8')) as { before: NodeJS.MemoryUsage; after: NodeJS.MemoryUsage };
  return {
    ...mem,
    heapUsed: u.before.heapUsed,
    heapTotal: u.before.heapTotal,
    external: u.before.external,
    heapLive: u.after.heapUsed,
    rssAfterGc: u.after.rss,
  };
}

/** A node process that imports `specs` (in order), says ready, idles; measured after `settle` ms. */
async function weighImports(specs: readonly string[], settle: number): Promise<Mem> {
  const code =
    `for (const s of ${JSON.stringify(specs)}) await import(s);` +
    `process.stdout.write('ready\\n'); setInterval(() => {}, 1 << 30);`;
  const p = await startProcess(
    process.execPath,
    [...probed(), '--input-type=module', '-e', code],
    /^ready$/m,
  );
  try {
    await sleep(settle);
    return await measure(p.pid);
  } finally {
    p.child.kill('SIGKILL');
  }
}

// ------------------------------------------------------------------ what the stack imports

/**
 * Packages reached from `entries`: `eager` through static imports, `lazy` only through a literal
 * `import('x')` somewhere on the way (loaded when that code runs: koffi when dhcpd binds to a
 * device, prom-client when the config has metrics). The registry's `import()`s are not followed:
 * it loads an app only when a config names it, and the apps are entries themselves.
 */
function importClosure(entries: readonly string[]): { eager: Set<string>; lazy: Set<string> } {
  const walk = (dynamic: boolean): Set<string> => {
    const files = new Set<string>();
    const packages = new Set<string>();
    const todo = [...entries];
    while (todo.length) {
      const f = todo.pop()!;
      if (files.has(f)) continue;
      files.add(f);
      let text: string;
      try {
        text = readFileSync(f, 'utf8');
      } catch {
        continue;
      }
      const specs: string[] = [];
      for (const m of text.matchAll(/^(?:import|export)\b[^;'"]*?\bfrom\s*['"]([^'"]+)['"]/gm))
        specs.push(m[1]!);
      for (const m of text.matchAll(/^import\s*['"]([^'"]+)['"]/gm)) specs.push(m[1]!);
      if (dynamic && !f.endsWith(join('apps', 'registry.js')))
        for (const m of text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) specs.push(m[1]!);
      for (const s of specs) {
        if (s.startsWith('node:')) continue;
        if (s.startsWith('.')) todo.push(resolve(dirname(f), s));
        else packages.add(s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]!);
      }
    }
    return packages;
  };
  const eager = walk(false);
  return { eager, lazy: new Set([...walk(true)].filter((p) => !eager.has(p))) };
}

/** `a, b, c (lazy)` */
function packageList(c: { eager: Set<string>; lazy: Set<string> }): string {
  const all = [...c.eager, ...[...c.lazy].map((p) => `${p} (lazy)`)];
  return all.sort().join(', ') || '(none)';
}

// ------------------------------------------------------------------ the lab

async function buildLab(): Promise<void> {
  namespaces.push(ROUTER, INET, GUEST);
  await ipBatch(undefined, [
    `netns add ${ROUTER}`,
    `netns add ${INET}`,
    `netns add ${GUEST}`,
    `link add eth0 netns ${ROUTER} type veth peer name wan0 netns ${INET}`,
    `link add gp0 netns ${ROUTER} type veth peer name g0 netns ${GUEST}`,
    `link add lp0 netns ${ROUTER} type veth peer name lp1 netns ${ROUTER}`,
  ]);
  await Promise.all([
    ipBatch(ROUTER, [
      'link set lo up',
      // Bridges with fixed MACs (a bridge takes its lowest port's MAC otherwise).
      'link add name br-lan address 02:00:00:00:10:01 type bridge forward_delay 0 stp_state 0',
      'link add name br-guest address 02:00:00:00:20:01 type bridge forward_delay 0 stp_state 0',
      'link set lp0 master br-lan',
      'link set gp0 master br-guest',
      'link set lp0 up',
      'link set lp1 up',
      'link set gp0 up',
      'addr add 10.99.0.2/24 dev eth0',
      'addr add 10.10.0.1/24 dev br-lan',
      `addr add ${PORTAL_IP}/22 dev br-guest`,
      'link set eth0 up',
      'link set br-lan up',
      'link set br-guest up',
      `route add default via ${INET_IP}`,
    ]),
    ipBatch(INET, [
      'link set lo up',
      `addr add ${INET_IP}/24 dev wan0`,
      'link set wan0 up',
      'route add 10.10.0.0/24 via 10.99.0.2',
      'route add 10.20.0.0/22 via 10.99.0.2',
    ]),
    ipBatch(GUEST, [
      'link set lo up',
      `addr add ${PERF_IP}/22 dev g0`,
      'link set g0 up',
      `route add default via ${PORTAL_IP}`,
    ]),
  ]);
  await must(...inNs(ROUTER, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']));
  await must(...inNs(ROUTER, 'sysctl', ['-qw', 'net.ipv4.conf.all.rp_filter=0']));
  await must(...inNs(ROUTER, 'sysctl', ['-qw', 'net.ipv4.conf.default.rp_filter=0']));
}

async function startDnsmasq(): Promise<void> {
  const [cmd, args] = inNs(INET, 'dnsmasq', [
    '-k',
    '--conf-file=/dev/null',
    '--no-resolv',
    '--no-hosts',
    '--address=/#/10.99.0.1',
    `--listen-address=${INET_IP}`,
    '--bind-interfaces',
    `--pid-file=${join(workDir, 'dnsmasq.pid')}`,
    '--log-facility=-',
  ]);
  await startProcess(cmd, args, /started, version/, 10_000);
}

// ------------------------------------------------------------------ the gateway

function gatewayConfig(apps: readonly string[]): unknown {
  const all: Record<string, unknown> = {
    dhcpd: { leaseTime: 3600 },
    dns: {},
    portal: { title: 'Welcome to the café’s Wi-Fi', sessionSeconds: 3600 },
    mailproxy: { enabled: false },
  };
  return {
    networks: {
      wan: { role: 'wan', device: 'eth0' },
      lan: { role: 'lan', device: 'br-lan', address: '10.10.0.1/24' },
      guest: { role: 'guest', device: 'br-guest', address: `${PORTAL_IP}/22` },
    },
    upstreamDns: [INET_IP],
    stateDir: join(workDir, 'state'),
    apps: Object.fromEntries(apps.map((a) => [a, all[a]])),
  };
}

/**
 * `metanet --json call ADDRESS`: the reply's tuples as tag → value (first of each tag). Its stdout
 * goes to a file, not a pipe: the CLI exits right after writing, and a pipe loses what did not fit
 * (a 1,000-client reply came back cut at 219,264 bytes).
 */
async function call(sockDir: string, address: string, timeoutMs = 20_000): Promise<Map<string, unknown>> {
  const file = join(workDir, `call-${++calls}.json`);
  const fd = openSync(file, 'w');
  const child = spawn(
    process.execPath,
    [MAIN, '--dir', sockDir, '--json', 'call', '-t', String(timeoutMs), address],
    {
      cwd: ROOT,
      env: childEnv(),
      stdio: ['ignore', fd, 'pipe'],
    },
  );
  closeSync(fd);
  live.add(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  const code = await new Promise<number | null>((res, rej) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs + 5000);
    child.on('error', rej);
    child.on('exit', (c) => {
      clearTimeout(timer);
      live.delete(child);
      res(c);
    });
  });
  if (code !== 0) throw new Error(`metanet call ${address} exited ${code}: ${stderr.trim()}`);
  const tuples = JSON.parse(readFileSync(file, 'utf8')) as [string, string, unknown][];
  rmSync(file, { force: true });
  const m = new Map<string, unknown>();
  for (const [tag, , value] of tuples) if (!m.has(tag)) m.set(tag, value);
  return m;
}
let calls = 0;

// ------------------------------------------------------------------ report

const mb = (b: number): string => (Number.isFinite(b) ? (b / MB).toFixed(1) : '-');

interface Row {
  label: string;
  mem: Mem;
}

function mainTable(rows: Row[], base: Mem): string {
  return table(
    [
      'process',
      ' RSS MB',
      ' × bare',
      ' peak MB',
      ' anon MB',
      ' file MB',
      ' heap used MB',
      ' heap total MB',
      ' live after GC MB',
      ' RSS after GC MB',
      ' external MB',
      ' + children MB',
    ],
    rows.map(({ label, mem }) => [
      label,
      mb(mem.rss),
      (mem.rss / base.rss).toFixed(2),
      mb(mem.hwm),
      mb(mem.anon),
      mb(mem.file),
      mb(mem.heapUsed),
      mb(mem.heapTotal),
      mb(mem.heapLive),
      mb(mem.rssAfterGc),
      mb(mem.external),
      mem.childRss ? `${mb(mem.childRss)} (${[...new Set(mem.childNames)].join(', ')})` : '-',
    ]),
  );
}

// ------------------------------------------------------------------ main

interface Phase {
  name: string;
  seconds: number;
  note?: string;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      guests: { type: 'string', default: '1000' },
      rate: { type: 'string', default: '500' },
      exchanges: { type: 'string', default: '3000' },
      concurrency: { type: 'string', default: '20' },
      settle: { type: 'string', default: '2000' },
      repeat: { type: 'string', default: '3' },
      apps: { type: 'string', default: 'dhcpd,dns,portal,mailproxy' },
      root: { type: 'string' },
      'node-args': { type: 'string', default: '' },
    },
    strict: true,
  });
  const guests = Number(values.guests);
  const rate = Number(values.rate);
  const exchanges = Number(values.exchanges);
  const concurrency = Number(values.concurrency);
  const settle = Number(values.settle);
  const repeat = Number(values.repeat);
  if (!(guests >= 1 && guests <= 1000)) throw new Error('--guests must be 1..1000 (they share one /22)');
  if (!(rate > 0) || !(exchanges >= 1) || !(concurrency >= 1) || !(settle >= 0) || !(repeat >= 1))
    throw new Error('--rate, --exchanges, --concurrency, --repeat must be positive, --settle >= 0 ms');

  if (values.root) {
    DIST = join(resolve(values.root), 'dist', 'src');
    MAIN = join(DIST, 'cli', 'main.js');
  }
  if (process.getuid?.() !== 0)
    throw new Error('needs root (network namespaces, nft, conntrack, perfdhcp): run it as root');
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run npm run build first`);
  const path = (process.env.PATH ?? '').split(delimiter);
  for (const tool of ['ip', 'perfdhcp', 'dnsmasq', 'nft', 'conntrack'])
    if (!path.some((d) => existsSync(join(d, tool))))
      throw new Error(`${tool} not found on PATH (scripts/setup.sh installs the lab's tools)`);

  process.on('exit', teardown);
  // `on`, not `once`: a Ctrl-C reaches us twice (from the terminal and relayed by tsx), and with no
  // listener left the second one would kill us half-way through the teardown.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
    process.on(sig, () => {
      if (tornDown) return;
      process.stderr.write(`\nbench:footprint: ${sig}, tearing down\n`);
      teardown();
      process.exit(130);
    });
  sweepStale();
  workDir = mkdtempSync(join(tmpdir(), `${NS_PREFIX}-`));
  const probe = join(workDir, 'probe.cjs');
  writeFileSync(probe, PROBE(workDir));
  const say = (s: string): boolean => process.stderr.write(`${s}\n`);

  // An app that is not built in this tree (the dns app is new) is left out, and said so.
  const notes: string[] = [];
  const apps = values.apps.split(',').filter((a) => {
    if (!['dhcpd', 'dns', 'portal', 'mailproxy'].includes(a)) throw new Error(`--apps: no app ${a} here`);
    if (existsSync(join(DIST, 'apps', a, 'app.js'))) return true;
    notes.push(`${a} left out: ${join(DIST, 'apps', a, 'app.js')} does not exist (not built in this tree).`);
    return false;
  });
  if (!apps.includes('dhcpd') || !apps.includes('portal')) throw new Error('--apps needs dhcpd and portal');
  if (values.root) notes.push(`Tree measured: ${DIST}.`);
  const nodeArgs = values['node-args'].split(' ').filter(Boolean);
  if (nodeArgs.length) notes.push(`metanet up ran with node ${nodeArgs.join(' ')}.`);
  if (process.env.MSGPACKR_NATIVE_ACCELERATION_DISABLED)
    notes.push(`MSGPACKR_NATIVE_ACCELERATION_DISABLED=${process.env.MSGPACKR_NATIVE_ACCELERATION_DISABLED}.`);

  const phases: Phase[] = [];
  let t = performance.now();
  const phase = (name: string, note?: string): void => {
    const now = performance.now();
    phases.push({ name, seconds: (now - t) / 1000, note });
    say(`[${((now - t) / 1000).toFixed(2)} s] ${name}${note ? `: ${note}` : ''}`);
    t = now;
  };

  const rows: Row[] = [];
  /** Idle `settle` ms, then read; not counted in any phase. */
  const reading = async (label: string, pid: number): Promise<Mem> => {
    await sleep(settle);
    const mem = await measure(pid);
    rows.push({ label, mem });
    t = performance.now();
    return mem;
  };

  // 1, 2: bare node and an empty daemon, at the same time.
  const idle = "process.stdout.write('ready\\n'); setInterval(() => {}, 1 << 30)";
  const sockEmpty = join(workDir, 'sock-empty');
  mkdirSync(sockEmpty);
  const [bareNoProbe, bare, empty] = await Promise.all([
    startProcess(process.execPath, ['-e', idle], /^ready$/m),
    startProcess(process.execPath, [...probed(), '-e', idle], /^ready$/m),
    startProcess(
      process.execPath,
      [...probed(), MAIN, '--dir', sockEmpty, 'daemon', 'empty'],
      /listening on/,
    ),
  ]);
  phase('start bare node + empty daemon');
  await sleep(settle);
  const bareMem = await measure(bare.pid);
  rows.push({ label: 'bare node -e, no probe', mem: await measure(bareNoProbe.pid, false) });
  rows.push({ label: 'bare node -e', mem: bareMem });
  rows.push({ label: 'empty daemon (metanet daemon empty)', mem: await measure(empty.pid) });
  for (const p of [bareNoProbe, bare, empty]) p.child.kill('SIGTERM');
  t = performance.now();

  // Second table: what each import weighs, each alone in a fresh process.
  const appFiles = apps.map((a) => join(DIST, 'apps', a, 'app.js'));
  const upFile = join(DIST, 'cli', 'up.js');
  const stack = importClosure([MAIN, upFile, ...appFiles]);
  const asked = ['zod', 'msgpackr', 'koffi', 'dns-packet', 'commander'];
  const pkgs = [...new Set([...stack.eager, ...stack.lazy, ...asked])].sort();
  const url = (f: string): string => pathToFileURL(f).href;
  const rel = (f: string): string => f.slice(dirname(dirname(DIST)).length + 1);
  const modules: { label: string; specs: string[]; closure?: string }[] = [
    { label: 'bare node (ESM -e)', specs: [] },
    ...pkgs.map((p) => ({
      label: `${p}${stack.eager.has(p) ? '' : stack.lazy.has(p) ? ' (lazy in the stack)' : ' (no import of it in the stack)'}`,
      specs: [p],
    })),
    ...[join(DIST, 'core', 'index.js'), join(DIST, 'ipc', 'daemon.js'), upFile, ...appFiles].map((f) => ({
      label: rel(f),
      specs: [url(f)],
      closure: packageList(importClosure([f])),
    })),
    {
      label: 'all that `up` imports (commander, cli/up.js, the apps), nothing started',
      specs: ['commander', url(upFile), ...appFiles.map(url)],
      closure: packageList(stack),
    },
  ];
  // Each row `repeat` times (rows interleaved, two processes at a time); the median RSS is kept.
  const settleImports = Math.max(1000, settle / 2);
  const samples = modules.map(() => [] as Mem[]);
  const jobs = Array.from({ length: repeat }, () => modules.map((_, i) => i)).flat();
  let nextJob = 0;
  const worker = async (): Promise<void> => {
    while (nextJob < jobs.length) {
      const i = jobs[nextJob++]!;
      samples[i]!.push(await weighImports(modules[i]!.specs, settleImports));
    }
  };
  await Promise.all([worker(), worker()]);
  const weighed = modules.map((m, i) => {
    const sorted = samples[i]!.sort((a, b) => a.rss - b.rss);
    return {
      label: m.label,
      mem: sorted[Math.floor(sorted.length / 2)]!,
      spread: sorted[sorted.length - 1]!.rss - sorted[0]!.rss,
      closure: m.closure,
    };
  });
  phase(
    'import table',
    `${jobs.length} processes (${modules.length} rows × ${repeat}), ${settleImports} ms settle each, 2 at a time`,
  );

  // The lab.
  await buildLab();
  await startDnsmasq();
  phase('namespaces + dnsmasq');

  // 3: metanet up, idle.
  const sockDir = join(workDir, 'sock');
  mkdirSync(sockDir);
  mkdirSync(join(workDir, 'state'));
  const cfgFile = join(workDir, 'gateway.json');
  writeFileSync(cfgFile, `${JSON.stringify(gatewayConfig(apps), null, 2)}\n`);
  const [upCmd, upArgs] = inNs(ROUTER, process.execPath, [
    ...probed(),
    ...nodeArgs,
    MAIN,
    '--dir',
    sockDir,
    'up',
    '--config',
    cfgFile,
  ]);
  const up = await startProcess(upCmd, upArgs, /gateway ready: (.*)\n/, 60_000);
  phase('metanet up → gateway ready', up.match[1]);
  const stackName = `${apps.filter((a) => a !== 'mailproxy').join(', ')}${apps.includes('mailproxy') ? '; mailproxy off' : ''}`;
  await reading(`metanet up (${stackName}), idle`, up.pid);

  // 4a: leases.
  let leases = 0;
  let rounds = 0;
  let sent = 0;
  let acked = 0;
  const perfErrors: string[] = [];
  while (leases < 0.99 * guests && rounds < 6) {
    rounds++;
    const args = [
      '-4',
      '-l',
      'g0',
      '-r',
      String(rate),
      '-R',
      String(guests),
      '-n',
      String(exchanges),
      '-W',
      '500000',
      PORTAL_IP,
    ];
    const r = await run(...inNs(GUEST, 'perfdhcp', args), { timeoutMs: (exchanges / rate + 30) * 1000 });
    if (r.code !== 0 && r.code !== 3) {
      perfErrors.push(`perfdhcp ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
      break;
    }
    try {
      const p = parsePerfdhcp(rate, exchanges / rate, r.stdout);
      sent += p.discovers;
      acked += p.acks;
    } catch (e) {
      perfErrors.push((e as Error).message.slice(0, 500));
    }
    leases = Number((await call(sockDir, 'dhcpd:/dhcpd/stats')).get('leases') ?? 0);
    say(`perfdhcp round ${rounds}: ${leases} leases`);
    if (acked === 0) break;
  }
  const stats = await call(sockDir, 'dhcpd:/dhcpd/stats');
  const leaseNote =
    `${leases} leases after ${rounds} perfdhcp round(s) of ${exchanges} at ${rate}/s ` +
    `(${sent} DISCOVERs, ${acked} ACKs; dhcpd counted received ${stats.get('received')}, offers ${stats.get('offers')}, ` +
    `acks ${stats.get('acks')}, dropped ${stats.get('dropped')}` +
    `${stats.has('rate-limited') ? `, of which rate-limited (newClients) ${stats.get('rate-limited')}` : ''})`;
  phase(`${guests} leases (perfdhcp)`, leaseNote);
  notes.push(`Leases: ${leaseNote}.`);
  if (perfErrors.length) notes.push(`perfdhcp: ${perfErrors.join('; ')}`);
  await reading(`  … after ${leases} leases`, up.pid);

  // 4b: logins, each from its own address.
  const first = FIRST_GUEST.split('.').reduce((a, o) => a * 256 + Number(o), 0);
  const addrs = Array.from({ length: guests }, (_, i) => {
    const n = first + i;
    return `addr add ${[n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')}/22 dev g0`;
  });
  await ipBatch(GUEST, addrs);
  phase(`${guests} addresses on the guest (one ip -batch)`);
  // What the portal could not tell a client (a failed MAC lookup, firewall allow…) goes to /portal/error.
  const errors = await startProcess(
    process.execPath,
    [MAIN, '--dir', sockDir, '--json', 'listen', 'portal:/portal/error'],
    /listening|portal:\/portal\/error/,
    10_000,
  );
  const login = await run(
    ...inNs(GUEST, process.execPath, [
      '--import',
      'tsx',
      join(ROOT, 'bench', 'footprint-login.ts'),
      '--portal',
      `${PORTAL_IP}:${PORTAL_PORT}`,
      '--first',
      FIRST_GUEST,
      '--count',
      String(guests),
      '--concurrency',
      String(concurrency),
      ...(apps.includes('dns') ? ['--dns', 'example.com'] : []),
    ]),
    { timeoutMs: 600_000 },
  );
  if (login.code !== 0) throw new Error(`footprint-login exited ${login.code}: ${login.stderr.trim()}`);
  const L = JSON.parse(login.stdout.trim().split('\n').pop()!) as {
    ok: number;
    failed: number;
    statuses: Record<string, number>;
    errors: string[];
    ms: number;
    getMs: { p50: number; p95: number; max: number };
    postMs: { p50: number; p95: number; max: number };
    dns?: { name: string; addresses?: string[]; error?: string; ms: number };
  };
  const clients = Number((await call(sockDir, 'portal:/portal/clients', 30_000)).get('count') ?? 0);
  errors.child.kill('SIGTERM');
  await errors.exited;
  const portalErrors = errors
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      const m = JSON.parse(l) as { tuples: [string, string, unknown][] };
      return Object.fromEntries(m.tuples.map(([tag, , v]) => [tag, v]));
    });
  const loginNote =
    `${L.ok} logged in (303), ${L.failed} not; ${JSON.stringify(L.statuses)}; portal:/portal/clients count ${clients}; ` +
    `GET p50/p95/max ${L.getMs.p50.toFixed(0)}/${L.getMs.p95.toFixed(0)}/${L.getMs.max.toFixed(0)} ms, ` +
    `POST ${L.postMs.p50.toFixed(0)}/${L.postMs.p95.toFixed(0)}/${L.postMs.max.toFixed(0)} ms`;
  phase(`${guests} logins (concurrency ${concurrency})`, loginNote);
  notes.push(`Logins: ${loginNote}.`);
  if (L.errors.length) {
    // A "no MAC" refusal: how full is the router's neighbour table? (gc_thresh* are machine-wide.)
    const neigh = await run('ip', ['-n', ROUTER, 'neigh', 'show', 'dev', 'br-guest']);
    const states: Record<string, number> = {};
    for (const l of neigh.stdout.split('\n').filter(Boolean)) {
      const st = l.trim().split(/\s+/).pop()!;
      states[st] = (states[st] ?? 0) + 1;
    }
    const thresh = ['gc_thresh1', 'gc_thresh2', 'gc_thresh3'].map((k) => {
      try {
        return readFileSync(`/proc/sys/net/ipv4/neigh/default/${k}`, 'utf8').trim();
      } catch {
        return '?';
      }
    });
    notes.push(
      `First login errors:\n  ${L.errors.join('\n  ')}\n  router neighbours on br-guest afterwards: ` +
        `${JSON.stringify(states)}; machine-wide gc_thresh1/2/3 ${thresh.join('/')}`,
    );
  }
  if (portalErrors.length)
    notes.push(
      `portal:/portal/error posted ${portalErrors.length}:\n  ${portalErrors
        .slice(0, 5)
        .map((e) => JSON.stringify(e))
        .join('\n  ')}`,
    );
  if (L.dns)
    notes.push(
      `DNS through the router before login: ${L.dns.name} → ${L.dns.addresses?.join(', ') ?? `error ${L.dns.error}`} (${L.dns.ms.toFixed(0)} ms).`,
    );
  await reading(`  … after ${leases} leases and ${clients} logins`, up.pid);

  // Stop the gateway cleanly (timed), then everything else.
  const stopAt = performance.now();
  up.child.kill('SIGTERM');
  const code = await Promise.race([up.exited, sleep(30_000).then(() => 'timeout' as const)]);
  if (code !== 0) notes.push(`metanet up stopped with ${code}:\n${tail(up.output(), 1500)}`);
  phase('metanet up stop', `${((performance.now() - stopAt) / 1000).toFixed(2)} s to exit, code ${code}`);
  teardown();
  phase('teardown');

  // Report.
  const out: string[] = [];
  out.push(`Memory of the gateway, one run; ${conditions()}; settle ${settle} ms before each reading.`);
  out.push('');
  out.push(mainTable(rows, bareMem));
  out.push('');
  const upRows = rows.filter((r) => r.label.startsWith('metanet up') || r.label.startsWith('  …'));
  for (const r of upRows)
    out.push(
      `Target (stack ≤ 1.5× bare node RSS, ${mb(1.5 * bareMem.rss)} MB): ${r.label.trim()}: ` +
        `${(r.mem.rss / bareMem.rss).toFixed(2)}× → ${r.mem.rss <= 1.5 * bareMem.rss ? 'met' : 'NOT met'}`,
    );
  out.push('');
  const base = weighed[0]!.mem;
  out.push(
    `What each import weighs: a fresh \`node --expose-gc -r PROBE --input-type=module -e "await import(X)"\` ` +
      `per sample, median of ${repeat} (spread = max − min).`,
  );
  out.push('');
  out.push(
    table(
      [
        'import',
        ' RSS MB',
        ' spread MB',
        ' + over bare MB',
        ' heap used MB',
        ' live after GC MB',
        'packages it loads',
      ],
      weighed.map((w) => [
        w.label,
        mb(w.mem.rss),
        mb(w.spread),
        w === weighed[0] ? '-' : mb(w.mem.rss - base.rss),
        mb(w.mem.heapUsed),
        mb(w.mem.heapLive),
        w.closure ?? '',
      ]),
    ),
  );
  out.push('');
  out.push(
    table(
      ['phase', ' seconds', 'note'],
      phases.map((p) => [p.name, p.seconds.toFixed(2), p.note ?? '']),
    ),
  );
  if (notes.length) out.push('', ...notes.map((n) => `- ${n}`));
  console.log(out.join('\n'));
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:footprint: ${e instanceof Error ? e.message : String(e)}\n`);
  teardown();
  process.exit(1);
});

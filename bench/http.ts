/**
 * bench/http: requests per second for a small response produced by a bus listener through the
 * HTTP server service, against plain node:http producing the same response, in the same run.
 *
 *   npm run bench:http    DURATION=3 s per run, CONNECTIONS=50, pipelining 1, ROUNDS=3
 *                         KINDS=metanet,portal,app (default: all)   BASE=/tmp/httpbase (below)
 *                         PROFILE=dir (each server writes a CPU profile there at the end)
 *                         SYNTH=1 with BASE: also the request path without sockets, today vs base
 *
 * Rounds alternate: in each round every kind is measured right after its baseline and followed by
 * it again (plain, metanet, plain, portal, plain, …), and its ratio is taken against the mean of
 * the two baseline runs around it. A burst of other load then moves one ratio of one round, not a
 * row: the table prints the median ratio over the rounds and its spread (min–max).
 *
 * Each server runs in a child process (this file forked with `serve <kind>`), so autocannon, the
 * load generator, does not share the server's event loop. All servers start (and get a 1 s
 * warm-up) before the first round and stay up until the last. The child runs the code as
 * production does, compiled by TypeScript (transpileModule into node_modules/.cache/bench-http):
 * under tsx every closure creation also runs esbuild's keepNames `__name()` (an
 * Object.defineProperty), which costs the bus and this service several µs a request. TSX=1 runs
 * the child under tsx instead, to see that cost.
 *
 * Rows (kind: what; its baseline):
 *   plain        node:http: createServer((req, res) => { res.writeHead(200, …); res.end('ok') })
 *   metanet      installHttpService + a listener on <name>/request that posts
 *                {code: 200, headers: {Content-Type}, data: 'ok'} to <clientname>/response; plain
 *   portal       examples/paper-portal.ts answering a foreign Host with its 307 redirect; plain
 *   plain-307    node:http answering the same 307 (the example's redirectTo(): same headers, page)
 *   portal-307   the paper portal again, against plain-307: the bus and service's cost alone,
 *                the answer being the same on both sides
 *   plain-close  node:http answering 302 with `Connection: close` (a new connection per request)
 *   app          the portal app's web part (src/apps/portal/web.ts) redirecting a guest that asks
 *                for a foreign Host: 302, `Connection: close` as the app sends it; plain-close
 *
 * BASE=<dir> (a tree with src/ and examples/, e.g. `git archive HEAD src examples | tar -x -C dir`)
 * adds `metanet@base`, `portal@base` and `app@base`: the same servers with that tree's HTTP
 * service, paper portal and portal web part over today's core — a same-run before/after. With
 * SYNTH=1 each of those pairs is also measured without sockets (fake req/res handed to the service
 * in the same server process, 50 a loop turn), in alternating rounds: server CPU µs per request of
 * the bus, the service and the listener alone, which other load on the machine hardly moves.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { cpSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Bus, silentLogger } from '../src/core/index.js';
import { installHttpService } from '../src/services/http/index.js';
import { transpile, tsFiles } from './compile.js';
import { conditions } from './report-support.js';

const DURATION = Number(process.env.DURATION ?? 3);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 50);
const ROUNDS = Math.max(1, Number(process.env.ROUNDS ?? 3));
const BASE = process.env.BASE;
const PROFILE = process.env.PROFILE;
/** SYNTH=1: also the request path without sockets (see synth()), today's tree against BASE's. */
const SYNTH = process.env.SYNTH === '1';

type Server = 'plain' | 'metanet' | 'portal' | 'plain-307' | 'plain-close' | 'app';
interface Kind {
  readonly id: string;
  readonly server: Server;
  readonly label: string;
  readonly baseline: string;
  /** Compiled tree the child runs: today's or BASE's. */
  readonly tree: 'cur' | 'base';
  /** The answer expected: the status code's class. */
  readonly expect: '2xx' | 'non2xx';
}

const ALL: Kind[] = [
  { id: 'plain', server: 'plain', label: 'node:http plain', baseline: '', tree: 'cur', expect: '2xx' },
  {
    id: 'metanet',
    server: 'metanet',
    label: 'metanet http service',
    baseline: 'plain',
    tree: 'cur',
    expect: '2xx',
  },
  {
    id: 'portal',
    server: 'portal',
    label: 'paper portal (307 redirect)',
    baseline: 'plain',
    tree: 'cur',
    expect: 'non2xx',
  },
  {
    id: 'plain-307',
    server: 'plain-307',
    label: "node:http sending the paper portal's 307",
    baseline: '',
    tree: 'cur',
    expect: 'non2xx',
  },
  {
    id: 'portal-307',
    server: 'portal',
    label: 'paper portal (307) vs the same from node:http',
    baseline: 'plain-307',
    tree: 'cur',
    expect: 'non2xx',
  },
  {
    id: 'plain-close',
    server: 'plain-close',
    label: 'node:http 302 + Connection: close',
    baseline: '',
    tree: 'cur',
    expect: 'non2xx',
  },
  {
    id: 'app',
    server: 'app',
    label: 'portal app redirect (302, close)',
    baseline: 'plain-close',
    tree: 'cur',
    expect: 'non2xx',
  },
];
if (BASE)
  for (const k of ALL.filter((x) => x.baseline !== ''))
    ALL.push({ ...k, id: `${k.id}@base`, label: `${k.label} @base`, tree: 'base' });

/** Child side: start one server, tell the parent its port, run until told to exit. */
async function serve(server: Server): Promise<void> {
  let port: number;
  /** The bus and the HTTP server name a synthetic driver (`synth` below) feeds requests to. */
  let on: { bus: Bus; name: string } | undefined;
  if (server === 'plain' || server === 'plain-close') {
    const s =
      server === 'plain'
        ? createServer((_req, res) => {
            res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 2 });
            res.end('ok');
          })
        : createServer((_req, res) => {
            res.writeHead(302, {
              Location: 'http://127.0.0.1/',
              Connection: 'close',
              'Content-Type': 'text/plain',
              'Content-Length': 2,
            });
            res.end('ok');
          });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    port = (s.address() as AddressInfo).port;
  } else if (server === 'plain-307') {
    // what examples/paper-portal.ts answers a foreign Host, from node:http without the bus
    const { redirectTo } = await import('../examples/paper-portal.js');
    let portal = '';
    const s = createServer((req, res) => {
      const host = req.headers.host ?? '';
      if (host.toLowerCase() === portal) {
        res.writeHead(404, { 'Content-Length': 0 });
        res.end();
        return;
      }
      const r = redirectTo(portal, `http://${host}${req.url ?? '/'}`);
      res.writeHead(r.code, { ...r.headers, 'Content-Length': Buffer.byteLength(r.data) });
      res.end(r.data);
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    port = (s.address() as AddressInfo).port;
    portal = `127.0.0.1:${port}`;
  } else if (server === 'metanet') {
    const bus = new Bus({ name: 'bench', logger: silentLogger });
    installHttpService(bus);
    bus.append('/bench/server/request', (m) => {
      bus.post(`${m.str('clientname')}/response`, {
        code: 200,
        headers: { 'Content-Type': 'text/plain' },
        data: 'ok',
      });
    });
    const r = await bus.request('/system/http/server/new', { name: '/bench/server', port: 0 });
    port = r.int('port');
    on = { bus, name: '/bench/server' };
  } else if (server === 'portal') {
    const { startPortal } = await import('../examples/paper-portal.js');
    const p = await startPortal({ port: 0, host: '127.0.0.1', log: () => {} });
    port = p.port;
    on = { bus: p.bus, name: '/captive/server' };
  } else {
    const a = await serveApp();
    port = a.port;
    on = { bus: a.bus, name: '/portal/http' };
  }
  // The parent asks for the CPU time used between two marks: tells whether the server was the bottleneck.
  let mark = { cpu: process.cpuUsage(), at: process.hrtime.bigint() };
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'mark') mark = { cpu: process.cpuUsage(), at: process.hrtime.bigint() };
    else if (m.cmd === 'cpu') {
      const d = process.cpuUsage(mark.cpu);
      const wall = Number(process.hrtime.bigint() - mark.at) / 1000;
      process.send?.({ cpu: (d.user + d.system) / wall });
    } else if (m.cmd === 'exit')
      process.exit(0); // a normal exit: --cpu-prof writes its profile
    else if (m.cmd === 'synth' && on)
      void synth(on.bus, on.name, server === 'metanet' ? undefined : 'example.org').then((us) =>
        process.send?.({ cpu: us }),
      );
  });
  process.send?.({ port });
}

/** The portal app's web part on a free loopback port, as portal.ts attaches it (no firewall needed to redirect). */
async function serveApp(): Promise<{ port: number; bus: Bus }> {
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const { parseConfig } = await import('../src/apps/portal/config.js');
  const { Guestbook } = await import('../src/apps/portal/guestbook.js');
  const { Sessions } = await import('../src/apps/portal/sessions.js');
  const { defaultLimits } = await import('../src/apps/portal/lifecycle.js');
  const { attachWeb } = await import('../src/apps/portal/web.js');
  const bus = new Bus({ name: 'portal', logger: silentLogger });
  installHttpService(bus);
  const config = parseConfig({ address: '127.0.0.1', port, lan: 'lo', stockAuth: false });
  const book = new Guestbook(bus, config, new Sessions(undefined, Date.now, defaultLimits(config)));
  await attachWeb(bus, config, book).listen();
  return { port, bus };
}

/**
 * The service's request path without sockets: node:http's parser and writes left out, requests
 * (fake `req`/`res` objects with what the service reads) handed to a second HttpServer object of
 * the same name on the same bus, so the same listeners answer. 50 requests per loop turn, as 50
 * connections would. Returns server CPU µs per request over SYNTH_N requests: unlike req/s over
 * loopback, hardly moved by other load on the machine.
 */
async function synth(bus: Bus, name: string, host: string | undefined): Promise<number> {
  const { HttpServer } = await import('../src/services/http/server.js');
  const opts = { name, port: 0, host: '127.0.0.1', bodyLimit: 1 << 20, timeout: 30000 };
  const s = new HttpServer(bus, opts, () => {}) as unknown as {
    onRequest(req: unknown, res: unknown): void;
  };
  const socket = {
    localAddress: '127.0.0.1',
    localPort: 8080,
    remoteAddress: '127.0.0.1',
    remotePort: 40000,
    destroy() {},
    end() {},
  };
  class Res {
    destroyed = false;
    headersSent = false;
    writableFinished = true;
    writeHead(): void {
      this.headersSent = true;
    }
    end(): void {}
    once(): void {}
  }
  const rawHeaders = ['Host', host ?? 'localhost:8080', 'User-Agent', 'synth', 'Accept', '*/*'];
  const turn = (): Promise<void> => {
    for (let j = 0; j < 50; j++) s.onRequest({ rawHeaders, url: '/', method: 'GET', socket }, new Res());
    return new Promise((r) => setImmediate(r));
  };
  const n = Number(process.env.SYNTH_N ?? 200_000);
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i += 50) await turn();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / n;
}

function ask(child: ChildProcess, cmd: string): Promise<number> {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve((m as { cpu: number }).cpu));
    child.send({ cmd });
  });
}

interface Run {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** The server process's CPU time over the measured run, as a fraction of one core. */
  cpu: number;
  /** Server CPU µs per answered request. */
  cpuPerReq: number;
}

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'node_modules/.cache/bench-http');
const SELF = relative(ROOT, fileURLToPath(import.meta.url));
/** Files BASE replaces (the rest, core included, is today's). */
const FROM_BASE = [
  'src/services/http',
  'src/services/table.ts',
  'examples/paper-portal.ts',
  'src/apps/portal/web.ts',
];

/** Transpile what the servers run (src, the example, this file) as tsc would, into OUT/<tree>; returns the entry. */
async function compile(tree: 'cur' | 'base'): Promise<string> {
  const out = join(OUT, tree);
  const files = [
    ...tsFiles(ROOT, 'src'),
    'examples/paper-portal.ts',
    SELF,
    'bench/report-support.ts',
    'bench/compile.ts',
  ];
  await transpile(out, files, (f) =>
    tree === 'base' && BASE && FROM_BASE.some((b) => f === b || f.startsWith(`${b}/`)) ? BASE : ROOT,
  );
  cpSync(join(ROOT, 'src/apps/portal/theme'), join(out, 'src/apps/portal/theme'), { recursive: true });
  return join(out, SELF.replace(/\.ts$/, '.js'));
}

const underTsx = process.env.TSX === '1';

interface Child {
  kind: Kind;
  proc: ChildProcess;
  port: number;
}

async function start(kind: Kind, entry: string): Promise<Child> {
  const execArgv = [
    ...(underTsx ? process.execArgv : []),
    ...(PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE}`, `--cpu-prof-name=${kind.id}.cpuprofile`] : []),
  ];
  const proc = fork(entry, ['serve', kind.server], { stdio: 'inherit', execArgv });
  const port = await new Promise<number>((resolve, reject) => {
    proc.once('message', (m) => resolve((m as { port: number }).port));
    proc.once('exit', (c) => reject(new Error(`${kind.id} server exited (${c}) before listening`)));
  });
  return { kind, proc, port };
}

async function measure(c: Child, duration: number): Promise<Run> {
  const { default: autocannon } = await import('autocannon');
  const opts = {
    url: `http://127.0.0.1:${c.port}/`,
    connections: CONNECTIONS,
    pipelining: 1,
    // a foreign Host: the paper portal and the portal app redirect it
    headers: ['portal', 'plain-307', 'app'].includes(c.kind.server) ? { host: 'example.org' } : {},
  };
  c.proc.send({ cmd: 'mark' });
  const r = await autocannon({ ...opts, duration });
  const cpu = await ask(c.proc, 'cpu');
  const good = c.kind.expect === '2xx' ? r['2xx'] : r.non2xx;
  const bad = c.kind.expect === '2xx' ? r.non2xx : r['2xx'];
  return {
    rps: good / duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.timeouts + bad,
    cpu,
    cpuPerReq: (cpu * duration * 1e6) / Math.max(1, r['2xx'] + r.non2xx),
  };
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[n >> 1]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
};

async function main(): Promise<void> {
  const only = process.env.KINDS?.split(',').map((s) => s.trim());
  const wanted = ALL.filter(
    (k) => k.baseline !== '' && (!only || only.includes(k.id) || only.includes(k.id.replace(/@base$/, ''))),
  );
  const needed = ALL.filter((k) => wanted.includes(k) || wanted.some((w) => w.baseline === k.id));
  const before = conditions();
  const entries = {
    cur: underTsx ? fileURLToPath(import.meta.url) : await compile('cur'),
    base: BASE ? await compile('base') : '',
  };
  const children = new Map<string, Child>();
  try {
    for (const k of needed) {
      const c = await start(k, entries[k.tree]);
      children.set(k.id, c);
      await measure(c, 1); // warm-up: JIT, connection setup
    }
    const runs = new Map<string, Run[]>(needed.map((k) => [k.id, []]));
    const ratios = new Map<string, { rps: number[]; cpu: number[] }>(
      wanted.map((k) => [k.id, { rps: [], cpu: [] }]),
    );
    for (let round = 0; round < ROUNDS; round++) {
      let last: { id: string; run: Run } | undefined;
      const run = async (id: string): Promise<Run> => {
        const r = await measure(children.get(id)!, DURATION);
        runs.get(id)!.push(r);
        last = { id, run: r };
        return r;
      };
      for (const k of wanted) {
        // A B A: the kind between two runs of its baseline (the second one is the next kind's first).
        const b1 = last?.id === k.baseline ? last.run : await run(k.baseline);
        const x = await run(k.id);
        const b2 = await run(k.baseline);
        const rps = (b1.rps + b2.rps) / 2;
        const cpu = (b1.cpuPerReq + b2.cpuPerReq) / 2;
        ratios.get(k.id)!.rps.push(x.rps / rps);
        ratios.get(k.id)!.cpu.push(cpu / x.cpuPerReq);
      }
    }
    const synthRows: string[] = [];
    if (SYNTH && BASE)
      for (const k of wanted.filter((x) => x.tree === 'cur')) {
        const a = children.get(k.id)!;
        const b = children.get(`${k.id}@base`);
        if (!b) continue;
        await ask(a.proc, 'synth'); // warm-up
        await ask(b.proc, 'synth');
        const us: { cur: number[]; base: number[]; ratio: number[] } = { cur: [], base: [], ratio: [] };
        for (let round = 0; round < ROUNDS; round++) {
          const x = await ask(a.proc, 'synth');
          const y = await ask(b.proc, 'synth');
          us.cur.push(x);
          us.base.push(y);
          us.ratio.push(y / x);
        }
        synthRows.push(
          `| ${k.label} | ${median(us.base).toFixed(2)} (${Math.min(...us.base).toFixed(2)}–${Math.max(...us.base).toFixed(2)}) | ${median(us.cur).toFixed(2)} (${Math.min(...us.cur).toFixed(2)}–${Math.max(...us.cur).toFixed(2)}) | **${median(us.ratio).toFixed(2)}** (${Math.min(...us.ratio).toFixed(2)}–${Math.max(...us.ratio).toFixed(2)}) |`,
        );
      }
    const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');
    const spread = (xs: number[]): string => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;
    console.log(
      `\nbench/http — ${DURATION} s per run, ${CONNECTIONS} connections, pipelining 1, ${ROUNDS} alternating rounds; servers ${underTsx ? 'under tsx' : 'compiled'}${BASE ? `; @base = ${BASE}` : ''}`,
    );
    console.log(`before: ${before}\nafter:  ${conditions()}\n`);
    console.log(
      '| server | baseline | req/s (median) | p50 ms | p99 ms | errors | server CPU | CPU µs/req | ratio req/s: median (spread) | ratio CPU/req: median (spread) |',
    );
    console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const k of needed) {
      const rs = runs.get(k.id)!;
      const q = ratios.get(k.id);
      const m = (f: (r: Run) => number): number => median(rs.map(f));
      console.log(
        `| ${k.label} | ${k.baseline || '—'} | ${fmt(m((r) => r.rps))} | ${m((r) => r.p50)} | ${m((r) => r.p99)} | ${rs.reduce((a, r) => a + r.errors, 0)} | ${Math.round(m((r) => r.cpu) * 100)}% | ${m((r) => r.cpuPerReq).toFixed(1)} | ${q ? `**${median(q.rps).toFixed(2)}** (${spread(q.rps)})` : '1'} | ${q ? `${median(q.cpu).toFixed(2)} (${spread(q.cpu)})` : '1'} |`,
      );
    }
    if (synthRows.length) {
      console.log(
        `\nwithout sockets (SYNTH=1): server CPU µs per request, ${Number(process.env.SYNTH_N ?? 200_000).toLocaleString('en-US')} requests a run, ${ROUNDS} rounds alternating base, today\n`,
      );
      console.log(
        '| server | @base µs/req (spread) | today µs/req (spread) | base / today: median (spread) |',
      );
      console.log('|---|---:|---:|---:|');
      for (const r of synthRows) console.log(r);
    }
    console.log(
      '\nratio req/s: the kind over the mean of its baseline runs just before and after it, per round.' +
        "\nratio CPU/req: baseline CPU µs/req over the kind's (1 = as cheap), per round: robust to other load." +
        '\nserver CPU: the server process over the measured run (100% = one core; autocannon has the other).' +
        '\nNear 100% the server is the limit and req/s compares the servers; well below, the load generator' +
        '\n(or other load on the machine) is, and CPU µs/req is the fairer comparison.',
    );
  } finally {
    for (const c of children.values()) {
      if (PROFILE) c.proc.send({ cmd: 'exit' });
      else c.proc.kill();
    }
  }
}

if (process.argv[2] === 'serve') await serve(process.argv[3] as Server);
else if (process.argv[2] === undefined) await main();

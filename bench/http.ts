/**
 * bench/http: requests per second for a small response produced by a bus listener through the
 * HTTP server service, against plain node:http producing the same response, in the same run.
 *
 *   npm run bench:http        (DURATION=5 s per run, CONNECTIONS=50, pipelining 1, ROUNDS=2: best of two,
 *                             the kinds interleaved, so a burst of other load hits one run, not a row)
 *
 * Each server runs in a child process (this file forked with `serve <kind>`), so autocannon, the
 * load generator, does not share the server's event loop. Every server gets a 1 s warm-up first.
 * The child runs the code as production does, compiled by TypeScript (transpileModule into
 * node_modules/.cache/bench-http): under tsx every closure creation also runs esbuild's keepNames
 * `__name()` (an Object.defineProperty), which costs the bus and this service several µs a request.
 * TSX=1 runs the child under tsx instead, to see that cost.
 *
 * Rows:
 *   node:http plain   createServer((req, res) => { res.writeHead(200, …); res.end('ok') })
 *   metanet http      installHttpService + a listener on <name>/request that posts
 *                     {code: 200, headers: {Content-Type}, data: 'ok'} to <clientname>/response
 *   paper portal      examples/paper-portal.ts answering a foreign Host with its 307 redirect
 */
import { type ChildProcess, fork } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Bus, silentLogger } from '../src/core/index.js';
import { installHttpService } from '../src/services/http/index.js';

const DURATION = Number(process.env.DURATION ?? 5);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 50);
const ROUNDS = Number(process.env.ROUNDS ?? 2);
const KINDS = ['plain', 'metanet', 'portal'] as const;
type Kind = (typeof KINDS)[number];
const LABEL: Record<Kind, string> = {
  plain: 'node:http plain',
  metanet: 'metanet http service',
  portal: 'paper portal (307 redirect)',
};

/** Child side: start one server, tell the parent its port, run until killed. */
async function serve(kind: Kind): Promise<void> {
  let port: number;
  if (kind === 'plain') {
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 2 });
      res.end('ok');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  } else if (kind === 'metanet') {
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
  } else {
    const { startPortal } = await import('../examples/paper-portal.js');
    const p = await startPortal({ port: 0, host: '127.0.0.1', log: () => {} });
    port = p.port;
  }
  // The parent asks for the CPU time used between two marks: tells whether the server was the bottleneck.
  let mark = { cpu: process.cpuUsage(), at: process.hrtime.bigint() };
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'mark') mark = { cpu: process.cpuUsage(), at: process.hrtime.bigint() };
    else if (m.cmd === 'cpu') {
      const d = process.cpuUsage(mark.cpu);
      const wall = Number(process.hrtime.bigint() - mark.at) / 1000;
      process.send?.({ cpu: (d.user + d.system) / wall });
    }
  });
  process.send?.({ port });
}

function ask(child: ChildProcess, cmd: string): Promise<number> {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve((m as { cpu: number }).cpu));
    child.send({ cmd });
  });
}

interface Row {
  kind: Kind;
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

/** Transpile what the servers run (core, services, the example, this file) as tsc would; returns the entry. */
async function compile(): Promise<string> {
  const { default: ts } = await import('typescript');
  const out = join(ROOT, 'node_modules/.cache/bench-http');
  const tsFiles = (dir: string): string[] =>
    readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
    );
  const files = [
    ...tsFiles('src/core'),
    ...tsFiles('src/services/http'),
    'src/services/table.ts',
    'examples/paper-portal.ts',
    relative(ROOT, fileURLToPath(import.meta.url)),
  ];
  for (const f of files) {
    const js = ts.transpileModule(readFileSync(join(ROOT, f), 'utf8'), {
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
    }).outputText;
    mkdirSync(dirname(join(out, f)), { recursive: true });
    writeFileSync(join(out, f.replace(/\.ts$/, '.js')), js);
  }
  writeFileSync(join(out, 'package.json'), '{"type":"module"}\n');
  return join(out, relative(ROOT, fileURLToPath(import.meta.url)).replace(/\.ts$/, '.js'));
}

const underTsx = process.env.TSX === '1';

async function measure(kind: Kind, entry: string): Promise<Row> {
  const { default: autocannon } = await import('autocannon');
  const child = fork(entry, ['serve', kind], {
    stdio: 'inherit',
    execArgv: underTsx ? process.execArgv : [],
  });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once('message', (m) => resolve((m as { port: number }).port));
      child.once('exit', (c) => reject(new Error(`${kind} server exited (${c}) before listening`)));
    });
    const opts = {
      url: `http://127.0.0.1:${port}/`,
      connections: CONNECTIONS,
      pipelining: 1,
      headers: kind === 'portal' ? { host: 'example.org' } : {},
    };
    await autocannon({ ...opts, duration: 1 }); // warm-up: JIT, connection setup
    child.send({ cmd: 'mark' });
    const r = await autocannon({ ...opts, duration: DURATION });
    const cpu = await ask(child, 'cpu');
    const expected = kind === 'portal' ? r.non2xx : r['2xx'];
    return {
      kind,
      rps: expected / DURATION,
      p50: r.latency.p50,
      p99: r.latency.p99,
      errors: r.errors + r.timeouts + (kind === 'portal' ? r['2xx'] : r.non2xx),
      cpu,
      cpuPerReq: (cpu * DURATION * 1e6) / (r['2xx'] + r.non2xx),
    };
  } finally {
    child.kill();
  }
}

async function main(): Promise<void> {
  const entry = underTsx ? fileURLToPath(import.meta.url) : await compile();
  const best = new Map<Kind, Row>();
  for (let round = 0; round < ROUNDS; round++)
    for (const kind of KINDS) {
      const row = await measure(kind, entry);
      const old = best.get(kind);
      if (!old || row.rps > old.rps) best.set(kind, row);
    }
  const plain = best.get('plain')!.rps;
  const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');
  console.log(
    `\nbench/http — ${DURATION} s per run, ${CONNECTIONS} connections, pipelining 1, best of ${ROUNDS}; node ${process.version}; servers ${underTsx ? 'under tsx' : 'compiled'}\n`,
  );
  console.log('| server | req/s | p50 ms | p99 ms | errors | server CPU | CPU µs/req | ratio to plain |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const kind of KINDS) {
    const r = best.get(kind)!;
    console.log(
      `| ${LABEL[kind]} | ${fmt(r.rps)} | ${r.p50} | ${r.p99} | ${r.errors} | ${Math.round(r.cpu * 100)}% | ${r.cpuPerReq.toFixed(1)} | ${(r.rps / plain).toFixed(2)} |`,
    );
  }
  console.log(
    '\nserver CPU: the server process over the measured run (100% = one core; autocannon has the other).' +
      '\nNear 100% the server is the limit and req/s compares the servers; well below, the load generator' +
      '\n(or other load on the machine) is, and CPU µs/req is the fairer comparison.',
  );
}

if (process.argv[2] === 'serve') await serve(process.argv[3] as Kind);
else if (process.argv[2] === undefined) await main();

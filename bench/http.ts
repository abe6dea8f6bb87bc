/**
 * bench/http: requests per second for a small response produced by a bus listener through the
 * HTTP server service, against plain node:http producing the same response, in the same run.
 *
 *   npm run bench:http        (DURATION=5 s per run, CONNECTIONS=50, pipelining 1, ROUNDS=1)
 *
 * Each server runs in a child process (this file forked with `serve <kind>`), so autocannon, the
 * load generator, does not share the server's event loop. Every server gets a 1 s warm-up first.
 *
 * Rows:
 *   node:http plain   createServer((req, res) => { res.writeHead(200, …); res.end('ok') })
 *   metanet http      installHttpService + a listener on <name>/request that posts
 *                     {code: 200, headers: {Content-Type}, data: 'ok'} to <clientname>/response
 *   paper portal      examples/paper-portal.ts answering a foreign Host with its 307 redirect
 */
import { fork } from 'node:child_process';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { Bus, silentLogger } from '../src/core/index.js';
import { installHttpService } from '../src/services/http/index.js';

const DURATION = Number(process.env.DURATION ?? 5);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 50);
const ROUNDS = Number(process.env.ROUNDS ?? 1);
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
  process.send?.({ port });
}

interface Row {
  kind: Kind;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

async function measure(kind: Kind): Promise<Row> {
  const child = fork(fileURLToPath(import.meta.url), ['serve', kind], { stdio: 'inherit' });
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
    const r = await autocannon({ ...opts, duration: DURATION });
    const expected = kind === 'portal' ? r.non2xx : r['2xx'];
    return {
      kind,
      rps: expected / DURATION,
      p50: r.latency.p50,
      p99: r.latency.p99,
      errors: r.errors + r.timeouts + (kind === 'portal' ? r['2xx'] : r.non2xx),
    };
  } finally {
    child.kill();
  }
}

async function main(): Promise<void> {
  const best = new Map<Kind, Row>();
  for (let round = 0; round < ROUNDS; round++)
    for (const kind of KINDS) {
      const row = await measure(kind);
      const old = best.get(kind);
      if (!old || row.rps > old.rps) best.set(kind, row);
    }
  const plain = best.get('plain')!.rps;
  const fmt = (x: number): string => Math.round(x).toLocaleString('en-US');
  console.log(
    `\nbench/http — ${DURATION} s per run, ${CONNECTIONS} connections, pipelining 1, best of ${ROUNDS}; node ${process.version}\n`,
  );
  console.log('| server | req/s | p50 ms | p99 ms | errors | ratio to plain |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const kind of KINDS) {
    const r = best.get(kind)!;
    console.log(
      `| ${LABEL[kind]} | ${fmt(r.rps)} | ${r.p50} | ${r.p99} | ${r.errors} | ${(r.rps / plain).toFixed(2)} |`,
    );
  }
}

if (process.argv[2] === 'serve') await serve(process.argv[3] as Kind);
else await main();

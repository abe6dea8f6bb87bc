/**
 * Helper of bench/footprint.ts, run inside the guest namespace: `count` guests log in to the
 * captive portal, each from its own source address (first, first+1, … already on the guest's
 * interface): GET the splash page, take its CSRF token, POST /accept with it, expect the 303.
 * `concurrency` guests at a time. Optionally one DNS query through the router first (`--dns NAME`).
 *
 *   node --import tsx bench/footprint-login.ts --portal 10.20.0.1:8080 --first 10.20.0.10 \
 *        --count 1000 [--concurrency 20] [--dns example.com]
 *
 * Prints one JSON line: {ok, failed, statuses, errors (first few), ms, getMs/postMs p50/p95/max, dns}.
 */
import { request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

interface Answer {
  code: number;
  body: string;
}

function http(
  method: 'GET' | 'POST',
  host: string,
  port: number,
  path: string,
  localAddress: string,
  body?: string,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        method,
        host,
        port,
        path,
        localAddress,
        agent: false,
        timeout: 15_000,
        headers: {
          'User-Agent': 'metanet-bench-footprint',
          ...(body !== undefined
            ? {
                'Content-Type': 'application/x-www-form-urlencoded',
                'Content-Length': String(Buffer.byteLength(body)),
              }
            : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ code: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} from ${localAddress}: timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

const ipToInt = (ip: string): number => ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
const intToIp = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

/** The words of an HTML page (the portal's error pages carry the reason in their text). */
const text = (html: string): string =>
  html
    .replace(/<(style|title)[\s\S]*?<\/\1>/g, '')
    .replace(/<[^>]+>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();

function pct(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((q / 100) * s.length))]! : Number.NaN;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      portal: { type: 'string', default: '10.20.0.1:8080' },
      first: { type: 'string' },
      count: { type: 'string', default: '1000' },
      concurrency: { type: 'string', default: '20' },
      dns: { type: 'string' },
    },
    strict: true,
  });
  if (!values.first) throw new Error('--first ADDRESS is required');
  const [host, portText] = values.portal.split(':') as [string, string | undefined];
  const port = Number(portText ?? 80);
  const count = Number(values.count);
  const concurrency = Number(values.concurrency);
  const first = ipToInt(values.first);

  let dns: { name: string; addresses?: string[]; error?: string; ms: number } | undefined;
  if (values.dns) {
    const { Resolver } = await import('node:dns/promises');
    const r = new Resolver({ timeout: 3000, tries: 1 });
    r.setServers([host]);
    const t = performance.now();
    try {
      dns = { name: values.dns, addresses: await r.resolve4(values.dns), ms: performance.now() - t };
    } catch (e) {
      dns = { name: values.dns, error: (e as Error).message, ms: performance.now() - t };
    }
  }

  const statuses: Record<string, number> = {};
  const errors: string[] = [];
  const getMs: number[] = [];
  const postMs: number[] = [];
  let ok = 0;
  let next = 0;
  const note = (key: string): void => {
    statuses[key] = (statuses[key] ?? 0) + 1;
  };

  async function login(ip: string): Promise<void> {
    let t = performance.now();
    const page = await http('GET', host, port, '/', ip);
    getMs.push(performance.now() - t);
    const token = /name="csrf" value="([^"]+)"/.exec(page.body)?.[1];
    if (page.code !== 200 || !token) {
      note(`GET ${page.code}${token ? '' : ' (no token)'}`);
      if (errors.length < 5) errors.push(`${ip}: GET / → ${page.code}: ${text(page.body).slice(0, 200)}`);
      return;
    }
    t = performance.now();
    const done = await http('POST', host, port, '/accept', ip, `csrf=${encodeURIComponent(token)}&url=`);
    postMs.push(performance.now() - t);
    note(`POST ${done.code}`);
    if (done.code === 303) ok++;
    else if (errors.length < 5)
      errors.push(`${ip}: POST /accept → ${done.code}: ${text(done.body).slice(0, 200)}`);
  }

  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < count) {
      const ip = intToIp(first + next++);
      try {
        await login(ip);
      } catch (e) {
        note('error');
        if (errors.length < 5) errors.push(`${ip}: ${(e as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
  process.stdout.write(
    `${JSON.stringify({
      ok,
      failed: count - ok,
      statuses,
      errors,
      ms: performance.now() - t0,
      getMs: { p50: pct(getMs, 50), p95: pct(getMs, 95), max: pct(getMs, 100) },
      postMs: { p50: pct(postMs, 50), p95: pct(postMs, 95), max: pct(postMs, 100) },
      dns,
    })}\n`,
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`footprint-login: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});

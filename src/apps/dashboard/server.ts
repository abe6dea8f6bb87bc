import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MetanetError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { inCidr, ipToInt, isIPv4, parseCidr } from '../../services/dhcp/ip.js';
import type { DashboardConfig } from './app.js';
import { ARCHIVES, type History, type Resolution } from './history.js';
import { page } from './page.js';

/** One guest online, as the page lists it. */
export interface GuestRow {
  readonly ip: string;
  readonly mac: string;
  readonly hostname: string;
  /** Session start and end, epoch seconds. */
  readonly since: number;
  readonly expires: number;
  readonly up: number;
  readonly down: number;
  readonly idle: number;
  /** Bits/s over the last sample interval. */
  readonly rateUp: number;
  readonly rateDown: number;
}

/** One extrusion detection, as the page lists it. */
export interface Detection {
  readonly at: number;
  readonly ip: string;
  readonly mac: string;
  readonly rule: string;
  readonly count: number;
  readonly threshold: number;
  readonly window: number;
  readonly action: string;
}

export type Action = 'deauth' | 'block' | 'trust';

export interface DashboardServerOptions {
  readonly config: DashboardConfig;
  readonly history: History;
  guests(): readonly GuestRow[];
  detections(): readonly Detection[];
  /** Call the portal's verb; `target` is the IP (deauth) or the MAC (block, trust). */
  act(action: Action, target: string): Promise<Record<string, unknown>>;
  readonly log: Logger;
}

export interface DashboardServer {
  readonly address: string;
  readonly port: number;
  /** Send an event to every page open on `/events`. */
  push(event: string, data: unknown): void;
  close(): Promise<void>;
}

/** The page's own script and style: next to this module (src), or in src when run from dist. */
function assetDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const own = join(here, 'assets');
  return existsSync(own) ? own : join(here, '../../../../src/apps/dashboard/assets');
}

const TYPES: Readonly<Record<string, string>> = {
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
};

/**
 * The dashboard's HTTP server (plain node:http): `/` the page, `/static/*` its script and style
 * and uPlot's (from node_modules), `/api/state`, `/api/history?res=hour|day|month`,
 * `/api/guest?mac=…&res=…` (one guest's bytes), `/events`
 * (Server-Sent Events), `POST /api/action` (CSRF token in `X-CSRF-Token`). HTTP Basic with the
 * operator password when one is set; hosts of `deny` subnets get no answer at all.
 */
export async function serveDashboard(o: DashboardServerOptions): Promise<DashboardServer> {
  const { config, log } = o;
  const [address, portText] = config.listen.split(':') as [string, string];
  const denied = config.deny.map(parseCidr);
  const csrf = randomBytes(24).toString('base64url');
  const digest = (s: string): Buffer => createHash('sha256').update(s).digest();
  const want = config.password === undefined ? undefined : digest(config.password);
  const uplot = dirname(createRequire(import.meta.url).resolve('uplot'));
  const assets = assetDir();
  const files: Readonly<Record<string, string>> = {
    'dashboard.js': join(assets, 'dashboard.js'),
    'dashboard.css': join(assets, 'dashboard.css'),
    'uPlot.js': join(uplot, 'uPlot.iife.min.js'),
    'uPlot.css': join(uplot, 'uPlot.min.css'),
  };
  const cache = new Map<string, Buffer>();
  const streams = new Set<ServerResponse>();

  const authorized = (req: IncomingMessage): boolean => {
    if (!want) return true;
    const m = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    if (!m) return false;
    const text = Buffer.from(m[1]!, 'base64').toString('utf8');
    const pass = text.slice(text.indexOf(':') + 1);
    return timingSafeEqual(digest(pass), want);
  };

  const send = (res: ServerResponse, code: number, type: string, body: string | Buffer): void => {
    res.writeHead(code, {
      'Content-Type': type,
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      'X-Frame-Options': 'DENY',
      'Referrer-Policy': 'no-referrer',
      'Content-Security-Policy':
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
    });
    res.end(body);
  };
  const json = (res: ServerResponse, code: number, v: unknown): void =>
    send(res, code, 'application/json; charset=utf-8', JSON.stringify(v));

  const history = (res: Resolution): unknown => {
    const s = o.history.series(res);
    return { step: s.step, t: s.t, ...s.values };
  };

  const readBody = (req: IncomingMessage): Promise<string> =>
    new Promise((resolve, reject) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => {
        body += d;
        if (body.length > 4096) {
          reject(new Error('body too large'));
          req.destroy();
        }
      });
      req.on('end', () => resolve(body));
      req.on('error', reject);
    });

  async function action(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const token = req.headers['x-csrf-token'];
    const given = Buffer.from(typeof token === 'string' ? token : '');
    if (given.length !== csrf.length || !timingSafeEqual(given, Buffer.from(csrf))) {
      json(res, 403, { error: 'bad or missing CSRF token' });
      return;
    }
    if (!(req.headers['content-type'] ?? '').startsWith('application/json')) {
      json(res, 415, { error: 'send application/json' });
      return;
    }
    let body: { action?: unknown; target?: unknown };
    try {
      body = JSON.parse(await readBody(req)) as typeof body;
    } catch {
      json(res, 400, { error: 'not JSON' });
      return;
    }
    const act = body.action;
    const target = typeof body.target === 'string' ? body.target : '';
    const ok =
      (act === 'deauth' && isIPv4(target)) ||
      ((act === 'block' || act === 'trust') && /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(target));
    if (!ok) {
      json(res, 400, { error: 'give action deauth with an IPv4 target, or block/trust with a MAC' });
      return;
    }
    try {
      const r = await o.act(act as Action, target);
      log.log('info', 'dashboard: operator action', { action: act, target });
      json(res, 200, r);
    } catch (e) {
      json(res, 502, { error: e instanceof Error ? e.message : String(e) });
    }
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://dashboard');
    if (!authorized(req)) {
      res.writeHead(401, {
        'WWW-Authenticate': 'Basic realm="MetaNet dashboard", charset="UTF-8"',
        'Content-Type': 'text/plain; charset=utf-8',
      });
      res.end('operator password required\n');
      return;
    }
    const path = url.pathname;
    if (req.method === 'POST' && path === '/api/action') {
      void action(req, res).catch((e: unknown) => json(res, 500, { error: String(e) }));
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD, POST' });
      res.end();
      return;
    }
    if (path === '/') return send(res, 200, 'text/html; charset=utf-8', page(csrf));
    if (path === '/api/state')
      return json(res, 200, {
        now: Date.now(),
        guests: o.guests(),
        detections: o.detections(),
        extrusion: config.extrusion !== false,
      });
    if (path === '/api/history') {
      const r = url.searchParams.get('res') ?? 'hour';
      if (!ARCHIVES.some((a) => a.name === r)) return json(res, 400, { error: 'res: hour, day or month' });
      return json(res, 200, history(r as Resolution));
    }
    if (path === '/api/guest') {
      const r = url.searchParams.get('res') ?? 'hour';
      const mac = (url.searchParams.get('mac') ?? '').toLowerCase();
      if (!ARCHIVES.some((a) => a.name === r)) return json(res, 400, { error: 'res: hour, day or month' });
      const g = o.history.guest(mac, r as Resolution);
      if (!g) return json(res, 404, { error: `no history for ${mac}` });
      return json(res, 200, { mac, step: g.step, t: g.t, ...g.values });
    }
    if (path === '/events') {
      res.writeHead(200, {
        'Content-Type': 'text/event-stream',
        'Cache-Control': 'no-store',
        Connection: 'keep-alive',
      });
      res.write('retry: 2000\n\n');
      streams.add(res);
      req.on('close', () => streams.delete(res));
      return;
    }
    const name = path.startsWith('/static/') ? path.slice(8) : '';
    const file = files[name];
    if (file) {
      let body = cache.get(name);
      if (!body) {
        body = readFileSync(file);
        cache.set(name, body);
      }
      return send(res, 200, TYPES[name.split('.').pop()!]!, body);
    }
    send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
  });
  server.on('connection', (sock) => {
    if (denied.length === 0) return;
    const ip = (sock.remoteAddress ?? '').replace(/^::ffff:/, '');
    if (isIPv4(ip) && denied.some((c) => inCidr(c, ipToInt(ip)))) sock.destroy();
  });
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) =>
      reject(new MetanetError('EFAIL', `dashboard: cannot listen on ${config.listen}: ${e.message}`)),
    );
    server.listen(Number(portText), address, () => resolve());
  });
  const bound = server.address();
  const port = typeof bound === 'object' && bound ? bound.port : Number(portText);
  const keepalive = setInterval(() => {
    for (const s of streams) s.write(': ping\n\n');
  }, 15_000);
  keepalive.unref();

  return {
    address,
    port,
    push(event, data) {
      const text = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
      for (const s of streams) s.write(text);
    },
    async close() {
      clearInterval(keepalive);
      for (const s of streams) s.end();
      streams.clear();
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
    },
  };
}

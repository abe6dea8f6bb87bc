import { type Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { Bus, type Message, silentLogger } from '../../../src/core/index.js';
import { type HttpService, installHttpService } from '../../../src/services/http/index.js';

export interface Fixture {
  bus: Bus;
  service: HttpService;
  close(): Promise<void>;
}

let seq = 0;

export function fixture(): Fixture {
  const bus = new Bus({ name: `http-test-${process.pid}-${++seq}`, logger: silentLogger });
  const service = installHttpService(bus);
  return {
    bus,
    service,
    async close() {
      await service.close();
      await bus.close();
    },
  };
}

/** Create a server through the bus (as any daemon would) and return its port. */
export async function newServer(bus: Bus, name: string, extra: Record<string, number | string> = {}) {
  const r = await bus.request('/system/http/server/new', { name, port: 0, ...extra });
  if (r.has('error')) throw new Error(r.str('error'));
  return r.int('port');
}

export interface Reply {
  status: number;
  /** The reason phrase of the status line. */
  statusMessage: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

/** One request with node:http (full control over method, headers and body framing). */
export function send(
  port: number,
  opts: {
    method?: string;
    path?: string;
    headers?: Record<string, string | string[]>;
    body?: (string | Buffer)[];
    agent?: Agent | false;
  } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method: opts.method ?? 'GET',
        path: opts.path ?? '/',
        headers: opts.headers,
        agent: opts.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            statusMessage: res.statusMessage ?? '',
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            body: Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    for (const b of opts.body ?? []) req.write(b);
    req.end();
  });
}

/**
 * Write raw bytes on a TCP connection (then half-close it when `end`); resolve with everything
 * read until the server closes (or `ms`).
 */
export function raw(port: number, data: string | Buffer, ms = 2000, end = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const t = setTimeout(() => {
      s.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    }, ms);
    s.on('data', (c) => chunks.push(c));
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNRESET' || e.code === 'EPIPE') return; // the server may cut a bad client
      clearTimeout(t);
      reject(e);
    });
    s.on('close', () => {
      clearTimeout(t);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    if (end) s.end(data);
    else s.write(data);
  });
}

/** A listener that answers every request with 200 and the given text (and records the requests). */
export function answerAll(bus: Bus, name: string, text = 'ok'): Message[] {
  const seen: Message[] = [];
  bus.append(`${name}/request`, (m) => {
    seen.push(m);
    bus.post(`${m.str('clientname')}/response`, {
      code: 200,
      headers: { 'Content-Type': 'text/plain' },
      data: text,
    });
  });
  return seen;
}

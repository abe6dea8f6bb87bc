import type { Bus } from '../../core/bus.js';
import { MetanetError } from '../../core/errors.js';
import { type Context, STOP } from '../../core/listener.js';
import type { Message } from '../../core/message.js';
import { checkPath } from '../../core/path.js';
import { validate } from '../table.js';
import { errorCode, errorText } from './errors.js';
import { HttpServer } from './server.js';
import { HTTP_NEW, HTTP_SERVICE_ERROR, spec } from './table.js';

/** Defaults for the servers this service creates (each `new` message may override them). */
export interface HttpServiceOptions {
  /** Listen address; default 127.0.0.1. */
  readonly host?: string;
  /** Largest request body in bytes; default 1 MiB. */
  readonly bodyLimit?: number;
  /** ms a request waits for its response before 504; default 30000. */
  readonly timeout?: number;
  /** Connections one client address may hold open at once (more are reset at accept); default 0 = no cap. */
  readonly maxConnectionsPerPeer?: number;
}

export interface HttpService {
  /** Close every server this service made and detach `/system/http/server/new`. */
  close(): Promise<void>;
}

const NEW = spec('service', HTTP_NEW);

/** `cert` and `key` (PEM, str or bytes): both for HTTPS, neither for HTTP. */
function tlsOf(m: Message): { cert: string | Uint8Array; key: string | Uint8Array } | undefined {
  const cert = m.get('cert');
  const key = m.get('key');
  if (cert === undefined && key === undefined) return undefined;
  if (cert === undefined || key === undefined)
    throw new MetanetError('EBADTUPLE', `${HTTP_NEW}: HTTPS needs both "cert" and "key" (PEM)`);
  return { cert: cert.value as string | Uint8Array, key: key.value as string | Uint8Array };
}

function range(m: Message, tag: string, fallback: number, min: number, max: number): number {
  const v = m.int(tag, fallback);
  if (v < min || v > max)
    throw new MetanetError('EBADTUPLE', `${HTTP_NEW}: tuple "${tag}" is ${v}, expected ${min} to ${max}`);
  return v;
}

/**
 * Attach the HTTP server service to a bus: a message to `/system/http/server/new` {name, port, …}
 * creates a server named by a mailbox path (docs/services/http.md); with `cert` and `key` (PEM) it
 * speaks HTTPS. Replies on the message's reply-to (so `bus.request` works) with {name, port, host,
 * tls} or {error, code, name}.
 */
export function installHttpService(bus: Bus, opts: HttpServiceOptions = {}): HttpService {
  const servers = new Map<string, HttpServer>();
  const forget = (s: HttpServer): void => {
    if (servers.get(s.name) === s) servers.delete(s.name);
  };

  async function httpServerNew(m: Message, ctx: Context): Promise<typeof STOP> {
    let name: string | undefined;
    let reserved = false;
    try {
      validate(NEW, HTTP_NEW, m);
      name = checkPath(m.str('name'));
      if (servers.has(name))
        throw new MetanetError('EEXIST', `${HTTP_NEW}: an HTTP server named ${name} already exists`);
      const s = new HttpServer(
        bus,
        {
          name,
          port: range(m, 'port', 0, 0, 65535),
          host: m.str('host', opts.host ?? '127.0.0.1'),
          bodyLimit: range(m, 'bodyLimit', opts.bodyLimit ?? 1 << 20, 0, 2 ** 31),
          timeout: range(m, 'timeout', opts.timeout ?? 30000, 1, 2 ** 31 - 1),
          tls: tlsOf(m),
          maxConnectionsPerPeer: range(
            m,
            'maxConnectionsPerPeer',
            opts.maxConnectionsPerPeer ?? 0,
            0,
            1 << 20,
          ),
        },
        forget,
      );
      servers.set(name, s);
      reserved = true;
      const { port, host } = await s.listen();
      if (ctx.replyTo !== undefined) await ctx.reply({ name, port, host, tls: s.tls });
    } catch (e) {
      if (reserved && name !== undefined) servers.delete(name);
      const code = errorCode(e);
      const error =
        e instanceof MetanetError ? e.message : `${HTTP_NEW}: cannot listen for ${name}: ${errorText(e)}`;
      bus.post(HTTP_SERVICE_ERROR, { error, code, name });
      if (ctx.replyTo !== undefined) await ctx.reply({ error, code, name }).catch(() => {});
    }
    return STOP;
  }

  const handle = bus.listen(HTTP_NEW, httpServerNew, { identity: { service: 'http' } });
  return {
    async close(): Promise<void> {
      handle.remove();
      await Promise.all([...servers.values()].map((s) => s.close()));
    },
  };
}

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { createSecureContext } from 'node:tls';
import type { Bus } from '../../core/bus.js';
import { MetanetError } from '../../core/errors.js';
import type { Context, SendResult } from '../../core/listener.js';
import type { Message } from '../../core/message.js';
import { attachTable, type ServiceTable } from '../table.js';
import { type Client, Clients } from './clients.js';
import { errorCode, errorText } from './errors.js';
import { type HeadInfo, plainAddress, readHead, requestMessage } from './request.js';
import { writePlain, writeResponse } from './response.js';
import { HTTP_NEW, HTTP_TABLE } from './table.js';

const RESOLVED = Promise.resolve();

export interface HttpServerOptions {
  readonly name: string;
  readonly port: number;
  readonly host: string;
  readonly bodyLimit: number;
  readonly timeout: number;
  /** PEM certificate and key: the server speaks HTTPS (node:https); absent: plain HTTP. */
  readonly tls?: { readonly cert: string | Uint8Array; readonly key: string | Uint8Array } | undefined;
  /** Connections one client address may hold open at once; more are reset at accept. 0 = no cap. */
  readonly maxConnectionsPerPeer?: number;
}

/** At most one log line (and `<name>/error` message) per peer and kind of refusal in this window. */
const REFUSAL_REPORT_MS = 10_000;

const WAITING = 0;
const ANSWERED = 1;

/**
 * One request between its arrival and the end of the bus turn it was answered in. Its mailboxes
 * are paths under a route, found by number (clients.ts): no mailbox of their own. It sits in the
 * server's list of requests in arrival order (a linked list: O(1) removal, no hashing).
 */
class Pending implements Client {
  state = WAITING;
  prev: Pending | undefined;
  next: Pending | undefined;
  constructor(
    readonly server: HttpServer,
    readonly seq: number,
    readonly clientname: string,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly deadline: number,
  ) {}
  get responsePath(): string {
    return `${this.clientname}/response`;
  }
  respond(m: Message): void {
    this.server.respond(this, m);
  }
  close(): void {
    this.server.closeClient(this);
  }
  /** The send result of `<name>/request`: nobody listened → 503 at once. */
  readonly sent = (r: SendResult): void => {
    if (!r.delivered) this.server.answer(this, 503, `nobody listens on ${this.server.requestPath}\n`);
  };
}

const SERVER_TABLE: ServiceTable = HTTP_TABLE.filter((s) => s.scope === 'server');
const CLOSE_SUFFIX = '/close';
const STATS_SUFFIX = '/stats';

/** node:https options from PEM text or bytes; a bad certificate or key is EBADTUPLE naming it. */
function tlsOptions(t: NonNullable<HttpServerOptions['tls']>): { cert: Buffer; key: Buffer } {
  const cert = Buffer.from(t.cert);
  const key = Buffer.from(t.key);
  try {
    createSecureContext({ cert, key });
  } catch (e) {
    throw new MetanetError(
      'EBADTUPLE',
      `${HTTP_NEW}: "cert"/"key" are not a PEM certificate and its key: ${errorText(e)}`,
    );
  }
  return { cert, key };
}

/**
 * One HTTP server named by a mailbox path: node:http underneath (the maintained parser: keep-alive,
 * chunked bodies), each request a message on `<name>/request`, answered on `<clientname>/response`.
 * Lean request path (docs/services/http.md, Performance): the requests' mailboxes are one route
 * (`bus.route('<name>/client')`: no mailbox per request), the request goes out with `sendLocal`
 * (no promise), and one timer serves every request's timeout.
 */
export class HttpServer {
  readonly name: string;
  readonly requestPath: string;
  readonly errorPath: string;
  /** The requests' paths (taken at the first request, released by close()). */
  private clients: Clients | undefined;
  /** Whether it speaks HTTPS. */
  readonly tls: boolean;
  private readonly server: Server | HttpsServer;
  /** Requests waiting for their response, oldest first. */
  private head: Pending | undefined;
  private tail: Pending | undefined;
  /** Answered requests whose mailboxes the next sweep removes. */
  private finished: Pending[] = [];
  private sweepScheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  private detach: (() => void) | undefined;
  /** Open connections per client address. */
  private readonly perPeer = new Map<string, number>();
  /** Refusals not reported yet, by `kind peer`: the count since the last report and its time. */
  private readonly refusals = new Map<string, { count: number; reported: number }>();
  /** Connections reset because their peer held `maxConnectionsPerPeer` already. */
  refusedByCap = 0;
  /** accept() failures for want of file descriptors (EMFILE/ENFILE). */
  refusedNoFd = 0;
  /** Connections accepted since start (refused ones included), and open now. */
  accepted = 0;
  open = 0;

  constructor(
    private readonly bus: Bus,
    private readonly opts: HttpServerOptions,
    private readonly onClosed: (s: HttpServer) => void,
  ) {
    this.name = opts.name;
    this.requestPath = `${opts.name}/request`;
    this.errorPath = `${opts.name}/error`;
    this.tls = opts.tls !== undefined;
    this.server = opts.tls
      ? createHttpsServer(tlsOptions(opts.tls), this.onRequest)
      : createServer(this.onRequest);
    this.server.on('clientError', this.onClientError);
    this.server.on('connection', this.onConnection);
  }

  /** Start listening; resolves with the real port. Then attaches `<name>/close`. */
  listen(): Promise<{ port: number; host: string }> {
    return new Promise((resolve, reject) => {
      const fail = (e: Error): void => reject(e);
      this.server.once('error', fail);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', fail);
        this.server.on('error', (e) => {
          const code = errorCode(e);
          if (code === 'EMFILE' || code === 'ENFILE') return this.noFd(code);
          this.report({ error: errorText(e), code });
        });
        this.detach = attachTable(this.bus, this.name, SERVER_TABLE, {
          [CLOSE_SUFFIX]: (_m: Message, ctx: Context) =>
            this.close().then(() => {
              if (ctx.replyTo !== undefined) ctx.reply({ name: this.name, closed: true }).catch(() => {});
            }),
          [STATS_SUFFIX]: (_m: Message, ctx: Context) => {
            if (ctx.replyTo !== undefined) ctx.reply({ name: this.name, ...this.stats() }).catch(() => {});
          },
        });
        const a = this.server.address();
        resolve({ port: typeof a === 'object' && a ? a.port : this.opts.port, host: this.opts.host });
      });
    });
  }

  /** Stop listening, cut every connection, remove every per-request mailbox. Idempotent. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.detach?.();
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    }).then(() => {
      for (let p = this.head; p !== undefined; p = this.head) this.finish(p);
      this.sweep();
      this.clients?.release();
      this.clients = undefined;
      this.onClosed(this);
    });
    return this.closing;
  }

  // ---- hostile peers: the per-peer cap, out of file descriptors ---------------------------

  /** Every accepted TCP connection (before TLS, before HTTP): count it, or reset it over the cap. */
  private readonly onConnection = (socket: Socket): void => {
    this.accepted++;
    const cap = this.opts.maxConnectionsPerPeer ?? 0;
    const peer = plainAddress(socket.remoteAddress);
    const open = this.perPeer.get(peer) ?? 0;
    if (cap > 0 && open >= cap) {
      this.refusedByCap++;
      // A reset, not a FIN: nothing is left behind on our side (no TIME_WAIT per refused connection).
      if (typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
      else socket.destroy();
      this.refused(
        'cap',
        peer,
        `${peer} holds ${open} connections (maxConnectionsPerPeer ${cap})`,
        'ECONNCAP',
      );
      return;
    }
    this.perPeer.set(peer, open + 1);
    this.open++;
    socket.once('close', () => {
      this.open--;
      const n = (this.perPeer.get(peer) ?? 1) - 1;
      if (n <= 0) this.perPeer.delete(peer);
      else this.perPeer.set(peer, n);
    });
  };

  /** accept() failed: out of file descriptors (libuv closes the pending connection itself). */
  private noFd(code: string): void {
    this.refusedNoFd++;
    this.refused('fd', '', 'out of file descriptors: a connection was refused at accept', code);
  }

  /**
   * Log a refusal and post it on `<name>/error`: the first of a kind and peer at once, then at most
   * one line per REFUSAL_REPORT_MS with how many there were meanwhile (a flood is not a log flood).
   */
  private refused(kind: string, peer: string, what: string, code: string): void {
    const key = `${kind} ${peer}`;
    const now = performance.now();
    const r = this.refusals.get(key);
    if (r && now - r.reported < REFUSAL_REPORT_MS) {
      r.count++;
      return;
    }
    const count = (r?.count ?? 0) + 1;
    this.refusals.set(key, { count: 0, reported: now });
    if (this.refusals.size > 10_000) this.refusals.clear();
    const error = `connection refused: ${what}${count > 1 ? ` (${count} since the last report)` : ''}`;
    this.bus.log.log('warn', `http ${this.name}: ${error}`, { peer, refused: count });
    this.report({ error, code, ...(peer ? { peerhost: peer } : {}) });
  }

  /** Figures for `<name>/stats` (STATS_REPLY in table.ts). */
  stats(): Record<string, number> {
    return {
      connections: this.open,
      peers: this.perPeer.size,
      accepted: this.accepted,
      'refused-cap': this.refusedByCap,
      'refused-fd': this.refusedNoFd,
      'max-per-peer': this.opts.maxConnectionsPerPeer ?? 0,
    };
  }

  // ---- the request path ----------------------------------------------------------------

  private readonly onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const head = readHead(req.rawHeaders);
    const limit = this.opts.bodyLimit;
    if (head.contentLength > limit) {
      writePlain(
        res,
        413,
        `request body of ${head.contentLength} bytes is over the limit of ${limit}\n`,
        true,
      );
      return;
    }
    if (head.contentLength <= 0 && !head.chunked) {
      this.dispatch(req, res, head, undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > limit) {
        req.off('data', onData);
        req.off('end', onEnd);
        writePlain(res, 413, `request body is over the limit of ${limit} bytes\n`, true);
        return;
      }
      chunks.push(c);
    };
    const onEnd = (): void => {
      this.dispatch(req, res, head, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    };
    req.on('data', onData);
    req.on('end', onEnd);
  };

  private dispatch(
    req: IncomingMessage,
    res: ServerResponse,
    head: HeadInfo,
    body: Buffer | undefined,
  ): void {
    const bus = this.bus;
    if (bus.isClosed || this.closing) {
      writePlain(res, 503, 'server closing\n', true);
      return;
    }
    const clients = (this.clients ??= Clients.take(bus, this.name));
    const seq = clients.next();
    const p = new Pending(this, seq, clients.base + seq, req, res, performance.now() + this.opts.timeout);
    clients.add(p);
    // the list of waiting requests, oldest first
    p.prev = this.tail;
    if (this.tail === undefined) this.head = p;
    else this.tail.next = p;
    this.tail = p;
    if (this.timer === undefined) this.arm(this.opts.timeout);
    // A callback, not send()'s promise: nothing more to allocate, no microtask. It throws only for
    // a closed bus, checked above.
    bus.sendLocal(this.requestPath, requestMessage(p.clientname, req, head, body), p.sent);
    // An I/O callback: deliver now rather than a loop turn later (docs/core.md, deliverQueued).
    bus.deliverQueued();
  }

  /** @internal `<clientname>/response`: the first one wins. */
  respond(p: Pending, m: Message): void {
    if (p.state !== WAITING) return; // a second response: the first one won
    this.finish(p);
    if (p.res.destroyed) return; // the client went away
    try {
      writeResponse(p.res, p.responsePath, m);
    } catch (e) {
      this.report({
        mailbox: p.responsePath,
        error: errorText(e),
        code: errorCode(e),
        clientname: p.clientname,
      });
      writePlain(p.res, 500, `bad response message: ${errorText(e)}\n`);
    }
  }

  /** @internal `<clientname>/close`: close the connection (after the response, if one was sent). */
  closeClient(p: Pending): void {
    const sock = p.req.socket;
    if (p.state === WAITING) {
      this.finish(p);
      sock.destroy();
    } else if (p.res.writableFinished) sock.end();
    else p.res.once('finish', () => sock.end());
  }

  /** @internal An answer the service gives by itself (503, 504). */
  answer(p: Pending, code: number, text: string): void {
    if (p.state !== WAITING) return;
    this.finish(p);
    writePlain(p.res, code, text);
  }

  /**
   * Answered: out of the waiting list now; its paths stop being served once the current bus turn
   * is over: a `close` sent in the same turn as the response is delivered in the same turn, so it
   * still lands. A microtask, not an immediate: the bus runs a whole turn in one callback, and an
   * immediate would cost a loop iteration.
   */
  private finish(p: Pending): void {
    p.state = ANSWERED;
    const { prev, next } = p;
    if (prev === undefined) this.head = next;
    else prev.next = next;
    if (next === undefined) this.tail = prev;
    else next.prev = prev;
    p.prev = p.next = undefined;
    this.finished.push(p);
    if (!this.sweepScheduled) {
      this.sweepScheduled = true;
      RESOLVED.then(this.sweep); // a microtask without queueMicrotask's AsyncResource per call
    }
  }

  private readonly sweep = (): void => {
    this.sweepScheduled = false;
    const done = this.finished;
    if (done.length === 0) return;
    this.finished = [];
    this.clients?.drop(done);
  };

  // ---- timeouts: one timer per server, for the oldest waiting request -------------------

  private arm(ms: number): void {
    this.timer = setTimeout(this.expire, ms);
    this.timer.unref();
  }

  private readonly expire = (): void => {
    this.timer = undefined;
    const now = performance.now();
    for (let p = this.head; p !== undefined; p = this.head) {
      if (p.deadline > now) {
        this.arm(p.deadline - now);
        return;
      }
      this.answer(p, 504, `no response within ${this.opts.timeout} ms\n`);
    }
  };

  // ---- malformed HTTP --------------------------------------------------------------------

  private readonly onClientError = (err: Error & { code?: string }, socket: Duplex): void => {
    const s = socket as Socket & { _httpMessage?: ServerResponse | null };
    if (err.code !== 'ECONNRESET')
      this.report({
        error: `malformed HTTP from ${s.remoteAddress}:${s.remotePort}: ${err.message}`,
        code: err.code ?? 'EHTTP',
        peerhost: plainAddress(s.remoteAddress),
        peerport: s.remotePort ?? 0,
      });
    // Answer only when no response is in progress on this connection (never mid-response).
    if (err.code === 'ECONNRESET' || !s.writable || s._httpMessage) {
      s.destroy();
      return;
    }
    const code =
      err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const text =
      code === 431 ? 'Request Header Fields Too Large' : code === 408 ? 'Request Timeout' : 'Bad Request';
    s.end(`HTTP/1.1 ${code} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  };

  private report(fields: {
    error: string;
    code: string;
    mailbox?: string;
    clientname?: string;
    peerhost?: string;
    peerport?: number;
  }): void {
    if (!this.bus.isClosed) this.bus.post(this.errorPath, fields);
  }
}

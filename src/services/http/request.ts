import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { Message, type Tuple } from '../../core/message.js';

/** What the service needs from a request's headers besides the tuples: read in the same pass. */
export interface HeadInfo {
  readonly headers: Message;
  readonly host: string;
  /** -1 when absent. */
  readonly contentLength: number;
  readonly chunked: boolean;
}

/** One pass over rawHeaders: the `headers` list (lower-cased names, in order) and the framing. */
export function readHead(raw: readonly string[]): HeadInfo {
  const n = raw.length;
  const ts: Tuple[] = new Array(n >> 1);
  let host: string | undefined;
  let contentLength = -1;
  let chunked = false;
  for (let i = 0; i < n; i += 2) {
    const tag = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    ts[i >> 1] = { tag, type: 'str', value };
    if (tag === 'host') host ??= value;
    else if (tag === 'content-length') contentLength = Number(value);
    else if (tag === 'transfer-encoding') chunked = true;
  }
  return { headers: new Message(ts), host: host ?? '', contentLength, chunked };
}

/** Host without port, lower-cased; IPv6 brackets removed (`[::1]:80` → `::1`). */
export function hostnameOf(host: string): string {
  if (host.charCodeAt(0) === 91 /* [ */) {
    const end = host.indexOf(']');
    return (end < 0 ? host.slice(1) : host.slice(1, end)).toLowerCase();
  }
  const colon = host.indexOf(':');
  return (colon < 0 ? host : host.slice(0, colon)).toLowerCase();
}

/** IPv4-mapped IPv6 (`::ffff:10.0.0.1`, from a dual-stack listener) as plain IPv4. */
export function plainAddress(a: string | undefined): string {
  if (a === undefined) return '';
  return a.length > 7 && a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

const NO_BODY: Tuple = { tag: 'body', type: 'bytes', value: new Uint8Array(0) };
const NO_QUERY: Tuple = { tag: 'query', type: 'str', value: '' };
const GET: Tuple = { tag: 'method', type: 'str', value: 'GET' };

/**
 * The four address tuples of a connection: the same for each of its requests (tuples are
 * immutable); and the Host tuples of its last request (a client sends the same Host each time).
 */
interface Ends {
  readonly sockhost: Tuple;
  readonly sockport: Tuple;
  readonly peerhost: Tuple;
  readonly peerport: Tuple;
  host: Tuple;
  hostname: Tuple;
}
const ends = new WeakMap<Socket, Ends>();

function endsOf(sock: Socket): Ends {
  let e = ends.get(sock);
  if (e === undefined) {
    e = {
      sockhost: { tag: 'sockhost', type: 'str', value: plainAddress(sock.localAddress) },
      sockport: { tag: 'sockport', type: 'int', value: sock.localPort ?? 0 },
      peerhost: { tag: 'peerhost', type: 'str', value: plainAddress(sock.remoteAddress) },
      peerport: { tag: 'peerport', type: 'int', value: sock.remotePort ?? 0 },
      host: { tag: 'Host', type: 'str', value: '' },
      hostname: { tag: 'hostname', type: 'str', value: '' },
    };
    ends.set(sock, e);
  }
  return e;
}

/** The `<name>/request` message (built directly: every type is known, nothing to check). */
export function requestMessage(
  clientname: string,
  req: IncomingMessage,
  head: HeadInfo,
  body: Uint8Array | undefined,
): Message {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const method = req.method ?? 'GET';
  const e = endsOf(req.socket);
  if (e.host.value !== head.host) {
    e.host = { tag: 'Host', type: 'str', value: head.host };
    e.hostname = { tag: 'hostname', type: 'str', value: hostnameOf(head.host) };
  }
  return new Message([
    { tag: 'clientname', type: 'str', value: clientname },
    method === 'GET' ? GET : { tag: 'method', type: 'str', value: method },
    e.host,
    e.hostname,
    { tag: 'path', type: 'str', value: q < 0 ? url : url.slice(0, q) },
    q < 0 ? NO_QUERY : { tag: 'query', type: 'str', value: url.slice(q + 1) },
    { tag: 'headers', type: 'list', value: head.headers },
    body === undefined ? NO_BODY : { tag: 'body', type: 'bytes', value: body },
    e.sockhost,
    e.sockport,
    e.peerhost,
    e.peerport,
  ]);
}

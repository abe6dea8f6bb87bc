import type { MailboxSpec } from '../table.js';

/**
 * The HTTP server service's mailboxes, in one table. `scope` says what the suffix is appended to:
 * `service` — nothing (a fixed path); `server` — the server's name (`/captive/server`);
 * `client` — a request's clientname (`/captive/server/client/17`). docs/services/http.md lists it.
 */
export interface HttpMailboxSpec extends MailboxSpec {
  readonly scope: 'service' | 'server' | 'client';
}

export const HTTP_NEW = '/system/http/server/new';
export const HTTP_SERVICE_ERROR = '/system/http/server/error';

export const HTTP_TABLE: readonly HttpMailboxSpec[] = [
  {
    scope: 'service',
    suffix: HTTP_NEW,
    dir: 'in',
    doc: 'Create a server (HTTPS with cert and key). Replies (reply-to) with {name, port, host, tls} or {error, code, name}.',
    tuples: [
      { tag: 'name', type: 'str', doc: 'mailbox path the server is named by, e.g. /captive/server' },
      { tag: 'port', type: 'int', required: false, doc: 'TCP port; 0 (the default) lets the OS pick one' },
      { tag: 'host', type: 'str', required: false, doc: 'address to listen on (default 127.0.0.1)' },
      {
        tag: 'bodyLimit',
        type: 'int',
        required: false,
        doc: 'largest request body in bytes (default 1048576); bigger gets 413',
      },
      {
        tag: 'timeout',
        type: 'int',
        required: false,
        doc: 'ms a request may wait for its response (default 30000); then 504',
      },
      {
        tag: 'cert',
        type: ['str', 'bytes'],
        required: false,
        doc: 'PEM certificate (chain) for HTTPS; with key, the server speaks TLS (node:https)',
      },
      { tag: 'key', type: ['str', 'bytes'], required: false, doc: 'PEM private key for HTTPS (with cert)' },
      {
        tag: 'maxConnectionsPerPeer',
        type: 'int',
        required: false,
        doc: 'connections one client address may hold open at once; more are reset at accept, counted and logged (default 0 = no cap)',
      },
    ],
  },
  {
    scope: 'service',
    suffix: HTTP_SERVICE_ERROR,
    dir: 'out',
    doc: 'A /system/http/server/new message failed (also answered on its reply-to, when it has one).',
    tuples: [
      { tag: 'error', type: 'str', doc: 'what went wrong, naming the tuple or the address' },
      { tag: 'code', type: 'str', doc: 'EBADTUPLE, EBADPATH, EEXIST, or the OS error (EADDRINUSE, EACCES…)' },
      { tag: 'name', type: 'str', required: false, doc: 'the server name asked for, when there was one' },
    ],
  },
  {
    scope: 'server',
    suffix: '/request',
    dir: 'out',
    doc: 'One HTTP request. Answer it on <clientname>/response. Nobody listening: 503 at once.',
    tuples: [
      { tag: 'clientname', type: 'str', doc: "base of this request's mailboxes: <name>/client/<n>" },
      { tag: 'method', type: 'str', doc: 'GET, POST, … as sent' },
      { tag: 'Host', type: 'str', doc: 'the Host header verbatim, port included when sent; "" when absent' },
      { tag: 'hostname', type: 'str', doc: 'Host lower-cased, without port and IPv6 brackets' },
      { tag: 'path', type: 'str', doc: 'request target up to "?", still percent-encoded' },
      { tag: 'query', type: 'str', doc: 'raw query string after "?" ("" when none)' },
      {
        tag: 'headers',
        type: 'list',
        doc: 'every header in order: tag = lower-cased name, str value; repeated headers repeat',
      },
      { tag: 'body', type: 'bytes', doc: 'the request body (chunked bodies de-chunked); empty when none' },
      { tag: 'sockhost', type: 'str', doc: 'local address the client connected to' },
      { tag: 'sockport', type: 'int', doc: 'local port the client connected to' },
      { tag: 'peerhost', type: 'str', doc: 'client address' },
      { tag: 'peerport', type: 'int', doc: 'client port' },
    ],
  },
  {
    scope: 'server',
    suffix: '/close',
    dir: 'in',
    doc: 'Stop the server: stop listening, close every connection. Replies {name, closed: true}.',
    tuples: [],
  },
  {
    scope: 'server',
    suffix: '/stats',
    dir: 'in',
    doc:
      'Replies {name, connections, peers, accepted, refused-cap, refused-fd, max-per-peer}: connections open now and ' +
      'the client addresses holding them, connections accepted since start, refused by the per-peer cap, refused ' +
      'for want of file descriptors, the cap (0 = none).',
    tuples: [],
  },
  {
    scope: 'server',
    suffix: '/error',
    dir: 'out',
    doc: 'Something went wrong that no reply can carry: malformed HTTP, a bad response message, server errors.',
    tuples: [
      { tag: 'error', type: 'str', doc: 'what went wrong' },
      {
        tag: 'code',
        type: 'str',
        doc: 'EBADTUPLE (bad response message), HPE_* (HTTP parse error), or a Node/OS code',
      },
      { tag: 'mailbox', type: 'str', required: false, doc: 'the mailbox whose message was bad' },
      { tag: 'clientname', type: 'str', required: false, doc: 'the request concerned' },
      { tag: 'peerhost', type: 'str', required: false, doc: 'client address (parse errors)' },
      { tag: 'peerport', type: 'int', required: false, doc: 'client port (parse errors)' },
    ],
  },
  {
    scope: 'client',
    suffix: '/response',
    dir: 'in',
    doc: 'Answer the request. The first response wins; the mailboxes are removed right after it.',
    tuples: [
      { tag: 'code', type: 'int', doc: 'status code, 200-599' },
      {
        tag: 'headers',
        type: 'list',
        required: false,
        doc: 'tag = header name, str (or int) value; repeat a tag for repeated headers (Set-Cookie)',
      },
      {
        tag: 'data',
        type: ['str', 'bytes'],
        required: false,
        doc: 'the body (str is sent as UTF-8); Content-Length is set unless given',
      },
    ],
  },
  {
    scope: 'client',
    suffix: '/close',
    dir: 'in',
    doc: 'Close the connection: after the response is flushed if one was sent (send it in the same turn), else at once.',
    tuples: [],
  },
];

export function spec(scope: HttpMailboxSpec['scope'], suffix: string): HttpMailboxSpec {
  const s = HTTP_TABLE.find((x) => x.scope === scope && x.suffix === suffix);
  if (!s) throw new Error(`http table: no ${scope} mailbox ${suffix}`);
  return s;
}

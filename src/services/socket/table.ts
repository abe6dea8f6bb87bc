import type { ServiceTable, TupleSpec } from '../table.js';

/** `/system/socket/new`: the factory mailbox. */
export const socketFactoryTable: ServiceTable = [
  {
    suffix: '/new',
    dir: 'in',
    doc: 'Create a socket object named `name`; replies {name} or {error, code}.',
    tuples: [
      { tag: 'name', type: 'str', doc: 'mailbox path of the new socket, e.g. /captive/sock' },
      { tag: 'protocol', type: 'str', doc: 'tcp, udp or unix (stream)' },
    ],
  },
];

const host: TupleSpec = { tag: 'host', type: 'str', required: false, doc: 'IPv4/IPv6 address or name' };
const port: TupleSpec = { tag: 'port', type: 'int', required: false, doc: 'port, 0-65535 (tcp, udp)' };
const path: TupleSpec = { tag: 'path', type: 'str', required: false, doc: 'socket file (unix)' };
const local: TupleSpec[] = [
  { tag: 'host', type: 'str', doc: 'local address (tcp, udp)' },
  { tag: 'port', type: 'int', doc: 'local port (tcp, udp)' },
  { tag: 'path', type: 'str', required: false, doc: 'socket file (unix; then no host/port)' },
];

/** The mailboxes of one socket object (and of each accepted client), relative to its name. */
export const socketTable: ServiceTable = [
  {
    suffix: '/bind',
    dir: 'in',
    doc:
      'Set the local address. udp: binds at once and replies {host, port}. tcp/unix: recorded, bound by ' +
      'listen or connect (whose replies carry the real address).',
    tuples: [host, port, path],
  },
  {
    suffix: '/listen',
    dir: 'in',
    doc: 'tcp/unix: accept connections on the bound address; replies {host, port} or {path}.',
    tuples: [{ tag: 'backlog', type: 'int', required: false, doc: 'kernel accept queue length' }],
  },
  {
    suffix: '/connect',
    dir: 'in',
    doc: 'Connect to a peer (udp: fix the default destination); replies like <name>/connected.',
    tuples: [host, port, path],
  },
  {
    suffix: '/write',
    dir: 'in',
    doc: 'Send data; replies {full, buffered}. full=true: the kernel buffer is full, wait for <name>/drain.',
    tuples: [
      { tag: 'data', type: ['bytes', 'str'], doc: 'what to send (a str is sent as UTF-8)' },
      { ...host, doc: 'udp: destination address (else the connected peer)' },
      { ...port, doc: 'udp: destination port (else the connected peer)' },
    ],
  },
  { suffix: '/close', dir: 'in', doc: 'Close the socket (tcp: after sending what is queued).', tuples: [] },
  {
    suffix: '/read',
    dir: 'out',
    doc: 'Data received, in order; one message per chunk the kernel gave.',
    tuples: [
      { tag: 'data', type: 'bytes', doc: 'the bytes' },
      { tag: 'peerhost', type: 'str', required: false, doc: 'udp: sender address' },
      { tag: 'peerport', type: 'int', required: false, doc: 'udp: sender port' },
    ],
  },
  {
    suffix: '/new_client',
    dir: 'out',
    doc: 'A listening socket accepted a connection; it is a socket object of its own.',
    tuples: [
      { tag: 'client', type: 'str', doc: 'the new socket object: <name>/client/N' },
      { tag: 'peerhost', type: 'str', required: false, doc: 'peer address (tcp)' },
      { tag: 'peerport', type: 'int', required: false, doc: 'peer port (tcp)' },
    ],
  },
  {
    suffix: '/listening',
    dir: 'out',
    doc: 'The socket is bound and receiving (after tcp/unix listen, after udp bind).',
    tuples: local,
  },
  {
    suffix: '/connected',
    dir: 'out',
    doc: 'connect succeeded.',
    tuples: [
      { tag: 'host', type: 'str', required: false, doc: 'peer address (tcp, udp)' },
      { tag: 'port', type: 'int', required: false, doc: 'peer port (tcp, udp)' },
      { tag: 'path', type: 'str', required: false, doc: 'peer socket file (unix)' },
      { tag: 'localhost', type: 'str', required: false, doc: 'local address (tcp, udp)' },
      { tag: 'localport', type: 'int', required: false, doc: 'local port (tcp, udp)' },
    ],
  },
  {
    suffix: '/full',
    dir: 'out',
    doc: 'A write found the kernel buffer full; more writes are queued in memory until <name>/drain.',
    tuples: [{ tag: 'buffered', type: 'int', doc: 'bytes queued in the process, not yet in the kernel' }],
  },
  { suffix: '/drain', dir: 'out', doc: 'The buffer emptied after <name>/full: write again.', tuples: [] },
  {
    suffix: '/closed',
    dir: 'out',
    doc: 'The socket is closed (by either side or by an error); its in mailboxes are detached.',
    tuples: [],
  },
  {
    suffix: '/error',
    dir: 'out',
    doc: 'Something failed; the message that caused it (if any) got the same {error, code} as its reply.',
    tuples: [
      { tag: 'mailbox', type: 'str', required: false, doc: 'the mailbox of the failed request' },
      { tag: 'error', type: 'str', doc: 'what went wrong' },
      {
        tag: 'code',
        type: 'str',
        doc: 'stable code: the system one (ECONNREFUSED, EADDRINUSE, ...) or ours',
      },
    ],
  },
];

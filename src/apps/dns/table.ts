import type { MailboxSpec, ServiceTable, TupleSpec } from '../../services/table.js';

/**
 * The DNS forwarder's mailboxes, relative to `/dns`. docs/apps/dns.md lists the same (a test holds
 * the doc to this table).
 */

export const DNS_BASE = '/dns';

/** Identity of the stock listener on /dns/query (appended: last in the chain). */
export const STOCK_IDENTITY = { app: 'dns', stock: 'forward' } as const;

export const QUERY: MailboxSpec = {
  suffix: '/query',
  dir: 'out',
  doc:
    'THE hook: every client query, as a request. The stock listener (identity {app: dns, stock: ' +
    'forward}) is appended; it replies {forward: true} and STOPs, and the daemon answers from its ' +
    'cache or upstream. The first reply decides (QUERY_REPLY): an answer or an rcode ends it; ' +
    '`rewrite` makes the daemon resolve another name (asking this mailbox again) and answer with a ' +
    'CNAME to it. A listener that returns without replying lets the chain go on.',
  tuples: [
    { tag: 'name', type: 'str', doc: 'the name asked, lowercase, no trailing dot (`.` for the root)' },
    {
      tag: 'type',
      type: 'str',
      doc: 'record type: A, AAAA, MX, TXT, … (UNKNOWN_65 for types the codec does not name)',
    },
    { tag: 'class', type: 'str', doc: 'IN (almost always), CH, HS or ANY' },
    { tag: 'client', type: 'str', doc: "the client's IP address" },
    { tag: 'port', type: 'int', doc: "the client's source port" },
    { tag: 'proto', type: 'str', doc: 'udp or tcp' },
    { tag: 'id', type: 'int', doc: "the client's query id" },
    {
      tag: 'rewrite-of',
      type: 'str',
      required: false,
      doc: 'present when a listener rewrote the query: the name the client asked',
    },
    { tag: 'reply-to', type: 'str', doc: 'where the decision goes (added by bus.request)' },
  ],
};

/** What a /dns/query listener answers with `ctx.reply(...)`. The first reply decides. */
export const QUERY_REPLY: readonly TupleSpec[] = [
  {
    tag: 'answer',
    type: 'list',
    repeated: true,
    required: false,
    doc: 'a record of the answer (RECORD); any number, none with rcode = NODATA',
  },
  {
    tag: 'rcode',
    type: 'str',
    required: false,
    doc: 'NOERROR (default with `answer`), NXDOMAIN, REFUSED, SERVFAIL, FORMERR or NOTIMP',
  },
  {
    tag: 'rewrite',
    type: 'str',
    required: false,
    doc: 'resolve this name instead (the chain is asked again for it) and answer with a CNAME to it; return CONTINUE',
  },
  { tag: 'ttl', type: 'int', required: false, doc: 'TTL of the CNAME a rewrite adds (default 60 s)' },
  {
    tag: 'forward',
    type: 'bool',
    required: false,
    doc: "the stock listener's reply: resolve from the cache or upstream (so does a reply with none of the above)",
  },
];

/** One record of a hook's answer (a nested list under `answer`). */
export const RECORD: readonly TupleSpec[] = [
  { tag: 'name', type: 'str', required: false, doc: 'owner name (default: the name asked)' },
  {
    tag: 'type',
    type: 'str',
    required: false,
    doc: 'A, AAAA, CNAME, PTR, NS, TXT, MX or SRV (default: the type asked)',
  },
  { tag: 'ttl', type: 'int', required: false, doc: 'seconds, 0..2147483647 (default 60)' },
  {
    tag: 'data',
    type: 'str',
    doc: 'A/AAAA: the address; CNAME/PTR/NS: a name; TXT: the text; MX: "10 mail.example.org"; SRV: "prio weight port target"',
  },
];

export const ANSWER: MailboxSpec = {
  suffix: '/answer',
  dir: 'out',
  doc: 'Posted (one-way) after every answer the daemon sends to a client.',
  tuples: [
    { tag: 'name', type: 'str', doc: 'the name asked (lowercase)' },
    { tag: 'type', type: 'str', doc: 'the type asked' },
    { tag: 'client', type: 'str', doc: "the client's IP address" },
    { tag: 'proto', type: 'str', doc: 'udp or tcp' },
    { tag: 'rcode', type: 'str', doc: 'NOERROR, NXDOMAIN, SERVFAIL, REFUSED, …' },
    { tag: 'answers', type: 'int', doc: 'records in the answer section' },
    {
      tag: 'source',
      type: 'str',
      doc: 'cache, upstream or hook (a listener on /dns/query answered); for a rewrite, where the target came from',
    },
    { tag: 'ms', type: 'float', doc: 'time from the query read to the answer written, milliseconds' },
    { tag: 'rewrite', type: 'str', required: false, doc: 'the name a listener rewrote the query to' },
    {
      tag: 'address',
      type: 'list',
      repeated: true,
      required: false,
      doc: 'one per A or AAAA record of the answer section (ANSWER_ADDRESS): {ip, ttl}, the TTL as the client got it',
    },
  ],
};

/** One address of an answer, as /dns/answer carries it (a nested list under `address`). */
export const ANSWER_ADDRESS: readonly TupleSpec[] = [
  { tag: 'ip', type: 'str', doc: 'the address (A or AAAA record data)' },
  {
    tag: 'ttl',
    type: 'int',
    doc: 'its TTL in seconds, as sent to the client (decremented when from the cache)',
  },
];

export const STATS: MailboxSpec = {
  suffix: '/stats',
  dir: 'in',
  doc: 'Replies with the counters since start (STATS_REPLY).',
  tuples: [],
};

export const STATS_REPLY: readonly TupleSpec[] = [
  { tag: 'queries', type: 'int', doc: 'queries served (decoded, one question)' },
  { tag: 'hits', type: 'int', doc: 'answered from the cache' },
  { tag: 'misses', type: 'int', doc: 'looked up in the cache and not found' },
  { tag: 'upstream', type: 'int', doc: 'queries sent to upstream servers (UDP and TCP)' },
  { tag: 'upstream-failures', type: 'int', doc: 'resolutions no upstream server answered in time' },
  { tag: 'servfail', type: 'int', doc: 'SERVFAIL answers sent to clients' },
  {
    tag: 'malformed',
    type: 'int',
    doc: 'datagrams/frames dropped or answered FORMERR/NOTIMP/REFUSED unread',
  },
  { tag: 'hooked', type: 'int', doc: 'queries sent through the /dns/query chain (a hook was attached)' },
  { tag: 'hook-answers', type: 'int', doc: 'queries a hook answered, refused or rewrote' },
  { tag: 'dropped', type: 'int', doc: 'queries dropped because maxInflight were being resolved' },
  { tag: 'cached', type: 'int', doc: 'entries in the cache now' },
  { tag: 'inflight', type: 'int', doc: 'queries being resolved now' },
];

export const FLUSH: MailboxSpec = {
  suffix: '/flush',
  dir: 'in',
  doc: 'Empty the cache, or drop one name (every type). Replies {flushed}.',
  tuples: [{ tag: 'name', type: 'str', required: false, doc: 'only this name (default: everything)' }],
};

export const FLUSH_REPLY: readonly TupleSpec[] = [
  { tag: 'flushed', type: 'int', doc: 'how many cache entries were dropped' },
];

export const ERROR: MailboxSpec = {
  suffix: '/error',
  dir: 'out',
  doc: 'A bad message to /dns/stats or /dns/flush, or a hook reply that could not be used (the client got SERVFAIL).',
  tuples: [
    { tag: 'mailbox', type: 'str', doc: 'where it happened' },
    { tag: 'error', type: 'str', doc: 'what was wrong' },
    { tag: 'code', type: 'str', doc: 'EBADTUPLE, EFAIL, …' },
  ],
};

export const dnsTable: ServiceTable = [QUERY, ANSWER, STATS, FLUSH, ERROR];

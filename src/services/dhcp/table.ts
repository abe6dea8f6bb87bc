import type { MailboxSpec, ServiceTable, TupleSpec } from '../table.js';

/**
 * The DHCP server's mailboxes (its decision points), relative to its base `/dhcpd`.
 * docs/services/dhcp.md lists the same, with examples.
 */

export const DHCPD_BASE = '/dhcpd';

/** Identity of the stock pool listener on /dhcpd/lookup (appended: last in the chain). */
export const POOL_IDENTITY = { dhcpd: 'pool' } as const;

export const PACKET: MailboxSpec = {
  suffix: '/packet',
  dir: 'out',
  doc: 'every packet that decoded, before the server acts on it',
  tuples: [
    { tag: 'mac', type: 'str', doc: 'client hardware address, aa:bb:cc:dd:ee:ff' },
    { tag: 'type', type: 'str', doc: 'discover|request|decline|release|inform|other (option 53)' },
    { tag: 'xid', type: 'int', doc: 'transaction id' },
    { tag: 'ciaddr', type: 'str', doc: 'client address field (0.0.0.0 when unset)' },
    { tag: 'giaddr', type: 'str', doc: 'relay address field (0.0.0.0 when not relayed)' },
    { tag: 'flags', type: 'int', doc: 'BOOTP flags (0x8000 = broadcast)' },
    { tag: 'from', type: 'str', doc: 'source address:port of the datagram' },
    { tag: 'requested', type: 'str', required: false, doc: 'option 50, requested address' },
    { tag: 'server-id', type: 'str', required: false, doc: 'option 54, server identifier' },
    { tag: 'hostname', type: 'str', required: false, doc: 'option 12' },
    { tag: 'client-id', type: 'bytes', required: false, doc: 'option 61, raw' },
    {
      tag: 'option',
      type: 'list',
      repeated: true,
      required: false,
      doc: 'every option: {code: int, data: bytes}',
    },
  ],
};

export const LOOKUP: MailboxSpec = {
  suffix: '/lookup',
  dir: 'out',
  doc:
    'THE hook: the server asks which address a client gets (request/reply). The stock pool ' +
    'listener is appended with identity {dhcpd: pool}; the first reply wins. A listener that ' +
    'answers replies with LOOKUP_REPLY and returns STOP; one that returns without replying lets ' +
    'the chain go on to the pool.',
  tuples: [
    { tag: 'mac', type: 'str', doc: 'client hardware address, aa:bb:cc:dd:ee:ff (lowercase)' },
    { tag: 'type', type: 'str', doc: 'discover|request (the packet being answered)' },
    { tag: 'subnet', type: 'str', doc: 'the subnet the client is on, CIDR as in the config' },
    {
      tag: 'requested',
      type: 'str',
      required: false,
      doc: 'address the client asked for (option 50 or ciaddr)',
    },
    { tag: 'giaddr', type: 'str', required: false, doc: 'relay address, when relayed' },
    { tag: 'hostname', type: 'str', required: false, doc: 'option 12' },
    { tag: 'client-id', type: 'bytes', required: false, doc: 'option 61, raw' },
    { tag: 'reply-to', type: 'str', doc: 'where the answer goes (added by bus.request)' },
  ],
};

/** What a lookup listener answers with `ctx.reply(...)`. */
export const LOOKUP_REPLY: readonly TupleSpec[] = [
  {
    tag: 'ip',
    type: 'str',
    required: false,
    doc: 'the address for the client; absent = no address (pool exhausted)',
  },
  { tag: 'lease-time', type: 'int', required: false, doc: 'seconds, overrides the subnet lease time' },
  { tag: 'hostname', type: 'str', required: false, doc: 'sent as option 12' },
  {
    tag: 'options',
    type: 'list',
    required: false,
    doc: 'extra options: tag = option name or code, value str|int|bool|bytes (a list of str for address lists)',
  },
  { tag: 'source', type: 'str', required: false, doc: 'who answered (pool, static, ldap…), for logs' },
  { tag: 'error', type: 'str', required: false, doc: 'why there is no address' },
];

export const COMMITTED: MailboxSpec = {
  suffix: '/lease/committed',
  dir: 'out',
  doc: 'a lease was bound or renewed (on disk, just before the ACK is sent)',
  tuples: [
    { tag: 'mac', type: 'str', doc: 'client hardware address' },
    { tag: 'ip', type: 'str', doc: 'leased address' },
    { tag: 'expires', type: 'int', doc: 'milliseconds since the epoch' },
    { tag: 'lease-time', type: 'int', doc: 'seconds' },
    { tag: 'subnet', type: 'str', doc: 'CIDR' },
    {
      tag: 'hostname',
      type: 'str',
      required: false,
      doc: 'option 12 from the client, or the static host name',
    },
  ],
};

export const RELEASED: MailboxSpec = {
  suffix: '/lease/released',
  dir: 'out',
  doc: 'a lease ended',
  tuples: [
    { tag: 'mac', type: 'str', doc: 'client hardware address' },
    { tag: 'ip', type: 'str', doc: 'the address' },
    {
      tag: 'reason',
      type: 'str',
      doc: 'release (DHCPRELEASE) | expired | decline (DHCPDECLINE: quarantined)',
    },
  ],
};

export const LEASES: MailboxSpec = {
  suffix: '/leases',
  dir: 'in',
  doc: 'request: replies {count: int, lease: [{mac, ip, expires, state, hostname?}]…} (repeated lease)',
  tuples: [{ tag: 'reply-to', type: 'str', doc: 'where the list goes' }],
};

export const STATS: MailboxSpec = {
  suffix: '/stats',
  dir: 'in',
  doc: 'request: replies with counters {received, malformed, dropped, offers, acks, naks, informs, releases, declines, lookups-answered, lookups-rejected}',
  tuples: [{ tag: 'reply-to', type: 'str', doc: 'where the counters go' }],
};

export const DHCPD_TABLE: ServiceTable = [PACKET, LOOKUP, COMMITTED, RELEASED, LEASES, STATS];

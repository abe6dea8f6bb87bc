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
    {
      tag: 'interface',
      type: 'str',
      required: false,
      doc: 'the device it arrived on (listen entries with interface); absent with the wildcard socket',
    },
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

/**
 * The reply of /dhcpd/stats: every field, each an int, in this order (server.ts builds the reply
 * from this list). Counters count since start; `leases` is a gauge.
 */
export const STATS_REPLY: readonly TupleSpec[] = [
  { tag: 'received', type: 'int', doc: 'datagrams received (decoded or not)' },
  { tag: 'malformed', type: 'int', doc: 'datagrams that did not decode as DHCP (dropped)' },
  {
    tag: 'dropped',
    type: 'int',
    doc: 'packets dropped without an answer (malformed ones apart), for any reason (the kinds below among them)',
  },
  {
    tag: 'bad-option-length',
    type: 'int',
    doc: 'dropped: a fixed-length option (50, 51, 53, 54…) of another length',
  },
  { tag: 'not-request', type: 'int', doc: 'dropped: a BOOTREPLY (op 2)' },
  { tag: 'no-message-type', type: 'int', doc: 'dropped: no option 53 (BOOTP is not served)' },
  { tag: 'no-client-mac', type: 'int', doc: 'dropped: chaddr empty or all zero' },
  { tag: 'no-subnet', type: 'int', doc: 'dropped: on no served subnet (giaddr/ciaddr/interface)' },
  { tag: 'rate-limited', type: 'int', doc: 'dropped: a new client over the newClients limit of its link' },
  { tag: 'no-address', type: 'int', doc: 'DISCOVERs left unanswered: no address to offer' },
  {
    tag: 'shed',
    type: 'int',
    doc: 'dropped undecoded, the server being behind: a DISCOVER that waited 1 s, or one packet too many waiting',
  },
  { tag: 'offers', type: 'int', doc: 'OFFERs sent' },
  {
    tag: 'offers-reclaimed',
    type: 'int',
    doc: 'held offers given to another client because the pool ran dry (oldest first)',
  },
  { tag: 'acks', type: 'int', doc: 'ACKs for REQUESTs (leases bound or renewed)' },
  { tag: 'naks', type: 'int', doc: 'NAKs sent' },
  { tag: 'informs', type: 'int', doc: 'ACKs for INFORMs' },
  { tag: 'releases', type: 'int', doc: 'leases released by the client (DHCPRELEASE)' },
  { tag: 'declines', type: 'int', doc: 'addresses declined (DHCPDECLINE) and quarantined' },
  { tag: 'lookups-answered', type: 'int', doc: 'addresses decided by the lookup chain (pool included)' },
  {
    tag: 'lookups-rejected',
    type: 'int',
    doc: 'lookup answers refused (an address the client cannot have, malformed, or no answer in time)',
  },
  { tag: 'leases', type: 'int', doc: 'leases bound and unexpired now' },
];

export const STATS: MailboxSpec = {
  suffix: '/stats',
  dir: 'in',
  doc: `request: replies with ints {${STATS_REPLY.map((t) => t.tag).join(', ')}}; leases = bound now, the others count since start`,
  tuples: [{ tag: 'reply-to', type: 'str', doc: 'where the counters go' }],
};

export const DHCPD_TABLE: ServiceTable = [PACKET, LOOKUP, COMMITTED, RELEASED, LEASES, STATS];

import type { ServiceTable } from '../table.js';

/** The firewall's mailboxes, relative to its name (default `/system/firewall`). */
export const firewallTable: ServiceTable = [
  {
    suffix: '/allow',
    dir: 'in',
    doc: 'Authorise a client (address bound to MAC) and count its traffic both ways; again refreshes its timeout, keeping its counters. Replies {ip, mac, family, timeout, latency}.',
    tuples: [
      { tag: 'ip', type: 'str', doc: "the client's IPv4 or IPv6 address" },
      { tag: 'mac', type: 'str', doc: "the client's MAC, xx:xx:xx:xx:xx:xx (any case, : or -)" },
      {
        tag: 'timeout',
        type: 'int',
        required: false,
        doc: 'seconds until it expires (default: the option, 3600)',
      },
    ],
  },
  {
    suffix: '/deny',
    dir: 'in',
    doc: 'Deauthorise a client and close its SMTP openings; a client that is not there is not an error. Replies {ip, mac, removed}.',
    tuples: [
      { tag: 'ip', type: 'str', doc: "the client's address" },
      { tag: 'mac', type: 'str', doc: "the client's MAC" },
    ],
  },
  {
    suffix: '/smtp/open',
    dir: 'in',
    doc: 'Open outbound SMTP from one client to one server for a while. Replies {client, server, port, timeout}.',
    tuples: [
      { tag: 'client', type: 'str', doc: "the client's IPv4 address" },
      { tag: 'server', type: 'str', doc: "the mail server's IPv4 address" },
      { tag: 'timeout', type: 'int', doc: 'seconds the opening lasts; opening again refreshes it' },
      { tag: 'port', type: 'int', required: false, doc: 'server port (default 25)' },
    ],
  },
  {
    suffix: '/smtp/close',
    dir: 'in',
    doc: 'Close an SMTP opening; a missing one is not an error. Replies {client, server, port, removed}.',
    tuples: [
      { tag: 'client', type: 'str', doc: "the client's IPv4 address" },
      { tag: 'server', type: 'str', doc: "the mail server's IPv4 address" },
      { tag: 'port', type: 'int', required: false, doc: 'server port (default 25)' },
    ],
  },
  {
    suffix: '/garden/add',
    dir: 'in',
    doc:
      'Let every client reach these addresses for a while (the walled garden learnt from DNS answers: sets ' +
      'gardendns4/gardendns6). An element is only extended, never shortened. Replies {count, added, timeout}.',
    tuples: [
      { tag: 'ip', type: 'str', repeated: true, doc: 'an IPv4 or IPv6 address; repeat the tag for several' },
      { tag: 'timeout', type: 'int', doc: 'seconds the addresses stay reachable (1..4233600)' },
    ],
  },
  {
    suffix: '/mac/add',
    dir: 'in',
    doc:
      'Put a MAC on a list: trusted (accepted like an authorised client, never redirected) or blocked (dropped: ' +
      'nothing but DHCP reaches the router, nothing is forwarded). Replies {list, mac, added}.',
    tuples: [
      { tag: 'list', type: 'str', doc: 'trusted or blocked' },
      { tag: 'mac', type: 'str', doc: 'the MAC, xx:xx:xx:xx:xx:xx (any case, : or -)' },
    ],
  },
  {
    suffix: '/mac/remove',
    dir: 'in',
    doc: 'Take a MAC off a list; one that is not there is not an error. Replies {list, mac, removed}.',
    tuples: [
      { tag: 'list', type: 'str', doc: 'trusted or blocked' },
      { tag: 'mac', type: 'str', doc: 'the MAC' },
    ],
  },
  {
    suffix: '/clients',
    dir: 'in',
    doc:
      'Read the authorised clients and their counters from nft (JSON). Replies {count, loaded, client...}: each client a list ' +
      '{ip, mac, family, timeout, expires, packets-up, bytes-up, packets-down, bytes-down, packets, bytes} ' +
      '(packets/bytes = the upload pair, kept for compatibility); loaded = epoch ms of the table load the counters count from.',
    tuples: [],
  },
  {
    suffix: '/list',
    dir: 'in',
    doc:
      'Describe the table as nft has it. Replies {table, ruleset, set..., chain..., smtp..., garden..., trusted..., blocked...}: ' +
      'each smtp a list {client, server, port, timeout, expires}, each garden a list {ip, timeout, expires}, trusted and blocked one str (a MAC) each.',
    tuples: [],
  },
  {
    suffix: '/error',
    dir: 'out',
    doc: 'A bad message, a failed change, or the nft child dying or hanging (mailbox is then the service name).',
    tuples: [
      {
        tag: 'mailbox',
        type: 'str',
        doc: 'the mailbox the failed message went to, or the service name for nft failures',
      },
      { tag: 'error', type: 'str', doc: 'what went wrong (nft\'s own "Error:" text for a refused change)' },
      { tag: 'code', type: 'str', doc: 'EBADTUPLE, EFAIL, ETIMEDOUT, EPROTO, ECLOSED' },
    ],
  },
];

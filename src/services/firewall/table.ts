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
    doc: 'Describe the table as nft has it. Replies {table, ruleset, set..., chain..., smtp...}: each smtp a list {client, server, port, timeout, expires}.',
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

import type { ServiceTable } from '../table.js';

const timeout = {
  tag: 'timeout',
  type: 'int',
  required: false,
  doc: 'ms to wait for an answer (default: the service option, 2000)',
} as const;

/** The DNS service's mailboxes (no objects: two request mailboxes under /system/dns). */
export const dnsTable: ServiceTable = [
  {
    suffix: '/resolve',
    dir: 'in',
    doc: 'Resolve a host name. Replies {name, address..., family} or {error, code}.',
    tuples: [
      { tag: 'name', type: 'str', doc: 'host name, e.g. h.metanet.test (an IP literal is returned as is)' },
      { tag: 'family', type: 'int', required: false, doc: '4 (A), 6 (AAAA) or 0 (both); default 4' },
      timeout,
    ],
  },
  {
    suffix: '/reverse',
    dir: 'in',
    doc: 'Reverse-resolve an address (PTR). Replies {address, hostname...} or {error, code}.',
    tuples: [{ tag: 'address', type: 'str', doc: 'IPv4 or IPv6 address' }, timeout],
  },
  {
    suffix: '/error',
    dir: 'out',
    doc: 'A bad message, or a failure of a request that had no reply-to.',
    tuples: [
      { tag: 'mailbox', type: 'str', doc: '/system/dns/resolve or /system/dns/reverse' },
      { tag: 'error', type: 'str', doc: 'what went wrong' },
      { tag: 'code', type: 'str', doc: 'ENOTFOUND, ENODATA, ETIMEDOUT, EINVAL, ...' },
    ],
  },
];

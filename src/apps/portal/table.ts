import type { ServiceTable } from '../../services/table.js';

/** The portal's mailboxes, relative to its name (default `/portal`). docs/apps/portal.md lists them. */
export const portalTable: ServiceTable = [
  {
    suffix: '/auth',
    dir: 'out',
    doc:
      'Sent as a request when a client accepts the policy (valid CSRF token). The stock listener, appended, ' +
      'replies {ok: true}; a listener prepended by another process may reply {ok: false, reason} and STOP.',
    tuples: [
      { tag: 'ip', type: 'str', doc: "the client's IPv4 address" },
      { tag: 'mac', type: 'str', doc: "the client's MAC from the router's neighbour table, lowercase" },
      { tag: 'url', type: 'str', doc: 'the page the client asked for (http/https), or ""' },
      { tag: 'user-agent', type: 'str', doc: 'the browser\'s User-Agent, or ""' },
      {
        tag: 'form',
        type: 'list',
        doc: 'the other fields of the form (voucher, user, password…), tag = field name',
      },
    ],
  },
  {
    suffix: '/login',
    dir: 'out',
    doc: 'A client was logged in (after /auth said ok and the firewall allowed it).',
    tuples: [
      { tag: 'ip', type: 'str', doc: "the client's address" },
      { tag: 'mac', type: 'str', doc: 'its MAC' },
      { tag: 'expires', type: 'int', doc: 'end of the session, epoch seconds' },
    ],
  },
  {
    suffix: '/logged-out',
    dir: 'out',
    doc: 'A session ended, with why: lease (its DHCP lease was released or expired), operator (/logout).',
    tuples: [
      { tag: 'ip', type: 'str', doc: "the client's address" },
      { tag: 'mac', type: 'str', doc: 'its MAC' },
      { tag: 'reason', type: 'str', doc: 'lease | operator | guest | idle | session | quota | blocked' },
      { tag: 'since', type: 'int', doc: 'start of the session, epoch seconds' },
    ],
  },
  {
    suffix: '/clients',
    dir: 'in',
    doc: 'Replies {count, client…}: one list per live session with ip, mac, hostname (from DHCP, or ""), since, expires, packets, bytes.',
    tuples: [],
  },
  {
    suffix: '/logout',
    dir: 'in',
    doc: "End a client's session and remove it from the firewall. Replies {ip, removed}.",
    tuples: [
      { tag: 'ip', type: 'str', doc: "the client's address" },
      {
        tag: 'reason',
        type: 'str',
        required: false,
        doc: 'why, announced on /logged-out (default operator)',
      },
    ],
  },
  {
    suffix: '/error',
    dir: 'out',
    doc: 'What no reply can carry: a failed login step, a failed connection cut.',
    tuples: [
      { tag: 'mailbox', type: 'str', doc: 'where it happened' },
      { tag: 'error', type: 'str', doc: 'what went wrong' },
      { tag: 'code', type: 'str', doc: 'EBADTUPLE, EFAIL, ETIMEDOUT, …' },
    ],
  },
];

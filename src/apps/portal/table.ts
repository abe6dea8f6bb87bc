import type { ServiceTable, TupleSpec } from '../../services/table.js';

/** A session's limits, as `/login` carries them (and `/clients` lists them, and `/auth` answers may set them). */
const LIMITS: readonly TupleSpec[] = [
  { tag: 'session-timeout', type: 'int', doc: 'session length, seconds' },
  { tag: 'idle-timeout', type: 'int', doc: 'seconds without traffic before an idle logout; 0 = never' },
  { tag: 'quota-up', type: 'int', doc: 'bytes the guest may send; 0 = no quota' },
  { tag: 'quota-down', type: 'int', doc: 'bytes it may receive; 0 = no quota' },
  { tag: 'quota-total', type: 'int', doc: 'bytes both ways together; 0 = no quota' },
  {
    tag: 'rate-up',
    type: 'int',
    required: false,
    doc: 'upload cap in bits/s from the auth answer, for the shaper (absent when not given)',
  },
  { tag: 'rate-down', type: 'int', required: false, doc: 'download cap in bits/s, likewise' },
];

/** The portal's mailboxes, relative to its name (default `/portal`). docs/apps/portal.md lists them. */
export const portalTable: ServiceTable = [
  {
    suffix: '/auth',
    dir: 'out',
    doc:
      'Sent as a request when a client accepts the policy (valid CSRF token). The stock listener, appended, ' +
      'replies {ok: true}; a listener prepended by another process may reply {ok: false, reason} and STOP, or ' +
      '{ok: true} with per-guest limits (ints): session-timeout, idle-timeout, quota-up, quota-down, quota-total, rate-up, rate-down.',
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
    doc: 'A client was logged in (after /auth said ok and the firewall allowed it), with the limits of its session.',
    tuples: [
      { tag: 'ip', type: 'str', doc: "the client's address" },
      { tag: 'mac', type: 'str', doc: 'its MAC' },
      { tag: 'expires', type: 'int', doc: 'end of the session, epoch seconds' },
      ...LIMITS,
    ],
  },
  {
    suffix: '/logged-out',
    dir: 'out',
    doc: 'A session ended, with why and what the guest used.',
    tuples: [
      { tag: 'ip', type: 'str', doc: "the client's address" },
      { tag: 'mac', type: 'str', doc: 'its MAC' },
      {
        tag: 'reason',
        type: 'str',
        doc: 'idle | session | quota | operator | guest | lease | blocked (or what a /logout caller gave)',
      },
      { tag: 'since', type: 'int', doc: 'start of the session, epoch seconds' },
      { tag: 'bytes-up', type: 'int', doc: 'bytes the guest sent over the session (as of the last sample)' },
      { tag: 'bytes-down', type: 'int', doc: 'bytes it received' },
      {
        tag: 'quota',
        type: 'str',
        required: false,
        doc: 'with reason quota: which one was reached, up | down | total',
      },
    ],
  },
  {
    suffix: '/clients',
    dir: 'in',
    doc:
      'Replies {count, client…}: one list per live session with ip, mac, hostname (from DHCP, or ""), since, expires, ' +
      "packets, bytes (the firewall element's upload counters), bytes-up, bytes-down (over the session), idle (seconds " +
      'since traffic was last seen) and its limits (session-timeout, idle-timeout, quota-up, quota-down, quota-total, ' +
      'rate-up and rate-down when set).',
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

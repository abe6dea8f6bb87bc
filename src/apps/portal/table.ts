import type { MailboxSpec, ServiceTable, TupleSpec } from '../../services/table.js';

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
    doc:
      "End a client's session (by ip, or every session of a mac) and remove it from the firewall. " +
      'Replies {ip, mac, removed}: the (first) address logged out, or "" when none.',
    tuples: [
      { tag: 'ip', type: 'str', required: false, doc: "the client's address (ip or mac)" },
      { tag: 'mac', type: 'str', required: false, doc: 'or its MAC: every session of that device' },
      {
        tag: 'reason',
        type: 'str',
        required: false,
        doc: 'why, announced on /logged-out (default operator)',
      },
    ],
  },
  {
    suffix: '/authorize',
    dir: 'in',
    doc:
      'Log a guest in as the operator (no /auth request): known by ip (its MAC from the neighbour table or its ' +
      'DHCP lease) or by mac (its address from its lease or the neighbour table). A blocked MAC is refused ' +
      '(EDENIED). Replies {ip, mac, expires}.',
    tuples: [
      { tag: 'ip', type: 'str', required: false, doc: "the guest's address (ip or mac)" },
      { tag: 'mac', type: 'str', required: false, doc: 'or its MAC' },
      {
        tag: 'session-timeout',
        type: 'int',
        required: false,
        doc: 'session length, seconds (default sessionSeconds)',
      },
      ...['idle-timeout', 'quota-up', 'quota-down', 'quota-total', 'rate-up', 'rate-down'].map((tag) => ({
        tag,
        type: 'int' as const,
        required: false,
        doc: 'a limit as in an auth answer (seconds, bytes, bits/s)',
      })),
    ],
  },
  {
    suffix: '/limits',
    dir: 'in',
    doc:
      "Change a live guest's limits (RADIUS CoA, an operator): the tuples given replace the session's; " +
      'session-timeout counts from the login. Replies {ip, mac, expires}; EFAIL when it has no session.',
    tuples: [
      { tag: 'ip', type: 'str', doc: "the guest's address" },
      {
        tag: 'session-timeout',
        type: 'int',
        required: false,
        doc: 'session length from the login, seconds',
      },
      ...['idle-timeout', 'quota-up', 'quota-down', 'quota-total', 'rate-up', 'rate-down'].map((tag) => ({
        tag,
        type: 'int' as const,
        required: false,
        doc: 'a limit as in an auth answer (seconds, bytes, bits/s)',
      })),
    ],
  },
  {
    suffix: '/status',
    dir: 'in',
    doc:
      'Replies {started, uptime, online, logins, logouts, bytes-up, bytes-down, trusted, blocked, garden, ' +
      'http-refused}: the portal since it started (bytes: what guests moved each way since then).',
    tuples: [],
  },
  {
    suffix: '/client',
    dir: 'in',
    doc:
      'One device, by ip or mac. Replies {found, state, ip, mac, hostname} (state: online, captive, trusted, ' +
      'blocked, or unknown), plus the tuples of a /clients entry when it is online.',
    tuples: [
      { tag: 'ip', type: 'str', required: false, doc: 'its address (ip or mac)' },
      { tag: 'mac', type: 'str', required: false, doc: 'or its MAC' },
    ],
  },
  {
    suffix: '/macs',
    dir: 'in',
    doc: 'Replies {trusted..., blocked...}: one list {mac, source (config or operator), since (epoch s)} per MAC.',
    tuples: [],
  },
  ...(['block', 'unblock', 'trust', 'untrust'] as const).map(
    (verb): MailboxSpec => ({
      suffix: `/${verb}`,
      dir: 'in',
      doc: {
        block:
          'Block a MAC: no access at all, its sessions end (reason blocked), dhcpd gives it no address. Replies {mac, changed, ended}.',
        unblock: 'Unblock a MAC (EDENIED for one the config blocks). Replies {mac, changed}.',
        trust:
          'Trust a MAC: never captive, accepted like a logged-in guest (unblocks it). Replies {mac, changed}.',
        untrust: 'Untrust a MAC (EDENIED for one the config trusts). Replies {mac, changed}.',
      }[verb],
      tuples: [{ tag: 'mac', type: 'str', doc: 'xx:xx:xx:xx:xx:xx (any case, : or -)' }],
    }),
  ),
  {
    suffix: '/blocked',
    dir: 'out',
    doc: 'A MAC was blocked (by /block).',
    tuples: [
      { tag: 'mac', type: 'str', doc: 'the MAC, lowercase' },
      {
        tag: 'ended',
        type: 'int',
        doc: 'its sessions that ended (each also on /logged-out, reason blocked)',
      },
    ],
  },
  ...(['unblocked', 'trusted', 'untrusted'] as const).map(
    (ev): MailboxSpec => ({
      suffix: `/${ev}`,
      dir: 'out',
      doc: `A MAC was ${ev} (by /${ev.replace(/ed$/, '')}).`,
      tuples: [{ tag: 'mac', type: 'str', doc: 'the MAC, lowercase' }],
    }),
  ),
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

import type { ServiceTable } from '../../services/table.js';

/** The mail proxy's mailboxes, relative to its name (default `/mailproxy`). docs/apps/mailproxy.md lists them. */
export const mailproxyTable: ServiceTable = [
  {
    suffix: '/login',
    dir: 'out',
    doc: 'A client logged in to a mail server through the proxy (the server said OK / +OK to its login).',
    tuples: [
      { tag: 'client', type: 'str', doc: "the client's IPv4 address" },
      { tag: 'server', type: 'str', doc: 'the server it dialled (SO_ORIGINAL_DST)' },
      { tag: 'port', type: 'int', doc: 'the server port it dialled (143, 110…)' },
      { tag: 'protocol', type: 'str', doc: '`imap` or `pop3`' },
      { tag: 'command', type: 'str', doc: 'LOGIN, AUTHENTICATE, PASS, APOP or AUTH' },
      { tag: 'user', type: 'str', required: false, doc: 'the user name, when the command shows it' },
    ],
  },
  {
    suffix: '/starttls',
    dir: 'out',
    doc: 'A connection switched to TLS: parsing stopped, relaying goes on, no login can be seen.',
    tuples: [
      { tag: 'client', type: 'str', doc: "the client's address" },
      { tag: 'server', type: 'str', doc: 'the server' },
      { tag: 'protocol', type: 'str', doc: '`imap` or `pop3`' },
    ],
  },
  {
    suffix: '/stats',
    dir: 'in',
    doc:
      'Replies {connections, active, logins, starttls, overflows, errors} (int, since start) and ' +
      '{openMs, origDstMs} (float: last login → smtp/open reply; last getsockopt call).',
    tuples: [],
  },
  {
    suffix: '/error',
    dir: 'out',
    doc: 'A connection that could not be relayed, a line too long, a failed SMTP opening.',
    tuples: [
      { tag: 'mailbox', type: 'str', doc: 'where it happened' },
      { tag: 'error', type: 'str', doc: 'what went wrong' },
      { tag: 'code', type: 'str', doc: 'ENOTREDIRECTED, ECONNECT, ELINE, EFAIL, …' },
    ],
  },
];

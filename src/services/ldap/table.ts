import type { ServiceTable } from '../table.js';

/** `/system/ldap/new`: the factory mailbox. */
export const ldapFactoryTable: ServiceTable = [
  {
    suffix: '/new',
    dir: 'in',
    doc: 'Create an LDAP client object named `name`; replies {name} at once and connects in the background.',
    tuples: [
      { tag: 'name', type: 'str', doc: 'mailbox path of the client, e.g. /glue/ldap' },
      { tag: 'url', type: 'str', doc: 'ldap://host:port/ or ldaps://host:port/' },
      { tag: 'bindDN', type: 'str', required: false, doc: 'DN to bind as (default: anonymous)' },
      { tag: 'password', type: 'str', required: false, doc: 'password for bindDN' },
      {
        tag: 'timeout',
        type: 'int',
        required: false,
        doc: 'ms for connect+bind and for each search (default 2000)',
      },
    ],
  },
];

/** The mailboxes of one LDAP client object, relative to its name. */
export const ldapTable: ServiceTable = [
  {
    suffix: '/search',
    dir: 'in',
    doc: 'Search; replies {count, entry...} or {error, code}. Needs a reply-to.',
    tuples: [
      { tag: 'base', type: 'str', doc: 'base DN, e.g. ou=hosts,dc=example,dc=org' },
      { tag: 'filter', type: 'str', doc: 'RFC 4515 filter, e.g. (macAddress=00:11:22:33:44:55)' },
      { tag: 'scope', type: 'str', required: false, doc: 'base, one or sub (default sub)' },
      {
        tag: 'attributes',
        type: 'str',
        required: false,
        repeated: true,
        doc: 'attributes to return (default all)',
      },
    ],
  },
  { suffix: '/close', dir: 'in', doc: 'Unbind, close the connection and detach the mailboxes.', tuples: [] },
  {
    suffix: '/connected',
    dir: 'out',
    doc: 'A connection (and bind, if bindDN) succeeded: at creation and after each reconnect.',
    tuples: [
      { tag: 'url', type: 'str', doc: 'the server' },
      { tag: 'bindDN', type: 'str', required: false, doc: 'who we are bound as (absent: anonymous)' },
    ],
  },
  { suffix: '/closed', dir: 'out', doc: 'The object is closed (close or service shutdown).', tuples: [] },
  {
    suffix: '/error',
    dir: 'out',
    doc: 'A failure: connecting, binding, searching, or a bad message.',
    tuples: [
      {
        tag: 'mailbox',
        type: 'str',
        required: false,
        doc: 'the mailbox of the failed request (absent for background connects)',
      },
      { tag: 'error', type: 'str', doc: 'what went wrong' },
      {
        tag: 'code',
        type: 'str',
        doc: 'ECONNREFUSED, ETIMEDOUT, EINVALIDCREDENTIALS, ENOSUCHOBJECT, EINVAL, ...',
      },
      {
        tag: 'result',
        type: 'int',
        required: false,
        doc: 'the LDAP resultCode (RFC 4511) when the server refused',
      },
    ],
  },
];

import type { ServiceTable } from '../table.js';

/** `/system/timer/new`: the factory mailbox. */
export const timerFactoryTable: ServiceTable = [
  {
    suffix: '/new',
    dir: 'in',
    doc: 'Create a timer object named `name`; replies {name} or {error, code}.',
    tuples: [
      { tag: 'name', type: 'str', doc: 'mailbox path of the new timer, e.g. /captive/idle' },
      { tag: 'ms', type: ['int', 'float'], doc: 'delay (one-shot) or interval (periodic) in ms' },
      {
        tag: 'periodic',
        type: 'bool',
        required: false,
        doc: 'fire every `ms` until cancelled (default false)',
      },
      { tag: 'tuples', type: 'list', required: false, doc: 'tuples copied into every fire message' },
    ],
  },
];

/** The mailboxes of one timer object, relative to its name. */
export const timerTable: ServiceTable = [
  {
    suffix: '/fire',
    dir: 'out',
    doc: 'Sent each time the timer fires: count, then the `tuples` given at creation, inline and in order.',
    tuples: [{ tag: 'count', type: 'int', doc: 'how many times it has fired, 1 for the first' }],
  },
  {
    suffix: '/cancel',
    dir: 'in',
    doc: 'Stop the timer and remove its mailboxes; replies {name, count}.',
    tuples: [],
  },
  {
    suffix: '/error',
    dir: 'out',
    doc: 'A bad message to one of the timer mailboxes.',
    tuples: [
      { tag: 'mailbox', type: 'str', doc: 'the mailbox the bad message went to' },
      { tag: 'error', type: 'str', doc: 'what was wrong' },
      { tag: 'code', type: 'str', doc: 'a stable error code (EBADTUPLE, ...)' },
    ],
  },
];

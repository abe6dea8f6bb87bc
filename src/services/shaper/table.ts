import type { ServiceTable, TupleSpec } from '../table.js';

const caps: readonly TupleSpec[] = [
  {
    tag: 'rate-up',
    type: 'int',
    required: false,
    doc: "the guest's upload cap, bits/s; absent or 0: no cap beyond the uplink",
  },
  {
    tag: 'rate-down',
    type: 'int',
    required: false,
    doc: "the guest's download cap, bits/s; absent or 0: no cap beyond the uplink",
  },
];

const shaped =
  'Replies {ip, class, ceil-up, ceil-down, share-up, share-down, guests}: the class id, the ceilings and guaranteed rates applied (bits/s), how many guests are shaped.';

/** The shaper's mailboxes, relative to its name (default `/system/shaper`). docs/services/shaper.md lists them. */
export const shaperTable: ServiceTable = [
  {
    suffix: '/add',
    dir: 'in',
    doc: `Shape a guest: its own class each way, an equal share guaranteed, its caps as ceilings. Adding a guest that is there sets its caps. ${shaped}`,
    tuples: [{ tag: 'ip', type: 'str', doc: "the guest's IPv4 address" }, ...caps],
  },
  {
    suffix: '/set',
    dir: 'in',
    doc: `Change a shaped guest's caps (both: an absent one means no cap); EFAIL if it is not shaped. ${shaped}`,
    tuples: [{ tag: 'ip', type: 'str', doc: "the guest's IPv4 address" }, ...caps],
  },
  {
    suffix: '/remove',
    dir: 'in',
    doc: "Remove a guest's classes and filters; a guest that is not there is not an error. Replies {ip, removed, guests}.",
    tuples: [{ tag: 'ip', type: 'str', doc: "the guest's IPv4 address" }],
  },
  {
    suffix: '/list',
    dir: 'in',
    doc:
      'Replies {uplink-up, uplink-down, device…, ifb, count, guest…}: each guest a list ' +
      '{ip, class, rate-up, rate-down (caps, 0 = none), ceil-up, ceil-down, share-up, share-down}.',
    tuples: [],
  },
  {
    suffix: '/error',
    dir: 'out',
    doc: 'A bad message, a change tc refused (naming the interface), tc dying or hanging, a failed follow of the portal.',
    tuples: [
      { tag: 'mailbox', type: 'str', doc: 'the mailbox the failed message went to, or the service name' },
      { tag: 'error', type: 'str', doc: "what went wrong, with tc's own text and the interface" },
      { tag: 'code', type: 'str', doc: 'EBADTUPLE, EFAIL, ETIMEDOUT, ECLOSED' },
    ],
  },
];

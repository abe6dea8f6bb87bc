import type { ServiceTable, TupleSpec } from '../../services/table.js';

/** The evidence of a detection: what `/detected` and `/action` carry. */
const EVIDENCE: readonly TupleSpec[] = [
  { tag: 'ip', type: 'str', doc: "the guest's IPv4 address (the flows' original source)" },
  {
    tag: 'mac',
    type: 'str',
    doc: 'its MAC from the router\'s neighbour table, lowercase, or "" when unknown',
  },
  { tag: 'network', type: 'str', doc: 'the captive network it is on (its name in the gateway config)' },
  { tag: 'rule', type: 'str', doc: 'port-scan | smtp-burst | flood | blocklist' },
  {
    tag: 'measure',
    type: 'str',
    doc: 'what reached the threshold: ports or hosts (port-scan), connections (the others)',
  },
  { tag: 'count', type: 'int', doc: 'its value in the window' },
  { tag: 'threshold', type: 'int', doc: 'the configured threshold it reached' },
  { tag: 'window', type: 'int', doc: 'the window, seconds' },
  { tag: 'connections', type: 'int', doc: "new connections in the guest's window (context)" },
  { tag: 'ports', type: 'int', doc: 'distinct destination ports in the window' },
  { tag: 'hosts', type: 'int', doc: 'distinct destination hosts in the window' },
  { tag: 'first', type: 'int', doc: 'time of the oldest event still counted, epoch milliseconds' },
  { tag: 'at', type: 'int', doc: 'time of the detection, epoch milliseconds' },
  {
    tag: 'dst',
    type: 'str',
    repeated: true,
    required: false,
    doc: 'a sample of the destinations behind the count, newest first: a.b.c.d:port/proto or a.b.c.d/proto',
  },
  { tag: 'action', type: 'str', doc: 'the configured action: log | rate-limit | block | deauth' },
];

/** The extrusion detector's mailboxes, relative to its name (default `/extrusion`). docs/apps/extrusion.md. */
export const extrusionTable: ServiceTable = [
  {
    suffix: '/detected',
    dir: 'out',
    doc:
      "A guest reached a rule's threshold in the window (at most once per rule and guest per window). " +
      'Posted before the action is tried.',
    tuples: EVIDENCE,
  },
  {
    suffix: '/action',
    dir: 'out',
    doc:
      'Sent (not posted) right after /detected, with the same tuples: the stock listener, appended, takes ' +
      'the action and stops the chain. A listener prepended by another process may STOP it: a veto (the ' +
      'action is not taken; /acted says vetoed). Remote listeners answer within their timeout (1 s unless ' +
      'they attached with another) or the chain goes on.',
    tuples: EVIDENCE,
  },
  {
    suffix: '/acted',
    dir: 'out',
    doc: 'What came of an /action.',
    tuples: [
      { tag: 'ip', type: 'str', doc: "the guest's address" },
      { tag: 'mac', type: 'str', doc: 'its MAC, or ""' },
      { tag: 'rule', type: 'str', doc: 'the rule that fired' },
      { tag: 'action', type: 'str', doc: 'the configured action' },
      {
        tag: 'performed',
        type: 'str',
        doc: 'what was done: log | rate-limit | block | deauth | none (block falls back to deauth, see the doc)',
      },
      {
        tag: 'outcome',
        type: 'str',
        doc: 'done | failed | vetoed | skipped (the same action for this guest less than a window ago)',
      },
      { tag: 'detail', type: 'str', doc: "why, in words: the portal's answer, an error, who vetoed" },
    ],
  },
  {
    suffix: '/event',
    dir: 'in',
    doc:
      'Count one new connection of a guest, as if conntrack had reported it (another event source, a test). ' +
      'Replies {detections} (how many it completed) when it has a reply-to.',
    tuples: [
      { tag: 'src', type: 'str', doc: "the guest's IPv4 address" },
      { tag: 'dst', type: 'str', doc: 'the destination address' },
      { tag: 'proto', type: 'int', doc: 'IP protocol number (6 tcp, 17 udp, 1 icmp)' },
      { tag: 'dport', type: 'int', required: false, doc: 'destination port (tcp, udp, sctp…)' },
    ],
  },
  {
    suffix: '/guests',
    dir: 'in',
    doc:
      'Replies {count, guest…}: one list per tracked guest (busiest first) with ip, connections, ports, hosts, ' +
      'smtp, blocked (counts in the window) and last-seen (epoch ms). With ip: that guest only.',
    tuples: [{ tag: 'ip', type: 'str', required: false, doc: 'one guest' }],
  },
  {
    suffix: '/stats',
    dir: 'in',
    doc:
      'Replies {events, ignored, evicted, guests-dropped, detections, guests, held, lines, unparsed, overflows, ' +
      'restarts, reader-cpu-ms, readers} (ints since start; held = events in the windows now).',
    tuples: [],
  },
  {
    suffix: '/error',
    dir: 'out',
    doc: 'What no reply can carry: a failed action, a dropped event stream, a conntrack restart.',
    tuples: [
      { tag: 'mailbox', type: 'str', doc: 'where it happened' },
      { tag: 'error', type: 'str', doc: 'what went wrong' },
      { tag: 'code', type: 'str', doc: 'EFAIL, ELOST, ENOVERB, ETIMEDOUT, …' },
    ],
  },
];

/**
 * The tc command lines of the shaper, as pure functions of the desired state (no I/O here), so
 * they can be unit-tested and diffed. One HTB tree per shaped direction:
 *
 *   1:    htb, default 1:2
 *   └ 1:1   uplink: rate = ceil = the uplink (what the operator set, ~90-95% of the line)
 *     ├ 1:2   default (unknown and non-IPv4 traffic): rate uplink/20, ceil uplink
 *     └ 1:<id> one per guest: rate = equal share of the rest (≤ its cap), ceil = its cap or the uplink
 *          leaf: pfifo (or bfifo) sized to `queueMs` at the class's ceil, handle <id>:
 *
 * Guests are classified by u32 on their IPv4 address: a 256-bucket hash table (handle 10:) keyed
 * on the address's last byte, reached from the root table (800:) by one linking filter, so the
 * lookup stays O(1) however many guests are in. A guest's filter is `10:<last byte>:<id>`.
 * Download trees sit on the guest-side devices' egress and match `ip dst`; the upload tree sits on
 * the ifb's egress (the devices' ingress is redirected there with mirred) and matches `ip src`.
 *
 * Numbers are always written in tc's own bases: class minors, qdisc majors and u32 handles are
 * hex; rates are `<n>bit` (integer bits/s); `default` of htb is a hex minor too.
 */

/** One HTB tree: a device and which address of a packet identifies the guest. */
export interface Tree {
  readonly dev: string;
  /** `dst` on a download (device egress) tree, `src` on the upload (ifb) tree. */
  readonly key: 'dst' | 'src';
  /** Bits/s. */
  readonly uplink: number;
  readonly leaf: LeafKind;
  /** Leaf queue size, in milliseconds at the class's ceil. */
  readonly queueMs: number;
}

export type LeafKind = 'pfifo' | 'bfifo';

/** A guest's class in one tree: its id (class minor), address, guaranteed rate and ceil (bits/s). */
export interface GuestClass {
  readonly ip: string;
  readonly id: number;
  readonly rate: number;
  readonly ceil: number;
}

/** A tc batch line; `optional` ones may fail (deleting what is not there at a rebuild). */
export interface TcLine {
  readonly dev: string;
  readonly line: string;
  readonly optional?: boolean;
}

/** Class minors for guests: 0x10..0xfff (u32 node ids are 12 bits, and the filter reuses the id). */
export const FIRST_ID = 0x10;
export const LAST_ID = 0xfff;
export const MAX_GUESTS = LAST_ID - FIRST_ID + 1;
/** Root class, default class and their minors. */
export const ROOT_CLASS = '1:1';
export const DEFAULT_CLASS = '1:2';
/** The u32 filters' priority, and the guests' hash table. */
const PRIO = 10;
const HT = '10';
/** Bytes of one full-size Ethernet frame: what pfifo limits are counted in. */
export const FRAME = 1514;
/** The smallest leaf queue, in frames (a class's queue holds at least this many). */
export const MIN_QUEUE_FRAMES = 16;
/** The largest pfifo limit, in frames. */
export const MAX_QUEUE_FRAMES = 1000;

/** Offset of the address in the IPv4 header: source at 12, destination at 16. */
const offset = (key: 'dst' | 'src'): number => (key === 'src' ? 12 : 16);
const hex = (n: number): string => n.toString(16);
const bit = (n: number): string => `${Math.round(n)}bit`;

/**
 * HTB quantum (bytes a class sends per round when classes borrow): the same for every class of a
 * tree so that borrowed bandwidth is shared equally, about 1 ms of the uplink, at least one
 * full frame and at most 60,000 bytes (HTB warns above 200,000).
 */
export function quantum(uplink: number): number {
  return Math.min(60_000, Math.max(FRAME, Math.round(uplink / 8 / 1000)));
}

/** The default class's guaranteed rate: 5% of the uplink (ARP, DHCP, guests not shaped yet, IPv6). */
export function defaultRate(uplink: number): number {
  return Math.max(8000, Math.floor(uplink / 20));
}

/** The guaranteed rate of each of `n` guests: an equal share of what the default class leaves. */
export function guestShare(uplink: number, n: number): number {
  return Math.max(8000, Math.floor((uplink - defaultRate(uplink)) / Math.max(1, n)));
}

/** The leaf queue's parameters for a class whose ceil is `ceil` bits/s: `limit N` (frames or bytes). */
export function leafLimit(leaf: LeafKind, ceil: number, queueMs: number): number {
  const bytes = (ceil / 8) * (queueMs / 1000);
  if (leaf === 'bfifo') return Math.max(MIN_QUEUE_FRAMES * FRAME, Math.round(bytes));
  return Math.min(MAX_QUEUE_FRAMES, Math.max(MIN_QUEUE_FRAMES, Math.ceil(bytes / FRAME)));
}

const leafLine = (t: Tree, verb: 'add' | 'replace', parent: string, handle: string, ceil: number): string =>
  `qdisc ${verb} dev ${t.dev} parent ${parent} handle ${handle}: ${t.leaf} limit ${leafLimit(t.leaf, ceil, t.queueMs)}`;

const classLine = (t: Tree, verb: 'add' | 'change', id: string, rate: number, ceil: number): string =>
  `class ${verb} dev ${t.dev} parent ${ROOT_CLASS} classid 1:${id} htb rate ${bit(Math.min(rate, ceil))} ceil ${bit(ceil)} quantum ${quantum(t.uplink)}`;

/** The u32 filter handle of a guest: `10:<last byte, hex>:<id, hex>`. */
export function filterHandle(g: Pick<GuestClass, 'ip' | 'id'>): string {
  const last = Number(g.ip.split('.')[3]);
  return `${HT}:${hex(last)}:${hex(g.id)}`;
}

/** Delete what a previous run left on a device (each may be absent: optional). */
export function clearLines(dev: string, ingress: boolean): TcLine[] {
  const out: TcLine[] = [{ dev, line: `qdisc del dev ${dev} root`, optional: true }];
  if (ingress) out.push({ dev, line: `qdisc del dev ${dev} ingress`, optional: true });
  return out;
}

/** The whole tree on an empty device: root, uplink class, default class, hash table, then the guests. */
export function treeLines(t: Tree, guests: readonly GuestClass[]): TcLine[] {
  const { dev, uplink } = t;
  const q = quantum(uplink);
  const lines = [
    `qdisc add dev ${dev} root handle 1: htb default 2`,
    `class add dev ${dev} parent 1: classid ${ROOT_CLASS} htb rate ${bit(uplink)} ceil ${bit(uplink)} quantum ${q}`,
    `class add dev ${dev} parent ${ROOT_CLASS} classid ${DEFAULT_CLASS} htb rate ${bit(defaultRate(uplink))} ceil ${bit(uplink)} quantum ${q}`,
    leafLine(t, 'add', DEFAULT_CLASS, '2', uplink),
    `filter add dev ${dev} parent 1: protocol ip prio ${PRIO} handle ${HT}: u32 divisor 256`,
    `filter add dev ${dev} parent 1: protocol ip prio ${PRIO} u32 ht 800:: match u32 0 0 hashkey mask 0x000000ff at ${offset(t.key)} link ${HT}:`,
  ].map((line) => ({ dev, line }));
  for (const g of guests) lines.push(...addGuestLines(t, g));
  return lines;
}

/** Redirect everything entering `dev` to the ifb, where the upload tree shapes it. */
export function redirectLines(dev: string, ifb: string): TcLine[] {
  return [
    `qdisc add dev ${dev} handle ffff: ingress`,
    `filter add dev ${dev} parent ffff: protocol all prio ${PRIO} u32 match u32 0 0 action mirred egress redirect dev ${ifb}`,
  ].map((line) => ({ dev, line }));
}

/** A guest's class, its leaf queue and its filter. */
export function addGuestLines(t: Tree, g: GuestClass): TcLine[] {
  const { dev } = t;
  const h = filterHandle(g);
  const bucket = h.slice(0, h.lastIndexOf(':') + 1);
  return [
    classLine(t, 'add', hex(g.id), g.rate, g.ceil),
    leafLine(t, 'add', `1:${hex(g.id)}`, hex(g.id), g.ceil),
    `filter add dev ${dev} parent 1: protocol ip prio ${PRIO} handle ${h} u32 ht ${bucket} match ip ${t.key} ${g.ip}/32 flowid 1:${hex(g.id)}`,
  ].map((line) => ({ dev, line }));
}

/** The filter first (a class with a filter pointing at it is busy), then the class with its leaf. */
export function removeGuestLines(t: Tree, g: Pick<GuestClass, 'ip' | 'id'>): TcLine[] {
  const { dev } = t;
  return [
    `filter del dev ${dev} parent 1: protocol ip prio ${PRIO} handle ${filterHandle(g)} u32`,
    `class del dev ${dev} parent ${ROOT_CLASS} classid 1:${hex(g.id)}`,
  ].map((line) => ({ dev, line }));
}

/** New rate or ceil for a class; a new ceil also resizes its leaf queue. */
export function changeGuestLines(t: Tree, before: GuestClass, after: GuestClass): TcLine[] {
  const out: TcLine[] = [];
  if (before.rate !== after.rate || before.ceil !== after.ceil)
    out.push({ dev: t.dev, line: classLine(t, 'change', hex(after.id), after.rate, after.ceil) });
  if (leafLimit(t.leaf, before.ceil, t.queueMs) !== leafLimit(t.leaf, after.ceil, t.queueMs))
    out.push({ dev: t.dev, line: leafLine(t, 'replace', `1:${hex(after.id)}`, hex(after.id), after.ceil) });
  return out;
}

/**
 * The lines that turn one set of guest classes into another on a tree: removals first (their ids
 * may be reused), then changes of the guests that stay, then additions.
 */
export function diffLines(t: Tree, before: readonly GuestClass[], after: readonly GuestClass[]): TcLine[] {
  const old = new Map(before.map((g) => [g.ip, g]));
  const now = new Map(after.map((g) => [g.ip, g]));
  const out: TcLine[] = [];
  for (const g of before) {
    const n = now.get(g.ip);
    if (!n || n.id !== g.id) out.push(...removeGuestLines(t, g));
  }
  for (const g of after) {
    const o = old.get(g.ip);
    if (o && o.id === g.id) out.push(...changeGuestLines(t, o, g));
  }
  for (const g of after) {
    const o = old.get(g.ip);
    if (!o || o.id !== g.id) out.push(...addGuestLines(t, g));
  }
  return out;
}

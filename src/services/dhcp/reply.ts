import type { SubnetConfig } from './config.js';
import { intToIp } from './ip.js';
import { getOption, valueToOption } from './options.js';
import { DhcpEncodeError, type DhcpOption, type DhcpPacket, encodePacket, MessageType } from './packet.js';

/**
 * Building a reply packet: header fields per RFC 2131 table 3, options in this order: message
 * type (53), server id (54), lease times (51, 58, 59, not for INFORM), then the options the client
 * asked for in its parameter request list (55) in that order, then the other configured options,
 * and the relay agent information (82) echoed last. Options the config or a lookup answer give
 * override the defaults of the same code (global < subnet < static host < lookup answer).
 */

export interface ReplyPlan {
  readonly type: number;
  readonly yiaddr: string;
  readonly mac: string;
  readonly decision:
    | { readonly leaseTime: number | undefined; readonly hostname: string | undefined }
    | undefined;
  readonly serverId: string;
  readonly subnet: SubnetConfig;
  readonly configOptions: readonly DhcpOption[];
  /** Option 56 text (for a NAK). */
  readonly message?: string;
  readonly inform?: boolean;
}

const u32 = (code: number, v: number): DhcpOption => valueToOption(code, v);

/**
 * Options that are the same for every reply of a subnet, encoded once (a reply used to encode
 * ~10 options per packet). Option buffers are shared between replies: nothing writes into them.
 */
interface SubnetOptions {
  /** 1, 3, 6, 15, 114, 28 in this order (the order of the "other configured options"). */
  readonly base: readonly DhcpOption[];
  /** 51, 58, 59 for the subnet's own lease time. */
  readonly times: readonly DhcpOption[];
}
const bySubnet = new WeakMap<SubnetConfig, SubnetOptions>();
const typeOptions = new Map<number, DhcpOption>();
const serverIds = new Map<string, DhcpOption>();

function subnetOptions(s: SubnetConfig): SubnetOptions {
  let c = bySubnet.get(s);
  if (c === undefined) {
    const base = [valueToOption(1, intToIp(s.cidr.mask))];
    if (s.router.length) base.push(valueToOption(3, s.router));
    if (s.dns.length) base.push(valueToOption(6, s.dns));
    if (s.domain) base.push(valueToOption(15, s.domain));
    if (s.captivePortal) base.push(valueToOption(114, s.captivePortal));
    base.push(valueToOption(28, intToIp(s.cidr.broadcast)));
    c = { base, times: [u32(51, s.leaseTime), u32(58, s.renewalTime), u32(59, s.rebindingTime)] };
    bySubnet.set(s, c);
  }
  return c;
}

function cached<K>(cache: Map<K, DhcpOption>, key: K, make: () => DhcpOption): DhcpOption {
  let o = cache.get(key);
  if (o === undefined) {
    o = make();
    if (cache.size < 1024) cache.set(key, o);
  }
  return o;
}

const NEVER_CONFIGURED = new Set([53, 54, 82]);

/**
 * The options of the common reply — an OFFER or ACK with the subnet's lease time and options, no
 * configured, host or lookup options, no hostname — depend only on the subnet, the type, the server
 * id and the client's parameter request list: built once per combination and shared (frozen).
 */
const commonOptions = new WeakMap<SubnetConfig, Map<string, readonly DhcpOption[]>>();
const COMMON_MAX = 256;

export function buildReply(req: DhcpPacket, plan: ReplyPlan): DhcpPacket {
  const s = plan.subnet;
  const prl = getOption(req, 55);
  let options: readonly DhcpOption[];
  if (
    plan.type !== MessageType.NAK &&
    !plan.inform &&
    plan.configOptions.length === 0 &&
    !plan.decision?.hostname &&
    (plan.decision?.leaseTime ?? s.leaseTime) === s.leaseTime
  ) {
    let bySubnet = commonOptions.get(s);
    if (bySubnet === undefined) commonOptions.set(s, (bySubnet = new Map()));
    const key = `${plan.type}|${plan.serverId}|${prl === undefined ? '-' : prl.toString('latin1')}`;
    let common = bySubnet.get(key);
    if (common === undefined) {
      common = Object.freeze(replyOptions(prl, plan));
      if (bySubnet.size < COMMON_MAX) bySubnet.set(key, common);
    }
    options = common;
  } else options = replyOptions(prl, plan);
  const relay = getOption(req, 82);
  return {
    op: 2,
    htype: req.htype,
    hlen: req.hlen,
    hops: 0,
    xid: req.xid,
    secs: 0,
    flags: req.flags & 0x8000,
    ciaddr: plan.type === MessageType.ACK ? req.ciaddr : '0.0.0.0',
    yiaddr: plan.yiaddr,
    siaddr: '0.0.0.0',
    giaddr: req.giaddr,
    chaddr: req.chaddr,
    sname: '',
    file: '',
    options: relay ? [...options, { code: 82, data: relay }] : (options as DhcpOption[]),
  };
}

/** The reply's options in their order (module doc), without the relay agent information (82). */
function replyOptions(prl: Buffer | undefined, plan: ReplyPlan): DhcpOption[] {
  const s = plan.subnet;
  const head: DhcpOption[] = [
    cached(typeOptions, plan.type, () => valueToOption(53, plan.type)),
    cached(serverIds, plan.serverId, () => valueToOption(54, plan.serverId)),
  ];
  const avail = new Map<number, DhcpOption>();
  if (plan.type === MessageType.NAK) {
    if (plan.message) head.push(valueToOption(56, plan.message.slice(0, 250)));
  } else {
    const so = subnetOptions(s);
    if (!plan.inform) {
      const lease = plan.decision?.leaseTime ?? s.leaseTime;
      if (lease === s.leaseTime) head.push(...so.times);
      else head.push(u32(51, lease), u32(58, Math.floor(lease / 2)), u32(59, Math.floor((lease * 7) / 8)));
    }
    for (const o of so.base) avail.set(o.code, o);
    if (plan.decision?.hostname) avail.set(12, valueToOption(12, plan.decision.hostname));
    for (const o of plan.configOptions) if (!NEVER_CONFIGURED.has(o.code)) avail.set(o.code, o);
    if (plan.inform) for (const c of [51, 58, 59]) avail.delete(c);
  }
  const placed = new Set(head.map((o) => o.code));
  const options = [...head];
  if (prl)
    for (const code of prl) {
      const o = avail.get(code);
      if (o && !placed.has(code)) {
        options.push(o);
        placed.add(code);
      }
    }
  for (const [code, o] of avail) if (!placed.has(code) && code !== 28) options.push(o);
  return options;
}

/**
 * Encode within the client's maximum size (option 57): when the options do not fit even with
 * overload, drop options from the end (the unrequested ones come last), never 53/54/51/82.
 */
export function encodeReply(p: DhcpPacket, maxSize: number): Buffer {
  let opts = p.options;
  for (;;) {
    try {
      return encodePacket({ ...p, options: opts }, { maxSize });
    } catch (e) {
      if (!(e instanceof DhcpEncodeError)) throw e;
      const i = findLastDroppable(opts);
      if (i < 0) throw e;
      opts = [...opts.slice(0, i), ...opts.slice(i + 1)];
    }
  }
}

function findLastDroppable(opts: readonly DhcpOption[]): number {
  for (let i = opts.length - 1; i >= 0; i--) if (![53, 54, 51, 82, 1, 3].includes(opts[i]!.code)) return i;
  return -1;
}

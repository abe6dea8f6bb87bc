import { MetanetError } from '../../core/errors.js';
import { type Family, familyOf, ifname, ipv4, port, prefix, tableName } from './addr.js';

/**
 * The firewall's whole table as one nft script, loaded with one `nft -f -`: it creates the table
 * if missing, deletes it, and defines it again, in one transaction (never touching other tables).
 * Elements saved in the state file are part of the script, so a restart rebuilds everything at once.
 */
export interface RulesetOptions {
  /** Table name in family inet (default `metanet`). */
  readonly table?: string;
  /** LAN interface(s): the clients' side. Only traffic entering from them is filtered. */
  readonly lan: string | readonly string[];
  /** Where unauthorised HTTP (tcp/80) goes: an IPv4 address (usually the router's LAN address) and port. */
  readonly portal: { readonly address: string; readonly port: number };
  /** Walled garden: addresses or prefixes (v4/v6) every client may reach. */
  readonly garden?: readonly string[];
  /** Resolvers (v4/v6, beyond the router) unauthorised clients may reach on port 53. */
  readonly dns?: readonly string[];
  /** Extra TCP/UDP ports on the router unauthorised clients may reach. */
  readonly routerTcp?: readonly number[];
  readonly routerUdp?: readonly number[];
  /** Reject tcp/25 from authorised clients unless opened per client (default true). */
  readonly closeSmtp?: boolean;
}

export interface SavedClient {
  readonly ip: string;
  readonly mac: string;
  /** Seconds, as given. */
  readonly timeout: number;
  /** Epoch ms at which it runs out. */
  readonly expiresAt: number;
}

/** A walled-garden address learnt from a DNS answer (`<name>/garden/add`), with its timeout. */
export interface SavedGarden {
  readonly ip: string;
  /** Seconds, as given. */
  readonly timeout: number;
  /** Epoch ms at which it runs out. */
  readonly expiresAt: number;
}

export interface SavedSmtp {
  readonly client: string;
  readonly server: string;
  readonly port: number;
  readonly timeout: number;
  readonly expiresAt: number;
}

export const SETS = {
  auth4: 'auth4',
  auth6: 'auth6',
  down4: 'down4',
  down6: 'down6',
  smtp4: 'smtp4',
  gardendns4: 'gardendns4',
  gardendns6: 'gardendns6',
  trusted: 'trusted',
  blocked: 'blocked',
  owner: 'owner',
} as const;

/** The walled garden learnt from DNS answers (addresses with a timeout), by family. */
export function gardenDnsSet(f: Family): string {
  return f === 'ipv4' ? SETS.gardendns4 : SETS.gardendns6;
}

/** The MAC lists: `trusted` (never captive) and `blocked` (no access at all). */
export type MacList = 'trusted' | 'blocked';
export const MAC_LISTS: readonly MacList[] = ['trusted', 'blocked'];

/** Authorised clients (`address . MAC`): their counters count what each client sends (upload). */
export function authSet(f: Family): string {
  return f === 'ipv4' ? SETS.auth4 : SETS.auth6;
}

/**
 * The same clients by address alone: their counters count what the router forwards to each client
 * (download; the forward path has no client MAC on the way back). Kept in step with the auth set.
 */
export function downSet(f: Family): string {
  return f === 'ipv4' ? SETS.down4 : SETS.down6;
}

/** Check the options once (clear ECONFIG errors) and give them back complete. */
export function checkOptions(o: RulesetOptions): Required<RulesetOptions> & { lan: readonly string[] } {
  const lan = (typeof o.lan === 'string' ? [o.lan] : [...o.lan]).map(ifname);
  if (lan.length === 0) throw new MetanetError('ECONFIG', 'firewall: lan names no interface');
  return {
    table: tableName(o.table ?? 'metanet'),
    lan,
    portal: {
      address: ipv4(o.portal.address, 'firewall portal.address'),
      port: port(o.portal.port, 'firewall portal.port'),
    },
    garden: (o.garden ?? []).map((g) => prefix(g, 'firewall garden').text),
    dns: (o.dns ?? []).map((g) => prefix(g, 'firewall dns').text),
    routerTcp: (o.routerTcp ?? []).map((p) => port(p, 'firewall routerTcp')),
    routerUdp: (o.routerUdp ?? []).map((p) => port(p, 'firewall routerUdp')),
    closeSmtp: o.closeSmtp ?? true,
  };
}

function elements(items: readonly string[]): string {
  return items.length === 0 ? '' : ` elements = { ${items.join(', ')} }`;
}

function byFamily(list: readonly string[], f: Family): string[] {
  return list.filter((p) => familyOf(p.split('/')[0]!, 'prefix') === f);
}

/** Seconds left, at least 1 (an element due now still goes in; the kernel expires it at once). */
function left(expiresAt: number, now: number): number {
  return Math.max(1, Math.ceil((expiresAt - now) / 1000));
}

/** What the ruleset is rebuilt with: the state file's elements (`state.ts`). */
export interface SavedElements {
  readonly clients: readonly SavedClient[];
  readonly smtp: readonly SavedSmtp[];
  readonly garden?: readonly SavedGarden[];
  readonly trusted?: readonly string[];
  readonly blocked?: readonly string[];
}

/**
 * The whole table as one script. `owner` (owner.ts: who installed it) becomes the table's comment
 * and the one element of its `owner` set (the pid; flushed when that firewall closes), so a second
 * installer can tell the table is taken.
 */
export function buildRuleset(
  opts: RulesetOptions,
  saved: SavedElements = { clients: [], smtp: [] },
  now = Date.now(),
  owner?: { readonly comment: string; readonly pid: number },
): string {
  const o = checkOptions(opts);
  const t = o.table;
  const lan = `{ ${o.lan.map((i) => `"${i}"`).join(', ')} }`;
  const of = (f: Family): SavedClient[] => saved.clients.filter((c) => familyOf(c.ip, 'saved client') === f);
  const life = (c: SavedClient): string =>
    `timeout ${c.timeout}s expires ${Math.min(c.timeout, left(c.expiresAt, now))}s`;
  const auth = (f: Family): string[] => of(f).map((c) => `${c.ip} . ${c.mac} ${life(c)}`);
  // One address, one binding (allow removes a stale one), so one download element per address;
  // the later entry wins should a hand-edited state file bind an address twice.
  const down = (f: Family): string[] => [...new Map(of(f).map((c) => [c.ip, `${c.ip} ${life(c)}`])).values()];
  const smtp = saved.smtp.map(
    (s) =>
      `${s.client} . ${s.server} . ${s.port} timeout ${s.timeout}s expires ${Math.min(s.timeout, left(s.expiresAt, now))}s`,
  );
  const gardenDns = (f: Family): string[] =>
    (saved.garden ?? [])
      .filter((g) => familyOf(g.ip, 'saved garden') === f)
      .map((g) => `${g.ip} timeout ${g.timeout}s expires ${Math.min(g.timeout, left(g.expiresAt, now))}s`);
  const portal = `${o.portal.address}:${o.portal.port}`;
  const tcp = [53, ...o.routerTcp];
  const udp = [53, 67, 547, ...o.routerUdp];
  const smtpRules = o.closeSmtp
    ? [
        `    tcp dport 25 ip saddr . ip daddr . tcp dport @${SETS.smtp4} accept`,
        '    tcp dport 25 reject with tcp reset',
      ]
    : [];
  return [
    `add table inet ${t}`,
    `delete table inet ${t}`,
    `table inet ${t} {`,
    ...(owner === undefined
      ? []
      : [`  comment "${owner.comment}"`, `  set ${SETS.owner} { type mark; elements = { ${owner.pid} } }`]),
    `  set ${SETS.auth4} { type ipv4_addr . ether_addr; flags timeout; counter;${elements(auth('ipv4'))} }`,
    `  set ${SETS.auth6} { type ipv6_addr . ether_addr; flags timeout; counter;${elements(auth('ipv6'))} }`,
    `  set ${SETS.down4} { type ipv4_addr; flags timeout; counter;${elements(down('ipv4'))} }`,
    `  set ${SETS.down6} { type ipv6_addr; flags timeout; counter;${elements(down('ipv6'))} }`,
    `  set garden4 { type ipv4_addr; flags interval;${elements(byFamily(o.garden, 'ipv4'))} }`,
    `  set garden6 { type ipv6_addr; flags interval;${elements(byFamily(o.garden, 'ipv6'))} }`,
    `  set dns4 { type ipv4_addr; flags interval;${elements(byFamily(o.dns, 'ipv4'))} }`,
    `  set dns6 { type ipv6_addr; flags interval;${elements(byFamily(o.dns, 'ipv6'))} }`,
    `  set ${SETS.smtp4} { type ipv4_addr . ipv4_addr . inet_service; flags timeout;${elements(smtp)} }`,
    `  set ${SETS.gardendns4} { type ipv4_addr; flags timeout;${elements(gardenDns('ipv4'))} }`,
    `  set ${SETS.gardendns6} { type ipv6_addr; flags timeout;${elements(gardenDns('ipv6'))} }`,
    `  set ${SETS.trusted} { type ether_addr;${elements([...(saved.trusted ?? [])])} }`,
    `  set ${SETS.blocked} { type ether_addr;${elements([...(saved.blocked ?? [])])} }`,
    '',
    '  chain nat_prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    `    iifname ${lan} ether saddr @${SETS.trusted} accept`,
    `    iifname ${lan} meta nfproto ipv4 tcp dport 80 ip saddr . ether saddr != @${SETS.auth4} ip daddr != @garden4 ip daddr != @${SETS.gardendns4} dnat ip to ${portal}`,
    '  }',
    '',
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    `    iifname != ${lan} accept`,
    // A blocked MAC reaches nothing on the router but dhcpd, which refuses it an address itself
    // (the portal's /dhcpd/lookup listener), so a client renewing gets a NAK and lets go.
    `    ether saddr @${SETS.blocked} udp dport 67 accept`,
    `    ether saddr @${SETS.blocked} drop`,
    `    ether saddr @${SETS.trusted} accept`,
    `    ip saddr . ether saddr @${SETS.auth4} accept`,
    `    ip6 saddr . ether saddr @${SETS.auth6} accept`,
    `    ip daddr ${o.portal.address} tcp dport ${o.portal.port} accept`,
    `    tcp dport { ${tcp.join(', ')} } accept`,
    `    udp dport { ${udp.join(', ')} } accept`,
    '    meta l4proto icmp accept',
    '    icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, mld-listener-report, mld2-listener-report } accept',
    '    drop',
    '  }',
    '',
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    // Download counters: no verdict, only the element counter (established/related only, so an
    // outside host sending unsolicited packets cannot keep a departed guest from going idle).
    `    oifname ${lan} ct state established,related ip daddr @${SETS.down4}`,
    `    oifname ${lan} ct state established,related ip6 daddr @${SETS.down6}`,
    `    iifname != ${lan} accept`,
    `    ether saddr @${SETS.blocked} drop`,
    `    ether saddr @${SETS.trusted} meta nfproto ipv4 goto authorised4`,
    `    ether saddr @${SETS.trusted} meta nfproto ipv6 goto authorised6`,
    `    ip saddr . ether saddr @${SETS.auth4} goto authorised4`,
    `    ip6 saddr . ether saddr @${SETS.auth6} goto authorised6`,
    '    ip daddr @garden4 accept',
    '    ip6 daddr @garden6 accept',
    `    ip daddr @${SETS.gardendns4} accept`,
    `    ip6 daddr @${SETS.gardendns6} accept`,
    '    ip daddr @dns4 meta l4proto { tcp, udp } th dport 53 accept',
    '    ip6 daddr @dns6 meta l4proto { tcp, udp } th dport 53 accept',
    '    tcp dport 443 reject with tcp reset',
    '    udp dport 443 drop',
    '    drop',
    '  }',
    '',
    '  chain authorised4 {',
    ...smtpRules,
    '    accept',
    '  }',
    '',
    '  chain authorised6 {',
    ...(o.closeSmtp ? ['    tcp dport 25 reject with tcp reset'] : []),
    '    accept',
    '  }',
    '}',
    '',
  ].join('\n');
}

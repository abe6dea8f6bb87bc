import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Bus } from '../../core/bus.js';
import { MetanetError } from '../../core/errors.js';
import { CONTINUE, STOP } from '../../core/listener.js';
import type { Message } from '../../core/message.js';
import { follow } from '../follow.js';
import type { PortalConfig } from './config.js';
import { FIREWALL, type Guestbook } from './guestbook.js';

export type MacListName = 'trusted' | 'blocked';

/** Where a MAC's place on a list comes from: the config (fixed) or an operator's verb (kept in `macFile`). */
export type MacSource = 'config' | 'operator';

export interface MacEntry {
  readonly mac: string;
  readonly source: MacSource;
  /** Epoch ms it was put there (the start, for the config's). */
  readonly since: number;
}

/** What a change did, for the verbs' replies. */
export interface MacChange {
  readonly mac: string;
  /** False when it was already so. */
  readonly changed: boolean;
  /** Sessions ended by a block. */
  readonly ended: number;
}

const MAC_RE = /^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$/i;
const VERSION = 1;

/** A MAC as `xx:xx:xx:xx:xx:xx`, lowercase; EBADTUPLE otherwise. */
export function normalMac(s: string, what = 'mac'): string {
  if (!MAC_RE.test(s))
    throw new MetanetError(
      'EBADTUPLE',
      `${what}: ${JSON.stringify(s)} is not a MAC address (xx:xx:xx:xx:xx:xx)`,
    );
  return s.toLowerCase().replaceAll('-', ':');
}

/**
 * The portal's MAC lists (docs/apps/portal.md, "MAC lists"): **trusted** MACs are never captive
 * (the firewall's `trusted` set: accepted like a logged-in guest, never redirected); **blocked**
 * MACs get nothing (the firewall's `blocked` set drops all they send but DHCP, and a listener
 * prepended on dhcpd's `/dhcpd/lookup` answers them no address). The config's lists are fixed;
 * the operator's changes (`block`, `trust`, …) are kept in `macFile` and announced on
 * `<name>/blocked`, `/unblocked`, `/trusted`, `/untrusted`. A MAC is on one list at most: trusting
 * a blocked MAC unblocks it, blocking a trusted one untrusts it.
 */
export class MacLists {
  private readonly lists: Record<MacListName, Map<string, MacEntry>> = {
    trusted: new Map(),
    blocked: new Map(),
  };
  private dhcpHook: ReturnType<typeof follow> | undefined;
  private closed = false;

  constructor(
    private readonly bus: Bus,
    private readonly config: PortalConfig,
    private readonly book: Guestbook,
    private readonly now: () => number = Date.now,
  ) {
    const at = this.now();
    for (const mac of config.trustedMacs)
      this.set('trusted', { mac: normalMac(mac), source: 'config', since: at });
    for (const mac of config.blockedMacs) {
      const m = normalMac(mac);
      this.lists.trusted.delete(m);
      this.set('blocked', { mac: m, source: 'config', since: at });
    }
    // The operator's changes; a MAC the config lists stays as the config says.
    if (config.macFile)
      for (const e of loadMacFile(config.macFile))
        if (!this.isTrusted(e.mac) && !this.isBlocked(e.mac)) this.set(e.list, e);
  }

  has(list: MacListName, mac: string): boolean {
    return this.lists[list].has(mac);
  }

  isTrusted(mac: string): boolean {
    return this.lists.trusted.has(mac);
  }

  isBlocked(mac: string): boolean {
    return this.lists.blocked.has(mac);
  }

  list(name: MacListName): MacEntry[] {
    return [...this.lists[name].values()];
  }

  /**
   * At start: make the firewall's sets say what the lists say (its state file may hold a MAC the
   * lists no longer do, or miss one), end the sessions of blocked MACs, and attach the DHCP hook.
   */
  async start(): Promise<void> {
    const listed = await this.bus.request(`${FIREWALL}/list`, {});
    if (listed.has('error')) throw new MetanetError('EFAIL', `${FIREWALL}/list: ${listed.str('error')}`);
    for (const list of ['trusted', 'blocked'] as const) {
      const there = new Set(listed.all(list).map((t) => String(t.value)));
      for (const mac of there) if (!this.has(list, mac)) await this.firewall('remove', list, mac);
      for (const mac of this.lists[list].keys()) if (!there.has(mac)) await this.firewall('add', list, mac);
    }
    for (const s of this.book.sessions.all())
      if (this.isBlocked(s.mac)) await this.book.end(s.ip, 'blocked', { session: s });
    this.syncDhcpHook();
  }

  /** Block a MAC: no access at all, its sessions end (reason `blocked`), no DHCP lease. */
  async block(macText: string): Promise<MacChange> {
    const mac = normalMac(macText);
    if (this.isBlocked(mac)) return { mac, changed: false, ended: await this.endSessions(mac) };
    if (this.isTrusted(mac)) await this.untrust(mac);
    await this.firewall('add', 'blocked', mac);
    this.add('blocked', { mac, source: 'operator', since: this.now() });
    const ended = await this.endSessions(mac);
    this.syncDhcpHook();
    this.bus.log.log('info', 'portal: MAC blocked', { mac, ended });
    this.bus.post(`${this.config.name}/blocked`, { mac, ended });
    return { mac, changed: true, ended };
  }

  async unblock(macText: string): Promise<MacChange> {
    const mac = normalMac(macText);
    if (!this.isBlocked(mac)) return { mac, changed: false, ended: 0 };
    this.fixed('blocked', mac);
    await this.firewall('remove', 'blocked', mac);
    this.remove('blocked', mac);
    this.syncDhcpHook();
    this.bus.log.log('info', 'portal: MAC unblocked', { mac });
    this.bus.post(`${this.config.name}/unblocked`, { mac });
    return { mac, changed: true, ended: 0 };
  }

  /** Trust a MAC: never captive (its sessions, if any, go on as they are). */
  async trust(macText: string): Promise<MacChange> {
    const mac = normalMac(macText);
    if (this.isTrusted(mac)) return { mac, changed: false, ended: 0 };
    if (this.isBlocked(mac)) await this.unblock(mac);
    await this.firewall('add', 'trusted', mac);
    this.add('trusted', { mac, source: 'operator', since: this.now() });
    this.bus.log.log('info', 'portal: MAC trusted', { mac });
    this.bus.post(`${this.config.name}/trusted`, { mac });
    return { mac, changed: true, ended: 0 };
  }

  async untrust(macText: string): Promise<MacChange> {
    const mac = normalMac(macText);
    if (!this.isTrusted(mac)) return { mac, changed: false, ended: 0 };
    this.fixed('trusted', mac);
    await this.firewall('remove', 'trusted', mac);
    this.remove('trusted', mac);
    this.bus.log.log('info', 'portal: MAC untrusted', { mac });
    this.bus.post(`${this.config.name}/untrusted`, { mac });
    return { mac, changed: true, ended: 0 };
  }

  close(): void {
    this.closed = true;
    this.dhcpHook?.remove();
    this.dhcpHook = undefined;
  }

  // ---- inside ----------------------------------------------------------------------------

  private set(list: MacListName, e: MacEntry): void {
    this.lists[list].set(e.mac, e);
  }

  private add(list: MacListName, e: MacEntry): void {
    this.set(list, e);
    this.save();
  }

  private remove(list: MacListName, mac: string): void {
    this.lists[list].delete(mac);
    this.save();
  }

  /** A MAC the config lists cannot be taken off by a verb (the config would put it back at the next start). */
  private fixed(list: MacListName, mac: string): void {
    if (this.lists[list].get(mac)?.source === 'config')
      throw new MetanetError(
        'EDENIED',
        `${mac} is in the portal's config (${list === 'trusted' ? 'trustedMacs' : 'blockedMacs'}): change the config`,
      );
  }

  private async endSessions(mac: string): Promise<number> {
    let n = 0;
    for (const s of this.book.sessions.all())
      if (s.mac === mac && (await this.book.end(s.ip, 'blocked', { session: s }))) n++;
    return n;
  }

  private async firewall(op: 'add' | 'remove', list: MacListName, mac: string): Promise<void> {
    const r = await this.bus.request(`${FIREWALL}/mac/${op}`, { list, mac });
    if (r.has('error'))
      throw new MetanetError('EFAIL', `firewall mac/${op} ${list} ${mac}: ${r.str('error')}`);
  }

  /** The operator's entries (the config's are not written: the config has them). */
  private save(): void {
    const file = this.config.macFile;
    if (!file) return;
    const of = (list: MacListName) =>
      this.list(list)
        .filter((e) => e.source === 'operator')
        .map(({ mac, since }) => ({ mac, since }));
    const tmp = `${file}.tmp`;
    writeFileSync(
      tmp,
      `${JSON.stringify({ version: VERSION, trusted: of('trusted'), blocked: of('blocked') })}\n`,
      {
        mode: 0o600,
      },
    );
    renameSync(tmp, file);
  }

  /**
   * While any MAC is blocked (and the portal follows a dhcpd), a listener prepended on
   * `<dhcpd>:/dhcpd/lookup` answers a blocked MAC "no address" and stops the chain; others go on
   * (CONTINUE: the pool or the next hook decides). With no MAC blocked it is removed, so dhcpd
   * keeps its fast path (no lookup message per packet while only the pool listens).
   */
  private syncDhcpHook(): void {
    const dhcpd = this.config.dhcpd;
    if (!dhcpd || this.closed) return;
    const want = this.lists.blocked.size > 0;
    if (want && !this.dhcpHook) {
      const blocked = this.lists.blocked;
      this.dhcpHook = follow(
        this.bus,
        `${dhcpd}:/dhcpd/lookup`,
        async function portalBlocked(m: Message, ctx) {
          if (!blocked.has(m.str('mac'))) return CONTINUE;
          await ctx.reply({ source: 'portal', error: 'MAC blocked by the portal' });
          return STOP;
        },
        { identity: { app: 'portal', blocks: 'macs' }, position: 'prepend' },
      );
    } else if (!want && this.dhcpHook) {
      this.dhcpHook.remove();
      this.dhcpHook = undefined;
    }
  }

  /** Resolves once the DHCP hook (if any is wanted) is in dhcpd's chain. */
  get dhcpAttached(): Promise<void> {
    return this.dhcpHook?.attached ?? Promise.resolve();
  }
}

/** The operator's entries of a MAC file; missing = none; broken = ECONFIG naming the entry. */
export function loadMacFile(
  file: string,
): { list: MacListName; mac: string; source: MacSource; since: number }[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new MetanetError('ECONFIG', `portal MAC file ${file}: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new MetanetError('ECONFIG', `portal MAC file ${file}: not JSON: ${(e as Error).message}`);
  }
  const d = doc as { version?: unknown; trusted?: unknown; blocked?: unknown };
  if (typeof doc !== 'object' || doc === null || d.version !== VERSION)
    throw new MetanetError(
      'ECONFIG',
      `portal MAC file ${file}: expected {"version":1,"trusted":[…],"blocked":[…]}`,
    );
  const out: { list: MacListName; mac: string; source: MacSource; since: number }[] = [];
  for (const list of ['trusted', 'blocked'] as const) {
    const v = d[list] ?? [];
    if (!Array.isArray(v))
      throw new MetanetError('ECONFIG', `portal MAC file ${file}: "${list}" must be an array`);
    v.forEach((e: unknown, i) => {
      const x = (typeof e === 'object' && e !== null ? e : {}) as { mac?: unknown; since?: unknown };
      if (typeof x.mac !== 'string' || !MAC_RE.test(x.mac))
        throw new MetanetError('ECONFIG', `portal MAC file ${file}: ${list}[${i}].mac is not a MAC`);
      const since = typeof x.since === 'number' && Number.isSafeInteger(x.since) ? x.since : 0;
      out.push({ list, mac: normalMac(x.mac), source: 'operator', since });
    });
  }
  return out;
}

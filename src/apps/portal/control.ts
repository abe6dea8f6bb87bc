import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import type { Bus } from '../../core/bus.js';
import { MetanetError } from '../../core/errors.js';
import { CONTINUE, type Context, STOP } from '../../core/listener.js';
import type { Message, MessageInit } from '../../core/message.js';
import { closeConnections } from '../../services/firewall/index.js';
import { attachTable } from '../../services/table.js';
import { parseArp } from './arp.js';
import type { PortalConfig } from './config.js';
import type { DomainGarden } from './garden.js';
import { FIREWALL, type Guestbook } from './guestbook.js';
import type { DhcpGuests } from './guests.js';
import { advance, type Counters, counterKey, idleSeconds, limitTuples, readCounters } from './lifecycle.js';
import { type MacLists, normalMac } from './maclists.js';
import type { Session } from './sessions.js';
import { portalTable } from './table.js';

/** What the operator verbs need beyond the guestbook (all optional: tests attach the bare control). */
export interface ControlParts {
  readonly config?: PortalConfig;
  readonly macs?: MacLists;
  readonly garden?: () => DomainGarden | undefined;
  /** HTTP servers whose refusals `/status` sums (`<name>/stats` of the HTTP service). */
  readonly httpServers?: readonly string[];
}

/**
 * The portal's operator mailboxes (docs/apps/portal.md, "The operator"): `/clients`, `/client`,
 * `/status`, `/authorize`, `/logout`, `/block`, `/unblock`, `/trust`, `/untrust`, `/macs` — what
 * `metanet portal …` (src/cli/portal.ts) calls. Returns the detach function.
 */
export function attachControl(
  bus: Bus,
  name: string,
  book: Guestbook,
  guests: () => DhcpGuests | undefined,
  parts: ControlParts = {},
) {
  const started = Date.now();
  const prefix = parts.config?.commandPrefix ?? [];
  const key = (ip: string, sinceS: number): string => `${ip} ${sinceS}`;
  // What restored sessions had moved before this start: /status counts from the start.
  const base = new Map<string, { up: number; down: number }>();
  for (const s of book.sessions.all())
    base.set(key(s.ip, Math.floor(s.since / 1000)), { up: s.usage.up, down: s.usage.down });
  const totals = { logins: 0, logouts: 0, up: 0, down: 0 };
  const onLogin = bus.append(
    `${name}/login`,
    () => {
      totals.logins++;
      return CONTINUE;
    },
    { app: 'portal', counts: 'logins' },
  );
  const onLogout = bus.append(
    `${name}/logged-out`,
    (m) => {
      totals.logouts++;
      const k = key(m.str('ip'), m.int('since'));
      const b = base.get(k) ?? { up: 0, down: 0 };
      base.delete(k);
      totals.up += Math.max(0, m.int('bytes-up') - b.up);
      totals.down += Math.max(0, m.int('bytes-down') - b.down);
      return CONTINUE;
    },
    { app: 'portal', counts: 'logouts' },
  );

  /** One live session as a `/clients` entry, from a fresh sample. */
  const entry = (s: Session, counters: Counters | undefined, now: number) => {
    const c = counters?.clients.get(counterKey(s.ip, s.mac));
    const usage = counters ? advance(s.usage, c, counters.loaded, now) : s.usage;
    return {
      ip: s.ip,
      mac: s.mac,
      hostname: guests()?.get(s.ip)?.hostname ?? '',
      since: Math.floor(s.since / 1000),
      expires: Math.floor(s.expires / 1000),
      packets: c?.packetsUp ?? 0,
      bytes: c?.up ?? 0,
      'packets-up': c?.packetsUp ?? 0,
      'packets-down': c?.packetsDown ?? 0,
      'bytes-up': usage.up,
      'bytes-down': usage.down,
      idle: idleSeconds({ ...s, usage }, now),
      ...limitTuples(s.limits),
    };
  };

  /** Address and MAC of a device named by `ip` or `mac`: sessions, DHCP leases, the neighbour table. */
  const identify = async (m: Message, where: string): Promise<{ ip: string; mac: string }> => {
    if (m.has('ip') === m.has('mac'))
      throw new MetanetError('EBADTUPLE', `${where}: give ip or mac (one of them)`);
    if (m.has('ip')) {
      const ip = m.str('ip');
      if (!isIPv4(ip))
        throw new MetanetError('EBADTUPLE', `${where}: ip ${JSON.stringify(ip)} is not an IPv4 address`);
      const mac =
        book.sessions.get(ip)?.mac ??
        (await neighbours(prefix).catch(() => new Map())).get(ip) ??
        guests()?.get(ip)?.mac;
      return { ip, mac: mac ?? '' };
    }
    const mac = normalMac(m.str('mac'), `${where} mac`);
    const ip =
      book.sessions.list().find((s) => s.mac === mac)?.ip ??
      guests()
        ?.list()
        .find((g) => g.mac === mac)?.ip ??
      [...(await neighbours(prefix).catch(() => new Map<string, string>()))].find(([, x]) => x === mac)?.[0];
    return { ip: ip ?? '', mac };
  };

  const macs = (): MacLists => {
    if (!parts.macs) throw new MetanetError('EFAIL', 'this portal has no MAC lists');
    return parts.macs;
  };
  const reply = async (ctx: Context, init: MessageInit): Promise<void> => {
    if (ctx.replyTo) await ctx.reply(init);
  };

  const detach = attachTable(bus, name, portalTable, {
    '/clients': async (_m, ctx) => {
      // A fresh sample, used for the answer only: the lifecycle's checks keep the record.
      const counters = await readCounters(bus, FIREWALL);
      const now = Date.now();
      const client = book.sessions.list().map((s) => entry(s, counters, now));
      await reply(ctx, { count: client.length, client });
      return STOP;
    },
    '/client': async (m, ctx) => {
      const { ip, mac } = await identify(m, `${name}/client`);
      const s = (ip ? book.sessions.get(ip) : undefined) ?? book.sessions.list().find((x) => x.mac === mac);
      const hostname = (ip ? guests()?.get(ip)?.hostname : undefined) ?? '';
      const state =
        mac && parts.macs?.isBlocked(mac)
          ? 'blocked'
          : mac && parts.macs?.isTrusted(mac)
            ? 'trusted'
            : s
              ? 'online'
              : ip && mac
                ? 'captive'
                : 'unknown';
      if (s) {
        const counters = await readCounters(bus, FIREWALL).catch(() => undefined);
        await reply(ctx, { found: true, state, ...entry(s, counters, Date.now()) });
      } else await reply(ctx, { found: state !== 'unknown', state, ip, mac, hostname });
      return STOP;
    },
    '/status': async (_m, ctx) => {
      const now = Date.now();
      const counters = await readCounters(bus, FIREWALL).catch(() => undefined);
      let up = totals.up;
      let down = totals.down;
      const live = book.sessions.list();
      for (const s of live) {
        const e = entry(s, counters, now);
        const b = base.get(key(s.ip, e.since)) ?? { up: 0, down: 0 };
        up += Math.max(0, e['bytes-up'] - b.up);
        down += Math.max(0, e['bytes-down'] - b.down);
      }
      let refused = 0;
      for (const server of parts.httpServers ?? []) {
        const r = await bus.request(`${server}/stats`, {}, { timeout: 1000 }).catch(() => undefined);
        if (r && !r.has('error')) refused += r.int('refused-cap', 0) + r.int('refused-fd', 0);
      }
      await reply(ctx, {
        started: Math.floor(started / 1000),
        uptime: Math.floor((now - started) / 1000),
        online: live.length,
        logins: totals.logins,
        logouts: totals.logouts,
        'bytes-up': up,
        'bytes-down': down,
        trusted: parts.macs?.list('trusted').length ?? 0,
        blocked: parts.macs?.list('blocked').length ?? 0,
        garden: parts.garden?.()?.added ?? 0,
        'http-refused': refused,
      });
      return STOP;
    },
    '/authorize': async (m, ctx) => {
      // Both given (a glue app that knows the lease, e.g. RADIUS MAC login): taken as they are.
      const { ip, mac } =
        m.has('ip') && m.has('mac') && isIPv4(m.str('ip'))
          ? { ip: m.str('ip'), mac: normalMac(m.str('mac'), `${name}/authorize mac`) }
          : await identify(m, `${name}/authorize`);
      if (!ip || !mac)
        throw new MetanetError(
          'EFAIL',
          `${name}/authorize: ${ip ? `no MAC known for ${ip}` : `no address known for ${mac}`} (no DHCP lease, not in the neighbour table)`,
        );
      if (parts.macs?.isBlocked(mac))
        throw new MetanetError('EDENIED', `${name}/authorize: ${mac} is blocked`);
      const seconds = m.int('session-timeout', parts.config?.sessionSeconds ?? 3600);
      if (seconds < 1 || seconds > 4233600)
        throw new MetanetError(
          'EBADTUPLE',
          `${name}/authorize: session-timeout must be 1..4233600, got ${seconds}`,
        );
      const s = await book.login(ip, mac, seconds, book.overrides(m));
      bus.log.log('info', 'portal: logged in by the operator', { ip, mac, seconds });
      // Connections redirected to the portal before stay redirected (the DNAT is in conntrack): cut them.
      closeConnections(ip, { command: [...prefix, 'conntrack'], natted: true }).catch((e: unknown) =>
        book.report(`${name}/authorize`, e),
      );
      await reply(ctx, { ip, mac, expires: Math.floor(s.expires / 1000) });
      return STOP;
    },
    '/limits': async (m, ctx) => {
      const ip = m.str('ip');
      const s = await book.change(ip, book.overrides(m));
      if (!s) throw new MetanetError('EFAIL', `${name}/limits: ${ip} has no session`);
      await reply(ctx, { ip, mac: s.mac, expires: Math.floor(s.expires / 1000) });
      return STOP;
    },
    '/logout': async (m, ctx) => {
      const reason = m.str('reason', 'operator');
      if (m.has('ip') === m.has('mac'))
        throw new MetanetError('EBADTUPLE', `${name}/logout: give ip or mac (one of them)`);
      if (m.has('ip')) {
        const ip = m.str('ip');
        const mac = book.sessions.record(ip)?.mac ?? '';
        const removed = await book.end(ip, reason);
        await reply(ctx, { ip, mac, removed });
        return STOP;
      }
      const mac = normalMac(m.str('mac'), `${name}/logout mac`);
      let first = '';
      for (const s of book.sessions.all())
        if (s.mac === mac && (await book.end(s.ip, reason, { session: s }))) first ||= s.ip;
      await reply(ctx, { ip: first, mac, removed: first !== '' });
      return STOP;
    },
    '/block': async (m, ctx) => {
      const r = await macs().block(m.str('mac'));
      await reply(ctx, { mac: r.mac, changed: r.changed, ended: r.ended });
      return STOP;
    },
    '/unblock': async (m, ctx) => {
      const r = await macs().unblock(m.str('mac'));
      await reply(ctx, { mac: r.mac, changed: r.changed });
      return STOP;
    },
    '/trust': async (m, ctx) => {
      const r = await macs().trust(m.str('mac'));
      await reply(ctx, { mac: r.mac, changed: r.changed });
      return STOP;
    },
    '/untrust': async (m, ctx) => {
      const r = await macs().untrust(m.str('mac'));
      await reply(ctx, { mac: r.mac, changed: r.changed });
      return STOP;
    },
    '/macs': async (_m, ctx) => {
      const of = (list: 'trusted' | 'blocked') =>
        (parts.macs?.list(list) ?? []).map((e) => ({
          mac: e.mac,
          source: e.source,
          since: Math.floor(e.since / 1000),
        }));
      await reply(ctx, { trusted: of('trusted'), blocked: of('blocked') });
      return STOP;
    },
  });
  return () => {
    detach();
    onLogin.remove();
    onLogout.remove();
  };
}

/** The router's neighbour table (`/proc/net/arp`, complete entries), address → MAC. */
function neighbours(prefix: readonly string[]): Promise<Map<string, string>> {
  if (prefix.length === 0) return readFile('/proc/net/arp', 'utf8').then(parseArp);
  const [cmd, ...pre] = prefix as [string, ...string[]];
  return new Promise((resolve, reject) => {
    execFile(cmd, [...pre, 'cat', '/proc/net/arp'], { timeout: 3000 }, (err, out, stderr) => {
      if (err) reject(new MetanetError('EFAIL', `reading /proc/net/arp: ${stderr.trim() || err.message}`));
      else resolve(parseArp(out));
    });
  });
}

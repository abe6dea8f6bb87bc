import { performance } from 'node:perf_hooks';
import type { Bus } from '../../core/bus.js';
import { isMetanetError, MetanetError } from '../../core/errors.js';
import { STOP } from '../../core/listener.js';
import type { Message } from '../../core/message.js';
import type { Timer } from '../../core/timers.js';
import {
  closeConnections,
  type FirewallService,
  installFirewallService,
} from '../../services/firewall/index.js';
import { installHttpService } from '../../services/http/index.js';
import { attachTable } from '../../services/table.js';
import { macFor } from './arp.js';
import { type PortalConfig, type PortalConfigInput, parseConfig } from './config.js';
import { DhcpGuests } from './guests.js';
import { loggedIn, message, moved, safeUrl, splash } from './pages.js';
import { Sessions } from './sessions.js';
import { portalTable } from './table.js';
import { Tokens } from './tokens.js';

export interface CaptivePortal {
  readonly config: PortalConfig;
  /** `http://<portalHost>/` */
  readonly url: string;
  readonly port: number;
  readonly firewall: FirewallService;
  /** What DHCP told the portal (when it follows a dhcpd: config `dhcpd`). */
  readonly guests: DhcpGuests | undefined;
  /** Live sessions. */
  sessionCount(): number;
  /** Stop serving; the firewall table stays (logged-in clients keep access meanwhile). */
  close(): Promise<void>;
}

const HTML = 'text/html; charset=utf-8';
const NO_STORE = { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' };
const FIREWALL = '/system/firewall';

/**
 * The captive portal (SPEC §5, paper §9): an HTTP server on the router's LAN address, the firewall
 * redirecting unauthorised tcp/80 to it, the splash page with the usage policy and a CSRF-checked
 * "I accept" form, authentication as the `<name>/auth` mailbox, login through the firewall
 * (address bound to MAC, for `sessionSeconds`), sessions in a state file. docs/apps/portal.md.
 */
export async function startCaptivePortal(bus: Bus, input: PortalConfigInput): Promise<CaptivePortal> {
  const config = parseConfig(input);
  const { name, address, port, sessionSeconds } = config;
  const portalHost = (config.portalHost ?? `${address}:${port}`).toLowerCase();
  const portalUrl = `http://${portalHost}/`;
  const self = hostPort(portalHost);
  const sessions = new Sessions(config.stateFile);
  const tokens = new Tokens();
  const prefix = config.commandPrefix;
  const log = bus.log;

  const firewall = await installFirewallService(bus, {
    lan: config.lan,
    portal: { address, port },
    garden: config.garden,
    dns: config.dns,
    nft: [...prefix, 'nft'],
    stateFile: config.firewallStateFile,
    defaultTimeout: sessionSeconds,
  });
  const timers = new Set<Timer>();
  const cleanup: (() => Promise<void> | void)[] = [() => firewall.close()];
  const report = (mailbox: string, e: unknown): void => {
    bus.post(`${name}/error`, {
      mailbox,
      error: e instanceof Error ? e.message : String(e),
      code: isMetanetError(e) ? e.code : 'EFAIL',
    });
  };
  /** End a session: out of the firewall, off the state file, announced with its reason. */
  const endSession = async (ip: string, reason: string): Promise<boolean> => {
    const s = sessions.get(ip);
    if (!s) return false;
    sessions.remove(ip);
    const r = await bus.request(`${FIREWALL}/deny`, { ip: s.ip, mac: s.mac });
    if (r.has('error')) report(`${FIREWALL}/deny`, new Error(r.str('error')));
    log.log('info', 'portal: logged out', { ip, mac: s.mac, reason });
    bus.post(`${name}/logged-out`, { ip, mac: s.mac, reason, since: Math.floor(s.since / 1000) });
    return true;
  };
  let guests: DhcpGuests | undefined;
  const allow = async (ip: string, mac: string, timeout: number): Promise<void> => {
    const r = await bus.request(`${FIREWALL}/allow`, { ip, mac, timeout });
    if (r.has('error')) throw new MetanetError('EFAIL', `firewall allow ${ip}: ${r.str('error')}`);
  };

  try {
    // Restored sessions: make sure the firewall has them for the time they have left (a table
    // rebuilt without the firewall's own state file would not).
    for (const s of sessions.list())
      await allow(s.ip, s.mac, Math.max(1, Math.ceil((s.expires - Date.now()) / 1000)));

    // The paper's head start: guests known from DHCP; a lease that ends ends the session.
    if (config.dhcpd) {
      const g = new DhcpGuests(bus, config.dhcpd, ({ ip, mac, reason }) => {
        if (sessions.get(ip)?.mac !== mac) return;
        endSession(ip, 'lease').catch((e: unknown) => report(`${name}/logged-out`, e));
        log.log('debug', 'portal: lease ended', { ip, mac, dhcp: reason });
      });
      guests = g;
      cleanup.push(() => g.close());
    }

    // Authentication is a mailbox: this stock listener, appended, accepts everyone who accepted.
    if (config.stockAuth) {
      const stock = bus.append(
        `${name}/auth`,
        async (_m, ctx) => {
          await ctx.reply({ ok: true });
          return STOP;
        },
        { app: 'portal', auth: 'accept-policy' },
      );
      cleanup.push(() => stock.remove());
    }

    const detach = attachTable(bus, name, portalTable, {
      '/clients': async (_m, ctx) => {
        const counted = new Map<string, Message>();
        const fw = await bus.request(`${FIREWALL}/clients`, {});
        for (const t of fw.all('client')) {
          const c = t.value as Message;
          counted.set(`${c.str('ip')} ${c.str('mac')}`, c);
        }
        const client = sessions.list().map((s) => {
          const c = counted.get(`${s.ip} ${s.mac}`);
          return {
            ip: s.ip,
            mac: s.mac,
            hostname: guests?.get(s.ip)?.hostname ?? '',
            since: Math.floor(s.since / 1000),
            expires: Math.floor(s.expires / 1000),
            packets: c?.int('packets') ?? 0,
            bytes: c?.int('bytes') ?? 0,
          };
        });
        if (ctx.replyTo) await ctx.reply({ count: client.length, client });
        return STOP;
      },
      '/logout': async (m, ctx) => {
        const ip = m.str('ip');
        const removed = await endSession(ip, m.str('reason', 'operator'));
        if (ctx.replyTo) await ctx.reply({ ip, removed });
        return STOP;
      },
    });
    cleanup.push(detach);
    timers.add(bus.every(30_000, () => void sessions.list()));

    const http = installHttpService(bus, { host: address });
    cleanup.unshift(() => http.close());
    const server = `${name}/http`;
    const made = await bus.request('/system/http/server/new', { name: server, port, host: address });
    if (made.has('error')) throw new MetanetError('ECONFIG', `portal HTTP server: ${made.str('error')}`);

    const respond = (client: string, code: number, headers: Record<string, string>, data: string): void => {
      bus.post(`${client}/response`, { code, headers, data });
    };

    /** Any foreign Host: to the portal, with the original URL. */
    function redirect(m: Message): void {
      const q = m.str('query');
      const asked = `http://${m.str('Host')}${m.str('path')}${q ? `?${q}` : ''}`;
      const target = `${portalUrl}?url=${encodeURIComponent(asked)}`;
      respond(
        m.str('clientname'),
        302,
        // Connection: close: a kept-alive connection to a foreign host would stay redirected to
        // the portal after login (the browser would reuse it for the original page).
        { ...NO_STORE, Location: target, Connection: 'close', 'Content-Type': HTML },
        moved(target, asked),
      );
    }

    function showSplash(m: Message, code = 200, refused?: string, url?: string): void {
      const ip = m.str('peerhost');
      const s = sessions.get(ip);
      const wanted = url ?? safeUrl(new URLSearchParams(m.str('query')).get('url'));
      const body = s
        ? loggedIn(config.title, (s.expires - Date.now()) / 1000, wanted)
        : splash({
            title: config.title,
            policy: config.policy,
            token: tokens.issue(ip),
            url: wanted,
            refused,
          });
      respond(
        m.str('clientname'),
        code,
        { ...NO_STORE, 'Content-Type': HTML, 'X-Frame-Options': 'DENY' },
        body,
      );
    }

    function api(m: Message): void {
      const s = sessions.get(m.str('peerhost'));
      const doc: Record<string, unknown> = { captive: !s, 'user-portal-url': portalUrl };
      if (s) doc['seconds-remaining'] = Math.max(0, Math.floor((s.expires - Date.now()) / 1000));
      doc['can-extend-session'] = false;
      respond(
        m.str('clientname'),
        200,
        { 'Cache-Control': 'private, no-store', 'Content-Type': 'application/captive+json' },
        `${JSON.stringify(doc)}\n`,
      );
    }

    async function accept(m: Message): Promise<void> {
      const client = m.str('clientname');
      const ip = m.str('peerhost');
      const t0 = performance.now();
      const fail = (code: number, title: string, text: string): void =>
        respond(client, code, { ...NO_STORE, 'Content-Type': HTML }, message(title, text));
      const form = new URLSearchParams(Buffer.from(m.bytes('body')).toString('utf8'));
      if (!tokens.take(form.get('csrf'), ip))
        return fail(
          403,
          'Forbidden',
          'This form has expired or did not come from this portal. Please reload the page.',
        );
      const url = safeUrl(form.get('url'));
      const mac = await macFor(ip, prefix).catch((e: unknown) => {
        report(`${name}/auth`, e);
        return undefined;
      });
      if (!mac)
        return fail(500, 'Try again', 'The router does not know your device (no MAC for your address).');
      const fields: Record<string, string> = {};
      for (const [k, v] of form) if (k !== 'csrf' && k !== 'url' && k !== '') fields[k] = v;
      let verdict: Message;
      try {
        verdict = await bus.request(
          `${name}/auth`,
          { ip, mac, url: url ?? '', 'user-agent': m.list('headers').str('user-agent', ''), form: fields },
          { timeout: config.authTimeoutMs },
        );
      } catch (e) {
        report(`${name}/auth`, e);
        return fail(503, 'Try again', 'Authentication is not available right now.');
      }
      if (!verdict.bool('ok', false)) {
        const reason = verdict.has('reason') ? verdict.str('reason') : 'not authorised';
        log.log('info', 'portal: login refused', { ip, mac, reason });
        return showSplash(m, 403, reason, url);
      }
      try {
        await allow(ip, mac, sessionSeconds);
      } catch (e) {
        report(`${FIREWALL}/allow`, e);
        return fail(500, 'Try again', 'The firewall could not let you in.');
      }
      const s = sessions.add(ip, mac, sessionSeconds);
      log.log('info', 'portal: logged in', {
        ip,
        mac,
        seconds: sessionSeconds,
        ms: Math.round(performance.now() - t0),
      });
      bus.post(`${name}/login`, { ip, mac, expires: Math.floor(s.expires / 1000) });
      const to = url ?? portalUrl;
      respond(
        client,
        303,
        { ...NO_STORE, Location: to, Connection: 'close', 'Content-Type': HTML },
        message('Welcome', `You are online. Continue to ${to}`),
      );
      // Connections redirected before the login stay redirected (conntrack keeps the DNAT): cut
      // them once this answer has gone out on its own (also redirected) connection.
      const cut = bus.timeout(config.cutDelayMs, () => {
        timers.delete(cut);
        closeConnections(ip, { command: [...prefix, 'conntrack'] }).catch((e: unknown) =>
          report(`${name}/login`, e),
        );
      });
      timers.add(cut);
    }

    bus.append(`${server}/request`, async (m) => {
      try {
        const h = hostPort(m.str('Host').toLowerCase());
        if (!h || h.host !== self?.host || h.port !== self.port) redirect(m);
        else if (m.str('path') === '/api') api(m);
        else if (m.str('path') === '/accept' && m.str('method') === 'POST') await accept(m);
        else if (m.str('path') === '/') showSplash(m);
        else respond(m.str('clientname'), 404, { 'Content-Type': HTML }, message('Not found', m.str('path')));
      } catch (e) {
        report(`${server}/request`, e);
        respond(
          m.str('clientname'),
          500,
          { 'Content-Type': HTML },
          message('Error', 'Something went wrong.'),
        );
      }
      return STOP;
    });
  } catch (e) {
    for (const c of cleanup) await c();
    throw e;
  }

  return {
    config,
    url: portalUrl,
    port,
    firewall,
    get guests() {
      return guests;
    },
    sessionCount: () => sessions.list().length,
    async close() {
      for (const t of timers) t.cancel();
      for (const c of cleanup) await c();
    },
  };
}

/** `host[:port]` → its parts (port 80 when absent); undefined when it is not that shape. */
function hostPort(s: string): { host: string; port: number } | undefined {
  const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(s);
  if (!m) return undefined;
  return { host: m[1]!, port: m[2] ? Number(m[2]) : 80 };
}

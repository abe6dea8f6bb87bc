import { performance } from 'node:perf_hooks';
import type { Bus } from '../../core/bus.js';
import { STOP } from '../../core/listener.js';
import type { Message } from '../../core/message.js';
import type { Timer } from '../../core/timers.js';
import { closeConnections } from '../../services/firewall/index.js';
import { macFor } from './arp.js';
import type { PortalConfig } from './config.js';
import { FIREWALL, type Guestbook } from './guestbook.js';
import { loggedIn, message, moved, safeUrl, splash } from './pages.js';
import { Tokens } from './tokens.js';

const HTML = 'text/html; charset=utf-8';
const NO_STORE = { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' };

export interface Web {
  /** `http://<portalHost>/` */
  readonly url: string;
  close(): void;
}

/**
 * What guests see: every request to `<name>/http` — a foreign Host is redirected to the portal with
 * the original URL; on the portal's own host, `/` (splash or "you are online"), `POST /accept`
 * (CSRF-checked login through the `<name>/auth` mailbox), `/api` (RFC 8908). docs/apps/portal.md.
 */
export function attachWeb(bus: Bus, config: PortalConfig, book: Guestbook): Web {
  const { name, address, port, sessionSeconds } = config;
  const portalHost = (config.portalHost ?? `${address}:${port}`).toLowerCase();
  const portalUrl = `http://${portalHost}/`;
  const self = hostPort(portalHost);
  const tokens = new Tokens();
  const prefix = config.commandPrefix;
  const sessions = book.sessions;
  const log = bus.log;
  const server = `${name}/http`;
  const timers = new Set<Timer>();

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
      book.report(`${name}/auth`, e);
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
      book.report(`${name}/auth`, e);
      return fail(503, 'Try again', 'Authentication is not available right now.');
    }
    if (!verdict.bool('ok', false)) {
      const reason = verdict.has('reason') ? verdict.str('reason') : 'not authorised';
      log.log('info', 'portal: login refused', { ip, mac, reason });
      return showSplash(m, 403, reason, url);
    }
    try {
      await book.login(ip, mac, sessionSeconds, book.overrides(verdict));
    } catch (e) {
      book.report(`${FIREWALL}/allow`, e);
      return fail(500, 'Try again', 'The firewall could not let you in.');
    }
    log.log('info', 'portal: logged in', {
      ip,
      mac,
      seconds: sessionSeconds,
      ms: Math.round(performance.now() - t0),
    });
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
      closeConnections(ip, { command: [...prefix, 'conntrack'], natted: true }).catch((e: unknown) =>
        book.report(`${name}/login`, e),
      );
    });
    timers.add(cut);
  }

  const handle = bus.append(`${server}/request`, async (m) => {
    try {
      const h = hostPort(m.str('Host').toLowerCase());
      if (!h || h.host !== self?.host || h.port !== self.port) redirect(m);
      else if (m.str('path') === '/api') api(m);
      else if (m.str('path') === '/accept' && m.str('method') === 'POST') await accept(m);
      else if (m.str('path') === '/') showSplash(m);
      else respond(m.str('clientname'), 404, { 'Content-Type': HTML }, message('Not found', m.str('path')));
    } catch (e) {
      book.report(`${server}/request`, e);
      respond(m.str('clientname'), 500, { 'Content-Type': HTML }, message('Error', 'Something went wrong.'));
    }
    return STOP;
  });

  return {
    url: portalUrl,
    close() {
      handle.remove();
      for (const t of timers) t.cancel();
    },
  };
}

/** `host[:port]` → its parts (port 80 when absent); undefined when it is not that shape. */
function hostPort(s: string): { host: string; port: number } | undefined {
  const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(s);
  if (!m) return undefined;
  return { host: m[1]!, port: m[2] ? Number(m[2]) : 80 };
}

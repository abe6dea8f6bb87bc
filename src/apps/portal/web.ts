import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { Bus } from '../../core/bus.js';
import { MetanetError } from '../../core/errors.js';
import { STOP } from '../../core/listener.js';
import { Message, type Tuple } from '../../core/message.js';
import type { Timer } from '../../core/timers.js';
import { closeConnections } from '../../services/firewall/index.js';
import { macFor } from './arp.js';
import { type PortalConfig, portalUrls } from './config.js';
import { FIREWALL, type Guestbook } from './guestbook.js';
import { negotiate } from './i18n.js';
import { remaining } from './lifecycle.js';
import { type LanguageLinks, moved, Pages, safeUrl } from './pages.js';
import type { Session } from './sessions.js';
import { loadTheme } from './theme.js';
import { Tokens } from './tokens.js';

const HTML = 'text/html; charset=utf-8';
/** The redirect's constant tuples: its code, the headers before and after `Location`. */
const REDIRECT_CODE: Tuple = { tag: 'code', type: 'int', value: 302 };
const REDIRECT_HEAD: readonly Tuple[] = [
  { tag: 'Cache-Control', type: 'str', value: 'no-store' },
  { tag: 'X-Content-Type-Options', type: 'str', value: 'nosniff' },
];
/**
 * Connection: close: a kept-alive connection to a foreign host would stay redirected to the portal
 * after login (the browser would reuse it for the original page).
 */
const REDIRECT_TAIL: readonly Tuple[] = [
  { tag: 'Connection', type: 'str', value: 'close' },
  { tag: 'Content-Type', type: 'str', value: HTML },
];
const NO_STORE = { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' };
/** Pages: no framing, no scripts at all, styles and images from the portal only. */
const PAGE_HEADERS = {
  ...NO_STORE,
  'Content-Type': HTML,
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Content-Security-Policy':
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; base-uri 'none'; frame-ancestors 'none'",
};
/** How long the router's ARP answer for an address is reused by the status page and the API. */
export const NEIGHBOUR_CACHE_MS = 1000;
const LANG_COOKIE = 'portal_lang';
/** Longest `message` of an auth answer kept for the status page. */
const MESSAGE_MAX = 1000;

type Scheme = 'http' | 'https';

export interface Web {
  /** `http://<portalHost>/` */
  readonly url: string;
  /** `user-portal-url`: the https page when `https` is set, else `url`. */
  readonly pageUrl: string;
  /** The RFC 8908 API (what DHCP option 114 should carry). */
  readonly apiUrl: string;
  /** Create the HTTP server (and the HTTPS one when configured); ECONFIG naming what failed. */
  listen(): Promise<void>;
  close(): void;
}

/**
 * What guests see: every request to `<name>/http` (and `<name>/https`) — a foreign Host is
 * redirected to the portal with the original URL; on the portal's own host: `/` (splash, or the
 * status page for a guest logged in from this address **and** MAC), `POST /accept` (CSRF-checked
 * login through the `<name>/auth` mailbox), `GET /logout` (a confirmation) and `POST /logout`
 * (CSRF-checked: ends the session, reason `guest`), `/api` (RFC 8908), `/theme/<file>` (the
 * theme's stylesheet and images). Pages come from the theme (theme.ts) in the guest's language.
 * docs/apps/portal.md.
 */
export function attachWeb(
  bus: Bus,
  config: PortalConfig,
  book: Guestbook,
  isTrusted: (mac: string) => boolean = () => false,
): Web {
  const { name, address, port, sessionSeconds } = config;
  const urls = portalUrls(config);
  const portalHost = (config.portalHost ?? `${address}:${port}`).toLowerCase();
  const selfHttp = hostPort(portalHost, 80);
  const selfHttps = config.https ? { host: selfHttp?.host ?? address, port: config.https.port } : undefined;
  const httpsUrl = urls.page;
  const theme = loadTheme({ dir: config.themeDir, language: config.language });
  const pages = new Pages(theme, config);
  const tokens = new Tokens();
  const logoutKey = randomBytes(32);
  const prefix = config.commandPrefix;
  const sessions = book.sessions;
  const counts = book.counts;
  const log = bus.log;
  const timers = new Set<Timer>();
  const neighbours = new Neighbours(prefix, NEIGHBOUR_CACHE_MS);
  /** The auth answer's `message` per address, for the session it came with. */
  const notes = new Map<string, { since: number; mac: string; text: string }>();

  if (config.login === 'credentials' && config.stockAuth)
    log.log(
      'warn',
      'portal: login "credentials" with stockAuth on: the stock listener accepts any username and password; attach a hook (the radius app) and set stockAuth: false',
    );

  const respond = (client: string, code: number, headers: Record<string, string>, data: string): void => {
    bus.post(`${client}/response`, { code, headers, data });
  };

  /** The live session of the asking client: its address's session, if the router sees that address at the session's MAC. */
  async function guestOf(ip: string): Promise<Session | undefined> {
    const s = sessions.get(ip);
    if (!s) return undefined;
    const mac = await neighbours.mac(ip).catch((e: unknown) => {
      book.report(`${name}/http`, e);
      return undefined;
    });
    return mac === s.mac ? s : undefined;
  }

  /** The logout form's token: bound to the session (address, MAC, login time), valid for its life. */
  const logoutToken = (s: Session): string =>
    createHmac('sha256', logoutKey).update(`${s.ip} ${s.mac} ${s.since}`).digest('base64url').slice(0, 22);
  const logoutTokenOk = (s: Session, t: string | null): boolean => {
    if (!t) return false;
    const a = Buffer.from(logoutToken(s));
    const b = Buffer.from(t);
    return a.length === b.length && timingSafeEqual(a, b);
  };

  /** The page's language: a `lang` the guest picked (query, form, cookie), else Accept-Language, else the config's. */
  function langOf(m: Message, picked?: string | null): { lang: string; chosen: boolean } {
    const ok = (l: string | null | undefined): l is string =>
      !!l && theme.languages.includes(l.toLowerCase());
    const asked = picked ?? new URLSearchParams(m.str('query')).get('lang');
    if (ok(asked)) return { lang: asked.toLowerCase(), chosen: true };
    const headers = m.list('headers');
    for (const c of headers.all('cookie')) {
      const v = /(?:^|;\s*)portal_lang=([A-Za-z0-9-]{1,20})/.exec(String(c.value))?.[1];
      if (ok(v)) return { lang: v.toLowerCase(), chosen: false };
    }
    return {
      lang: negotiate(headers.str('accept-language', ''), theme.languages, theme.fallback),
      chosen: false,
    };
  }

  /** Language links: the same page (and its `url` parameter) in another language. */
  const linksFor =
    (path: string, url?: string): LanguageLinks =>
    (code) =>
      `${path}?${url ? `url=${encodeURIComponent(url)}&` : ''}lang=${code}`;

  function page(m: Message, code: number, html: string, lang?: { lang: string; chosen: boolean }): void {
    const headers: Record<string, string> = {
      ...PAGE_HEADERS,
      'Content-Language': lang?.lang ?? theme.fallback,
    };
    if (lang?.chosen)
      headers['Set-Cookie'] = `${LANG_COOKIE}=${lang.lang}; Path=/; Max-Age=31536000; SameSite=Lax`;
    respond(m.str('clientname'), code, headers, html);
  }

  function problem(
    m: Message,
    code: number,
    what: string,
    lang = langOf(m),
    params?: Record<string, string>,
  ): void {
    page(m, code, pages.message(lang.lang, { what, ...(params ? { params } : {}) }, linksFor('/')), lang);
  }

  /**
   * Any foreign Host: to the portal, with the original URL. The hot path of a captive network
   * (every page a guest's browser and OS try): the answer is built as tuples, its constant
   * headers made once.
   */
  function redirect(m: Message, scheme: Scheme): void {
    counts.redirects++;
    const q = m.str('query');
    const asked = `${scheme}://${m.str('Host')}${m.str('path')}${q ? `?${q}` : ''}`;
    const target = `${urls.http}?url=${encodeURIComponent(asked)}`;
    bus.post(
      `${m.str('clientname')}/response`,
      new Message([
        REDIRECT_CODE,
        {
          tag: 'headers',
          type: 'list',
          value: new Message([
            ...REDIRECT_HEAD,
            { tag: 'Location', type: 'str', value: target },
            ...REDIRECT_TAIL,
          ]),
        },
        { tag: 'data', type: 'str', value: moved(target, asked) },
      ]),
    );
  }

  async function home(
    m: Message,
    extra: {
      code?: number;
      refused?: string;
      problem?: string;
      url?: string;
      username?: string;
      lang?: { lang: string; chosen: boolean };
    } = {},
  ): Promise<void> {
    const ip = m.str('peerhost');
    const query = new URLSearchParams(m.str('query'));
    const lang = extra.lang ?? langOf(m);
    const wanted = extra.url ?? safeUrl(query.get('url'));
    const links = linksFor('/', wanted);
    const s = await guestOf(ip);
    if (s) {
      const left = remaining(s, Date.now());
      const note = notes.get(ip);
      const message = note && note.since === s.since && note.mac === s.mac ? note.text : undefined;
      return page(
        m,
        200,
        pages.status(lang.lang, { ...left, message, url: wanted, token: logoutToken(s) }, links),
        lang,
      );
    }
    counts.splashPages++;
    page(
      m,
      extra.code ?? 200,
      pages.splash(
        lang.lang,
        {
          token: tokens.issue(ip),
          url: wanted,
          refused: extra.refused,
          problem: extra.problem,
          username: extra.username,
          notice: query.get('bye') === '1' ? theme.text(lang.lang, 'logout.done') : undefined,
        },
        links,
      ),
      lang,
    );
  }

  async function api(m: Message, scheme: Scheme): Promise<void> {
    counts.apiRequests++;
    const s = await guestOf(m.str('peerhost'));
    // A trusted device is never captive, session or not (its MAC from the neighbour table).
    const trusted =
      !s &&
      (await neighbours.mac(m.str('peerhost')).then(
        (mac) => (mac ? isTrusted(mac) : false),
        () => false,
      ));
    const doc: Record<string, unknown> = {
      captive: !s && !trusted,
      'user-portal-url': scheme === 'https' ? httpsUrl : urls.page,
    };
    if (s) {
      const left = remaining(s, Date.now());
      doc['seconds-remaining'] = left.seconds;
      if (left.bytes !== undefined) doc['bytes-remaining'] = left.bytes;
    }
    doc['can-extend-session'] = false;
    respond(
      m.str('clientname'),
      200,
      { 'Cache-Control': 'private, no-store', 'Content-Type': 'application/captive+json' },
      `${JSON.stringify(doc)}\n`,
    );
  }

  function asset(m: Message): void {
    const file = m.str('path').slice('/theme/'.length);
    const a = theme.asset(file);
    if (!a) {
      problem(m, 404, 'notfound', langOf(m), { path: m.str('path') });
      return;
    }
    bus.post(`${m.str('clientname')}/response`, {
      code: 200,
      headers: {
        'Content-Type': a.type,
        'Cache-Control': 'public, max-age=300',
        'X-Content-Type-Options': 'nosniff',
      },
      data: a.body,
    });
  }

  async function accept(m: Message, scheme: Scheme): Promise<void> {
    const ip = m.str('peerhost');
    const t0 = performance.now();
    const form = new URLSearchParams(Buffer.from(m.bytes('body')).toString('utf8'));
    const lang = langOf(m, form.get('lang'));
    if (!tokens.take(form.get('csrf'), ip)) return problem(m, 403, 'csrf', lang);
    const url = safeUrl(form.get('url'));
    const username = config.login === 'credentials' ? (form.get('username') ?? '').trim() : undefined;
    if (username !== undefined && (!username || !form.get('password')))
      return home(m, { code: 400, problem: theme.text(lang.lang, 'splash.missing'), url, username, lang });
    const mac = await macFor(ip, prefix).catch((e: unknown) => {
      book.report(`${name}/auth`, e);
      return undefined;
    });
    if (!mac) return problem(m, 500, 'mac', lang);
    const fields: Record<string, string> = {};
    for (const [k, v] of form)
      if (k !== 'csrf' && k !== 'url' && k !== 'lang' && k !== '')
        fields[k] = k === 'username' ? v.trim() : v;
    let verdict: Message;
    try {
      verdict = await bus.request(
        `${name}/auth`,
        { ip, mac, url: url ?? '', 'user-agent': m.list('headers').str('user-agent', ''), form: fields },
        { timeout: config.authTimeoutMs },
      );
    } catch (e) {
      book.report(`${name}/auth`, e);
      return problem(m, 503, 'auth', lang);
    }
    if (!verdict.bool('ok', false)) {
      counts.authRefusals++;
      const reason = verdict.has('reason')
        ? verdict.str('reason')
        : theme.text(lang.lang, 'splash.refusedDefault');
      log.log('info', 'portal: login refused', { ip, mac, reason, ...(username ? { username } : {}) });
      return home(m, { code: 403, refused: reason, url, username, lang });
    }
    let s: Session;
    try {
      s = await book.login(ip, mac, sessionSeconds, book.overrides(verdict));
    } catch (e) {
      book.report(`${FIREWALL}/allow`, e);
      return problem(m, 500, 'firewall', lang);
    }
    const note = verdict.get('message');
    if (note?.type === 'str' && note.value !== '')
      notes.set(ip, { since: s.since, mac, text: String(note.value).slice(0, MESSAGE_MAX) });
    else notes.delete(ip);
    if (notes.size > 2 * sessions.list().length + 64)
      for (const [a, n] of notes) if (sessions.get(a)?.since !== n.since) notes.delete(a);
    log.log('info', 'portal: logged in', {
      ip,
      mac,
      seconds: s.limits.sessionTimeout,
      ...(username ? { username } : {}),
      ms: Math.round(performance.now() - t0),
    });
    const to = url ?? (scheme === 'https' ? httpsUrl : urls.http);
    respond(
      m.str('clientname'),
      303,
      { ...NO_STORE, Location: to, Connection: 'close', 'Content-Type': HTML },
      moved(to, to),
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

  /** GET /logout: the confirmation form (never logs out by itself). */
  async function logoutPage(m: Message): Promise<void> {
    const lang = langOf(m);
    const s = await guestOf(m.str('peerhost'));
    const left = s ? remaining(s, Date.now()).seconds : undefined;
    page(
      m,
      200,
      pages.logout(lang.lang, { token: s && logoutToken(s), seconds: left }, linksFor('/logout')),
      lang,
    );
  }

  /** POST /logout: the guest ends its own session (reason `guest`), then the splash says so. */
  async function logout(m: Message, scheme: Scheme): Promise<void> {
    const ip = m.str('peerhost');
    const form = new URLSearchParams(Buffer.from(m.bytes('body')).toString('utf8'));
    const lang = langOf(m, form.get('lang'));
    const s = await guestOf(ip);
    const base = scheme === 'https' ? httpsUrl : urls.http;
    if (s) {
      if (!logoutTokenOk(s, form.get('csrf'))) return problem(m, 403, 'csrf', lang);
      notes.delete(ip);
      await book.end(ip, 'guest', { session: s });
    }
    respond(
      m.str('clientname'),
      303,
      { ...NO_STORE, Location: `${base}?${s ? 'bye=1&' : ''}lang=${lang.lang}`, 'Content-Type': HTML },
      '',
    );
  }

  const own = (m: Message, scheme: Scheme): boolean => {
    const self = scheme === 'https' ? selfHttps : selfHttp;
    if (!self) return false;
    const host = m.str('Host').toLowerCase();
    // A foreign Host (the common case) fails here, before the parse.
    if (!host.startsWith(self.host)) return false;
    const h = hostPort(host, scheme === 'https' ? 443 : 80);
    return !!h && h.host === self.host && h.port === self.port;
  };

  /** The portal's own pages (async: sessions, the neighbour table, auth). */
  async function ownPage(m: Message, scheme: Scheme): Promise<typeof STOP> {
    try {
      const path = m.str('path');
      const method = m.str('method');
      const get = method === 'GET' || method === 'HEAD';
      if (path === '/api') await api(m, scheme);
      else if (path === '/' && get) await home(m);
      else if (path === '/accept' && method === 'POST') await accept(m, scheme);
      else if (path === '/logout' && method === 'POST') await logout(m, scheme);
      else if (path === '/logout' && get) await logoutPage(m);
      else if (path.startsWith('/theme/') && get) asset(m);
      else problem(m, 404, 'notfound', langOf(m), { path });
    } catch (e) {
      book.report(`${name}/${scheme}/request`, e);
      problem(m, 500, 'internal');
    }
    return STOP;
  }

  /** A foreign Host is redirected synchronously (no promise per redirect); the rest is `ownPage`. */
  const serve =
    (scheme: Scheme) =>
    (m: Message): typeof STOP | Promise<typeof STOP> => {
      try {
        if (own(m, scheme)) return ownPage(m, scheme);
        redirect(m, scheme);
      } catch (e) {
        book.report(`${name}/${scheme}/request`, e);
        problem(m, 500, 'internal');
      }
      return STOP;
    };

  const handles = [bus.append(`${name}/http/request`, serve('http'))];
  if (config.https) handles.push(bus.append(`${name}/https/request`, serve('https')));

  return {
    url: urls.http,
    pageUrl: urls.page,
    apiUrl: urls.api,
    async listen() {
      const made = await bus.request('/system/http/server/new', {
        name: `${name}/http`,
        port,
        host: address,
      });
      if (made.has('error')) throw new MetanetError('ECONFIG', `portal HTTP server: ${made.str('error')}`);
      const https = config.https;
      if (!https) return;
      const pem = (what: 'cert' | 'key'): string => {
        try {
          return readFileSync(https[what], 'utf8');
        } catch (e) {
          throw new MetanetError('ECONFIG', `portal https.${what}: ${(e as Error).message}`);
        }
      };
      const tls = await bus.request('/system/http/server/new', {
        name: `${name}/https`,
        port: https.port,
        host: address,
        cert: pem('cert'),
        key: pem('key'),
      });
      if (tls.has('error')) throw new MetanetError('ECONFIG', `portal HTTPS server: ${tls.str('error')}`);
    },
    close() {
      for (const h of handles) h.remove();
      for (const t of timers) t.cancel();
    },
  };
}

/** `host[:port]` → its parts (`dflt` when there is no port); undefined when it is not that shape. */
function hostPort(s: string, dflt: number): { host: string; port: number } | undefined {
  const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(s);
  if (!m) return undefined;
  return { host: m[1]!, port: m[2] ? Number(m[2]) : dflt };
}

/**
 * The router's MAC for an address (arp.ts, as at login), each answer reused for `ttlMs` and one
 * read in flight per address: the status page and the API check the MAC on every request, and
 * a burst of them (or the portal in a namespace, where each read is a process) costs one read.
 */
export class Neighbours {
  private readonly known = new Map<string, { mac: string | undefined; at: number }>();
  private readonly inFlight = new Map<string, Promise<string | undefined>>();

  constructor(
    private readonly prefix: readonly string[],
    private readonly ttlMs: number,
    private readonly read: (ip: string, prefix: readonly string[]) => Promise<string | undefined> = macFor,
    private readonly now: () => number = performance.now.bind(performance),
  ) {}

  mac(ip: string): Promise<string | undefined> {
    const k = this.known.get(ip);
    if (k && this.now() - k.at < this.ttlMs) return Promise.resolve(k.mac);
    let p = this.inFlight.get(ip);
    if (!p) {
      p = this.read(ip, this.prefix)
        .then((mac) => {
          if (this.known.size >= 4096) this.known.clear();
          this.known.set(ip, { mac, at: this.now() });
          return mac;
        })
        .finally(() => this.inFlight.delete(ip));
      this.inFlight.set(ip, p);
    }
    return p;
  }
}

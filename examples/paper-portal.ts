/**
 * The paper's §9 captive portal on MetaNet: an HTTP server made by a message, and one listener on
 * /captive/server/request that serves the portal's own pages and redirects every other Host to it.
 * Unlike the paper's Perl, the redirect escapes what the client sent (Host, path) and carries the
 * original URL percent-encoded in a `url` parameter. Logging in through the firewall is the
 * captive-portal app's job (src/apps), not this example's.
 *
 *   npx tsx examples/paper-portal.ts   PORT=8080 HOST=127.0.0.1 PORTAL_HOST=<host:port> (defaults)
 *   curl -i -H 'Host: example.org' http://127.0.0.1:8080/news
 */
import { pathToFileURL } from 'node:url';
import { Bus, type Message, type MessageInit, STOP, silentLogger } from '../src/core/index.js';
import { installHttpService } from '../src/services/http/index.js';

export interface PortalOptions {
  readonly port?: number;
  readonly host?: string;
  /** The portal's own Host (`name[:port]`); default `<host>:<port>`. */
  readonly portalHost?: string;
  readonly log?: (line: string) => void;
}

export interface Portal {
  readonly bus: Bus;
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

const ENTITY: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};
const SPECIAL = /[&<>"']/;
const SPECIALS = new RegExp(SPECIAL.source, 'g');
const esc = (s: string): string => (SPECIAL.test(s) ? s.replace(SPECIALS, (c) => ENTITY[c]!) : s);
const html = (title: string, head: string, body: string): string =>
  `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title>${head}</head><body>${body}</body></html>\n`;
const POLICY =
  '<h1>Welcome to the community network</h1><p>Usage policy: be kind to others on the network; no spam, ' +
  'no attacks, no illegal content. Traffic may be shaped so that everyone gets a fair share.</p>';

/**
 * The answer redirecting a browser that asked for `asked` (a URL of another site) to the portal
 * at `portal` (`host[:port]`): a 307 to `http://<portal>/?url=<asked>`, with a Refresh header and
 * a page for clients that follow neither.
 */
export function redirectTo(
  portal: string,
  asked: string,
): { code: number; headers: Record<string, string>; data: string } {
  const newurl = `http://${portal}/?url=${encodeURIComponent(asked)}`;
  const u = esc(newurl);
  return {
    code: 307,
    headers: {
      Location: newurl,
      Refresh: `1;URL=${newurl}`,
      'Content-Type': 'text/html; charset=utf-8',
    },
    data: html(
      'Moved!',
      `<meta http-equiv="Refresh" content="1;URL=${u}">`,
      `<p>${esc(asked)} needs you to accept the network's policy first: this page has been <a href="${u}">moved</a>.</p>`,
    ),
  };
}

export async function startPortal(opts: PortalOptions = {}): Promise<Portal> {
  const log = opts.log; // log?.(…) builds the line only when there is a log
  const bus = new Bus({ name: 'portal', logger: silentLogger });
  const http = installHttpService(bus);
  const host = opts.host ?? '127.0.0.1';
  const r = await bus.request('/system/http/server/new', {
    name: '/captive/server',
    port: opts.port ?? 8080,
    host,
  });
  if (r.has('error')) throw new Error(r.str('error'));
  const port = r.int('port');
  const portal = (opts.portalHost ?? `${host}:${port}`).toLowerCase();

  const respond = (client: string, init: { code: number } & MessageInit): void => {
    log?.(`<- ${client}/response code=${init.code}`);
    bus.post(`${client}/response`, init);
  };

  function servePage(client: string, m: Message): void {
    const form = m.str('method') === 'POST' ? Buffer.from(m.bytes('body')).toString() : m.str('query');
    const wanted = new URLSearchParams(form).get('url') ?? '';
    const back = /^https?:\/\//i.test(wanted)
      ? `<p><a href="${esc(wanted)}">Continue to ${esc(wanted)}</a></p>`
      : '';
    const page = (code: number, body: string): void =>
      respond(client, {
        code,
        headers: { 'Content-Type': 'text/html; charset=utf-8' },
        data: html('Portal', '', body),
      });
    const path = m.str('path');
    if (path === '/' && m.str('method') !== 'POST')
      page(
        200,
        `${POLICY}<form method="post" action="/accept"><input type="hidden" name="url" value="${esc(wanted)}">` +
          `<button>I accept</button></form>${wanted ? `<p>You asked for ${esc(wanted)}.</p>` : ''}`,
      );
    else if (path === '/accept') {
      page(200, `<h1>Thank you</h1>${back}`);
      bus.post(`${client}/close`); // as the paper; after a login, no connection may stay redirected
    } else page(404, `<h1>Not found</h1><p>${esc(path)}</p>`);
  }

  bus.append('/captive/server/request', function clientRequest(m) {
    const client = m.str('clientname');
    const Host = m.str('Host');
    if (Host.toLowerCase() === portal || Host === `${m.str('sockhost')}:${m.int('sockport')}`)
      servePage(client, m);
    else {
      const asked = `http://${Host}${m.str('path')}${m.str('query') ? `?${m.str('query')}` : ''}`;
      const answer = redirectTo(portal, asked);
      log?.(`redirecting browser to '${answer.headers.Location}'`);
      respond(client, answer);
    }
    return STOP;
  });

  return {
    bus,
    port,
    url: `http://${portal}/`,
    async close() {
      await http.close();
      await bus.close();
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const p = await startPortal({
    port: Number(process.env.PORT ?? 8080),
    host: process.env.HOST ?? '127.0.0.1',
    portalHost: process.env.PORTAL_HOST,
    log: (line) => console.log(line),
  });
  p.bus.prepend('/captive/server/request', (m) => {
    console.log(`-> /captive/server/request ${m.without('headers', 'body')}`);
  });
  console.log(`portal listening on http://${process.env.HOST ?? '127.0.0.1'}:${p.port}/`);
  const stop = (sig: string): void => {
    console.log(`${sig}: closing`);
    p.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

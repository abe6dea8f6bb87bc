/**
 * The portal's HTML. Everything that comes from a client (Host, path, the `url` parameter, a
 * refusal reason from an auth hook) goes through `esc`; the continue link and the redirect after
 * login go only to http(s) URLs (`safeUrl`).
 */

export const esc = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] ?? '&#39;');

/** The URL normalised when it is an absolute http(s) URL; otherwise undefined (no `javascript:`, no `//x`). */
export function safeUrl(s: string | null | undefined): string | undefined {
  if (!s || s.length > 4096) return undefined;
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : undefined;
  } catch {
    return undefined;
  }
}

const STYLE =
  'body{font-family:sans-serif;max-width:36em;margin:2em auto;padding:0 1em;line-height:1.4}' +
  'button{font-size:1.2em;padding:.4em 1.2em}.why{color:#a00}';

export function page(title: string, body: string): string {
  return (
    `<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">` +
    `<title>${esc(title)}</title><style>${STYLE}</style></head><body>${body}</body></html>\n`
  );
}

const paragraphs = (text: string): string =>
  text
    .split(/\n\s*\n/)
    .map((p) => `<p>${esc(p.trim())}</p>`)
    .join('');

export interface SplashOptions {
  readonly title: string;
  readonly policy: string;
  readonly token: string;
  /** The page the client asked for, already checked by `safeUrl`. */
  readonly url?: string;
  /** Why the last attempt was refused (from the auth hook). */
  readonly refused?: string;
}

/** The splash page: the policy and the "I accept" form with its CSRF token. */
export function splash(o: SplashOptions): string {
  const why = o.refused !== undefined ? `<p class="why" id="refused">Refused: ${esc(o.refused)}</p>` : '';
  const asked = o.url ? `<p>You asked for <a href="${esc(o.url)}">${esc(o.url)}</a>.</p>` : '';
  return page(
    o.title,
    `<h1>${esc(o.title)}</h1>${why}<h2>Usage policy</h2>${paragraphs(o.policy)}` +
      `<form method="post" action="/accept">` +
      `<input type="hidden" name="csrf" value="${esc(o.token)}">` +
      `<input type="hidden" name="url" value="${esc(o.url ?? '')}">` +
      `<button type="submit" id="accept">I accept</button></form>${asked}`,
  );
}

/** For a client already logged in. */
export function loggedIn(title: string, secondsLeft: number, url?: string): string {
  const go = url ? `<p><a id="continue" href="${esc(url)}">Continue to ${esc(url)}</a></p>` : '';
  return page(
    title,
    `<h1>You are online</h1><p>Your session ends in ${Math.ceil(secondsLeft / 60)} minutes.</p>${go}`,
  );
}

/** The body of the redirect to the portal (browsers follow Location; this is for the rest). */
export function moved(target: string, asked: string): string {
  return page(
    'Log in to the network',
    `<p>${esc(asked)} needs you to accept the network's usage policy first: ` +
      `<a href="${esc(target)}">continue to the portal</a>.</p>`,
  );
}

export function message(title: string, text: string): string {
  return page(title, `<h1>${esc(title)}</h1><p>${esc(text)}</p>`);
}

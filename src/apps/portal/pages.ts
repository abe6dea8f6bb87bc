import { formatBytes, formatDuration } from './i18n.js';
import { esc } from './template.js';
import type { Theme } from './theme.js';

/**
 * The portal's pages, made from the theme (theme.ts: templates, texts per language). Everything
 * that comes from a client (Host, path, the `url` parameter, a username) or from a hook (a refusal
 * reason, a message) is a template value, escaped by the template; the continue link and the
 * redirect after login go only to http(s) URLs (`safeUrl`).
 */

export { esc };

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

/** The body of the redirect to the portal (browsers follow Location; this is for the rest). Not themed. */
export function moved(target: string, asked: string): string {
  return (
    `<!doctype html><html><head><meta charset="utf-8"><title>Log in to the network</title></head><body>` +
    `<p>${esc(asked)} needs you to log in to the network first: ` +
    `<a href="${esc(target)}">continue to the portal</a>.</p></body></html>\n`
  );
}

/** What the pages take from the config. */
export interface PagesConfig {
  /** Site title in every language; default the theme's `site.title`. */
  readonly title?: string | undefined;
  /** Usage policy (plain text, blank lines between paragraphs); default the theme's `site.policy`. */
  readonly policy?: string | undefined;
  readonly login: 'click' | 'credentials';
}

/** Where the language links of a page go: `code` → href (the same page in that language). */
export type LanguageLinks = (code: string) => string;

export interface SplashPage {
  readonly token: string;
  /** The page the client asked for, already checked by `safeUrl`. */
  readonly url?: string | undefined;
  /** Why the last attempt was refused (from the auth hook). */
  readonly refused?: string | undefined;
  /** The username to fill in again after a refusal (credentials mode). */
  readonly username?: string | undefined;
  /** A line above the form (after a logout). */
  readonly notice?: string | undefined;
  /** What is wrong with the form (credentials mode: a field left empty). */
  readonly problem?: string | undefined;
}

export interface StatusPage {
  /** Whole seconds left (lifecycle.ts `remaining`). */
  readonly seconds: number;
  /** Bytes left under the tightest quota; undefined: no quota. */
  readonly bytes: number | undefined;
  /** The auth answer's `message`, if any. */
  readonly message?: string | undefined;
  readonly url?: string | undefined;
  /** CSRF token for the logout form. */
  readonly token: string;
}

export interface MessagePage {
  /** Message keys `error.<what>.heading` and `.text`; or ready texts. */
  readonly what?: string;
  readonly heading?: string;
  readonly text?: string;
  readonly params?: Readonly<Record<string, string>>;
  /** The "back to the start" link; default `/`. `false`: none. */
  readonly back?: string | false;
}

export class Pages {
  constructor(
    readonly theme: Theme,
    private readonly config: PagesConfig,
  ) {}

  /** The title in `lang`. */
  title(lang: string): string {
    return this.config.title ?? this.theme.text(lang, 'site.title');
  }

  private common(
    lang: string,
    page: string,
    links: LanguageLinks,
  ): Record<string, string | readonly Record<string, string | boolean>[]> {
    const t = this.theme;
    return {
      lang,
      page,
      title: this.title(lang),
      css: '/theme/style.css',
      logo: t.logo ? `/theme/${t.logo}` : '',
      languages:
        t.languages.length > 1
          ? t.languages.map((code) => ({
              code,
              name: t.text(code, 'language.name'),
              href: links(code),
              current: code === lang,
            }))
          : [],
    };
  }

  /** The login page: the usage policy and the form (`login` decides which). */
  splash(lang: string, o: SplashPage, links: LanguageLinks): string {
    const policy = (this.config.policy ?? this.theme.text(lang, 'site.policy'))
      .split(/\n\s*\n/)
      .map((p) => p.trim())
      .filter(Boolean);
    return this.theme.page('splash', lang, {
      ...this.common(lang, 'splash', links),
      policy,
      csrf: o.token,
      url: o.url ?? '',
      refused: o.refused,
      credentials: this.config.login === 'credentials',
      username: o.username ?? '',
      notice: o.notice,
      problem: o.problem,
    });
  }

  /** "You are online": time and data left, the hook's message, the logout button. */
  status(lang: string, o: StatusPage, links: LanguageLinks): string {
    const u = this.theme.units(lang);
    return this.theme.page('status', lang, {
      ...this.common(lang, 'status', links),
      heading: this.theme.text(lang, 'status.heading'),
      time: formatDuration(o.seconds, u),
      data: o.bytes === undefined ? '' : formatBytes(o.bytes, lang, u),
      message: o.message,
      url: o.url ?? '',
      csrf: o.token,
    });
  }

  /** GET /logout: the confirmation (logged in) or "you are not logged in". */
  logout(
    lang: string,
    o: { token?: string | undefined; seconds?: number | undefined },
    links: LanguageLinks,
  ): string {
    return this.theme.page('logout', lang, {
      ...this.common(lang, 'logout', links),
      heading: this.theme.text(lang, 'logout.heading'),
      online: o.token !== undefined,
      csrf: o.token ?? '',
      time: o.seconds === undefined ? '' : formatDuration(o.seconds, this.theme.units(lang)),
    });
  }

  /** A refusal or an error: heading, sentence, the way back. */
  message(lang: string, o: MessagePage, links: LanguageLinks): string {
    const t = this.theme;
    return t.page('message', lang, {
      ...this.common(lang, 'message', links),
      heading: o.heading ?? t.text(lang, `error.${o.what ?? 'internal'}.heading`, o.params),
      text: o.text ?? t.text(lang, `error.${o.what ?? 'internal'}.text`, o.params),
      back: o.back === false ? '' : (o.back ?? `/?lang=${lang}`),
    });
  }
}

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MetanetError } from '../../core/errors.js';
import { EN_UNITS, type Units } from './i18n.js';
import { type Html, parseTemplate, refsOf, render, type Scope, type Template } from './template.js';

/**
 * The portal's theme: page templates, a stylesheet, images and the texts of each language, read
 * once at start. The operator's `themeDir` is laid over the default theme shipped with the package
 * (`theme/default/` next to this module; `npm run build` copies it into dist): a file there
 * replaces the default's of the same name, and `messages/<lang>.json` adds to (and overrides) the
 * default's texts of that language, so an operator can change only the logo, only the colours, or
 * add a language. docs/apps/portal.md, "Themes".
 */

export const DEFAULT_THEME = fileURLToPath(new URL('./theme/default/', import.meta.url));

/** The pages a theme has; each is `<page>.html`, rendered inside `layout.html`. */
export const PAGES = ['splash', 'status', 'logout', 'message'] as const;
export type PageName = (typeof PAGES)[number];

/** Values every page and the layout get. */
const COMMON = ['lang', 'title', 'languages', 'css', 'logo', 'page'];
/** Values of each page (and of the layout). What a template may name; anything else is an error at load. */
const VALUES: Record<PageName | 'layout', readonly string[]> = {
  layout: ['content', 'heading'],
  splash: ['heading', 'policy', 'csrf', 'url', 'refused', 'problem', 'credentials', 'username', 'notice'],
  status: ['heading', 'time', 'data', 'message', 'url', 'csrf'],
  logout: ['heading', 'csrf', 'time', 'online'],
  message: ['heading', 'text', 'back'],
};
/** Lists and the fields of their items (`.`: the item itself). */
const LISTS: Record<string, readonly string[]> = {
  languages: ['code', 'name', 'href', 'current'],
  policy: ['.'],
};

/** Messages the code uses (error pages, units); with the template's own keys, each must have a text. */
export const CODE_KEYS = [
  'site.title',
  'site.policy',
  'language.name',
  'status.heading',
  'status.unlimited',
  'logout.heading',
  'logout.notOnline',
  'logout.done',
  'splash.missing',
  'splash.refusedDefault',
  'error.csrf.heading',
  'error.csrf.text',
  'error.mac.heading',
  'error.mac.text',
  'error.auth.heading',
  'error.auth.text',
  'error.firewall.heading',
  'error.firewall.text',
  'error.notfound.heading',
  'error.notfound.text',
  'error.internal.heading',
  'error.internal.text',
  ...Object.keys(EN_UNITS).map((u) => `unit.${u}`),
] as const;

const ASSET_TYPES: Record<string, string> = {
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  ico: 'image/x-icon',
  woff2: 'font/woff2',
  woff: 'font/woff',
};
const ASSET_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*\.([a-z0-9]+)$/;
/** Largest asset, and all assets together: they are held in memory. */
const ASSET_MAX = 1 << 20;
const ASSETS_MAX = 8 << 20;

export interface Asset {
  readonly type: string;
  readonly body: Buffer;
}

/** A loaded theme: pages rendered in a language, texts, and the static files served under `/theme/`. */
export interface Theme {
  /** Where it was read from: the operator's directory (if any) over the default. */
  readonly dirs: readonly string[];
  /** Lower-case language tags that have a messages file. */
  readonly languages: readonly string[];
  /** The language used when the guest's are not available (config `language`). */
  readonly fallback: string;
  /** The whole page `name` in `lang`: the page template rendered into `layout.html`. */
  page(name: PageName, lang: string, values: Scope): string;
  /** A message as plain text (not escaped), `{param}`s filled from `params`. */
  text(lang: string, key: string, params?: Readonly<Record<string, string | number>>): string;
  /** The language's unit words (`unit.*`). */
  units(lang: string): Units;
  /** A static file (`/theme/<name>`): style.css, the logo… */
  asset(name: string): Asset | undefined;
  /** The logo's file name (`logo.svg`, `logo.png`…), or undefined when the theme has none. */
  readonly logo: string | undefined;
}

/**
 * Read and check a theme: `dir` (the operator's, optional) over `base` (the default theme).
 * Everything is checked here, so a page can never fail to render later: every template parses;
 * names only values its page has; every `{{t key}}` and every message the code uses has a text in
 * the fallback language; no message names a `{param}` its page does not have; every messages file
 * is a JSON object of strings. Errors are ECONFIG naming the file (and line, key).
 */
export function loadTheme(opts: { dir?: string | undefined; language: string; base?: string }): Theme {
  const base = opts.base ?? DEFAULT_THEME;
  const dirs = opts.dir ? [opts.dir, base] : [base];
  const fail = (what: string): never => {
    throw new MetanetError('ECONFIG', `portal theme ${what}`);
  };
  for (const d of dirs) {
    let st: ReturnType<typeof statSync> | undefined;
    try {
      st = statSync(d);
    } catch (e) {
      fail(
        `${d}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (e as Error).message}`,
      );
    }
    if (!st!.isDirectory()) fail(`${d}: not a directory`);
  }
  /** The first of the dirs that has `name`. */
  const find = (name: string): string | undefined =>
    dirs.map((d) => join(d, name)).find((p) => existsSync(p));
  const read = (name: string): { path: string; text: string } => {
    const path = find(name) ?? fail(`${dirs.join(' over ')}: no ${name}`);
    try {
      return { path, text: readFileSync(path, 'utf8') };
    } catch (e) {
      return fail(`${path}: ${(e as Error).message}`);
    }
  };

  // Messages: per language, the default's texts, then the operator's over them.
  const messages = new Map<string, Map<string, string>>();
  for (const d of [...dirs].reverse()) {
    const md = join(d, 'messages');
    if (!existsSync(md)) continue;
    for (const f of readdirSync(md).sort()) {
      if (!f.endsWith('.json')) continue;
      const lang = f.slice(0, -5).toLowerCase();
      const path = join(md, f);
      if (!/^[a-z]{2,3}(-[a-z0-9]{2,8})*$/.test(lang))
        fail(`${path}: the file name must be a language tag (en.json, fr.json, pt-br.json)`);
      let doc: unknown;
      try {
        doc = JSON.parse(readFileSync(path, 'utf8'));
      } catch (e) {
        fail(`${path}: not JSON: ${(e as Error).message}`);
      }
      if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
        fail(`${path}: expected a JSON object of "key": "text"`);
      const m = messages.get(lang) ?? new Map<string, string>();
      for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
        if (typeof v !== 'string')
          fail(`${path}: "${k}" is ${v === null ? 'null' : typeof v}, expected a string`);
        m.set(k, v as string);
      }
      messages.set(lang, m);
    }
  }
  const fallback = opts.language.toLowerCase();
  const fb = messages.get(fallback);
  if (!fb)
    fail(
      `${dirs.join(' over ')}: no messages/${fallback}.json for the fallback language "${fallback}" (config language); have: ${[...messages.keys()].join(', ') || 'none'}`,
    );
  const langFile = (lang: string): string => `messages/${lang}.json`;
  // The last resort: English (the default theme has every text in it).
  const en = messages.get('en');
  const has = (key: string): boolean => fb!.has(key) || en?.has(key) === true;
  const where = fallback === 'en' || !en ? langFile(fallback) : `${langFile(fallback)} nor messages/en.json`;
  for (const key of CODE_KEYS) if (!has(key)) fail(`${where}: no text for "${key}" (the portal uses it)`);

  /** A language's text for key: its own, else the fallback language's, else English (checked: always there for used keys). */
  const msg = (lang: string, key: string): string =>
    messages.get(lang)?.get(key) ?? fb!.get(key) ?? en?.get(key) ?? key;

  // Templates: parsed, and what they name checked against what their page has.
  const templates = new Map<PageName | 'layout', Template>();
  for (const name of ['layout', ...PAGES] as const) {
    const { path, text } = read(`${name}.html`);
    let t: Template;
    try {
      t = parseTemplate(text, path);
    } catch (e) {
      return fail((e as Error).message);
    }
    const allowed = new Set([...COMMON, ...VALUES[name]]);
    const refs = refsOf(t);
    const known = (n: string, list: string | undefined): boolean => {
      const top = n.split('.')[0]!;
      if (list !== undefined && (LISTS[list] ?? []).includes(n === '.' ? '.' : top)) return true;
      return n !== '.' && allowed.has(top);
    };
    for (const r of refs.names)
      if (!known(r.name, r.list))
        fail(
          `${path}:${r.line}: {{${r.name}}} is not a value of ${name}.html (it has: ${[...allowed].join(', ')}${r.list ? `; in ${r.list}: ${(LISTS[r.list] ?? []).join(', ')}` : ''})`,
        );
    for (const k of refs.keys) {
      if (!has(k.key)) fail(`${path}:${k.line}: {{t ${k.key}}} has no text in ${where}`);
      for (const [lang, m] of messages) {
        const text = m.get(k.key);
        if (text === undefined) continue;
        for (const p of text.matchAll(/\{([A-Za-z_][\w-]*)\}/g))
          if (!known(p[1]!, k.list))
            fail(
              `${langFile(lang)}: "${k.key}" names {${p[1]}}, which ${name}.html (line ${k.line}) does not have`,
            );
      }
    }
    templates.set(name, t);
  }

  // Static files: every asset-typed file at the top of either directory, the operator's first.
  const assets = new Map<string, Asset>();
  let total = 0;
  for (const d of dirs)
    for (const f of readdirSync(d)) {
      const ext = ASSET_RE.exec(f)?.[1];
      if (!ext || !ASSET_TYPES[ext] || assets.has(f)) continue;
      const path = join(d, f);
      const st = statSync(path);
      if (!st.isFile()) continue;
      if (st.size > ASSET_MAX)
        fail(`${path}: ${st.size} bytes, over the ${ASSET_MAX}-byte limit of a theme file`);
      total += st.size;
      if (total > ASSETS_MAX) fail(`${d}: the theme's files are over ${ASSETS_MAX} bytes together`);
      assets.set(f, { type: ASSET_TYPES[ext]!, body: readFileSync(path) });
    }
  if (!assets.has('style.css')) fail(`${dirs.join(' over ')}: no style.css`);
  const logo = ['logo.svg', 'logo.png', 'logo.webp', 'logo.jpg'].find((f) => assets.has(f));

  const units = new Map<string, Units>();
  const languages = [...messages.keys()].sort();
  return {
    dirs,
    languages,
    fallback,
    logo,
    page(name, lang, values) {
      const m = (key: string): string => msg(lang, key);
      const content: Html = render(templates.get(name)!, values, m);
      return render(templates.get('layout')!, { ...values, content }, m).html;
    },
    text(lang, key, params = {}) {
      return msg(lang, key).replace(/\{([A-Za-z_][\w-]*)\}/g, (all, p: string) =>
        Object.hasOwn(params, p) ? String(params[p]) : all,
      );
    },
    units(lang) {
      let u = units.get(lang);
      if (!u) {
        u = Object.fromEntries(
          Object.keys(EN_UNITS).map((k) => [k, msg(lang, `unit.${k}`)]),
        ) as unknown as Units;
        units.set(lang, u);
      }
      return u;
    },
    asset: (name) => assets.get(name),
  };
}

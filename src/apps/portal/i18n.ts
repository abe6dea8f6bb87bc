/**
 * Languages for the portal's pages: `Accept-Language` (RFC 9110 §12.5.4) parsed with its q-values
 * and matched against the theme's languages (RFC 4647 lookup, plus a bare range matching a
 * regional tag), and the figures of the status page (time and data left) written for a language.
 */

/** One language range of an `Accept-Language` header: lower-cased tag (`*` allowed) and its weight. */
export interface LanguageRange {
  readonly tag: string;
  readonly q: number;
}

const RANGE = /^(\*|[a-z]{1,8}(-[a-z0-9]{1,8})*)$/;

/**
 * `Accept-Language` → its ranges, highest q first (ties keep the header's order). Malformed
 * entries are skipped, ranges with q=0 ("not this one") dropped; at most 32 ranges are read.
 */
export function parseAcceptLanguage(header: string | undefined): LanguageRange[] {
  if (!header) return [];
  const out: { tag: string; q: number; i: number }[] = [];
  for (const [i, part] of header.split(',').slice(0, 32).entries()) {
    const [rawTag = '', ...params] = part.split(';');
    const tag = rawTag.trim().toLowerCase();
    if (!RANGE.test(tag)) continue;
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*(0(\.\d{0,3})?|1(\.0{0,3})?)\s*$/i.exec(p);
      if (m) q = Number(m[1]);
      else if (/^\s*q\s*=/i.test(p)) q = Number.NaN; // a broken weight: skip the range
    }
    if (Number.isNaN(q) || q <= 0) continue;
    out.push({ tag, q, i });
  }
  return out.sort((a, b) => b.q - a.q || a.i - b.i).map(({ tag, q }) => ({ tag, q }));
}

/**
 * The language to answer in: for each range, best first, an available tag equal to it, then one
 * it is a prefix of (`fr` → `fr-ca`), then the range cut down (`fr-ch` → `fr`); `*` and no match
 * give `fallback`. `available` are lower-case tags.
 */
export function negotiate(
  header: string | undefined,
  available: readonly string[],
  fallback: string,
): string {
  for (const { tag } of parseAcceptLanguage(header)) {
    if (tag === '*') return fallback;
    if (available.includes(tag)) return tag;
    const regional = available.find((a) => a.startsWith(`${tag}-`));
    if (regional) return regional;
    for (let t = tag; t.includes('-'); ) {
      t = t.slice(0, t.lastIndexOf('-'));
      if (available.includes(t)) return t;
    }
  }
  return fallback;
}

/** Unit words of a language (its messages `unit.*`). */
export interface Units {
  readonly day: string;
  readonly hour: string;
  readonly minute: string;
  readonly second: string;
  readonly B: string;
  readonly kB: string;
  readonly MB: string;
  readonly GB: string;
  readonly TB: string;
}

export const EN_UNITS: Units = {
  day: 'd',
  hour: 'h',
  minute: 'min',
  second: 's',
  B: 'B',
  kB: 'kB',
  MB: 'MB',
  GB: 'GB',
  TB: 'TB',
};

/**
 * Seconds left as a person reads them, two units at most: `2 d 3 h`, `1 h 05 min`, `12 min`,
 * `45 s` (rounded down: never promise more than is left).
 */
export function formatDuration(seconds: number, u: Units = EN_UNITS): string {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return h > 0 ? `${d} ${u.day} ${h} ${u.hour}` : `${d} ${u.day}`;
  if (h > 0) return `${h} ${u.hour} ${String(m).padStart(2, '0')} ${u.minute}`;
  if (m > 0) return `${m} ${u.minute}`;
  return `${s} ${u.second}`;
}

/**
 * Bytes in decimal units (what operators sell: 1 GB = 10⁹ bytes) with the language's number format:
 * `820 MB`, `1.5 GB` (`1,5 Go` in French), at most one decimal, rounded down.
 */
export function formatBytes(bytes: number, lang = 'en', u: Units = EN_UNITS): string {
  const b = Math.max(0, Math.floor(bytes));
  const steps: [number, string][] = [
    [1e12, u.TB],
    [1e9, u.GB],
    [1e6, u.MB],
    [1e3, u.kB],
  ];
  const nf = numberFormat(lang);
  for (const [size, unit] of steps)
    if (b >= size) return `${nf.format(Math.floor((b / size) * 10) / 10)} ${unit}`;
  return `${nf.format(b)} ${u.B}`;
}

const formats = new Map<string, Intl.NumberFormat>();
function numberFormat(lang: string): Intl.NumberFormat {
  let f = formats.get(lang);
  if (!f) {
    let locale = 'en';
    try {
      locale = Intl.NumberFormat.supportedLocalesOf([lang])[0] ?? 'en';
    } catch {
      // not a tag Intl knows: English digits
    }
    f = new Intl.NumberFormat(locale, { maximumFractionDigits: 1 });
    formats.set(lang, f);
  }
  return f;
}

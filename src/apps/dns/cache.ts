import type { Answer } from 'dns-packet';

/**
 * The forwarder's answer cache: bounded (LRU: a hit makes an entry the newest; the oldest goes
 * when full), honouring TTLs, with a clock that tests inject. Pure: no timers, no I/O. Expired
 * entries are dropped when met (and by LRU order), so the cache never holds more than `maxEntries`.
 *
 * What is cached (docs/apps/dns.md, "Cache"):
 * - NOERROR with answers: for the smallest TTL among the answer records, capped at `maxTtl`.
 * - NXDOMAIN, and NOERROR without answers (NODATA): per RFC 2308 §5, for the smaller of the SOA
 *   record's TTL and its MINIMUM field, capped at `maxNegativeTtl` (and at the answers' TTLs when
 *   a CNAME led there). Without an SOA in the authority section it is not cached (RFC 2308 §5).
 * - Nothing else (SERVFAIL, REFUSED, …), and nothing whose TTL works out at 0.
 *
 * Served records carry their TTL minus the entry's age in whole seconds (never below 0).
 */

export const NOERROR = 0;
export const NXDOMAIN = 3;

/** An answer as the cache keeps and serves it (OPT records are never part of it). */
export interface CachedAnswer {
  readonly rcode: number;
  readonly answers: readonly Answer[];
  readonly authorities: readonly Answer[];
  readonly additionals: readonly Answer[];
}

export interface CacheHit extends CachedAnswer {
  /** Seconds since it was stored. */
  readonly age: number;
}

export interface CacheOptions {
  /** 0: cache nothing. */
  readonly maxEntries: number;
  /** Seconds. */
  readonly maxTtl: number;
  /** Seconds. */
  readonly maxNegativeTtl: number;
  /** Milliseconds, like Date.now (the default). */
  readonly now?: () => number;
}

interface Entry {
  readonly answer: CachedAnswer;
  readonly stored: number;
  readonly expires: number;
  /** Lowercase name, for flush(name). */
  readonly name: string;
}

/** The cache key of a question: lowercase name without the trailing dot, type, class. */
export function cacheKey(name: string, type: string, klass: string): string {
  return `${normalName(name)} ${type} ${klass}`;
}

export function normalName(name: string): string {
  const n = name.toLowerCase();
  return n.length > 1 && n.endsWith('.') ? n.slice(0, -1) : n;
}

export class DnsCache {
  private readonly map = new Map<string, Entry>();
  private readonly now: () => number;

  constructor(private readonly opts: CacheOptions) {
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.map.size;
  }

  /**
   * How long (seconds) an answer may be cached, and its records as stored (TTLs capped);
   * undefined: not cacheable.
   */
  policy(a: CachedAnswer): { ttl: number; answer: CachedAnswer } | undefined {
    const ttlOf = (r: Answer): number => ('ttl' in r && typeof r.ttl === 'number' ? r.ttl : 0);
    const minAnswers = a.answers.length ? Math.min(...a.answers.map(ttlOf)) : Number.POSITIVE_INFINITY;
    let ttl: number;
    let cap: number;
    const negative = a.rcode === NXDOMAIN || (a.rcode === NOERROR && a.answers.length === 0);
    if (negative) {
      const soa = a.authorities.find((r) => r.type === 'SOA');
      if (soa?.type !== 'SOA') return undefined;
      const minimum = typeof soa.data.minimum === 'number' ? soa.data.minimum : 0;
      cap = this.opts.maxNegativeTtl;
      ttl = Math.min(ttlOf(soa), minimum, cap, minAnswers);
    } else if (a.rcode === NOERROR) {
      cap = this.opts.maxTtl;
      ttl = Math.min(minAnswers, cap);
    } else return undefined;
    if (!(ttl > 0)) return undefined;
    const clamp = (r: Answer): Answer => {
      if (r.type === 'OPT') return r;
      const t = ttlOf(r);
      // The SOA of a negative answer says how long the negation holds (RFC 2308 §5).
      const limit = negative && r.type === 'SOA' ? ttl : cap;
      return t > limit ? { ...r, ttl: limit } : r;
    };
    return {
      ttl,
      answer: {
        rcode: a.rcode,
        answers: a.answers.map(clamp),
        authorities: a.authorities.map(clamp),
        additionals: a.additionals.filter((r) => r.type !== 'OPT').map(clamp),
      },
    };
  }

  /** Store an answer under `key` (see policy); returns whether it was stored. */
  put(key: string, name: string, a: CachedAnswer): boolean {
    if (this.opts.maxEntries <= 0) return false;
    const p = this.policy(a);
    if (!p) return false;
    const stored = this.now();
    this.map.delete(key);
    this.map.set(key, { answer: p.answer, stored, expires: stored + p.ttl * 1000, name: normalName(name) });
    while (this.map.size > this.opts.maxEntries) {
      const oldest = this.map.keys().next().value;
      if (oldest === undefined) break;
      this.map.delete(oldest);
    }
    return true;
  }

  /** The live answer under `key` with TTLs decremented by its age; a hit becomes the newest entry. */
  get(key: string): CacheHit | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    const now = this.now();
    if (now >= e.expires) {
      this.map.delete(key);
      return undefined;
    }
    this.map.delete(key);
    this.map.set(key, e);
    const age = Math.max(0, Math.floor((now - e.stored) / 1000));
    const aged = (r: Answer): Answer =>
      'ttl' in r && typeof r.ttl === 'number' ? { ...r, ttl: Math.max(0, r.ttl - age) } : r;
    const a = e.answer;
    return {
      rcode: a.rcode,
      answers: a.answers.map(aged),
      authorities: a.authorities.map(aged),
      additionals: a.additionals.map(aged),
      age,
    };
  }

  /** Drop every entry, or those for one name (any type and class); returns how many. */
  flush(name?: string): number {
    if (name === undefined) {
      const n = this.map.size;
      this.map.clear();
      return n;
    }
    const want = normalName(name);
    let n = 0;
    for (const [k, e] of this.map)
      if (e.name === want) {
        this.map.delete(k);
        n++;
      }
    return n;
  }
}

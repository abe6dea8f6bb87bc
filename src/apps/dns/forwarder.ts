import type { Answer } from 'dns-packet';
import type { Bus } from '../../core/bus.js';
import { isMetanetError, MetanetError } from '../../core/errors.js';
import { type ListenerHandle, STOP } from '../../core/listener.js';
import type { Logger } from '../../core/log.js';
import { type Message, typed } from '../../core/message.js';
import { attachTable, validate } from '../../services/table.js';
import { cacheKey, DnsCache, NOERROR, NXDOMAIN } from './cache.js';
import type { DnsConfig } from './config.js';
import {
  encodeAnswer,
  isRcodeName,
  type Outcome,
  type Parsed,
  parseQuery,
  type Query,
  RCODES,
  rcodeName,
} from './packets.js';
import { checkName, HOOK_TTL, recordsOf } from './records.js';
import { ANSWER, DNS_BASE, dnsTable, ERROR, QUERY, QUERY_REPLY, STOCK_IDENTITY } from './table.js';
import type { Resolver } from './upstream.js';

/**
 * The query path without sockets: bytes from a client in, bytes to send back (or nothing) out.
 * Every query is a message to /dns/query (unless only the stock listener is there: then the
 * daemon goes straight to its cache and upstream, as dhcpd does for its pool); the first reply
 * decides. server.ts puts UDP and TCP sockets around it; tests call `handle` directly.
 */

const QUERY_PATH = DNS_BASE + QUERY.suffix;
const ANSWER_PATH = DNS_BASE + ANSWER.suffix;
const ERROR_PATH = DNS_BASE + ERROR.suffix;
/** Rewrites of one query, one after another, before the client gets SERVFAIL (a loop). */
export const MAX_REWRITES = 8;

export interface Client {
  readonly address: string;
  readonly port: number;
  readonly proto: 'udp' | 'tcp';
}

export type Source = 'cache' | 'upstream' | 'hook';

interface Resolution extends Outcome {
  readonly source: Source;
  readonly rewrite?: string;
}

export interface DnsCounters {
  queries: number;
  hits: number;
  misses: number;
  upstreamFailures: number;
  servfail: number;
  malformed: number;
  hooked: number;
  hookAnswers: number;
  dropped: number;
}

export type ForwarderConfig = Pick<
  DnsConfig,
  'cacheSize' | 'maxTtl' | 'maxNegativeTtl' | 'hookTimeoutMs' | 'maxInflight'
>;

export interface ForwarderOptions {
  readonly log: Logger;
  readonly resolver: Resolver & { readonly counters?: { readonly sent: number } };
  /** The cache's clock (ms); default Date.now. */
  readonly now?: () => number;
}

const EMPTY: readonly Answer[] = [];

/** The A and AAAA records of an answer as /dns/answer's `address` lists; undefined when none. */
function addressesOf(answers: readonly Answer[]): { ip: string; ttl: number }[] | undefined {
  let out: { ip: string; ttl: number }[] | undefined;
  for (const a of answers)
    if ((a.type === 'A' || a.type === 'AAAA') && typeof a.data === 'string')
      (out ??= []).push({ ip: a.data, ttl: a.ttl ?? 0 });
  return out;
}

function outcome(rcode: number, source: Source, answers: readonly Answer[] = EMPTY): Resolution {
  return { rcode, answers, authorities: EMPTY, additionals: EMPTY, source };
}

export class Forwarder {
  readonly counters: DnsCounters = {
    queries: 0,
    hits: 0,
    misses: 0,
    upstreamFailures: 0,
    servfail: 0,
    malformed: 0,
    hooked: 0,
    hookAnswers: 0,
    dropped: 0,
  };
  readonly cache: DnsCache;
  private inflight = 0;
  /** Upstream resolutions in flight, by cache key: identical questions share one. */
  private readonly pending = new Map<string, Promise<Resolution>>();
  private stock: ListenerHandle | undefined;
  private detachTable: (() => void) | undefined;
  private readonly log: Logger;
  private readonly resolver: ForwarderOptions['resolver'];

  constructor(
    readonly bus: Bus,
    readonly config: ForwarderConfig,
    opts: ForwarderOptions,
  ) {
    this.log = opts.log;
    this.resolver = opts.resolver;
    this.cache = new DnsCache({
      maxEntries: config.cacheSize,
      maxTtl: config.maxTtl,
      maxNegativeTtl: config.maxNegativeTtl,
      now: opts.now,
    });
  }

  /** Create the mailboxes, append the stock /dns/query listener, serve /dns/stats and /dns/flush. */
  attach(): void {
    for (const spec of dnsTable)
      if (!this.bus.has(DNS_BASE + spec.suffix))
        this.bus.create(DNS_BASE + spec.suffix, { tuples: { doc: spec.doc, dir: spec.dir } });
    this.stock = this.bus.listen(
      QUERY_PATH,
      function forward(_m, ctx) {
        if (ctx.replyTo !== undefined) void ctx.reply({ forward: true }).catch(() => {});
        return STOP;
      },
      { identity: STOCK_IDENTITY, position: 'append' },
    );
    this.detachTable = attachTable(this.bus, DNS_BASE, dnsTable, {
      '/stats': (_m, ctx) => {
        void ctx.reply(this.stats()).catch(() => {});
        return STOP;
      },
      '/flush': (m, ctx) => {
        const flushed = this.cache.flush(m.has('name') ? m.str('name') : undefined);
        if (ctx.replyTo !== undefined) void ctx.reply({ flushed }).catch(() => {});
        return STOP;
      },
    });
  }

  detach(): void {
    this.stock?.remove();
    this.detachTable?.();
  }

  stats(): Record<string, number> {
    const c = this.counters;
    return {
      queries: c.queries,
      hits: c.hits,
      misses: c.misses,
      upstream: this.resolver.counters?.sent ?? 0,
      'upstream-failures': c.upstreamFailures,
      servfail: c.servfail,
      malformed: c.malformed,
      hooked: c.hooked,
      'hook-answers': c.hookAnswers,
      dropped: c.dropped,
      cached: this.cache.size,
      inflight: this.inflight,
    };
  }

  /**
   * One datagram or TCP frame from a client: the bytes to send back, or undefined (dropped).
   * Never throws: whatever goes wrong is counted and logged, the client gets SERVFAIL or nothing.
   */
  async handle(buf: Buffer, client: Client): Promise<Buffer | undefined> {
    const t0 = performance.now();
    let parsed: Parsed;
    try {
      parsed = parseQuery(buf);
    } catch (e) {
      parsed = { kind: 'bad', why: String(e), reply: undefined };
    }
    if (parsed.kind === 'bad') {
      this.counters.malformed++;
      this.log.log('debug', 'dns: bad query', { client: client.address, why: parsed.why, bytes: buf.length });
      return parsed.reply;
    }
    const q = parsed.query;
    if (this.inflight >= this.config.maxInflight) {
      this.counters.dropped++;
      return undefined;
    }
    this.counters.queries++;
    this.inflight++;
    let r: Resolution;
    try {
      r = await this.decide(q, client, q.name, undefined, 0);
    } catch (e) {
      this.log.log('warn', 'dns: query failed', { name: q.name, type: q.type, error: e });
      r = outcome(RCODES.SERVFAIL, 'upstream');
    } finally {
      this.inflight--;
    }
    let out: Buffer;
    try {
      out = encodeAnswer(q, r, client.proto === 'udp');
    } catch (e) {
      // Only a hook's records can fail to encode (upstream ones came from the codec).
      this.report(`cannot encode the answer for ${q.name} ${q.type}: ${(e as Error).message}`, 'EFAIL');
      r = outcome(RCODES.SERVFAIL, r.source);
      try {
        out = encodeAnswer(q, r, client.proto === 'udp');
      } catch {
        return undefined;
      }
    }
    if (r.rcode === RCODES.SERVFAIL) this.counters.servfail++;
    this.announce(q, client, r, t0);
    return out;
  }

  /** Ask the chain about `name` (the query's, or a rewrite's target), then act on the first reply. */
  private async decide(
    q: Query,
    client: Client,
    name: string,
    rewriteOf: string | undefined,
    depth: number,
  ): Promise<Resolution> {
    if (this.onlyStock()) return this.lookup(name, q.type, q.klass);
    this.counters.hooked++;
    let reply: Message;
    try {
      reply = await this.bus.request(
        QUERY_PATH,
        {
          name,
          type: q.type,
          class: q.klass,
          client: client.address,
          port: client.port,
          proto: client.proto,
          id: q.id,
          'rewrite-of': rewriteOf,
        },
        { timeout: this.config.hookTimeoutMs },
      );
    } catch (e) {
      if (isMetanetError(e, 'ENOLISTENER')) {
        // The stock listener was removed and no hook is left: nobody allows the query.
        this.counters.hookAnswers++;
        return outcome(RCODES.REFUSED, 'hook');
      }
      this.log.log('warn', 'dns: /dns/query gave no decision in time', { name, error: e });
      return outcome(RCODES.SERVFAIL, 'hook');
    }
    try {
      validate({ ...QUERY, suffix: '/query reply', tuples: QUERY_REPLY }, `${QUERY_PATH} reply`, reply);
      // A rewrite to the name itself changes nothing: it is a plain "forward".
      const target = reply.has('rewrite') ? checkName(reply.str('rewrite')) : name;
      if (target !== name) {
        this.counters.hookAnswers++;
        if (depth >= MAX_REWRITES)
          throw new MetanetError('EFAIL', `more than ${MAX_REWRITES} rewrites from ${rewriteOf ?? name}`);
        const ttl = reply.int('ttl', HOOK_TTL);
        const cname: Answer = { name, type: 'CNAME', ttl: Math.max(0, ttl), data: target };
        if (q.type === 'CNAME') return { ...outcome(NOERROR, 'hook', [cname]), rewrite: target };
        const r = await this.decide(q, client, target, rewriteOf ?? name, depth + 1);
        if (r.rcode !== NOERROR && r.rcode !== NXDOMAIN) return { ...r, rewrite: target };
        return { ...r, answers: [cname, ...r.answers], rewrite: target };
      }
      if (reply.has('answer') || reply.has('rcode')) {
        this.counters.hookAnswers++;
        const rc = reply.str('rcode', 'NOERROR').toUpperCase();
        if (!isRcodeName(rc))
          throw new MetanetError(
            'EBADTUPLE',
            `rcode ${JSON.stringify(rc)} is not one of ${Object.keys(RCODES).join(', ')}`,
          );
        const answers = recordsOf(reply, name, q.type).filter(
          (a) => a.type === q.type || a.type === 'CNAME' || q.type === 'ANY',
        );
        return outcome(RCODES[rc], 'hook', answers);
      }
    } catch (e) {
      this.report(
        `${name} ${q.type}: unusable reply {${reply}}: ${(e as Error).message}`,
        isMetanetError(e) ? e.code : 'EBADTUPLE',
      );
      return outcome(RCODES.SERVFAIL, 'hook');
    }
    return this.lookup(name, q.type, q.klass);
  }

  /** The chain is the stock listener alone (no hook, local or remote, and nobody waiting). */
  private onlyStock(): boolean {
    const chain = this.bus.mailbox(QUERY_PATH)?.listeners;
    return chain !== undefined && chain.length === 1 && chain[0]!.id === this.stock?.id;
  }

  /** The cache, else upstream (identical questions in flight share one upstream resolution). */
  private lookup(name: string, type: string, klass: string): Promise<Resolution> {
    const key = cacheKey(name, type, klass);
    const hit = this.cache.get(key);
    if (hit) {
      this.counters.hits++;
      return Promise.resolve({ ...hit, source: 'cache' });
    }
    this.counters.misses++;
    let p = this.pending.get(key);
    if (!p) {
      p = this.fetch(key, name, type, klass);
      this.pending.set(key, p);
      const done = (): void => {
        this.pending.delete(key);
      };
      p.then(done, done);
    }
    return p;
  }

  private async fetch(key: string, name: string, type: string, klass: string): Promise<Resolution> {
    try {
      const { response } = await this.resolver.resolve(name, type, klass);
      this.cache.put(key, name, response);
      // Serve what the cache would (TTLs capped), so the first answer and later ones agree.
      const served = this.cache.policy(response)?.answer ?? response;
      return { ...served, source: 'upstream' };
    } catch (e) {
      this.counters.upstreamFailures++;
      this.log.log('warn', 'dns: upstream failed', { name, type, error: e });
      return outcome(RCODES.SERVFAIL, 'upstream');
    }
  }

  private announce(q: Query, client: Client, r: Resolution, t0: number): void {
    if (!this.bus.mailbox(ANSWER_PATH)?.listeners.length) return;
    this.bus.post(ANSWER_PATH, {
      name: q.name,
      type: q.type,
      client: client.address,
      proto: client.proto,
      rcode: rcodeName(r.rcode),
      answers: r.answers.length,
      source: r.source,
      ms: typed.float(Math.round((performance.now() - t0) * 1000) / 1000),
      rewrite: r.rewrite,
      address: addressesOf(r.answers),
    });
  }

  private report(error: string, code: string): void {
    this.log.log('warn', `dns: ${error}`);
    this.bus.post(ERROR_PATH, { mailbox: QUERY_PATH, error, code });
  }
}

import dnsPacket, { type DecodedPacket } from 'dns-packet';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/apps/app.js';
import { dnsApp } from '../../../src/apps/dns/app.js';
import { cacheKey, DnsCache } from '../../../src/apps/dns/cache.js';
import { nameservers, parseServer, upstreamServers } from '../../../src/apps/dns/config.js';
import { type Client, Forwarder, MAX_REWRITES } from '../../../src/apps/dns/forwarder.js';
import { encodeAnswer, parseQuery } from '../../../src/apps/dns/packets.js';
import { STOCK_IDENTITY } from '../../../src/apps/dns/table.js';
import { Bus } from '../../../src/core/bus.js';
import { STOP } from '../../../src/core/listener.js';
import { silentLogger } from '../../../src/core/log.js';
import type { Message } from '../../../src/core/message.js';
import { a, answer, FakeUpstream, query, soa, ZONE } from './fake.js';

describe('cache', () => {
  let now = 1_000_000;
  const clock = (): number => now;
  const cache = (maxEntries = 10, maxTtl = 86400, maxNegativeTtl = 3600): DnsCache =>
    new DnsCache({ maxEntries, maxTtl, maxNegativeTtl, now: clock });

  it('keeps an answer for its smallest TTL, serving TTLs decremented by age', () => {
    const c = cache();
    const k = cacheKey('www.example.test', 'A', 'IN');
    expect(
      c.put(
        k,
        'www.example.test',
        answer(0, [a('www.example.test', '10.0.0.1', 300), a('www.example.test', '10.0.0.2', 120)]),
      ),
    ).toBe(true);
    expect(c.get(k)!.answers.map((r) => (r as { ttl: number }).ttl)).toEqual([300, 120]);
    now += 45_999;
    const hit = c.get(k)!;
    expect(hit.age).toBe(45);
    expect(hit.answers.map((r) => (r as { ttl: number }).ttl)).toEqual([255, 75]);
    now += 74_000; // 119.999 s
    expect(c.get(k)!.answers.map((r) => (r as { ttl: number }).ttl)).toEqual([181, 1]);
    now += 1; // 120 s: gone
    expect(c.get(k)).toBeUndefined();
    expect(c.size).toBe(0);
  });

  it('caps TTLs at maxTtl; does not cache TTL 0, SERVFAIL or REFUSED', () => {
    const c = cache(10, 60);
    const k = cacheKey('x.test', 'A', 'IN');
    c.put(k, 'x.test', answer(0, [a('x.test', '10.0.0.1', 86400)]));
    expect((c.get(k)!.answers[0] as { ttl: number }).ttl).toBe(60);
    now += 60_000;
    expect(c.get(k)).toBeUndefined();
    expect(c.put(k, 'x.test', answer(0, [a('x.test', '10.0.0.1', 0)]))).toBe(false);
    expect(c.put(k, 'x.test', answer(2, []))).toBe(false);
    expect(c.put(k, 'x.test', answer(5, [], [soa(300, 300)]))).toBe(false);
  });

  it('caches NXDOMAIN and NODATA per RFC 2308 (min of SOA TTL and MINIMUM, capped); not without an SOA', () => {
    const c = cache(10, 86400, 600);
    const k = cacheKey('nope.example.test', 'A', 'IN');
    expect(c.put(k, 'nope.example.test', answer(3, []))).toBe(false);
    expect(c.put(k, 'nope.example.test', answer(3, [], [soa(3600, 120)]))).toBe(true);
    now += 20_000;
    const hit = c.get(k)!;
    expect(hit.rcode).toBe(3);
    expect((hit.authorities[0] as { ttl: number }).ttl).toBe(100);
    now += 100_000;
    expect(c.get(k)).toBeUndefined();
    const nodata = cacheKey('www.example.test', 'AAAA', 'IN');
    c.put(nodata, 'www.example.test', answer(0, [], [soa(30, 7200)]));
    expect((c.get(nodata)!.authorities[0] as { ttl: number }).ttl).toBe(30);
    c.put(nodata, 'www.example.test', answer(0, [], [soa(86400, 86400)]));
    expect((c.get(nodata)!.authorities[0] as { ttl: number }).ttl).toBe(600); // maxNegativeTtl
  });

  it('is an LRU: a hit makes an entry the newest; the oldest goes when full', () => {
    const c = cache(3);
    const put = (n: string): boolean => c.put(cacheKey(n, 'A', 'IN'), n, answer(0, [a(n, '10.0.0.1', 300)]));
    put('a.test');
    put('b.test');
    put('c.test');
    expect(c.get(cacheKey('a.test', 'A', 'IN'))).toBeDefined(); // a is now the newest
    put('d.test'); // evicts b
    expect(c.size).toBe(3);
    expect(c.get(cacheKey('b.test', 'A', 'IN'))).toBeUndefined();
    for (const n of ['a.test', 'c.test', 'd.test']) expect(c.get(cacheKey(n, 'A', 'IN'))).toBeDefined();
    put('e.test'); // a was read before c and d: a goes
    expect(c.get(cacheKey('a.test', 'A', 'IN'))).toBeUndefined();
    expect(
      cache(0).put(cacheKey('a.test', 'A', 'IN'), 'a.test', answer(0, [a('a.test', '10.0.0.1', 300)])),
    ).toBe(false);
  });

  it('never holds more than maxEntries, whatever the operations (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.array(fc.tuple(fc.constantFrom('put', 'get', 'tick'), fc.integer({ min: 0, max: 20 })), {
          maxLength: 200,
        }),
        (max, ops) => {
          const c = cache(max);
          for (const [op, n] of ops) {
            const k = cacheKey(`h${n}.test`, 'A', 'IN');
            if (op === 'put') c.put(k, `h${n}.test`, answer(0, [a(`h${n}.test`, '10.0.0.1', 1 + n)]));
            else if (op === 'get') {
              const hit = c.get(k);
              if (hit) expect((hit.answers[0] as { ttl: number }).ttl).toBeGreaterThan(0);
            } else now += n * 300;
            expect(c.size).toBeLessThanOrEqual(max);
          }
        },
      ),
    );
  });

  it('flushes one name (every type) or everything; keys ignore case and the trailing dot', () => {
    const c = cache();
    c.put(
      cacheKey('WWW.Example.test.', 'A', 'IN'),
      'WWW.Example.test.',
      answer(0, [a('www.example.test', '10.0.0.1', 300)]),
    );
    c.put(
      cacheKey('www.example.test', 'TXT', 'IN'),
      'www.example.test',
      answer(0, [{ name: 'www.example.test', type: 'TXT', ttl: 300, data: 'x' }]),
    );
    c.put(cacheKey('other.test', 'A', 'IN'), 'other.test', answer(0, [a('other.test', '10.0.0.1', 300)]));
    expect(c.get(cacheKey('www.example.test', 'A', 'IN'))).toBeDefined();
    expect(c.flush('www.EXAMPLE.test')).toBe(2);
    expect(c.flush()).toBe(1);
  });
});

const rcodeOf = (b: Buffer): number => b.readUInt16BE(2) & 0xf;

describe('packets', () => {
  it('drops what is not a query and answers FORMERR/NOTIMP/REFUSED with a bare header', () => {
    expect(parseQuery(Buffer.alloc(5))).toMatchObject({ kind: 'bad', reply: undefined });
    const response = query('x.test');
    response.writeUInt16BE(response.readUInt16BE(2) | 0x8000, 2);
    expect(parseQuery(response)).toMatchObject({ kind: 'bad', reply: undefined });
    const notify = query('x.test');
    notify.writeUInt16BE((4 << 11) | 0x100, 2);
    const r1 = parseQuery(notify);
    expect(r1.kind === 'bad' && r1.reply && rcodeOf(r1.reply)).toBe(4);
    const two = query('x.test');
    two.writeUInt16BE(2, 4);
    const r2 = parseQuery(two);
    expect(r2.kind === 'bad' && r2.reply && rcodeOf(r2.reply)).toBe(1);
    const cut = query('x.test').subarray(0, 15);
    const r3 = parseQuery(cut);
    expect(r3.kind === 'bad' && r3.reply && r3.reply.length).toBe(12);
    const r4 = parseQuery(query('example.test', 'AXFR'));
    expect(r4.kind === 'bad' && r4.reply && rcodeOf(r4.reply)).toBe(5);
  });

  it('reads a query: lowercase name, type, class, EDNS size, RD kept', () => {
    const p = parseQuery(query('WWW.Example.Test', 'AAAA', { id: 7, edns: 4096 }));
    expect(p.kind).toBe('query');
    if (p.kind !== 'query') return;
    expect(p.query).toMatchObject({
      id: 7,
      name: 'www.example.test',
      type: 'AAAA',
      klass: 'IN',
      edns: 4096,
      flags: 0x100,
    });
    expect(p.query.question.name).toBe('WWW.Example.Test');
  });

  it('truncates a UDP answer that does not fit (TC, question only); TCP gets it whole', () => {
    const p = parseQuery(query('big.test', 'A'));
    if (p.kind !== 'query') throw new Error('not a query');
    const many = Array.from({ length: 40 }, (_, i) => a('big.test', `10.0.0.${i + 1}`, 60));
    const o = { rcode: 0, answers: many, authorities: [], additionals: [] };
    const udp = encodeAnswer(p.query, o, true);
    expect(udp.length).toBeLessThanOrEqual(512);
    const d = dnsPacket.decode(udp);
    expect(d.flag_tc).toBe(true);
    expect(d.answers).toEqual([]);
    expect(d.questions?.[0]?.name).toBe('big.test');
    const tcp = dnsPacket.decode(encodeAnswer(p.query, o, false));
    expect(tcp.flag_tc).toBe(false);
    expect(tcp.answers).toHaveLength(40);
    // with EDNS 1232 the same answer fits UDP
    const e = parseQuery(query('big.test', 'A', { edns: 1232 }));
    if (e.kind !== 'query') throw new Error('not a query');
    expect(dnsPacket.decode(encodeAnswer(e.query, o, true)).answers).toHaveLength(40);
  });
});

describe('config', () => {
  it('parses a standalone config with defaults; names every bad field by path', () => {
    const c = dnsApp.parse({ listen: ['10.77.0.1'], upstream: ['10.77.1.2', '10.77.1.3:5353'] });
    expect(c).toMatchObject({ port: 53, cacheSize: 10000, timeoutMs: 2000, maxTtl: 86400 });
    let err: unknown;
    try {
      dnsApp.parse({ listen: ['nope'], upstream: ['10.0.0.1:99999'], cacheSize: -1, colour: 'red' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const paths = (err as ConfigError).problems.map((p) => p.path).sort();
    expect(paths).toEqual(['', 'cacheSize', 'listen[0]', 'upstream[0]']);
    expect(() => dnsApp.parse({ listen: [] })).toThrow(/listen/);
  });

  it('builds the config from the gateway: every served address, upstreamDns, the section', () => {
    const section = dnsApp.section.parse({ cacheSize: 50, timeoutMs: 900 });
    expect(() => dnsApp.section.parse({ listen: ['10.0.0.1'] })).toThrow();
    const net = (name: string, role: 'lan' | 'guest' | 'wan', address?: string) => ({
      name,
      role,
      device: name,
      address,
      prefix: address ? 24 : undefined,
      subnet: undefined,
      captive: role === 'guest',
    });
    const served = [net('lan', 'lan', '10.20.0.1'), net('guest', 'guest', '10.30.0.1')];
    const c = dnsApp.parse(
      dnsApp.fromGateway(
        {
          networks: [...served, net('wan', 'wan')],
          served,
          captive: [served[1]!],
          upstreamDns: ['192.0.2.53'],
          stateDir: '/tmp',
          commandPrefix: [],
          enabled: new Set(['dns']),
          portal: undefined,
        },
        section,
      ),
    );
    expect(c).toMatchObject({
      listen: ['10.20.0.1', '10.30.0.1'],
      upstream: ['192.0.2.53'],
      cacheSize: 50,
      timeoutMs: 900,
    });
  });

  it('reads servers and resolv.conf; never forwards to itself', () => {
    expect(parseServer('10.0.0.1')).toEqual({ address: '10.0.0.1', port: 53 });
    expect(parseServer('[fd00::1]:5353')).toEqual({ address: 'fd00::1', port: 5353 });
    expect(parseServer('fd00::1')).toEqual({ address: 'fd00::1', port: 53 });
    expect(parseServer('10.0.0.1:0')).toBeUndefined();
    expect(parseServer('host.example')).toBeUndefined();
    expect(
      nameservers('# x\nnameserver 192.0.2.1\nnameserver fe80::1%eth0\nsearch lan\nnameserver bogus\n'),
    ).toEqual(['192.0.2.1', '[fe80::1]']);
    expect(
      upstreamServers({ listen: ['10.0.0.1'], port: 53, upstream: ['10.0.0.1', '10.0.0.1:5353'] }),
    ).toEqual([{ address: '10.0.0.1', port: 5353 }]);
    expect(() => upstreamServers({ listen: ['10.0.0.1'], port: 53, upstream: ['10.0.0.1'] })).toThrow(
      ConfigError,
    );
    expect(() =>
      upstreamServers({ listen: ['10.0.0.1'], port: 53, upstream: undefined }, '/nonexistent'),
    ).toThrow(/no upstream/);
  });
});

const CLIENT: Client = { address: '10.77.0.10', port: 40000, proto: 'udp' };
const CONFIG = { cacheSize: 100, maxTtl: 86400, maxNegativeTtl: 3600, hookTimeoutMs: 300, maxInflight: 100 };

describe('forwarder (the query path, in process)', () => {
  let bus: Bus;
  let up: FakeUpstream;
  let fwd: Forwarder;
  let now: number;
  beforeEach(() => {
    bus = new Bus({ name: 'dns', logger: silentLogger });
    up = new FakeUpstream(ZONE);
    now = 5_000_000;
    fwd = new Forwarder(bus, CONFIG, { log: silentLogger, resolver: up, now: () => now });
    fwd.attach();
  });
  afterEach(async () => {
    fwd.detach();
    await bus.close();
  });

  const ask = async (name: string, type = 'A', id = 1): Promise<DecodedPacket> => {
    const out = await fwd.handle(query(name, type, { id }), CLIENT);
    if (!out) throw new Error('no answer');
    return dnsPacket.decode(out);
  };
  const rcode = (p: DecodedPacket): number => (p.flags ?? 0) & 0xf;
  const ttls = (p: DecodedPacket): number[] => (p.answers ?? []).map((r) => (r as { ttl: number }).ttl);

  it('answers from upstream, then from the cache with TTLs decremented; the fast path asks no chain', async () => {
    const answers: Message[] = [];
    bus.listen('/dns/answer', (m) => {
      answers.push(m);
    });
    const first = await ask('www.example.test', 'A', 77);
    expect(first.id).toBe(77);
    expect(first.answers).toMatchObject([
      { name: 'www.example.test', type: 'A', data: '10.77.1.80', ttl: 300 },
    ]);
    now += 10_000;
    const second = await ask('WWW.EXAMPLE.TEST');
    expect(second.questions?.[0]?.name).toBe('WWW.EXAMPLE.TEST');
    expect(ttls(second)).toEqual([290]);
    expect(up.calls).toEqual(['www.example.test A']);
    await bus.settled();
    expect(answers.map((m) => m.str('source'))).toEqual(['upstream', 'cache']);
    expect(answers[0]!.toObject()).toMatchObject({
      name: 'www.example.test',
      type: 'A',
      client: '10.77.0.10',
      proto: 'udp',
      rcode: 'NOERROR',
      answers: 1,
    });
    expect(fwd.counters).toMatchObject({ queries: 2, hits: 1, misses: 1, hooked: 0 });
    const nx = await ask('nope.example.test');
    expect(rcode(nx)).toBe(3);
    expect(nx.authorities?.[0]?.type).toBe('SOA');
  });

  it('shares one upstream resolution between identical questions in flight', async () => {
    up.delayMs = 30;
    const all = await Promise.all([
      ask('www.example.test'),
      ask('www.example.test'),
      ask('www.example.test', 'AAAA'),
    ]);
    expect(all.map(rcode)).toEqual([0, 0, 0]);
    expect(up.calls).toEqual(['www.example.test A', 'www.example.test AAAA']);
  });

  it('a prepended hook answers (STOP), refuses, or stays silent (the stock listener forwards)', async () => {
    const seen: string[] = [];
    bus.prepend(
      '/dns/query',
      async (m, ctx) => {
        seen.push(`${m.str('name')} ${m.str('type')} ${m.str('client')} ${m.str('proto')} ${m.int('id')}`);
        if (m.str('name') === 'ads.example.test') {
          await ctx.reply({ rcode: 'NXDOMAIN' });
          return STOP;
        }
        if (m.str('name') === 'router.lan') {
          await ctx.reply({
            answer: [
              { type: 'A', ttl: 30, data: '10.77.0.1' },
              { type: 'AAAA', data: 'fd00::1' },
            ],
          });
          return STOP;
        }
        if (m.str('name') === 'closed.example.test') {
          await ctx.reply({ rcode: 'refused' });
          return STOP;
        }
      },
      { app: 'test-hook' },
    );
    expect(rcode(await ask('ads.example.test'))).toBe(3);
    const r = await ask('router.lan', 'A', 9);
    expect(r.answers).toMatchObject([{ name: 'router.lan', type: 'A', ttl: 30, data: '10.77.0.1' }]);
    const six = await ask('router.lan', 'AAAA');
    expect(six.answers).toMatchObject([{ type: 'AAAA', ttl: 60, data: 'fd00::1' }]);
    expect(rcode(await ask('closed.example.test'))).toBe(5);
    expect((await ask('www.example.test')).answers).toHaveLength(1);
    // the hook sees every query, cached or not
    expect((await ask('www.example.test')).answers).toHaveLength(1);
    expect(seen).toHaveLength(6);
    expect(seen[1]).toBe('router.lan A 10.77.0.10 udp 9');
    expect(fwd.counters).toMatchObject({ hooked: 6, hookAnswers: 4, hits: 1 });
  });

  it('a rewrite (reply + CONTINUE) resolves the target through the chain again and answers with a CNAME', async () => {
    const seen: string[] = [];
    bus.prepend('/dns/query', async (m, ctx) => {
      seen.push(`${m.str('name')}${m.has('rewrite-of') ? ` (rewrite of ${m.str('rewrite-of')})` : ''}`);
      if (m.str('name') === 'search.example.test')
        await ctx.reply({ rewrite: 'safe.example.test', ttl: 120 });
      if (m.str('name') === 'self.example.test') await ctx.reply({ rewrite: 'SELF.example.test.' });
      if (m.str('name').startsWith('loop'))
        await ctx.reply({ rewrite: m.str('name') === 'loop1.test' ? 'loop2.test' : 'loop1.test' });
    });
    const r = await ask('search.example.test');
    expect(rcode(r)).toBe(0);
    expect(r.answers).toMatchObject([
      { name: 'search.example.test', type: 'CNAME', ttl: 120, data: 'safe.example.test' },
      { name: 'safe.example.test', type: 'A', data: '10.77.1.99' },
    ]);
    expect(seen).toEqual(['search.example.test', 'safe.example.test (rewrite of search.example.test)']);
    expect(up.calls).toEqual(['safe.example.test A']);
    const c = await ask('search.example.test', 'CNAME');
    expect(c.answers).toMatchObject([{ type: 'CNAME', data: 'safe.example.test' }]);
    // a rewrite to the same name is a plain forward (NXDOMAIN from upstream here)
    expect(rcode(await ask('self.example.test'))).toBe(3);
    // a loop ends in SERVFAIL after MAX_REWRITES
    seen.length = 0;
    expect(rcode(await ask('loop1.test'))).toBe(2);
    expect(seen).toHaveLength(MAX_REWRITES + 1);
  });

  it('a bad hook reply, a hook that never answers, or no listener at all: SERVFAIL / REFUSED, reported', async () => {
    const errors: Message[] = [];
    bus.listen('/dns/error', (m) => {
      errors.push(m);
    });
    const h = bus.prepend('/dns/query', async (m, ctx) => {
      if (m.str('name') === 'bad.test') await ctx.reply({ answer: [{ type: 'A', data: 'not-an-ip' }] });
      if (m.str('name') === 'badrcode.test') await ctx.reply({ rcode: 'MAYBE' });
      if (m.str('name') === 'slow.test') {
        await new Promise((r) => setTimeout(r, 1000));
        return STOP;
      }
      return STOP; // stops without replying: nobody answers
    });
    expect(rcode(await ask('bad.test'))).toBe(2);
    expect(rcode(await ask('badrcode.test'))).toBe(2);
    const t0 = Date.now();
    expect(rcode(await ask('slow.test'))).toBe(2);
    expect(Date.now() - t0).toBeLessThan(900);
    await bus.settled();
    expect(errors.map((m) => m.str('error')).join('\n')).toMatch(/not-an-ip[\s\S]*MAYBE/);
    h.remove();
    bus.unlisten('/dns/query', STOCK_IDENTITY);
    expect(rcode(await ask('www.example.test'))).toBe(5); // nobody allows it
    expect(fwd.counters.servfail).toBe(3);
  });

  it('upstream down: SERVFAIL, counted; /dns/stats and /dns/flush answer as messages', async () => {
    up.fail = true;
    expect(rcode(await ask('www.example.test'))).toBe(2);
    up.fail = false;
    await ask('www.example.test');
    await ask('safe.example.test');
    const s = await bus.request('/dns/stats', {});
    expect(s.toObject()).toMatchObject({
      queries: 3,
      servfail: 1,
      'upstream-failures': 1,
      cached: 2,
      upstream: 3,
    });
    expect((await bus.request('/dns/flush', { name: 'www.example.test' })).int('flushed')).toBe(1);
    expect((await bus.request('/dns/flush', {})).int('flushed')).toBe(1);
    const bad = await bus.request('/dns/flush', { name: 5 });
    expect(bad.str('code')).toBe('EBADTUPLE');
  });

  it('never throws on random bytes or mutated queries, and counts every one (fast-check)', async () => {
    const seeds = [
      query('www.example.test', 'A', { edns: 1232 }),
      query('nope.example.test', 'AAAA'),
      query('x.test', 'TXT', { edns: 4096 }),
      query('router.lan', 'MX'),
    ];
    // half the runs with a hook attached, so the chain path is fuzzed too
    let hook: { remove(): void } | undefined;
    let inputs = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 600 }),
          fc
            .tuple(
              fc.constantFrom(...seeds),
              fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 12 }),
              fc.nat(),
            )
            .map(([seed, edits, cut]) => {
              const b = Buffer.from(seed);
              for (const [pos, v] of edits) b[pos % b.length] = v;
              return cut % 4 === 0 ? b.subarray(0, cut % (b.length + 1)) : b;
            }),
        ),
        fc.boolean(),
        async (bytes, hooked) => {
          hook?.remove();
          hook = hooked ? bus.prepend('/dns/query', () => {}) : undefined;
          const before = fwd.counters.malformed + fwd.counters.queries + fwd.counters.dropped;
          inputs++;
          const out = await fwd.handle(Buffer.from(bytes), CLIENT);
          expect(fwd.counters.malformed + fwd.counters.queries + fwd.counters.dropped).toBe(before + 1);
          if (out) expect(() => dnsPacket.decode(out)).not.toThrow();
        },
      ),
      { numRuns: 400 },
    );
    hook?.remove();
    expect(fwd.counters.malformed + fwd.counters.queries).toBe(inputs);
    expect(fwd.counters.malformed).toBeGreaterThan(50);
    // and it still answers
    expect((await ask('www.example.test')).answers).toHaveLength(1);
  });
});

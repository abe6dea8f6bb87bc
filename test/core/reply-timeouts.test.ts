import { describe, expect, it } from 'vitest';
import { Bus, isMetanetError, silentLogger } from '../../src/core/index.js';
import { Deadlines, type Due, type DueLane } from '../../src/core/timers.js';

class Entry implements Due {
  dueAt = 0;
  duePrev: Due | undefined = undefined;
  dueNext: Due | undefined = undefined;
  dueLane: DueLane | undefined = undefined;
  expiredAt: number | undefined = undefined;
  constructor(private readonly onExpire: (e: Entry) => void = () => {}) {}
  expire(): void {
    this.expiredAt = performance.now();
    this.onExpire(this);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const timeouts = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('Deadlines: many timeouts on one timer', () => {
  it('expires each entry once, not before its delay, in deadline order across delays', async () => {
    const d = new Deadlines();
    const order: number[] = [];
    const start = performance.now();
    const entries = [40, 10, 25, 10, 0].map((ms, i) => {
      const e = new Entry(() => order.push(i));
      d.add(e, ms);
      return { e, ms };
    });
    expect(d.size).toBe(5);
    await sleep(80);
    expect(order).toEqual([4, 1, 3, 2, 0]);
    for (const { e, ms } of entries) expect(e.expiredAt! - start).toBeGreaterThanOrEqual(ms - 1);
    expect(d.size).toBe(0);
  });

  it('a removed entry never expires; removing is idempotent; the others still do', async () => {
    const d = new Deadlines();
    const a = new Entry();
    const b = new Entry();
    const c = new Entry();
    d.add(a, 10);
    d.add(b, 10);
    d.add(c, 10);
    d.remove(b);
    d.remove(b);
    await sleep(40);
    expect(a.expiredAt).toBeDefined();
    expect(b.expiredAt).toBeUndefined();
    expect(c.expiredAt).toBeDefined();
  });

  it('a shorter delay added later is not held back by the timer set for a longer one', async () => {
    const d = new Deadlines();
    const long = new Entry();
    const short = new Entry();
    d.add(long, 1000);
    d.add(short, 10);
    await sleep(60);
    expect(short.expiredAt).toBeDefined();
    expect(long.expiredAt).toBeUndefined();
    d.remove(long);
  });

  it('holds the process open only while an entry waits', async () => {
    const before = timeouts();
    const d = new Deadlines();
    const a = new Entry();
    d.add(a, 60000);
    expect(timeouts()).toBe(before + 1);
    d.remove(a);
    expect(timeouts()).toBe(before);
    d.add(a, 60000);
    expect(timeouts()).toBe(before + 1);
    d.remove(a);
    expect(timeouts()).toBe(before);
  });
});

describe('request timeouts share one timer', () => {
  it('many pending requests add no timer each; each still times out with ETIMEDOUT', async () => {
    const b = new Bus({ logger: silentLogger });
    b.listen('/mute', () => {});
    const before = timeouts();
    const asks = Array.from({ length: 50 }, () => b.request('/mute', {}, { timeout: 20 }).catch((e) => e));
    expect(timeouts()).toBeLessThanOrEqual(before + 1);
    const errors = await Promise.all(asks);
    for (const e of errors) expect(isMetanetError(e, 'ETIMEDOUT')).toBe(true);
    expect((errors[0] as Error).message).toMatch(/no reply from \/mute within 20 ms/);
    await b.close();
  });

  it('the reply route: a waiter on the reply path sees the reply, a second reply is undelivered, /system/reply is taken', async () => {
    const b = new Bus({ logger: silentLogger });
    const undelivered: string[] = [];
    b.listen('/system/undelivered', (m) => {
      undelivered.push(m.str('mailbox'));
    });
    let replyTo = '';
    b.listen('/calc', async (m, ctx) => {
      replyTo = ctx.replyTo ?? '';
      await sleep(5);
      await ctx.reply({ n: m.int('n') * 2 });
      const second = await ctx.reply({ n: 0 });
      expect(second.delivered).toBe(false);
    });
    const asked = b.request('/calc', { n: 4 }, { timeout: 1000 });
    await new Promise((r) => setImmediate(r));
    const seen = b.wait(replyTo, { timeout: 1000 });
    expect((await asked).int('n')).toBe(8);
    expect((await seen).int('n')).toBe(8);
    await sleep(10);
    expect(undelivered).toContain(replyTo);
    expect(() => b.route('/system', () => true)).toThrow(/overlaps route \/system\/reply/);
    await b.close();
  });

  it('the request waits at its reply path (no mailbox there) until it is answered', async () => {
    const b = new Bus({ logger: silentLogger });
    let replyPath = '';
    let existed = false;
    b.listen('/calc', async (m, ctx) => {
      replyPath = ctx.replyTo ?? '';
      await sleep(5);
      existed = b.awaitsReply(replyPath) && !b.has(replyPath);
      await ctx.reply({ n: m.int('n') * 2 });
    });
    const r = await b.request('/calc', { n: 4 }, { timeout: 1000 });
    expect(r.int('n')).toBe(8);
    expect(replyPath).toMatch(/^\/system\/reply\/\d+$/);
    expect(existed).toBe(true);
    expect(b.awaitsReply(replyPath)).toBe(false);
    expect(b.has(replyPath)).toBe(false);
    await b.close();
  });

  it('an answered request leaves no timer holding the process', async () => {
    const before = timeouts();
    const b = new Bus({ logger: silentLogger });
    b.listen('/echo', (m, ctx) => void ctx.reply(m));
    for (let i = 0; i < 100; i++) await b.request('/echo', { i }, { timeout: 60000 });
    expect(timeouts()).toBeLessThanOrEqual(before);
    await b.close();
  });

  it('close() fails waiting requests with ECLOSED and leaves no timer', async () => {
    const before = timeouts();
    const b = new Bus({ logger: silentLogger });
    b.listen('/mute', () => {});
    const p = b.request('/mute', {}, { timeout: 60000 }).catch((e) => e);
    await sleep(1);
    await b.close();
    expect(isMetanetError(await p, 'ECLOSED')).toBe(true);
    expect(timeouts()).toBeLessThanOrEqual(before);
  });
});

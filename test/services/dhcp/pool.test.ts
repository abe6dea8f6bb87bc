import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Rig, rig, tmp } from './helpers.js';

describe('address pool', () => {
  let t: ReturnType<typeof tmp>;
  let r: Rig;
  beforeEach(async () => {
    t = tmp();
    r = await rig(join(t.dir, 'leases.jsonl'));
  });
  afterEach(async () => {
    await r.close();
    t.cleanup();
  });
  const lan = (): Rig['config']['subnets'][number] => r.config.subnets[0]!;

  it('prefers the requested address when it is free and in a range; else the first free one', () => {
    expect(r.pool.propose('m1', lan(), '10.77.0.105')).toBe('10.77.0.105');
    expect(r.pool.propose('m1', lan(), '10.77.0.5')).toBe('10.77.0.100'); // outside the ranges
    expect(r.pool.propose('m1', lan(), '10.77.0.50')).toBe('10.77.0.100'); // a static host's
  });

  it('prefers the client’s held offer, then its previous address', async () => {
    r.pool.hold('10.77.0.103', 'm1', 30);
    expect(r.pool.propose('m1', lan(), '10.77.0.105')).toBe('10.77.0.103');
    expect(r.pool.propose('m2', lan())).not.toBe('10.77.0.103');
    r.pool.dropOffer('m1');
    await r.store.commit({ mac: 'm1', ip: '10.77.0.107', expires: r.clock.t + 1000 });
    expect(r.pool.propose('m1', lan())).toBe('10.77.0.107');
    r.clock.t += 5000;
    await r.store.expire();
    expect(r.pool.propose('m1', lan())).toBe('10.77.0.107'); // expired but nobody else has it
  });

  it('skips leased, offered, declined, static, server and router addresses', async () => {
    await r.store.commit({ mac: 'm1', ip: '10.77.0.100', expires: r.clock.t + 60000 });
    r.pool.hold('10.77.0.101', 'm2', 30);
    await r.store.decline('10.77.0.102', r.clock.t + 60000);
    expect(r.pool.propose('m3', lan())).toBe('10.77.0.103');
    const s = lan();
    expect(r.pool.refusal('10.77.0.1', 'm3', s)).toMatch(/server's or the router's/);
    expect(r.pool.refusal('10.77.0.255', 'm3', s)).toMatch(/broadcast/);
    expect(r.pool.refusal('10.88.0.10', 'm3', s)).toMatch(/outside/);
    expect(r.pool.refusal('10.77.0.100', 'm3', s)).toMatch(/leased to m1/);
    expect(r.pool.refusal('10.77.0.101', 'm3', s)).toMatch(/offered to m2/);
    expect(r.pool.refusal('10.77.0.102', 'm3', s)).toMatch(/declined/);
    expect(r.pool.refusal('10.77.0.100', 'm1', s)).toBeUndefined();
    r.clock.t += 31_000;
    r.pool.sweep();
    expect(r.pool.refusal('10.77.0.101', 'm3', s)).toBeUndefined();
  });

  it('when every address has been used, reuses the one free the longest', async () => {
    for (let i = 0; i < 10; i++)
      await r.store.commit({
        mac: `m${i}`,
        ip: `10.77.0.${100 + i}`,
        expires: r.clock.t + 1000 + (9 - i) * 1000,
      });
    expect(r.pool.propose('new', lan())).toBeUndefined();
    r.clock.t += 20_000;
    await r.store.expire();
    expect(r.pool.propose('new', lan())).toBe('10.77.0.109');
  });

  it('a static host gets its address only in its own subnet', () => {
    expect(r.pool.propose('02:00:00:00:00:aa', lan())).toBe('10.77.0.50');
    expect(r.pool.propose('02:00:00:00:00:aa', r.config.subnets[1]!)).toBe('10.88.0.10');
  });

  it('keeps one offer per client and per address when an address is re-held for another client', () => {
    r.pool.hold('10.77.0.103', 'm1', 30);
    r.pool.hold('10.77.0.103', 'm2', 30); // m1's hold lapsed into m2's (e.g. the lookup chose it)
    expect(r.pool.offeredTo('m1')).toBeUndefined();
    expect(r.pool.offeredTo('m2')).toBe('10.77.0.103');
    r.pool.dropOffer('m1'); // must not drop m2's
    expect(r.pool.offeredTo('m2')).toBe('10.77.0.103');
    r.pool.hold('10.77.0.104', 'm2', 30); // a client holds one offer: 103 is free again
    expect(r.pool.refusal('10.77.0.103', 'm3', lan())).toBeUndefined();
    r.clock.t += 31_000;
    r.pool.sweep();
    expect(r.pool.offeredTo('m2')).toBeUndefined();
  });

  it('stays fast with many offers outstanding (clients that never REQUEST)', () => {
    const s = r.config.subnets[0]!;
    for (let i = 0; i < 20_000; i++) r.pool.hold(`10.77.${(i >> 8) & 255}.${i & 255}`, `x${i}`, 30);
    const t0 = performance.now();
    for (let i = 0; i < 20_000; i++) {
      r.pool.offeredTo(`x${i}`);
      r.pool.dropOffer(`x${i}`);
    }
    r.pool.propose('m9', s);
    expect(performance.now() - t0).toBeLessThan(1000); // a scan per call took minutes
  });
});

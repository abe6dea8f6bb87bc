import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Bus, type Message, silentLogger } from '../../../src/core/index.js';
import { installTimerService, type TimerService } from '../../../src/services/timer/index.js';

let bus: Bus;
let service: TimerService;
beforeEach(() => {
  bus = new Bus({ name: 'test', logger: silentLogger });
  service = installTimerService(bus);
});
afterEach(async () => {
  await service.close();
  await bus.close();
});

/** Collect every message sent to a mailbox. */
function collect(path: string): Message[] {
  const got: Message[] = [];
  bus.append(path, (m) => {
    got.push(m);
  });
  return got;
}

describe('timer service', () => {
  it('fires a one-shot timer once, with the given tuples, and then forgets it', async () => {
    const fires = collect('/t/once/fire');
    const t0 = Date.now();
    const fired = bus.wait('/t/once/fire', { timeout: 2000 });
    const r = await bus.request('/system/timer/new', {
      name: '/t/once',
      ms: 30,
      tuples: { who: 'me', n: 7 },
    });
    expect(r.str('name')).toBe('/t/once');
    const fire = await fired;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(25);
    expect(fire.int('count')).toBe(1);
    expect(fire.str('who')).toBe('me');
    expect(fire.int('n')).toBe(7);
    await bus.settled();
    // its cancel mailbox is gone: a one-shot timer that fired no longer exists
    await expect(bus.request('/t/once/cancel', {})).rejects.toMatchObject({ code: 'ENOLISTENER' });
    expect(fires).toHaveLength(1);
    // the name is free again
    expect((await bus.request('/system/timer/new', { name: '/t/once', ms: 1 })).str('name')).toBe('/t/once');
  });

  it('fires a periodic timer with increasing counts until cancelled', async () => {
    const fires = collect('/t/tick/fire');
    const third = bus.wait('/t/tick/fire', { match: { count: 3 }, timeout: 2000 });
    await bus.request('/system/timer/new', { name: '/t/tick', ms: 10, periodic: true });
    await third;
    const r = await bus.request('/t/tick/cancel', {});
    const n = r.int('count');
    expect(n).toBeGreaterThanOrEqual(3);
    await new Promise((res) => setTimeout(res, 40)); // several intervals: none may fire now
    await bus.settled();
    expect(fires.map((m) => m.int('count'))).toEqual(Array.from({ length: n }, (_, i) => i + 1));
  });

  it('cancels a one-shot timer before it fires', async () => {
    const fires = collect('/t/never/fire');
    await bus.request('/system/timer/new', { name: '/t/never', ms: 30 });
    await bus.request('/t/never/cancel', {});
    await expect(bus.wait('/t/never/fire', { timeout: 80 })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    expect(fires).toHaveLength(0);
  });

  it('answers bad input with a clear error tuple and keeps serving', async () => {
    const errors = collect('/system/timer/error');
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ name: '/t/bad', ms: -1 }, /"ms" must be >= 0/],
      [{ name: '/t/bad', ms: 0, periodic: true }, /"ms" must be > 0/],
      [{ name: '/t/bad', ms: 2 ** 31 }, /<= 2147483647/],
      [{ name: 'no-slash', ms: 5 }, /bad mailbox path "no-slash"/],
    ];
    for (const [init, re] of cases) {
      const r = await bus.request('/system/timer/new', init as never);
      expect(r.str('error')).toMatch(re);
      expect(r.str('code')).toMatch(/^EBAD/);
    }
    expect(errors.map((e) => e.str('code'))).toEqual(['EBADTUPLE', 'EBADTUPLE', 'EBADTUPLE', 'EBADPATH']);
    // validated by the table: missing or mistyped tuples
    expect((await bus.request('/system/timer/new', { name: '/t/x' })).str('error')).toMatch(
      /missing tuple "ms"/,
    );
    expect((await bus.request('/system/timer/new', { name: '/t/x', ms: '5' })).str('error')).toMatch(
      /"ms" is str, expected int\|float/,
    );
    // a duplicate name
    await bus.request('/system/timer/new', { name: '/t/dup', ms: 1000 });
    const dup = await bus.request('/system/timer/new', { name: '/t/dup', ms: 5 });
    expect(dup.str('code')).toBe('EEXIST');
    // still serving
    const ok = bus.wait('/t/ok/fire', { timeout: 2000 });
    await bus.request('/system/timer/new', { name: '/t/ok', ms: 1 });
    expect((await ok).int('count')).toBe(1);
  });

  it('close() cancels every timer and detaches its mailboxes', async () => {
    await bus.request('/system/timer/new', { name: '/t/a', ms: 5, periodic: true });
    await bus.request('/system/timer/new', { name: '/t/b', ms: 10000 });
    await service.close();
    await expect(bus.request('/system/timer/new', { name: '/t/c', ms: 1 })).rejects.toMatchObject({
      code: 'ENOLISTENER',
    });
    expect(bus.mailboxes().filter((b) => b.listeners.length > 0)).toEqual([]);
  });
});

describe('timer service under random input', () => {
  it('answers every creation message with {name} or {error, code}, and keeps serving', async () => {
    const value = fc.oneof(
      fc.integer({ min: -10, max: 3000 }),
      fc.double().filter((d) => !Number.isInteger(d) || Number.isSafeInteger(d)),
      fc.string(),
      fc.boolean(),
      fc.constant(null),
      fc.uint8Array({ maxLength: 4 }),
    );
    const init = fc.record(
      {
        name: fc.oneof(fc.constantFrom('/f/a', '/f/b', 'f', '/f//x', '/f/a/'), value),
        ms: value,
        periodic: value,
        tuples: fc.oneof(
          value,
          fc.dictionary(fc.string({ minLength: 1, maxLength: 5 }), fc.integer()).map((d) => ({ ...d })),
        ),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(init, async (m) => {
        const r = await bus.request('/system/timer/new', m as never);
        expect(r.has('name') !== r.has('error')).toBe(true);
        if (r.has('name')) await bus.request(`${r.str('name')}/cancel`, {}).catch(() => {});
      }),
      { numRuns: 200 },
    );
    const ok = bus.wait('/f/ok/fire', { timeout: 2000 });
    await bus.request('/system/timer/new', { name: '/f/ok', ms: 1 });
    expect((await ok).int('count')).toBe(1);
  });
});

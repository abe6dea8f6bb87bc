import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { ARCHIVES, History, historyBytes, type Sample } from '../../../src/apps/dashboard/history.js';

const dir = mkdtempSync(join(tmpdir(), 'mn-dash-history-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = (): string => join(dir, `h${n++}`);
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0); // on an hour boundary
const s = (online: number, up = 0, down = 0, logins = 0, guests: Sample['guests'] = []): Sample => ({
  online,
  up,
  down,
  logins,
  guests,
});
const last = (a: number[]): number => a[a.length - 1]!;

describe('history: a fixed-size round-robin store', () => {
  it('consolidates: 10 s slots as sampled, 1 min sums bytes and averages guests online', () => {
    const h = History.open(undefined, 4);
    for (let i = 0; i < 6; i++) h.record(T0 + i * 10_000, s(i % 2 ? 3 : 1, 100, 1000, i === 2 ? 1 : 0));
    const hour = h.series('hour');
    expect(hour.step).toBe(10);
    expect(hour.t).toHaveLength(360);
    expect(last(hour.t)).toBe((T0 + 50_000) / 1000);
    expect(hour.values.online!.slice(-6)).toEqual([1, 3, 1, 3, 1, 3]);
    expect(hour.values.up!.slice(-6)).toEqual([100, 100, 100, 100, 100, 100]);
    expect(Number.isNaN(hour.values.up![0]!)).toBe(true); // nothing recorded an hour ago
    const day = h.series('day');
    expect(day.t).toHaveLength(1440);
    expect(last(day.values.online!)).toBe(2);
    expect(last(day.values.up!)).toBe(600);
    expect(last(day.values.down!)).toBe(6000);
    expect(last(day.values.logins!)).toBe(1);
    const month = h.series('month');
    expect(month.t).toHaveLength(720);
    expect(last(month.values.up!)).toBe(600);
  });

  it('a slot skipped (no sample) is a gap, and an hour later the 10 s archive has wrapped', () => {
    const h = History.open(undefined, 4);
    h.record(T0, s(1, 5));
    h.record(T0 + 30_000, s(1, 7));
    const up = h.series('hour').values.up!;
    expect(up.slice(-4).map((v) => (Number.isNaN(v) ? null : v))).toEqual([5, null, null, 7]);
    h.record(T0 + 3_600_000 + 30_000, s(2, 9));
    const later = h.series('hour').values.up!;
    expect(later.filter((v) => !Number.isNaN(v))).toEqual([9]); // the old slots were cleared
    expect(h.series('month').values.up!.filter((v) => !Number.isNaN(v))).toEqual([12, 9]);
  });

  it('a sample older than an archive holds (the clock stepped back) is dropped there only', () => {
    const h = History.open(undefined, 2);
    h.record(T0 + 7_200_000, s(1, 10));
    h.record(T0, s(1, 5)); // two hours earlier: out of the hour archive, still in day and month
    expect(h.series('hour').values.up!.filter((v) => !Number.isNaN(v))).toEqual([10]);
    expect(h.series('day').values.up!.filter((v) => !Number.isNaN(v))).toEqual([5, 10]);
    expect(History.open(undefined, 2).series('hour').t).toHaveLength(360); // empty: ends now
  });

  it('per guest, by MAC; beyond maxGuests the one seen longest ago is dropped', () => {
    const h = History.open(undefined, 2);
    const g = (mac: string, up: number) => ({ mac, up, down: up * 10 });
    h.record(T0, s(2, 3, 30, 0, [g('02:00:00:00:00:01', 1), g('02:00:00:00:00:02', 2)]));
    h.record(T0 + 10_000, s(2, 5, 50, 0, [g('02:00:00:00:00:02', 2), g('02:00:00:00:00:03', 3)]));
    expect(h.guests().sort()).toEqual(['02:00:00:00:00:02', '02:00:00:00:00:03']);
    expect(h.guest('02:00:00:00:00:01', 'hour')).toBeUndefined();
    const two = h.guest('02:00:00:00:00:02', 'day')!;
    expect(last(two.values.up!)).toBe(4);
    expect(last(two.values.down!)).toBe(40);
    const three = h.guest('02:00:00:00:00:03', 'hour')!;
    expect(three.values.up!.slice(-2).map((v) => (Number.isNaN(v) ? null : v))).toEqual([null, 3]);
  });

  it('restart keeps the data: save writes atomically, open reads it back', () => {
    const f = file();
    const h = History.open(f, 8);
    expect(h.restored).toBe(false);
    h.record(T0, s(1, 100, 200, 1, [{ mac: 'aa:bb:cc:dd:ee:ff', up: 100, down: 200 }]));
    h.save();
    expect(statSync(f).size).toBe(historyBytes(8));
    const again = History.open(f, 8);
    expect(again.restored).toBe(true);
    expect(last(again.series('hour').values.up!)).toBe(100);
    expect(again.guests()).toEqual(['aa:bb:cc:dd:ee:ff']);
    again.record(T0 + 10_000, s(1, 50));
    expect(last(again.series('day').values.up!)).toBe(150);
    // another maxGuests: another file size, so it starts empty rather than misread
    expect(History.open(f, 9).restored).toBe(false);
  });

  it('the file size: ~1.3 MB for 64 guests, whatever the traffic', () => {
    const rows = ARCHIVES.reduce((a, x) => a + x.rows, 0);
    expect(rows).toBe(2520);
    expect(historyBytes(64)).toBe(8 * (8 + 128 + rows * 5) + 64 * 2 * rows * 4);
    expect(History.open(undefined, 64).bytes).toBe(historyBytes(64));
  });

  it('property: the file size never changes, whatever is recorded', () => {
    const mac = fc
      .array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 })
      .map((b) => b.map((x) => x.toString(16).padStart(2, '0')).join(':'));
    const step = fc.record({
      dt: fc.integer({ min: 0, max: 5_000_000 }),
      online: fc.nat(1000),
      up: fc.nat(1e12),
      down: fc.nat(1e12),
      logins: fc.nat(50),
      guests: fc.array(fc.record({ mac, up: fc.nat(1e9), down: fc.nat(1e9) }), { maxLength: 12 }),
      save: fc.boolean(),
    });
    const f = file();
    const size = historyBytes(5);
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 30 }), (steps) => {
        const h = History.open(f, 5);
        let t = T0;
        for (const x of steps) {
          t += x.dt;
          h.record(t, x);
          if (x.save) {
            h.save();
            expect(statSync(f).size).toBe(size);
          }
        }
        h.save();
        expect(statSync(f).size).toBe(size);
        expect(h.guests().length).toBeLessThanOrEqual(5);
      }),
      { numRuns: 60 },
    );
  });
});

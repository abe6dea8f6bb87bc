import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';

/**
 * A bounded round-robin history (RRD's idea, hand-written): totals and per-guest traffic at three
 * resolutions in fixed-size typed arrays, all views on one ArrayBuffer that is the file. The file
 * size depends on `maxGuests` only, never on the traffic. docs/apps/dashboard.md, "The store".
 */

/** The archives: one slot per `step` seconds, `rows` slots (an hour, a day, 30 days). */
export const ARCHIVES = [
  { name: 'hour', step: 10, rows: 360 },
  { name: 'day', step: 60, rows: 1440 },
  { name: 'month', step: 3600, rows: 720 },
] as const;
export type Resolution = (typeof ARCHIVES)[number]['name'];

/** Totals kept per slot: `online` is averaged over the slot, the others summed. */
export const TOTALS = ['online', 'up', 'down', 'logins'] as const;
export type Total = (typeof TOTALS)[number];

/** One sample: guests online now; bytes and logins since the previous sample. */
export interface Sample {
  readonly online: number;
  readonly up: number;
  readonly down: number;
  readonly logins: number;
  /** Per guest: bytes since the previous sample. */
  readonly guests: readonly { readonly mac: string; readonly up: number; readonly down: number }[];
}

/** A range of one archive: slot start times (s) and values (NaN where nothing was recorded). */
export interface Series {
  readonly step: number;
  readonly t: number[];
  readonly values: Readonly<Record<string, number[]>>;
}

const MAGIC = 0x4d4e5244_31; // "MNRD1"
const META = 8; // Float64s: magic, maxGuests, lastBucket × 3, savedAt, 2 spare
const macNum = (mac: string): number => Number.parseInt(mac.replace(/:/g, ''), 16) + 1; // 0 = free slot
const numMac = (n: number): string =>
  (n - 1)
    .toString(16)
    .padStart(12, '0')
    .replace(/(..)(?!$)/g, '$1:');

/** The file size for `maxGuests` guests, in bytes. */
export function historyBytes(maxGuests: number): number {
  let n = META + 2 * maxGuests; // meta, guest MACs and last-seen times
  for (const a of ARCHIVES) n += a.rows * (TOTALS.length + 1); // totals + sample counts for `online`
  let f32 = 0;
  for (const a of ARCHIVES) f32 += maxGuests * 2 * a.rows;
  return n * 8 + Math.ceil((f32 * 4) / 8) * 8;
}

export class History {
  readonly maxGuests: number;
  readonly bytes: number;
  /** Whether `open` found a usable file (else it started empty). */
  readonly restored: boolean;
  private readonly buf: Uint8Array;
  private readonly meta: Float64Array;
  private readonly macs: Float64Array;
  private readonly seen: Float64Array;
  /** Per archive: TOTALS.length × rows values, then rows sample counts. */
  private readonly totals: Float64Array[] = [];
  private readonly counts: Float64Array[] = [];
  /** Per archive: maxGuests × 2 (up, down) × rows. */
  private readonly perGuest: Float32Array[] = [];

  private constructor(
    readonly file: string | undefined,
    maxGuests: number,
  ) {
    this.maxGuests = maxGuests;
    this.bytes = historyBytes(maxGuests);
    const ab = new ArrayBuffer(this.bytes);
    this.buf = new Uint8Array(ab);
    let off = 0;
    const f64 = (n: number): Float64Array => {
      const a = new Float64Array(ab, off, n);
      off += n * 8;
      return a;
    };
    this.meta = f64(META);
    this.macs = f64(maxGuests);
    this.seen = f64(maxGuests);
    for (const a of ARCHIVES) {
      this.totals.push(f64(TOTALS.length * a.rows).fill(Number.NaN));
      this.counts.push(f64(a.rows));
    }
    for (const a of ARCHIVES) {
      this.perGuest.push(new Float32Array(ab, off, maxGuests * 2 * a.rows).fill(Number.NaN));
      off += maxGuests * 2 * a.rows * 4;
    }
    this.meta[0] = MAGIC;
    this.meta[1] = maxGuests;
    this.restored = false;
  }

  /** Open the store in `file` (undefined: in memory only); an unreadable or other-size file starts empty. */
  static open(file: string | undefined, maxGuests = 64): History {
    const h = new History(file, maxGuests);
    if (!file) return h;
    try {
      const data = readFileSync(file);
      if (data.length !== h.bytes) return h;
      const probe = new Float64Array(data.buffer.slice(data.byteOffset, data.byteOffset + 16));
      if (probe[0] !== MAGIC || probe[1] !== maxGuests) return h;
      h.buf.set(data);
      (h as { restored: boolean }).restored = true;
    } catch {
      // no file yet
    }
    return h;
  }

  /** Record a sample taken at `ms` (epoch milliseconds). */
  record(ms: number, s: Sample): void {
    const sec = ms / 1000;
    const slots = ARCHIVES.map((a, i) => this.advance(i, Math.floor(sec / a.step)));
    ARCHIVES.forEach((a, i) => {
      const slot = slots[i]!;
      if (slot < 0) return;
      const tot = this.totals[i]!;
      const n = this.counts[i]!;
      const at = (k: number): number => k * a.rows + slot;
      const prev = tot[at(0)]!;
      tot[at(0)] = ((Number.isNaN(prev) ? 0 : prev) * n[slot]! + s.online) / (n[slot]! + 1);
      n[slot]! += 1;
      const add = (k: number, v: number): void => {
        const o = tot[at(k)]!;
        tot[at(k)] = (Number.isNaN(o) ? 0 : o) + v;
      };
      add(1, s.up);
      add(2, s.down);
      add(3, s.logins);
    });
    for (const g of s.guests) {
      const gi = this.guestSlot(g.mac, sec);
      ARCHIVES.forEach((a, i) => {
        if (slots[i]! < 0) return;
        const pg = this.perGuest[i]!;
        const base = gi * 2 * a.rows + slots[i]!;
        const u = pg[base]!;
        const d = pg[base + a.rows]!;
        pg[base] = (Number.isNaN(u) ? 0 : u) + g.up;
        pg[base + a.rows] = (Number.isNaN(d) ? 0 : d) + g.down;
      });
    }
  }

  /**
   * Move archive `i` to `bucket`, clearing the slots skipped; returns the bucket's slot, or -1 for
   * a bucket older than the archive holds (the clock stepped back that far).
   */
  private advance(i: number, bucket: number): number {
    const a = ARCHIVES[i]!;
    const last = this.meta[2 + i]!;
    if (bucket > last) {
      const from = last > 0 ? Math.max(last + 1, bucket - a.rows + 1) : bucket - a.rows + 1;
      for (let b = from; b <= bucket; b++) {
        const slot = b % a.rows;
        for (let k = 0; k < TOTALS.length; k++) this.totals[i]![k * a.rows + slot] = Number.NaN;
        this.counts[i]![slot] = 0;
        for (let g = 0; g < this.maxGuests; g++) {
          this.perGuest[i]![g * 2 * a.rows + slot] = Number.NaN;
          this.perGuest[i]![g * 2 * a.rows + a.rows + slot] = Number.NaN;
        }
      }
      this.meta[2 + i] = bucket;
    }
    if (bucket <= last - a.rows) return -1;
    return bucket % a.rows; // a late sample (clock stepped back a little) lands in its own slot
  }

  /** The guest's slot: its own, a free one, or the one seen longest ago (its history dropped). */
  private guestSlot(mac: string, sec: number): number {
    const key = macNum(mac);
    let free = -1;
    let oldest = 0;
    for (let g = 0; g < this.maxGuests; g++) {
      if (this.macs[g] === key) {
        this.seen[g] = sec;
        return g;
      }
      if (this.macs[g] === 0 && free < 0) free = g;
      if (this.seen[g]! < this.seen[oldest]!) oldest = g;
    }
    const g = free >= 0 ? free : oldest;
    this.macs[g] = key;
    this.seen[g] = sec;
    ARCHIVES.forEach((a, i) => {
      this.perGuest[i]!.fill(Number.NaN, g * 2 * a.rows, (g + 1) * 2 * a.rows);
    });
    return g;
  }

  /** MACs with a history, most recently seen first. */
  guests(): string[] {
    return [...this.macs.keys()]
      .filter((g) => this.macs[g] !== 0)
      .sort((x, y) => this.seen[y]! - this.seen[x]!)
      .map((g) => numMac(this.macs[g]!));
  }

  /** The totals of one archive up to `ms` (default: the last sample, else now), oldest first. */
  series(res: Resolution, ms?: number): Series {
    const i = ARCHIVES.findIndex((a) => a.name === res);
    const a = ARCHIVES[i]!;
    return this.range(i, ms, (slot, ok) =>
      Object.fromEntries(TOTALS.map((k, ki) => [k, ok ? this.totals[i]![ki * a.rows + slot]! : Number.NaN])),
    );
  }

  /** One guest's bytes up and down per slot; undefined when it has no history. */
  guest(mac: string, res: Resolution, ms?: number): Series | undefined {
    const g = [...this.macs].indexOf(macNum(mac));
    if (g < 0) return undefined;
    const i = ARCHIVES.findIndex((a) => a.name === res);
    const a = ARCHIVES[i]!;
    const pg = this.perGuest[i]!;
    return this.range(i, ms, (slot, ok) => ({
      up: ok ? pg[g * 2 * a.rows + slot]! : Number.NaN,
      down: ok ? pg[g * 2 * a.rows + a.rows + slot]! : Number.NaN,
    }));
  }

  private range(
    i: number,
    ms: number | undefined,
    at: (slot: number, ok: boolean) => Record<string, number>,
  ): Series {
    const a = ARCHIVES[i]!;
    const last = this.meta[2 + i]!;
    const end = Math.floor((ms ?? (last > 0 ? last * a.step * 1000 : Date.now())) / 1000 / a.step);
    const t: number[] = [];
    const values: Record<string, number[]> = {};
    for (let b = end - a.rows + 1; b <= end; b++) {
      t.push(b * a.step);
      const row = at(b % a.rows, last > 0 && b <= last && b > last - a.rows);
      for (const [k, v] of Object.entries(row)) (values[k] ??= []).push(v);
    }
    return { step: a.step, t, values };
  }

  /** Write the file atomically (a temporary file, fsync, rename). */
  save(ms = Date.now()): void {
    if (!this.file) return;
    this.meta[5] = ms / 1000;
    const tmp = `${this.file}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      let off = 0;
      while (off < this.buf.length) off += writeSync(fd, this.buf, off, this.buf.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.file);
  }
}

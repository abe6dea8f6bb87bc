import { performance } from 'node:perf_hooks';
import { MetanetError } from './errors.js';

export interface Timer {
  /** Stop the timer; idempotent. */
  cancel(): void;
  readonly active: boolean;
}

/**
 * The loop's timers: one-shot and periodic, all cancelled by `closeAll()`,
 * so a closed bus leaves no handle behind. Errors thrown by a callback go to `onError`.
 */
export class Timers {
  private readonly live = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(private readonly onError: (e: unknown) => void) {}

  timeout(ms: number, fn: () => unknown): Timer {
    return this.start(ms, fn, false);
  }

  every(ms: number, fn: () => unknown): Timer {
    if (!(ms > 0))
      throw new MetanetError('EBADTUPLE', `a periodic timer needs an interval > 0 ms, got ${ms}`);
    return this.start(ms, fn, true);
  }

  private start(ms: number, fn: () => unknown, periodic: boolean): Timer {
    if (this.closed) throw new MetanetError('ECLOSED', 'the bus is closed: no new timers');
    if (!Number.isFinite(ms) || ms < 0)
      throw new MetanetError('EBADTUPLE', `timer delay must be >= 0 ms, got ${ms}`);
    const live = this.live;
    let active = true;
    const run = (): void => {
      if (!periodic) {
        active = false;
        live.delete(h);
      }
      try {
        const r = fn();
        if (r instanceof Promise) r.catch(this.onError);
      } catch (e) {
        this.onError(e);
      }
    };
    const h = periodic ? setInterval(run, ms) : setTimeout(run, ms);
    live.add(h);
    return {
      cancel() {
        if (!active) return;
        active = false;
        clearTimeout(h);
        live.delete(h);
      },
      get active() {
        return active;
      },
    };
  }

  get size(): number {
    return this.live.size;
  }

  closeAll(): void {
    this.closed = true;
    for (const h of this.live) clearTimeout(h);
    this.live.clear();
  }
}

/**
 * What `Deadlines` keeps of an entry: its deadline and its place in its lane, stored in the entry
 * itself (nothing allocated per entry). Only `Deadlines` writes these fields.
 */
export interface Due {
  dueAt: number;
  duePrev: Due | undefined;
  dueNext: Due | undefined;
  dueLane: DueLane | undefined;
  /** Called once when the deadline passes (the entry is already out of the sweep). */
  expire(): void;
}

/** The entries of one delay, in deadline order (added in time order, so a FIFO list). */
export class DueLane {
  head: Due | undefined = undefined;
  tail: Due | undefined = undefined;
}

/**
 * Many one-shot deadlines on one timer, for things that almost never time out (a request waiting
 * for its reply): adding and removing an entry is a clock read and a few stores, where a
 * `setTimeout` + `clearTimeout` pair costs ~0.45 µs and a Timeout object. Entries of the same
 * delay sit in one list in deadline order; the timer is set for the earliest head. It holds the
 * process open while an entry waits, as a `setTimeout` would, and not after (it is unref'd when
 * the sweep empties and not set again once it has fired with nothing left).
 */
export class Deadlines {
  private readonly lanes = new Map<number, DueLane>();
  private timer: NodeJS.Timeout | undefined = undefined;
  /** When the timer fires (Infinity: no timer). */
  private armedFor = Infinity;
  private refed = false;
  private count = 0;

  /** Expire `d` in `ms` milliseconds (finite, >= 0) unless removed before. */
  add(d: Due, ms: number): void {
    let lane = this.lanes.get(ms);
    if (lane === undefined) {
      lane = new DueLane();
      this.lanes.set(ms, lane);
    }
    const at = performance.now() + ms;
    d.dueAt = at;
    d.dueLane = lane;
    d.dueNext = undefined;
    d.duePrev = lane.tail;
    if (lane.tail === undefined) lane.head = d;
    else lane.tail.dueNext = d;
    lane.tail = d;
    this.count++;
    if (at < this.armedFor) this.arm(at);
    else if (!this.refed) {
      this.timer?.ref();
      this.refed = true;
    }
  }

  /** Take `d` out (idempotent). */
  remove(d: Due): void {
    const lane = d.dueLane;
    if (lane === undefined) return;
    const prev = d.duePrev;
    const next = d.dueNext;
    if (prev === undefined) lane.head = next;
    else prev.dueNext = next;
    if (next === undefined) lane.tail = prev;
    else next.duePrev = prev;
    d.dueLane = undefined;
    d.duePrev = undefined;
    d.dueNext = undefined;
    if (--this.count === 0 && this.refed) {
      this.timer?.unref();
      this.refed = false;
    }
  }

  /** Entries waiting. */
  get size(): number {
    return this.count;
  }

  private arm(at: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(this.fire, Math.max(1, Math.ceil(at - performance.now())));
    this.armedFor = at;
    this.refed = true;
  }

  private readonly fire = (): void => {
    // The timer fired for `armedFor`: what was due by then is due, whatever the clock reads
    // (Node's timers may run a little before a clock read would say).
    const now = Math.max(performance.now(), this.armedFor);
    this.timer = undefined;
    this.armedFor = Infinity;
    this.refed = false;
    let failure: unknown;
    for (const [ms, lane] of this.lanes) {
      for (let d = lane.head; d !== undefined && d.dueAt <= now; d = lane.head) {
        this.remove(d);
        try {
          d.expire();
        } catch (e) {
          failure ??= e;
        }
      }
      if (lane.head === undefined) this.lanes.delete(ms);
    }
    let next = Infinity;
    for (const lane of this.lanes.values())
      if (lane.head !== undefined && lane.head.dueAt < next) next = lane.head.dueAt;
    if (next < Infinity && next < this.armedFor) this.arm(next);
    if (failure !== undefined) throw failure;
  };
}

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

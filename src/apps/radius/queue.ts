import type { Logger } from '../../core/log.js';
import type { Attr } from './packet.js';
import { JsonFile } from './store.js';

/** One accounting request waiting for an Accounting-Response. */
export interface Queued {
  readonly kind: 'start' | 'interim' | 'stop';
  readonly sessionId: string;
  /** When the event happened, epoch ms (Acct-Delay-Time counts from here). */
  readonly created: number;
  readonly attrs: readonly { readonly t: number; readonly v?: number; readonly x: string }[];
}

export const toQueued = (attrs: readonly Attr[]): Queued['attrs'] =>
  attrs.map((a) => ({
    t: a.type,
    ...(a.vendor === undefined ? {} : { v: a.vendor }),
    x: a.value.toString('hex'),
  }));

export const fromQueued = (q: Queued): Attr[] =>
  q.attrs.map((a) => ({ type: a.t, vendor: a.v, value: Buffer.from(a.x, 'hex') }));

function check(raw: unknown): Queued[] {
  const o = raw as { version?: unknown; queue?: unknown };
  if (o?.version !== 1 || !Array.isArray(o.queue)) throw new Error('no version 1 queue');
  return o.queue.map((q: unknown, i) => {
    const e = q as Record<string, unknown>;
    const ok =
      typeof q === 'object' &&
      q !== null &&
      (e.kind === 'start' || e.kind === 'interim' || e.kind === 'stop') &&
      typeof e.sessionId === 'string' &&
      typeof e.created === 'number' &&
      Array.isArray(e.attrs) &&
      e.attrs.every(
        (a: unknown) =>
          typeof a === 'object' &&
          a !== null &&
          typeof (a as { t?: unknown }).t === 'number' &&
          typeof (a as { x?: unknown }).x === 'string',
      );
    if (!ok) throw new Error(`queue[${i}] is not an accounting request`);
    return q as Queued;
  });
}

/**
 * Accounting requests in order, on disk (`<stateDir>/radius.acct-queue.json`) until a server
 * answers each. Every request goes through here: written first, sent, removed once answered, so a
 * crash or restart loses none. While no server answers the queue waits `retryMs` between attempts
 * and new requests only join it. Bounded: past `max` the oldest are dropped (counted, logged). A
 * new Interim-Update or Stop of a session replaces that session's queued Interim-Updates (the newer
 * counters supersede them).
 */
export class AcctQueue {
  private items: Queued[];
  private readonly file: JsonFile<{ version: 1; queue: Queued[] }>;
  private flushing: Promise<void> | undefined;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;
  dropped = 0;
  delivered = 0;

  constructor(
    path: string | undefined,
    private readonly max: number,
    private readonly retryMs: number,
    private readonly send: (q: Queued) => Promise<void>,
    private readonly log: Logger,
  ) {
    this.file = new JsonFile(path, 'RADIUS accounting queue');
    this.items = this.file.load({ version: 1, queue: [] }, (raw) => ({
      version: 1,
      queue: check(raw),
    })).queue;
  }

  get length(): number {
    return this.items.length;
  }
  /** A copy of what waits (tests, status). */
  list(): readonly Queued[] {
    return [...this.items];
  }
  /** Whether the queue waits for a server to come back. */
  get waiting(): boolean {
    return this.retry !== undefined;
  }

  submit(q: Queued): void {
    if (this.closed) return;
    if (q.kind !== 'start') {
      const head = this.flushing ? this.items[0] : undefined; // in flight: leave it
      this.items = this.items.filter(
        (x) => x === head || !(x.kind === 'interim' && x.sessionId === q.sessionId),
      );
    }
    this.items.push(q);
    if (this.items.length > this.max) {
      const over = this.items.length - this.max;
      this.items.splice(0, over);
      this.dropped += over;
      this.log.log('warn', 'radius: accounting queue full, oldest dropped', {
        dropped: over,
        max: this.max,
      });
    }
    this.save();
    if (!this.retry) this.kick();
  }

  /** Try to send what waits now (at start, and on the retry timer). */
  kick(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.flushing ??= this.flush().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async flush(): Promise<void> {
    while (this.items.length > 0 && !this.closed) {
      const head = this.items[0]!;
      try {
        await this.send(head);
      } catch (e) {
        if (this.closed) return;
        this.log.log('warn', 'radius: accounting not delivered, queued', {
          queued: this.items.length,
          retryMs: this.retryMs,
          error: (e as Error).message,
        });
        this.retry ??= setTimeout(() => {
          this.retry = undefined;
          void this.kick();
        }, this.retryMs);
        return;
      }
      const i = this.items.indexOf(head);
      if (i >= 0) this.items.splice(i, 1);
      this.delivered++;
      this.save();
    }
  }

  private save(): void {
    try {
      this.file.save({ version: 1, queue: this.items });
    } catch (e) {
      this.log.log('error', 'radius: cannot write the accounting queue', { error: (e as Error).message });
    }
  }

  /** Stop sending; what waits stays on disk. Waits for a send in flight. */
  async close(): Promise<void> {
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    const f = this.flushing;
    this.closed = true;
    await f?.catch(() => {});
    this.save();
  }
}

import type { Level, Logger } from '../../core/log.js';

/**
 * Logs for what can come in floods (packets the server drops, lookups that fail), readable under
 * attack: per kind, the first event is logged at once with its details; the ones that follow
 * within `intervalMs` are only counted, and one summary line per kind (`…: 1937 more in the last
 * 5 s`, with the last one's details) is written when the interval is over. So each kind writes at
 * most one line per interval, however many events come. `tick()` writes the summaries that are due (the server calls it every second);
 * `flush()` writes every pending one (at close).
 */
interface Kind {
  readonly level: Level;
  readonly message: string;
  /** When the last line for this kind was written. */
  last: number;
  /** Counted since then, not yet logged. */
  pending: number;
  example: Record<string, unknown> | undefined;
}

export class SummaryLog {
  private readonly kinds = new Map<string, Kind>();

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    readonly intervalMs = 5000,
  ) {}

  /** One event of `kind`; `message` and `level` are the kind's (the first call's win). */
  note(kind: string, level: Level, message: string, fields: Record<string, unknown>): void {
    const t = this.now();
    const k = this.kinds.get(kind);
    if (k === undefined) {
      this.kinds.set(kind, { level, message, last: t, pending: 0, example: undefined });
      this.log.log(level, `dhcp: ${message}`, { kind, ...fields });
      return;
    }
    if (k.pending === 0 && t - k.last >= this.intervalMs) {
      k.last = t;
      this.log.log(k.level, `dhcp: ${k.message}`, { kind, ...fields });
      return;
    }
    k.pending++;
    k.example = fields;
    if (t - k.last >= this.intervalMs) this.summary(kind, k, t);
  }

  /** Write the summaries whose interval is over. */
  tick(): void {
    const t = this.now();
    for (const [kind, k] of this.kinds)
      if (k.pending > 0 && t - k.last >= this.intervalMs) this.summary(kind, k, t);
  }

  /** Write every pending summary now. */
  flush(): void {
    const t = this.now();
    for (const [kind, k] of this.kinds) if (k.pending > 0) this.summary(kind, k, t);
  }

  private summary(kind: string, k: Kind, t: number): void {
    const seconds = Math.max(1, Math.round((t - k.last) / 1000));
    this.log.log(k.level, `dhcp: ${k.message}: ${k.pending} more in the last ${seconds} s`, {
      kind,
      count: k.pending,
      last: k.example,
    });
    k.last = t;
    k.pending = 0;
    k.example = undefined;
  }
}

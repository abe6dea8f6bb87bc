/**
 * How fast new clients are let in, per link (docs/services/dhcp.md, "Storms"). A new client is a
 * MAC the server has no lease (bound or free), offer or static entry for; known clients are never
 * limited. Each link (the arrival device and the client's subnet) has a token bucket: `burst`
 * tokens, refilled at `perSecond`. A new MAC's DISCOVER or REQUEST takes a token; with none left
 * it is dropped and the MAC remembered, and when the same MAC comes back at least
 * `RETRY_GAP_MS` later (a real client retransmits after 1–4 s; a storm of random MACs never
 * repeats one) it is let in whatever the bucket holds. So a storm of random MACs is held to
 * `perSecond` offers, and a real new client caught in it loses one retransmission, not its lease.
 */

export interface NewClientLimit {
  /** Tokens per second per link; 0 turns the limit off. */
  readonly perSecond: number;
  /** Bucket size: how many new clients at once. */
  readonly burst: number;
}

export type Admission = 'new' | 'retry' | 'limited';

/** A refused MAC coming back this soon is still refused (retransmissions are ≥ 1 s apart). */
export const RETRY_GAP_MS = 500;
/** A refused MAC is remembered this long (clients back off to 64 s at most, RFC 2131 4.1). */
export const RETRY_MEMORY_MS = 70_000;
/** At most this many refused MACs are remembered (the oldest are forgotten first). */
export const RETRY_MEMORY_MAX = 20_000;

export class NewClientLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  /** Refused MACs → when first refused, oldest first. */
  private readonly refused = new Map<string, number>();

  constructor(
    readonly limit: NewClientLimit,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether a new client `mac` on `link` is let in now: by a token, as a retry, or not. */
  admit(link: string, mac: string): Admission {
    if (this.limit.perSecond <= 0) return 'new';
    const t = this.now();
    let b = this.buckets.get(link);
    if (b === undefined) {
      b = { tokens: this.limit.burst, at: t };
      this.buckets.set(link, b);
    } else if (t > b.at) {
      b.tokens = Math.min(this.limit.burst, b.tokens + ((t - b.at) * this.limit.perSecond) / 1000);
      b.at = t;
    }
    const first = this.refused.get(mac);
    if (first !== undefined && t - first >= RETRY_GAP_MS && t - first < RETRY_MEMORY_MS) {
      this.refused.delete(mac);
      return 'retry';
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      if (first !== undefined) this.refused.delete(mac);
      return 'new';
    }
    if (first === undefined || t - first >= RETRY_MEMORY_MS) {
      this.refused.delete(mac); // re-inserted last: the memory stays ordered by time
      this.refused.set(mac, t);
      if (this.refused.size > RETRY_MEMORY_MAX) this.refused.delete(this.refused.keys().next().value!);
    }
    return 'limited';
  }

  /** Refused MACs remembered now (for tests). */
  get remembered(): number {
    return this.refused.size;
  }
}

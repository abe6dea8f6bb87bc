import { performance } from 'node:perf_hooks';

/**
 * The server's intake: datagrams are read from the sockets as they come (cheap: no decoding) and
 * handled in turns of a bounded length, so that the socket buffers stay short and the waiting
 * happens here, where it can be ordered and shed. Past saturation a large kernel buffer would hold
 * seconds of packets, every OFFER and ACK would come too late for its client, and the completed
 * exchanges would collapse.
 *
 * Order: a packet that completes or ends an exchange (REQUEST, RELEASE, DECLINE, INFORM, or one
 * that is not a DISCOVER) goes first, oldest first: the client is waiting for exactly this answer
 * and the work already spent on its OFFER is lost without it. DISCOVERs come after, oldest first
 * while they are fresh; once the oldest has waited `lifoAfterMs` (the server is behind), newest
 * first, so the DISCOVERs answered are the ones whose clients are still listening; a DISCOVER that
 * waited `staleMs` is dropped unanswered (its client has given up or retransmits), and so is the
 * oldest DISCOVER when `maxQueued` packets wait. A REQUEST is never shed by age; at `maxQueued`
 * the oldest one goes.
 */

export interface IntakeOptions {
  /** A turn handles packets for at most this long before the loop reads the sockets again. */
  readonly turnMs?: number;
  /** DISCOVERs waiting this long are answered newest first. */
  readonly lifoAfterMs?: number;
  /** DISCOVERs waiting this long are dropped unanswered. */
  readonly staleMs?: number;
  /** Packets waiting at most (both kinds together). */
  readonly maxQueued?: number;
  readonly now?: () => number;
}

/** A simple FIFO/LIFO of packets (an array with a moving head: no O(n) shift). */
class Deque<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(x: T): void {
    this.items.push(x);
  }
  peekFirst(): T | undefined {
    return this.items[this.head];
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const x = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return x;
  }
  pop(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const x = this.items.pop();
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    }
    return x;
  }
}

interface Waiting<P> {
  readonly packet: P;
  readonly at: number;
}

/** DHCP message type 1 (option 53) in the options field, without decoding the packet. */
export function isDiscover(buf: Uint8Array): boolean {
  if (buf.length < 244 || buf[0] !== 1) return false;
  const end = buf.length;
  let i = 240;
  while (i < end) {
    const code = buf[i]!;
    if (code === 0) {
      i++;
      continue;
    }
    if (code === 255 || i + 1 >= end) return false;
    const len = buf[i + 1]!;
    if (code === 53) return len === 1 && i + 2 < end && buf[i + 2] === 1;
    i += 2 + len;
  }
  return false;
}

export class Intake<P> {
  private readonly first = new Deque<Waiting<P>>();
  private readonly discovers = new Deque<Waiting<P>>();
  private scheduled = false;
  private closed = false;
  private readonly turnMs: number;
  private readonly lifoAfterMs: number;
  private readonly staleMs: number;
  private readonly maxQueued: number;
  private readonly now: () => number;

  /**
   * `handle`: called for each packet in its turn. `shed`: called for each packet dropped
   * unanswered (`why`: `stale` or `full`), with how long it waited.
   */
  constructor(
    private readonly handle: (p: P) => void,
    private readonly shed: (p: P, why: 'stale' | 'full', waitedMs: number) => void,
    opts: IntakeOptions = {},
  ) {
    this.turnMs = opts.turnMs ?? 2;
    this.lifoAfterMs = opts.lifoAfterMs ?? 100;
    this.staleMs = opts.staleMs ?? 1000;
    this.maxQueued = opts.maxQueued ?? 8192;
    this.now = opts.now ?? (() => performance.now());
  }

  /** Packets waiting now. */
  get queued(): number {
    return this.first.length + this.discovers.length;
  }

  /** Queue a packet read from a socket; `discover`: it is a DISCOVER (isDiscover). */
  add(packet: P, discover: boolean): void {
    if (this.closed) return;
    const now = this.now();
    (discover ? this.discovers : this.first).push({ packet, at: now });
    if (this.queued > this.maxQueued) {
      const w = this.discovers.shift() ?? this.first.shift()!;
      this.shed(w.packet, 'full', now - w.at);
    }
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.turn);
    }
  }

  /** Stop: what waits is forgotten. */
  close(): void {
    this.closed = true;
    while (this.first.shift());
    while (this.discovers.shift());
  }

  private next(now: number): Waiting<P> | undefined {
    const f = this.first.shift();
    if (f !== undefined) return f;
    const d = this.discovers;
    for (let oldest = d.peekFirst(); oldest !== undefined; oldest = d.peekFirst()) {
      const waited = now - oldest.at;
      if (waited >= this.staleMs) {
        d.shift();
        this.shed(oldest.packet, 'stale', waited);
      } else if (waited >= this.lifoAfterMs) return d.pop();
      else return d.shift();
    }
    return undefined;
  }

  private readonly turn = (): void => {
    this.scheduled = false;
    if (this.closed) return;
    const start = this.now();
    let now = start;
    for (let n = 1; ; n++) {
      const w = this.next(now);
      if (w === undefined) return;
      this.handle(w.packet);
      if ((n & 3) === 0) {
        now = this.now();
        if (now - start >= this.turnMs) break;
      }
    }
    if (this.queued > 0) {
      this.scheduled = true;
      setImmediate(this.turn);
    }
  };
}

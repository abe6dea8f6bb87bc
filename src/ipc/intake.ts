import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { MetanetError } from '../core/errors.js';
import type { Limits } from './limits.js';
import type { ReusedReads } from './reused.js';
import { F, type Frame, FrameReader } from './wire.js';

/**
 * Frames whose handling is quick and bounded by their size: a SEND queues a delivery (its chain
 * runs at the turn's end), an answer settles a promise. Any other frame may run a listener, an
 * `ls` or a monitor at once: the clock is read after each of those.
 */
const QUICK: readonly boolean[] = [];
for (const t of [F.SEND, F.RESULT, F.OK, F.ERROR, F.VERDICT]) (QUICK as boolean[])[t] = true;
/** The turn's clock is read at least every this many quick frames… */
const CLOCK_FRAMES = 16;
/** …and every this many bytes of them. */
const CLOCK_BYTES = 32 * 1024;

/** What the intake hands frames to (the link). */
export interface IntakeSink {
  /** Whether frames are still wanted (false once the connection is closing). */
  readonly open: boolean;
  /** Whether the peer's HELLO has been read. */
  readonly greeted: boolean;
  /** One frame. */
  frame(f: Frame): void;
  /** A turn of frames begins: what they queue runs at its end (`turnEnd`), not a loop turn later. */
  turnStart(): void;
  /** The end of a turn of frames: what they queued runs now. */
  turnEnd(): void;
  /** The stream broke at a malformed frame; nothing after it will be read. */
  broken(e: MetanetError): void;
  /** The peer did not send HELLO, or finish a frame it started, within the handshake timeout. */
  stalled(e: MetanetError): void;
}

/**
 * The reading side of one connection: bytes into frames, frames to the link, with bounded work
 * per turn of the event loop. A read holding thousands of frames is handled `turnBudget` ms at a
 * time: the socket is paused and the rest waits for the next turn, so every other connection is
 * served in between and one peer cannot starve the others. A peer that does not send its HELLO,
 * or stops in the middle of a frame, for `handshakeTimeout` ms is reported as stalled.
 */
export class Intake {
  private readonly reader: FrameReader;
  /** Since when we wait for the peer: its HELLO, or the rest of a frame it started. */
  private waitingSince: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private deferred = false;
  private stopped = false;

  /** `reads`: the socket reads into the reused buffer (`ReusedReads`), not through its stream. */
  constructor(
    private readonly socket: Socket,
    private readonly limits: Limits,
    private readonly sink: IntakeSink,
    reads?: ReusedReads,
  ) {
    this.reader = new FrameReader(limits.maxFrame, true);
    this.waitingSince = performance.now();
    this.arm(limits.handshakeTimeout);
    if (reads) reads.attach((chunk) => this.read(chunk, true));
    else socket.on('data', (chunk: Buffer) => this.read(chunk, false));
  }

  private read(chunk: Buffer, borrowed: boolean): void {
    if (this.stopped) return; // closing: read and drop
    this.reader.feed(chunk, borrowed);
    try {
      if (!this.deferred) this.pump();
    } finally {
      // the chunk's memory is read into next: what is still buffered leaves it, whatever happened
      if (borrowed) this.reader.keep();
    }
  }

  /** Stop: no frame is handed over any more; bytes still coming are read and dropped. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.waitingSince = undefined;
  }

  private pump(): void {
    const sink = this.sink;
    sink.turnStart();
    let frames = -1;
    try {
      frames = this.frames();
    } finally {
      sink.turnEnd();
    }
    if (frames < 0 || this.stopped || !sink.open) return;
    if (this.reader.error) {
      this.stop();
      sink.broken(this.reader.error);
      return;
    }
    if (!sink.greeted) return; // still waiting since the connection opened
    if (this.reader.pending === 0) this.waitingSince = undefined;
    else if (frames > 0 || this.waitingSince === undefined) {
      // a new frame started in this read: its time runs from now
      this.waitingSince = performance.now();
      this.arm(this.limits.handshakeTimeout);
    }
  }

  /** Hands the frames read to the sink, within the turn's budget: how many, or -1 when the rest waits for the next turn. */
  private frames(): number {
    const sink = this.sink;
    const reader = this.reader;
    let frames = 0;
    // The turn's time is counted from its first frame that may take long, or from its first
    // CLOCK_FRAMES frames or CLOCK_BYTES bytes of quick ones, and checked after each of those:
    // a read of a few quick frames — a request, its answer — reads no clock (a clock read costs
    // as much as handling a small frame).
    let start = -1;
    let unclocked = 0;
    let clockedAt = reader.consumed;
    while (!this.stopped && sink.open) {
      const f = reader.next();
      if (f === undefined) break;
      frames++;
      const quick = QUICK[f[0] as number] === true;
      if (!quick && start < 0) start = performance.now();
      sink.frame(f);
      if (quick && ++unclocked < CLOCK_FRAMES && reader.consumed - clockedAt < CLOCK_BYTES) continue;
      unclocked = 0;
      clockedAt = reader.consumed;
      if (start < 0) {
        start = performance.now();
        continue;
      }
      if (performance.now() - start >= this.limits.turnBudget && reader.pending > 0) {
        // the rest of this read waits for the next turn; meanwhile read nothing more from this peer
        this.deferred = true;
        this.socket.pause();
        setImmediate(this.resume);
        return -1;
      }
    }
    return frames;
  }

  private readonly resume = (): void => {
    this.deferred = false;
    if (this.stopped || !this.sink.open) return;
    this.socket.resume();
    this.pump();
  };

  private arm(ms: number): void {
    if (this.timer !== undefined || this.stopped) return;
    this.timer = setTimeout(this.expired, ms);
    this.timer.unref();
  }

  /** The timer ran out: decide after this turn's reads (data that did come is read first). */
  private readonly expired = (): void => {
    this.timer = undefined;
    setImmediate(() => {
      if (this.stopped || this.waitingSince === undefined || !this.sink.open) return;
      const waited = performance.now() - this.waitingSince;
      const limit = this.limits.handshakeTimeout;
      if (this.deferred || waited < limit) {
        this.arm(this.deferred ? limit : limit - waited);
        return;
      }
      this.stop();
      this.sink.stalled(
        new MetanetError(
          'ETIMEDOUT',
          this.sink.greeted
            ? `a frame started ${Math.round(waited)} ms ago is still incomplete (${this.reader.pending} bytes; the limit is ${limit} ms)`
            : `no HELLO within ${limit} ms of connecting`,
        ),
      );
    });
  };
}

import type { Socket } from 'node:net';
import { bytesOf } from './wire.js';

/** Below this many queued bytes a flush joins its frames into one buffer; above, the socket writes them as a vector. */
const JOIN_BELOW = 64 * 1024;

const RESOLVED = Promise.resolve();

/**
 * The frames waiting to go to one peer. Frames queued in one synchronous run go out in one
 * socket write (at the end of the run). The peer's backlog — frames queued here plus what the
 * socket has not handed to the kernel — is bounded: a frame that would take it past
 * `maxBacklog` is not queued and `overflow` is called at once, so a peer that stops reading
 * costs at most that much memory however many requests it sends (docs/ipc.md, "Limits").
 */
export class Outbox {
  /**
   * Queued bytes as `count` ranges of buffers, kept in arrays reused from flush to flush; frames
   * written side by side in one buffer (wire.ts) extend one range.
   */
  private readonly bufs: (Buffer | undefined)[] = [];
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  private count = 0;
  private bytes = 0;
  private scheduled = false;
  private closed = false;

  constructor(
    private readonly socket: Socket,
    private readonly maxBacklog: number,
    private readonly overflow: (backlog: number) => void,
  ) {}

  /**
   * Queue the encoded frame in bytes `start` to `end` of `buf` (which nothing writes over
   * afterwards); false (after calling `overflow`) when the peer's backlog would pass the bound.
   */
  push(buf: Buffer, start: number, end: number): boolean {
    if (this.closed) return false;
    const len = end - start;
    const backlog = this.bytes + this.socket.writableLength + len;
    if (backlog > this.maxBacklog) {
      this.close();
      this.overflow(backlog);
      return false;
    }
    const n = this.count;
    if (n > 0 && this.bufs[n - 1] === buf && this.ends[n - 1] === start) this.ends[n - 1] = end;
    else {
      this.bufs[n] = buf;
      this.starts[n] = start;
      this.ends[n] = end;
      this.count = n + 1;
    }
    this.bytes += len;
    if (!this.scheduled) {
      this.scheduled = true;
      // a promise reaction, not queueMicrotask: the same queue and order, without the
      // AsyncResource and bound function queueMicrotask makes per call
      RESOLVED.then(this.flush);
    }
    return true;
  }

  /** Hand what is queued to the socket now. */
  readonly flush = (): void => {
    this.scheduled = false;
    const n = this.count;
    if (this.closed || n === 0) return;
    const { bufs, starts, ends } = this;
    let out: Buffer | Buffer[];
    if (n === 1) out = bytesOf(bufs[0]!, starts[0]!, ends[0]!);
    else if (this.bytes < JOIN_BELOW) {
      out = Buffer.allocUnsafe(this.bytes);
      let at = 0;
      for (let i = 0; i < n; i++) at += bufs[i]!.copy(out, at, starts[i], ends[i]);
    } else {
      out = [];
      for (let i = 0; i < n; i++) out.push(bufs[i]!.subarray(starts[i], ends[i]));
    }
    for (let i = 0; i < n; i++) bufs[i] = undefined;
    this.count = 0;
    this.bytes = 0;
    if (!Array.isArray(out)) this.socket.write(out);
    else {
      // no copy of a large backlog: the socket writes the frames in one writev
      this.socket.cork();
      for (const f of out) this.socket.write(f);
      this.socket.uncork();
    }
  };

  /** Drop what is queued; nothing more is accepted. */
  close(): void {
    this.closed = true;
    for (let i = 0; i < this.count; i++) this.bufs[i] = undefined;
    this.count = 0;
    this.bytes = 0;
  }
}

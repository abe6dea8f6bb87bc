import type { Socket } from 'node:net';

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
  private frames: Buffer[] = [];
  private bytes = 0;
  private scheduled = false;
  private closed = false;

  constructor(
    private readonly socket: Socket,
    private readonly maxBacklog: number,
    private readonly overflow: (backlog: number) => void,
  ) {}

  /** Queue one encoded frame; false (after calling `overflow`) when the peer's backlog would pass the bound. */
  push(frame: Buffer): boolean {
    if (this.closed) return false;
    const backlog = this.bytes + this.socket.writableLength + frame.length;
    if (backlog > this.maxBacklog) {
      this.close();
      this.overflow(backlog);
      return false;
    }
    const frames = this.frames;
    const n = frames.length;
    const last = n > 0 ? frames[n - 1]! : undefined;
    if (
      last !== undefined &&
      last.buffer === frame.buffer &&
      last.byteOffset + last.length === frame.byteOffset
    )
      // frames encoded one after another lie side by side in one buffer (wire.ts): one piece, no copy
      frames[n - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + frame.length);
    else frames.push(frame);
    this.bytes += frame.length;
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
    const frames = this.frames;
    if (this.closed || frames.length === 0) return;
    this.frames = [];
    const bytes = this.bytes;
    this.bytes = 0;
    if (frames.length === 1) this.socket.write(frames[0]!);
    else if (bytes < JOIN_BELOW) this.socket.write(Buffer.concat(frames, bytes));
    else {
      // no copy of a large backlog: the socket writes the frames in one writev
      this.socket.cork();
      for (const f of frames) this.socket.write(f);
      this.socket.uncork();
    }
  };

  /** Drop what is queued; nothing more is accepted. */
  close(): void {
    this.closed = true;
    this.frames = [];
    this.bytes = 0;
  }
}

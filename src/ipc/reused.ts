import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import koffi from 'koffi';

/** The memory every socket of this process that reads through `ReusedReads` reads into, one read after the other. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/**
 * A socket's reads into one buffer the process reuses (`net.connect`'s `onread`): no buffer
 * allocated and no stream machinery per read (2.5–3 µs of CPU less per request/reply round trip
 * of a client, measured). Every read is handled at once and what must outlive it is copied
 * (`FrameReader.keep`, byte arrays of the frames), so one buffer serves every such socket.
 * Make one per socket: `connect({ path, onread: reads.option })`, then give it to the intake.
 */
export class ReusedReads {
  private to: ((chunk: Buffer) => void) | undefined;
  readonly option = {
    buffer: READ_BUFFER,
    callback: (n: number): boolean => {
      // the socket reads from a later turn of the loop than the one that made it and attached
      // its intake: a read with nobody attached is a bug here, said at once, never data dropped
      if (this.to === undefined) throw new Error('a read before the intake attached');
      this.to(READ_BUFFER.subarray(0, n));
      return true;
    },
  };

  attach(to: (chunk: Buffer) => void): void {
    this.to = to;
  }
}

type Fcntl = (fd: number, cmd: number, argType: 'int', arg: number) => number;
let fcntl: Fcntl | undefined;
/** fcntl(2): a copy of the descriptor, closed on exec — a plain dup(2) would be inherited by every child process spawned later, which would hold the connection open after the daemon closes it. */
const F_DUPFD_CLOEXEC = 1030;

/**
 * A connection a daemon accepted (with `pauseOnConnect`, so nothing read it yet), moved to a
 * socket that reads into the reused buffer: Node gives `onread` only to sockets it makes, so the
 * descriptor is duplicated (fcntl F_DUPFD_CLOEXEC, through koffi), wrapped in a new socket with `onread`, and the
 * accepted socket destroyed (its descriptor closed; the connection lives on in the copy). When
 * that cannot be done (no descriptor, dup fails), the accepted socket is returned as it is,
 * reading through its stream.
 */
export function withReusedReads(accepted: Socket): { sock: Socket; reads: ReusedReads | undefined } {
  const fd = (accepted as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return asItIs(accepted);
  let copy: number;
  try {
    fcntl ??= koffi.load('libc.so.6').func('int fcntl(int fd, int cmd, ...)') as Fcntl;
    // at least 3: never stdin, stdout or stderr, should one of them be closed
    copy = fcntl(fd, F_DUPFD_CLOEXEC, 'int', 3);
  } catch {
    return asItIs(accepted);
  }
  if (copy < 0) return asItIs(accepted);
  const reads = new ReusedReads();
  let sock: Socket;
  try {
    // Node 20 reads `onread` in the constructor (net.connect passes it there); its types list it under connect only
    const options = { fd: copy, readable: true, writable: true, onread: reads.option };
    sock = new Socket(options);
  } catch {
    closeSync(copy);
    return asItIs(accepted);
  }
  accepted.destroy();
  return { sock, reads };
}

function asItIs(accepted: Socket): { sock: Socket; reads: undefined } {
  accepted.resume();
  return { sock: accepted, reads: undefined };
}

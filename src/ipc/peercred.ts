import type { Socket } from 'node:net';
import koffi from 'koffi';

/** Who is at the other end of a Unix-domain socket, as the kernel says (SO_PEERCRED). */
export interface PeerCred {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

type GetSockOpt = (fd: number, level: number, name: number, val: Buffer, len: number[]) => number;
let getsockopt: GetSockOpt | undefined;

function load(): GetSockOpt {
  if (!getsockopt) {
    const libc = koffi.load('libc.so.6');
    getsockopt = libc.func(
      'int getsockopt(int fd, int level, int name, _Out_ uint8_t *val, _Inout_ uint32_t *len)',
    ) as GetSockOpt;
  }
  return getsockopt;
}

/** The peer's credentials, or undefined when the socket has no file descriptor (not Unix, closed). */
export function peerCred(socket: Socket): PeerCred | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  const buf = Buffer.alloc(12);
  if (load()(fd, SOL_SOCKET, SO_PEERCRED, buf, [12]) !== 0) return undefined;
  return { pid: buf.readInt32LE(0), uid: buf.readUInt32LE(4), gid: buf.readUInt32LE(8) };
}

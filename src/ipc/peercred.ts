import type { Socket } from 'node:net';
import { getSockOpt } from './sockopt.js';

/** Who is at the other end of a Unix-domain socket, as the kernel says (SO_PEERCRED). */
export interface PeerCred {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

/** The peer's credentials, or undefined when the socket has no file descriptor (not Unix, closed). */
export function peerCred(socket: Socket): PeerCred | undefined {
  const buf = getSockOpt(socket, SOL_SOCKET, SO_PEERCRED, 12);
  return buf && { pid: buf.readInt32LE(0), uid: buf.readUInt32LE(4), gid: buf.readUInt32LE(8) };
}

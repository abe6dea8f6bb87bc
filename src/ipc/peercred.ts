import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { getSockOpt } from './sockopt.js';

/** Who is at the other end of a Unix-domain socket, as the kernel says (SO_PEERCRED). */
export interface PeerCred {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
  /** Supplementary group ids (from /proc/PID/status when the connection was accepted). */
  readonly groups?: readonly number[];
}

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

/**
 * The peer's credentials, or undefined when the socket has no file descriptor (not Unix,
 * closed). Read when the connection is accepted: SO_PEERCRED holds the peer's ids as of
 * connect(), and its supplementary groups are read at once from /proc, while the pid is surely
 * still the peer's.
 */
export function peerCred(socket: Socket): PeerCred | undefined {
  const buf = getSockOpt(socket, SOL_SOCKET, SO_PEERCRED, 12);
  if (!buf) return undefined;
  const pid = buf.readInt32LE(0);
  return { pid, uid: buf.readUInt32LE(4), gid: buf.readUInt32LE(8), groups: supplementaryGroups(pid) };
}

/** The `Groups:` line of /proc/PID/status; none when it cannot be read. */
export function supplementaryGroups(pid: number): number[] {
  if (!(pid > 0)) return [];
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return [];
  }
  const line = /^Groups:[ \t]*(.*)$/m.exec(status)?.[1] ?? '';
  return line
    .split(/\s+/)
    .filter((x) => x !== '')
    .map(Number)
    .filter((n) => Number.isInteger(n) && n >= 0);
}

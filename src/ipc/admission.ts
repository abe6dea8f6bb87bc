import type { Socket } from 'node:net';
import { MetanetError } from '../core/errors.js';
import { LINGER } from './limits.js';
import { encodeFrame, F, PROTOCOL_VERSION } from './wire.js';

export interface AdmissionLimits {
  /** Connections held at once, from anyone. */
  readonly maxConnections: number;
  /** Connections held at once from one user id. */
  readonly maxConnectionsPerUid: number;
}

/**
 * Who may connect to a daemon, by count: at most `maxConnections` connections at once, at most
 * `maxConnectionsPerUid` from one user (docs/ipc.md, "Limits"). Counts every accepted
 * connection, greeted or not, until it closes.
 */
export class Admission {
  private total = 0;
  private readonly byUid = new Map<number, number>();

  constructor(private readonly limits: AdmissionLimits) {
    for (const k of ['maxConnections', 'maxConnectionsPerUid'] as const)
      if (!(limits[k] >= 1))
        throw new MetanetError('ECONFIG', `${k} must be at least 1, got ${String(limits[k])}`);
  }

  /** Count a new connection from `uid` (-1: unknown), or say why it is refused. */
  admit(uid: number): string | undefined {
    if (this.total >= this.limits.maxConnections)
      return `too many connections: ${this.total} open, the limit is ${this.limits.maxConnections} (maxConnections)`;
    const n = this.byUid.get(uid) ?? 0;
    if (n >= this.limits.maxConnectionsPerUid)
      return `too many connections from uid ${uid}: ${n} open, the limit is ${this.limits.maxConnectionsPerUid} per user (maxConnectionsPerUid)`;
    this.total++;
    this.byUid.set(uid, n + 1);
    return undefined;
  }

  /** A connection counted by `admit` closed. */
  leave(uid: number): void {
    this.total--;
    const n = (this.byUid.get(uid) ?? 1) - 1;
    if (n > 0) this.byUid.set(uid, n);
    else this.byUid.delete(uid);
  }
}

/**
 * Refuse a connection with a clear error: the daemon's HELLO (so any client reads on as usual),
 * then `ERROR [8, 0, code, text]`, then close.
 */
export function refuse(sock: Socket, daemon: string, code: string, text: string): void {
  sock.on('error', () => {});
  // what the peer sends meanwhile is read and dropped: closing with unread bytes would reset
  // the connection and the peer might not read the ERROR
  sock.on('data', () => {});
  sock.resume(); // accepted paused (daemon.ts)
  sock.end(
    Buffer.concat([
      encodeFrame([F.HELLO, PROTOCOL_VERSION, daemon, process.pid]),
      encodeFrame([F.ERROR, 0, code, text]),
    ]),
  );
  setTimeout(() => sock.destroy(), LINGER).unref();
}

import { MetanetError } from '../core/errors.js';
import { CLIENT_MAX_FRAME, DEFAULT_MAX_FRAME } from './wire.js';

/**
 * What one connection may cost the process that serves it (docs/ipc.md, "Limits"). A daemon
 * applies them to the peers that connect to it; a client applies the same bounds, with a larger
 * frame limit, to the daemons it dials.
 */
export interface Limits {
  /** Largest frame payload accepted from the peer, bytes. It also bounds the values a frame may hold (one per 16 bytes). */
  readonly maxFrame: number;
  /** Output queued for the peer (unsent plus unread) beyond which the peer is cut, bytes. */
  readonly maxBacklog: number;
  /** Time the peer has to send HELLO after connecting, and to finish a frame it has started, ms. */
  readonly handshakeTimeout: number;
  /** Time one connection's frames may use per turn of the event loop before the others get theirs, ms. */
  readonly turnBudget: number;
}

export const DAEMON_LIMITS: Limits = {
  maxFrame: DEFAULT_MAX_FRAME,
  maxBacklog: 64 * 1024 * 1024,
  handshakeTimeout: 5000,
  turnBudget: 4,
};

export const CLIENT_LIMITS: Limits = { ...DAEMON_LIMITS, maxFrame: CLIENT_MAX_FRAME };

/** Connections a daemon holds at once, from anyone. */
export const MAX_CONNECTIONS = 1024;
/** Connections a daemon holds at once from one user id. */
export const MAX_CONNECTIONS_PER_UID = 256;

/** How long a connection this side closes waits for the peer to close its end (so it reads the last frames), ms. */
export const LINGER = 1000;

/** Limits with some fields overridden; every value must be a positive number. */
export function limits(base: Limits, o: Partial<Limits>): Limits {
  const out = { ...base };
  for (const k of Object.keys(base) as (keyof Limits)[]) {
    const v = o[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !(v > 0))
      throw new MetanetError('ECONFIG', `${k} must be a positive number, got ${String(v)}`);
    out[k] = v;
  }
  return out;
}

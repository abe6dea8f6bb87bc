import { isMetanetError, MetanetError } from '../core/errors.js';
import {
  type ListenerHandle,
  type ListenerInfo,
  NONE,
  type Position,
  type SendResult,
} from '../core/listener.js';
import { Message, type MessageInit } from '../core/message.js';
import { F, type Frame, field, fromWire, kind, toWire } from './wire.js';

/**
 * What goes inside frames, shared by the Unix-socket links and the NATS transport: listener
 * positions, send results, one-way replies and the relay path (docs/wire-protocol.md).
 */

export const REPLY_PREFIX = '/system/reply/';

/** Default time a daemon waits for a remote listener's verdict (ms). */
export const REMOTE_TIMEOUT = 1000;

/** `/system/reply/N`, or the same relayed through a daemon (`/system/relay/NAME/system/reply/N`). */
export function isReplyPath(path: string): boolean {
  return path.startsWith(REPLY_PREFIX) || (path.startsWith(RELAY) && path.includes(REPLY_PREFIX));
}

export function handedOver(path: string): SendResult {
  return { mailbox: path, delivered: true, listeners: 1, stopped: false, errors: NONE, timedOut: NONE };
}

/** Mailboxes under this prefix forward to another daemon: `/system/relay/NAME/path` → `NAME:/path`. */
export const RELAY = '/system/relay';

export function relayTarget(path: string): string {
  if (!path.startsWith(`${RELAY}/`)) return path;
  const rest = path.slice(RELAY.length + 1);
  const slash = rest.indexOf('/');
  if (slash <= 0) throw new MetanetError('EBADPATH', `relay path ${path} must be ${RELAY}/<daemon>/<path>`);
  return `${rest.slice(0, slash)}:${rest.slice(slash)}`;
}

export function positionToWire(p: Position | undefined): unknown {
  if (p === undefined || p === 'append' || p === 'prepend') return p ?? 'append';
  const [k, ref] = 'before' in p ? (['before', p.before] as const) : (['after', p.after] as const);
  const identity = isHandle(ref) ? ref.identity : Message.from(ref);
  return [k, toWire(identity)];
}

function isHandle(x: MessageInit | ListenerHandle): x is ListenerHandle {
  return (
    typeof (x as ListenerHandle).remove === 'function' && (x as ListenerHandle).identity instanceof Message
  );
}

export function positionFromWire(v: unknown): Position {
  if (v === 'append' || v === 'prepend') return v;
  if (Array.isArray(v) && (v[0] === 'before' || v[0] === 'after')) {
    const identity = fromWire(v[1], `LISTEN position ${v[0]}`);
    return v[0] === 'before' ? { before: identity } : { after: identity };
  }
  throw new MetanetError(
    'EPROTO',
    'LISTEN frame: position must be "append", "prepend", ["before", tuples] or ["after", tuples]',
  );
}

/** Longest verdict timeout a LISTEN may ask for, ms (what a timer can wait). */
export const MAX_LISTEN_TIMEOUT = 2 ** 31 - 1;

/** LISTEN's `timeout` field: 0 (the receiver's default) to 2^31 − 1 ms. */
export function timeoutFromWire(f: Frame, i: number): number {
  return field.uint(f, i, 'timeout', MAX_LISTEN_TIMEOUT);
}

/** LISTEN's `onTimeout` field: "continue", "stop", or nil for "continue". Anything else is refused: a typo must not turn fail-closed into fail-open. */
export function onTimeoutFromWire(v: unknown): 'continue' | 'stop' {
  if (v === 'stop' || v === 'continue') return v;
  if (v === null || v === undefined) return 'continue';
  throw new MetanetError(
    'EPROTO',
    `LISTEN frame: onTimeout must be "continue" or "stop", got ${typeof v === 'string' ? JSON.stringify(v) : kind(v)}`,
  );
}

export function resultToFrame(id: number, r: SendResult): unknown[] {
  return [
    F.RESULT,
    id,
    r.delivered,
    r.listeners,
    r.stopped,
    r.stoppedBy ? toWire(r.stoppedBy.identity) : null,
    r.errors.length === 0 ? NONE : r.errors.map((e) => `${e.listener.name}: ${e.error}`),
    r.timedOut.length,
  ];
}

export function resultFromFrame(path: string, f: Frame): SendResult {
  const n = typeof f[3] === 'number' ? f[3] : 0;
  const delivered = f[2] === true;
  const stopped = f[4] === true;
  // the common answer (listeners ran, no stop, no error, no timeout) allocates nothing else
  if (!Array.isArray(f[5]) && !(Array.isArray(f[6]) && f[6].length > 0) && !f[7])
    return {
      mailbox: path,
      delivered,
      listeners: n,
      stopped,
      stoppedBy: undefined,
      errors: NONE,
      timedOut: NONE,
    };
  const errors = Array.isArray(f[6]) ? (f[6] as unknown[]).map(String) : [];
  const stoppedBy = Array.isArray(f[5]) ? fromWire(f[5], 'RESULT stoppedBy') : undefined;
  const remoteInfo = (name: string, identity = Message.empty): ListenerInfo => ({
    id: 0,
    mailbox: path,
    identity,
    name,
    onTimeout: 'continue',
  });
  return {
    mailbox: path,
    delivered,
    listeners: n,
    stopped,
    stoppedBy: stoppedBy ? remoteInfo('remote', stoppedBy) : undefined,
    errors: errors.map((e) => ({ listener: remoteInfo('remote'), error: e })),
    timedOut: Array.from({ length: typeof f[7] === 'number' ? f[7] : 0 }, () => remoteInfo('remote')),
  };
}

/** `ERROR [8, id, code, message]` for what went wrong. */
export function errorFrame(id: number, e: unknown): unknown[] {
  return [F.ERROR, id, isMetanetError(e) ? e.code : 'EFAIL', e instanceof Error ? e.message : String(e)];
}

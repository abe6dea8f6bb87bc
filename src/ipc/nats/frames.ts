import { isErrorCode, MetanetError } from '../../core/errors.js';
import type { Position, SendResult } from '../../core/listener.js';
import type { Message } from '../../core/message.js';
import { checkPath } from '../../core/path.js';

export { handedOver, resultFromFrame } from '../frames.js';

import {
  onTimeoutFromWire,
  positionFromWire,
  positionToWire,
  resultToFrame,
  timeoutFromWire,
} from '../frames.js';
import { decodePayload, encodeFrame, F, type Frame, field, frameName, fromWire, toWire } from '../wire.js';

/**
 * NATS payloads are wire-protocol frames (docs/wire-protocol.md) without the 4-byte length
 * prefix and with request id 0: NATS request/reply does the matching. Decoders throw EPROTO
 * naming what is wrong.
 */
export function pack(frame: readonly unknown[]): Uint8Array {
  return encodeFrame(frame).subarray(4);
}

export function unpack(payload: Uint8Array, expected: readonly number[]): Frame {
  const f = decodePayload(payload);
  if (!expected.includes(f[0] as number))
    throw new MetanetError(
      'EPROTO',
      `expected ${expected.map(frameName).join(' or ')} on this subject, got ${frameName(f[0])}`,
    );
  return f;
}

export interface SendFrame {
  readonly path: string;
  readonly msg: Message;
}

export function sendFrame(path: string, m: Message): Uint8Array {
  return pack([F.SEND, 0, path, toWire(m)]);
}

export function parseSend(f: Frame): SendFrame {
  const path = checkPath(field.str(f, 2, 'path'));
  return { path, msg: fromWire(f[3], path) };
}

export interface ListenFrame {
  readonly path: string;
  readonly lid: number;
  readonly identity: Message;
  readonly position: Position;
  /** 0: the default. */
  readonly timeout: number;
  readonly onTimeout: 'continue' | 'stop';
  readonly name: string;
  /** Where to deliver: unique per listener (it is also the key of the attachment). */
  readonly subject: string;
  /** Who attached it, for introspection (`host/daemon[pid N]`). */
  readonly origin: string;
}

export function listenFrame(l: ListenFrame): Uint8Array {
  return pack([
    F.LISTEN,
    0,
    l.path,
    l.lid,
    toWire(l.identity),
    positionToWire(l.position),
    l.timeout,
    l.onTimeout,
    l.name,
    l.subject,
    l.origin,
  ]);
}

export function parseListen(f: Frame): ListenFrame {
  const path = checkPath(field.str(f, 2, 'path'));
  const subject = field.str(f, 9, 'deliver subject');
  if (subject.length === 0 || /[\s*>]/.test(subject))
    throw new MetanetError('EPROTO', `LISTEN frame: bad deliver subject ${JSON.stringify(subject)}`);
  const timeout = timeoutFromWire(f, 6);
  return {
    path,
    lid: field.int(f, 3, 'lid'),
    identity: fromWire(f[4], 'LISTEN identity'),
    position: positionFromWire(f[5]),
    timeout,
    onTimeout: onTimeoutFromWire(f[7]),
    name: field.optStr(f, 8, 'name') ?? 'remote',
    subject,
    origin: field.optStr(f, 10, 'origin') ?? 'nats',
  };
}

export function unlistenFrame(lid: number, subject: string): Uint8Array {
  return pack([F.UNLISTEN, 0, lid, subject]);
}

export function parseUnlisten(f: Frame): string {
  return field.str(f, 3, 'deliver subject');
}

export function deliverFrame(lid: number, path: string, m: Message): Uint8Array {
  return pack([F.DELIVER, 0, lid, path, toWire(m)]);
}

export function parseDeliver(f: Frame): SendFrame {
  const path = checkPath(field.str(f, 3, 'path'));
  return { path, msg: fromWire(f[4], path) };
}

export function verdictFrame(stop: boolean, error: string | null): Uint8Array {
  return pack([F.VERDICT, 0, stop ? 'stop' : 'continue', error]);
}

export function okFrame(value: unknown): Uint8Array {
  return pack([F.OK, 0, value]);
}

export function errorFrame(e: unknown): Uint8Array {
  const code = e instanceof MetanetError ? e.code : 'EFAIL';
  return pack([F.ERROR, 0, code, e instanceof Error ? e.message : String(e)]);
}

/** An ERROR frame as the error it reports (the code kept when it is a known one). */
export function errorFromFrame(f: Frame, who: string): MetanetError {
  const code = field.str(f, 2, 'code');
  const text = field.str(f, 3, 'message');
  return new MetanetError(isErrorCode(code) ? code : 'EFAIL', `${who}: ${text}`);
}

export function resultFrame(r: SendResult): Uint8Array {
  return pack(resultToFrame(0, r));
}

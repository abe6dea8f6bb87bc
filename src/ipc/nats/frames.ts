import { MetanetError } from '../../core/errors.js';
import type { ListenerHandle, ListenerInfo, Position, SendResult } from '../../core/listener.js';
import { Message, type MessageInit } from '../../core/message.js';
import { checkPath } from '../../core/path.js';
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
  const timeout = field.int(f, 6, 'timeout');
  if (timeout < 0) throw new MetanetError('EPROTO', 'LISTEN frame: timeout must not be negative');
  return {
    path,
    lid: field.int(f, 3, 'lid'),
    identity: fromWire(f[4], 'LISTEN identity'),
    position: positionFromWire(f[5]),
    timeout,
    onTimeout: f[7] === 'stop' ? 'stop' : 'continue',
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
  return new MetanetError(CODES.has(code) ? (code as MetanetError['code']) : 'EFAIL', `${who}: ${text}`);
}

export function resultFrame(r: SendResult): Uint8Array {
  return pack([
    F.RESULT,
    0,
    r.delivered,
    r.listeners,
    r.stopped,
    r.stoppedBy ? toWire(r.stoppedBy.identity) : null,
    r.errors.map((e) => `${e.listener.name}: ${e.error}`),
    r.timedOut.length,
  ]);
}

export function resultFromFrame(mailbox: string, f: Frame): SendResult {
  const errors = Array.isArray(f[6]) ? (f[6] as unknown[]).map(String) : [];
  const stoppedBy = Array.isArray(f[5]) ? fromWire(f[5], 'RESULT stoppedBy') : undefined;
  const info = (identity = Message.empty): ListenerInfo => ({
    id: 0,
    mailbox,
    identity,
    name: 'remote',
    onTimeout: 'continue',
  });
  return {
    mailbox,
    delivered: f[2] === true,
    listeners: typeof f[3] === 'number' ? f[3] : 0,
    stopped: f[4] === true,
    stoppedBy: stoppedBy ? info(stoppedBy) : undefined,
    errors: errors.map((error) => ({ listener: info(), error })),
    timedOut: Array.from({ length: typeof f[7] === 'number' ? f[7] : 0 }, () => info()),
  };
}

/** What a one-way send (a reply) reports: handed over, not seen delivered. */
export function handedOver(mailbox: string): SendResult {
  return { mailbox, delivered: true, listeners: 1, stopped: false, errors: [], timedOut: [] };
}

function positionToWire(p: Position | undefined): unknown {
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

function positionFromWire(v: unknown): Position {
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

const CODES = new Set<string>([
  'EFAIL',
  'EBADPATH',
  'EBADTUPLE',
  'ENOTUPLE',
  'ETUPLETYPE',
  'ENOLISTENER',
  'ENOMAILBOX',
  'EEXIST',
  'ETIMEDOUT',
  'ECLOSED',
  'ENODAEMON',
  'ENOREMOTE',
  'EDENIED',
  'EPROTO',
  'ECONFIG',
  'EUNREACHABLE',
]);

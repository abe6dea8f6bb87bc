import { Packr, RESERVE_START_SPACE } from 'msgpackr';
import { MetanetError } from '../core/errors.js';
import { Message, type Tuple, type TupleType } from '../core/message.js';

/**
 * The wire protocol (docs/wire-protocol.md): each frame is a 4-byte big-endian payload length
 * followed by one MessagePack array whose first element is the frame type.
 */
export const PROTOCOL_VERSION = 1;
export const DEFAULT_MAX_FRAME = 16 * 1024 * 1024;

export const F = {
  HELLO: 0,
  SEND: 1,
  RESULT: 2,
  LISTEN: 3,
  UNLISTEN: 4,
  DELIVER: 5,
  VERDICT: 6,
  OK: 7,
  ERROR: 8,
  MONITOR: 9,
  EVENT: 10,
  LS: 11,
  UNMONITOR: 12,
} as const;
export type FrameType = (typeof F)[keyof typeof F];

/** Type codes of tuples on the wire. */
const TYPE_CODE: Record<TupleType, number> = {
  str: 0,
  int: 1,
  float: 2,
  bool: 3,
  bytes: 4,
  null: 5,
  list: 6,
};
const CODE_TYPE: readonly TupleType[] = ['str', 'int', 'float', 'bool', 'bytes', 'null', 'list'];
const MAX_DEPTH = 32;

const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true, moreTypes: false });

export type WireTuple = [string, number, unknown];
export type Frame = readonly unknown[];

/** A message as the wire carries it: an array of [tag, type code, value]. */
export function toWire(m: Message): WireTuple[] {
  const out: WireTuple[] = new Array(m.tuples.length);
  for (let i = 0; i < m.tuples.length; i++) {
    const t = m.tuples[i]!;
    let v: unknown = t.value;
    if (t.type === 'list') v = toWire(t.value);
    // msgpackr writes integers beyond 32 bits as float64: give it a bigint so the wire has an int64.
    else if (t.type === 'int' && typeof v === 'number' && (v > 0xffffffff || v < -0x80000000)) v = BigInt(v);
    out[i] = [t.tag, TYPE_CODE[t.type], v];
  }
  return out;
}

/** Decode tuples from the wire; throws EPROTO naming the tuple that is wrong. */
export function fromWire(w: unknown, where = 'message', depth = 0): Message {
  if (!Array.isArray(w)) throw proto(`${where}: tuples must be an array, got ${kind(w)}`);
  if (depth > MAX_DEPTH) throw proto(`${where}: lists nested deeper than ${MAX_DEPTH}`);
  const out: Tuple[] = new Array(w.length);
  for (let i = 0; i < w.length; i++) {
    const e: unknown = w[i];
    if (!Array.isArray(e) || e.length !== 3) throw proto(`${where}: tuple ${i} must be [tag, type, value]`);
    const tag: unknown = e[0];
    if (typeof tag !== 'string' || tag.length === 0)
      throw proto(`${where}: tuple ${i} has a bad tag (${kind(tag)})`);
    const t = decodeTuple(tag, e[1], e[2], where, depth);
    if (t === undefined) {
      const type = typeof e[1] === 'number' ? CODE_TYPE[e[1]] : undefined;
      if (type === undefined) throw proto(`${where}: tuple "${tag}" has unknown type code ${String(e[1])}`);
      throw proto(`${where}: tuple "${tag}" is typed ${type} but holds ${kind(e[2])}`);
    }
    out[i] = t;
  }
  return new Message(out);
}

/** One tuple, or undefined when the type code is unknown or the value does not fit it. */
function decodeTuple(
  tag: string,
  code: unknown,
  v: unknown,
  where: string,
  depth: number,
): Tuple | undefined {
  switch (code) {
    case 0:
      return typeof v === 'string' ? { tag, type: 'str', value: v } : undefined;
    case 1:
      if (typeof v === 'number') return Number.isInteger(v) ? { tag, type: 'int', value: v } : undefined;
      if (typeof v === 'bigint')
        return { tag, type: 'int', value: v >= -0x1fffffffffffffn && v <= 0x1fffffffffffffn ? Number(v) : v };
      return undefined;
    case 2:
      if (typeof v === 'number') return { tag, type: 'float', value: v };
      return typeof v === 'bigint' ? { tag, type: 'float', value: Number(v) } : undefined;
    case 3:
      return typeof v === 'boolean' ? { tag, type: 'bool', value: v } : undefined;
    case 4:
      return v instanceof Uint8Array ? { tag, type: 'bytes', value: v } : undefined;
    case 5:
      return v === null || v === undefined ? { tag, type: 'null', value: null } : undefined;
    case 6:
      return { tag, type: 'list', value: fromWire(v, `${where} > ${tag}`, depth + 1) };
    default:
      return undefined;
  }
}

export function kind(v: unknown): string {
  if (v === null) return 'nil';
  if (Array.isArray(v)) return 'array';
  if (v instanceof Uint8Array) return 'bin';
  return typeof v;
}

function proto(text: string): MetanetError {
  return new MetanetError('EPROTO', text);
}

/** One frame, length prefix included. */
export function encodeFrame(frame: Frame): Buffer {
  // msgpackr leaves 4 bytes free in front of the payload for the length: no second buffer, no
  // copy. The result is a slice of msgpackr's output buffer that later packs never overwrite.
  const out = packr.pack(frame, LENGTH_PREFIX);
  out.writeUInt32BE(out.length - 4, 0);
  return out;
}
const LENGTH_PREFIX = RESERVE_START_SPACE | 4;

/** Decode one frame's payload (without the length prefix). */
export function decodePayload(payload: Uint8Array): Frame {
  let v: unknown;
  try {
    v = packr.unpack(payload);
  } catch (e) {
    throw proto(`frame is not valid MessagePack: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!Array.isArray(v) || v.length === 0 || typeof v[0] !== 'number')
    throw proto(`a frame must be an array starting with its type, got ${kind(v)}`);
  return v;
}

/**
 * Splits a byte stream into frames. Throws EPROTO for an oversized or malformed frame; after an
 * error the connection must be closed (the stream can no longer be trusted).
 */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  /** Set at the first malformed frame: the frames before it were returned; nothing after. */
  error: MetanetError | undefined;
  constructor(private readonly maxFrame = DEFAULT_MAX_FRAME) {}

  /** Feed bytes; returns the frames they complete (up to a malformed one: see `error`). */
  push(chunk: Buffer): Frame[] {
    if (this.error) return [];
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const frames: Frame[] = [];
    let off = 0;
    try {
      while (this.buf.length - off >= 4) {
        const len = this.buf.readUInt32BE(off);
        if (len > this.maxFrame)
          throw proto(`frame of ${len} bytes exceeds the limit of ${this.maxFrame} bytes`);
        if (len === 0) throw proto('empty frame');
        if (this.buf.length - off - 4 < len) break;
        frames.push(decodePayload(this.buf.subarray(off + 4, off + 4 + len)));
        off += 4 + len;
      }
    } catch (e) {
      this.error = e as MetanetError;
      this.buf = Buffer.alloc(0);
      return frames;
    }
    this.buf = off === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(off);
    return frames;
  }

  /** Bytes of an incomplete frame still waiting (a peer closing here sent a truncated frame). */
  get pending(): number {
    return this.buf.length;
  }
}

/** Field accessors that fail with EPROTO naming the frame and field. */
export const field = {
  int(f: Frame, i: number, name: string): number {
    const v = f[i];
    if (typeof v !== 'number' || !Number.isInteger(v)) throw badField(f, name, 'an integer', v);
    return v;
  },
  str(f: Frame, i: number, name: string): string {
    const v = f[i];
    if (typeof v !== 'string') throw badField(f, name, 'a string', v);
    return v;
  },
  optStr(f: Frame, i: number, name: string): string | undefined {
    const v = f[i];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw badField(f, name, 'a string or nil', v);
    return v;
  },
  bool(f: Frame, i: number, name: string): boolean {
    const v = f[i];
    if (typeof v !== 'boolean') throw badField(f, name, 'a boolean', v);
    return v;
  },
};

const FRAME_NAMES = Object.fromEntries(Object.entries(F).map(([k, v]) => [v, k])) as Record<number, string>;

export function frameName(t: unknown): string {
  return typeof t === 'number' ? (FRAME_NAMES[t] ?? `unknown(${t})`) : String(t);
}

function badField(f: Frame, name: string, wanted: string, v: unknown): MetanetError {
  return proto(`${frameName(f[0])} frame: field ${name} must be ${wanted}, got ${kind(v)}`);
}

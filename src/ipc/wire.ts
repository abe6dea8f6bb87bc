import { Packr, RESERVE_START_SPACE } from 'msgpackr';
import { MetanetError } from '../core/errors.js';
import { Message, type Tuple, type TupleType } from '../core/message.js';
import {
  INT64_MAX,
  INT64_MIN,
  MAX_DEPTH,
  NO,
  readFrame,
  scalarTuple,
  TYPE_CODE,
  type Written,
  writeFrameTo,
  written,
} from './msgpack.js';

/**
 * The wire protocol (docs/wire-protocol.md): each frame is a 4-byte big-endian payload length
 * followed by one MessagePack array whose first element is the frame type.
 */
export const PROTOCOL_VERSION = 1;
/** Largest frame payload a daemon accepts from the peers that connect to it (docs/wire-protocol.md). */
export const DEFAULT_MAX_FRAME = 1024 * 1024;
/** Largest frame payload a client accepts from the daemon it dialed (a big daemon's LS reply). */
export const CLIENT_MAX_FRAME = 16 * 1024 * 1024;
/** A frame may hold at most one MessagePack value per this many bytes of the frame limit. */
const BYTES_PER_VALUE = 16;

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

const CODE_TYPE: readonly TupleType[] = ['str', 'int', 'float', 'bool', 'bytes', 'null', 'list'];

export { MAX_DEPTH, type Written };

const PACKR_OPTIONS = {
  useRecords: false,
  int64AsType: 'bigint',
  mapsAsObjects: true,
  moreTypes: false,
} as const;
const packr = new Packr(PACKR_OPTIONS);
/** The same, copying byte arrays out of the frame (for frames read from a reused buffer). */
const packrCopy = new Packr({ ...PACKR_OPTIONS, copyBuffers: true });

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
  // a frame's message the reader already read into one (msgpack.ts), its tuples checked as here
  if (w instanceof Message) return w;
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
  if (code === 6) return { tag, type: 'list', value: fromWire(v, `${where} > ${tag}`, depth + 1) };
  if (code === 1 && typeof v === 'bigint' && (v < INT64_MIN || v > INT64_MAX))
    throw proto(`${where}: tuple "${tag}" holds ${v}, outside the signed 64-bit range of an int`);
  return scalarTuple(tag, code, v);
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

/**
 * One frame, length prefix included. A Message among the frame's elements goes as its tuples
 * (`toWire`), written straight from the message. Frame-level integers beyond 32 bits are written as int64
 * (msgpackr would write them as float64, which receivers refuse for an id).
 */
export function encodeFrame(frame: Frame): Buffer {
  const w = encodeFrameTo(frame);
  return bytesOf(w.buf, w.start, w.end);
}

/** Bytes `start` to `end` of `buf` as a Buffer: `buf` itself when that is all of it (no view made). */
export function bytesOf(buf: Buffer, start: number, end: number): Buffer {
  return start === 0 && end === buf.length ? buf : buf.subarray(start, end);
}

/**
 * `encodeFrame` without making a Buffer of the frame: where it lies (`written`, msgpack.ts; one
 * object, read it before the next encode). Later encodes never overwrite it.
 */
export function encodeFrameTo(frame: Frame): Readonly<Written> {
  const wide = wideInts(frame);
  if (writeFrameTo(wide)) return written;
  // msgpackr leaves 4 bytes free in front of the payload for the length: no second buffer, no
  // copy. The result is a slice of msgpackr's output buffer that later packs never overwrite.
  const out = packr.pack(
    wide.some((v) => v instanceof Message) ? wide.map((v) => (v instanceof Message ? toWire(v) : v)) : wide,
    LENGTH_PREFIX,
  );
  out.writeUInt32BE(out.length - 4, 0);
  written.buf = out;
  written.start = 0;
  written.end = out.length;
  return written;
}
const LENGTH_PREFIX = RESERVE_START_SPACE | 4;

function wideInts(frame: Frame): Frame {
  let copy: unknown[] | undefined;
  for (let i = 0; i < frame.length; i++) {
    const v = frame[i];
    if (typeof v === 'number' && (v > 0xffffffff || v < -0x80000000) && Number.isInteger(v))
      (copy ??= [...frame])[i] = BigInt(v);
  }
  return copy ?? frame;
}

/**
 * Decode one frame's payload (without the length prefix). `maxValues` bounds the MessagePack
 * values it may hold (checked by a walk that allocates nothing, before decoding). Frame-level
 * integers come back as numbers whatever their encoding when they are safe integers.
 */
export function decodePayload(payload: Uint8Array, maxValues = Number.POSITIVE_INFINITY): Frame {
  return decodeAt(payload, 0, payload.length, maxValues, false, false);
}

/**
 * `decodePayload` of the bytes `start` to `end` of `b`, without a view of them: a read holding
 * many frames is decoded in place (msgpackr keeps one DataView per buffer, made on first use).
 */
const AT = { start: 0, end: 0 };

function decodeAt(
  b: Uint8Array,
  start: number,
  end: number,
  maxValues: number,
  messages: boolean,
  copy: boolean,
): Frame {
  if (end - start > maxValues) checkValues(b, start, end, maxValues);
  let v: unknown;
  try {
    v = b instanceof Buffer ? readFrame(b, start, end, messages, copy) : NO;
    if (v === NO) {
      AT.start = start;
      AT.end = end;
      v = (copy ? packrCopy : packr).unpack(b, AT);
    }
  } catch (e) {
    throw proto(`frame is not valid MessagePack: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!Array.isArray(v) || v.length === 0)
    throw proto(`a frame must be an array starting with its type, got ${kind(v)}`);
  for (let i = 0; i < v.length; i++) {
    const x: unknown = v[i];
    if (typeof x === 'bigint' && x >= -0x1fffffffffffffn && x <= 0x1fffffffffffffn) v[i] = Number(x);
  }
  if (typeof v[0] !== 'number')
    throw proto(`a frame must be an array starting with its type, got ${kind(v)}`);
  return v;
}

/**
 * Throws EPROTO when the MessagePack value in `b` holds more than `max` values (every array,
 * map entry, string, number … counts one). Walks the bytes without allocating; a truncated or
 * invalid encoding is left to the decoder to refuse.
 */
function checkValues(b: Uint8Array, start: number, n: number, max: number): void {
  const u16 = (p: number): number => (p + 2 <= n ? (b[p]! << 8) | b[p + 1]! : n);
  const u32 = (p: number): number =>
    p + 4 <= n ? b[p]! * 0x1000000 + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) : n;
  let pos = start;
  let remaining = 1;
  let count = 0;
  while (remaining > 0 && pos < n) {
    remaining--;
    if (++count > max) throw proto(`frame holds more than ${max} MessagePack values`);
    const t = b[pos++]!;
    if (t <= 0x7f || t >= 0xe0) continue; // fixint
    if (t <= 0x8f)
      remaining += 2 * (t & 0x0f); // fixmap
    else if (t <= 0x9f)
      remaining += t & 0x0f; // fixarray
    else if (t <= 0xbf)
      pos += t & 0x1f; // fixstr
    else
      switch (t) {
        case 0xc4:
        case 0xd9:
          pos += 1 + (pos < n ? b[pos]! : 0);
          break;
        case 0xc5:
        case 0xda:
          pos += 2 + u16(pos);
          break;
        case 0xc6:
        case 0xdb:
          pos += 4 + u32(pos);
          break;
        case 0xc7:
          pos += 2 + (pos < n ? b[pos]! : 0);
          break;
        case 0xc8:
          pos += 3 + u16(pos);
          break;
        case 0xc9:
          pos += 5 + u32(pos);
          break;
        case 0xcc:
        case 0xd0:
          pos += 1;
          break;
        case 0xcd:
        case 0xd1:
        case 0xd4:
          pos += 2;
          break;
        case 0xd5:
          pos += 3;
          break;
        case 0xca:
        case 0xce:
        case 0xd2:
          pos += 4;
          break;
        case 0xd6:
          pos += 5;
          break;
        case 0xcb:
        case 0xcf:
        case 0xd3:
          pos += 8;
          break;
        case 0xd7:
          pos += 9;
          break;
        case 0xd8:
          pos += 17;
          break;
        case 0xdc:
          remaining += u16(pos);
          pos += 2;
          break;
        case 0xdd:
          remaining += u32(pos);
          pos += 4;
          break;
        case 0xde:
          remaining += 2 * u16(pos);
          pos += 2;
          break;
        case 0xdf:
          remaining += 2 * u32(pos);
          pos += 4;
          break;
        default: // nil, false, true (and 0xc1, which the decoder refuses)
          break;
      }
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * Splits a byte stream into frames, one at a time (`feed`, then `next` until it returns
 * undefined), so a caller can stop between frames. An oversized or malformed frame sets `error`;
 * the frames before it were returned, nothing after (the stream can no longer be trusted).
 * Bytes are joined only once a whole frame is there: a large frame arriving in many reads is
 * copied once.
 */
export class FrameReader {
  private head: Buffer = EMPTY;
  private off = 0;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  /** `head`, or the last of `tail`, is memory the caller reuses (`feed(…, true)`; `keep()`). */
  private headBorrowed = false;
  private lastTailBorrowed = false;
  private readonly maxValues: number;
  error: MetanetError | undefined;
  /** Bytes of the frames returned so far (length prefixes included). */
  consumed = 0;

  /**
   * With `messages`, the tuples of a SEND, DELIVER or EVENT come as a `Message` when they are
   * valid as they are (read straight into it; `fromWire` returns it as it is), as arrays
   * otherwise; without, every frame is the arrays msgpackr reads.
   */
  constructor(
    private readonly maxFrame = DEFAULT_MAX_FRAME,
    private readonly messages = false,
  ) {
    this.maxValues = Math.max(1024, Math.floor(maxFrame / BYTES_PER_VALUE));
  }

  /**
   * More bytes. `borrowed`: `chunk` is memory the caller reuses after this read (a socket's
   * `onread` buffer): frames read from it copy their byte arrays, and `keep()` must be called
   * before the memory is reused.
   */
  feed(chunk: Buffer, borrowed = false): void {
    if (this.error || chunk.length === 0) return;
    if (this.off === this.head.length && this.tail.length === 0) {
      this.head = chunk;
      this.off = 0;
      this.headBorrowed = borrowed;
    } else {
      this.tail.push(chunk);
      this.tailBytes += chunk.length;
      this.lastTailBorrowed = borrowed;
    }
  }

  /** After a borrowed `feed` and the frames read from it: copies what is still buffered out of the borrowed memory. */
  keep(): void {
    if (this.headBorrowed) {
      this.head = this.off < this.head.length ? Buffer.from(this.head.subarray(this.off)) : EMPTY;
      this.off = 0;
      this.headBorrowed = false;
    }
    if (this.lastTailBorrowed) {
      const n = this.tail.length;
      if (n > 0) this.tail[n - 1] = Buffer.from(this.tail[n - 1]!);
      this.lastTailBorrowed = false;
    }
  }

  /** The next complete frame, or undefined (more bytes needed, or `error` is set). */
  next(): Frame | undefined {
    if (this.error || !this.has(4)) return undefined;
    const len = this.head.readUInt32BE(this.off);
    if (len > this.maxFrame)
      return this.fail(proto(`frame of ${len} bytes exceeds the limit of ${this.maxFrame} bytes`));
    if (len === 0) return this.fail(proto('empty frame'));
    if (!this.has(4 + len)) return undefined;
    const head = this.head;
    const copy = this.headBorrowed;
    const start = this.off + 4;
    this.off = start + len;
    this.consumed += 4 + len;
    if (this.off === head.length) {
      this.head = EMPTY;
      this.off = 0;
      this.headBorrowed = false;
    }
    try {
      return decodeAt(head, start, start + len, this.maxValues, this.messages, copy);
    } catch (e) {
      return this.fail(e as MetanetError);
    }
  }

  /** Feed bytes and return every frame they complete (up to a malformed one: see `error`). */
  push(chunk: Buffer): Frame[] {
    this.feed(chunk);
    const frames: Frame[] = [];
    for (let f = this.next(); f !== undefined; f = this.next()) frames.push(f);
    return frames;
  }

  /** Bytes of an incomplete frame still waiting (a peer closing here sent a truncated frame). */
  get pending(): number {
    return this.head.length - this.off + this.tailBytes;
  }

  /** Whether `n` bytes are buffered from the current position; joins the pieces when they are. */
  private has(n: number): boolean {
    const have = this.head.length - this.off;
    if (have >= n) return true;
    if (have + this.tailBytes < n) return false;
    this.head = Buffer.concat([this.head.subarray(this.off), ...this.tail]);
    this.off = 0;
    this.headBorrowed = false;
    this.lastTailBorrowed = false;
    this.tail = [];
    this.tailBytes = 0;
    return true;
  }

  private fail(e: MetanetError): undefined {
    this.error = e;
    this.head = EMPTY;
    this.off = 0;
    this.tail = [];
    this.tailBytes = 0;
    return undefined;
  }
}

/** Field accessors that fail with EPROTO naming the frame and field. */
export const field = {
  int(f: Frame, i: number, name: string): number {
    const v = f[i];
    if (typeof v !== 'number' || !Number.isInteger(v)) throw badField(f, name, 'an integer', v);
    return v;
  },
  /** An integer from 0 to `max` (default 2^53 − 1). */
  uint(f: Frame, i: number, name: string, max = Number.MAX_SAFE_INTEGER): number {
    const v = f[i];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max)
      throw badField(f, name, `an integer from 0 to ${max}`, v);
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
  const got = typeof v === 'number' || typeof v === 'bigint' ? String(v) : kind(v);
  return proto(`${frameName(f[0])} frame: field ${name} must be ${wanted}, got ${got}`);
}

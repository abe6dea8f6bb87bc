import { MetanetError } from '../core/errors.js';
import { Message, type Tuple, type TupleType } from '../core/message.js';

/**
 * MessagePack for the frames of the wire protocol (docs/wire-protocol.md), written and read
 * without msgpackr for what the IPC layer sends: arrays, strings, numbers, booleans, nil,
 * bigints, byte arrays and messages (as their tuples). Byte for byte and value for value what
 * msgpackr writes and reads with wire.ts's options (held to it by property tests in
 * test/ipc/wire.test.ts, and by docs/wire-vectors.json); wire.ts hands anything else to msgpackr.
 */

/** Type codes of tuples on the wire. */
export const TYPE_CODE: Record<TupleType, number> = {
  str: 0,
  int: 1,
  float: 2,
  bool: 3,
  bytes: 4,
  null: 5,
  list: 6,
};

/*
 * The frames this process writes, encoded without msgpackr when they hold only arrays, strings,
 * numbers, booleans, nil, bigints and byte arrays (every frame the IPC layer makes): the same
 * bytes as msgpackr with wire.ts's options (held to it by a property test in
 * test/ipc/wire.test.ts, and by docs/wire-vectors.json), without msgpackr's per-call setup and
 * generic dispatch (~25% of a client's time on pipelined sends).
 * Frames go one after the other into a slab; each frame is a slice of it that later frames never
 * overwrite. Anything else, or a frame that does not fit the rest of the slab, is msgpackr's.
 */
const SLAB = 64 * 1024;
/** A frame starts in a new slab when less than this is left of the current one. */
const SLAB_MIN = 4096;
let slab = Buffer.allocUnsafeSlow(SLAB);
let view = new DataView(slab.buffer, slab.byteOffset, slab.byteLength);
let pos = 0;

/** Where the last frame written lies: `buf` from `start` to `end` (length prefix included). */
export interface Written {
  buf: Buffer;
  start: number;
  end: number;
}
/** The last frame `writeFrameTo` wrote (one object, updated in place: read it before the next write). */
export const written: Written = { buf: slab, start: 0, end: 0 };

/**
 * Write one frame, length prefix included, into the slab; false (nothing written) when it is
 * msgpackr's. Where it lies is in `written`: no Buffer is made for it (a `subarray` costs as
 * much as writing a small frame), the outbox takes the range.
 */
export function writeFrameTo(frame: readonly unknown[]): boolean {
  if (SLAB - pos < SLAB_MIN) {
    slab = Buffer.allocUnsafeSlow(SLAB);
    view = new DataView(slab.buffer, slab.byteOffset, slab.byteLength);
    pos = 0;
  }
  const start = pos;
  pos += 4;
  if (!put(frame)) {
    pos = start;
    return false;
  }
  view.setUint32(start, pos - start - 4);
  written.buf = slab;
  written.start = start;
  written.end = pos;
  return true;
}

/** Writes `v` at `pos`; false when it cannot (a type left to msgpackr, or no room). */
function put(v: unknown): boolean {
  switch (typeof v) {
    case 'string':
      return putStr(v);
    case 'number':
      return putNum(v);
    case 'boolean':
      if (pos >= SLAB) return false;
      slab[pos++] = v ? 0xc3 : 0xc2;
      return true;
    case 'bigint':
      if (v < -0x8000000000000000n || v >= 0x8000000000000000n || pos + 9 > SLAB) return false;
      slab[pos] = 0xd3;
      view.setBigInt64(pos + 1, v);
      pos += 9;
      return true;
    case 'object': {
      if (v === null) {
        if (pos >= SLAB) return false;
        slab[pos++] = 0xc0;
        return true;
      }
      if (Array.isArray(v)) {
        if (v.constructor !== Array) return false;
        const n = v.length;
        if (!putArrayHead(n)) return false;
        for (let i = 0; i < n; i++) if (!put(v[i])) return false;
        return true;
      }
      if (v instanceof Message) return putMessage(v);
      if (v instanceof Uint8Array) {
        const n = v.length;
        if (pos + 5 + n > SLAB) return false;
        if (n < 0x100) {
          slab[pos] = 0xc4;
          slab[pos + 1] = n;
          pos += 2;
        } else if (n < 0x10000) {
          slab[pos] = 0xc5;
          slab[pos + 1] = n >> 8;
          slab[pos + 2] = n & 0xff;
          pos += 3;
        } else {
          slab[pos] = 0xc6;
          view.setUint32(pos + 1, n);
          pos += 5;
        }
        slab.set(v, pos);
        pos += n;
        return true;
      }
      return false;
    }
    default:
      return false;
  }
}

/** An array's header (fixarray, array 16 or array 32) for `n` values; false when the slab is full. */
function putArrayHead(n: number): boolean {
  if (pos + 5 > SLAB) return false;
  if (n < 0x10) slab[pos++] = 0x90 | n;
  else if (n < 0x10000) {
    slab[pos] = 0xdc;
    slab[pos + 1] = n >> 8;
    slab[pos + 2] = n & 0xff;
    pos += 3;
  } else {
    slab[pos] = 0xdd;
    view.setUint32(pos + 1, n);
    pos += 5;
  }
  return true;
}

/** `toWire(m)`, written without making it: [[tag, type code, value], …]. */
function putMessage(m: Message): boolean {
  const ts = m.tuples;
  const n = ts.length;
  if (!putArrayHead(n)) return false;
  for (let i = 0; i < n; i++) {
    const t = ts[i]!;
    if (pos + 2 > SLAB) return false;
    slab[pos++] = 0x93;
    if (!putStr(t.tag)) return false;
    const code = TYPE_CODE[t.type];
    slab[pos++] = code; // 0 … 6: a fixint
    const v = t.value;
    if (t.type === 'list') {
      if (!putMessage(v as Message)) return false;
    } else if (t.type === 'int' && typeof v === 'number' && (v > 0xffffffff || v < -0x80000000)) {
      if (!put(BigInt(v))) return false; // as toWire: an int64, not msgpackr's float64
    } else if (!put(v)) return false;
  }
  return true;
}

/** msgpackr's choices: the smallest int encoding for a 32-bit integer, else a float64. */
function putNum(v: number): boolean {
  if (pos + 9 > SLAB) return false;
  if (v >>> 0 === v) {
    if (v < 0x80) slab[pos++] = v;
    else if (v < 0x100) {
      slab[pos] = 0xcc;
      slab[pos + 1] = v;
      pos += 2;
    } else if (v < 0x10000) {
      slab[pos] = 0xcd;
      slab[pos + 1] = v >> 8;
      slab[pos + 2] = v & 0xff;
      pos += 3;
    } else {
      slab[pos] = 0xce;
      view.setUint32(pos + 1, v);
      pos += 5;
    }
  } else if (v >> 0 === v) {
    if (v >= -0x20) slab[pos++] = 0x100 + v;
    else if (v >= -0x80) {
      slab[pos] = 0xd0;
      slab[pos + 1] = v + 0x100;
      pos += 2;
    } else if (v >= -0x8000) {
      slab[pos] = 0xd1;
      view.setInt16(pos + 1, v);
      pos += 3;
    } else {
      slab[pos] = 0xd2;
      view.setInt32(pos + 1, v);
      pos += 5;
    }
  } else {
    slab[pos] = 0xcb;
    view.setFloat64(pos + 1, v);
    pos += 9;
  }
  return true;
}

/** msgpackr's UTF-8: its own loop below 64 characters (lone surrogates as 3 bytes), the buffer's encoder above. */
function putStr(s: string): boolean {
  const n = s.length;
  if (n < 0x40) {
    const head = n < 0x20 ? 1 : 2;
    if (pos + head + n * 3 > SLAB) return false;
    let p = pos + head;
    for (let i = 0; i < n; i++) {
      let c1 = s.charCodeAt(i);
      if (c1 < 0x80) slab[p++] = c1;
      else if (c1 < 0x800) {
        slab[p++] = (c1 >> 6) | 0xc0;
        slab[p++] = (c1 & 0x3f) | 0x80;
      } else {
        const c2 = s.charCodeAt(i + 1);
        if ((c1 & 0xfc00) === 0xd800 && (c2 & 0xfc00) === 0xdc00) {
          c1 = 0x10000 + ((c1 & 0x03ff) << 10) + (c2 & 0x03ff);
          i++;
          slab[p++] = (c1 >> 18) | 0xf0;
          slab[p++] = ((c1 >> 12) & 0x3f) | 0x80;
          slab[p++] = ((c1 >> 6) & 0x3f) | 0x80;
          slab[p++] = (c1 & 0x3f) | 0x80;
        } else {
          slab[p++] = (c1 >> 12) | 0xe0;
          slab[p++] = ((c1 >> 6) & 0x3f) | 0x80;
          slab[p++] = (c1 & 0x3f) | 0x80;
        }
      }
    }
    const len = p - pos - head;
    if (len < 0x20) slab[pos] = 0xa0 | len;
    else {
      // at most 63 × 3 bytes: str8
      if (head < 2) slab.copyWithin(pos + 2, pos + 1, pos + 1 + len);
      slab[pos] = 0xd9;
      slab[pos + 1] = len;
    }
    pos += (len < 0x20 ? 1 : 2) + len;
    return true;
  }
  const head = n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
  if (pos + head + n * 3 > SLAB) return false;
  const len = slab.write(s, pos + head, SLAB - pos - head, 'utf8');
  if (len < 0x100) {
    slab[pos] = 0xd9;
    slab[pos + 1] = len;
    pos += 2;
  } else if (len < 0x10000) {
    if (head < 3) slab.copyWithin(pos + 3, pos + 2, pos + 2 + len);
    slab[pos] = 0xda;
    slab[pos + 1] = len >> 8;
    slab[pos + 2] = len & 0xff;
    pos += 3;
  } else {
    if (head < 5) slab.copyWithin(pos + 5, pos + 3, pos + 3 + len);
    slab[pos] = 0xdb;
    view.setUint32(pos + 1, len);
    pos += 5;
  }
  pos += len;
  return true;
}

/*
 * Frames read without msgpackr when they hold only arrays, ASCII strings, ints, floats,
 * booleans, nil and byte arrays: the values msgpackr would return with wire.ts's options
 * (held to it by a property test in test/ipc/wire.test.ts). Anything else — a map, an
 * extension, a non-ASCII string, a truncated value, bytes left over — is msgpackr's, which
 * reads it or says what is wrong with it.
 */
export const NO: unique symbol = Symbol('not read here');
/** Node's Buffer has it (what `toString('latin1', …)` calls), its types do not. */
type Latin1Buffer = Buffer & { latin1Slice(start: number, end: number): string };
let rsrc: Buffer = Buffer.alloc(0);
let rview = new DataView(rsrc.buffer, 0, 0);
let rpos = 0;
let rend = 0;
/** Byte arrays are copied out of the frame (its memory is reused after the read). */
let rcopy = false;

/**
 * The frame in bytes `start` to `end` of `b`, or NO (msgpackr's to read). With `messages`, the
 * tuples of a SEND, DELIVER or EVENT are read straight into a `Message` when `fromWire` would
 * accept them as they are (and left as arrays otherwise, for `fromWire` to name what is wrong).
 * With `copy`, byte arrays are copies, not views of `b`.
 */
export function readFrame(b: Buffer, start: number, end: number, messages: boolean, copy: boolean): unknown {
  rcopy = copy;
  if (rsrc !== b) {
    rsrc = b;
    rview = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
  rpos = start;
  rend = end;
  let v: unknown = NO;
  const h = b[start]!;
  if (messages && h >= 0x90 && h < 0xa0 && start + 1 < end) {
    const at = TUPLES_AT[b[start + 1]!];
    if (at !== undefined && at < (h & 0x0f)) v = readCarrier(h & 0x0f, at);
  }
  if (v === NO) {
    // not a frame carrying a message, or its tuples are for `fromWire` to read and judge
    rpos = start;
    v = read();
  }
  return rpos === end ? v : NO;
}

/** Lists in a message nest at most this deep (the message itself is depth 0). */
export const MAX_DEPTH = 32;
/**
 * Where the frames that carry a message hold its tuples: SEND `[1, id, path, tuples]`, DELIVER
 * `[5, did, lid, path, tuples]`, EVENT `[10, mid, path, tuples, listened]`.
 */
const TUPLES_AT: (number | undefined)[] = [];
TUPLES_AT[1] = 3;
TUPLES_AT[5] = 4;
TUPLES_AT[10] = 3;

/**
 * A frame of `n` values (its header at `rpos`) whose value `at` is a message: read straight
 * into a `Message` (no `[tag, type, value]` arrays for `fromWire` to turn into tuples). NO when
 * anything in it is not what `fromWire` would accept as it is: the caller reads the frame again
 * the general way, and `fromWire` names what is wrong.
 */
function readCarrier(n: number, at: number): unknown[] | typeof NO {
  rpos++;
  if (n > rend - rpos) return NO;
  const out: unknown[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const v = i === at ? readMessage(0) : read();
    if (v === NO) return NO;
    out[i] = v;
  }
  return out;
}

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;

/**
 * The tuple of type code 0–5 holding the decoded value `v`, as `fromWire` (wire.ts) takes it; undefined
 * when `v` does not fit the code (an int beyond 64 bits included, which `fromWire` names). Shared by
 * `fromWire` and the direct reader below, so both accept the same tuples.
 */
export function scalarTuple(tag: string, code: unknown, v: unknown): Tuple | undefined {
  switch (code) {
    case 0:
      return typeof v === 'string' ? { tag, type: 'str', value: v } : undefined;
    case 1:
      // msgpackr reads ints up to 32 bits as numbers and wider ones as bigints: a number outside
      // that range (or with a fraction) was written as a float
      if (typeof v === 'number')
        return Number.isInteger(v) && v >= -0x80000000 && v <= 0xffffffff
          ? { tag, type: 'int', value: v }
          : undefined;
      if (typeof v === 'bigint' && v >= INT64_MIN && v <= INT64_MAX)
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
    default:
      return undefined;
  }
}

/** `fromWire` of the array at `rpos`, for tuples it accepts as they are; NO for anything else. */
function readMessage(depth: number): Message | typeof NO {
  if (depth > MAX_DEPTH || rpos >= rend) return NO;
  const b = rsrc;
  const h = b[rpos]!;
  let n: number;
  if (h >= 0x90 && h < 0xa0) {
    n = h & 0x0f;
    rpos++;
  } else if (h === 0xdc && rpos + 3 <= rend) {
    n = rview.getUint16(rpos + 1);
    rpos += 3;
  } else return NO;
  // every tuple takes 4 bytes at least
  if (4 * n > rend - rpos) return NO;
  const out: Tuple[] = new Array(n);
  for (let i = 0; i < n; i++) {
    if (b[rpos] !== 0x93) return NO;
    rpos++;
    const th = b[rpos++]!;
    if (th <= 0xa0 || th >= 0xc0) return NO; // a tag: a short string, not empty
    const tag = readStr(th & 0x1f);
    if (tag === NO || rpos >= rend) return NO;
    const code = b[rpos++]!;
    let t: Tuple | undefined;
    if (code === 6) {
      const value = readMessage(depth + 1);
      if (value === NO) return NO;
      t = { tag, type: 'list', value };
    } else {
      t = scalarTuple(tag, code, read());
      if (t === undefined) return NO;
    }
    out[i] = t;
  }
  return new Message(out);
}

function read(): unknown {
  if (rpos >= rend) return NO;
  const b = rsrc;
  const t = b[rpos++]!;
  if (t < 0x80) return t;
  if (t >= 0xe0) return t - 0x100;
  if (t >= 0xa0 && t < 0xc0) return readStr(t & 0x1f);
  if (t >= 0x90 && t < 0xa0) return readArray(t & 0x0f);
  let n: number;
  switch (t) {
    // maps are msgpackr's, but not a count of entries the frame cannot hold (see readArray)
    case 0xde:
      if (rpos + 2 <= rend && 2 * rview.getUint16(rpos) > rend - rpos - 2)
        throw truncated(rview.getUint16(rpos), 'entries', rend - rpos - 2);
      return NO;
    case 0xdf:
      if (rpos + 4 <= rend && 2 * rview.getUint32(rpos) > rend - rpos - 4)
        throw truncated(rview.getUint32(rpos), 'entries', rend - rpos - 4);
      return NO;
    case 0xc0:
      return null;
    case 0xc2:
      return false;
    case 0xc3:
      return true;
    case 0xcc:
      return rpos + 1 <= rend ? b[rpos++] : NO;
    case 0xcd:
      if (rpos + 2 > rend) return NO;
      rpos += 2;
      return rview.getUint16(rpos - 2);
    case 0xce:
      if (rpos + 4 > rend) return NO;
      rpos += 4;
      return rview.getUint32(rpos - 4);
    case 0xcf:
      if (rpos + 8 > rend) return NO;
      rpos += 8;
      return rview.getBigUint64(rpos - 8);
    case 0xd0:
      if (rpos + 1 > rend) return NO;
      rpos += 1;
      return rview.getInt8(rpos - 1);
    case 0xd1:
      if (rpos + 2 > rend) return NO;
      rpos += 2;
      return rview.getInt16(rpos - 2);
    case 0xd2:
      if (rpos + 4 > rend) return NO;
      rpos += 4;
      return rview.getInt32(rpos - 4);
    case 0xd3:
      if (rpos + 8 > rend) return NO;
      rpos += 8;
      return rview.getBigInt64(rpos - 8);
    case 0xca:
      if (rpos + 4 > rend) return NO;
      rpos += 4;
      return rview.getFloat32(rpos - 4);
    case 0xcb:
      if (rpos + 8 > rend) return NO;
      rpos += 8;
      return rview.getFloat64(rpos - 8);
    case 0xd9:
      return rpos + 1 <= rend ? readStr(b[rpos++]!) : NO;
    case 0xda:
      if (rpos + 2 > rend) return NO;
      rpos += 2;
      return readStr(rview.getUint16(rpos - 2));
    case 0xdb:
      if (rpos + 4 > rend) return NO;
      rpos += 4;
      return readStr(rview.getUint32(rpos - 4));
    case 0xdc:
      if (rpos + 2 > rend) return NO;
      rpos += 2;
      return readArray(rview.getUint16(rpos - 2));
    case 0xdd:
      if (rpos + 4 > rend) return NO;
      rpos += 4;
      return readArray(rview.getUint32(rpos - 4));
    case 0xc4:
      if (rpos + 1 > rend) return NO;
      n = b[rpos++]!;
      break;
    case 0xc5:
      if (rpos + 2 > rend) return NO;
      rpos += 2;
      n = rview.getUint16(rpos - 2);
      break;
    case 0xc6:
      if (rpos + 4 > rend) return NO;
      rpos += 4;
      n = rview.getUint32(rpos - 4);
      break;
    default:
      return NO;
  }
  // bin: a view of the frame's bytes, as msgpackr gives it (a copy of them, from reused memory)
  if (rpos + n > rend) return NO;
  rpos += n;
  return rcopy ? Buffer.from(b.subarray(rpos - n, rpos)) : b.subarray(rpos - n, rpos);
}

function truncated(n: number, what: string, left: number): MetanetError {
  return new MetanetError(
    'EPROTO',
    `frame is not valid MessagePack: ${n} ${what} announced, ${left} bytes left`,
  );
}

/**
 * Short strings recently read, by a hash of their bytes: tags, paths and names come again and
 * again, and a string found here (its bytes compared) costs no allocation and no native call.
 */
const SHORT = 32;
const strings: (string | undefined)[] = new Array(4096);

function readStr(n: number): string | typeof NO {
  const from = rpos;
  const to = from + n;
  if (to > rend) return NO;
  const b = rsrc;
  if (n > SHORT) {
    for (let i = from; i < to; i++) if (b[i]! >= 0x80) return NO;
    rpos = to;
    return (b as Latin1Buffer).latin1Slice(from, to);
  }
  let h = n;
  for (let i = from; i < to; i++) {
    const c = b[i]!;
    if (c >= 0x80) return NO;
    h = (Math.imul(h, 31) + c) | 0;
  }
  rpos = to;
  const slot = (h ^ (h >>> 12)) & 4095;
  const known = strings[slot];
  if (known !== undefined && known.length === n) {
    let i = 0;
    while (i < n && known.charCodeAt(i) === b[from + i]) i++;
    if (i === n) return known;
  }
  const fresh = (b as Latin1Buffer).latin1Slice(from, to);
  strings[slot] = fresh;
  return fresh;
}

function readArray(n: number): unknown[] | typeof NO {
  // every element takes a byte at least: a count beyond the bytes left is a truncated frame,
  // refused here at once (msgpackr would first make the array: 0.2 s for a 6-byte frame)
  if (n > rend - rpos) throw truncated(n, 'values', rend - rpos);
  const out: unknown[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const v = read();
    if (v === NO) return NO;
    out[i] = v;
  }
  return out;
}

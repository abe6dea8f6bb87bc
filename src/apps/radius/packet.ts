import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { MetanetError } from '../../core/errors.js';
import { A, Code } from './attributes.js';

/**
 * The RADIUS packet codec (RFC 2865 §3, §5): header, attributes, vendor attributes (RFC 2865 §5.26
 * recommended layout), the Request/Response Authenticators, Message-Authenticator (RFC 3579 §3.2,
 * RFC 5176 §3.1), User-Password hiding (PAP) and CHAP. Pure functions over Buffers, no state:
 * a decoder fed any bytes either returns a packet or throws EPROTO, nothing else (fuzzed in
 * test/apps/radius/unit.test.ts).
 */

export const HEADER = 20;
export const MAX_PACKET = 4096;
const MA_LEN = 16;

/** One attribute. A vendor attribute has `vendor` set and `type` is its vendor type. */
export interface Attr {
  readonly type: number;
  readonly vendor?: number;
  readonly value: Buffer;
}

export interface Packet {
  readonly code: number;
  readonly id: number;
  readonly authenticator: Buffer;
  readonly attrs: readonly Attr[];
}

const bad = (why: string): never => {
  throw new MetanetError('EPROTO', `RADIUS: ${why}`);
};

// ------------------------------------------------------------------------------ attribute values

export const attr = {
  /** A string attribute (UTF-8). */
  str: (type: number, s: string, vendor?: number): Attr => ({ type, vendor, value: Buffer.from(s, 'utf8') }),
  bytes: (type: number, b: Uint8Array, vendor?: number): Attr => ({ type, vendor, value: Buffer.from(b) }),
  /** A 32-bit unsigned integer (clamped to 0..2^32-1). */
  int: (type: number, n: number, vendor?: number): Attr => {
    const v = Buffer.alloc(4);
    v.writeUInt32BE(Math.max(0, Math.min(0xffffffff, Math.floor(n))));
    return { type, vendor, value: v };
  },
  ip: (type: number, a: string, vendor?: number): Attr => {
    const parts = a.split('.').map(Number);
    if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255))
      bad(`not an IPv4 address: ${a}`);
    return { type, vendor, value: Buffer.from(parts) };
  },
};

/** The first attribute of this type (and vendor). */
export function find(p: Packet | readonly Attr[], type: number, vendor?: number): Attr | undefined {
  const attrs = 'attrs' in p ? p.attrs : p;
  return attrs.find((a) => a.type === type && a.vendor === vendor);
}

export function findAll(p: Packet | readonly Attr[], type: number, vendor?: number): Attr[] {
  const attrs = 'attrs' in p ? p.attrs : p;
  return attrs.filter((a) => a.type === type && a.vendor === vendor);
}

/** An integer attribute's value; undefined when absent or not 4 bytes. */
export function intOf(p: Packet | readonly Attr[], type: number, vendor?: number): number | undefined {
  const a = find(p, type, vendor);
  return a && a.value.length === 4 ? a.value.readUInt32BE(0) : undefined;
}

export function textOf(p: Packet | readonly Attr[], type: number, vendor?: number): string | undefined {
  const a = find(p, type, vendor);
  return a ? a.value.toString('utf8') : undefined;
}

export function ipOf(p: Packet | readonly Attr[], type: number): string | undefined {
  const a = find(p, type);
  return a && a.value.length === 4 ? [...a.value].join('.') : undefined;
}

// ------------------------------------------------------------------------------------ the codec

/** Bytes → packet. Throws EPROTO (never anything else) on anything malformed. */
export function decode(buf: Uint8Array): Packet {
  if (buf.length < HEADER) bad(`packet of ${buf.length} bytes is shorter than the header`);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  const length = b.readUInt16BE(2);
  if (length < HEADER || length > MAX_PACKET) bad(`length field ${length} is not 20..4096`);
  if (length > b.length) bad(`length field ${length} is beyond the ${b.length} bytes received`);
  const attrs: Attr[] = [];
  for (let o = HEADER; o < length; ) {
    if (o + 2 > length) bad(`attribute header cut off at byte ${o}`);
    const type = b[o]!;
    const len = b[o + 1]!;
    if (len < 2) bad(`attribute ${type} has length ${len}`);
    if (o + len > length) bad(`attribute ${type} (length ${len}) runs past the packet`);
    const value = Buffer.from(b.subarray(o + 2, o + len));
    if (type === A.MessageAuthenticator && value.length !== MA_LEN)
      bad(`Message-Authenticator of ${value.length} bytes`);
    if (type === A.VendorSpecific) attrs.push(...vendorAttrs(value));
    else attrs.push({ type, value });
    o += len;
  }
  return { code: b[0]!, id: b[1]!, authenticator: Buffer.from(b.subarray(4, HEADER)), attrs };
}

/** A Vendor-Specific value → its sub-attributes; kept whole (type 26) when not in the usual layout. */
function vendorAttrs(v: Buffer): Attr[] {
  const whole = [{ type: A.VendorSpecific, value: v }];
  if (v.length < 6) return whole;
  const vendor = v.readUInt32BE(0);
  const out: Attr[] = [];
  for (let o = 4; o < v.length; ) {
    if (o + 2 > v.length) return whole;
    const len = v[o + 1]!;
    if (len < 2 || o + len > v.length) return whole;
    out.push({ type: v[o]!, vendor, value: Buffer.from(v.subarray(o + 2, o + len)) });
    o += len;
  }
  return out;
}

/** Packet → bytes (the authenticator as given; signing is separate). One vendor attribute per Vendor-Specific. */
export function encode(p: Packet): Buffer {
  if (p.authenticator.length !== 16) bad('the authenticator must be 16 bytes');
  const parts: Buffer[] = [];
  let length = HEADER;
  for (const a of p.attrs) {
    let raw: Buffer;
    if (a.vendor !== undefined) {
      if (a.value.length > 247) bad(`vendor attribute ${a.vendor}/${a.type} longer than 247 bytes`);
      raw = Buffer.alloc(8 + a.value.length);
      raw[0] = A.VendorSpecific;
      raw[1] = raw.length;
      raw.writeUInt32BE(a.vendor, 2);
      raw[6] = a.type;
      raw[7] = 2 + a.value.length;
      a.value.copy(raw, 8);
    } else {
      if (a.value.length > 253) bad(`attribute ${a.type} longer than 253 bytes`);
      raw = Buffer.alloc(2 + a.value.length);
      raw[0] = a.type;
      raw[1] = raw.length;
      a.value.copy(raw, 2);
    }
    parts.push(raw);
    length += raw.length;
  }
  if (length > MAX_PACKET) bad(`packet of ${length} bytes is over 4096`);
  const head = Buffer.alloc(HEADER);
  head[0] = p.code;
  head[1] = p.id;
  head.writeUInt16BE(length, 2);
  p.authenticator.copy(head, 4);
  return Buffer.concat([head, ...parts], length);
}

/** Offset of the Message-Authenticator's value in an encoded packet, or -1. */
export function maOffset(b: Buffer): number {
  const length = Math.min(b.length, b.readUInt16BE(2));
  for (let o = HEADER; o + 2 <= length; ) {
    const len = b[o + 1]!;
    if (len < 2) return -1;
    if (b[o] === A.MessageAuthenticator && len === MA_LEN + 2) return o + 2;
    o += len;
  }
  return -1;
}

// ---------------------------------------------------------------------------------- signatures

const md5 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('md5');
  for (const p of parts) h.update(p);
  return h.digest();
};
const hmac = (secret: string, data: Uint8Array): Buffer => createHmac('md5', secret).update(data).digest();
const same = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && timingSafeEqual(a, b);

/** Requests whose Request Authenticator is an MD5 over the packet (not random). */
const HASHED_REQUESTS: ReadonlySet<number> = new Set([
  Code.AccountingRequest,
  Code.DisconnectRequest,
  Code.CoaRequest,
]);

/** A fresh random Request Authenticator (Access-Request, Status-Server). */
export const randomAuthenticator = (): Buffer => randomBytes(16);

/**
 * Encode and sign a request. Access-Request / Status-Server: `p.authenticator` is the random
 * Request Authenticator, the Message-Authenticator is HMAC-MD5 over the packet with it in place.
 * Accounting-, Disconnect- and CoA-Request: the Message-Authenticator is computed with the
 * authenticator field zeroed, then the Request Authenticator is MD5(packet with zeros + secret)
 * (RFC 2866 §3, RFC 5176 §3.1, as FreeRADIUS does). With `messageAuthenticator` an empty
 * Message-Authenticator is added unless the packet has one.
 */
export function signRequest(
  p: Packet,
  secret: string,
  opts: { messageAuthenticator?: boolean } = {},
): Buffer {
  const hashed = HASHED_REQUESTS.has(p.code);
  const withMa =
    opts.messageAuthenticator && !find(p, A.MessageAuthenticator)
      ? { ...p, attrs: [...p.attrs, { type: A.MessageAuthenticator, value: Buffer.alloc(MA_LEN) }] }
      : p;
  const b = encode(hashed ? { ...withMa, authenticator: Buffer.alloc(16) } : withMa);
  const ma = maOffset(b);
  if (ma >= 0) {
    b.fill(0, ma, ma + MA_LEN);
    hmac(secret, b).copy(b, ma);
  }
  if (hashed) md5(b, Buffer.from(secret, 'utf8')).copy(b, 4);
  return b;
}

/**
 * Encode and sign a response to a request with Request Authenticator `requestAuth`: the
 * Message-Authenticator (added with `messageAuthenticator`) is HMAC-MD5 over the packet with
 * `requestAuth` in the authenticator field; the Response Authenticator is
 * MD5(Code+Identifier+Length+RequestAuth+Attributes+Secret) (RFC 2865 §3).
 */
export function signResponse(
  p: Packet,
  requestAuth: Buffer,
  secret: string,
  opts: { messageAuthenticator?: boolean } = {},
): Buffer {
  const withMa =
    opts.messageAuthenticator && !find(p, A.MessageAuthenticator)
      ? { ...p, attrs: [...p.attrs, { type: A.MessageAuthenticator, value: Buffer.alloc(MA_LEN) }] }
      : p;
  const b = encode({ ...withMa, authenticator: requestAuth });
  const ma = maOffset(b);
  if (ma >= 0) {
    b.fill(0, ma, ma + MA_LEN);
    hmac(secret, b).copy(b, ma);
  }
  md5(b, Buffer.from(secret, 'utf8')).copy(b, 4);
  return b;
}

export type Verdict = { readonly ok: true } | { readonly ok: false; readonly why: string };
const OK: Verdict = { ok: true };

/**
 * Check an answer against the request it answers: the Response Authenticator, and the
 * Message-Authenticator when present (required with `requireMessageAuthenticator`: the BlastRADIUS
 * hardening for Access-Accept/Reject/Challenge). Timing-safe comparisons.
 */
export function verifyResponse(
  raw: Buffer,
  requestAuth: Buffer,
  secret: string,
  opts: { requireMessageAuthenticator?: boolean } = {},
): Verdict {
  if (raw.length < HEADER) return { ok: false, why: 'short packet' };
  const length = raw.readUInt16BE(2);
  if (length < HEADER || length > raw.length) return { ok: false, why: 'bad length' };
  const b = Buffer.from(raw.subarray(0, length));
  const got = Buffer.from(b.subarray(4, HEADER));
  requestAuth.copy(b, 4);
  if (!same(md5(b, Buffer.from(secret, 'utf8')), got))
    return { ok: false, why: 'Response Authenticator does not match (wrong secret?)' };
  const ma = maOffset(b);
  if (ma < 0) return opts.requireMessageAuthenticator ? { ok: false, why: 'no Message-Authenticator' } : OK;
  const mac = Buffer.from(b.subarray(ma, ma + MA_LEN));
  b.fill(0, ma, ma + MA_LEN);
  return same(hmac(secret, b), mac) ? OK : { ok: false, why: 'Message-Authenticator does not match' };
}

/**
 * Check a hashed request (Accounting-, Disconnect-, CoA-Request) as a server: Request
 * Authenticator = MD5(packet with a zero authenticator + secret), and the Message-Authenticator
 * (zero authenticator) when present or required.
 */
export function verifyRequest(
  raw: Buffer,
  secret: string,
  opts: { requireMessageAuthenticator?: boolean } = {},
): Verdict {
  if (raw.length < HEADER) return { ok: false, why: 'short packet' };
  const length = raw.readUInt16BE(2);
  if (length < HEADER || length > raw.length) return { ok: false, why: 'bad length' };
  const b = Buffer.from(raw.subarray(0, length));
  const got = Buffer.from(b.subarray(4, HEADER));
  b.fill(0, 4, HEADER);
  if (!same(md5(b, Buffer.from(secret, 'utf8')), got))
    return { ok: false, why: 'Request Authenticator does not match (wrong secret?)' };
  const ma = maOffset(b);
  if (ma < 0) return opts.requireMessageAuthenticator ? { ok: false, why: 'no Message-Authenticator' } : OK;
  const mac = Buffer.from(b.subarray(ma, ma + MA_LEN));
  b.fill(0, ma, ma + MA_LEN);
  return same(hmac(secret, b), mac) ? OK : { ok: false, why: 'Message-Authenticator does not match' };
}

// ----------------------------------------------------------------------------------- passwords

/** RFC 2865 §5.2: hide a User-Password with the secret and the Request Authenticator. */
export function hidePassword(password: string, secret: string, requestAuth: Buffer): Buffer {
  const pw = Buffer.from(password, 'utf8');
  if (pw.length > 128) bad('User-Password longer than 128 bytes');
  const padded = Buffer.alloc(Math.max(16, Math.ceil(pw.length / 16) * 16));
  pw.copy(padded);
  const out = Buffer.alloc(padded.length);
  const s = Buffer.from(secret, 'utf8');
  let prev: Buffer = requestAuth;
  for (let i = 0; i < padded.length; i += 16) {
    const h = md5(s, prev);
    for (let j = 0; j < 16; j++) out[i + j] = padded[i + j]! ^ h[j]!;
    prev = out.subarray(i, i + 16);
  }
  return out;
}

/** The inverse of `hidePassword` (trailing NULs dropped); for tests and a server side. */
export function revealPassword(hidden: Buffer, secret: string, requestAuth: Buffer): string {
  if (hidden.length < 16 || hidden.length > 128 || hidden.length % 16 !== 0)
    bad(`hidden User-Password of ${hidden.length} bytes`);
  const out = Buffer.alloc(hidden.length);
  const s = Buffer.from(secret, 'utf8');
  let prev: Buffer = requestAuth;
  for (let i = 0; i < hidden.length; i += 16) {
    const h = md5(s, prev);
    for (let j = 0; j < 16; j++) out[i + j] = hidden[i + j]! ^ h[j]!;
    prev = hidden.subarray(i, i + 16);
  }
  const end = out.indexOf(0);
  return out.subarray(0, end < 0 ? out.length : end).toString('utf8');
}

/** RFC 1994 / RFC 2865 §5.3: CHAP-Password = ident + MD5(ident + password + challenge). */
export function chapPassword(ident: number, password: string, challenge: Buffer): Buffer {
  const id = Buffer.from([ident & 0xff]);
  return Buffer.concat([id, md5(id, Buffer.from(password, 'utf8'), challenge)]);
}

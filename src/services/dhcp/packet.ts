/**
 * DHCPv4 packet codec of our own: RFC 2131 (fixed header, magic cookie), RFC 2132 (options, pad,
 * end, option 52 overload of `file`/`sname`), RFC 3396 (long options split into several instances
 * and concatenated on decode). Typed views of option values live in options.ts.
 *
 * Decisions:
 * - Option 52 is framing, like pad and end: the decoder consumes it (sname/file come back empty
 *   when they carried options) and the encoder adds it when the options need the room. It never
 *   appears in `DhcpPacket.options`; giving it to the encoder is an error.
 * - `maxSize` is the option-57 value: the largest IP datagram the client accepts, so the DHCP
 *   message itself may take `maxSize - 28` bytes (IP + UDP headers), as ISC dhcpd reads it.
 *   Values below 576 are raised to 576 (RFC 2132 §9.10 minimum).
 * - A missing END option is accepted when the last option ends exactly at the end of its field;
 *   an option whose length runs past the end is an error.
 * - sname and file are latin1 strings, NUL-terminated unless they fill the field.
 */
import { quadToInt } from './ip.js';

export interface DhcpOption {
  readonly code: number;
  readonly data: Buffer;
}

export interface DhcpPacket {
  op: 1 | 2;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  /** Bit 0x8000 is BROADCAST. */
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** hlen bytes (16 at most). */
  chaddr: Buffer;
  sname: string;
  file: string;
  /** RFC 3396: all instances of a code concatenated, in order of first appearance. */
  options: DhcpOption[];
}

export const MessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;

export const FLAG_BROADCAST = 0x8000;
export const MAGIC_COOKIE = 0x63825363;
/** Fixed header plus magic cookie: options start here. */
export const HEADER_SIZE = 240;
/** BOOTP minimum message size (RFC 1542): shorter packets are padded. */
export const MIN_PACKET_SIZE = 300;
export const DEFAULT_MAX_SIZE = 576;
const IP_UDP_OVERHEAD = 28;

const OPT_PAD = 0;
const OPT_OVERLOAD = 52;
const OPT_END = 255;

const SNAME_OFFSET = 44;
const SNAME_SIZE = 64;
const FILE_OFFSET = 108;
const FILE_SIZE = 128;
const COOKIE_OFFSET = 236;
/** Scratch for encodePacket's header (copied into each packet). */
const HEAD = Buffer.alloc(HEADER_SIZE);

/** A packet that cannot be decoded; `field` names what was wrong and `offset` where. */
export class DhcpDecodeError extends Error {
  override readonly name = 'DhcpDecodeError';
  constructor(
    readonly field: string,
    readonly offset: number,
    detail: string,
  ) {
    super(`DHCP packet: bad ${field} at offset ${offset}: ${detail}`);
  }
}

/** A packet that cannot be encoded (bad field value, options too large even with overload). */
export class DhcpEncodeError extends Error {
  override readonly name = 'DhcpEncodeError';
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(`DHCP packet: cannot encode ${field}: ${detail}`);
  }
}

// ---------------------------------------------------------------- decode

export function decodePacket(input: Uint8Array): DhcpPacket {
  const buf = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (buf.length < HEADER_SIZE)
    throw new DhcpDecodeError('length', buf.length, `${buf.length} bytes, a DHCP packet has at least 240`);
  const op = buf[0]!;
  if (op !== 1 && op !== 2) throw new DhcpDecodeError('op', 0, `${op}, expected 1 (request) or 2 (reply)`);
  const hlen = buf[2]!;
  if (hlen > 16) throw new DhcpDecodeError('hlen', 2, `${hlen}, chaddr holds 16 bytes at most`);
  const cookie = buf.readUInt32BE(COOKIE_OFFSET);
  if (cookie !== MAGIC_COOKIE)
    throw new DhcpDecodeError(
      'cookie',
      COOKIE_OFFSET,
      `0x${cookie.toString(16).padStart(8, '0')}, expected 0x63825363`,
    );

  const acc = new OptionAccumulator();
  readOptionArea(buf, HEADER_SIZE, buf.length, 'options', acc);
  let sname = cString(buf, SNAME_OFFSET, SNAME_SIZE);
  let file = cString(buf, FILE_OFFSET, FILE_SIZE);
  const overload = acc.take(OPT_OVERLOAD);
  if (overload) {
    if (overload.data.length !== 1 || overload.data[0]! < 1 || overload.data[0]! > 3)
      throw new DhcpDecodeError(
        'overload',
        overload.offset,
        `option 52 must be one byte 1, 2 or 3, got ${overload.data.length} byte(s) ${overload.data.toString('hex')}`,
      );
    const v = overload.data[0]!;
    // RFC 3396 §7: options field first, then file, then sname.
    if (v & 1) {
      readOptionArea(buf, FILE_OFFSET, FILE_OFFSET + FILE_SIZE, 'file options', acc);
      file = '';
    }
    if (v & 2) {
      readOptionArea(buf, SNAME_OFFSET, SNAME_OFFSET + SNAME_SIZE, 'sname options', acc);
      sname = '';
    }
    acc.take(OPT_OVERLOAD); // an overload option inside file/sname means nothing
  }

  return {
    op,
    htype: buf[1]!,
    hlen,
    hops: buf[3]!,
    xid: buf.readUInt32BE(4),
    secs: buf.readUInt16BE(8),
    flags: buf.readUInt16BE(10),
    ciaddr: ipAt(buf, 12),
    yiaddr: ipAt(buf, 16),
    siaddr: ipAt(buf, 20),
    giaddr: ipAt(buf, 24),
    chaddr: Buffer.from(buf.subarray(28, 28 + hlen)),
    sname,
    file,
    options: acc.list(),
  };
}

class OptionAccumulator {
  private readonly chunks = new Map<number, { offset: number; parts: Buffer[] }>();

  add(code: number, offset: number, data: Buffer): void {
    const e = this.chunks.get(code);
    if (e) e.parts.push(data);
    else this.chunks.set(code, { offset, parts: [data] });
  }

  take(code: number): { offset: number; data: Buffer } | undefined {
    const e = this.chunks.get(code);
    if (!e) return undefined;
    this.chunks.delete(code);
    return { offset: e.offset, data: joined(e.parts) };
  }

  list(): DhcpOption[] {
    const out: DhcpOption[] = [];
    for (const [code, e] of this.chunks) out.push({ code, data: joined(e.parts) });
    return out;
  }
}

/** The parts of an option as one Buffer (each part is already a copy: one part is used as is). */
function joined(parts: Buffer[]): Buffer {
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

function readOptionArea(buf: Buffer, start: number, end: number, area: string, acc: OptionAccumulator): void {
  let i = start;
  while (i < end) {
    const code = buf[i]!;
    if (code === OPT_PAD) {
      i++;
      continue;
    }
    if (code === OPT_END) return;
    if (i + 1 >= end)
      throw new DhcpDecodeError(`option ${code}`, i, `no length byte: the ${area} field ends at ${end}`);
    const len = buf[i + 1]!;
    if (i + 2 + len > end)
      throw new DhcpDecodeError(
        `option ${code}`,
        i,
        `length ${len} runs past the end of the ${area} field (${end - i - 2} bytes left)`,
      );
    acc.add(code, i, Buffer.from(buf.subarray(i + 2, i + 2 + len)));
    i += 2 + len;
  }
}

function cString(buf: Buffer, off: number, size: number): string {
  const field = buf.subarray(off, off + size);
  const nul = field.indexOf(0);
  return field.toString('latin1', 0, nul < 0 ? size : nul);
}

function ipAt(buf: Buffer, off: number): string {
  return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
}

// ---------------------------------------------------------------- encode

export interface EncodeOptions {
  /** Largest IP datagram the peer accepts (option 57); default 576. */
  maxSize?: number;
}

export function encodePacket(p: DhcpPacket, opts: EncodeOptions = {}): Buffer {
  const maxSize = Math.min(Math.max(opts.maxSize ?? DEFAULT_MAX_SIZE, DEFAULT_MAX_SIZE), 65535);
  const limit = maxSize - IP_UDP_OVERHEAD;
  // The header is built in one scratch buffer and copied into the packet (one allocation per packet).
  const head = HEAD.fill(0);
  if (p.op !== 1 && p.op !== 2) throw new DhcpEncodeError('op', `${p.op}, expected 1 or 2`);
  head[0] = p.op;
  head[1] = uint(p.htype, 'htype', 0xff);
  head[2] = uint(p.hlen, 'hlen', 16);
  head[3] = uint(p.hops, 'hops', 0xff);
  head.writeUInt32BE(uint(p.xid, 'xid', 0xffffffff), 4);
  head.writeUInt16BE(uint(p.secs, 'secs', 0xffff), 8);
  head.writeUInt16BE(uint(p.flags, 'flags', 0xffff), 10);
  writeIp(head, 12, p.ciaddr, 'ciaddr');
  writeIp(head, 16, p.yiaddr, 'yiaddr');
  writeIp(head, 20, p.siaddr, 'siaddr');
  writeIp(head, 24, p.giaddr, 'giaddr');
  if (p.chaddr.length !== p.hlen)
    throw new DhcpEncodeError('chaddr', `${p.chaddr.length} bytes but hlen is ${p.hlen}`);
  head.set(p.chaddr, 28);
  writeCString(head, SNAME_OFFSET, SNAME_SIZE, p.sname, 'sname');
  writeCString(head, FILE_OFFSET, FILE_SIZE, p.file, 'file');
  head.writeUInt32BE(MAGIC_COOKIE, COOKIE_OFFSET);

  const opts2 = checkOptions(p.options);
  const simple = optionsSize(opts2) + 1;
  if (HEADER_SIZE + simple <= limit) {
    const out = Buffer.allocUnsafe(Math.max(MIN_PACKET_SIZE, HEADER_SIZE + simple)).fill(0);
    head.copy(out);
    const w = new AreaWriter(out, HEADER_SIZE, out.length);
    for (const o of opts2) w.writeWhole(o.code, o.data);
    w.end();
    return out;
  }
  return encodeOverloaded(head, opts2, limit, p);
}

/**
 * Options do not fit in the options field: spill into file, then sname (RFC 2132 §9.3). First try
 * keeping each option of at most 255 bytes in one piece (old clients do not join RFC 3396 pieces);
 * if that wastes too much room, pack tightly, splitting options at area boundaries.
 */
function encodeOverloaded(
  head: Buffer,
  options: readonly DhcpOption[],
  limit: number,
  p: DhcpPacket,
): Buffer {
  return (
    layOut(head, options, limit, p, true) ?? layOut(head, options, limit, p, false) ?? fail(options, limit, p)
  );
}

function fail(options: readonly DhcpOption[], limit: number, p: DhcpPacket): never {
  const room =
    limit - HEADER_SIZE - 4 + (p.file === '' ? FILE_SIZE - 1 : 0) + (p.sname === '' ? SNAME_SIZE - 1 : 0);
  throw new DhcpEncodeError(
    'options',
    `${optionsSize(options)} bytes of options do not fit in a ${limit}-byte message even with sname/file ` +
      `overload (${room} bytes of room); raise maxSize (option 57) or send fewer options`,
  );
}

function layOut(
  head: Buffer,
  options: readonly DhcpOption[],
  limit: number,
  p: DhcpPacket,
  keepWhole: boolean,
): Buffer | undefined {
  const out = Buffer.alloc(limit);
  head.copy(out);
  const areas: AreaWriter[] = [new AreaWriter(out, HEADER_SIZE + 3, limit)]; // 3: room for option 52
  if (p.file === '') areas.push(new AreaWriter(out, FILE_OFFSET, FILE_OFFSET + FILE_SIZE, 1));
  if (p.sname === '') areas.push(new AreaWriter(out, SNAME_OFFSET, SNAME_OFFSET + SNAME_SIZE, 2));
  let a = 0;
  for (const o of options) {
    let data = o.data;
    for (;;) {
      const area = areas[a];
      if (!area) return undefined;
      if (data.length <= 255 && area.room() >= data.length + 2) {
        area.writeWhole(o.code, data);
        break;
      }
      const next = areas[a + 1];
      if (keepWhole && data.length <= 255 && next && next.room() >= data.length + 2) {
        a++;
        continue;
      }
      const fit = Math.min(255, area.room() - 2);
      if (fit <= 0) {
        a++;
        continue;
      }
      area.writeWhole(o.code, data.subarray(0, fit));
      data = data.subarray(fit);
      if (data.length === 0) break;
    }
  }
  let overload = 0;
  for (const area of areas) {
    area.end();
    if (!area.empty()) overload |= area.bit;
  }
  out[HEADER_SIZE] = OPT_OVERLOAD;
  out[HEADER_SIZE + 1] = 1;
  out[HEADER_SIZE + 2] = overload;
  return out;
}

/** Writes TLVs into [start, end), always keeping one byte for END. */
class AreaWriter {
  private at: number;
  constructor(
    private readonly out: Buffer,
    private readonly start: number,
    private readonly stop: number,
    readonly bit = 0,
  ) {
    this.at = start;
  }
  room(): number {
    return this.stop - 1 - this.at;
  }
  empty(): boolean {
    return this.at === this.start;
  }
  writeWhole(code: number, data: Buffer): void {
    // Called only with data that fits, or (simple layout) with options of any length: split at 255.
    let off = 0;
    do {
      const n = Math.min(255, data.length - off);
      this.out[this.at] = code;
      this.out[this.at + 1] = n;
      data.copy(this.out, this.at + 2, off, off + n);
      this.at += 2 + n;
      off += n;
    } while (off < data.length);
  }
  end(): void {
    if (this.bit && this.empty()) return; // unused overload field stays all zero
    this.out[this.at] = OPT_END;
  }
}

/** checkOptions' record of the codes seen: `seenIn[code] === checks` when seen in this check. */
const seenIn = new Uint32Array(256);
let checks = 0;

function checkOptions(options: readonly DhcpOption[]): readonly DhcpOption[] {
  if (++checks === 0xffffffff) {
    seenIn.fill(0);
    checks = 1;
  }
  for (const o of options) {
    if (!Number.isInteger(o.code) || o.code < 1 || o.code > 254)
      throw new DhcpEncodeError(`option ${o.code}`, 'codes are 1..254 (0 is pad, 255 is end)');
    if (o.code === OPT_OVERLOAD)
      throw new DhcpEncodeError('option 52', 'overload is added by the encoder when the options need it');
    if (seenIn[o.code] === checks)
      throw new DhcpEncodeError(
        `option ${o.code}`,
        'given twice: give it once with the data concatenated (RFC 3396)',
      );
    if (!Buffer.isBuffer(o.data)) throw new DhcpEncodeError(`option ${o.code}`, 'data is not a Buffer');
    seenIn[o.code] = checks;
  }
  return options;
}

/** Bytes taken by the options as TLVs, each split into instances of 255 bytes at most. */
function optionsSize(options: readonly DhcpOption[]): number {
  let n = 0;
  for (const o of options) n += o.data.length + 2 * Math.max(1, Math.ceil(o.data.length / 255));
  return n;
}

function uint(v: number, field: string, max: number): number {
  if (!Number.isInteger(v) || v < 0 || v > max)
    throw new DhcpEncodeError(field, `${v}, expected an integer 0..${max}`);
  return v;
}

function writeIp(buf: Buffer, off: number, ip: string, field: string): void {
  const n = ip === '0.0.0.0' ? 0 : quadToInt(ip, true);
  if (n < 0) throw new DhcpEncodeError(field, `${JSON.stringify(ip)} is not a dotted-quad IPv4 address`);
  buf.writeUInt32BE(n, off);
}

/** Bytes of a dotted-quad address, or undefined when it is not one. */
export function ipv4Bytes(ip: string): number[] | undefined {
  const n = quadToInt(ip, true);
  return n < 0 ? undefined : [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
}

function writeCString(buf: Buffer, off: number, size: number, s: string, field: string): void {
  if (typeof s !== 'string') throw new DhcpEncodeError(field, 'not a string');
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0 || c > 0xff)
      throw new DhcpEncodeError(field, `character ${i} (U+${c.toString(16)}) is not latin1 or is NUL`);
  }
  if (s.length > size) throw new DhcpEncodeError(field, `${s.length} bytes, the field holds ${size}`);
  buf.write(s, off, 'latin1');
}

// ---------------------------------------------------------------- helpers

/** The client's hardware address as 'aa:bb:cc:dd:ee:ff' (lowercase, hlen bytes). */
export function macOf(p: DhcpPacket): string {
  const c = p.chaddr;
  const n = Math.min(p.hlen, c.length);
  let s = '';
  for (let i = 0; i < n; i++) s += i === 0 ? HEX[c[i]!] : `:${HEX[c[i]!]}`;
  return s;
}

const HEX: readonly string[] = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

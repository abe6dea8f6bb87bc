import { createRequire } from 'node:module';
import type { Answer, DecodedPacket, Packet, Question } from 'dns-packet';

// Loaded with require, not import: the CommonJS package through ESM import costs ~10 MB of RSS
// here, through require ~1.3 MB (bench/footprint).
const dnsPacket = createRequire(import.meta.url)('dns-packet') as typeof import('dns-packet');

/**
 * DNS messages on top of the `dns-packet` codec: what a client's datagram means (a query we
 * serve, one we answer with an error, or one we drop) and the bytes of our answers.
 */

export const RCODES = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
} as const;
export type RcodeName = keyof typeof RCODES;

export function rcodeName(code: number): string {
  for (const [k, v] of Object.entries(RCODES)) if (v === code) return k;
  return `RCODE${code}`;
}

export function isRcodeName(s: string): s is RcodeName {
  return Object.hasOwn(RCODES, s);
}

const QR = 0x8000;
const TC = 0x0200;
const RD = 0x0100;
const RA = 0x0080;
const CD = 0x0010;

/** The UDP payload we advertise upstream and serve at most (the 2020 DNS flag day value). */
export const EDNS_SIZE = 1232;
/** Without EDNS a UDP answer is at most 512 bytes (RFC 1035 §4.2.1). */
const PLAIN_UDP = 512;

/** One client query, decoded. */
export interface Query {
  readonly id: number;
  /** The question exactly as asked (echoed in the answer: case preserved). */
  readonly question: Question;
  /** Lowercase, without the trailing dot (`.` for the root). */
  readonly name: string;
  readonly type: string;
  readonly klass: string;
  /** The client's RD and CD bits. */
  readonly flags: number;
  /** The client's EDNS UDP payload size, when it sent an OPT record. */
  readonly edns: number | undefined;
}

export type Parsed =
  | { readonly kind: 'query'; readonly query: Query }
  /** Not served: `reply` (FORMERR/NOTIMP, header only) when answering is safe, else dropped. */
  | { readonly kind: 'bad'; readonly why: string; readonly reply: Buffer | undefined };

/**
 * What a client sent. Dropped (no reply): shorter than a header, or a response (QR set: answering
 * responses invites loops). Header-only FORMERR: not decodable, not exactly one question, several
 * OPT records, a question for OPT. NOTIMP: an opcode other than QUERY, a class the codec does not
 * know. REFUSED: AXFR/IXFR (a forwarder serves no zone transfers). These replies are 12 bytes,
 * never larger than what came in, so they cannot amplify a spoofed source.
 */
export function parseQuery(buf: Buffer): Parsed {
  if (buf.length < 12) return { kind: 'bad', why: 'shorter than a DNS header', reply: undefined };
  const id = buf.readUInt16BE(0);
  const flags = buf.readUInt16BE(2);
  if (flags & QR) return { kind: 'bad', why: 'a response (QR set), not a query', reply: undefined };
  const opcode = (flags >> 11) & 0xf;
  const err = (why: string, rcode: number): Parsed => ({
    kind: 'bad',
    why,
    reply: headerOnly(id, opcode, flags & RD, rcode),
  });
  if (opcode !== 0) return err(`opcode ${opcode} is not QUERY`, RCODES.NOTIMP);
  if (buf.readUInt16BE(4) !== 1) return err('not exactly one question', RCODES.FORMERR);
  let p: DecodedPacket;
  try {
    p = dnsPacket.decode(buf);
  } catch (e) {
    return err(`not decodable: ${e instanceof Error ? e.message : String(e)}`, RCODES.FORMERR);
  }
  const q = p.questions?.[0];
  if (!q || p.questions?.length !== 1) return err('not exactly one question', RCODES.FORMERR);
  if (typeof q.name !== 'string' || typeof q.type !== 'string')
    return err('a question without name or type', RCODES.FORMERR);
  const qtype = String(q.type);
  const qclass = String(q.class ?? 'IN');
  if (qclass.startsWith('UNKNOWN_')) return err(`class ${qclass.slice(8)} is not served`, RCODES.NOTIMP);
  if (qtype === 'OPT') return err('a question for an OPT record', RCODES.FORMERR);
  if (qtype === 'AXFR' || qtype === 'IXFR') return err('zone transfers are not served', RCODES.REFUSED);
  const opts = (p.additionals ?? []).filter((r) => r.type === 'OPT');
  if (opts.length > 1) return err('several OPT records', RCODES.FORMERR);
  const opt = opts[0];
  const name = q.name.toLowerCase().replace(/\.$/, '') || '.';
  return {
    kind: 'query',
    query: {
      id,
      question: q,
      name,
      type: qtype,
      klass: qclass,
      flags: flags & (RD | CD),
      edns: opt && opt.type === 'OPT' ? Math.max(PLAIN_UDP, opt.udpPayloadSize) : undefined,
    },
  };
}

/** A header-only answer (FORMERR, NOTIMP) to a query whose header we could read. */
function headerOnly(id: number, opcode: number, rd: number, rcode: number): Buffer {
  return dnsPacket.encode({ id, type: 'response', flags: (opcode << 11) | rd | rcode, questions: [] });
}

/** The answer the client gets. */
export interface Outcome {
  readonly rcode: number;
  readonly answers: readonly Answer[];
  readonly authorities: readonly Answer[];
  readonly additionals: readonly Answer[];
}

/**
 * Encode our answer to `q`. Over UDP (`udp` true) it must fit the client's limit (its EDNS size
 * up to 1232, else 512): when it does not, the client gets the question alone with TC set and
 * asks again over TCP (RFC 1035 §4.2.1, RFC 7766).
 */
export function encodeAnswer(q: Query, o: Outcome, udp: boolean): Buffer {
  const opt: Answer[] =
    q.edns === undefined
      ? []
      : [
          {
            type: 'OPT',
            name: '.',
            udpPayloadSize: EDNS_SIZE,
            extendedRcode: 0,
            ednsVersion: 0,
            flags: 0,
            flag_do: false,
            options: [],
          },
        ];
  const packet: Packet = {
    id: q.id,
    type: 'response',
    flags: q.flags | RA | (o.rcode & 0xf),
    questions: [q.question],
    answers: [...o.answers],
    authorities: [...o.authorities],
    additionals: [...o.additionals, ...opt],
  };
  const buf = dnsPacket.encode(packet);
  const limit = udp ? Math.min(q.edns ?? PLAIN_UDP, EDNS_SIZE) : 65535;
  if (buf.length <= limit) return buf;
  return dnsPacket.encode({
    ...packet,
    flags: (packet.flags ?? 0) | TC,
    answers: [],
    authorities: [],
    additionals: opt,
  });
}

/** The query we send upstream: a fresh random id, RD, EDNS with our payload size, no DO bit. */
export function upstreamQuery(id: number, name: string, type: string, klass: string): Buffer {
  return dnsPacket.encode({
    id,
    type: 'query',
    flags: RD,
    questions: [{ name, type: type as Question['type'], class: klass as Question['class'] }],
    additionals: [
      {
        type: 'OPT',
        name: '.',
        udpPayloadSize: EDNS_SIZE,
        extendedRcode: 0,
        ednsVersion: 0,
        flags: 0,
        flag_do: false,
        options: [],
      },
    ],
  });
}

/** An upstream response, decoded and checked against what we asked (id and question). */
export interface UpstreamResponse {
  readonly rcode: number;
  readonly truncated: boolean;
  readonly answers: Answer[];
  readonly authorities: Answer[];
  readonly additionals: Answer[];
}

/**
 * Decode `buf` as the answer to our query `id` for name/type/class; undefined when it is not that
 * (another id, another question, not a response, not decodable): the caller keeps waiting.
 */
export function matchResponse(
  buf: Buffer,
  id: number,
  name: string,
  type: string,
  klass: string,
): UpstreamResponse | undefined {
  if (buf.length < 12 || buf.readUInt16BE(0) !== id || !(buf.readUInt16BE(2) & QR)) return undefined;
  let p: DecodedPacket;
  try {
    p = dnsPacket.decode(buf);
  } catch {
    return undefined;
  }
  const q = p.questions;
  if (q?.length !== 1) return undefined;
  const a = q[0]!;
  if (a.name.toLowerCase() !== name.toLowerCase() || a.type !== type || (a.class ?? 'IN') !== klass)
    return undefined;
  const flags = buf.readUInt16BE(2);
  return {
    rcode: flags & 0xf,
    truncated: (flags & TC) !== 0,
    answers: p.answers ?? [],
    authorities: p.authorities ?? [],
    additionals: (p.additionals ?? []).filter((r) => r.type !== 'OPT'),
  };
}

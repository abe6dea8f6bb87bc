import net from 'node:net';
import type { Answer } from 'dns-packet';
import type { Message } from '../../core/message.js';
import { validate } from '../../services/table.js';
import { QUERY, RECORD } from './table.js';

/** Records given as messages by a /dns/query listener → records the codec encodes. */

/** TTL of a hook's record without one, and of the CNAME a rewrite adds (seconds). */
export const HOOK_TTL = 60;
const MAX_TTL = 0x7fffffff;

/**
 * A domain name as hooks may give it: letters, digits, `-` and `_` in labels of 1–63 characters,
 * at most 253 in all; returned lowercase without the trailing dot. Throws saying what is wrong.
 */
export function checkName(s: string): string {
  const n = s.toLowerCase().replace(/\.$/, '');
  if (n.length === 0 || n.length > 253) throw new Error(`${JSON.stringify(s)} is not a domain name (length)`);
  for (const label of n.split('.'))
    if (!/^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/.test(label))
      throw new Error(`${JSON.stringify(s)} is not a domain name (label ${JSON.stringify(label)})`);
  return n;
}

/** The `answer` tuples of a hook's reply as records for the question `name`/`type`. Throws on a bad one. */
export function recordsOf(reply: Message, name: string, type: string): Answer[] {
  const out: Answer[] = [];
  for (const t of reply.all('answer')) {
    if (t.type !== 'list')
      throw new Error(`tuple "answer" is ${t.type}, expected a list {name, type, ttl, data}`);
    const m = t.value;
    validate({ suffix: '/answer', dir: 'in', doc: '', tuples: RECORD }, `${QUERY.suffix} reply answer`, m);
    const owner = m.has('name') ? checkName(m.str('name')) : name;
    const rtype = m.str('type', type).toUpperCase();
    const ttl = m.int('ttl', HOOK_TTL);
    if (!(ttl >= 0 && ttl <= MAX_TTL)) throw new Error(`answer ttl ${ttl} is not 0..${MAX_TTL}`);
    out.push(record(owner, rtype, ttl, m.str('data')));
  }
  return out;
}

function record(name: string, type: string, ttl: number, data: string): Answer {
  const bad = (what: string): never => {
    throw new Error(`answer ${name} ${type}: ${JSON.stringify(data)} is not ${what}`);
  };
  switch (type) {
    case 'A':
      if (!net.isIPv4(data)) bad('an IPv4 address');
      return { name, type, ttl, data };
    case 'AAAA':
      if (!net.isIPv6(data)) bad('an IPv6 address');
      return { name, type, ttl, data };
    case 'CNAME':
    case 'PTR':
    case 'NS':
      return { name, type, ttl, data: checkName(data) };
    case 'TXT':
      return { name, type, ttl, data: chunks(data) };
    case 'MX': {
      const m = /^(\d{1,5})\s+(\S+)$/.exec(data.trim());
      if (!m || Number(m[1]) > 65535) bad('"preference exchange"');
      return { name, type, ttl, data: { preference: Number(m![1]), exchange: checkName(m![2]!) } };
    }
    case 'SRV': {
      const m = /^(\d{1,5})\s+(\d{1,5})\s+(\d{1,5})\s+(\S+)$/.exec(data.trim());
      if (!m || [m[1], m[2], m[3]].some((x) => Number(x) > 65535)) bad('"priority weight port target"');
      return {
        name,
        type,
        ttl,
        data: {
          priority: Number(m![1]),
          weight: Number(m![2]),
          port: Number(m![3]),
          target: checkName(m![4]!),
        },
      };
    }
    default:
      throw new Error(
        `answer ${name}: type ${JSON.stringify(type)} is not one a hook can give (A, AAAA, CNAME, PTR, NS, TXT, MX, SRV)`,
      );
  }
}

/** TXT data: character-strings of at most 255 bytes. */
function chunks(text: string): Buffer[] {
  const b = Buffer.from(text, 'utf8');
  if (b.length === 0) return [b];
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += 255) out.push(b.subarray(i, i + 255));
  return out;
}

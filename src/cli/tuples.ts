import { MetanetError } from '../core/errors.js';
import { Message, type Tuple } from '../core/message.js';

/**
 * The CLI's tuple syntax, one shell argument per tuple (docs/cli.md):
 *   tag=text            str, unless it reads as an int, true/false, null, or a decimal number with
 *                       a point (float); `tag="10"` (JSON string) is always str
 *   tag=str:…  tag=int:…  tag=float:…  tag=bool:…  tag=hex:…  tag=null  tag={a=1 b=x}
 * It is the inverse of `Message.toString()`, so what `listen` prints can be sent back.
 */
export function parseTuples(args: readonly string[]): Message {
  return new Message(args.map(parseTuple));
}

export function parseTuple(arg: string): Tuple {
  const eq = arg.indexOf('=');
  if (eq <= 0) throw bad(arg, 'expected tag=value');
  const tag = arg.slice(0, eq);
  const v = arg.slice(eq + 1);
  const typed = /^(str|int|float|bool|hex):/.exec(v);
  if (typed) {
    const body = v.slice(typed[0].length);
    switch (typed[1]) {
      case 'str':
        return { tag, type: 'str', value: body };
      case 'int':
        if (!/^-?\d+$/.test(body)) throw bad(arg, `"${body}" is not an integer`);
        return { tag, type: 'int', value: intValue(body, arg) };
      case 'float': {
        const f = Number(body);
        if (body.trim() === '' || Number.isNaN(f)) throw bad(arg, `"${body}" is not a number`);
        return { tag, type: 'float', value: f };
      }
      case 'bool':
        if (body !== 'true' && body !== 'false') throw bad(arg, 'bool is true or false');
        return { tag, type: 'bool', value: body === 'true' };
      default:
        if (!/^([0-9a-fA-F]{2})*$/.test(body)) throw bad(arg, 'hex needs pairs of hex digits');
        return { tag, type: 'bytes', value: Buffer.from(body, 'hex') };
    }
  }
  if (v === 'null') return { tag, type: 'null', value: null };
  if (v === 'true' || v === 'false') return { tag, type: 'bool', value: v === 'true' };
  if (/^-?\d+$/.test(v)) return { tag, type: 'int', value: intValue(v, arg) };
  if (/^-?\d+\.\d+([eE][-+]?\d+)?$/.test(v)) return { tag, type: 'float', value: Number(v) };
  if (v.startsWith('"')) {
    try {
      const s: unknown = JSON.parse(v);
      if (typeof s === 'string') return { tag, type: 'str', value: s };
    } catch {}
    throw bad(arg, 'a quoted value must be a JSON string');
  }
  if (v.startsWith('{')) {
    if (!v.endsWith('}')) throw bad(arg, 'a nested list ends with }');
    return { tag, type: 'list', value: parseTuples(split(v.slice(1, -1), arg)) };
  }
  return { tag, type: 'str', value: v };
}

function intValue(s: string, arg: string): number | bigint {
  const b = BigInt(s);
  if (b < -(2n ** 63n) || b >= 2n ** 63n) throw bad(arg, 'integer outside 64 bits');
  return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
}

/** Split a nested list's body at spaces outside quotes and braces. */
function split(body: string, arg: string): string[] {
  const out: string[] = [];
  let cur = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (quoted) {
      cur += c;
      if (c === '\\') cur += body[++i] ?? '';
      else if (c === '"') quoted = false;
    } else if (c === '"') {
      quoted = true;
      cur += c;
    } else if (c === '{') {
      depth++;
      cur += c;
    } else if (c === '}') {
      depth--;
      cur += c;
    } else if (c === ' ' && depth === 0) {
      if (cur) out.push(cur);
      cur = '';
    } else cur += c;
  }
  if (quoted || depth !== 0) throw bad(arg, 'unbalanced quotes or braces');
  if (cur) out.push(cur);
  return out;
}

function bad(arg: string, why: string): MetanetError {
  return new MetanetError('EBADTUPLE', `bad tuple "${arg}": ${why}`);
}

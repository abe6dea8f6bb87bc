import { type ServerResponse, validateHeaderName, validateHeaderValue } from 'node:http';
import { MetanetError } from '../../core/errors.js';
import type { Message, Tuple } from '../../core/message.js';
import { validate } from '../table.js';
import { spec } from './table.js';

const NO_TUPLES: readonly Tuple[] = [];

function bad(path: string, why: string): never {
  throw new MetanetError('EBADTUPLE', `${path}: ${why}`);
}

const RESPONSE = spec('client', '/response');

/** Header names that passed node's check lately: a service answers with a few names over and over. */
const goodNames = new Set<string>();
const GOOD_NAMES_KEPT = 256;

/**
 * Write a `<clientname>/response` message to a node:http response: status `code`, `headers`
 * (a list: tag = header name, str or int value, repeats allowed) and `data` (str or bytes).
 * Content-Length is set from `data` unless the headers give it or Transfer-Encoding.
 * Throws EBADTUPLE naming the tuple or header before anything is written.
 */
export function writeResponse(res: ServerResponse, path: string, m: Message): void {
  // One pass for the three tuples (a tuple given twice: the table's check names it).
  let c: Tuple | undefined;
  let h: Tuple | undefined;
  let d: Tuple | undefined;
  const ts = m.tuples;
  for (let i = 0; i < ts.length; i++) {
    const t = ts[i]!;
    const tag = t.tag;
    if (tag === 'code') {
      if (c !== undefined) validate(RESPONSE, path, m);
      c = t;
    } else if (tag === 'headers') {
      if (h !== undefined) validate(RESPONSE, path, m);
      h = t;
    } else if (tag === 'data') {
      if (d !== undefined) validate(RESPONSE, path, m);
      d = t;
    }
  }
  if (c === undefined) bad(path, 'missing tuple "code" (int): the status code');
  if (c.type !== 'int') bad(path, `tuple "code" is ${c.type}, expected int`);
  const code = Number(c.value);
  if (code < 200 || code > 599) bad(path, `tuple "code" is ${code}, expected a status from 200 to 599`);
  if (h !== undefined && h.type !== 'list') bad(path, `tuple "headers" is ${h.type}, expected list`);
  const hs = h === undefined ? NO_TUPLES : (h.value as Message).tuples;
  const flat: (string | number)[] = new Array(hs.length * 2);
  let framed = false;
  for (let i = 0; i < hs.length; i++) {
    const t = hs[i]!;
    const name = t.tag;
    if (t.type !== 'str' && t.type !== 'int') bad(path, `header "${name}" is ${t.type}, expected str or int`);
    const value = t.type === 'str' ? t.value : String(t.value);
    try {
      if (!goodNames.has(name)) {
        validateHeaderName(name);
        if (goodNames.size >= GOOD_NAMES_KEPT) goodNames.clear();
        goodNames.add(name);
      }
      validateHeaderValue(name, value);
    } catch (e) {
      bad(path, `header "${name}": ${e instanceof Error ? e.message : String(e)}`);
    }
    const lower = name.length === 14 || name.length === 17 ? name.toLowerCase() : '';
    if (lower === 'content-length' || lower === 'transfer-encoding') framed = true;
    flat[i * 2] = name;
    flat[i * 2 + 1] = value;
  }
  let data: string | Uint8Array = '';
  if (d !== undefined) {
    if (d.type === 'str' || d.type === 'bytes') data = d.value;
    else bad(path, `tuple "data" is ${d.type}, expected str or bytes`);
  }
  if (!framed && code !== 204 && code !== 304)
    flat.push('Content-Length', typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength);
  res.writeHead(code, flat as string[]);
  res.end(data);
}

/** A short plain-text answer the service gives by itself (400, 413, 500, 503, 504). */
export function writePlain(res: ServerResponse, code: number, text: string, close = false): void {
  if (res.headersSent || res.destroyed) return;
  const h = ['Content-Type', 'text/plain; charset=utf-8', 'Content-Length', String(Buffer.byteLength(text))];
  if (close) h.push('Connection', 'close');
  res.writeHead(code, h);
  res.end(text);
}

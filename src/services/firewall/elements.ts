import { MetanetError } from '../../core/errors.js';

/**
 * Decode the elements of a set from nft's JSON (`nft -j list set …` output, or the echo of an
 * `add element`): `{"nftables":[…,{"set":{…,"elem":[{"elem":{"val":{"concat":[…]},"timeout":…,
 * "expires":…,"counter":{"packets":…,"bytes":…}}}]}}]}`. An element without options is just its
 * value (no `elem` wrapper). Anything else is an EPROTO error naming what was unexpected.
 */
export interface SetElement {
  /** The concatenation's parts, in order (addresses as text, ports as numbers). */
  readonly key: readonly (string | number)[];
  /** Seconds; 0 when the element has no timeout. */
  readonly timeout: number;
  /** Seconds left; 0 when it has no timeout. */
  readonly expires: number;
  readonly packets: number;
  readonly bytes: number;
}

export function setElements(doc: unknown, setName: string): SetElement[] {
  const items = obj(doc, 'nft output').nftables;
  if (!Array.isArray(items)) throw bad('no "nftables" array');
  const out: SetElement[] = [];
  for (const item of items) {
    const o = obj(item, 'nftables item');
    const set = o.set ?? addedSet(o);
    if (set === undefined) continue;
    const s = obj(set, 'set');
    if (s.name !== setName) continue;
    const elems = s.elem === undefined ? [] : Array.isArray(s.elem) ? s.elem : obj(s.elem, 'elem').set;
    if (!Array.isArray(elems)) throw bad(`set ${setName}: "elem" is not a list`);
    for (const e of elems) out.push(element(e, setName));
  }
  return out;
}

/** The `{"add":{"element":{…}}}` echo form: its `name` and `elem` look like a set's. */
function addedSet(o: Record<string, unknown>): unknown {
  if (o.add === undefined) return undefined;
  const el = obj(o.add, 'add').element;
  return el === undefined ? undefined : el;
}

function element(e: unknown, setName: string): SetElement {
  const where = `set ${setName} element`;
  const wrapped = typeof e === 'object' && e !== null && 'elem' in e;
  const body = wrapped ? obj((e as { elem: unknown }).elem, where) : undefined;
  const val = body ? body.val : e;
  const counter = body?.counter === undefined ? {} : obj(body.counter, `${where} counter`);
  return {
    key: keyOf(val, where),
    timeout: count(body?.timeout, `${where} timeout`),
    expires: count(body?.expires, `${where} expires`),
    packets: count(counter.packets, `${where} packets`),
    bytes: count(counter.bytes, `${where} bytes`),
  };
}

function keyOf(v: unknown, where: string): (string | number)[] {
  if (typeof v === 'string' || typeof v === 'number') return [v];
  const c = obj(v, `${where} value`).concat;
  if (!Array.isArray(c) || c.length === 0) throw bad(`${where}: value is neither a scalar nor a concat`);
  return c.map((p) => {
    if (typeof p === 'string' || typeof p === 'number') return p;
    throw bad(`${where}: concat part ${JSON.stringify(p)} is not a string or number`);
  });
}

function count(v: unknown, what: string): number {
  if (v === undefined) return 0;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw bad(`${what}: ${JSON.stringify(v)} is not a count`);
  return v;
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(`${what} is not an object`);
  return v as Record<string, unknown>;
}

function bad(why: string): MetanetError {
  return new MetanetError('EPROTO', `firewall: unexpected nft JSON: ${why}`);
}

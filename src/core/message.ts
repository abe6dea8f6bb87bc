import { MetanetError } from './errors.js';

/** The seven tuple types of the wire protocol. */
export type TupleType = 'str' | 'int' | 'float' | 'bool' | 'bytes' | 'null' | 'list';

/**
 * One tuple: a tag, a type and a value. `int` values are JS numbers while they are
 * safe integers and bigints beyond 2^53 (the range is signed 64-bit).
 */
export type Tuple =
  | { readonly tag: string; readonly type: 'str'; readonly value: string }
  | { readonly tag: string; readonly type: 'int'; readonly value: number | bigint }
  | { readonly tag: string; readonly type: 'float'; readonly value: number }
  | { readonly tag: string; readonly type: 'bool'; readonly value: boolean }
  | { readonly tag: string; readonly type: 'bytes'; readonly value: Uint8Array }
  | { readonly tag: string; readonly type: 'null'; readonly value: null }
  | { readonly tag: string; readonly type: 'list'; readonly value: Message };

export type TupleValue = Tuple['value'];

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** A value whose tuple type is forced, e.g. `typed.float(1)` (a plain `1` would be an int). */
export class Typed {
  private constructor(
    readonly type: TupleType,
    readonly value: TupleValue,
  ) {}
  static str(v: string): Typed {
    return new Typed('str', v);
  }
  static int(v: number | bigint): Typed {
    return new Typed('int', checkInt('(typed.int)', v));
  }
  static float(v: number): Typed {
    return new Typed('float', v);
  }
  static bool(v: boolean): Typed {
    return new Typed('bool', v);
  }
  static bytes(v: Uint8Array): Typed {
    return new Typed('bytes', v);
  }
}
export const typed = Typed;

/** What a message can be built from: an object (`{tag: value}`), a tuple list, or a message. */
export type InitValue =
  | string
  | number
  | bigint
  | boolean
  | Uint8Array
  | null
  | undefined
  | Message
  | Typed
  | readonly InitValue[]
  | { readonly [tag: string]: InitValue };
export type MessageInit = Message | readonly Tuple[] | { readonly [tag: string]: InitValue };

function checkInt(tag: string, v: number | bigint): number | bigint {
  if (typeof v === 'number') {
    if (!Number.isInteger(v))
      throw new MetanetError('EBADTUPLE', `tuple "${tag}": int value ${v} is not an integer`);
    if (!Number.isSafeInteger(v))
      throw new MetanetError('EBADTUPLE', `tuple "${tag}": int value ${v} is beyond 2^53: pass a bigint`);
    return v;
  }
  if (v < INT64_MIN || v > INT64_MAX)
    throw new MetanetError('EBADTUPLE', `tuple "${tag}": int value ${v} does not fit in 64 bits`);
  return v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v;
}

function checkTag(tag: unknown): string {
  if (typeof tag !== 'string' || tag.length === 0)
    throw new MetanetError('EBADTUPLE', `tuple tag must be a non-empty string, got ${JSON.stringify(tag)}`);
  return tag;
}

/** Build one tuple, checking that the value fits the type. */
export function tuple(tag: string, type: TupleType, value: unknown): Tuple {
  checkTag(tag);
  switch (type) {
    case 'str':
      return typeof value === 'string' ? { tag, type, value } : badTuple(tag, type, value);
    case 'int':
      return typeof value === 'number' || typeof value === 'bigint'
        ? { tag, type, value: checkInt(tag, value) }
        : badTuple(tag, type, value);
    case 'float':
      return typeof value === 'number' ? { tag, type, value } : badTuple(tag, type, value);
    case 'bool':
      return typeof value === 'boolean' ? { tag, type, value } : badTuple(tag, type, value);
    case 'bytes':
      return value instanceof Uint8Array ? { tag, type, value } : badTuple(tag, type, value);
    case 'null':
      return value === null ? { tag, type, value } : badTuple(tag, type, value);
    case 'list':
      return value instanceof Message ? { tag, type, value } : badTuple(tag, type, value);
    default:
      throw new MetanetError('EBADTUPLE', `tuple "${tag}": unknown type ${JSON.stringify(type)}`);
  }
}

/** A module function, not a closure per tuple(): that ran on every tuple built. */
function badTuple(tag: string, type: TupleType, value: unknown): never {
  throw new MetanetError('EBADTUPLE', `tuple "${tag}": value ${describe(value)} is not a valid ${type}`);
}

function describe(v: unknown): string {
  if (v instanceof Uint8Array) return `bytes[${v.length}]`;
  if (v instanceof Message) return 'list';
  if (typeof v === 'bigint') return `${v}n`;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** The tuple type a plain JS value maps to. */
export function typeOf(v: unknown): TupleType | undefined {
  switch (typeof v) {
    case 'string':
      return 'str';
    case 'number':
      return Number.isInteger(v) ? 'int' : 'float';
    case 'bigint':
      return 'int';
    case 'boolean':
      return 'bool';
    case 'object':
      if (v === null) return 'null';
      if (v instanceof Uint8Array) return 'bytes';
      if (v instanceof Message) return 'list';
      return undefined;
    default:
      return undefined;
  }
}

function pushInit(out: Tuple[], tag: string, v: InitValue): void {
  // the common values first, as tuple() would build them (the tag is checked by the caller)
  if (typeof v === 'string') {
    out.push({ tag, type: 'str', value: v });
    return;
  }
  if (typeof v === 'number' && Number.isSafeInteger(v)) {
    out.push({ tag, type: 'int', value: v });
    return;
  }
  if (typeof v === 'boolean') {
    out.push({ tag, type: 'bool', value: v });
    return;
  }
  if (v === undefined) return;
  if (v instanceof Typed) {
    out.push(tuple(tag, v.type, v.value));
    return;
  }
  if (Array.isArray(v)) {
    for (const item of v as readonly InitValue[]) {
      if (Array.isArray(item))
        throw new MetanetError(
          'EBADTUPLE',
          `tuple "${tag}": nested arrays are ambiguous; use a list (object)`,
        );
      pushInit(out, tag, item);
    }
    return;
  }
  const t = typeOf(v);
  if (t !== undefined) {
    out.push(tuple(tag, t, v));
    return;
  }
  if (typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype) {
    out.push({ tag, type: 'list', value: Message.from(v as { readonly [tag: string]: InitValue }) });
    return;
  }
  throw new MetanetError('EBADTUPLE', `tuple "${tag}": cannot send a ${typeof v} (${describe(v)})`);
}

const wanted = (m: Message, tag: string, want: string): never => {
  const t = m.get(tag);
  if (t === undefined) {
    const tags = m.tags();
    throw new MetanetError(
      'ENOTUPLE',
      `no tuple "${tag}" (wanted ${want}); the message has ${tags.length ? tags.map((x) => `"${x}"`).join(', ') : 'no tuples'}`,
    );
  }
  throw new MetanetError('ETUPLETYPE', `tuple "${tag}" is ${t.type} ${describe(t.value)}, wanted ${want}`);
};

/**
 * An ordered, immutable list of tuples. Tags may repeat. Build one with `Message.from({...})`
 * (or `msg({...})`); read it with the typed accessors, which name the tag and both types on error.
 */
export class Message implements Iterable<Tuple> {
  readonly tuples: readonly Tuple[];

  constructor(tuples: readonly Tuple[] = []) {
    this.tuples = tuples;
  }

  static readonly empty: Message = new Message([]);

  static from(init?: MessageInit): Message {
    if (init === undefined) return Message.empty;
    if (init instanceof Message) return init;
    if (Array.isArray(init)) {
      return new Message((init as readonly Tuple[]).map((t) => tuple(t.tag, t.type, t.value)));
    }
    const out: Tuple[] = [];
    for (const tag of Object.keys(init))
      pushInit(out, checkTag(tag), (init as Record<string, InitValue>)[tag]);
    return new Message(out);
  }

  get length(): number {
    return this.tuples.length;
  }
  [Symbol.iterator](): Iterator<Tuple> {
    return this.tuples[Symbol.iterator]();
  }

  /** The first tuple with this tag. */
  get(tag: string): Tuple | undefined {
    const ts = this.tuples;
    for (let i = 0; i < ts.length; i++) if (ts[i]!.tag === tag) return ts[i];
    return undefined;
  }
  has(tag: string): boolean {
    return this.get(tag) !== undefined;
  }
  /** Every tuple with this tag, in order (DHCP options, repeated headers). */
  all(tag: string): Tuple[] {
    return this.tuples.filter((t) => t.tag === tag);
  }
  /** The distinct tags, in first-seen order. */
  tags(): string[] {
    return [...new Set(this.tuples.map((t) => t.tag))];
  }

  str(tag: string, fallback?: string): string {
    const t = this.get(tag);
    if (t?.type === 'str') return t.value;
    if (t === undefined && fallback !== undefined) return fallback;
    return wanted(this, tag, 'str');
  }
  /** An int as a JS number; fails (naming `bigint()`) when the value is beyond 2^53. */
  int(tag: string, fallback?: number): number {
    const t = this.get(tag);
    if (t?.type === 'int') {
      if (typeof t.value === 'number') return t.value;
      throw new MetanetError(
        'ETUPLETYPE',
        `tuple "${tag}" is int ${t.value} beyond 2^53: read it with bigint()`,
      );
    }
    if (t === undefined && fallback !== undefined) return fallback;
    return wanted(this, tag, 'int');
  }
  bigint(tag: string, fallback?: bigint): bigint {
    const t = this.get(tag);
    if (t?.type === 'int') return BigInt(t.value);
    if (t === undefined && fallback !== undefined) return fallback;
    return wanted(this, tag, 'int');
  }
  /** A float; an int is widened (documented in docs/core.md). */
  float(tag: string, fallback?: number): number {
    const t = this.get(tag);
    if (t?.type === 'float') return t.value;
    if (t?.type === 'int') return Number(t.value);
    if (t === undefined && fallback !== undefined) return fallback;
    return wanted(this, tag, 'float');
  }
  bool(tag: string, fallback?: boolean): boolean {
    const t = this.get(tag);
    if (t?.type === 'bool') return t.value;
    if (t === undefined && fallback !== undefined) return fallback;
    return wanted(this, tag, 'bool');
  }
  bytes(tag: string, fallback?: Uint8Array): Uint8Array {
    const t = this.get(tag);
    if (t?.type === 'bytes') return t.value;
    if (t === undefined && fallback !== undefined) return fallback;
    return wanted(this, tag, 'bytes');
  }
  list(tag: string, fallback?: Message): Message {
    const t = this.get(tag);
    if (t?.type === 'list') return t.value;
    if (t === undefined && fallback !== undefined) return fallback;
    return wanted(this, tag, 'list');
  }
  isNull(tag: string): boolean {
    return this.get(tag)?.type === 'null';
  }

  /** A new message with these tuples appended. */
  with(init: MessageInit): Message {
    return new Message([...this.tuples, ...Message.from(init).tuples]);
  }
  /** A new message without any tuple of these tags. */
  without(...tags: string[]): Message {
    if (tags.length === 1) {
      const tag = tags[0];
      return new Message(this.tuples.filter((t) => t.tag !== tag));
    }
    const drop = new Set(tags);
    return new Message(this.tuples.filter((t) => !drop.has(t.tag)));
  }
  /** A new message where every tuple of each given tag is replaced by the given value(s). */
  set(init: { readonly [tag: string]: InitValue }): Message {
    return this.without(...Object.keys(init)).with(init);
  }

  /** True when every tuple of `pattern` is in this message (same tag, type and value). */
  matches(pattern: Message): boolean {
    return pattern.tuples.every((p) => this.tuples.some((t) => tupleEquals(t, p)));
  }
  equals(other: Message): boolean {
    return (
      this.tuples.length === other.tuples.length &&
      this.tuples.every((t, i) => tupleEquals(t, other.tuples[i]!))
    );
  }

  /** A plain object: repeated tags become arrays, lists nested objects. Loses types; for display. */
  toObject(): Record<string, unknown> {
    const counts = new Map<string, number>();
    for (const t of this.tuples) counts.set(t.tag, (counts.get(t.tag) ?? 0) + 1);
    const o: Record<string, unknown> = {};
    for (const t of this.tuples) {
      const v = t.type === 'list' ? t.value.toObject() : t.value;
      if ((counts.get(t.tag) ?? 0) > 1) ((o[t.tag] ??= []) as unknown[]).push(v);
      else o[t.tag] = v;
    }
    return o;
  }

  toString(): string {
    return this.tuples.map((t) => formatTuple(t)).join(' ');
  }
}

/** `tag=value` with a type prefix where the value alone would not tell it (the CLI's syntax). */
export function formatTuple(t: Tuple): string {
  switch (t.type) {
    case 'str':
      return `${t.tag}=${JSON.stringify(t.value)}`;
    case 'int':
      return `${t.tag}=${t.value}`;
    case 'float':
      return `${t.tag}=float:${Number.isInteger(t.value) ? t.value.toFixed(1) : t.value}`;
    case 'bool':
      return `${t.tag}=${t.value}`;
    case 'bytes':
      return `${t.tag}=hex:${Buffer.from(t.value).toString('hex')}`;
    case 'null':
      return `${t.tag}=null`;
    case 'list':
      return `${t.tag}={${t.value.toString()}}`;
  }
}

export function tupleEquals(a: Tuple, b: Tuple): boolean {
  if (a.tag !== b.tag || a.type !== b.type) return false;
  switch (a.type) {
    case 'bytes':
      return Buffer.from(a.value).equals(b.value as Uint8Array);
    case 'list':
      return a.value.equals(b.value as Message);
    case 'float':
      return Object.is(a.value, b.value) || a.value === b.value;
    default:
      return a.value === b.value;
  }
}

/** Shorthand for `Message.from`. */
export function msg(init?: MessageInit): Message {
  return Message.from(init);
}

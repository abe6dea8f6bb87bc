import { type DhcpOption, type DhcpPacket, ipv4Bytes } from './packet.js';

/**
 * Typed views of DHCP option values: one table of known options (RFC 2132 and later), each with a
 * name and a kind that says how its bytes read. Unknown codes read as raw bytes.
 */
export type OptionKind =
  | 'ip'
  | 'ips'
  | 'u8'
  | 'u16'
  | 'u32'
  | 'i32'
  | 'str'
  | 'bytes'
  | 'bool'
  | 'cidr-routes'
  | 'relay-agent'
  | 'client-id'
  | 'param-list';

export interface OptionInfo {
  readonly code: number;
  readonly name: string;
  readonly kind: OptionKind;
}

/** A classless static route (option 121, RFC 3442): `prefix` is 'a.b.c.d/n'. */
export interface ClasslessRoute {
  readonly prefix: string;
  readonly router: string;
}

/** Option 61: hardware type (1 = Ethernet, 0 = opaque, 255 = RFC 4361) and the identifier. */
export interface ClientId {
  readonly type: number;
  readonly id: Buffer;
}

/** Option 82 (RFC 3046) sub-options: 1 circuit-id, 2 remote-id, 5 link-selection, 11 server-id-override… */
export type RelayAgentInfo = readonly DhcpOption[];

export type OptionValue =
  | string
  | number
  | boolean
  | Buffer
  | readonly string[]
  | readonly number[]
  | readonly ClasslessRoute[]
  | RelayAgentInfo
  | ClientId;

const TABLE: readonly OptionInfo[] = [
  { code: 1, name: 'subnet-mask', kind: 'ip' },
  { code: 2, name: 'time-offset', kind: 'i32' },
  { code: 3, name: 'router', kind: 'ips' },
  { code: 4, name: 'time-server', kind: 'ips' },
  { code: 5, name: 'name-server', kind: 'ips' },
  { code: 6, name: 'dns-server', kind: 'ips' },
  { code: 7, name: 'log-server', kind: 'ips' },
  { code: 12, name: 'hostname', kind: 'str' },
  { code: 13, name: 'boot-size', kind: 'u16' },
  { code: 15, name: 'domain-name', kind: 'str' },
  { code: 17, name: 'root-path', kind: 'str' },
  { code: 19, name: 'ip-forwarding', kind: 'bool' },
  { code: 23, name: 'default-ttl', kind: 'u8' },
  { code: 26, name: 'mtu', kind: 'u16' },
  { code: 28, name: 'broadcast', kind: 'ip' },
  { code: 42, name: 'ntp-server', kind: 'ips' },
  { code: 43, name: 'vendor-specific', kind: 'bytes' },
  { code: 44, name: 'netbios-name-server', kind: 'ips' },
  { code: 46, name: 'netbios-node-type', kind: 'u8' },
  { code: 50, name: 'requested-ip', kind: 'ip' },
  { code: 51, name: 'lease-time', kind: 'u32' },
  { code: 52, name: 'overload', kind: 'u8' },
  { code: 53, name: 'message-type', kind: 'u8' },
  { code: 54, name: 'server-id', kind: 'ip' },
  { code: 55, name: 'param-list', kind: 'param-list' },
  { code: 56, name: 'message', kind: 'str' },
  { code: 57, name: 'max-size', kind: 'u16' },
  { code: 58, name: 'renewal-time', kind: 'u32' },
  { code: 59, name: 'rebinding-time', kind: 'u32' },
  { code: 60, name: 'vendor-class', kind: 'str' },
  { code: 61, name: 'client-id', kind: 'client-id' },
  { code: 66, name: 'tftp-server', kind: 'str' },
  { code: 67, name: 'bootfile', kind: 'str' },
  { code: 80, name: 'rapid-commit', kind: 'bytes' },
  { code: 81, name: 'client-fqdn', kind: 'bytes' },
  { code: 82, name: 'relay-agent', kind: 'relay-agent' },
  { code: 108, name: 'ipv6-only-preferred', kind: 'u32' },
  { code: 114, name: 'captive-portal', kind: 'str' },
  { code: 116, name: 'auto-config', kind: 'u8' },
  { code: 118, name: 'subnet-selection', kind: 'ip' },
  { code: 119, name: 'domain-search', kind: 'bytes' },
  { code: 121, name: 'classless-routes', kind: 'cidr-routes' },
  { code: 249, name: 'ms-classless-routes', kind: 'cidr-routes' },
  { code: 252, name: 'wpad', kind: 'str' },
];

const BY_CODE = new Map(TABLE.map((o) => [o.code, o]));
const BY_NAME = new Map(TABLE.map((o) => [o.name, o]));

export const KNOWN_OPTIONS: readonly OptionInfo[] = TABLE;

/** A bad option value or length; `option` is the code. */
export class DhcpOptionError extends Error {
  override readonly name = 'DhcpOptionError';
  constructor(
    readonly option: number,
    detail: string,
  ) {
    super(`DHCP option ${label(option)}: ${detail}`);
  }
}

function label(code: number): string {
  const info = BY_CODE.get(code);
  return info ? `${code} (${info.name})` : String(code);
}

/** The table entry for a code or a name; an unknown code reads as bytes, an unknown name throws. */
export function optionInfo(codeOrName: number | string): OptionInfo {
  if (typeof codeOrName === 'string') {
    const info = BY_NAME.get(codeOrName);
    if (!info)
      throw new DhcpOptionError(-1, `unknown option name ${JSON.stringify(codeOrName)}; use its code`);
    return info;
  }
  if (!Number.isInteger(codeOrName) || codeOrName < 1 || codeOrName > 254)
    throw new DhcpOptionError(codeOrName, 'option codes are 1..254');
  return BY_CODE.get(codeOrName) ?? { code: codeOrName, name: `option-${codeOrName}`, kind: 'bytes' };
}

export function getOption(p: DhcpPacket, code: number): Buffer | undefined {
  return p.options.find((o) => o.code === code)?.data;
}

/** Bytes of a value of each fixed-size kind (RFC 2132 gives these options one length). */
const FIXED_SIZE: Partial<Record<OptionKind, number>> = { ip: 4, u8: 1, u16: 2, u32: 4, i32: 4, bool: 1 };

/**
 * Known options whose length is fixed, code → bytes: 1, 2, 13, 19, 23, 26, 28, 46, 50, 51, 53,
 * 54, 57, 58, 59, 108, 116, 118 (52, the overload, is checked by the decoder itself).
 */
export const FIXED_LENGTHS: ReadonlyMap<number, number> = new Map(
  TABLE.flatMap((o) => {
    const n = FIXED_SIZE[o.kind];
    return n === undefined || o.code === 52 ? [] : [[o.code, n] as const];
  }),
);

/** The first option of `p` whose length is not its fixed length (in packet order), if any. */
export function badOptionLength(
  p: DhcpPacket,
):
  | { readonly code: number; readonly name: string; readonly length: number; readonly want: number }
  | undefined {
  for (const o of p.options) {
    const want = FIXED_LENGTHS.get(o.code);
    if (want !== undefined && o.data.length !== want)
      return { code: o.code, name: BY_CODE.get(o.code)!.name, length: o.data.length, want };
  }
  return undefined;
}

/** Option 53, when present and one byte long. */
export function messageType(p: DhcpPacket): number | undefined {
  const d = getOption(p, 53);
  return d && d.length === 1 ? d[0] : undefined;
}

// ---------------------------------------------------------------- decode by kind

export function optionToValue(code: number, data: Buffer): OptionValue {
  const { kind } = optionInfo(code);
  const len = (ok: boolean, want: string): void => {
    if (!ok) throw new DhcpOptionError(code, `expected ${want}, got ${data.length} byte(s)`);
  };
  switch (kind) {
    case 'ip':
      len(data.length === 4, '4 bytes');
      return ipAt(data, 0);
    case 'ips':
      len(data.length >= 4 && data.length % 4 === 0, 'a multiple of 4 bytes (at least 4)');
      return Array.from({ length: data.length / 4 }, (_, i) => ipAt(data, 4 * i));
    case 'u8':
      len(data.length === 1, '1 byte');
      return data[0]!;
    case 'u16':
      len(data.length === 2, '2 bytes');
      return data.readUInt16BE(0);
    case 'u32':
      len(data.length === 4, '4 bytes');
      return data.readUInt32BE(0);
    case 'i32':
      len(data.length === 4, '4 bytes');
      return data.readInt32BE(0);
    case 'bool':
      len(data.length === 1, '1 byte');
      if (data[0]! > 1) throw new DhcpOptionError(code, `boolean must be 0 or 1, got ${data[0]}`);
      return data[0] === 1;
    case 'str': {
      len(data.length >= 1, 'at least 1 byte');
      let end = data.length;
      while (end > 0 && data[end - 1] === 0) end--; // some clients NUL-terminate
      if (end === 0) throw new DhcpOptionError(code, 'expected a string, got only NUL bytes');
      return data.toString('utf8', 0, end);
    }
    case 'param-list':
      len(data.length >= 1, 'at least 1 byte');
      return [...data];
    case 'client-id':
      len(data.length >= 2, 'at least 2 bytes (type and identifier)');
      return { type: data[0]!, id: Buffer.from(data.subarray(1)) };
    case 'cidr-routes':
      return decodeRoutes(code, data);
    case 'relay-agent':
      return decodeSubOptions(code, data);
    case 'bytes':
      return Buffer.from(data);
  }
}

function ipAt(b: Buffer, off: number): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

function decodeRoutes(code: number, data: Buffer): ClasslessRoute[] {
  if (data.length < 5) throw new DhcpOptionError(code, `expected at least 5 bytes, got ${data.length}`);
  const routes: ClasslessRoute[] = [];
  let i = 0;
  while (i < data.length) {
    const width = data[i]!;
    if (width > 32) throw new DhcpOptionError(code, `route at byte ${i}: prefix length ${width} > 32`);
    const sig = Math.ceil(width / 8);
    if (i + 1 + sig + 4 > data.length)
      throw new DhcpOptionError(
        code,
        `route at byte ${i}: needs ${1 + sig + 4} bytes, ${data.length - i} left`,
      );
    const dest = [0, 0, 0, 0];
    for (let k = 0; k < sig; k++) dest[k] = data[i + 1 + k]!;
    routes.push({ prefix: `${dest.join('.')}/${width}`, router: ipAt(data, i + 1 + sig) });
    i += 1 + sig + 4;
  }
  return routes;
}

function decodeSubOptions(code: number, data: Buffer): DhcpOption[] {
  const subs: DhcpOption[] = [];
  let i = 0;
  while (i < data.length) {
    if (i + 2 > data.length) throw new DhcpOptionError(code, `sub-option at byte ${i} has no length byte`);
    const sub = data[i]!;
    const n = data[i + 1]!;
    if (i + 2 + n > data.length)
      throw new DhcpOptionError(code, `sub-option ${sub} at byte ${i}: length ${n} runs past the end`);
    subs.push({ code: sub, data: Buffer.from(data.subarray(i + 2, i + 2 + n)) });
    i += 2 + n;
  }
  return subs;
}

// ---------------------------------------------------------------- encode by kind

/** Encode a typed value as an option, by code or by name; throws naming the option on a bad value. */
export function valueToOption(codeOrName: number | string, value: OptionValue): DhcpOption {
  const info = optionInfo(codeOrName);
  const { code, kind } = info;
  const bad = (want: string): never => {
    throw new DhcpOptionError(code, `expected ${want}, got ${describe(value)}`);
  };
  const ip = (v: unknown): number[] =>
    (typeof v === 'string' && ipv4Bytes(v)) || bad('dotted-quad IPv4 address(es)');
  const int = (min: number, max: number): number =>
    typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max
      ? value
      : bad(`an integer ${min}..${max}`);
  let data: Buffer;
  switch (kind) {
    case 'ip':
      data = Buffer.from(ip(value));
      break;
    case 'ips':
      if (!Array.isArray(value) || value.length === 0) bad('a non-empty list of IPv4 addresses');
      data = Buffer.from((value as readonly unknown[]).flatMap(ip));
      break;
    case 'u8':
      data = Buffer.from([int(0, 0xff)]);
      break;
    case 'u16':
      data = Buffer.alloc(2);
      data.writeUInt16BE(int(0, 0xffff));
      break;
    case 'u32':
      data = Buffer.alloc(4);
      data.writeUInt32BE(int(0, 0xffffffff));
      break;
    case 'i32':
      data = Buffer.alloc(4);
      data.writeInt32BE(int(-0x80000000, 0x7fffffff));
      break;
    case 'bool':
      if (typeof value !== 'boolean') bad('a boolean');
      data = Buffer.from([value ? 1 : 0]);
      break;
    case 'str':
      if (typeof value !== 'string' || value.length === 0) bad('a non-empty string');
      data = Buffer.from(value as string, 'utf8');
      break;
    case 'param-list':
      if (!Array.isArray(value) || value.length === 0) bad('a non-empty list of option codes');
      data = Buffer.from(
        (value as readonly unknown[]).map((c) =>
          typeof c === 'number' && Number.isInteger(c) && c >= 0 && c <= 255 ? c : bad('option codes 0..255'),
        ),
      );
      break;
    case 'client-id': {
      const v = value as Partial<ClientId>;
      if (typeof value !== 'object' || !Buffer.isBuffer(v.id) || v.id.length === 0)
        bad('{ type, id: Buffer }');
      if (typeof v.type !== 'number' || !Number.isInteger(v.type) || v.type < 0 || v.type > 255)
        bad('{ type: 0..255, id }');
      data = Buffer.concat([Buffer.from([v.type as number]), v.id as Buffer]);
      break;
    }
    case 'cidr-routes':
      if (!Array.isArray(value) || value.length === 0) bad('a non-empty list of { prefix, router }');
      data = Buffer.concat((value as readonly unknown[]).map((r) => encodeRoute(code, r)));
      break;
    case 'relay-agent':
      if (!Array.isArray(value)) bad('a list of sub-options { code, data }');
      data = Buffer.concat((value as readonly unknown[]).map((s) => encodeSubOption(code, s)));
      break;
    case 'bytes':
      if (!Buffer.isBuffer(value)) bad('a Buffer');
      data = Buffer.from(value as Buffer);
      break;
  }
  return { code, data };
}

function encodeRoute(code: number, r: unknown): Buffer {
  const route = r as Partial<ClasslessRoute>;
  const m = typeof route?.prefix === 'string' ? /^(.+)\/(\d{1,2})$/.exec(route.prefix) : null;
  const dest = m ? ipv4Bytes(m[1]!) : undefined;
  const width = m ? Number(m[2]) : NaN;
  const router = typeof route?.router === 'string' ? ipv4Bytes(route.router) : undefined;
  if (!dest || !(width <= 32) || !router)
    throw new DhcpOptionError(
      code,
      `expected a route { prefix: 'a.b.c.d/n', router: 'a.b.c.d' }, got ${describe(r)}`,
    );
  const sig = Math.ceil(width / 8);
  return Buffer.from([width, ...dest.slice(0, sig), ...router]);
}

function encodeSubOption(code: number, s: unknown): Buffer {
  const sub = s as Partial<DhcpOption>;
  if (
    typeof sub?.code !== 'number' ||
    !Number.isInteger(sub.code) ||
    sub.code < 0 ||
    sub.code > 255 ||
    !Buffer.isBuffer(sub.data) ||
    sub.data.length > 255
  )
    throw new DhcpOptionError(
      code,
      `expected a sub-option { code: 0..255, data: Buffer ≤ 255 bytes }, got ${describe(s)}`,
    );
  return Buffer.concat([Buffer.from([sub.code, sub.data.length]), sub.data]);
}

function describe(v: unknown): string {
  if (Buffer.isBuffer(v)) return `a Buffer of ${v.length} bytes`;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

import { type OptionValue, optionInfo, valueToOption } from './options.js';
import type { DhcpOption } from './packet.js';

/**
 * Options written by people (config JSON) or sent in messages (a lookup answer): the key is a
 * code (`"42"`) or a name (`"ntp-server"`), the value what the option's kind takes (an address,
 * a list of addresses, a number, a string, a boolean). Raw bytes for any option: `"hex:0a0b0c"`
 * (or bytes in a message). This adapts such values to the codec's `valueToOption`.
 */
export function toOption(key: string | number, value: unknown): DhcpOption {
  const codeOrName = typeof key === 'number' || /^\d+$/.test(key) ? Number(key) : key;
  const info = optionInfo(codeOrName);
  if (typeof value === 'string' && value.startsWith('hex:')) {
    const hex = value.slice(4).replaceAll(':', '');
    if (!/^([0-9a-fA-F]{2})+$/.test(hex))
      throw new Error(`option ${key}: bad hex value ${JSON.stringify(value)}`);
    return { code: info.code, data: Buffer.from(hex, 'hex') };
  }
  if (value instanceof Uint8Array) return { code: info.code, data: Buffer.from(value) };
  if (info.kind === 'ips' && typeof value === 'string') return valueToOption(info.code, [value]);
  return valueToOption(info.code, value as OptionValue);
}

/** Check a config option (throws a message naming what is wrong). */
export function checkConfigOption(key: string, value: unknown): void {
  toOption(key, value);
}

/** Compile a config options object into codec options (later keys of the same code win). */
export function compileOptions(opts: Readonly<Record<string, unknown>>): DhcpOption[] {
  return Object.entries(opts).map(([k, v]) => toOption(k, v));
}

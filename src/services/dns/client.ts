import type { Bus } from '../../core/bus.js';
import type { Message } from '../../core/message.js';
import { DnsError } from './lookup.js';

export interface Resolved {
  readonly name: string;
  readonly address: string[];
  readonly family: number;
}

export interface Reversed {
  readonly address: string;
  readonly hostname: string[];
}

/** How long the bus request waits beyond the DNS timeout (the service answers first). */
const SLACK = 1000;

/**
 * `await resolve(bus, 'h.metanet.test')`: ask `/system/dns/resolve` (or `to`, e.g. the service in
 * another daemon, `dnsd:/system/dns/resolve`) and return the addresses; a failure throws a
 * DnsError whose `code` is the service's (ENOTFOUND, ETIMEDOUT, ...).
 */
export async function resolve(
  bus: Bus,
  name: string,
  opts: { family?: 0 | 4 | 6; timeout?: number; to?: string } = {},
): Promise<Resolved> {
  const r = checked(
    await bus.request(
      opts.to ?? '/system/dns/resolve',
      { name, family: opts.family, timeout: opts.timeout },
      { timeout: (opts.timeout ?? 2000) * 2 + SLACK },
    ),
  );
  return { name: r.str('name'), address: strs(r, 'address'), family: r.int('family') };
}

/** `await reverse(bus, '10.9.9.10')`: the names of an address (PTR); throws a DnsError on failure. */
export async function reverse(
  bus: Bus,
  address: string,
  opts: { timeout?: number; to?: string } = {},
): Promise<Reversed> {
  const r = checked(
    await bus.request(
      opts.to ?? '/system/dns/reverse',
      { address, timeout: opts.timeout },
      { timeout: (opts.timeout ?? 2000) * 2 + SLACK },
    ),
  );
  return { address: r.str('address'), hostname: strs(r, 'hostname') };
}

function checked(r: Message): Message {
  if (r.has('error')) throw new DnsError(r.str('code', 'EFAIL'), r.str('error'));
  return r;
}

function strs(m: Message, tag: string): string[] {
  return m.all(tag).map((t) => (t.type === 'str' ? t.value : String(t.value)));
}

import dns from 'node:dns';
import net from 'node:net';
import { arpaName } from './arpa.js';

/** A failed resolution: `code` is ENOTFOUND, ENODATA, ETIMEDOUT, ECONNREFUSED, ESERVFAIL, EINVAL, ... */
export class DnsError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface LookupOptions {
  /** DNS servers (`127.0.0.1:5353`, `[::1]:53`); default: the system's (/etc/resolv.conf). */
  readonly servers?: readonly string[];
  /** ms for one answer. */
  readonly timeout: number;
}

export type Family = 0 | 4 | 6;

/**
 * One resolver per request (each with its own timeout), all cancelled by `cancelAll()`.
 * Names the DNS must never be asked for (`localhost`, RFC 6761) and loopback addresses go to the
 * system's lookup (/etc/hosts); so does any name when no servers are configured and DNS fails.
 */
export class Lookups {
  private readonly live = new Set<dns.promises.Resolver>();

  constructor(private readonly servers: readonly string[] | undefined) {}

  async resolve(name: string, family: Family, timeout: number): Promise<string[]> {
    const literal = net.isIP(name);
    if (literal) {
      if (family !== 0 && family !== literal)
        throw new DnsError('ENODATA', `${name} is an IPv${literal} address, not IPv${family}`);
      return [name];
    }
    if (isLocalhost(name)) return this.system(name, family, timeout);
    try {
      return await this.withResolver(name, timeout, async (r) => {
        if (family === 4) return r.resolve4(name);
        if (family === 6) return r.resolve6(name);
        const [a, b] = await Promise.allSettled([r.resolve4(name), r.resolve6(name)]);
        const all = [
          ...(a.status === 'fulfilled' ? a.value : []),
          ...(b.status === 'fulfilled' ? b.value : []),
        ];
        if (all.length > 0) return all;
        throw a.status === 'rejected' ? a.reason : (b as PromiseRejectedResult).reason;
      });
    } catch (e) {
      if (this.servers || FINAL.has((e as DnsError).code)) throw e;
      return this.system(name, family, timeout);
    }
  }

  async reverse(address: string, timeout: number): Promise<string[]> {
    if (!net.isIP(address)) throw new DnsError('EINVAL', `reverse: "${address}" is not an IP address`);
    if (isLoopback(address)) return this.systemReverse(address, timeout);
    try {
      return await this.withResolver(`reverse ${address}`, timeout, (r) => r.resolvePtr(arpaName(address)));
    } catch (e) {
      if (this.servers || FINAL.has((e as DnsError).code)) throw e;
      return this.systemReverse(address, timeout);
    }
  }

  private async withResolver(
    what: string,
    timeout: number,
    fn: (r: dns.promises.Resolver) => Promise<string[]>,
  ): Promise<string[]> {
    const r = new dns.promises.Resolver({ timeout, tries: 1 });
    if (this.servers) r.setServers([...this.servers]);
    this.live.add(r);
    try {
      return await fn(r);
    } catch (e) {
      throw mapped(e, what);
    } finally {
      this.live.delete(r);
    }
  }

  private async system(name: string, family: Family, timeout: number): Promise<string[]> {
    try {
      const all = await within(dns.promises.lookup(name, { all: true, family }), timeout, name);
      return all.map((a) => a.address);
    } catch (e) {
      throw mapped(e, name);
    }
  }

  private async systemReverse(address: string, timeout: number): Promise<string[]> {
    try {
      const r = await within(dns.promises.lookupService(address, 0), timeout, `reverse ${address}`);
      return [r.hostname];
    } catch (e) {
      throw mapped(e, `reverse ${address}`);
    }
  }

  /** Abort every query in flight (they fail with ECANCELLED). */
  cancelAll(): void {
    for (const r of this.live) r.cancel();
    this.live.clear();
  }
}

/** Failures the system lookup must not be tried after (time is up, or the service closed). */
const FINAL = new Set(['ETIMEDOUT', 'ECANCELLED']);

function isLocalhost(name: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, '');
  return n === 'localhost' || n.endsWith('.localhost');
}

function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1';
}

/** c-ares says ETIMEOUT; we say ETIMEDOUT like the rest of MetaNet. The message names the query. */
function mapped(e: unknown, what: string): DnsError {
  if (e instanceof DnsError) return e;
  const raw = (e as { code?: unknown }).code;
  const code = raw === 'ETIMEOUT' ? 'ETIMEDOUT' : typeof raw === 'string' ? raw : 'EFAIL';
  const why: Record<string, string> = {
    ENOTFOUND: 'no such name',
    ENODATA: 'the name has no address of that family',
    ETIMEDOUT: 'no answer in time',
    ECONNREFUSED: 'the DNS server refused the connection',
    ECANCELLED: 'cancelled (the service closed)',
  };
  return new DnsError(
    code,
    `${what}: ${why[code] ?? (e instanceof Error ? e.message : String(e))} (${code})`,
  );
}

/** Bound a lookup that has no timeout of its own (getaddrinfo); its late answer is ignored. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new DnsError('ETIMEDOUT', `${what}: no answer in time (ETIMEDOUT)`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(t));
}

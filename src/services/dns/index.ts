import type { Bus } from '../../core/bus.js';
import type { Context } from '../../core/listener.js';
import { STOP } from '../../core/listener.js';
import type { InitValue, Message } from '../../core/message.js';
import { attachTable } from '../table.js';
import { DnsError, type Family, Lookups } from './lookup.js';
import { dnsTable } from './table.js';

export { resolve, reverse } from './client.js';
export { DnsError } from './lookup.js';
export { dnsTable } from './table.js';

export interface DnsServiceOptions {
  /** DNS servers to ask (`127.0.0.1:5353`); default: the system's, with /etc/hosts as fallback. */
  readonly servers?: readonly string[];
  /** Default ms to wait for an answer (default 2000). */
  readonly timeout?: number;
}

export interface DnsService {
  /** Cancel the queries in flight and detach the mailboxes. */
  close(): Promise<void>;
}

/**
 * Name resolution as messages: `/system/dns/resolve` {name, family?, timeout?} and
 * `/system/dns/reverse` {address, timeout?}; answers go to the reply-to. See docs/services/dns.md.
 */
export function installDnsService(bus: Bus, opts: DnsServiceOptions = {}): DnsService {
  const lookups = new Lookups(opts.servers);
  const timeoutOf = (m: Message): number => {
    const ms = m.int('timeout', opts.timeout ?? 2000);
    if (ms < 1 || ms > 60000) throw new DnsError('EINVAL', `tuple "timeout" must be 1-60000 ms, got ${ms}`);
    return ms;
  };

  const answer = async (
    ctx: Context,
    work: () => Promise<Record<string, InitValue>>,
  ): Promise<typeof STOP> => {
    let out: Record<string, InitValue>;
    try {
      out = await work();
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      out = {
        error: e instanceof Error ? e.message : String(e),
        code: typeof code === 'string' ? code : 'EFAIL',
      };
      if (!ctx.replyTo) bus.post('/system/dns/error', { mailbox: ctx.mailbox, ...out });
    }
    if (ctx.replyTo) await ctx.reply(out).catch(() => {});
    return STOP;
  };

  const detach = attachTable(bus, '/system/dns', dnsTable, {
    '/resolve': (m, ctx) =>
      answer(ctx, async () => {
        const name = m.str('name');
        const family = m.int('family', 4);
        if (family !== 0 && family !== 4 && family !== 6)
          throw new DnsError('EINVAL', `tuple "family" must be 4, 6 or 0, got ${family}`);
        const address = await lookups.resolve(name, family as Family, timeoutOf(m));
        return { name, address, family };
      }),
    '/reverse': (m, ctx) =>
      answer(ctx, async () => {
        const address = m.str('address');
        return { address, hostname: await lookups.reverse(address, timeoutOf(m)) };
      }),
  });

  return {
    async close() {
      detach();
      lookups.cancelAll();
    },
  };
}

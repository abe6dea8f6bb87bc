import type { Bus } from '../../core/bus.js';
import { STOP } from '../../core/listener.js';
import { attachTable } from '../../services/table.js';
import { FIREWALL, type Guestbook } from './guestbook.js';
import type { DhcpGuests } from './guests.js';
import { advance, counterKey, idleSeconds, limitTuples, readCounters } from './lifecycle.js';
import { portalTable } from './table.js';

/** The portal's operator mailboxes (`/clients`, `/logout`); returns the detach function. */
export function attachControl(bus: Bus, name: string, book: Guestbook, guests: () => DhcpGuests | undefined) {
  return attachTable(bus, name, portalTable, {
    '/clients': async (_m, ctx) => {
      // A fresh sample, used for the answer only: the lifecycle's checks keep the record.
      const counters = await readCounters(bus, FIREWALL);
      const now = Date.now();
      const client = book.sessions.list().map((s) => {
        const c = counters.clients.get(counterKey(s.ip, s.mac));
        const usage = advance(s.usage, c, counters.loaded, now);
        const seen = { ...s, usage };
        return {
          ip: s.ip,
          mac: s.mac,
          hostname: guests()?.get(s.ip)?.hostname ?? '',
          since: Math.floor(s.since / 1000),
          expires: Math.floor(s.expires / 1000),
          packets: c?.packetsUp ?? 0,
          bytes: c?.up ?? 0,
          'bytes-up': usage.up,
          'bytes-down': usage.down,
          idle: idleSeconds(seen, now),
          ...limitTuples(s.limits),
        };
      });
      if (ctx.replyTo) await ctx.reply({ count: client.length, client });
      return STOP;
    },
    '/logout': async (m, ctx) => {
      const ip = m.str('ip');
      const removed = await book.end(ip, m.str('reason', 'operator'));
      if (ctx.replyTo) await ctx.reply({ ip, removed });
      return STOP;
    },
  });
}

import type { Bus } from '../../core/bus.js';
import { STOP } from '../../core/listener.js';
import type { Message } from '../../core/message.js';
import { attachTable } from '../../services/table.js';
import { FIREWALL, type Guestbook } from './guestbook.js';
import type { DhcpGuests } from './guests.js';
import { portalTable } from './table.js';

/** The portal's operator mailboxes (`/clients`, `/logout`); returns the detach function. */
export function attachControl(bus: Bus, name: string, book: Guestbook, guests: () => DhcpGuests | undefined) {
  return attachTable(bus, name, portalTable, {
    '/clients': async (_m, ctx) => {
      const counted = new Map<string, Message>();
      const fw = await bus.request(`${FIREWALL}/clients`, {});
      for (const t of fw.all('client')) {
        const c = t.value as Message;
        counted.set(`${c.str('ip')} ${c.str('mac')}`, c);
      }
      const client = book.sessions.list().map((s) => {
        const c = counted.get(`${s.ip} ${s.mac}`);
        return {
          ip: s.ip,
          mac: s.mac,
          hostname: guests()?.get(s.ip)?.hostname ?? '',
          since: Math.floor(s.since / 1000),
          expires: Math.floor(s.expires / 1000),
          packets: c?.int('packets') ?? 0,
          bytes: c?.int('bytes') ?? 0,
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

import type { Bus } from '../../core/bus.js';
import type { Context } from '../../core/listener.js';
import type { Message } from '../../core/message.js';
import { checkPath } from '../../core/path.js';
import { attachTable } from '../table.js';
import { DatagramSocket } from './datagram.js';
import { guarded, SocketError } from './fail.js';
import { StreamSocket } from './stream.js';
import { socketFactoryTable } from './table.js';

export { socketFactoryTable, socketTable } from './table.js';

export interface SocketService {
  /** Close every socket this service made (at once, without flushing) and detach every mailbox. */
  close(): Promise<void>;
}

type SocketObject = StreamSocket | DatagramSocket;

/**
 * Sockets as mailboxes: `/system/socket/new` {name, protocol: tcp|udp|unix} makes a socket object
 * whose mailboxes are `<name>/bind`, `/listen`, `/connect`, `/write`, `/read`, ... See
 * docs/services/socket.md.
 */
export function installSocketService(bus: Bus): SocketService {
  const live = new Map<string, SocketObject>();
  const adopt = (s: SocketObject): void => {
    live.set(s.name, s);
    s.done.then(() => live.delete(s.name));
  };

  const create = (m: Message, ctx: Context): void => {
    const name = checkPath(m.str('name'));
    const protocol = m.str('protocol');
    if (live.has(name)) throw new SocketError('EEXIST', `socket ${name} already exists`);
    if (protocol === 'udp') adopt(new DatagramSocket(bus, name));
    else if (protocol === 'tcp' || protocol === 'unix')
      adopt(new StreamSocket(bus, name, protocol === 'unix', adopt));
    else
      throw new SocketError(
        'EINVAL',
        `/system/socket/new: protocol must be tcp, udp or unix, got "${protocol}"`,
      );
    if (ctx.replyTo) ctx.reply({ name }).catch(() => {});
  };

  const detach = attachTable(bus, '/system/socket', socketFactoryTable, {
    '/new': guarded(bus, '/system/socket', create),
  });

  return {
    async close() {
      detach();
      await Promise.all([...live.values()].map((s) => s.destroy()));
    },
  };
}

import type { AddressInfo } from 'node:net';
import type { Message } from '../../core/message.js';
import { SocketError } from './fail.js';

/** A socket address as tuples: {host?, port} for tcp/udp, {path} for unix. */
export type Where = { readonly host?: string; readonly port: number } | { readonly path: string };

/** Read {host?, port} or {path} from a bind/connect message, refusing what does not fit the protocol. */
export function whereOf(m: Message, unix: boolean, mailbox: string, needHost = false): Where {
  if (unix) {
    if (m.has('host') || m.has('port'))
      throw new SocketError('EINVAL', `${mailbox}: a unix socket takes "path", not host/port`);
    if (!m.has('path'))
      throw new SocketError('EINVAL', `${mailbox}: missing tuple "path" (unix socket file)`);
    return { path: m.str('path') };
  }
  return inetOf(m, mailbox, needHost);
}

/** Read {host?, port} (tcp, udp); `needHost` for a destination (host required, port not 0). */
export function inetOf(m: Message, mailbox: string, needHost = false): { host?: string; port: number } {
  if (m.has('path')) throw new SocketError('EINVAL', `${mailbox}: "path" is for unix sockets only`);
  if (!m.has('port')) throw new SocketError('EINVAL', `${mailbox}: missing tuple "port" (int)`);
  if (needHost && !m.has('host')) throw new SocketError('EINVAL', `${mailbox}: missing tuple "host" (str)`);
  return { host: m.has('host') ? m.str('host') : undefined, port: portOf(m, mailbox, needHost) };
}

function portOf(m: Message, mailbox: string, nonzero: boolean): number {
  const p = m.int('port');
  if (p < (nonzero ? 1 : 0) || p > 65535)
    throw new SocketError('EINVAL', `${mailbox}: port ${p} is out of range ${nonzero ? 1 : 0}-65535`);
  return p;
}

/** The local address of a server or udp socket as tuples. */
export function localOf(a: AddressInfo | string | null): Where {
  if (typeof a === 'string') return { path: a };
  if (!a) throw new SocketError('ENOTCONN', 'socket has no local address');
  return { host: a.address, port: a.port };
}

/** A connected socket's peer and local address as tuples. */
export function peerOf(
  s: { remoteAddress?: string; remotePort?: number; localAddress?: string; localPort?: number },
  to: Where,
): Record<string, string | number | undefined> {
  if ('path' in to) return { path: to.path };
  return { host: s.remoteAddress, port: s.remotePort, localhost: s.localAddress, localport: s.localPort };
}

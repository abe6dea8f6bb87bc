import type { Socket } from 'node:net';
import { isIPv4 } from 'node:net';
import { getSockOpt } from '../../ipc/sockopt.js';

/** Where a redirected client meant to go. */
export interface OriginalDestination {
  readonly address: string;
  readonly port: number;
}

const SOL_IP = 0;
const SO_ORIGINAL_DST = 80;

/**
 * The destination the client dialled before nftables redirected it here: getsockopt(SOL_IP,
 * SO_ORIGINAL_DST) on the accepted socket, which returns a `struct sockaddr_in` (family, port in
 * network order, address) from conntrack. Undefined when the connection was not NATed (the client
 * dialled the proxy itself) or the socket has no descriptor. IPv4 only.
 */
export function originalDestination(socket: Socket): OriginalDestination | undefined {
  const buf = getSockOpt(socket, SOL_IP, SO_ORIGINAL_DST, 16);
  return buf && decodeSockaddrIn(buf);
}

/** `struct sockaddr_in` → address and port; undefined unless AF_INET (2) with a non-zero port. */
export function decodeSockaddrIn(buf: Buffer): OriginalDestination | undefined {
  if (buf.length < 8 || buf.readUInt16LE(0) !== 2) return undefined;
  const port = buf.readUInt16BE(2);
  const address = `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`;
  return port > 0 && isIPv4(address) ? { address, port } : undefined;
}

import type { Socket } from 'node:net';
import { isIPv4 } from 'node:net';
import koffi from 'koffi';

/** Where a redirected client meant to go. */
export interface OriginalDestination {
  readonly address: string;
  readonly port: number;
}

const SOL_IP = 0;
const SO_ORIGINAL_DST = 80;

type GetSockOpt = (fd: number, level: number, name: number, val: Buffer, len: number[]) => number;
let getsockopt: GetSockOpt | undefined;

function load(): GetSockOpt {
  if (!getsockopt) {
    const libc = koffi.load('libc.so.6');
    getsockopt = libc.func(
      'int getsockopt(int fd, int level, int name, _Out_ uint8_t *val, _Inout_ uint32_t *len)',
    ) as GetSockOpt;
  }
  return getsockopt;
}

/**
 * The destination the client dialled before nftables redirected it here: getsockopt(SOL_IP,
 * SO_ORIGINAL_DST) on the accepted socket, which returns a `struct sockaddr_in` (family, port in
 * network order, address) from conntrack. Undefined when the connection was not NATed (the client
 * dialled the proxy itself) or the socket has no descriptor. IPv4 only.
 */
export function originalDestination(socket: Socket): OriginalDestination | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  const buf = Buffer.alloc(16);
  if (load()(fd, SOL_IP, SO_ORIGINAL_DST, buf, [16]) !== 0) return undefined;
  return decodeSockaddrIn(buf);
}

/** `struct sockaddr_in` → address and port; undefined unless AF_INET (2) with a non-zero port. */
export function decodeSockaddrIn(buf: Buffer): OriginalDestination | undefined {
  if (buf.length < 8 || buf.readUInt16LE(0) !== 2) return undefined;
  const port = buf.readUInt16BE(2);
  const address = `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`;
  return port > 0 && isIPv4(address) ? { address, port } : undefined;
}

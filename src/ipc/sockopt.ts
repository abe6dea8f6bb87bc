import type { Socket } from 'node:net';
import koffi from 'koffi';

type GetSockOpt = (fd: number, level: number, name: number, val: Buffer, len: number[]) => number;
let getsockopt: GetSockOpt | undefined;

/**
 * getsockopt(2) on a Node socket's descriptor, through koffi (libc; no compiler needed): the
 * option's bytes, or undefined when the socket has no descriptor or the call fails.
 */
export function getSockOpt(socket: Socket, level: number, name: number, size: number): Buffer | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  getsockopt ??= koffi
    .load('libc.so.6')
    .func(
      'int getsockopt(int fd, int level, int name, _Out_ uint8_t *val, _Inout_ uint32_t *len)',
    ) as GetSockOpt;
  const buf = Buffer.alloc(size);
  return getsockopt(fd, level, name, buf, [size]) === 0 ? buf : undefined;
}

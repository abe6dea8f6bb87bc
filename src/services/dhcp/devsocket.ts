/**
 * A UDP socket bound to one network device (SO_BINDTODEVICE), which Node's dgram cannot make:
 * libc through koffi (loaded on first use) creates it, sets SO_REUSEADDR, SO_BROADCAST and
 * SO_BINDTODEVICE, binds it to 0.0.0.0:port, and hands back the descriptor for
 * `dgram.createSocket('udp4').bind({ fd })` to adopt (the dgram socket then owns and closes it).
 * Such a socket receives only what arrives on that device (broadcasts and unicasts to any local
 * address), and what it sends leaves by that device. A port below 1024 needs root or
 * CAP_NET_BIND_SERVICE; SO_BINDTODEVICE on a fresh socket needs no privilege since Linux 5.7
 * (CAP_NET_RAW before).
 */

import { endianness } from 'node:os';

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_BROADCAST = 6;
const SO_BINDTODEVICE = 25;
/** Device names are at most 15 bytes (IFNAMSIZ 16 with the NUL). */
const IFNAMSIZ = 16;

interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  setsockopt(fd: number, level: number, name: number, val: Buffer, len: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  close(fd: number): number;
  strerror(errno: number): string;
  errno(): number;
}

let libc: Promise<Libc> | undefined;

function load(): Promise<Libc> {
  libc ??= import('koffi').then(({ default: koffi }) => {
    const lib = koffi.load('libc.so.6');
    return {
      socket: lib.func('int socket(int domain, int type, int protocol)'),
      setsockopt: lib.func('int setsockopt(int fd, int level, int name, const uint8_t *val, uint32_t len)'),
      bind: lib.func('int bind(int fd, const uint8_t *addr, uint32_t len)'),
      close: lib.func('int close(int fd)'),
      strerror: lib.func('const char *strerror(int errnum)'),
      errno: () => koffi.errno(),
    } as Libc;
  });
  return libc;
}

function intOpt(v: number): Buffer {
  const b = Buffer.alloc(4);
  if (endianness() === 'LE') b.writeInt32LE(v);
  else b.writeInt32BE(v);
  return b;
}

/** struct sockaddr_in for 0.0.0.0:port. */
function anyAddress(port: number): Buffer {
  const sa = Buffer.alloc(16);
  // sin_family, in host order
  if (endianness() === 'LE') sa.writeUInt16LE(AF_INET, 0);
  else sa.writeUInt16BE(AF_INET, 0);
  sa.writeUInt16BE(port, 2); // sin_port, network order; sin_addr 0.0.0.0; sin_zero
  return sa;
}

/**
 * A descriptor of a UDP socket bound to `device` and to 0.0.0.0:`port`. Fails with
 * `dhcpd: cannot bind to device X: <errno text>` (no such device, not root, port taken…).
 */
export async function openDeviceSocket(device: string, port: number): Promise<number> {
  const fail = (what: string): never => {
    throw new Error(`dhcpd: cannot bind to device ${device}: ${what}`);
  };
  const name = Buffer.from(`${device}\0`);
  if (device === '' || device.includes('\0') || name.length > IFNAMSIZ)
    fail(`not a device name (1 to ${IFNAMSIZ - 1} bytes)`);
  const c = await load();
  const errorText = (): string => {
    const n = c.errno();
    return `${c.strerror(n)} (errno ${n})`;
  };
  const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail(`socket(): ${errorText()}`);
  const step = (what: string, rc: number): void => {
    if (rc === 0) return;
    const text = errorText();
    c.close(fd);
    fail(`${what}: ${text}`);
  };
  step('SO_REUSEADDR', c.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, intOpt(1), 4));
  step('SO_BROADCAST', c.setsockopt(fd, SOL_SOCKET, SO_BROADCAST, intOpt(1), 4));
  step('SO_BINDTODEVICE', c.setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, name.length));
  step(`bind 0.0.0.0:${port}`, c.bind(fd, anyAddress(port), 16));
  return fd;
}

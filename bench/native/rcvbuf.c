/*
 * LD_PRELOAD shim for the DHCP bench's load generator: every IPv4 or packet socket perfdhcp opens
 * gets a receive buffer of RCVBUF_BYTES (SO_RCVBUFFORCE as root, past net.core.rmem_max), so that
 * replies arriving while perfdhcp is off the CPU wait in its socket instead of being dropped.
 * perfdhcp has no option for it, and net.core.rmem_default cannot be set in a network namespace.
 * Built by bench/dhcp.ts with the system's cc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>

int socket(int domain, int type, int protocol) {
  static int (*real)(int, int, int);
  if (!real) real = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
  int fd = real(domain, type, protocol);
  const char *v = getenv("RCVBUF_BYTES");
  int n = v ? atoi(v) : 0;
  if (fd >= 0 && n > 0 && (domain == AF_INET || domain == AF_PACKET)) {
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &n, sizeof n) != 0)
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &n, sizeof n);
  }
  return fd;
}

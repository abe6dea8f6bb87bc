import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Bus } from '../core/bus.js';
import { MetanetError } from '../core/errors.js';
import { Acl, type AclRule } from './acl.js';
import { Admission, refuse } from './admission.js';
import { socketDir, socketPath } from './dir.js';
import {
  CLIENT_LIMITS,
  DAEMON_LIMITS,
  type Limits,
  limits,
  MAX_CONNECTIONS,
  MAX_CONNECTIONS_PER_UID,
} from './limits.js';
import { isRouteLike } from './names.js';
import { peerCred } from './peercred.js';
import { withReusedReads } from './reused.js';
import { SocketTransport } from './transport.js';

export interface DaemonOptions {
  /** Socket directory (default: METANET_DIR, else /run/metanet). */
  readonly dir?: string;
  /** Who may send to / listen on which mailboxes (docs/ipc.md). Default: socket permissions decide. */
  readonly acl?: readonly AclRule[];
  /** File mode of the socket. Default 0o660: the daemon's user and group. */
  readonly mode?: number;
  /** Largest frame payload a peer may send, bytes (default 1 MiB; docs/ipc.md, "Limits"). */
  readonly maxFrame?: number;
  /** Output queued for a peer beyond which the peer is cut, bytes (default 64 MiB). */
  readonly maxBacklog?: number;
  /** Time a peer has to send HELLO, and to finish a frame it started, ms (default 5000). */
  readonly handshakeTimeout?: number;
  /** Connections held at once (default 1024). */
  readonly maxConnections?: number;
  /** Connections held at once from one user id (default 256). */
  readonly maxConnectionsPerUid?: number;
  /** Remove the socket and exit on SIGINT/SIGTERM (default true). */
  readonly signals?: boolean;
}

export interface Daemon {
  readonly name: string;
  readonly path: string;
  readonly transport: SocketTransport;
  /** Stop accepting, close every connection, remove the socket. The bus stays open. */
  close(): Promise<void>;
}

/**
 * Serve a bus as a daemon: listen on `<dir>/<bus.name>.sock` so other processes reach its
 * mailboxes (`name:/path`), and let this bus reach theirs. Refuses to start when a live daemon
 * holds the name; removes a stale socket.
 */
export async function serveDaemon(bus: Bus, options: DaemonOptions = {}): Promise<Daemon> {
  const name = bus.name;
  if (!name) throw new MetanetError('ECONFIG', 'a daemon needs a name: new Bus({ name })');
  if (isRouteLike(name))
    throw new MetanetError(
      'ECONFIG',
      `daemon name "${name}" ends in .DIGITS: such names are the ones daemons give their clients' connections`,
    );
  const inbound: Limits = limits(DAEMON_LIMITS, options);
  const admission = new Admission({
    maxConnections: options.maxConnections ?? MAX_CONNECTIONS,
    maxConnectionsPerUid: options.maxConnectionsPerUid ?? MAX_CONNECTIONS_PER_UID,
  });
  const dir = socketDir(options.dir);
  const path = socketPath(dir, name);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  if (await alive(path))
    throw new MetanetError('EEXIST', `daemon "${name}" is already running (${path} answers)`);
  try {
    unlinkSync(path); // stale: nobody answers
  } catch {}
  const transport = new SocketTransport(bus, { dir, name, inbound });
  bus.attach(transport);
  const acl = new Acl(options.acl);
  /** Accepted connections moved to reused-buffer reads (reused.ts), until they close. */
  const connections = new Set<Socket>();
  // accepted paused: an admitted connection moves to a socket reading into the reused buffer
  // before anything is read (reused.ts)
  const server: Server = createServer({ pauseOnConnect: true }, (sock) => {
    const cred = peerCred(sock);
    const uid = cred?.uid ?? -1;
    const refused = admission.admit(uid);
    if (refused !== undefined) {
      bus.log.log('warn', 'connection refused', { uid, pid: cred?.pid, why: refused });
      refuse(sock, name, 'EDENIED', refused);
      return;
    }
    const moved = withReusedReads(sock);
    // the server no longer tracks a moved connection: close() waits for it here
    if (moved.sock !== sock) {
      connections.add(moved.sock);
      moved.sock.once('close', () => connections.delete(moved.sock));
    }
    transport.adopt(moved.sock, { acl, cred }, () => admission.leave(uid), moved.reads);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(path, options.mode ?? 0o660);
  const removeSocket = (): void => {
    try {
      unlinkSync(path);
    } catch {}
  };
  process.on('exit', removeSocket);
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      process.off('exit', removeSocket);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      // stop accepting, then close the open connections and wait for them to end (server.close
      // waits for those it still tracks; the moved ones are waited for here: one not greeted yet
      // ends at its handshake timeout, one lingering when its peer has read the last frames)
      const stopped = new Promise<void>((r) => server.close(() => r()));
      await transport.close();
      await Promise.all(
        [...connections].map((c) => (c.closed ? undefined : new Promise((r) => c.once('close', r)))),
      );
      await stopped;
      removeSocket();
    })();
    return closing;
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    bus.log.log('info', 'stopping', { daemon: name, signal: sig });
    void close()
      .then(() => bus.close())
      .finally(() => process.exit(0));
  };
  if (options.signals !== false) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  bus.log.log('info', 'daemon listening', { daemon: name, socket: path });
  return { name, path, transport, close };
}

/** Whether something accepts connections on the socket. */
function alive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * A bus for a client process (a CLI, a glue program) that reaches daemons but serves no socket
 * of its own. Its wire name is the bus name (`<prefix>-<pid>` by habit; it need not be unique:
 * a daemon routes each connection by a name of its own, docs/ipc.md). It accepts frames up to
 * `maxFrame` (default 16 MiB) from the daemons it dials.
 */
export function attachClient(bus: Bus, options: { dir?: string; maxFrame?: number } = {}): SocketTransport {
  if (!bus.name) throw new MetanetError('ECONFIG', 'a client bus needs a name (replies are addressed to it)');
  const transport = new SocketTransport(bus, {
    dir: socketDir(options.dir),
    name: bus.name,
    outbound: limits(CLIENT_LIMITS, { maxFrame: options.maxFrame }),
  });
  bus.attach(transport);
  return transport;
}

import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Bus } from '../../core/bus.js';
import { typed } from '../../core/message.js';
import { attachTable } from '../../services/table.js';
import { ImapSniffer } from './imap.js';
import { type OriginalDestination, originalDestination } from './origdst.js';
import { Pop3Sniffer } from './pop3.js';
import type { SniffEvent, Sniffer } from './sniffer.js';
import { mailproxyTable } from './table.js';

export interface MailProxyOptions {
  /** Mailbox prefix (default `/mailproxy`). */
  readonly name?: string;
  /** Listen address (default `0.0.0.0`) and port (0: any; see `port()`). */
  readonly address?: string;
  readonly port?: number;
  /** The firewall service's prefix for `smtp/open`; `false`: send only the login event. Default `/system/firewall`. */
  readonly firewall?: string | false;
  /** Seconds an SMTP opening lasts (default 600). */
  readonly smtpTimeout?: number;
  /** Destination port → protocol (default 143 imap, 110 pop3). Other ports are relayed unparsed. */
  readonly protocols?: Readonly<Record<number, 'imap' | 'pop3'>>;
  /** Milliseconds to reach the server (default 5000). */
  readonly connectTimeoutMs?: number;
  /** Where the original destination comes from (default SO_ORIGINAL_DST; tests may stand in). */
  readonly destination?: (s: Socket) => OriginalDestination | undefined;
}

export interface MailProxy {
  port(): number;
  /** Stop listening, cut every relayed connection, detach the mailboxes. */
  close(): Promise<void>;
}

/**
 * The transparent POP/IMAP proxy: accepts connections nftables redirected to it, recovers each
 * one's original destination, relays both ways byte for byte, and watches the protocol for a
 * successful login; then posts `<name>/login` and asks the firewall to open tcp/25 from that client
 * to that server for `smtpTimeout` seconds.
 */
export async function startMailProxy(bus: Bus, o: MailProxyOptions = {}): Promise<MailProxy> {
  const name = o.name ?? '/mailproxy';
  const firewall = o.firewall === undefined ? '/system/firewall' : o.firewall;
  const smtpTimeout = o.smtpTimeout ?? 600;
  const protocols = o.protocols ?? { 143: 'imap', 110: 'pop3' };
  const destination = o.destination ?? originalDestination;
  const stats = {
    connections: 0,
    active: 0,
    logins: 0,
    starttls: 0,
    overflows: 0,
    errors: 0,
    /** ms from the server's OK being read to the firewall's smtp/open reply, last login. */
    openMs: 0,
    /** ms spent in getsockopt(SO_ORIGINAL_DST), last connection. */
    origDstMs: 0,
  };
  const sockets = new Set<Socket>();
  const error = (mailbox: string, err: string, code: string): void => {
    stats.errors++;
    bus.post(`${name}/error`, { mailbox, error: err, code });
  };

  const detach = attachTable(bus, name, mailproxyTable, {
    '/stats': (_m, ctx) => {
      ctx
        .reply({ ...stats, openMs: typed.float(stats.openMs), origDstMs: typed.float(stats.origDstMs) })
        .catch(() => {});
    },
  });

  const onEvent = (ev: SniffEvent, client: string, dst: OriginalDestination, protocol: string): void => {
    if (ev.kind === 'starttls') {
      stats.starttls++;
      bus.post(`${name}/starttls`, { client, server: dst.address, protocol });
    } else if (ev.kind === 'overflow') {
      stats.overflows++;
      error(
        name,
        `${protocol} ${client} → ${dst.address}: a ${ev.side} line over 8 KiB; parsing stopped, relaying goes on`,
        'ELINE',
      );
    } else {
      stats.logins++;
      bus.post(`${name}/login`, {
        client,
        server: dst.address,
        port: dst.port,
        protocol,
        command: ev.command,
        ...(ev.user === undefined ? {} : { user: ev.user }),
      });
      const t0 = performance.now();
      if (firewall)
        bus
          .request(`${firewall}/smtp/open`, { client, server: dst.address, timeout: smtpTimeout })
          .then((r) => {
            stats.openMs = performance.now() - t0;
            if (r.has('error')) error(`${firewall}/smtp/open`, r.str('error'), 'EFAIL');
          })
          .catch((e: unknown) =>
            error(`${firewall}/smtp/open`, String(e instanceof Error ? e.message : e), 'EFAIL'),
          );
    }
  };

  const relay = (down: Socket): void => {
    stats.connections++;
    const client = (down.remoteAddress ?? '').replace(/^::ffff:/, '');
    const t0 = performance.now();
    const found = destination(down);
    stats.origDstMs = performance.now() - t0;
    // conntrack answers for connections that were not NATed too, with the proxy's own address.
    const local = (down.localAddress ?? '').replace(/^::ffff:/, '');
    const dst = found && !(found.address === local && found.port === down.localPort) ? found : undefined;
    if (!dst) {
      error(
        name,
        `connection from ${client} was not redirected (no original destination): closed`,
        'ENOTREDIRECTED',
      );
      down.destroy();
      return;
    }
    stats.active++;
    sockets.add(down);
    const protocol = protocols[dst.port];
    const sniff: Sniffer | undefined =
      protocol === 'imap' ? new ImapSniffer() : protocol === 'pop3' ? new Pop3Sniffer() : undefined;
    const up = createConnection({ host: dst.address, port: dst.port, allowHalfOpen: true, noDelay: true });
    sockets.add(up);
    up.setTimeout(o.connectTimeoutMs ?? 5000, () => up.destroy(new Error('connect timed out')));
    let connected = false;
    up.once('connect', () => {
      connected = true;
      up.setTimeout(0);
    });
    const handle = (evs: SniffEvent[]): void => {
      for (const ev of evs) onEvent(ev, client, dst, protocol ?? 'tcp');
    };
    pipe(down, up, sniff && ((d) => (sniff.done ? undefined : handle(sniff.client(d)))));
    pipe(up, down, sniff && ((d) => (sniff.done ? undefined : handle(sniff.server(d)))));
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      stats.active--;
      sockets.delete(down);
      sockets.delete(up);
    };
    up.on('error', (e) => {
      if (!connected) error(name, `${client} → ${dst.address}:${dst.port}: ${e.message}`, 'ECONNECT');
      down.destroy();
    });
    down.on('error', () => up.destroy());
    up.on('close', () => {
      down.end();
      end();
    });
    down.on('close', () => {
      up.end();
      end();
    });
  };

  const server: Server = createServer({ noDelay: true, allowHalfOpen: true }, relay);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, o.address ?? '0.0.0.0', () => {
      server.off('error', reject);
      // Accept failures (EMFILE…) are reported; the server keeps listening.
      server.on('error', (e) => error(name, `accept: ${e.message}`, 'EFAIL'));
      resolve();
    });
  });

  return {
    port: () => {
      const a = server.address();
      return typeof a === 'object' && a ? a.port : 0;
    },
    close: async () => {
      detach();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Copy `from` to `to` with backpressure, letting `watch` see each chunk first; half-close passes on. */
function pipe(from: Socket, to: Socket, watch?: (d: Buffer) => void): void {
  from.on('data', (d: Buffer) => {
    watch?.(d);
    if (!to.write(d)) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  });
  from.on('end', () => to.end());
}

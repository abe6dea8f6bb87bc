import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { matchResponse, RCODES, rcodeName, type UpstreamResponse, upstreamQuery } from './packets.js';

/**
 * Asking the upstream servers. Each attempt is a fresh UDP socket (a random source port from the
 * kernel) connected to one server, with a random query id; only a datagram from that server with
 * our id and our question is taken, anything else is ignored and counted. A truncated answer is
 * asked again over TCP (2-byte length framing). Servers are tried in order; the whole resolution
 * never takes longer than `timeoutMs` (docs/apps/dns.md, "Upstream").
 */

export interface Server {
  readonly address: string;
  readonly port: number;
}

export interface UpstreamResult {
  readonly response: UpstreamResponse;
  /** `address:port` of the server that answered. */
  readonly server: string;
  readonly tcp: boolean;
}

/** What the forwarder needs from upstream (tests give their own). */
export interface Resolver {
  resolve(name: string, type: string, klass: string): Promise<UpstreamResult>;
  close(): void;
}

export interface UpstreamCounters {
  /** Queries sent (UDP and TCP). */
  sent: number;
  /** Truncated UDP answers asked again over TCP. */
  tcpRetries: number;
  /** Datagrams or frames that were not the answer we waited for (wrong id/question, garbage). */
  mismatched: number;
}

/** Answers that mean "ask another server". */
const FAILED: ReadonlySet<number> = new Set([RCODES.FORMERR, RCODES.SERVFAIL, RCODES.NOTIMP, RCODES.REFUSED]);

export function serverLabel(s: Server): string {
  return net.isIPv6(s.address) ? `[${s.address}]:${s.port}` : `${s.address}:${s.port}`;
}

/** A server that did not answer goes to the end of the order for this long (ms). */
export const HOLD_DOWN_MS = 30_000;

export class Upstream implements Resolver {
  readonly counters: UpstreamCounters = { sent: 0, tcpRetries: 0, mismatched: 0 };
  /** Servers that timed out or refused, until when they are asked last. */
  private readonly heldDown = new Map<Server, number>();
  private readonly live = new Set<() => void>();
  private closed = false;

  constructor(
    readonly servers: readonly Server[],
    private readonly timeoutMs: number,
  ) {
    if (servers.length === 0) throw new Error('Upstream: no server');
  }

  /**
   * Resolve one question. Attempts: every server once in order (a single server is asked twice,
   * for a lost datagram); each gets an even share of `timeoutMs`, the last one what is left. A
   * server that refuses the connection (ICMP port unreachable) or answers FORMERR, SERVFAIL,
   * NOTIMP or REFUSED is not asked again for this question; one that timed out or refused is
   * asked after the others for HOLD_DOWN_MS (until it answers again). Rejects, naming every
   * attempt, when none answered.
   */
  async resolve(name: string, type: string, klass: string): Promise<UpstreamResult> {
    const now = Date.now();
    const deadline = now + this.timeoutMs;
    const plan =
      this.servers.length > 1
        ? [
            ...this.servers.filter((s) => !((this.heldDown.get(s) ?? 0) > now)),
            ...this.servers.filter((s) => (this.heldDown.get(s) ?? 0) > now),
          ]
        : [this.servers[0]!, this.servers[0]!];
    const share = Math.max(1, Math.floor(this.timeoutMs / plan.length));
    const skip = new Set<Server>();
    const tried: string[] = [];
    for (let i = 0; i < plan.length; i++) {
      const s = plan[i]!;
      if (skip.has(s)) continue;
      const left = deadline - Date.now();
      if (left <= 0 || this.closed) break;
      const label = serverLabel(s);
      try {
        let r = await this.udp(s, name, type, klass, i === plan.length - 1 ? left : Math.min(share, left));
        let tcp = false;
        if (r.truncated) {
          this.counters.tcpRetries++;
          r = await this.tcp(s, name, type, klass, Math.max(1, deadline - Date.now()));
          tcp = true;
        }
        if (FAILED.has(r.rcode)) {
          tried.push(`${label}: ${rcodeName(r.rcode)}`);
          skip.add(s);
          continue;
        }
        this.heldDown.delete(s);
        return { response: r, server: label, tcp };
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        tried.push(`${label}: ${err.message}`);
        if (err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH')
          skip.add(s);
        if (!this.closed) this.heldDown.set(s, Date.now() + HOLD_DOWN_MS);
      }
    }
    throw new Error(
      `no upstream answer for ${name} ${type} within ${this.timeoutMs} ms (${tried.join('; ') || 'not asked'})`,
    );
  }

  /** Abort every exchange in flight; later ones fail at once. */
  close(): void {
    this.closed = true;
    for (const abort of [...this.live]) abort();
  }

  private exchange<T>(
    ms: number,
    what: string,
    run: (finish: (e: Error | undefined, r?: T) => void) => () => void,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.closed) return reject(new Error('upstream closed'));
      let done = false;
      let cleanup: () => void = () => {};
      const finish = (e: Error | undefined, r?: T): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.live.delete(abort);
        try {
          cleanup();
        } catch {
          // already closed
        }
        if (e) reject(e);
        else resolve(r as T);
      };
      const abort = (): void => finish(new Error('upstream closed'));
      const timer = setTimeout(() => finish(new Error(`no ${what} answer within ${ms} ms`)), ms);
      this.live.add(abort);
      cleanup = run(finish);
    });
  }

  private udp(s: Server, name: string, type: string, klass: string, ms: number): Promise<UpstreamResponse> {
    return this.exchange<UpstreamResponse>(ms, 'udp', (finish) => {
      const id = randomInt(0, 65536);
      const query = upstreamQuery(id, name, type, klass);
      const sock = dgram.createSocket(net.isIPv6(s.address) ? 'udp6' : 'udp4');
      sock.on('error', (e) => finish(e));
      sock.on('message', (buf) => {
        const r = matchResponse(buf, id, name, type, klass);
        if (r) finish(undefined, r);
        else this.counters.mismatched++;
      });
      sock.connect(s.port, s.address, () => {
        this.counters.sent++;
        sock.send(query, (e) => {
          if (e) finish(e);
        });
      });
      return () => sock.close();
    });
  }

  private tcp(s: Server, name: string, type: string, klass: string, ms: number): Promise<UpstreamResponse> {
    return this.exchange<UpstreamResponse>(ms, 'tcp', (finish) => {
      const id = randomInt(0, 65536);
      const query = upstreamQuery(id, name, type, klass);
      const sock = net.connect({ host: s.address, port: s.port });
      let buf: Buffer = Buffer.alloc(0);
      sock.on('connect', () => {
        this.counters.sent++;
        const len = Buffer.alloc(2);
        len.writeUInt16BE(query.length);
        sock.write(Buffer.concat([len, query]));
      });
      sock.on('data', (d: Buffer) => {
        buf = buf.length ? Buffer.concat([buf, d]) : d;
        while (buf.length >= 2) {
          const n = buf.readUInt16BE(0);
          if (buf.length < 2 + n) break;
          const frame = buf.subarray(2, 2 + n);
          buf = buf.subarray(2 + n);
          const r = matchResponse(frame, id, name, type, klass);
          if (r) return finish(undefined, r);
          this.counters.mismatched++;
        }
      });
      sock.on('error', (e) => finish(e));
      sock.on('close', () => finish(new Error('tcp connection closed before the answer')));
      return () => sock.destroy();
    });
  }
}

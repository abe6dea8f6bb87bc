import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { MetanetError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { A, CODE_NAMES, Code } from './attributes.js';
import type { ServerConfig } from './config.js';
import {
  type Attr,
  decode,
  hidePassword,
  type Packet,
  randomAuthenticator,
  signRequest,
  verifyResponse,
} from './packet.js';
import { rateLimited } from './ratelog.js';

/** What to send; the client adds the identifier, the authenticators and the Message-Authenticator. */
export interface RequestSpec {
  readonly code: number;
  readonly attrs: readonly Attr[];
  /** PAP: added as User-Password, hidden with each server's secret and Request Authenticator. */
  readonly password?: string;
}

export interface Answer {
  readonly packet: Packet;
  /** `host:port` of the server that answered. */
  readonly server: string;
  /** From the first send to this server until its answer. */
  readonly ms: number;
  /** Sends to that server (1 = no retransmission). */
  readonly sends: number;
}

export interface ClientOptions {
  readonly servers: readonly ServerConfig[];
  readonly timeoutMs: number;
  readonly retries: number;
  /** Answers to Access-Requests without a valid Message-Authenticator are dropped. */
  readonly requireMessageAuthenticator: boolean;
  readonly log: Logger;
}

type Kind = 'auth' | 'acct';

/** Which answers a request's code may get. */
const ANSWERS: Readonly<Record<number, readonly number[]>> = {
  [Code.AccessRequest]: [Code.AccessAccept, Code.AccessReject, Code.AccessChallenge],
  [Code.AccountingRequest]: [Code.AccountingResponse],
  [Code.StatusServer]: [Code.AccessAccept, Code.AccountingResponse],
};

interface Pending {
  readonly code: number;
  readonly requestAuth: Buffer;
  readonly secret: string;
  answer(raw: Buffer): void;
  refused(): void;
}

/** One connected UDP socket to one server port: its identifiers and the requests in flight. */
class Channel {
  readonly socket = dgram.createSocket('udp4');
  readonly pending = new Map<number, Pending>();
  readonly ready: Promise<void>;
  private nextId = Math.floor(Math.random() * 256);

  constructor(
    readonly name: string,
    host: string,
    port: number,
    private readonly check: (p: Pending, raw: Buffer) => boolean,
    private readonly log: Logger,
  ) {
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('error', reject);
      this.socket.connect(port, host, () => {
        this.socket.off('error', reject);
        resolve();
      });
    });
    this.ready.catch(() => {});
    this.socket.on('message', (raw) => {
      if (raw.length < 20) return;
      const p = this.pending.get(raw[1]!);
      if (!p) return;
      if (this.check(p, raw)) p.answer(raw);
    });
    // A connected UDP socket hears ICMP port-unreachable as ECONNREFUSED: the server is down.
    this.socket.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNREFUSED') for (const p of this.pending.values()) p.refused();
      else this.log.log('warn', 'radius: socket error', { server: this.name, error: e.message });
    });
  }

  /** A free identifier (RFC 2865: 256 requests in flight per socket at most). */
  allocate(): number {
    for (let i = 0; i < 256; i++) {
      const id = (this.nextId + i) & 0xff;
      if (!this.pending.has(id)) {
        this.nextId = (id + 1) & 0xff;
        return id;
      }
    }
    throw new MetanetError('EFAIL', `radius: 256 requests in flight to ${this.name}`);
  }

  close(): void {
    try {
      this.socket.close();
    } catch {
      // already closed
    }
  }
}

/**
 * The RADIUS client: sends a request to the first server that answers, trying each `retries + 1`
 * times `timeoutMs` apart, then the next (failover), within an overall budget. Servers are tried
 * from the last one that answered (a dead primary costs one timeout, not one per request). Each
 * server port has its own connected socket, so a server that is down (ICMP port unreachable) is
 * passed over at once. Every request carries a Message-Authenticator; answers are checked
 * (Response Authenticator, Message-Authenticator) and forged or stray ones are dropped.
 */
export class RadiusClient {
  private readonly channels = new Map<string, Channel>();
  private readonly current: Record<Kind, number> = { auth: 0, acct: 0 };
  private closed = false;
  private readonly dropLog: ReturnType<typeof rateLimited>;
  readonly stats = { sent: 0, answered: 0, retransmits: 0, failovers: 0, dropped: 0, failed: 0 };

  constructor(private readonly o: ClientOptions) {
    this.dropLog = rateLimited(o.log);
  }

  /** Send to the servers' auth or acct ports; rejects with ETIMEDOUT when none answered in time. */
  async send(kind: Kind, spec: RequestSpec, opts: { budgetMs?: number } = {}): Promise<Answer> {
    if (this.closed) throw new MetanetError('ECLOSED', 'radius client closed');
    const servers = this.o.servers;
    const deadline = performance.now() + (opts.budgetMs ?? Number.POSITIVE_INFINITY);
    const tried: string[] = [];
    const first = this.current[kind];
    for (let k = 0; k < servers.length; k++) {
      if (performance.now() >= deadline) break;
      const i = (first + k) % servers.length;
      const s = servers[i]!;
      const port = kind === 'auth' ? s.authPort : s.acctPort;
      const name = `${s.host}:${port}`;
      tried.push(name);
      const answer = await this.tryServer(name, s.host, port, s.secret, spec, deadline);
      if (answer) {
        if (k > 0) {
          this.stats.failovers++;
          this.o.log.log('warn', 'radius: failed over', { kind, to: name });
        }
        this.current[kind] = i;
        this.stats.answered++;
        return answer;
      }
      this.o.log.log('warn', 'radius: no answer', { kind, server: name });
      this.current[kind] = (i + 1) % servers.length;
    }
    this.stats.failed++;
    throw new MetanetError(
      'ETIMEDOUT',
      `no RADIUS server answered the ${CODE_NAMES[spec.code] ?? spec.code} (${tried.join(', ') || 'no time left'})`,
    );
  }

  private channel(name: string, host: string, port: number): Channel {
    let ch = this.channels.get(name);
    if (!ch) {
      ch = new Channel(name, host, port, (p, raw) => this.accept(name, p, raw), this.o.log);
      this.channels.set(name, ch);
    }
    return ch;
  }

  /** Whether a datagram is the answer to `p`: right code, right authenticators. */
  private accept(server: string, p: Pending, raw: Buffer): boolean {
    const code = raw[0]!;
    const why = !ANSWERS[p.code]?.includes(code)
      ? `unexpected code ${code}`
      : (() => {
          const v = verifyResponse(raw, p.requestAuth, p.secret, {
            requireMessageAuthenticator: this.o.requireMessageAuthenticator && p.code === Code.AccessRequest,
          });
          return v.ok ? undefined : v.why;
        })();
    if (why === undefined) return true;
    this.stats.dropped++;
    this.dropLog('warn', 'radius: answer dropped', { server, id: raw[1], why });
    return false;
  }

  /** One server: send, wait, send again…; undefined when it did not answer in time. */
  private async tryServer(
    name: string,
    host: string,
    port: number,
    secret: string,
    spec: RequestSpec,
    deadline: number,
  ): Promise<Answer | undefined> {
    const ch = this.channel(name, host, port);
    try {
      await ch.ready;
    } catch (e) {
      this.o.log.log('warn', 'radius: cannot reach server', { server: name, error: (e as Error).message });
      this.channels.delete(name);
      ch.close();
      return undefined;
    }
    const id = ch.allocate();
    const authenticator = randomAuthenticator();
    const attrs =
      spec.password === undefined
        ? spec.attrs
        : [
            ...spec.attrs,
            { type: A.UserPassword, value: hidePassword(spec.password, secret, authenticator) },
          ];
    const raw = signRequest({ code: spec.code, id, authenticator, attrs }, secret, {
      messageAuthenticator: true,
    });
    const requestAuth = Buffer.from(raw.subarray(4, 20));
    let settle: (v: Buffer | 'refused') => void = () => {};
    const answered = new Promise<Buffer | 'refused'>((r) => (settle = r));
    ch.pending.set(id, {
      code: spec.code,
      requestAuth,
      secret,
      answer: (b) => settle(b),
      refused: () => settle('refused'),
    });
    const t0 = performance.now();
    let sends = 0;
    try {
      for (let t = 0; t <= this.o.retries; t++) {
        const left = deadline - performance.now();
        if (left <= 0 || this.closed) break;
        ch.socket.send(raw);
        sends++;
        this.stats.sent++;
        if (t > 0) this.stats.retransmits++;
        const got = await within(answered, Math.min(this.o.timeoutMs, left));
        if (got === 'refused') return undefined;
        if (got) return { packet: decode(got), server: name, ms: performance.now() - t0, sends };
      }
      return undefined;
    } finally {
      ch.pending.delete(id);
    }
  }

  /** The server requests now go to first, as `host:port` (auth or acct). */
  active(kind: Kind): string {
    const s = this.o.servers[this.current[kind]]!;
    return `${s.host}:${kind === 'auth' ? s.authPort : s.acctPort}`;
  }

  close(): void {
    this.closed = true;
    for (const ch of this.channels.values()) ch.close();
    this.channels.clear();
  }
}

/** The promise's value, or undefined after `ms`. */
function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(undefined), ms);
    p.then((v) => {
      clearTimeout(t);
      resolve(v);
    });
  });
}

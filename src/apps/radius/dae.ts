import dgram from 'node:dgram';
import type { Logger } from '../../core/log.js';
import { A, Code, ErrorCause, VENDOR } from './attributes.js';
import { type Limits, limitsFrom } from './auth.js';
import type { DaeConfig } from './config.js';
import {
  type Attr,
  attr,
  decode,
  findAll,
  intOf,
  ipOf,
  type Packet,
  signResponse,
  textOf,
  verifyRequest,
} from './packet.js';
import { rateLimited } from './ratelog.js';

/** A live session as the DAE server matches requests against it. */
export interface DaeSession {
  readonly ip: string;
  readonly mac: string;
  readonly sessionId?: string;
  readonly username?: string;
}

export interface DaeDeps {
  readonly nasIp: string;
  readonly nasIdentifier: string;
  readonly calledStationId: string;
  /** The live sessions (the portal's list joined with accounting's ids). */
  sessions(): Promise<readonly DaeSession[]>;
  /** Log a guest out (`portal:/portal/logout {ip, reason: operator}`); false when it had no session. */
  logout(ip: string): Promise<boolean>;
  /** CoA: give a live guest new limits (the portal's `/portal/limits`); true when it had a session. */
  change?(ip: string, limits: Limits): Promise<boolean>;
  /** As the config's `swapInputOutput`, for the octet limits of a CoA. */
  readonly swap?: boolean;
  readonly log: Logger;
}

/** Attributes that identify the NAS or a session (RFC 5176 §3). */
const IDENTIFY: ReadonlySet<number> = new Set([
  A.UserName,
  A.NasIpAddress,
  A.NasIdentifier,
  A.FramedIpAddress,
  A.CalledStationId,
  A.CallingStationId,
  A.AcctSessionId,
]);
/** Attributes any request may carry that change nothing. */
const HOUSEKEEPING: ReadonlySet<number> = new Set([
  A.ProxyState,
  A.MessageAuthenticator,
  A.EventTimestamp,
  A.State,
  A.Class,
  A.AcctTerminateCause,
  A.ReplyMessage,
]);
/** Event-Timestamp further than this from now (s) is a replay (RFC 5176 §5.2). */
const WINDOW_S = 300;
const DUPLICATE_MS = 5000;

const hexMac = (s: string): string => s.toLowerCase().replace(/[^0-9a-f]/g, '');

export interface DaeStats {
  received: number;
  dropped: number;
  acks: number;
  naks: number;
}

/**
 * The RFC 5176 Dynamic Authorization server: Disconnect-Request and CoA-Request from the allowed
 * clients, each with its own secret. Requests from anyone else, with a wrong authenticator, a
 * wrong or (when required) missing Message-Authenticator, a stale Event-Timestamp or malformed
 * attributes are dropped without an answer. Disconnect → `/portal/logout {ip, reason: operator}`
 * for every matching session, Disconnect-ACK; CoA → nothing can be changed on a live guest yet:
 * CoA-NAK Error-Cause 405 (Unsupported-Service) when it asks for a change, CoA-ACK when it only
 * names a session. Duplicates (same client, id and authenticator within 5 s) get the same answer.
 * `handle` never throws: a hostile datagram costs a log line.
 */
export class DaeServer {
  private socket: dgram.Socket | undefined;
  private readonly recent = new Map<string, { at: number; answer: Promise<Buffer> }>();
  private readonly dropLog: ReturnType<typeof rateLimited>;
  readonly stats: DaeStats = { received: 0, dropped: 0, acks: 0, naks: 0 };

  constructor(
    private readonly config: DaeConfig,
    private readonly deps: DaeDeps,
  ) {
    this.dropLog = rateLimited(deps.log);
  }

  async listen(): Promise<{ address: string; port: number }> {
    const s = dgram.createSocket('udp4');
    s.on('message', (raw, rinfo) => {
      void this.handle(raw, rinfo.address, rinfo.port).then((answer) => {
        if (answer) s.send(answer, rinfo.port, rinfo.address);
      });
    });
    s.on('error', (e) => this.deps.log.log('warn', 'radius: DAE socket error', { error: e.message }));
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(this.config.port, this.config.address, () => {
        s.off('error', reject);
        resolve();
      });
    });
    this.socket = s;
    const a = s.address();
    return { address: a.address, port: a.port };
  }

  /** One datagram from `address:port` → the answer to send back, or undefined (dropped). Never throws. */
  async handle(raw: Buffer, address: string, port: number): Promise<Buffer | undefined> {
    this.stats.received++;
    const drop = (why: string, fields: Record<string, unknown> = {}): undefined => {
      this.stats.dropped++;
      this.dropLog('warn', 'radius: DAE request dropped', {
        from: `${address}:${port}`,
        why,
        ...fields,
      });
      return undefined;
    };
    try {
      const client = this.config.clients.find((c) => c.address === address);
      if (!client) return drop('not an allowed client');
      if (raw.length < 20) return drop('short packet');
      const code = raw[0];
      if (code !== Code.DisconnectRequest && code !== Code.CoaRequest) return drop(`code ${code}`);
      const v = verifyRequest(raw, client.secret, {
        requireMessageAuthenticator: this.config.requireMessageAuthenticator,
      });
      if (!v.ok) return drop(v.why);
      const p = decode(raw);
      const key = `${address}:${port}:${p.id}:${p.authenticator.toString('hex')}`;
      const now = Date.now();
      for (const [k, r] of this.recent) if (now - r.at > DUPLICATE_MS) this.recent.delete(k);
      const seen = this.recent.get(key);
      if (seen) return await seen.answer; // a retransmission: the same answer, acted on once
      const ts = intOf(p, A.EventTimestamp);
      if (ts !== undefined && Math.abs(now / 1000 - ts) > WINDOW_S)
        return drop('Event-Timestamp outside the window', { eventTimestamp: ts });
      const answer = this.respond(p, client.secret, address);
      this.recent.set(key, { at: now, answer });
      return await answer;
    } catch (e) {
      return drop('malformed', { error: (e as Error).message });
    }
  }

  private async respond(p: Packet, secret: string, from: string): Promise<Buffer> {
    const { ack, cause } = await this.decide(p);
    const answer = this.answer(p, ack, cause, secret);
    if (ack) this.stats.acks++;
    else this.stats.naks++;
    this.deps.log.log('info', 'radius: DAE request answered', {
      from,
      request: p.code === Code.DisconnectRequest ? 'Disconnect' : 'CoA',
      ack,
      ...(cause === undefined ? {} : { errorCause: cause }),
    });
    return answer;
  }

  /** What to answer: ACK, or NAK with its Error-Cause. */
  private async decide(p: Packet): Promise<{ ack: boolean; cause?: number }> {
    const nak = (cause: number) => ({ ack: false, cause });
    const disconnect = p.code === Code.DisconnectRequest;
    const nasIp = ipOf(p, A.NasIpAddress);
    const nasId = textOf(p, A.NasIdentifier);
    if (
      (nasIp !== undefined && nasIp !== this.deps.nasIp) ||
      (nasId !== undefined && nasId !== this.deps.nasIdentifier)
    )
      return nak(ErrorCause.NasIdentificationMismatch);
    const other = p.attrs.filter(
      (a) => a.vendor !== undefined || (!IDENTIFY.has(a.type) && !HOUSEKEEPING.has(a.type)),
    );
    if (disconnect && other.length > 0) return nak(ErrorCause.UnsupportedAttribute);
    const byIp = ipOf(p, A.FramedIpAddress);
    const byMac = textOf(p, A.CallingStationId);
    const bySession = textOf(p, A.AcctSessionId);
    const byUser = textOf(p, A.UserName);
    const called = textOf(p, A.CalledStationId);
    if (byIp === undefined && byMac === undefined && bySession === undefined && byUser === undefined)
      return nak(ErrorCause.MissingAttribute);
    if (called !== undefined && called !== this.deps.calledStationId)
      return nak(ErrorCause.SessionContextNotFound);
    let sessions: readonly DaeSession[];
    try {
      sessions = await this.deps.sessions();
    } catch (e) {
      this.deps.log.log('warn', 'radius: DAE cannot list sessions', { error: (e as Error).message });
      return nak(ErrorCause.ResourcesUnavailable);
    }
    const match = sessions.filter(
      (s) =>
        (byIp === undefined || s.ip === byIp) &&
        (byMac === undefined || hexMac(s.mac) === hexMac(byMac)) &&
        (bySession === undefined || s.sessionId === bySession) &&
        (byUser === undefined || s.username === byUser),
    );
    if (match.length === 0) return nak(ErrorCause.SessionContextNotFound);
    // CoA: the limit attributes of an Access-Accept (Session-Timeout, Idle-Timeout, ChilliSpot
    // octets and bandwidth, WISPr bandwidth) change the matched sessions through the portal; any
    // other attribute cannot be honoured, and the request is refused as a whole (RFC 5176 §3.5).
    if (!disconnect) {
      if (other.length === 0) return { ack: true };
      if (other.some((a) => !isLimitAttr(a))) return nak(ErrorCause.UnsupportedAttribute);
      if (!this.deps.change) return nak(ErrorCause.UnsupportedService);
      const limits = limitsFrom(other, this.deps.swap);
      let changed = 0;
      for (const s of match) {
        try {
          if (await this.deps.change(s.ip, limits)) changed++;
        } catch (e) {
          this.deps.log.log('warn', 'radius: CoA failed', { ip: s.ip, error: (e as Error).message });
          return nak(ErrorCause.ResourcesUnavailable);
        }
      }
      return changed > 0 ? { ack: true } : nak(ErrorCause.SessionContextNotFound);
    }
    let removed = 0;
    for (const s of match) {
      try {
        if (await this.deps.logout(s.ip)) removed++;
      } catch (e) {
        this.deps.log.log('warn', 'radius: DAE logout failed', { ip: s.ip, error: (e as Error).message });
        return nak(ErrorCause.ResourcesUnavailable);
      }
    }
    return removed > 0 ? { ack: true } : nak(ErrorCause.SessionContextNotFound);
  }

  private answer(p: Packet, ack: boolean, cause: number | undefined, secret: string): Buffer {
    const disconnect = p.code === Code.DisconnectRequest;
    const code = disconnect
      ? ack
        ? Code.DisconnectAck
        : Code.DisconnectNak
      : ack
        ? Code.CoaAck
        : Code.CoaNak;
    const attrs: Attr[] = [
      ...(cause === undefined ? [] : [attr.int(A.ErrorCause, cause)]),
      ...findAll(p, A.ProxyState),
    ];
    const withMa = p.attrs.some((a) => a.type === A.MessageAuthenticator && a.vendor === undefined);
    return signResponse({ code, id: p.id, authenticator: p.authenticator, attrs }, p.authenticator, secret, {
      messageAuthenticator: withMa,
    });
  }

  get port(): number | undefined {
    return this.socket?.address().port;
  }

  close(): Promise<void> {
    const s = this.socket;
    this.socket = undefined;
    return new Promise((resolve) => (s ? s.close(() => resolve()) : resolve()));
  }
}

/** Whether an attribute is one of the limits a CoA may change. */
function isLimitAttr(a: Attr): boolean {
  if (a.vendor === undefined) return a.type === A.SessionTimeout || a.type === A.IdleTimeout;
  return a.vendor === VENDOR.ChilliSpot || a.vendor === VENDOR.WISPr;
}

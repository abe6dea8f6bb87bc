import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Bus } from '../../core/bus.js';
import { STOP } from '../../core/listener.js';
import type { Logger } from '../../core/log.js';
import { Message } from '../../core/message.js';
import { follow } from '../follow.js';
import { A, CHILLI, Code, ServiceType, VENDOR, WISPR } from './attributes.js';
import type { RadiusClient } from './client.js';
import { formatMac, type RadiusConfig } from './config.js';
import { type Attr, attr, chapPassword, findAll, intOf, type Packet } from './packet.js';

/** The portal's largest session and idle timeout (its config's range). */
const MAX_SECONDS = 4233600;
const GIGA = 2 ** 32;

/** The per-guest limits an Access-Accept sets, as the portal's `/portal/auth` reply tuples. */
export interface Limits {
  'session-timeout'?: number;
  'idle-timeout'?: number;
  'quota-up'?: number;
  'quota-down'?: number;
  'quota-total'?: number;
  'rate-up'?: number;
  'rate-down'?: number;
}

/**
 * An Access-Accept's attributes → the portal's limit tuples. Session-Timeout (0 or absent: the
 * portal's default) and Idle-Timeout are capped at the portal's 4233600 s; ChilliSpot-Max-Input /
 * Output / Total-Octets with their Gigawords (CoovaChilli 21-23) become quota-up / quota-down /
 * quota-total in bytes (input is what the NAS receives from the guest: its upload; `swap` turns
 * that round); WISPr-Bandwidth-Max-Up/Down (bit/s), else ChilliSpot-Bandwidth-Max-Up/Down
 * (kbit/s), become rate-up / rate-down in bit/s.
 */
export function limitsFrom(p: Packet | readonly Attr[], swap = false): Limits {
  const out: Limits = {};
  const st = intOf(p, A.SessionTimeout);
  if (st !== undefined && st > 0) out['session-timeout'] = Math.min(st, MAX_SECONDS);
  const it = intOf(p, A.IdleTimeout);
  if (it !== undefined) out['idle-timeout'] = Math.min(it, MAX_SECONDS);
  const octets = (lo: number, hi: number): number | undefined => {
    const l = intOf(p, lo, VENDOR.ChilliSpot);
    const h = intOf(p, hi, VENDOR.ChilliSpot);
    return l === undefined && h === undefined ? undefined : (h ?? 0) * GIGA + (l ?? 0);
  };
  const input = octets(CHILLI.MaxInputOctets, CHILLI.MaxInputGigawords);
  const output = octets(CHILLI.MaxOutputOctets, CHILLI.MaxOutputGigawords);
  const total = octets(CHILLI.MaxTotalOctets, CHILLI.MaxTotalGigawords);
  const [up, down] = swap ? [output, input] : [input, output];
  if (up !== undefined) out['quota-up'] = up;
  if (down !== undefined) out['quota-down'] = down;
  if (total !== undefined) out['quota-total'] = total;
  const rate = (wispr: number, chilliKbit: number): number | undefined => {
    const w = intOf(p, wispr, VENDOR.WISPr);
    if (w !== undefined) return w;
    const c = intOf(p, chilliKbit, VENDOR.ChilliSpot);
    return c === undefined ? undefined : c * 1000;
  };
  const rUp = rate(WISPR.BandwidthMaxUp, CHILLI.BandwidthMaxUp);
  const rDown = rate(WISPR.BandwidthMaxDown, CHILLI.BandwidthMaxDown);
  if (rUp !== undefined) out['rate-up'] = rUp;
  if (rDown !== undefined) out['rate-down'] = rDown;
  return out;
}

/** Every Reply-Message of a packet, joined (RFC 2865 §5.18: they are concatenated for display). */
export function replyMessage(p: Packet): string | undefined {
  const all = findAll(p, A.ReplyMessage).map((a) => a.value.toString('utf8').trim());
  const text = all.filter((s) => s.length > 0).join(' ');
  return text.length > 0 ? text : undefined;
}

/** What authentication hands to accounting for the `/portal/login` that follows an accept. */
export interface Grant {
  readonly ip: string;
  readonly mac: string;
  readonly username: string;
  readonly sessionId: string;
  readonly classes: readonly string[];
  /** Acct-Interim-Interval from the answer (0 or absent: the config's). */
  readonly interval: number | undefined;
  /** Acct-Authentic: 1 RADIUS, 2 Local (fail-open). */
  readonly authentic: number;
  readonly at: number;
}

/** Grants waiting for their `/portal/login`, by `ip mac`; a minute at most. */
export class Grants {
  private readonly byKey = new Map<string, Grant>();
  put(g: Grant): void {
    const now = Date.now();
    for (const [k, v] of this.byKey) if (now - v.at > 60_000) this.byKey.delete(k);
    this.byKey.set(`${g.ip} ${g.mac}`, g);
  }
  take(ip: string, mac: string): Grant | undefined {
    const k = `${ip} ${mac}`;
    const g = this.byKey.get(k);
    this.byKey.delete(k);
    return g && Date.now() - g.at <= 60_000 ? g : undefined;
  }
}

/** A new Acct-Session-Id: 16 hex digits, unique across restarts. */
export const newSessionId = (): string => randomBytes(8).toString('hex').toUpperCase();

export interface Verdict {
  readonly ok: boolean;
  readonly reason?: string;
  readonly limits: Limits;
  /** The accept's Reply-Message: the portal shows it on the guest's status page (`message`). */
  readonly message?: string;
  /** `mac`, `password`, `fail-open`, or `none` (refused before asking). */
  readonly via: 'mac' | 'password' | 'fail-open' | 'none';
  readonly ms: number;
}

/**
 * Authenticate one `/portal/auth` request: MAC authentication first when configured, then the
 * form's username and password (PAP or CHAP). An accept hands its grant to accounting.
 */
export async function authenticate(
  m: Message,
  config: RadiusConfig,
  client: RadiusClient,
  grants: Grants,
  log: Logger,
): Promise<Verdict> {
  const t0 = performance.now();
  const ip = m.str('ip');
  const mac = m.str('mac');
  const form = m.get('form')?.type === 'list' ? m.list('form') : Message.empty;
  const field = (tag: string): string => {
    const t = form.get(tag);
    return t?.type === 'str' ? t.value : '';
  };
  const username = field(config.usernameField);
  const password = field(config.passwordField);
  const macName = formatMac(mac, config.macFormat);
  const sessionId = newSessionId();
  const tries: { user: string; password: string; via: 'mac' | 'password' }[] = [];
  if (config.macAuth)
    tries.push({ user: macName + config.macSuffix, password: config.macPassword ?? macName, via: 'mac' });
  if (username) tries.push({ user: username, password, via: 'password' });
  const done = (v: Omit<Verdict, 'ms'>): Verdict => ({ ...v, ms: performance.now() - t0 });
  if (tries.length === 0) return done({ ok: false, reason: config.missingMessage, limits: {}, via: 'none' });
  // What cannot be a RADIUS User-Name (253 bytes) or User-Password (128) is refused unasked.
  if (tries.some((t) => Buffer.byteLength(t.user) > 253 || Buffer.byteLength(t.password) > 128))
    return done({ ok: false, reason: config.rejectMessage, limits: {}, via: 'none' });

  const deadline = t0 + config.authBudgetMs;
  let refusal: string | undefined;
  for (const t of tries) {
    const attrs = requestAttrs(config, { ip, macName, user: t.user, sessionId });
    const spec =
      config.auth === 'chap'
        ? { code: Code.AccessRequest, attrs: [...attrs, ...chap(t.password)] }
        : { code: Code.AccessRequest, attrs, password: t.password };
    let answer: Packet;
    try {
      answer = (await client.send('auth', spec, { budgetMs: deadline - performance.now() })).packet;
    } catch (e) {
      log.log('warn', 'radius: authentication unavailable', {
        ip,
        mac,
        failOpen: config.failOpen,
        error: (e as Error).message,
      });
      if (!config.failOpen)
        return done({ ok: false, reason: config.unavailableMessage, limits: {}, via: t.via });
      grants.put({
        ip,
        mac,
        username: username || t.user, // accounted under the name the guest typed, if any
        sessionId,
        classes: [],
        interval: undefined,
        authentic: 2,
        at: Date.now(),
      });
      return done({ ok: true, limits: {}, via: 'fail-open' });
    }
    const message = replyMessage(answer);
    if (answer.code === Code.AccessAccept) {
      grants.put({
        ip,
        mac,
        username: t.user,
        sessionId,
        classes: findAll(answer, A.Class).map((a) => a.value.toString('hex')),
        interval: intOf(answer, A.AcctInterimInterval),
        authentic: 1,
        at: Date.now(),
      });
      return done({
        ok: true,
        limits: limitsFrom(answer, config.swapInputOutput),
        via: t.via,
        ...(message ? { message } : {}),
      });
    }
    // Reject (or a Challenge, which a splash page cannot answer): the next try, or the refusal.
    refusal =
      answer.code === Code.AccessChallenge
        ? (message ?? 'a further challenge is not supported')
        : (message ?? config.rejectMessage);
    if (t.via === 'mac') refusal = message ?? config.missingMessage;
  }
  return done({ ok: false, reason: refusal, limits: {}, via: tries.at(-1)!.via });
}

/** The Access-Request's attributes but the password (RFC 2865, RFC 3580 §3.20-3.21). */
export function requestAttrs(
  config: RadiusConfig,
  g: { ip: string; macName: string; user: string; sessionId: string },
): Attr[] {
  return [
    attr.str(A.UserName, g.user),
    attr.ip(A.NasIpAddress, config.nasIp),
    attr.str(A.NasIdentifier, config.nasIdentifier),
    attr.int(A.NasPortType, config.nasPortType),
    attr.int(A.ServiceType, ServiceType.Login),
    attr.str(A.CallingStationId, g.macName),
    attr.str(A.CalledStationId, config.calledStationId ?? config.nasIdentifier),
    attr.ip(A.FramedIpAddress, g.ip),
    attr.str(A.AcctSessionId, g.sessionId),
  ];
}

/** CHAP-Password and CHAP-Challenge for a password (a fresh 16-byte challenge). */
function chap(password: string): Attr[] {
  const challenge = randomBytes(16);
  const ident = randomBytes(1)[0]!;
  return [
    attr.bytes(A.ChapPassword, chapPassword(ident, password, challenge)),
    attr.bytes(A.ChapChallenge, challenge),
  ];
}

/**
 * The hook: a listener prepended on `<target>:<portal>/auth` (fail-closed: if it does not answer
 * within the budget the chain stops, and the portal says "try again"). It always replies and
 * stops the chain — an error of its own is a refusal, never a fall-through to the stock
 * listener that lets everyone in.
 */
export function attachAuth(
  bus: Bus,
  config: RadiusConfig,
  client: RadiusClient,
  grants: Grants,
  stats: { accepted: number; rejected: number; unavailable: number; lastMs: number },
) {
  const log = bus.log;
  return follow(
    bus,
    `${config.target}:${config.portal}/auth`,
    async function radiusAuth(m, ctx) {
      let v: Verdict;
      try {
        v = await authenticate(m, config, client, grants, log);
      } catch (e) {
        log.log('error', 'radius: authentication failed', { error: (e as Error).message });
        v = { ok: false, reason: config.unavailableMessage, limits: {}, via: 'none', ms: 0 };
      }
      stats.lastMs = v.ms;
      if (v.ok) stats.accepted++;
      else if (v.reason === config.unavailableMessage) stats.unavailable++;
      else stats.rejected++;
      log.log('info', v.ok ? 'radius: accepted' : 'radius: refused', {
        ip: m.str('ip', ''),
        mac: m.str('mac', ''),
        via: v.via,
        ms: Math.round(v.ms),
        ...(v.reason ? { reason: v.reason } : {}),
        ...v.limits,
      });
      if (ctx.replyTo)
        await ctx.reply({
          ok: v.ok,
          ...(v.reason ? { reason: v.reason } : {}),
          ...(v.ok && v.message ? { message: v.message } : {}),
          ...v.limits,
        });
      return STOP;
    },
    {
      position: 'prepend',
      identity: { app: 'radius' },
      timeout: config.authBudgetMs + 500,
      onTimeout: 'stop',
    },
  );
}

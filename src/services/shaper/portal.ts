import type { Bus } from '../../core/bus.js';
import { MetanetError } from '../../core/errors.js';
import type { Message } from '../../core/message.js';
import { checkPath } from '../../core/path.js';
import type { ShaperOptions } from './options.js';
import { installShaperService, type ShaperService } from './service.js';

/**
 * The shaper following a captive portal without the portal knowing about it: a login
 * (`<portal>/login` {ip, mac, expires, rate-up?, rate-down?}) adds the guest with its caps (or
 * the `defaults` when the login carries none; `0` is no cap), a
 * logout (`<portal>/logged-out` {ip, reason}) removes it. Requests go to the shaper one after
 * another in the order the announcements came (a quick login/logout/login stays in order);
 * a failure is posted on `<shaper>/error` with the portal mailbox that caused it.
 */
export interface PortalFollower {
  /**
   * Make the shaper's guests the portal's sessions (`<portal>/clients`): sessions restored at the
   * portal's start are announced by no `/login`. Resolves with how many guests are shaped.
   */
  sync(): Promise<number>;
  /** Stop listening (the guests stay shaped). */
  close(): void;
}

/** A rate tuple the portal may carry (an int, bits/s; `0`: no cap); undefined when absent or not an int. */
function rateOf(m: Message, tag: string): number | undefined {
  const t = m.get(tag);
  return t?.type === 'int' ? Math.max(0, Number(t.value)) : undefined;
}

/** Caps for guests whose login carries none (bits/s; absent or 0: none). */
export interface PortalCaps {
  readonly rateUp?: number;
  readonly rateDown?: number;
}

export function followPortal(
  bus: Bus,
  shaperName: string,
  portalName: string,
  defaults: PortalCaps = {},
): PortalFollower {
  const shaper = checkPath(shaperName);
  const portal = checkPath(portalName);
  let chain: Promise<unknown> = Promise.resolve();
  let closed = false;
  /** The caps of a login or a session: its own `rate-*` tuples, else the defaults. */
  const caps = (m: Message): { 'rate-up': number; 'rate-down': number } => ({
    'rate-up': rateOf(m, 'rate-up') ?? defaults.rateUp ?? 0,
    'rate-down': rateOf(m, 'rate-down') ?? defaults.rateDown ?? 0,
  });
  const fail = (mailbox: string, e: unknown): void => {
    if (closed || bus.isClosed) return;
    bus.post(`${shaper}/error`, {
      mailbox,
      error: e instanceof Error ? e.message : String(e),
      code: e instanceof MetanetError ? e.code : 'EFAIL',
    });
  };
  /** A request to the shaper, after the ones before it; an error reply becomes a rejection. */
  const ask = (suffix: string, init: Record<string, string | number | undefined>): Promise<Message> => {
    const p = chain.then(async () => {
      const r = await bus.request(`${shaper}${suffix}`, init, { timeout: 30_000 });
      if (r.has('error'))
        throw new MetanetError('EFAIL', `${shaper}${suffix} ${init.ip ?? ''}: ${r.str('error')}`);
      return r;
    });
    chain = p.catch(() => {});
    return p;
  };

  const login = bus.append(
    `${portal}/login`,
    (m) => {
      const ip = m.get('ip');
      if (ip?.type !== 'str') return;
      ask('/add', { ip: ip.value, ...caps(m) }).catch((e: unknown) => fail(`${portal}/login`, e));
    },
    { service: shaper, follows: portal },
  );
  const logout = bus.append(
    `${portal}/logged-out`,
    (m) => {
      const ip = m.get('ip');
      if (ip?.type !== 'str') return;
      ask('/remove', { ip: ip.value }).catch((e: unknown) => fail(`${portal}/logged-out`, e));
    },
    { service: shaper, follows: portal },
  );

  return {
    async sync() {
      const clients = await bus.request(`${portal}/clients`, {}, { timeout: 10_000 });
      if (clients.has('error')) throw new MetanetError('EFAIL', `${portal}/clients: ${clients.str('error')}`);
      const want = new Map<string, Message>();
      for (const t of clients.all('client'))
        if (t.type === 'list') {
          const ip = t.value.get('ip');
          if (ip?.type === 'str') want.set(ip.value, t.value);
        }
      const shaped = await ask('/list', {});
      for (const t of shaped.all('guest'))
        if (t.type === 'list') {
          const ip = t.value.str('ip');
          if (!want.has(ip)) await ask('/remove', { ip });
        }
      for (const [ip, c] of want) await ask('/add', { ip, ...caps(c) });
      return want.size;
    },
    close() {
      closed = true;
      login.remove();
      logout.remove();
    },
  };
}

export interface PortalShaperOptions extends ShaperOptions, PortalCaps {}

/**
 * Install a shaper and have it follow a portal: the portal's whole wiring, in one call to make
 * after the portal's `/clients` mailbox is attached (its restored sessions are shaped at once).
 * Resolves with the function that undoes it (stop following, tear the shaping down).
 */
export async function shapePortal(
  bus: Bus,
  portalName: string,
  options: PortalShaperOptions,
): Promise<() => Promise<void>> {
  const service: ShaperService = await installShaperService(bus, options);
  const follower = followPortal(bus, service.name, portalName, {
    rateUp: options.rateUp,
    rateDown: options.rateDown,
  });
  try {
    await follower.sync();
  } catch (e) {
    follower.close();
    await service.close();
    throw e;
  }
  return async () => {
    follower.close();
    await service.close();
  };
}

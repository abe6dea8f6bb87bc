import type { Bus } from '../../core/bus.js';
import { isMetanetError } from '../../core/errors.js';
import { type ListenerHandle, STOP } from '../../core/listener.js';
import type { Message } from '../../core/message.js';
import { installLdapService } from '../../services/ldap/index.js';

export interface GlueConfig {
  /** The DHCP daemon whose lookup is intercepted (default `dhcpd`). */
  readonly target: string;
  readonly url: string;
  readonly bindDN?: string;
  readonly password?: string;
  /** Where host entries live, e.g. `ou=hosts,dc=example,dc=org`. */
  readonly base: string;
  /** LDAP slower than this (ms) → the pool decides. Keep it below dhcpd's 1000 ms listener timeout. */
  readonly timeout: number;
}

export interface Glue {
  readonly handle: ListenerHandle;
  close(): Promise<void>;
}

const LDAP = '/dhcp-ldap/ldap';

/** RFC 2307 macAddress is compared as text: two lowercase hex digits per byte, colons. */
export function normaliseMac(mac: string): string {
  return mac
    .toLowerCase()
    .split(/[:-]/)
    .map((b) => b.padStart(2, '0'))
    .join(':');
}

/** RFC 4515: escape a value for a filter. */
function escapeFilter(v: string): string {
  return v.replace(/[\\*()\0]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * The paper's DHCP-from-LDAP glue (§3, §6) without its "quick hack": one async listener
 * prepended on `dhcpd:/dhcpd/lookup`. Found in LDAP → answer and STOP; not found, LDAP down or
 * slow → return nothing, and dhcpd's stock pool listener answers.
 */
export async function startGlue(bus: Bus, config: GlueConfig): Promise<Glue> {
  const ldap = installLdapService(bus);
  await bus.request('/system/ldap/new', {
    name: LDAP,
    url: config.url,
    bindDN: config.bindDN,
    password: config.password,
    timeout: config.timeout,
  });
  const log = bus.log;
  const handle = bus.listen(
    `${config.target}:/dhcpd/lookup`,
    async function ldapLookup(m, ctx) {
      const mac = normaliseMac(m.str('mac'));
      let r: Message;
      try {
        r = await bus.request(
          `${LDAP}/search`,
          {
            base: config.base,
            filter: `(&(objectClass=ieee802Device)(macAddress=${escapeFilter(mac)}))`,
            attributes: ['ipHostNumber', 'cn'],
          },
          { timeout: config.timeout },
        );
      } catch (e) {
        log.log('warn', 'LDAP lookup failed, the pool decides', {
          mac,
          error: isMetanetError(e) ? e.message : String(e),
        });
        return;
      }
      if (r.has('error')) {
        log.log('warn', 'LDAP lookup failed, the pool decides', {
          mac,
          error: r.str('error'),
          code: r.str('code', ''),
        });
        return;
      }
      const entry = r.all('entry')[0];
      const ip = entry?.type === 'list' ? entry.value.str('ipHostNumber', '') : '';
      if (!ip) {
        log.log('debug', 'MAC not in LDAP, the pool decides', { mac });
        return;
      }
      const hostname = entry?.type === 'list' ? entry.value.str('cn', '') : '';
      await ctx.reply({ ip, hostname: hostname || undefined, source: 'ldap' });
      log.log('info', 'answered from LDAP', { mac, ip });
      return STOP;
    },
    { position: 'prepend', identity: { app: 'dhcp-ldap' }, timeout: config.timeout + 250 },
  );
  return {
    handle,
    async close() {
      handle.remove();
      await ldap.close();
    },
  };
}

import { z } from 'zod';
import { isMetanetError } from '../../core/errors.js';
import { type App, parseWith } from '../app.js';
import { type Glue, type GlueConfig, startGlue } from './glue.js';

const own = {
  url: z.string().regex(/^ldaps?:\/\//, 'must be ldap://… or ldaps://…'),
  bindDN: z.string().optional(),
  password: z.string().optional(),
  base: z.string().min(1),
  /** LDAP slower than this (ms) → the pool decides. */
  timeout: z.number().int().min(10).max(5000).default(500),
};
/** The glue's own config file: its LDAP fields and the DHCP daemon it hooks. */
const Config = z.strictObject({ target: z.string().min(1).default('dhcpd'), ...own });

/**
 * The paper's DHCP-from-LDAP glue (docs/apps/dhcp-ldap.md) as an app: its listener is prepended on
 * `<target>:/dhcpd/lookup`. `start` waits (with backoff) for the DHCP daemon to be there.
 */
export const dhcpLdapApp: App<GlueConfig> = {
  name: 'dhcp-ldap',
  summary: "answers dhcpd's address lookups from LDAP (RFC 2307), the pool when not found or LDAP is down",
  section: z.strictObject(own),
  fromGateway: (_gw, s) => ({ target: 'dhcpd', ...s }),
  parse: (raw) => parseWith(Config, raw),
  async start(bus, config, ctx) {
    let glue: Glue;
    for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
      glue = await startGlue(bus, config);
      try {
        await glue.handle.ready;
        break;
      } catch (e) {
        await glue.close();
        if (!isMetanetError(e, 'ENODAEMON')) throw e;
        ctx.log.log('warn', 'waiting for the DHCP daemon', { target: config.target, error: e.message });
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    const g = glue;
    return { status: () => ({ target: config.target }), close: () => g.close() };
  },
};

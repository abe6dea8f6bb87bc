import type { Bus } from '../../core/bus.js';
import { type Context, STOP } from '../../core/listener.js';
import type { Message } from '../../core/message.js';
import { checkPath } from '../../core/path.js';
import { attachTable } from '../table.js';
import { LdapObject } from './client.js';
import { LdapError, ldapErrorTuples } from './errors.js';
import { ldapFactoryTable } from './table.js';

export { LdapError } from './errors.js';
export { ldapFactoryTable, ldapTable } from './table.js';

export interface LdapService {
  /** Unbind and close every LDAP client object, and detach every mailbox. */
  close(): Promise<void>;
}

/**
 * LDAP clients as mailboxes: `/system/ldap/new` {name, url, bindDN?, password?, timeout?} makes an
 * object whose `<name>/search` answers {count, entry...}. See docs/services/ldap.md.
 */
export function installLdapService(bus: Bus): LdapService {
  const live = new Map<string, LdapObject>();

  const create = (m: Message, ctx: Context): void => {
    const name = checkPath(m.str('name'));
    const url = m.str('url');
    if (!/^ldaps?:\/\/[^/]+\/?$/.test(url))
      throw new LdapError(
        'EINVAL',
        `/system/ldap/new: url must be ldap://host:port/ or ldaps://..., got "${url}"`,
      );
    const timeout = m.int('timeout', 2000);
    if (timeout < 1 || timeout > 600000)
      throw new LdapError('EINVAL', `/system/ldap/new: timeout must be 1-600000 ms, got ${timeout}`);
    if (m.has('password') && !m.has('bindDN'))
      throw new LdapError('EINVAL', '/system/ldap/new: a password needs a bindDN');
    if (live.has(name)) throw new LdapError('EEXIST', `LDAP client ${name} already exists`);
    const bindDN = m.has('bindDN') ? m.str('bindDN') : undefined;
    const password = m.has('password') ? m.str('password') : undefined;
    const obj = new LdapObject(bus, name, { url, bindDN, password, timeout });
    live.set(name, obj);
    obj.done.then(() => live.delete(name));
    if (ctx.replyTo) ctx.reply({ name }).catch(() => {});
  };

  const detach = attachTable(bus, '/system/ldap', ldapFactoryTable, {
    '/new': (m, ctx) => {
      try {
        create(m, ctx);
      } catch (e) {
        const t = ldapErrorTuples(e, '/system/ldap/new');
        bus.post('/system/ldap/error', { mailbox: ctx.mailbox, ...t });
        if (ctx.replyTo) ctx.reply(t).catch(() => {});
      }
      return STOP;
    },
  });

  return {
    async close() {
      detach();
      await Promise.all([...live.values()].map((o) => o.close()));
    },
  };
}

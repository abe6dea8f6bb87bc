import { Client, type Entry, FilterParser } from 'ldapts';
import type { Bus } from '../../core/bus.js';
import { type Context, STOP } from '../../core/listener.js';
import type { InitValue, Message } from '../../core/message.js';
import { attachTable } from '../table.js';
import { isConnectionError, LdapError, ldapErrorTuples } from './errors.js';
import { ldapTable } from './table.js';

export interface LdapObjectOptions {
  readonly url: string;
  readonly bindDN?: string;
  readonly password?: string;
  /** ms for connect+bind and for each search. */
  readonly timeout: number;
}

const SCOPES = ['base', 'one', 'sub'] as const;

/**
 * One LDAP client object: a ldapts Client, (re)made on demand. A connection failure or timeout
 * drops the Client (always unbound: ldapts keeps the process alive otherwise); the next search
 * makes a new one. See docs/services/ldap.md.
 */
export class LdapObject {
  private client: Client | undefined;
  private connecting: Promise<Client> | undefined;
  private closed = false;
  private readonly detach: () => void;
  private settle!: () => void;
  readonly done = new Promise<void>((r) => (this.settle = r));

  constructor(
    private readonly bus: Bus,
    readonly name: string,
    private readonly opts: LdapObjectOptions,
  ) {
    this.detach = attachTable(bus, name, ldapTable, {
      '/search': async (m, ctx) => {
        try {
          await this.search(m, ctx);
        } catch (e) {
          this.fail(e, `${name}/search`, ctx);
        }
        return STOP;
      },
      '/close': () => {
        void this.close();
        return STOP;
      },
    });
    this.connection().catch((e: unknown) => {
      if (!this.closed) this.fail(e, `${name}: connect to ${opts.url}`);
    });
  }

  private fail(e: unknown, what: string, ctx?: Context): void {
    const t = ldapErrorTuples(e, what);
    this.bus.post(`${this.name}/error`, ctx ? { mailbox: ctx.mailbox, ...t } : t);
    if (ctx?.replyTo) ctx.reply(t).catch(() => {});
  }

  private connection(): Promise<Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= this.open().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async open(): Promise<Client> {
    const { url, bindDN, password, timeout } = this.opts;
    const c = new Client({ url, timeout, connectTimeout: timeout, autoRebind: true });
    try {
      // an anonymous bind when no bindDN: it proves the server answers
      await this.within(c.bind(bindDN ?? '', password ?? ''), `bind to ${url}`);
    } catch (e) {
      await c.unbind().catch(() => {});
      throw e;
    }
    if (this.closed) {
      await c.unbind().catch(() => {});
      throw new LdapError('ECLOSED', `${this.name} is closed`);
    }
    this.client = c;
    this.bus.post(`${this.name}/connected`, { url, bindDN });
    return c;
  }

  private async search(m: Message, ctx: Context): Promise<void> {
    if (!ctx.replyTo)
      throw new LdapError(
        'EDESTADDRREQ',
        `${this.name}/search: no reply-to for the results (use bus.request)`,
      );
    const scope = m.str('scope', 'sub');
    if (!(SCOPES as readonly string[]).includes(scope))
      throw new LdapError('EINVAL', `${this.name}/search: scope must be base, one or sub, got "${scope}"`);
    const filter = m.str('filter');
    try {
      FilterParser.parseString(filter);
    } catch (e) {
      throw new LdapError('EINVAL', `${this.name}/search: bad filter ${filter}: ${(e as Error).message}`);
    }
    const attributes = m.all('attributes').map((t) => String(t.value));
    const c = await this.connection();
    let found: Entry[];
    try {
      const r = await this.within(
        c.search(m.str('base'), {
          scope: scope as (typeof SCOPES)[number],
          filter,
          attributes: attributes.length ? attributes : undefined,
        }),
        `search ${filter}`,
      );
      found = r.searchEntries;
    } catch (e) {
      if (isConnectionError(e)) this.drop(c);
      throw e;
    }
    await ctx.reply({ count: found.length, entry: found.map(entryTuples) });
  }

  /** Forget a Client whose connection failed; the next search makes a new one. */
  private drop(c: Client): void {
    if (this.client === c) this.client = undefined;
    c.unbind().catch(() => {});
  }

  private async within<T>(p: Promise<T>, what: string): Promise<T> {
    const ms = this.opts.timeout;
    let t: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      t = setTimeout(
        () => reject(new LdapError('ETIMEDOUT', `${this.name}: ${what}: no answer within ${ms} ms`)),
        ms,
      );
    });
    p.catch(() => {}); // a late failure after the timeout is not news
    try {
      return await Promise.race([p, late]);
    } finally {
      clearTimeout(t);
    }
  }

  /** Unbind, detach the mailboxes, send <name>/closed. */
  async close(): Promise<void> {
    if (this.closed) return this.done;
    this.closed = true;
    this.detach();
    const c = this.client;
    this.client = undefined;
    await this.connecting?.catch(() => {});
    await c?.unbind().catch(() => {});
    this.bus.post(`${this.name}/closed`, {});
    this.settle();
  }
}

/** An entry as tuples: {dn, <attr>: value...} (multi-valued attributes repeat; binary ones are bytes). */
function entryTuples(e: Entry): Record<string, InitValue> {
  const out: Record<string, InitValue> = { dn: e.dn };
  for (const [k, v] of Object.entries(e)) if (k !== 'dn') out[k] = v;
  return out;
}

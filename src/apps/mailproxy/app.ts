import { z } from 'zod';
import type { Bus } from '../../core/bus.js';
import type { Message } from '../../core/message.js';
import type { FirewallService } from '../../services/firewall/index.js';
import { installFirewallService } from '../../services/firewall/index.js';
import type { App, GatewayFacts, MetricFamily } from '../app.js';
import { checkConfig, type MailProxyConfig } from './config.js';
import { startMailProxy } from './proxy.js';
import { nftLoad, redirectRuleset } from './ruleset.js';

const port = z.number().int().min(1).max(65535);

/** The mail proxy's gateway section (docs/apps/mailproxy.md). */
const section = z.strictObject({
  /** The proxy's port on the router (default 10143). */
  port: port.default(10143),
  /** Seconds port 25 stays open for a client after a mail login (default 1800). */
  smtpTimeout: z.number().int().min(1).max(4233600).optional(),
  /** Ports redirected to the proxy (default 143 and 110). */
  ports: z.array(port).min(1).optional(),
});
type Section = z.output<typeof section>;

/** The transparent POP/IMAP proxy that opens SMTP after a mail login (paper §10), as an app. */
export const mailProxyApp: App<MailProxyConfig> = {
  name: 'mailproxy',
  summary: 'transparent POP3/IMAP proxy: a mail login opens port 25 for that client to that server',
  section,
  fromGateway(gw: GatewayFacts, raw: Record<string, unknown>): unknown {
    const s = raw as Section;
    return {
      port: s.port,
      ...(s.smtpTimeout !== undefined ? { smtpTimeout: s.smtpTimeout } : {}),
      // The portal owns the firewall: ask it (in-process or not, it is daemon `portal`).
      firewall: gw.enabled.has('portal') ? 'portal:/system/firewall' : false,
      redirect: {
        lan: gw.captive.length ? gw.captive.map((n) => n.device) : gw.served.map((n) => n.device),
        ...(s.ports ? { ports: s.ports } : {}),
        nft: [...gw.commandPrefix, 'nft'],
      },
    };
  },
  parse: (raw) => checkConfig(raw),
  async start(bus, config) {
    const name = config.name ?? '/mailproxy';
    let fw: FirewallService | undefined;
    if (config.installFirewall) fw = await installFirewallService(bus, config.installFirewall);
    const firewall = config.firewall ?? fw?.name ?? '/system/firewall';
    const proxy = await startMailProxy(bus, {
      name,
      address: config.address,
      port: config.port,
      firewall,
      smtpTimeout: config.smtpTimeout,
    });
    const nft = config.redirect?.nft ?? ['nft'];
    const table = config.redirect?.table ?? 'metanet_mail';
    try {
      if (config.redirect)
        await nftLoad(
          nft,
          redirectRuleset({
            lan: config.redirect.lan,
            ports: config.redirect.ports,
            table,
            proxyPort: proxy.port(),
          }),
        );
    } catch (e) {
      await proxy.close();
      await fw?.close();
      throw e;
    }
    return {
      readyNote: String(proxy.port()),
      status: () => ({ port: proxy.port() }),
      async close() {
        if (config.redirect)
          await nftLoad(nft, `add table inet ${table}\ndelete table inet ${table}\n`).catch(() => {});
        await proxy.close();
        await fw?.close();
      },
      metrics: () => mailProxyMetrics(bus, name, firewall !== false),
    };
  },
};

/**
 * The mail proxy's metric families (docs/metrics.md): its `<name>/stats` figures, asked once per
 * scrape on its own bus (the families of one scrape share the answer).
 */
export function mailProxyMetrics(bus: Bus, name: string, opensSmtp: boolean): MetricFamily[] {
  let last: { at: number; stats: Promise<Message> } | undefined;
  const stats = (): Promise<Message> => {
    const now = Date.now();
    if (!last || now - last.at > 1000)
      last = { at: now, stats: bus.request(`${name}/stats`, {}, { timeout: 2000 }) };
    return last.stats;
  };
  const family = (
    type: 'counter' | 'gauge',
    metric: string,
    help: string,
    read: (m: Message) => number,
  ): MetricFamily => ({ name: metric, help, type, collect: async () => read(await stats()) });
  return [
    family(
      'counter',
      'metanet_mailproxy_connections_total',
      'POP3/IMAP connections redirected to the proxy.',
      (m) => m.int('connections'),
    ),
    family('gauge', 'metanet_mailproxy_connections_active', 'Connections being relayed now.', (m) =>
      m.int('active'),
    ),
    family('counter', 'metanet_mailproxy_logins_total', 'Successful mail logins seen (POP3 and IMAP).', (m) =>
      m.int('logins'),
    ),
    family(
      'counter',
      'metanet_mailproxy_smtp_openings_total',
      "SMTP openings asked of the portal's firewall (one per login seen; failures are in metanet_mailproxy_errors_total).",
      (m) => (opensSmtp ? m.int('logins') : 0),
    ),
    family(
      'gauge',
      'metanet_mailproxy_smtp_open_last_seconds',
      "Time from the last login seen to the firewall's answer to its SMTP opening.",
      (m) => m.float('openMs') / 1000,
    ),
    family(
      'counter',
      'metanet_mailproxy_starttls_total',
      'Connections that switched to TLS (nothing more seen).',
      (m) => m.int('starttls'),
    ),
    family(
      'counter',
      'metanet_mailproxy_errors_total',
      'Errors posted on /mailproxy/error (connections not redirected, servers unreachable, failed SMTP openings, lines too long).',
      (m) => m.int('errors'),
    ),
  ];
}

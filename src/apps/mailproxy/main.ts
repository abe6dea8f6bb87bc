/**
 * The mail proxy daemon: `node --import tsx src/apps/mailproxy/main.ts --config FILE [--dir SOCKDIR]`.
 * Loads the redirect table (when `redirect` is configured), optionally installs the firewall
 * service in this process, serves its bus as daemon `mailproxy`, and prints one line per event:
 * `mailproxy ready PORT`, `mailproxy login {json}`, `mailproxy starttls {json}`, `mailproxy error {json}`.
 * Exits cleanly on SIGINT/SIGTERM (the redirect table is deleted; the firewall table stays).
 */
import { parseArgs } from 'node:util';
import { Bus } from '../../core/bus.js';
import type { Message } from '../../core/message.js';
import { serveDaemon } from '../../ipc/daemon.js';
import { type FirewallService, installFirewallService } from '../../services/firewall/index.js';
import { loadConfig } from './config.js';
import { startMailProxy } from './proxy.js';
import { nftLoad, redirectRuleset } from './ruleset.js';

function line(kind: string, m: Message): void {
  const o: Record<string, unknown> = {};
  for (const t of m) o[t.tag] = t.value;
  process.stdout.write(`mailproxy ${kind} ${JSON.stringify(o)}\n`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { config: { type: 'string', short: 'c' }, dir: { type: 'string' } },
    strict: true,
  });
  if (!values.config) throw new Error('usage: mailproxy --config FILE [--dir SOCKDIR]');
  const config = loadConfig(values.config);
  const name = config.name ?? '/mailproxy';
  const bus = new Bus({ name: 'mailproxy' });
  for (const kind of ['login', 'starttls', 'error'])
    bus.append(`${name}/${kind}`, (m) => {
      line(kind, m);
    });
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
  const daemon = await serveDaemon(bus, { dir: values.dir, signals: false });
  process.stdout.write(`mailproxy ready ${proxy.port()}\n`);
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    if (config.redirect)
      await nftLoad(nft, `add table inet ${table}\ndelete table inet ${table}\n`).catch(() => {});
    await proxy.close();
    await fw?.close();
    await Promise.all([daemon.close(), daemon.transport.close()]);
    await bus.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

main().catch((e: unknown) => {
  process.stderr.write(`mailproxy: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});

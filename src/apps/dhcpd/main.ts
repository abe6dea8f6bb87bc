/**
 * The dhcpd daemon: `node --import tsx src/apps/dhcpd/main.ts --config FILE [--dir SOCKDIR]`.
 * Prints `dhcpd ready` on stdout once it serves; exits cleanly on SIGINT/SIGTERM.
 */
import { parseArgs } from 'node:util';
import { Bus } from '../../core/bus.js';
import { isMetanetError } from '../../core/errors.js';
import { serveDaemon } from '../../ipc/daemon.js';
import { loadConfig } from '../../services/dhcp/config.js';
import { checkConfigOption } from '../../services/dhcp/optionset.js';
import { startDhcpServer } from '../../services/dhcp/server.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { config: { type: 'string', short: 'c' }, dir: { type: 'string' } },
    strict: true,
  });
  if (!values.config) throw new Error('usage: dhcpd --config FILE [--dir SOCKDIR]');
  const config = loadConfig(values.config, checkConfigOption);
  const bus = new Bus({ name: 'dhcpd' });
  const server = await startDhcpServer(bus, config);
  // Other processes reach dhcpd:/dhcpd/lookup (and every other mailbox) through the daemon socket.
  const daemon = await serveDaemon(bus, { dir: values.dir, signals: false });
  process.stdout.write('dhcpd ready\n');
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    bus.log.log('info', 'dhcpd stopping', { signal });
    await server.close();
    await daemon.close();
    await bus.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((e: unknown) => {
  process.stderr.write(`dhcpd: ${isMetanetError(e) || e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});

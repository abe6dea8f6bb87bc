/**
 * The dhcp-ldap glue daemon:
 *   node dist/src/apps/dhcp-ldap/main.js --config FILE [--dir SOCKDIR]
 * Config (JSON): { "target": "dhcpd", "url": "ldap://127.0.0.1:389/", "bindDN": "…",
 * "password": "…", "base": "ou=hosts,dc=example,dc=org", "timeout": 500 }.
 * Prints `dhcp-ldap ready` once its listener is in dhcpd's chain; waits for dhcpd if it is not
 * running yet, and re-attaches by itself when dhcpd restarts.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { Bus } from '../../core/bus.js';
import { isMetanetError, MetanetError } from '../../core/errors.js';
import { attachClient } from '../../ipc/daemon.js';
import { type Glue, startGlue } from './glue.js';

const Config = z.strictObject({
  target: z.string().min(1).default('dhcpd'),
  url: z.string().regex(/^ldaps?:\/\//, 'must be ldap://… or ldaps://…'),
  bindDN: z.string().optional(),
  password: z.string().optional(),
  base: z.string().min(1),
  timeout: z.number().int().min(10).max(5000).default(500),
});

function load(file: string): z.infer<typeof Config> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new MetanetError('ECONFIG', `${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const r = Config.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new MetanetError('ECONFIG', `${file}: config.${i.path.join('.') || '(root)'}: ${i.message}`);
  }
  return r.data;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { config: { type: 'string', short: 'c' }, dir: { type: 'string' } },
  });
  if (!values.config) throw new MetanetError('ECONFIG', 'usage: dhcp-ldap --config FILE [--dir SOCKDIR]');
  const config = load(values.config);
  const bus = new Bus({ name: `dhcp-ldap-${process.pid}` });
  attachClient(bus, { dir: values.dir });
  let glue: Glue | undefined;
  for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
    glue = await startGlue(bus, config);
    try {
      await glue.handle.ready;
      break;
    } catch (e) {
      await glue.close();
      if (!isMetanetError(e, 'ENODAEMON')) throw e;
      bus.log.log('warn', 'waiting for the DHCP daemon', { target: config.target, error: e.message });
      await new Promise((r) => setTimeout(r, delay));
    }
  }
  process.stdout.write('dhcp-ldap ready\n');
  const stop = async (): Promise<void> => {
    await glue?.close();
    await bus.close(200);
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

main().catch((e: unknown) => {
  process.stderr.write(`dhcp-ldap: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});

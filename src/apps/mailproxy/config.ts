import { readFileSync } from 'node:fs';
import { MetanetError } from '../../core/errors.js';
import type { FirewallOptions } from '../../services/firewall/index.js';

/** The mail proxy daemon's config file (JSON). docs/apps/mailproxy.md describes every field. */
export interface MailProxyConfig {
  readonly name?: string;
  readonly address?: string;
  readonly port: number;
  readonly smtpTimeout?: number;
  /** Prefix of the firewall service to ask for `smtp/open`, or false. */
  readonly firewall?: string | false;
  /** Install the firewall service in this process with these options (else one elsewhere is used). */
  readonly installFirewall?: FirewallOptions;
  /** Load the redirect table: LAN interfaces, ports, table name, nft command. */
  readonly redirect?: { lan: string[]; ports?: number[]; table?: string; nft?: string[] };
}

const KEYS = ['name', 'address', 'port', 'smtpTimeout', 'firewall', 'installFirewall', 'redirect'];

export function loadConfig(file: string): MailProxyConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new MetanetError(
      'ECONFIG',
      `mailproxy config ${file}: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  return checkConfig(raw, file);
}

export function checkConfig(raw: unknown, where = 'config'): MailProxyConfig {
  const bad = (what: string): never => {
    throw new MetanetError('ECONFIG', `mailproxy ${where}: ${what}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return bad('must be a JSON object');
  const c = raw as Record<string, unknown>;
  for (const k of Object.keys(c))
    if (!KEYS.includes(k)) bad(`unknown field "${k}" (known: ${KEYS.join(', ')})`);
  const port = c.port;
  if (!Number.isInteger(port) || (port as number) < 0 || (port as number) > 65535)
    bad('port must be 0..65535');
  if (c.smtpTimeout !== undefined) {
    const t = c.smtpTimeout as number;
    if (!Number.isInteger(t) || t < 1 || t > 4233600) bad('smtpTimeout must be 1..4233600 seconds');
  }
  if (c.name !== undefined && (typeof c.name !== 'string' || !c.name.startsWith('/')))
    bad('name must start with /');
  if (c.address !== undefined && typeof c.address !== 'string') bad('address must be a string');
  if (c.firewall !== undefined && c.firewall !== false && typeof c.firewall !== 'string')
    bad('firewall must be a mailbox prefix or false');
  if (c.redirect !== undefined) {
    const r = c.redirect as Record<string, unknown>;
    if (typeof r !== 'object' || r === null || !Array.isArray(r.lan))
      bad('redirect.lan must be a list of interfaces');
  }
  return c as unknown as MailProxyConfig;
}

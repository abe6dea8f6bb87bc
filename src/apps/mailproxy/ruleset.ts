import { spawn } from 'node:child_process';
import { MetanetError } from '../../core/errors.js';

export interface RedirectOptions {
  /** nft table name in family inet (default `metanet_mail`). */
  readonly table?: string;
  /** LAN interfaces the clients' traffic enters by. */
  readonly lan: readonly string[];
  /** Ports redirected to the proxy (default 143 and 110). */
  readonly ports?: readonly number[];
  /** The proxy's port on the router. */
  readonly proxyPort: number;
}

const NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,14}$/;

/**
 * The proxy's own table: IPv4 tcp to the mail ports, entering from the LAN, is redirected to the
 * proxy's port (conntrack keeps the original destination for SO_ORIGINAL_DST). `add` + `delete` +
 * the table, in one transaction: it never touches another table.
 */
export function redirectRuleset(o: RedirectOptions): string {
  const table = o.table ?? 'metanet_mail';
  const ports = o.ports ?? [143, 110];
  if (!NAME.test(table))
    throw new MetanetError('ECONFIG', `mailproxy: table ${JSON.stringify(table)} is not a name`);
  if (o.lan.length === 0) throw new MetanetError('ECONFIG', 'mailproxy: lan: at least one interface');
  for (const i of o.lan)
    if (!NAME.test(i))
      throw new MetanetError('ECONFIG', `mailproxy: lan: ${JSON.stringify(i)} is not an interface name`);
  for (const p of [...ports, o.proxyPort])
    if (!Number.isInteger(p) || p < 1 || p > 65535)
      throw new MetanetError('ECONFIG', `mailproxy: port ${p} is not 1..65535`);
  return [
    `add table inet ${table}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    `    iifname { ${o.lan.map((i) => `"${i}"`).join(', ')} } meta nfproto ipv4 tcp dport { ${ports.join(', ')} } redirect to :${o.proxyPort}`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Run `nft -f -` with a script (nft maybe behind a prefix); rejects with nft's own message. */
export function nftLoad(nft: readonly string[], script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = nft;
    const child = spawn(cmd!, [...args, '-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('error', (e) =>
      reject(new MetanetError('ECONFIG', `mailproxy: cannot run ${cmd}: ${e.message}`)),
    );
    child.on('exit', (code) =>
      code === 0
        ? resolve()
        : reject(
            new MetanetError('ECONFIG', `mailproxy: nft refused the script (exit ${code}): ${err.trim()}`),
          ),
    );
    child.stdin.on('error', () => {}); // EPIPE when nft (or its prefix) exits early: its exit says why
    child.stdin.end(script);
  });
}

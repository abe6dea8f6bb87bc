import { execFile } from 'node:child_process';
import { MetanetError } from '../../core/errors.js';

/**
 * The `ip` side of the shaper: the shaped devices must exist, and the ifb device is made (or
 * reused when it is already an ifb) and brought up. One `ip -j -d link show` to look, one
 * `ip -batch -` to change: processes only at start, at a rebuild and at teardown.
 */
interface Link {
  readonly ifname?: string;
  readonly linkinfo?: { readonly info_kind?: string };
}

export interface IpResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run the ip command with arguments (and stdin); never rejects for a non-zero exit. */
export function runIp(ip: readonly string[], args: readonly string[], input?: string): Promise<IpResult> {
  const [cmd = 'ip', ...pre] = ip;
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      [...pre, ...args],
      { timeout: 10_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err && typeof (err as { code?: unknown }).code !== 'number')
          reject(
            new MetanetError('EFAIL', `shaper: cannot run ${[...ip, ...args].join(' ')}: ${err.message}`),
          );
        else resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout, stderr });
      },
    );
    child.stdin?.on('error', () => {}); // EPIPE from a command that exits before reading: its exit says why
    child.stdin?.end(input ?? '');
  });
}

/** Check the devices exist; create the ifb if it is missing (and refuse a non-ifb of that name). Returns whether it was made. */
export async function ensureIfb(
  ip: readonly string[],
  devices: readonly string[],
  ifb: string,
): Promise<boolean> {
  const r = await runIp(ip, ['-j', '-d', 'link', 'show']);
  if (r.code !== 0)
    throw new MetanetError('ECONFIG', `shaper: ${ip.join(' ')} -j -d link show failed: ${r.stderr.trim()}`);
  let links: Link[];
  try {
    links = JSON.parse(r.stdout) as Link[];
  } catch {
    throw new MetanetError('EPROTO', `shaper: ip -j link show printed no JSON: ${r.stdout.slice(0, 200)}`);
  }
  const byName = new Map(links.map((l) => [l.ifname, l]));
  for (const d of devices)
    if (!byName.has(d)) throw new MetanetError('ECONFIG', `shaper: no interface ${d} (a shaped device) here`);
  const existing = byName.get(ifb);
  if (existing && existing.linkinfo?.info_kind !== 'ifb')
    throw new MetanetError(
      'ECONFIG',
      `shaper: interface ${ifb} exists and is not an ifb (${existing.linkinfo?.info_kind ?? 'no kind'}): choose another ifb name`,
    );
  const lines = existing ? [] : [`link add ${ifb} type ifb`];
  lines.push(`link set ${ifb} up`);
  const b = await runIp(ip, ['-batch', '-'], `${lines.join('\n')}\n`);
  if (b.code !== 0)
    throw new MetanetError(
      'ECONFIG',
      `shaper: cannot ${existing ? 'bring up' : 'create'} the ifb device ${ifb}: ${b.stderr.trim()}` +
        (existing ? '' : ' (the kernel needs ifb: CONFIG_IFB, OpenWrt kmod-ifb)'),
    );
  return !existing;
}

/** Delete the ifb device (teardown); a missing one is fine. */
export async function deleteIfb(ip: readonly string[], ifb: string): Promise<void> {
  await runIp(ip, ['link', 'del', 'dev', ifb]);
}

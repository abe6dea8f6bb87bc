import { execFile } from 'node:child_process';
import { MetanetError } from '../../core/errors.js';
import { familyOf } from './addr.js';

/**
 * Cut a client's tracked connections (`conntrack -D -s IP`), so connections that were redirected
 * to the portal before login are not kept redirected after it. With `natted`, only the flows that
 * were destination-NATed (`--dst-nat`: the redirected ones), so connections the client opened
 * after its login are left alone. "0 flow entries have been deleted"
 * (exit 1 in conntrack 1.4) is not an error. Resolves with how many flows were deleted.
 * `command` is the conntrack command, maybe behind a prefix (`['ip','netns','exec',NS,'conntrack']`).
 */
export function closeConnections(
  ip: string,
  opts: { command?: readonly string[]; timeoutMs?: number; natted?: boolean } = {},
): Promise<number> {
  const family = familyOf(ip, 'closeConnections');
  const [cmd = 'conntrack', ...pre] = opts.command ?? ['conntrack'];
  const args = [...pre, '-D', '-f', family, '-s', ip, ...(opts.natted ? ['--dst-nat'] : [])];
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: opts.timeoutMs ?? 5000 }, (err, stdout, stderr) => {
      const text = `${stdout}\n${stderr}`;
      const m = /(\d+) flow entr(?:y|ies) ha(?:s|ve) been deleted/.exec(text);
      if (m) return resolve(Number(m[1]));
      if (!err) return resolve(0);
      reject(new MetanetError('EFAIL', `conntrack -D -s ${ip}: ${stderr.trim() || err.message}`));
    });
  });
}

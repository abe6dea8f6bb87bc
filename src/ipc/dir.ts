import { join } from 'node:path';
import { checkName } from '../core/path.js';

/** Where daemons' sockets live: the flag, else METANET_DIR, else /run/metanet. */
export function socketDir(flag?: string): string {
  return flag ?? process.env.METANET_DIR ?? '/run/metanet';
}

/** `<dir>/<name>.sock` for a valid daemon name. */
export function socketPath(dir: string, name: string): string {
  return join(dir, `${checkName(name)}.sock`);
}

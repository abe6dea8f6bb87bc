import { execFileSync } from 'node:child_process';

/** True under CI=true: a missing tool or root is then a hard failure, never a skip. */
export const inCI = process.env.CI === 'true';
export const isRoot = process.getuid?.() === 0;

function which(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether the tools (and root, when asked) are here. Locally a missing one makes the caller skip
 * (`describe.skipIf(!have(...))`) with a note on stderr; under CI it throws, failing the file.
 */
export function have(tools: string[], opts: { root?: boolean } = {}): boolean {
  const missing = tools.filter((t) => !which(t));
  if (opts.root && !isRoot) missing.push('(root)');
  if (missing.length === 0) return true;
  const msg = `missing ${missing.join(', ')}: run scripts/setup.sh as root`;
  if (inCI) throw new Error(`CI: ${msg}`);
  process.stderr.write(`skipping: ${msg}\n`);
  return false;
}

import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/**
 * Network-namespace chores shared by the labs (the test lab in test/support/lab.ts and the gateway
 * lab of `npm start`): batches of `ip` commands, the processes in a namespace, teardown.
 */

/** Run `ip [-n NS] -batch -` with the given command lines; fails naming the line that failed. */
export function ipBatch(ns: string | undefined, lines: readonly string[], who = 'lab'): Promise<void> {
  return new Promise((resolve, reject) => {
    const args = [...(ns ? ['-n', ns] : []), '-batch', '-'];
    const child = execFile('ip', args, { timeout: 10_000 }, (err, _out, stderr) => {
      if (!err) return resolve();
      const line = /Command failed -:(\d+)/.exec(stderr)?.[1];
      const what = line ? `: ${lines[Number(line) - 1]}` : '';
      reject(new Error(`${who}: ip ${args.join(' ')}${what}: ${stderr.trim() || err.message}`));
    });
    child.stdin?.on('error', () => {}); // EPIPE when ip stops at a failing line: reported above
    child.stdin?.end(`${lines.join('\n')}\n`);
  });
}

/** The processes in a namespace (this one excluded). */
export function pidsIn(ns: string): number[] {
  try {
    return execFileSync('ip', ['netns', 'pids', ns], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .split(/\s+/)
      .filter(Boolean)
      .map(Number)
      .filter((p) => p !== process.pid);
  } catch {
    return [];
  }
}

export function killAll(ns: string): void {
  for (const pid of pidsIn(ns)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

export function deleteNs(ns: string): void {
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  } catch {
    // not there
  }
}

/** Whether a process lives; a zombie (killed, not yet reaped by a lazy PID 1) counts as dead. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    try {
      process.kill(pid, 0);
      return true;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EPERM';
    }
  }
}

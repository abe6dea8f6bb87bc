import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitForLine } from './wait.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const FIXTURE = join(ROOT, 'test/ipc/fixtures/daemon.ts');

/** A fresh socket directory; remove it with `rmSync(dir, { recursive: true, force: true })`. */
export function tempDir(prefix = 'mn-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Run a TypeScript file as its own process (`node --import tsx`). */
export function runTs(file: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', file, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, METANET_LOG: process.env.METANET_LOG ?? 'warn' },
    ...opts,
  });
}

export interface FixtureDaemon {
  readonly child: ChildProcess;
  /** Kill it (SIGKILL by default) and wait until it is gone. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Start test/ipc/fixtures/daemon.ts as NAME in DIR; resolves once it prints `ready NAME`. */
export async function startFixture(name: string, dir: string, acl?: unknown): Promise<FixtureDaemon> {
  const child = runTs(FIXTURE, [name, dir, ...(acl ? [JSON.stringify(acl)] : [])]);
  tracked.add(child);
  await waitForLine(child, new RegExp(`^ready ${name}$`), 15000);
  return { child, kill: (signal = 'SIGKILL') => stop(child, signal) };
}

const tracked = new Set<ChildProcess>();

export function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  tracked.delete(child);
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

/** Kill every process started here (call from afterAll/afterEach). */
export async function stopAll(): Promise<void> {
  await Promise.all([...tracked].map((c) => stop(c, 'SIGKILL')));
}

export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export { ROOT };

import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../../core/log.js';

export interface ChildEvent {
  readonly app: string;
  readonly pid: number | undefined;
  readonly code: number | null;
  readonly signal: string | null;
  /** Milliseconds until the next start; -1 when it is not restarted (stopping). */
  readonly restartInMs: number;
}

/**
 * One app in its own process (`process: "own"`), supervised: its `main` run with the gateway
 * config, its output lines tagged `[name] `, restarted with backoff (1 s doubling to 30 s; back to
 * 1 s after a minute up) until `stop()`. `ready` resolves at its first `<name> ready` line.
 */
export class AppChild {
  private child: ChildProcess | undefined;
  private stopping = false;
  private delay = 1000;
  private timer: NodeJS.Timeout | undefined;
  private startedAt = 0;
  private resolveReady!: () => void;
  readonly ready = new Promise<void>((r) => (this.resolveReady = r));
  restarts = 0;
  /** Between its `<name> ready` line and its exit: its daemon answers (the metrics scrape asks it then). */
  serving = false;

  constructor(
    readonly name: string,
    private readonly configFile: string,
    private readonly dir: string | undefined,
    private readonly log: Logger,
    private readonly onExit: (e: ChildEvent) => void,
  ) {
    this.spawn();
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  private spawn(): void {
    // Under tsx (tests, development) the sources are .ts and need the loader: keep our execArgv.
    const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
    const main = fileURLToPath(new URL(`../${this.name}/main.${ext}`, import.meta.url));
    const args = [...process.execArgv, main, '--config', this.configFile];
    if (this.dir) args.push('--dir', this.dir);
    this.startedAt = Date.now();
    const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = c;
    const tag = (stream: NodeJS.WritableStream) => {
      let rest = '';
      return (d: Buffer): void => {
        const lines = (rest + d.toString()).split('\n');
        rest = lines.pop() ?? '';
        for (const l of lines) {
          if (l === `${this.name} ready` || l.startsWith(`${this.name} ready `)) {
            if (c === this.child) this.serving = true;
            this.resolveReady();
          }
          stream.write(`[${this.name}] ${l}\n`);
        }
      };
    };
    c.stdout?.on('data', tag(process.stdout));
    c.stderr?.on('data', tag(process.stderr));
    c.on('error', (e) => this.log.log('error', 'cannot start app process', { app: this.name, error: e }));
    c.on('exit', (code, signal) => {
      this.child = undefined;
      this.serving = false;
      if (Date.now() - this.startedAt > 60_000) this.delay = 1000;
      const restartInMs = this.stopping ? -1 : this.delay;
      this.onExit({ app: this.name, pid: c.pid, code, signal, restartInMs });
      if (this.stopping) return;
      this.log.log('warn', 'app process exited; restarting', {
        app: this.name,
        code,
        signal,
        inMs: restartInMs,
      });
      this.timer = setTimeout(() => {
        this.restarts++;
        this.spawn();
      }, restartInMs);
      this.delay = Math.min(this.delay * 2, 30_000);
    });
  }

  /** SIGTERM (SIGKILL after 10 s) and no restart. */
  stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    const c = this.child;
    if (!c) return Promise.resolve();
    return new Promise((resolve) => {
      const kill = setTimeout(() => c.kill('SIGKILL'), 10_000);
      c.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      c.kill('SIGTERM');
    });
  }
}

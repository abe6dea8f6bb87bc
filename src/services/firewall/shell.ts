import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { MetanetError } from '../../core/errors.js';

/**
 * One long-lived `nft -j -i` process: commands go to its stdin one line at a time, strictly one
 * after another. nft echoes a change as one JSON line, but prints nothing for a deleted element and
 * only text on an error, so every command is followed by a marker line (`mn-sync-<n>`) that nft
 * rejects as a syntax error, echoing it back: the lines before the marker are that command's
 * answer. stderr is merged into stdout (`2>&1` in a wrapping `sh`) so errors arrive in order.
 * A child that dies or hangs past the timeout is replaced; the failure is reported through
 * `onFailure`, and the commands still queued go to the new child.
 */
export interface NftAnswer {
  /** JSON lines nft printed (echo of a change, or the answer to a list command), parsed. */
  readonly json: readonly unknown[];
  /** `Error: ...` lines, without nft's echo of the command and its carets. */
  readonly errors: readonly string[];
  /** performance.now() at which the command was written to nft's stdin. */
  readonly sentAt: number;
}

export interface NftShellOptions {
  /** The nft command, maybe behind a prefix: `['ip', 'netns', 'exec', NS, 'nft']` (default `['nft']`). */
  readonly command?: readonly string[];
  /** Per command (default 2000 ms); a command that takes longer kills and replaces the child. */
  readonly timeoutMs?: number;
  /** Called when the child dies or hangs, before it is restarted. */
  readonly onFailure?: (reason: string) => void;
}

interface Job {
  readonly line: string;
  readonly resolve: (a: NftAnswer) => void;
  readonly reject: (e: Error) => void;
}

interface Running extends Job {
  readonly marker: string;
  readonly sentAt: number;
  readonly json: unknown[];
  readonly lines: string[];
  readonly timer: NodeJS.Timeout;
}

const RESTART_MS = [0, 50, 200, 1000];

export class NftShell {
  private readonly command: readonly string[];
  private readonly timeoutMs: number;
  private readonly onFailure: (reason: string) => void;
  private child?: ChildProcessWithoutNullStreams;
  private readonly queue: Job[] = [];
  private running?: Running;
  private buf = '';
  private seq = 0;
  private closed = false;
  private failures = 0;
  private restartTimer?: NodeJS.Timeout;
  /** How many times a child was started (1 after the first start). */
  starts = 0;

  constructor(opts: NftShellOptions = {}) {
    this.command = opts.command ?? ['nft'];
    if (this.command.length === 0) throw new MetanetError('ECONFIG', 'firewall: nft command is empty');
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.onFailure = opts.onFailure ?? (() => {});
    this.start();
  }

  /** PID of the current child (nft itself: `sh` and `ip netns exec` exec into it). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Run one command line; resolves with what nft printed for it (errors included: never rejects for them). */
  run(line: string): Promise<NftAnswer> {
    if (this.closed) return Promise.reject(new MetanetError('ECLOSED', 'firewall: nft shell is closed'));
    if (/[\r\n]/.test(line))
      return Promise.reject(new MetanetError('EBADTUPLE', 'nft command has a newline'));
    return new Promise((resolve, reject) => {
      this.queue.push({ line, resolve, reject });
      this.pump();
    });
  }

  /** Stop the child; queued commands fail with ECLOSED. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.restartTimer);
    const err = new MetanetError('ECLOSED', 'firewall: nft shell closed');
    this.finish(undefined, err);
    for (const j of this.queue.splice(0)) j.reject(err);
    const c = this.child;
    this.child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((r) => {
      const t = setTimeout(() => c.kill('SIGKILL'), 1000);
      c.once('close', () => {
        clearTimeout(t);
        r();
      });
      c.stdin.end();
    });
  }

  private start(): void {
    const child = spawn('sh', ['-c', 'exec "$@" 2>&1', 'sh', ...this.command, '-j', '-i'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child = child;
    this.starts++;
    this.buf = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => this.onData(d));
    child.stderr.resume();
    child.stdin.on('error', () => {}); // EPIPE when it died: reported by 'close'
    child.on('error', (e) => this.died(child, `cannot start ${this.command.join(' ')}: ${e.message}`));
    child.on('close', (code, signal) =>
      this.died(child, `nft exited (${signal ? `signal ${signal}` : `code ${code}`})`),
    );
    this.pump();
  }

  private died(child: ChildProcessWithoutNullStreams, reason: string): void {
    if (this.child !== child) return; // an old child, already replaced
    this.child = undefined;
    if (this.closed) return;
    this.finish(undefined, new MetanetError('EFAIL', `firewall: ${reason}`));
    this.onFailure(reason);
    const wait = RESTART_MS[Math.min(this.failures++, RESTART_MS.length - 1)]!;
    this.restartTimer = setTimeout(() => this.start(), wait);
  }

  private pump(): void {
    if (this.running || !this.child || this.closed) return;
    const job = this.queue.shift();
    if (!job) return;
    const marker = `mn-sync-${++this.seq}`;
    const child = this.child;
    this.running = {
      ...job,
      marker,
      sentAt: performance.now(),
      json: [],
      lines: [],
      timer: setTimeout(() => {
        const reason = `nft gave no answer within ${this.timeoutMs} ms to: ${job.line}`;
        this.finish(undefined, new MetanetError('ETIMEDOUT', `firewall: ${reason}`));
        this.onFailure(reason);
        child.kill('SIGKILL'); // 'close' restarts it
      }, this.timeoutMs),
    };
    child.stdin.write(`${job.line}\n${marker}\n`);
  }

  private onData(d: string): void {
    this.buf += d;
    let nl = this.buf.indexOf('\n');
    while (nl >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      this.onLine(line);
      nl = this.buf.indexOf('\n');
    }
  }

  private onLine(line: string): void {
    const r = this.running;
    if (!r) return; // nothing asked: a stray line (the marker's carets after a timeout)
    if (line === r.marker) {
      // The marker's own "Error: syntax error" line is the last one collected.
      const last = r.lines.length - 1;
      if (last >= 0 && r.lines[last]!.startsWith('Error:')) r.lines.pop();
      this.finish({
        json: r.json,
        errors: r.lines.filter((l) => l.startsWith('Error:')),
        sentAt: r.sentAt,
      });
      return;
    }
    if (line.startsWith('{')) {
      try {
        r.json.push(JSON.parse(line));
        return;
      } catch {
        // not JSON after all: keep it as text
      }
    }
    if (line.trim() !== '') r.lines.push(line);
  }

  private finish(answer: NftAnswer | undefined, err?: Error): void {
    const r = this.running;
    if (!r) return;
    this.running = undefined;
    clearTimeout(r.timer);
    if (answer) {
      this.failures = 0;
      r.resolve(answer);
    } else r.reject(err ?? new Error('firewall: nft command failed'));
    this.pump();
  }
}

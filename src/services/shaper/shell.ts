import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { MetanetError } from '../../core/errors.js';
import type { TcLine } from './tc.js';

/**
 * One long-lived `tc -force -batch -`. tc reads its batch from stdin one line at a time and runs
 * each line as it arrives (measured: a change is in the kernel before the next line is written),
 * printing nothing for a line that worked and, on stderr, its error text then
 * `Command failed -:<line number>` for one that did not; `-force` keeps it going after a failure.
 * So a change is written as its lines followed by a marker line tc cannot parse (`mn-sync-<n>`):
 * when tc reports the marker's own line number as failed, every line before it has run, and the
 * failures reported meanwhile are exactly the failed lines, by number. stderr is unbuffered in tc,
 * so nothing waits on a pipe buffer. A child that dies (tc exits on some argument errors) or hangs
 * past the timeout fails the batch in flight and is replaced; line numbers start again at 1.
 */
export interface TcFailure {
  readonly dev: string;
  readonly line: string;
  /** tc's own text for it (e.g. `Error: Specified class not found.`). */
  readonly error: string;
  readonly optional: boolean;
}

export interface TcShellOptions {
  /** The tc command, maybe behind a prefix: `['ip', 'netns', 'exec', NS, 'tc']` (default `['tc']`). */
  readonly command?: readonly string[];
  /** Per batch (default 5000 ms); a batch that takes longer kills and replaces the child. */
  readonly timeoutMs?: number;
  /** Called when the child dies or hangs, before it is replaced. */
  readonly onFailure?: (reason: string) => void;
}

interface Job {
  readonly lines: readonly TcLine[];
  readonly resolve: (f: TcFailure[]) => void;
  readonly reject: (e: Error) => void;
}

interface Running extends Job {
  /** tc's line number of the batch's first line. */
  readonly first: number;
  readonly marker: number;
  readonly failures: TcFailure[];
  readonly timer: NodeJS.Timeout;
}

/** Noise tc adds after a kernel error; the kernel's own `Error:` line says what happened. */
const NOISE = /^We have an error talking to the kernel/;
const FAILED = /^Command failed -:(\d+)$/;

export class TcShell {
  private readonly command: readonly string[];
  private readonly timeoutMs: number;
  private readonly onFailure: (reason: string) => void;
  private child?: ChildProcessWithoutNullStreams;
  private readonly queue: Job[] = [];
  private running?: Running;
  /** Line numbers tc has been given by this child. */
  private lineNo = 0;
  private seq = 0;
  private buf = '';
  /** Error text since the last `Command failed`. */
  private text: string[] = [];
  private closed = false;
  /** How many children were started (1 after the first). */
  starts = 0;

  constructor(opts: TcShellOptions = {}) {
    this.command = opts.command ?? ['tc'];
    if (this.command.length === 0) throw new MetanetError('ECONFIG', 'shaper: tc command is empty');
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.onFailure = opts.onFailure ?? (() => {});
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /**
   * Run lines as one batch; resolves with the lines that failed (optional ones included, marked),
   * in order. Rejects only when tc itself died or hung (the batch may then be half done).
   */
  run(lines: readonly TcLine[]): Promise<TcFailure[]> {
    if (this.closed) return Promise.reject(new MetanetError('ECLOSED', 'shaper: tc shell is closed'));
    for (const l of lines)
      if (/[\r\n#\\]/.test(l.line))
        return Promise.reject(new MetanetError('EBADTUPLE', `shaper: bad tc line ${JSON.stringify(l.line)}`));
    return new Promise((resolve, reject) => {
      this.queue.push({ lines, resolve, reject });
      this.pump();
    });
  }

  /**
   * Replace the child before the next batch: tc keeps interface indexes it has looked up, so after a
   * device was deleted and made again (an ifb, a bridge a network restart rebuilt) the old child
   * sends changes to an index that is gone (`No such device`). Waits for the batch in flight.
   */
  async restart(): Promise<void> {
    if (this.closed) return;
    while (this.running) await new Promise<void>((r) => setTimeout(r, 5));
    const c = this.child;
    this.child = undefined;
    if (c && c.exitCode === null && c.signalCode === null) c.stdin.end();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new MetanetError('ECLOSED', 'shaper: tc shell closed');
    this.finish(err);
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

  private start(): ChildProcessWithoutNullStreams {
    const [cmd = 'tc', ...pre] = this.command;
    const child = spawn(cmd, [...pre, '-force', '-batch', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    this.starts++;
    this.lineNo = 0;
    this.buf = '';
    this.text = [];
    child.stdout.resume(); // add/change/del print nothing; never let a pipe fill
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => this.onData(d));
    child.stdin.on('error', () => {}); // EPIPE when it died: reported by 'close'
    child.on('error', (e) => this.died(child, `cannot start ${this.command.join(' ')}: ${e.message}`));
    child.on('close', (code, signal) =>
      this.died(child, `tc exited (${signal ? `signal ${signal}` : `code ${code}`})`),
    );
    return child;
  }

  private died(child: ChildProcessWithoutNullStreams, reason: string): void {
    if (this.child !== child) return;
    this.child = undefined;
    if (this.closed) return;
    const last = this.text.filter((l) => !NOISE.test(l)).join(' ');
    const why = last ? `${reason}: ${last}` : reason;
    this.finish(new MetanetError('EFAIL', `shaper: ${why}`));
    this.onFailure(why);
  }

  private pump(): void {
    if (this.running || this.closed) return;
    const job = this.queue.shift();
    if (!job) return;
    const child = this.child ?? this.start();
    const first = this.lineNo + 1;
    this.lineNo += job.lines.length + 1;
    const marker = this.lineNo;
    this.running = {
      ...job,
      first,
      marker,
      failures: [],
      timer: setTimeout(() => {
        const reason = `tc gave no answer within ${this.timeoutMs} ms`;
        if (this.child === child) this.child = undefined; // its 'close' is then ignored
        child.kill('SIGKILL');
        this.onFailure(reason);
        this.finish(new MetanetError('ETIMEDOUT', `shaper: ${reason}`)); // the next batch gets a new child
      }, this.timeoutMs),
    };
    const text = job.lines.map((l) => `${l.line}\n`).join('');
    child.stdin.write(`${text}mn-sync-${++this.seq}\n`);
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
    const m = FAILED.exec(line);
    if (!m) {
      if (line.trim() !== '') this.text.push(line.trim());
      return;
    }
    const n = Number(m[1]);
    const text = this.text.filter((l) => !NOISE.test(l));
    this.text = [];
    const r = this.running;
    if (!r || n < r.first || n > r.marker) return; // a batch that timed out: its child is gone anyway
    if (n === r.marker) {
      this.finish();
      return;
    }
    const l = r.lines[n - r.first]!;
    r.failures.push({
      dev: l.dev,
      line: l.line,
      error: text.join(' ') || 'failed',
      optional: l.optional === true,
    });
  }

  private finish(err?: Error): void {
    const r = this.running;
    if (!r) return;
    this.running = undefined;
    clearTimeout(r.timer);
    if (err) r.reject(err);
    else r.resolve(r.failures);
    this.pump();
  }
}

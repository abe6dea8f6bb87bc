import type { ChildProcess } from 'node:child_process';

/** Poll `fn` until it returns a truthy value (or resolves to one), or fail after `ms`. */
export async function until<T>(fn: () => T | Promise<T>, what: string, ms = 5000, every = 20): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end)
      throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/**
 * One reader per child: every line of its stdout and stderr is queued until a waitForLine call
 * consumes it, so two waits in a row never lose a line that arrived in the same chunk.
 */
interface LineReader {
  readonly lines: string[];
  readonly recent: string[];
  readonly notify: Set<() => void>;
  exited: number | null | undefined;
}
const readers = new WeakMap<ChildProcess, LineReader>();

function readerOf(child: ChildProcess): LineReader {
  let r = readers.get(child);
  if (r) return r;
  const reader: LineReader = { lines: [], recent: [], notify: new Set(), exited: undefined };
  const wake = (): void => {
    for (const f of [...reader.notify]) f();
  };
  for (const stream of [child.stdout, child.stderr]) {
    let buf = '';
    stream?.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      reader.lines.push(...lines);
      wake();
    });
  }
  child.on('close', (code) => {
    reader.exited = code;
    wake();
  });
  readers.set(child, reader);
  r = reader;
  return r;
}

/** Resolve with the next line of the child's stdout/stderr that matches, or fail after `ms`. */
export function waitForLine(child: ChildProcess, re: RegExp, ms = 5000): Promise<string> {
  const r = readerOf(child);
  return new Promise((resolve, reject) => {
    const tail = (): string =>
      r.recent.length ? `; last output: ${r.recent.slice(-5).join(' | ')}` : '; no output';
    const check = (): void => {
      while (r.lines.length > 0) {
        const l = r.lines.shift()!;
        if (re.test(l)) {
          done();
          resolve(l);
          return;
        }
        r.recent.push(l);
        if (r.recent.length > 20) r.recent.shift();
      }
      if (r.exited !== undefined) {
        done();
        reject(new Error(`process exited (${r.exited}) before printing ${re}${tail()}`));
      }
    };
    const t = setTimeout(() => {
      done();
      reject(new Error(`no line matching ${re} within ${ms} ms${tail()}`));
    }, ms);
    const done = (): void => {
      clearTimeout(t);
      r.notify.delete(check);
    };
    r.notify.add(check);
    check();
  });
}

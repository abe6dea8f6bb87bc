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

/** Resolve with the first line of the child's stdout/stderr that matches, or fail after `ms`. */
export function waitForLine(child: ChildProcess, re: RegExp, ms = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const seen: string[] = [];
    const tail = (): string => (seen.length ? `; last output: ${seen.slice(-5).join(' | ')}` : '; no output');
    const onData = (d: Buffer): void => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) {
        if (re.test(l)) {
          done();
          resolve(l);
          return;
        }
        seen.push(l);
        if (seen.length > 20) seen.shift();
      }
    };
    const onExit = (code: number | null): void => {
      done();
      reject(new Error(`process exited (${code}) before printing ${re}${tail()}`));
    };
    const t = setTimeout(() => {
      done();
      reject(new Error(`no line matching ${re} within ${ms} ms${tail()}`));
    }, ms);
    const done = (): void => {
      clearTimeout(t);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('exit', onExit);
  });
}

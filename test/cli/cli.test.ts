import { type ChildProcess, execFileSync } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { attachClient } from '../../src/ipc/daemon.js';
import { cleanup, ROOT, runTs, startFixture, stopAll, tempDir } from '../support/daemons.js';
import { until, waitForLine } from '../support/wait.js';

const CLI = `${ROOT}/src/cli/main.ts`;
let dir: string;

/** Run the CLI to completion: exit code, stdout, stderr. */
function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return cliAs(undefined, ...args);
}
/** The same as another user (root only). */
function cliAs(
  uid: number | undefined,
  ...args: string[]
): Promise<{ code: number; out: string; err: string }> {
  const c = runTs(CLI, ['--dir', dir, ...args], uid === undefined ? {} : { uid, gid: uid });
  let out = '';
  let err = '';
  c.stdout?.on('data', (d: Buffer) => (out += d));
  c.stderr?.on('data', (d: Buffer) => (err += d));
  return new Promise((resolve) => c.on('exit', (code) => resolve({ code: code ?? -1, out, err })));
}
function background(...args: string[]): ChildProcess {
  return runTs(CLI, ['--dir', dir, ...args]);
}

beforeAll(async () => {
  dir = tempDir();
  await startFixture('fx', dir);
});
afterAll(async () => {
  await stopAll();
  cleanup(dir);
});

describe('metanet CLI against real daemons', () => {
  it('ls lists running daemons, and one daemon’s mailboxes and listeners', async () => {
    const all = await cli('ls');
    expect(all.code).toBe(0);
    expect(all.out).toMatch(/^fx {2}pid \d+$/m);
    const one = await cli('ls', 'fx');
    expect(one.out).toContain('/chain');
    expect(one.out).toMatch(/#\d+ stock \{stock=true\}/);
    const json = JSON.parse((await cli('--json', 'ls', 'fx')).out) as unknown[][];
    expect(json[0]).toEqual(['daemon', 'str', 'fx']);
  });

  it('call prints the reply with typed tuples; send prints what happened', async () => {
    const r = await cli(
      'call',
      'fx:/echo',
      'text=hi',
      'n=5',
      'f=2.5',
      'big=int:9007199254740993',
      'h=hex:ff00',
      'l={a=1 b="x y"}',
    );
    expect(r.code).toBe(0);
    expect(r.out.trim()).toBe(
      'text="hi" n=5 f=float:2.5 big=9007199254740993 h=hex:ff00 l={a=1 b="x y"} from="fx"',
    );
    const s = await cli('--json', 'send', 'fx:/count', 'n=1');
    expect(JSON.parse(s.out)).toMatchObject({ delivered: true, listeners: 1 });
  });

  it('documented exit codes and clear errors', async () => {
    const none = await cli('send', 'fx:/nobody');
    expect([none.code, none.out.trim()]).toEqual([5, '/nobody: not delivered (no listener)']);
    const ghost = await cli('send', 'ghost:/x');
    expect(ghost.code).toBe(2);
    expect(ghost.err).toContain('daemon "ghost" is not running');
    const badTuple = await cli('send', 'fx:/x', 'oops');
    expect([badTuple.code, badTuple.err.trim()]).toEqual([
      1,
      'metanet: bad tuple "oops": expected tag=value',
    ]);
    const badAddr = await cli('send', 'fx:nope');
    expect(badAddr.code).toBe(1);
    expect(badAddr.err).toMatch(/path/);
    const slow = await cli('call', '-t', '100', 'fx:/slow', 'ms=2000');
    expect(slow.code).toBe(3);
  });

  it('listen --prepend --stop intercepts from the shell: nobody else sees the message', async () => {
    const l = background('listen', '--prepend', '--stop', '--reply', 'from=shell', 'fx:/chain');
    await waitForLine(l, /^listening on fx:\/chain/, 15000);
    const b = new Bus({ name: `t-${process.pid}` });
    attachClient(b, { dir });
    const got = waitForLine(l, /^\/chain /);
    expect((await b.request('fx:/chain', { q: 1 })).str('from')).toBe('shell');
    expect(await got).toMatch(/^\/chain {2}q=1 reply-to=/);
    l.kill('SIGTERM');
    await until(
      async () => (await b.request('fx:/chain', {})).str('from') === 'stock',
      'the stock listener again',
    );
    await b.close(100);
  });

  it('monitor prints the traffic of a daemon; wait returns one matching message', async () => {
    const m = background('monitor', 'fx', '/count');
    await waitForLine(m, /^monitoring fx/, 15000);
    const seen = waitForLine(m, /^\/count {2}n=7/);
    const w = cli('wait', '--match', 'k=2', '-t', '10000', 'fx:/echo');
    const b = new Bus({ name: `t2-${process.pid}` });
    attachClient(b, { dir });
    await b.send('fx:/count', { n: 7 });
    expect(await seen).toBe('/count  n=7');
    // the waiter attaches asynchronously: keep sending until it has seen one
    const r = await Promise.race([
      w,
      until(
        async () => {
          await b.send('fx:/echo', { k: 1 });
          await b.send('fx:/echo', { k: 2 });
          return false;
        },
        'never',
        15000,
        100,
      ),
    ]);
    expect(r).toMatchObject({ code: 0, out: 'k=2\n' });
    m.kill('SIGTERM');
    await b.close(100);
  });

  it('a socket this user may not open: exit 4 and the word "denied", not "not running"', async () => {
    const d = await startFixture('locked', dir);
    chmodSync(`${dir}/locked.sock`, 0o600);
    chmodSync(dir, 0o755);
    // root opens any socket: try as nobody then; as another user the mode alone keeps us out
    const nobody =
      process.getuid?.() === 0
        ? Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }))
        : undefined;
    if (nobody === undefined) chmodSync(`${dir}/locked.sock`, 0o000);
    const r = await cliAs(nobody, 'send', 'locked:/count');
    expect(r.code).toBe(4);
    expect(r.err).toMatch(
      /^metanet: permission denied: cannot open the socket of daemon "locked" \(.*locked\.sock: EACCES\)/,
    );
    expect(r.err).not.toContain('not running');
    const ls = await cliAs(nobody, 'ls');
    expect(ls.out).toMatch(/^locked {2}denied \(no permission to open its socket\)$/m);
    await d.kill();
  });
});

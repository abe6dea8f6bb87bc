import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { isMetanetError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/log.js';
import { serveDaemon } from '../../src/ipc/daemon.js';
import { socketDir } from '../../src/ipc/dir.js';
import { cleanup, ROOT, runTs, startFixture, stopAll, tempDir } from '../support/daemons.js';
import { have } from '../support/env.js';
import { waitForLine } from '../support/wait.js';

const dirs: string[] = [];
function dir(): string {
  const d = tempDir();
  dirs.push(d);
  return d;
}
afterEach(stopAll);
afterAll(() => {
  for (const d of dirs) cleanup(d);
});

describe('daemon endpoint', () => {
  it('listens on <dir>/<name>.sock, owner+group only by default, and removes it on close', async () => {
    const d = dir();
    const bus = new Bus({ name: 'alpha' });
    const daemon = await serveDaemon(bus, { dir: d, signals: false });
    expect(daemon.path).toBe(`${d}/alpha.sock`);
    expect(statSync(daemon.path).mode & 0o777).toBe(0o660);
    await daemon.close();
    await bus.close();
    expect(existsSync(`${d}/alpha.sock`)).toBe(false);
  });

  it('close() waits for the connections still open, greeted or not, and ends when they end', async () => {
    const d = dir();
    const bus = new Bus({ name: 'waits', logger: silentLogger });
    const daemon = await serveDaemon(bus, { dir: d, signals: false });
    const raw = connect(daemon.path); // connected, never greeted
    await new Promise<void>((r) => raw.once('connect', () => r()));
    await new Promise((r) => setTimeout(r, 50)); // accepted by now
    let closed = false;
    const closing = daemon.close().then(() => {
      closed = true;
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(closed).toBe(false);
    raw.destroy();
    await closing;
    expect(existsSync(`${d}/waits.sock`)).toBe(false);
    await bus.close();
  });

  it('the directory comes from the flag, then METANET_DIR, then /run/metanet', () => {
    const saved = process.env.METANET_DIR;
    try {
      delete process.env.METANET_DIR;
      expect(socketDir()).toBe('/run/metanet');
      process.env.METANET_DIR = '/tmp/x';
      expect(socketDir()).toBe('/tmp/x');
      expect(socketDir('/flag')).toBe('/flag');
    } finally {
      if (saved === undefined) delete process.env.METANET_DIR;
      else process.env.METANET_DIR = saved;
    }
  });

  it('refuses to start when a live daemon holds the name', async () => {
    const d = dir();
    await startFixture('taken', d);
    const e = await serveDaemon(new Bus({ name: 'taken' }), { dir: d, signals: false }).catch(
      (x: unknown) => x,
    );
    expect(isMetanetError(e, 'EEXIST')).toBe(true);
    expect(String(e)).toMatch(/daemon "taken" is already running/);
  });

  it('replaces the stale socket of a daemon killed with SIGKILL', async () => {
    const d = dir();
    const fx = await startFixture('stale', d);
    await fx.kill('SIGKILL');
    expect(existsSync(`${d}/stale.sock`)).toBe(true);
    const bus = new Bus({ name: 'stale' });
    const daemon = await serveDaemon(bus, { dir: d, signals: false });
    await daemon.close();
    await bus.close();
  });

  it('removes its socket on SIGTERM and SIGINT', async () => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      const d = dir();
      const fx = await startFixture('sig', d);
      expect(existsSync(`${d}/sig.sock`)).toBe(true);
      await fx.kill(sig);
      expect(existsSync(`${d}/sig.sock`)).toBe(false);
    }
  });
  it('a bus without a name cannot be a daemon', async () => {
    const e = await serveDaemon(new Bus(), { dir: dir(), signals: false }).catch((x: unknown) => x);
    expect(isMetanetError(e, 'ECONFIG')).toBe(true);
  });
});

describe.skipIf(!have([], { root: true }))('access control by peer credentials (SO_PEERCRED)', () => {
  it('applies the first matching rule to another user; root may do everything', async () => {
    const d = dir();
    chmodSync(d, 0o755);
    const nobody = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }));
    const acl = [
      { user: 'nobody', allow: ['send'], mailboxes: ['/echo'] },
      { user: '*', deny: ['send', 'listen'], mailboxes: ['/count/**', '/count'] },
    ];
    await startFixture('guarded', d, acl);
    const as = async (uid: number | undefined, op: string, addr: string): Promise<string> => {
      const c = runTs(
        `${ROOT}/test/ipc/fixtures/client.ts`,
        [d, op, addr],
        uid === undefined ? {} : { uid, gid: uid },
      );
      return waitForLine(c, /^(ok|error)/, 15000);
    };
    expect(await as(nobody, 'send', 'guarded:/echo')).toBe('ok');
    expect(await as(nobody, 'send', 'guarded:/count')).toMatch(
      /^error EDENIED guarded: send \/count denied to uid \d+ by rule 1/,
    );
    expect(await as(nobody, 'listen', 'guarded:/chain')).toMatch(/^error EDENIED .*no rule allows it/);
    expect(await as(undefined, 'send', 'guarded:/count')).toBe('ok');
  });
});

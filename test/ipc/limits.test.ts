/**
 * What one peer may cost a daemon (docs/ipc.md, "Limits"): a bounded backlog enforced as
 * replies are queued, a small frame limit, bounded work per turn, a handshake timeout and
 * connection limits. Each test keeps a well-behaved client calling every 100 ms; it must never
 * fail, and the hostile peer must cost the others nothing they would notice.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { isMetanetError } from '../../src/core/errors.js';
import { attachClient, serveDaemon } from '../../src/ipc/daemon.js';
import { F } from '../../src/ipc/wire.js';
import { cleanup, type FixtureDaemon, runTs, stopAll, tempDir } from '../support/daemons.js';
import { waitForLine } from '../support/wait.js';
import { rawPeer, rssMiB } from './fixtures/raw.js';

const dirs: string[] = [];
function dir(): string {
  const d = tempDir();
  dirs.push(d);
  return d;
}
const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  await stopAll();
});
afterAll(() => {
  for (const d of dirs) cleanup(d);
});

/** The fixture daemon with `bulk` extra mailboxes (its LS reply is ~120 bytes per mailbox). */
async function bigFixture(name: string, d: string, bulk: number): Promise<FixtureDaemon & { pid: number }> {
  const child = runTs(`${new URL('fixtures/daemon.ts', import.meta.url).pathname}`, [name, d], {
    env: { ...process.env, METANET_LOG: 'warn', MN_FIXTURE_MAILBOXES: String(bulk) },
  });
  await waitForLine(child, new RegExp(`^ready ${name}$`), 20000);
  closers.push(
    () =>
      new Promise<void>((r) => {
        if (child.exitCode !== null) r();
        else {
          child.once('exit', () => r());
          child.kill('SIGKILL');
        }
      }),
  );
  return { child, pid: child.pid!, kill: async () => void child.kill('SIGKILL') };
}

/** A client that calls `addr` every 100 ms until stopped: every failure and the slowest answer. */
function wellBehaved(d: string, addr: string) {
  const bus = new Bus({ name: `good-${process.pid}` });
  attachClient(bus, { dir: d });
  const failures: string[] = [];
  let slowest = 0;
  let calls = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const t0 = performance.now();
      try {
        const r = await bus.request(addr, { n: calls }, { timeout: 5000 });
        if (r.int('n') !== calls) failures.push(`call ${calls}: wrong reply ${r}`);
      } catch (e) {
        failures.push(`call ${calls}: ${String(e)}`);
      }
      slowest = Math.max(slowest, performance.now() - t0);
      calls++;
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    get failures() {
      return failures;
    },
    get slowest() {
      return slowest;
    },
    get calls() {
      return calls;
    },
    async stop(): Promise<void> {
      running = false;
      await loop;
      await bus.close(100);
    },
  };
}

describe('the backlog bound is enforced per frame', () => {
  it('2,000 LS frames in one write from a peer that never reads: cut at once, RSS bounded, nobody else notices', async () => {
    const d = dir();
    const fx = await bigFixture('big', d, 3000);
    const good = wellBehaved(d, 'big:/echo');
    await new Promise((r) => setTimeout(r, 300));
    const before = await rssMiB(fx.pid);
    let peak = before;
    const sampler = setInterval(async () => {
      peak = Math.max(peak, await rssMiB(fx.pid).catch(() => 0));
    }, 25);
    const bad = await rawPeer(`${d}/big.sock`, { read: false });
    bad.sock.pause();
    const burst: unknown[][] = [[F.HELLO, 1, 'hostile', process.pid]];
    for (let i = 1; i <= 2000; i++) burst.push([F.LS, i, null]);
    const t0 = performance.now();
    bad.send(...burst);
    const line = await waitForLine(fx.child, /peer too slow/, 20000);
    const cutAfter = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 1000)); // the good client keeps calling meanwhile
    clearInterval(sampler);
    const after = await rssMiB(fx.pid);
    await good.stop();
    process.stderr.write(
      `backlog: RSS before ${before.toFixed(0)} MiB, peak ${peak.toFixed(0)} MiB, 1 s after the cut ${after.toFixed(0)} MiB; cut after ${cutAfter.toFixed(0)} ms; good client: ${good.calls} calls, slowest ${good.slowest.toFixed(0)} ms\n`,
    );
    const backlog = Number(/"backlog":(\d+)/.exec(line)?.[1]);
    expect(backlog).toBeLessThanOrEqual(64 * 1024 * 1024 + 512 * 1024);
    expect(cutAfter).toBeLessThan(30000); // the time to build 64 MiB of answers; 2–14 s on the development VM
    expect(peak - before).toBeLessThan(256);
    expect(good.failures).toEqual([]);
    expect(good.slowest).toBeLessThan(1000);
    bad.sock.resume();
    await bad.closed;
  }, 60000);
});

describe('big frames and busy peers do not stall the others', () => {
  it('the default frame limit is 1 MiB; a daemon may set its own', async () => {
    const d = dir();
    const bus = new Bus({ name: 'small' });
    const daemon = await serveDaemon(bus, { dir: d, signals: false });
    const tiny = new Bus({ name: 'tiny' });
    const daemon2 = await serveDaemon(tiny, { dir: d, signals: false, maxFrame: 4096 });
    closers.push(async () => {
      await daemon.close();
      await daemon2.close();
      await bus.close();
      await tiny.close();
    });
    for (const [sock, limit] of [
      ['small', 1024 * 1024],
      ['tiny', 4096],
    ] as const) {
      const p = await rawPeer(`${d}/${sock}.sock`, { hello: 'x' });
      const head = Buffer.alloc(4);
      head.writeUInt32BE(limit + 1);
      p.send(head);
      const err = await p.next((f) => f[0] === F.ERROR, 'an ERROR frame');
      expect(err.slice(0, 3)).toEqual([F.ERROR, 0, 'EPROTO']);
      expect(String(err[3])).toBe(`frame of ${limit + 1} bytes exceeds the limit of ${limit} bytes`);
      await p.closed;
    }
  });

  it('a frame packed with a million tiny values is refused before it is decoded', async () => {
    const d = dir();
    const fx = await bigFixture('dense', d, 0);
    const good = wellBehaved(d, 'dense:/echo');
    await new Promise((r) => setTimeout(r, 300));
    // SEND [1, 1, "/echo", [ [], [], … ]]: a 1 MiB frame of empty arrays (≈1M values)
    const n = 1024 * 1024 - 16;
    const body = Buffer.concat([
      Buffer.from([0x94, 0x01, 0x01, 0xa5, 0x2f, 0x65, 0x63, 0x68, 0x6f, 0xdd]),
      Buffer.from([(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]),
      Buffer.alloc(n, 0x90),
    ]);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    const frame = Buffer.concat([head, body]);
    const peers = [];
    for (let i = 0; i < 4; i++) {
      const p = await rawPeer(`${d}/dense.sock`, { hello: `dense-${i}` });
      p.send(frame, frame);
      peers.push(p);
    }
    for (const p of peers) {
      const err = await p.next((f) => f[0] === F.ERROR, 'an ERROR frame', 10000);
      expect(String(err[3])).toMatch(/more than 65536 MessagePack values/);
      await p.closed;
    }
    await new Promise((r) => setTimeout(r, 300));
    await good.stop();
    process.stderr.write(
      `dense frames: good client slowest ${good.slowest.toFixed(0)} ms over ${good.calls} calls\n`,
    );
    expect(good.failures).toEqual([]);
    expect(good.slowest).toBeLessThan(500);
    expect(fx.child.exitCode).toBeNull();
  }, 60000);

  it('a peer asking for work nonstop gets it in slices: a client calling meanwhile waits milliseconds, not seconds', async () => {
    const d = dir();
    const fx = await bigFixture('busy', d, 3000);
    const good = wellBehaved(d, 'busy:/echo');
    await new Promise((r) => setTimeout(r, 300));
    const busy = await rawPeer(`${d}/busy.sock`);
    const burst: unknown[][] = [[F.HELLO, 1, 'busy', process.pid]];
    // each LS walks the 3,000 mailboxes (a few ms of work) and answers with one of them
    for (let i = 1; i <= 2000; i++) burst.push([F.LS, i, '/bulk/1']);
    const t0 = performance.now();
    busy.send(...burst);
    await busy.next((f) => f[0] === F.OK && f[1] === 2000, 'the 2,000th LS answer', 50000);
    const took = performance.now() - t0;
    await good.stop();
    process.stderr.write(
      `busy peer: 2,000 LS in ${took.toFixed(0)} ms; good client ${good.calls} calls, slowest ${good.slowest.toFixed(0)} ms\n`,
    );
    expect(busy.frames.filter((f) => f[0] === F.OK)).toHaveLength(2000);
    expect(good.failures).toEqual([]);
    expect(good.slowest).toBeLessThan(Math.min(500, took / 2));
    busy.sock.destroy();
    expect(fx.child.exitCode).toBeNull();
  }, 90000);
});

describe('handshake timeout and connection limits', () => {
  async function daemonWith(name: string, o: Parameters<typeof serveDaemon>[1]) {
    const d = dir();
    const bus = new Bus({ name });
    bus.append('/echo', function echo(m, ctx) {
      if (ctx.replyTo) void ctx.reply(m.without('reply-to'));
    });
    const daemon = await serveDaemon(bus, { dir: d, signals: false, ...o });
    closers.push(async () => {
      await daemon.close();
      await bus.close();
    });
    return { d, bus, path: daemon.path };
  }

  it('a connection that never sends HELLO, or stops mid-frame, is closed after the timeout with ETIMEDOUT', async () => {
    const { d, path } = await daemonWith('shy', { handshakeTimeout: 300 });
    const good = wellBehaved(d, 'shy:/echo');
    const silent = await rawPeer(path);
    const t0 = performance.now();
    await silent.closed;
    const waited = performance.now() - t0;
    const err = silent.frames.find((f) => f[0] === F.ERROR);
    expect(err?.slice(0, 3)).toEqual([F.ERROR, 0, 'ETIMEDOUT']);
    expect(String(err?.[3])).toBe('no HELLO within 300 ms of connecting');
    expect(waited).toBeGreaterThanOrEqual(280);
    expect(waited).toBeLessThan(2000);

    const stuck = await rawPeer(path, { hello: 'stuck' });
    stuck.send(Buffer.from([0, 0, 0, 20, 0x94, 0x01]));
    await stuck.closed;
    const err2 = stuck.frames.find((f) => f[0] === F.ERROR);
    expect(err2?.slice(0, 3)).toEqual([F.ERROR, 0, 'ETIMEDOUT']);
    expect(String(err2?.[3])).toMatch(
      /^a frame started \d+ ms ago is still incomplete \(6 bytes; the limit is 300 ms\)$/,
    );
    await good.stop();
    expect(good.failures).toEqual([]);
  });

  it('a frame sent slowly but completed in time is read; the timeout runs per frame', async () => {
    const { path } = await daemonWith('patient', { handshakeTimeout: 400 });
    const p = await rawPeer(path, { hello: 'slow' });
    for (let i = 1; i <= 6; i++) {
      // each frame arrives in two halves 150 ms apart; the whole exchange takes far longer than 400 ms
      const bytes = Buffer.from([0, 0, 0, 4, 0x93, 0x0b, i, 0xc0]);
      p.send(bytes.subarray(0, 5));
      await new Promise((r) => setTimeout(r, 150));
      p.send(bytes.subarray(5));
      await p.next((f) => f[0] === F.OK && f[1] === i, `LS answer ${i}`);
    }
    expect(p.isClosed()).toBe(false);
    p.sock.destroy();
  });

  it('connections beyond the limits (per user, in total) are refused with a clear ERROR; others are served', async () => {
    const { d, path } = await daemonWith('few', { maxConnectionsPerUid: 3, maxConnections: 100 });
    const good = wellBehaved(d, 'few:/echo'); // one of the three
    await new Promise((r) => setTimeout(r, 200));
    const held = [await rawPeer(path, { hello: 'a' }), await rawPeer(path, { hello: 'b' })];
    const extra = await rawPeer(path, { hello: 'c' });
    await extra.closed;
    expect(extra.frames[0]?.slice(0, 3)).toEqual([F.HELLO, 1, 'few']);
    const err = extra.frames.find((f) => f[0] === F.ERROR);
    expect(err?.slice(0, 3)).toEqual([F.ERROR, 0, 'EDENIED']);
    expect(String(err?.[3])).toBe(
      `too many connections from uid ${process.getuid?.()}: 3 open, the limit is 3 per user (maxConnectionsPerUid)`,
    );
    // a TypeScript client sees that error
    const other = new Bus({ name: 'other' });
    attachClient(other, { dir: d });
    const e = await other.request('few:/echo', {}).catch((x: unknown) => x);
    expect(isMetanetError(e, 'EDENIED')).toBe(true);
    expect(String(e)).toContain('too many connections from uid');
    await other.close(100);
    // one leaves: there is room again
    held[0]!.sock.destroy();
    await held[0]!.closed;
    await new Promise((r) => setTimeout(r, 50));
    const again = await rawPeer(path, { hello: 'd' });
    again.send([F.LS, 1, '/echo']);
    await again.next((f) => f[0] === F.OK, 'LS answer');
    await good.stop();
    expect(good.failures).toEqual([]);
    held[1]!.sock.destroy();
    again.sock.destroy();
  });

  it('the total limit counts everyone', async () => {
    const { path } = await daemonWith('full', { maxConnections: 2 });
    const a = await rawPeer(path, { hello: 'a' });
    const b = await rawPeer(path, { hello: 'b' });
    const c = await rawPeer(path, { hello: 'c' });
    await c.closed;
    const err = c.frames.find((f) => f[0] === F.ERROR);
    expect(String(err?.[3])).toBe('too many connections: 2 open, the limit is 2 (maxConnections)');
    a.sock.destroy();
    b.sock.destroy();
  });

  it('limits must be positive', async () => {
    const e = await serveDaemon(new Bus({ name: 'bad-limits' }), {
      dir: dir(),
      signals: false,
      maxFrame: 0,
    }).catch((x: unknown) => x);
    expect(isMetanetError(e, 'ECONFIG')).toBe(true);
  });
});

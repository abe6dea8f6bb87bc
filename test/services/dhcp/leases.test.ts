import { spawn } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/core/log.js';
import { LeaseStore } from '../../../src/services/dhcp/leases.js';
import { tmp } from './helpers.js';

const WRITER = join(import.meta.dirname, 'fixtures', 'lease-writer.ts');

function capture(): { lines: string[]; log: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, log: createLogger({}, (l) => lines.push(l) > 0) };
}

/** Run the writer until it has acknowledged `n` leases, then kill -9 it; returns the acks. */
async function writeAndKill(file: string, prefix: string, n: number): Promise<Map<string, string>> {
  const child = spawn(process.execPath, ['--import', 'tsx', WRITER, file, prefix], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const acks = new Map<string, string>();
  let err = '';
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`writer made ${acks.size} acks in 15 s: ${err}`)), 15000);
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) {
        const [k, mac, ip] = l.split(' ');
        if (k === 'ack') acks.set(mac!, ip!);
      }
      if (acks.size >= n) {
        clearTimeout(timer);
        child.kill('SIGKILL'); // mid-stream: more commits are in flight
        resolve();
      }
    });
    child.on('exit', (code) => {
      if (acks.size < n) {
        clearTimeout(timer);
        reject(new Error(`writer exited (${code}): ${err}`));
      }
    });
  });
  await new Promise((r) =>
    child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r),
  );
  return acks;
}

describe('lease store', () => {
  let t: ReturnType<typeof tmp>;
  beforeEach(() => {
    t = tmp();
  });
  afterEach(() => t.cleanup());

  it('survives kill -9 of a real writer process: every acknowledged lease is there, no address twice', async () => {
    const file = join(t.dir, 'leases.jsonl');
    const a = await writeAndKill(file, '02:00:00:00', 150);
    const b = await writeAndKill(file, '02:00:00:01', 150); // restarted on the crashed file
    const c = capture();
    const store = await LeaseStore.open(file, { log: c.log });
    try {
      for (const [mac, ip] of [...a, ...b])
        expect(store.ofMac(mac), mac).toMatchObject({ ip, state: 'bound' });
      const ips = store.active().map((l) => l.ip);
      expect(new Set(ips).size).toBe(ips.length);
      const acked = [...a.values(), ...b.values()];
      expect(new Set(acked).size).toBe(acked.length);
    } finally {
      await store.close();
    }
  }, 40000);

  it('many changes in flight with compactions among them: each resolves, close() waits for the queue', async () => {
    const file = join(t.dir, 'l.jsonl');
    const s = await LeaseStore.open(file);
    const expires = Date.now() + 60_000;
    const all: Promise<void>[] = [];
    for (let i = 0; i < 1000; i++) {
      all.push(s.commit({ mac: `m${i}`, ip: `10.1.${i >> 8}.${i & 255}`, expires }));
      if (i % 250 === 125) all.push(s.compact());
      if (i % 100 === 0) await Promise.resolve(); // spread over several batches
    }
    const late = s.commit({ mac: 'late', ip: '10.2.0.1', expires });
    await s.close(); // flushes what is queued
    await Promise.all([...all, late]);
    const again = await LeaseStore.open(file);
    expect(again.all().length).toBe(1001);
    expect(again.ofMac('late')?.ip).toBe('10.2.0.1');
    await again.close();
  });

  it('ignores a torn last line with a warning, and compacts it away', async () => {
    const file = join(t.dir, 'leases.jsonl');
    const s1 = await LeaseStore.open(file);
    await s1.commit({
      mac: '02:00:00:00:00:01',
      ip: '10.77.0.100',
      expires: Date.now() + 60000,
      hostname: 'a',
    });
    await s1.commit({ mac: '02:00:00:00:00:02', ip: '10.77.0.101', expires: Date.now() + 60000 });
    await s1.close();
    appendFileSync(file, '{"op":"commit","mac":"02:00:00:00:00:03","ip":"10.77.0.1');
    const c = capture();
    const s2 = await LeaseStore.open(file, { log: c.log });
    expect(
      s2
        .active()
        .map((l) => l.ip)
        .sort(),
    ).toEqual(['10.77.0.100', '10.77.0.101']);
    expect(s2.ofMac('02:00:00:00:00:01')?.hostname).toBe('a');
    expect(c.lines.join('')).toMatch(/torn last line/);
    await s2.close();
    const text = readFileSync(file, 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    expect(
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l).op),
    ).toEqual(['header', 'commit', 'commit']);
  });

  it('skips a corrupt middle line with a warning and keeps the rest', async () => {
    const file = join(t.dir, 'leases.jsonl');
    const exp = Date.now() + 60000;
    writeFileSync(
      file,
      `{"op":"commit","mac":"02:00:00:00:00:01","ip":"10.77.0.100","expires":${exp}}\n#garbage\n{"op":"nope"}\n` +
        `{"op":"commit","mac":"02:00:00:00:00:02","ip":"10.77.0.101","expires":${exp}}\n`,
    );
    const c = capture();
    const s = await LeaseStore.open(file, { log: c.log });
    expect(s.active()).toHaveLength(2);
    expect(c.lines.filter((l) => l.includes('"warn"'))).toHaveLength(2);
    await s.close();
  });

  it('release, expiry and decline replay to the same state; a moved client keeps one address', async () => {
    const file = join(t.dir, 'leases.jsonl');
    let now = 1_000_000;
    const s = await LeaseStore.open(file, { now: () => now });
    await s.commit({ mac: 'm1', ip: '10.0.0.1', expires: now + 1000 });
    await s.commit({ mac: 'm2', ip: '10.0.0.2', expires: now + 5000 });
    await s.commit({ mac: 'm3', ip: '10.0.0.3', expires: now + 5000 });
    await s.commit({ mac: 'm3', ip: '10.0.0.4', expires: now + 5000 }); // m3 moved
    expect(await s.free('m2', '10.0.0.2', 'release')).toBe(true);
    expect(await s.free('m1', '10.0.0.2', 'release')).toBe(false);
    await s.decline('10.0.0.9', now + 10_000);
    now += 2000;
    expect((await s.expire()).map((l) => l.mac)).toEqual(['m1']);
    await expect(s.commit({ mac: 'm9', ip: '10.0.0.4', expires: now + 1 })).rejects.toThrow(/bound to m3/);
    const before = JSON.stringify(s.all().sort((x, y) => (x.ip < y.ip ? -1 : 1)));
    await s.close();
    const r = await LeaseStore.open(file, { now: () => now });
    expect(JSON.stringify(r.all().sort((x, y) => (x.ip < y.ip ? -1 : 1)))).toBe(before);
    expect(r.get('10.0.0.3')).toBeUndefined();
    expect(r.ofMac('m3')?.ip).toBe('10.0.0.4');
    expect(r.declinedUntil('10.0.0.9')).toBe(1_010_000);
    expect(r.heldByOther('10.0.0.1', 'm9')).toBe(false); // expired
    await r.close();
  });

  it('fuzz: any journal text replays without throwing; what replays is kept by the compaction', async () => {
    const file = join(t.dir, 'fuzz.jsonl');
    const line = fc.oneof(
      fc.string(),
      fc.json(),
      fc
        .record({
          op: fc.constantFrom('commit', 'free', 'decline', 'header', 'x'),
          mac: fc.oneof(fc.constantFrom('m1', 'm2'), fc.integer()),
          ip: fc.constantFrom('10.0.0.1', '10.0.0.2', 5),
          expires: fc.oneof(fc.integer(), fc.string()),
          at: fc.integer(),
          until: fc.integer(),
        })
        .map((o) => JSON.stringify(o)),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(line, { maxLength: 12 }), async (lines) => {
        writeFileSync(file, lines.join('\n'));
        const s = await LeaseStore.open(file, { log: capture().log });
        const before = JSON.stringify(s.all());
        await s.close();
        const again = await LeaseStore.open(file, { log: capture().log });
        expect(JSON.stringify(again.all())).toBe(before);
        const ips = again.active(0).map((l) => l.ip);
        expect(new Set(ips).size).toBe(ips.length);
        await again.close();
      }),
      { numRuns: 100 },
    );
  });
});

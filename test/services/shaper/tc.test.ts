import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isMetanetError } from '../../../src/core/errors.js';
import { classesOf, upsert } from '../../../src/services/shaper/guests.js';
import { cap, checkOptions, guestIp } from '../../../src/services/shaper/options.js';
import { TcShell } from '../../../src/services/shaper/shell.js';
import {
  addGuestLines,
  clearLines,
  defaultRate,
  diffLines,
  FIRST_ID,
  filterHandle,
  type GuestClass,
  guestShare,
  leafLimit,
  quantum,
  redirectLines,
  removeGuestLines,
  type Tree,
  treeLines,
} from '../../../src/services/shaper/tc.js';

const down: Tree = { dev: 'br-guest', key: 'dst', uplink: 18_000_000, leaf: 'pfifo', queueMs: 50 };
const up: Tree = { dev: 'ifb-guest', key: 'src', uplink: 9_000_000, leaf: 'pfifo', queueMs: 50 };
const text = (t: readonly { line: string }[]): string[] => t.map((l) => l.line);

describe('shaper tc lines', () => {
  it('builds the download tree: root, uplink class, default class, hash table on the destination', () => {
    expect(text(treeLines(down, []))).toEqual([
      'qdisc add dev br-guest root handle 1: htb default 2',
      'class add dev br-guest parent 1: classid 1:1 htb rate 18000000bit ceil 18000000bit quantum 2250',
      'class add dev br-guest parent 1:1 classid 1:2 htb rate 900000bit ceil 18000000bit quantum 2250',
      'qdisc add dev br-guest parent 1:2 handle 2: pfifo limit 75',
      'filter add dev br-guest parent 1: protocol ip prio 10 handle 10: u32 divisor 256',
      'filter add dev br-guest parent 1: protocol ip prio 10 u32 ht 800:: match u32 0 0 hashkey mask 0x000000ff at 16 link 10:',
    ]);
  });

  it('keys the upload tree on the source address, and redirects ingress to the ifb', () => {
    expect(text(treeLines(up, [])).at(-1)).toContain('hashkey mask 0x000000ff at 12 link 10:');
    expect(text(redirectLines('br-guest', 'ifb-guest'))).toEqual([
      'qdisc add dev br-guest handle ffff: ingress',
      'filter add dev br-guest parent ffff: protocol all prio 10 u32 match u32 0 0 action mirred egress redirect dev ifb-guest',
    ]);
    expect(clearLines('br-guest', true).every((l) => l.optional)).toBe(true);
    expect(text(clearLines('ifb-guest', false))).toEqual(['qdisc del dev ifb-guest root']);
  });

  it('gives a guest a class, a leaf and a filter in the bucket of its last byte (all hex)', () => {
    const g: GuestClass = { ip: '10.78.0.200', id: 0x1a, rate: 8_550_000, ceil: 5_000_000 };
    expect(filterHandle(g)).toBe('10:c8:1a');
    expect(text(addGuestLines(down, g))).toEqual([
      'class add dev br-guest parent 1:1 classid 1:1a htb rate 5000000bit ceil 5000000bit quantum 2250',
      'qdisc add dev br-guest parent 1:1a handle 1a: pfifo limit 21',
      'filter add dev br-guest parent 1: protocol ip prio 10 handle 10:c8:1a u32 ht 10:c8: match ip dst 10.78.0.200/32 flowid 1:1a',
    ]);
    expect(text(addGuestLines(up, g))[2]).toContain('match ip src 10.78.0.200/32');
    expect(text(removeGuestLines(down, g))).toEqual([
      'filter del dev br-guest parent 1: protocol ip prio 10 handle 10:c8:1a u32',
      'class del dev br-guest parent 1:1 classid 1:1a',
    ]);
  });

  it('sizes leaf queues in frames from bytes (pfifo) or in bytes (bfifo), within bounds', () => {
    expect(leafLimit('pfifo', 5_000_000, 50)).toBe(21); // 31,250 bytes / 1514
    expect(leafLimit('pfifo', 64_000, 50)).toBe(16);
    expect(leafLimit('pfifo', 10_000_000_000, 50)).toBe(1000);
    expect(leafLimit('bfifo', 100_000_000, 50)).toBe(625_000);
    expect(leafLimit('bfifo', 64_000, 50)).toBe(16 * 1514);
    expect(quantum(1_000_000)).toBe(1514);
    expect(quantum(10_000_000_000)).toBe(60_000);
  });

  it('shares the uplink equally after the default class, never guaranteeing more than a cap', () => {
    expect(defaultRate(18_000_000)).toBe(900_000);
    expect(guestShare(18_000_000, 2)).toBe(8_550_000);
    let guests = upsert([], '10.0.0.1', 0, 0);
    guests = upsert(guests, '10.0.0.2', 1_000_000, 5_000_000);
    expect(classesOf(guests, 'down', 18_000_000)).toEqual([
      { ip: '10.0.0.1', id: FIRST_ID, rate: 8_550_000, ceil: 18_000_000 },
      { ip: '10.0.0.2', id: FIRST_ID + 1, rate: 5_000_000, ceil: 5_000_000 },
    ]);
    // A cap above the uplink is the uplink.
    expect(classesOf(upsert([], '10.0.0.3', 0, 50_000_000), 'down', 18_000_000)[0]!.ceil).toBe(18_000_000);
  });

  it('reuses the lowest free id, keeps ids when caps change', () => {
    let g = upsert(upsert(upsert([], 'a', 0, 0), 'b', 0, 0), 'c', 0, 0);
    g = g.filter((x) => x.ip !== 'b');
    g = upsert(g, 'd', 0, 0);
    expect(g.map((x) => [x.ip, x.id])).toEqual([
      ['a', 0x10],
      ['c', 0x12],
      ['d', 0x11],
    ]);
    expect(upsert(g, 'c', 7, 7).find((x) => x.ip === 'c')).toEqual({ ip: 'c', id: 0x12, up: 7, down: 7 });
  });

  it('a login costs its own 3 lines per tree plus one class change per other guest', () => {
    const before = upsert(upsert([], '10.0.0.1', 0, 0), '10.0.0.2', 0, 0);
    const after = upsert(before, '10.0.0.3', 0, 0);
    const lines = text(diffLines(down, classesOf(before, 'down', 18e6), classesOf(after, 'down', 18e6)));
    expect(lines).toHaveLength(2 + 3);
    expect(
      lines.slice(0, 2).every((l) => l.startsWith('class change dev br-guest parent 1:1 classid 1:1')),
    ).toBe(true);
    // Removal: filter and class first, then the others' new shares.
    const back = text(diffLines(down, classesOf(after, 'down', 18e6), classesOf(before, 'down', 18e6)));
    expect(back[0]).toMatch(/^filter del .* handle 10:3:12 u32$/);
    expect(back[1]).toBe('class del dev br-guest parent 1:1 classid 1:12');
    expect(back).toHaveLength(4);
    // A new cap changes the class and resizes its leaf.
    const capped = text(
      diffLines(
        down,
        classesOf(before, 'down', 18e6),
        classesOf(upsert(before, '10.0.0.1', 0, 5e6), 'down', 18e6),
      ),
    );
    expect(capped).toEqual([
      'class change dev br-guest parent 1:1 classid 1:10 htb rate 5000000bit ceil 5000000bit quantum 2250',
      'qdisc replace dev br-guest parent 1:10 handle 10: pfifo limit 21',
    ]);
  });

  it('diff then apply reaches the same classes as building from scratch (property)', () => {
    const ops = fc.array(
      fc.record({
        add: fc.boolean(),
        host: fc.integer({ min: 1, max: 40 }),
        capMbit: fc.integer({ min: 0, max: 30 }),
      }),
      { maxLength: 60 },
    );
    fc.assert(
      fc.property(ops, (list) => {
        let guests = upsert([], '10.0.0.250', 0, 0);
        // The kernel, as a map of class id → "rate ceil", driven only by the diff lines.
        const kernel = new Map<string, string>();
        const run = (lines: readonly { line: string }[]): void => {
          for (const { line } of lines) {
            const m =
              /^class (add|change|del) dev \S+ parent 1:1 classid (\S+)(?: htb rate (\S+) ceil (\S+))?/.exec(
                line,
              );
            if (!m) continue;
            if (m[1] === 'del') {
              expect(kernel.has(m[2]!)).toBe(true);
              kernel.delete(m[2]!);
            } else {
              expect(kernel.has(m[2]!)).toBe(m[1] === 'change');
              kernel.set(m[2]!, `${m[3]} ${m[4]}`);
            }
          }
        };
        run(
          treeLines(down, classesOf(guests, 'down', down.uplink)).filter((l) => !l.line.includes('1:1 htb')),
        );
        kernel.delete('1:2');
        for (const op of list) {
          const ip = `10.0.0.${op.host}`;
          const next = op.add ? upsert(guests, ip, 0, op.capMbit * 1e6) : guests.filter((g) => g.ip !== ip);
          run(diffLines(down, classesOf(guests, 'down', down.uplink), classesOf(next, 'down', down.uplink)));
          guests = next;
        }
        const want = new Map(
          classesOf(guests, 'down', down.uplink).map((c) => [
            `1:${c.id.toString(16)}`,
            `${Math.min(c.rate, c.ceil)}bit ${c.ceil}bit`,
          ]),
        );
        expect(kernel).toEqual(want);
      }),
    );
  });
});

describe('shaper options and tuples', () => {
  const base = { devices: 'br-guest', uplinkDown: 18_000_000, uplinkUp: 9_000_000 };

  it('derives the ifb name and the ip command from the tc command', () => {
    const o = checkOptions({ ...base, tc: ['ip', 'netns', 'exec', 'ns1', 'tc'] });
    expect(o.ifb).toBe('ifb-br-guest');
    expect(o.ip).toEqual(['ip', 'netns', 'exec', 'ns1', 'ip']);
    expect(checkOptions({ ...base, tc: ['/usr/sbin/tc'] }).ip).toEqual(['/usr/sbin/ip']);
    expect(checkOptions({ ...base, devices: 'a-very-long-nam' }).ifb).toBe('ifb-a-very-long');
  });

  it('refuses bad options by name', () => {
    const bad = (o: Record<string, unknown>, text: RegExp): void => {
      let err: unknown;
      try {
        checkOptions({ ...base, ...o } as Parameters<typeof checkOptions>[0]);
      } catch (e) {
        err = e;
      }
      expect(isMetanetError(err, 'ECONFIG'), String(err)).toBe(true);
      expect(String(err)).toMatch(text);
    };
    bad({ devices: [] }, /at least one/);
    bad({ devices: 'br guest' }, /not an interface name/);
    bad({ devices: ['a', 'a'] }, /names one twice/);
    bad({ uplinkDown: 1000 }, /uplinkDown/);
    bad({ uplinkUp: 1.5e6 + 0.5 }, /uplinkUp/);
    bad({ ifb: 'br-guest' }, /also a shaped device/);
    bad({ tc: ['sudo', 'tcx'] }, /give the ip command/);
    bad({ leaf: 'sfq' }, /pfifo or bfifo/);
    bad({ queueMs: 0 }, /queueMs/);
  });

  it('takes IPv4 guests only and caps of 0 (none) or at least 8 kbit/s', () => {
    expect(guestIp('10.0.0.1', 'x')).toBe('10.0.0.1');
    for (const ip of ['fd00::1', '10.0.0.1; rm', '010.0.0.1', '10.0.0.1/32'])
      expect(() => guestIp(ip, 'x')).toThrow(/not an IPv4 address/);
    expect(cap(0, 'x')).toBe(0);
    expect(cap(8000, 'x')).toBe(8000);
    expect(() => cap(100, 'x')).toThrow(/a cap is 0/);
    expect(() => cap(-1, 'x')).toThrow(/a cap is 0/);
  });
});

describe('TcShell (a fake tc speaking the batch protocol)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mn-shaper-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  // Like tc -force -batch -: a line at a time; "bad" lines fail, "die" exits, "hang" stops answering.
  const fake = join(dir, 'fake-tc.mjs');
  writeFileSync(
    fake,
    `import { createInterface } from 'node:readline';
let n = 0;
let hung = false;
for await (const line of createInterface({ input: process.stdin })) {
  n++;
  if (hung) continue;
  if (line === 'die') process.exit(255);
  if (line === 'hang') { hung = true; continue; }
  if (line.startsWith('warn')) process.stderr.write('Warning: sch_htb: quantum of class 10001 is big.\\n');
  if (line.startsWith('bad')) process.stderr.write('Error: Specified class not found.\\nWe have an error talking to the kernel\\nCommand failed -:' + n + '\\n');
  if (line.startsWith('mn-sync-')) process.stderr.write('Object "' + line + '" is unknown, try "tc help".\\nCommand failed -:' + n + '\\n');
}
`,
  );
  const cmd = [process.execPath, fake];
  const l = (line: string, optional = false): { dev: string; line: string; optional: boolean } => ({
    dev: 'br-guest',
    line,
    optional,
  });

  it('matches failures to their lines by number, across batches, warnings ignored', async () => {
    const sh = new TcShell({ command: cmd });
    try {
      expect(await sh.run([l('ok 1'), l('warn 2'), l('ok 3')])).toEqual([]);
      const f = await sh.run([l('ok'), l('bad one', true), l('ok'), l('bad two')]);
      expect(f).toEqual([
        { dev: 'br-guest', line: 'bad one', error: 'Error: Specified class not found.', optional: true },
        { dev: 'br-guest', line: 'bad two', error: 'Error: Specified class not found.', optional: false },
      ]);
      const results = await Promise.all([
        sh.run([l('bad a')]),
        sh.run([l('ok')]),
        sh.run([l('ok'), l('bad b')]),
      ]);
      expect(results.map((r) => r.map((x) => x.line))).toEqual([['bad a'], [], ['bad b']]);
      expect(sh.starts).toBe(1);
    } finally {
      await sh.close();
    }
  });

  it('a tc that dies fails its batch, and the next batch gets a new one', async () => {
    const failures: string[] = [];
    const sh = new TcShell({ command: cmd, onFailure: (r) => failures.push(r) });
    try {
      await expect(sh.run([l('ok'), l('die')])).rejects.toThrow(/tc exited \(code 255\)/);
      expect(await sh.run([l('bad')])).toHaveLength(1);
      expect(sh.starts).toBe(2);
      expect(failures).toHaveLength(1);
      await sh.restart();
      expect(await sh.run([l('ok')])).toEqual([]);
      expect(sh.starts).toBe(3);
    } finally {
      await sh.close();
    }
  });

  it('a tc that hangs is killed after the timeout and replaced', async () => {
    const sh = new TcShell({ command: cmd, timeoutMs: 1500 });
    try {
      const hung = sh.run([l('hang')]);
      const next = sh.run([l('bad after')]);
      await expect(hung).rejects.toThrow(/no answer within 1500 ms/);
      expect((await next).map((f) => f.line)).toEqual(['bad after']);
      expect(sh.starts).toBe(2);
    } finally {
      await sh.close();
    }
  });

  it('refuses lines tc would read differently, and runs after close', async () => {
    const sh = new TcShell({ command: cmd });
    await expect(sh.run([l('class add # comment')])).rejects.toThrow(/bad tc line/);
    await expect(sh.run([l('a\nb')])).rejects.toThrow(/bad tc line/);
    await sh.close();
    await expect(sh.run([l('ok')])).rejects.toThrow(/closed/);
  });
});

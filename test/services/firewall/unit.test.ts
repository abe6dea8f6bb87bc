import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isMetanetError } from '../../../src/core/errors.js';
import { setElements } from '../../../src/services/firewall/elements.js';
import { ownerAlive, ownerComment, parseOwner, processStart } from '../../../src/services/firewall/owner.js';
import { buildRuleset } from '../../../src/services/firewall/ruleset.js';
import { NftShell } from '../../../src/services/firewall/shell.js';
import { loadState, parseState, saveState } from '../../../src/services/firewall/state.js';
import { until } from '../../support/wait.js';

const base = { lan: 'r0', portal: { address: '10.77.0.1', port: 8080 } };

describe('firewall ruleset text', () => {
  it('replaces only its own table, in one transaction', () => {
    const text = buildRuleset({ ...base, table: 'portal1' });
    expect(text.split('\n').slice(0, 3)).toEqual([
      'add table inet portal1',
      'delete table inet portal1',
      'table inet portal1 {',
    ]);
    expect(text).not.toMatch(/flush ruleset/);
    expect(text).toContain('set auth4 { type ipv4_addr . ether_addr; flags timeout; counter; }');
    expect(text).toContain('dnat ip to 10.77.0.1:8080');
  });

  it('counts downloads per address in the forward chain, before anything is accepted, without a verdict', () => {
    const lines = buildRuleset({ ...base, lan: ['r0', 'r2'] }).split('\n');
    const forward = lines.slice(lines.indexOf('  chain forward {'));
    expect(forward.slice(2, 5)).toEqual([
      '    oifname { "r0", "r2" } ct state established,related ip daddr @down4',
      '    oifname { "r0", "r2" } ct state established,related ip6 daddr @down6',
      '    iifname != { "r0", "r2" } accept',
    ]);
    expect(lines).toContain('  set down4 { type ipv4_addr; flags timeout; counter; }');
  });

  it('puts saved elements and walled-garden prefixes in by family, with time left', () => {
    const now = 1_000_000;
    const text = buildRuleset(
      { ...base, garden: ['192.0.2.0/24', '2001:db8::/32'] },
      {
        clients: [
          { ip: '10.77.0.10', mac: '02:00:00:00:00:01', timeout: 3600, expiresAt: now + 600_000 },
          { ip: 'fd00::10', mac: '02:00:00:00:00:02', timeout: 60, expiresAt: now + 30_500 },
        ],
        smtp: [{ client: '10.77.0.10', server: '10.77.1.2', port: 25, timeout: 300, expiresAt: now + 1000 }],
      },
      now,
    );
    expect(text).toContain('elements = { 10.77.0.10 . 02:00:00:00:00:01 timeout 3600s expires 600s }');
    expect(text).toContain('elements = { fd00::10 . 02:00:00:00:00:02 timeout 60s expires 31s }');
    expect(text).toContain('elements = { 10.77.0.10 . 10.77.1.2 . 25 timeout 300s expires 1s }');
    expect(text).toContain(
      'set down4 { type ipv4_addr; flags timeout; counter; elements = { 10.77.0.10 timeout 3600s expires 600s } }',
    );
    expect(text).toContain(
      'set down6 { type ipv6_addr; flags timeout; counter; elements = { fd00::10 timeout 60s expires 31s } }',
    );
    expect(text).toContain('set garden4 { type ipv4_addr; flags interval; elements = { 192.0.2.0/24 } }');
    expect(text).toContain('set garden6 { type ipv6_addr; flags interval; elements = { 2001:db8::/32 } }');
  });

  it('refuses options that would reach nft unchecked, naming them', () => {
    expect(() => buildRuleset({ ...base, lan: 'r0"; flush ruleset' })).toThrow(/interface name/);
    expect(() => buildRuleset({ ...base, table: 'a b' })).toThrow(/table name/);
    expect(() => buildRuleset({ ...base, portal: { address: '::1', port: 80 } })).toThrow(/portal.address/);
    expect(() => buildRuleset({ ...base, portal: { address: '10.0.0.1', port: 0 } })).toThrow(/portal.port/);
    expect(() => buildRuleset({ ...base, garden: ['10.0.0.0/33'] })).toThrow(/prefix length/);
    expect(() => buildRuleset({ ...base, garden: ['example.com'] })).toThrow(/garden/);
  });
});

describe('walled garden by name, MAC lists, owner', () => {
  it('learnt garden addresses, trusted and blocked MACs: sets and where they are judged', () => {
    const now = 1_000_000;
    const text = buildRuleset(
      base,
      {
        clients: [],
        smtp: [],
        garden: [{ ip: '192.0.2.7', timeout: 300, expiresAt: now + 100_000 }],
        trusted: ['02:00:00:00:00:0a'],
        blocked: ['02:00:00:00:00:0b'],
      },
      now,
      { comment: 'metanet owner pid=1 start=2 daemon=portal name=/system/firewall', pid: 1 },
    );
    const lines = text.split('\n');
    expect(lines[3]).toBe('  comment "metanet owner pid=1 start=2 daemon=portal name=/system/firewall"');
    expect(lines[4]).toBe('  set owner { type mark; elements = { 1 } }');
    expect(lines).toContain(
      '  set gardendns4 { type ipv4_addr; flags timeout; elements = { 192.0.2.7 timeout 300s expires 100s } }',
    );
    expect(lines).toContain('  set trusted { type ether_addr; elements = { 02:00:00:00:00:0a } }');
    expect(lines).toContain('  set blocked { type ether_addr; elements = { 02:00:00:00:00:0b } }');
    // Not redirected: trusted MACs, learnt garden addresses.
    expect(text).toContain('iifname { "r0" } ether saddr @trusted accept');
    expect(text).toMatch(/ip daddr != @garden4 ip daddr != @gardendns4 dnat ip to/);
    const chain = (n: string): string[] =>
      lines.slice(lines.indexOf(`  chain ${n} {`) + 2, lines.indexOf('  }', lines.indexOf(`  chain ${n} {`)));
    // input: blocked first (DHCP only), then trusted, before anyone authorised
    expect(chain('input').slice(1, 5)).toEqual([
      '    ether saddr @blocked udp dport 67 accept',
      '    ether saddr @blocked drop',
      '    ether saddr @trusted accept',
      '    ip saddr . ether saddr @auth4 accept',
    ]);
    const fwd = chain('forward');
    expect(fwd.slice(3, 6)).toEqual([
      '    ether saddr @blocked drop',
      '    ether saddr @trusted meta nfproto ipv4 goto authorised4',
      '    ether saddr @trusted meta nfproto ipv6 goto authorised6',
    ]);
    expect(fwd).toContain('    ip daddr @gardendns4 accept');
    expect(fwd.indexOf('    ip daddr @gardendns4 accept')).toBeLessThan(
      fwd.indexOf('    tcp dport 443 reject with tcp reset'),
    );
  });

  it('the owner comment round-trips and says whether its process runs', () => {
    const me = {
      pid: process.pid,
      start: processStart(process.pid) ?? 0,
      daemon: 'portal',
      name: '/system/firewall',
    };
    const c = ownerComment(me);
    expect(c).toMatch(/^metanet owner pid=\d+ start=\d+ daemon=portal name=\/system\/firewall$/);
    expect(parseOwner(`table inet metanet {\n\tcomment "${c}"\n}`)).toEqual(me);
    expect(parseOwner('table inet metanet {\n}')).toBeUndefined();
    expect(ownerComment({ ...me, daemon: 'a"b; flush ruleset' })).not.toMatch(/["; ]flush/);
    expect(ownerAlive(me)).toBe(true);
    expect(ownerAlive({ ...me, start: me.start + 1 })).toBe(false); // the pid was reused
    expect(ownerAlive({ ...me, pid: 2 ** 22 + 7 })).toBe(false);
  });
});

describe('firewall state file', () => {
  it('round-trips atomically and drops expired entries on load', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fwstate-'));
    try {
      const file = join(dir, 'state.json');
      expect(loadState(file)).toEqual({ clients: [], smtp: [], garden: [], trusted: [], blocked: [] });
      const now = Date.now();
      saveState(file, {
        clients: [
          { ip: '10.77.0.10', mac: '02:00:00:00:00:01', timeout: 60, expiresAt: now + 60_000 },
          { ip: '10.77.0.11', mac: '02:00:00:00:00:02', timeout: 60, expiresAt: now - 1 },
        ],
        smtp: [],
        garden: [
          { ip: '192.0.2.7', timeout: 300, expiresAt: now + 300_000 },
          { ip: '192.0.2.8', timeout: 300, expiresAt: now - 1 },
        ],
        trusted: ['02:00:00:00:00:0a'],
        blocked: ['02:00:00:00:00:0b'],
      });
      expect(JSON.parse(readFileSync(file, 'utf8')).version).toBe(1);
      const back = loadState(file);
      expect(back.clients.map((c) => c.ip)).toEqual(['10.77.0.10']);
      expect(back.garden.map((g) => g.ip)).toEqual(['192.0.2.7']);
      expect(back.trusted).toEqual(['02:00:00:00:00:0a']);
      expect(back.blocked).toEqual(['02:00:00:00:00:0b']);
      // A file written before garden and the MAC lists existed is still read.
      expect(parseState('{"version":1,"clients":[],"smtp":[]}')).toEqual({
        clients: [],
        smtp: [],
        garden: [],
        trusted: [],
        blocked: [],
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names what is wrong in a broken file', () => {
    expect(() => parseState('{')).toThrow(/not JSON/);
    expect(() => parseState('{"version":2}')).toThrow(/version/);
    expect(() =>
      parseState('{"version":1,"clients":[{"ip":"10.0.0.1","mac":"zz","timeout":1,"expiresAt":1}]}'),
    ).toThrow(/clients\[0\]\.mac/);
    expect(() => parseState('{"version":1,"blocked":["nope"]}')).toThrow(/blocked\[0\]/);
    expect(() => parseState('{"version":1,"garden":[{"ip":"x","timeout":1,"expiresAt":1}]}')).toThrow(
      /garden\[0\]\.ip/,
    );
  });

  it('fuzz: any text is a state or an ECONFIG error, never a crash', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.json(),
          fc.jsonValue().map((v) => JSON.stringify({ version: 1, clients: [v] })),
        ),
        (s) => {
          try {
            parseState(s);
          } catch (e) {
            expect(isMetanetError(e, 'ECONFIG') || isMetanetError(e, 'EBADTUPLE')).toBe(true);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('nft JSON set decoder', () => {
  it('reads a listed set and an add-element echo (nft 1.0.6 shapes)', () => {
    const listed = {
      nftables: [
        { metainfo: { version: '1.0.6' } },
        {
          set: {
            name: 'auth4',
            elem: [
              {
                elem: {
                  val: { concat: ['10.77.0.10', '02:00:00:00:00:01'] },
                  timeout: 3600,
                  expires: 3599,
                  counter: { packets: 7, bytes: 420 },
                },
              },
            ],
          },
        },
      ],
    };
    expect(setElements(listed, 'auth4')).toEqual([
      { key: ['10.77.0.10', '02:00:00:00:00:01'], timeout: 3600, expires: 3599, packets: 7, bytes: 420 },
    ]);
    const echo = {
      nftables: [
        {
          add: {
            element: {
              name: 'smtp4',
              elem: {
                set: [
                  { elem: { val: { concat: ['10.0.0.1', '10.0.0.2', 25] }, timeout: 600, expires: 600 } },
                ],
              },
            },
          },
        },
      ],
    };
    expect(setElements(echo, 'smtp4')[0]!.key).toEqual(['10.0.0.1', '10.0.0.2', 25]);
    expect(
      setElements({ nftables: [{ set: { name: 'garden4', elem: ['192.0.2.1'] } }] }, 'garden4')[0]!.key,
    ).toEqual(['192.0.2.1']);
  });

  it('fuzz: any JSON is elements or an EPROTO error, never a crash', () => {
    const setLike = fc.record({ name: fc.constantFrom('auth4', 'x'), elem: fc.jsonValue() });
    fc.assert(
      fc.property(
        fc.oneof(
          fc.jsonValue(),
          fc.jsonValue().map((v) => ({ nftables: [v] })),
          setLike.map((set) => ({ nftables: [{ set }] })),
        ),
        (doc) => {
          try {
            setElements(doc, 'auth4');
          } catch (e) {
            expect(isMetanetError(e, 'EPROTO')).toBe(true);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('nft shell supervision (stand-in children that misbehave)', () => {
  it('kills and replaces a child that does not answer, failing the command with ETIMEDOUT', async () => {
    const failures: string[] = [];
    const shell = new NftShell({
      command: ['sh', '-c', 'cat >/dev/null', 'sh'],
      timeoutMs: 200,
      onFailure: (r) => failures.push(r),
    });
    try {
      const t0 = Date.now();
      await expect(shell.run('list ruleset')).rejects.toMatchObject({ code: 'ETIMEDOUT' });
      expect(Date.now() - t0).toBeLessThan(1500);
      await until(() => shell.starts >= 2, 'a new child');
      expect(failures[0]).toMatch(/no answer within 200 ms/);
    } finally {
      await shell.close();
    }
  });

  it('reports a child that exits and starts another', async () => {
    const failures: string[] = [];
    const shell = new NftShell({ command: ['sh', '-c', 'exit 3', 'sh'], onFailure: (r) => failures.push(r) });
    try {
      await until(() => failures.length >= 2, 'two failures reported');
      expect(failures[0]).toMatch(/nft exited \(code 3\)/);
      expect(shell.starts).toBeGreaterThanOrEqual(2);
    } finally {
      await shell.close();
    }
    await expect(shell.run('list ruleset')).rejects.toMatchObject({ code: 'ECLOSED' });
  });

  it('refuses a command with a newline (one command per line)', async () => {
    const shell = new NftShell({ command: ['sh', '-c', 'cat >/dev/null', 'sh'] });
    try {
      await expect(shell.run('list ruleset\nflush ruleset')).rejects.toMatchObject({ code: 'EBADTUPLE' });
    } finally {
      await shell.close();
    }
  });
});

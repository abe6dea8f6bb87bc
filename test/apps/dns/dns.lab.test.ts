import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../../src/core/bus.js';
import { STOP } from '../../../src/core/listener.js';
import { silentLogger } from '../../../src/core/log.js';
import type { Message } from '../../../src/core/message.js';
import { attachClient } from '../../../src/ipc/daemon.js';
import { have } from '../../support/env.js';
import { Lab } from '../../support/lab.js';
import { until, waitForLine } from '../../support/wait.js';

/**
 * The real thing: dnsmasq as the authoritative upstream in the inet namespace, the forwarder
 * (src/apps/dns/main.ts) in the router namespace on 10.77.0.1:53, real `dig` and busybox
 * `nslookup` in the client namespace, hooks attached from other processes (this test's own bus
 * over the daemon socket, and the `metanet listen` CLI).
 */
const MAIN = 'src/apps/dns/main.ts';
const CLI = 'src/cli/main.ts';
const BIG = 'x'.repeat(250);

interface Dig {
  status: string;
  flags: string[];
  answers: { name: string; ttl: number; type: string; data: string }[];
  authority: { name: string; ttl: number; type: string }[];
  ms: number;
  raw: string;
}

describe.skipIf(!have(['ip', 'dnsmasq', 'dig', 'busybox'], { root: true }))(
  'dns forwarder with dnsmasq upstream, dig and nslookup clients',
  () => {
    let lab: Lab;
    let forwarder: ChildProcess;
    let upstream: ChildProcess;
    let sockDir: string;
    let bus: Bus;
    const announced: Message[] = [];
    let log = '';
    const TIMEOUT_MS = 1500;

    async function dig(args: string[]): Promise<Dig> {
      const t0 = Date.now();
      const r = await lab.exec(
        lab.client,
        'dig',
        [
          `@${lab.routerLanIp}`,
          '+tries=1',
          '+time=5',
          '+noall',
          '+comments',
          '+answer',
          '+authority',
          ...args,
        ],
        { timeoutMs: 15000 },
      );
      const ms = Date.now() - t0;
      const status = /status: (\w+)/.exec(r.stdout)?.[1] ?? `none (exit ${r.code}: ${r.stdout}${r.stderr})`;
      const flags = (/;; flags: ([a-z ]*);/.exec(r.stdout)?.[1] ?? '').trim().split(/\s+/);
      const section = (name: string): string[] => {
        const i = r.stdout.indexOf(`;; ${name} SECTION:`);
        if (i < 0) return [];
        const lines: string[] = [];
        for (const l of r.stdout.slice(i).split('\n').slice(1)) {
          if (!l.trim()) break;
          lines.push(l);
        }
        return lines;
      };
      const rr = (l: string): { name: string; ttl: number; type: string; data: string } => {
        const [name, ttl, , type, ...data] = l.split(/\s+/);
        return { name: name!, ttl: Number(ttl), type: type!, data: data.join(' ') };
      };
      return {
        status,
        flags,
        answers: section('ANSWER').map(rr),
        authority: section('AUTHORITY').map(rr),
        ms,
        raw: r.stdout + r.stderr,
      };
    }

    async function startUpstream(): Promise<void> {
      const txt = Array.from({ length: 6 }, () => `--txt-record=big.example.test,${BIG},${BIG}`);
      upstream = lab.spawn(lab.inet, 'dnsmasq', [
        '-d',
        '-C',
        '/dev/null',
        '--pid-file=',
        '--user=root',
        '--port=53',
        `--listen-address=${lab.inetIp}`,
        '--bind-interfaces',
        '--no-resolv',
        '--no-hosts',
        '--auth-zone=example.test',
        `--auth-server=ns.example.test,${lab.inetIp}`,
        '--auth-ttl=300',
        '--host-record=www.example.test,10.77.1.80',
        '--host-record=other.example.test,10.77.1.81',
        '--host-record=safe.example.test,10.77.1.99',
        ...txt,
      ]);
      await until(
        async () =>
          (
            await lab.exec(lab.inet, 'dig', [`@${lab.inetIp}`, '+short', '+time=1', 'www.example.test'])
          ).stdout.includes('10.77.1.80'),
        'dnsmasq to answer',
        10000,
      );
    }

    const answerFor = async (name: string, n = 1): Promise<Message[]> => {
      const got = await until(
        () => {
          const list = announced.filter((m) => m.str('name') === name);
          return list.length >= n ? list : undefined;
        },
        `${n} /dns/answer for ${name}`,
        5000,
      );
      return got!;
    };

    beforeAll(async () => {
      lab = await Lab.create({ clients: 1, addr: true });
      sockDir = join(lab.dir, 'sock');
      await startUpstream();
      const cfg = lab.file(
        'dns.json',
        JSON.stringify({
          listen: [lab.routerLanIp],
          upstream: [lab.inetIp],
          timeoutMs: TIMEOUT_MS,
          maxNegativeTtl: 30,
        }),
      );
      forwarder = lab.nodeScript(lab.router, MAIN, ['--config', cfg, '--dir', sockDir], {
        env: { ...process.env, METANET_LOG: 'info' },
      });
      forwarder.stderr?.on('data', (d: Buffer) => {
        log += d.toString();
      });
      await waitForLine(forwarder, /^dns ready 53$/, 15000);
      bus = new Bus({ name: `dnstest-${process.pid}`, logger: silentLogger });
      attachClient(bus, { dir: sockDir });
      await bus.listen('dns:/dns/answer', (m) => {
        announced.push(m);
      }).ready;
    }, 30000);

    afterAll(async () => {
      await bus?.close();
      await lab?.close();
    });

    it('dig over UDP gets the answer; the second query comes from the cache with its TTL decremented', async () => {
      const first = await dig(['www.example.test', 'A']);
      expect(first.status).toBe('NOERROR');
      expect(first.flags).toEqual(expect.arrayContaining(['qr', 'rd', 'ra']));
      expect(first.answers).toEqual([{ name: 'www.example.test.', ttl: 300, type: 'A', data: '10.77.1.80' }]);
      expect((await answerFor('www.example.test'))[0]!.toObject()).toMatchObject({
        type: 'A',
        client: lab.clientIp(0),
        proto: 'udp',
        rcode: 'NOERROR',
        answers: 1,
        source: 'upstream',
      });
      await new Promise((r) => setTimeout(r, 2100));
      const second = await dig(['www.example.test', 'A']);
      expect(second.answers[0]!.data).toBe('10.77.1.80');
      expect(second.answers[0]!.ttl).toBeLessThanOrEqual(298);
      expect(second.answers[0]!.ttl).toBeGreaterThan(290);
      expect((await answerFor('www.example.test', 2))[1]!.str('source')).toBe('cache');
      const stats = await bus.request('dns:/dns/stats', {});
      expect(stats.int('hits')).toBeGreaterThanOrEqual(1);
    });

    it('dig +tcp; a large answer comes truncated over UDP and whole over TCP (upstream asked over TCP too)', async () => {
      const tcp = await dig(['+tcp', 'other.example.test']);
      expect(tcp.answers).toEqual([{ name: 'other.example.test.', ttl: 300, type: 'A', data: '10.77.1.81' }]);
      expect((await answerFor('other.example.test'))[0]!.str('proto')).toBe('tcp');
      const truncated = await dig(['+ignore', 'big.example.test', 'TXT']);
      expect(truncated.status).toBe('NOERROR');
      expect(truncated.flags).toContain('tc');
      expect(truncated.answers).toEqual([]);
      // dig by default asks again over TCP after TC
      const retried = await dig(['big.example.test', 'TXT']);
      expect(retried.flags).not.toContain('tc');
      expect(retried.answers).toHaveLength(6);
      const viaTcp = await dig(['+tcp', 'big.example.test', 'TXT']);
      expect(viaTcp.answers).toHaveLength(6);
      expect(viaTcp.answers[0]!.data).toContain(BIG);
    });

    it('busybox nslookup resolves through it', async () => {
      const r = await lab.exec(lab.client, 'busybox', ['nslookup', 'safe.example.test', lab.routerLanIp]);
      expect(r.stdout).toMatch(/Address:\s+10\.77\.1\.99/);
    });

    it('NXDOMAIN passes through with the SOA, and is cached per RFC 2308 (capped at maxNegativeTtl)', async () => {
      const nx = await dig(['nope.example.test']);
      expect(nx.status).toBe('NXDOMAIN');
      expect(nx.authority[0]).toMatchObject({ type: 'SOA', ttl: 30 });
      const again = await dig(['nope.example.test']);
      expect(again.status).toBe('NXDOMAIN');
      expect((await answerFor('nope.example.test', 2))[1]!.str('source')).toBe('cache');
    });

    it('a hook prepended from another process answers and refuses names; it sees cached names too; removed, all is as before', async () => {
      const seen: string[] = [];
      const h = bus.prepend(
        'dns:/dns/query',
        async (m, ctx) => {
          seen.push(m.str('name'));
          if (m.str('name') === 'blocked.example.test') {
            await ctx.reply({ rcode: 'NXDOMAIN' });
            return STOP;
          }
          if (m.str('name') === 'printer.lan') {
            await ctx.reply({ answer: [{ type: 'A', ttl: 42, data: '10.77.0.5' }] });
            return STOP;
          }
          if (m.str('name') === 'search.example.test') await ctx.reply({ rewrite: 'safe.example.test' });
        },
        { app: 'test-hook' },
      );
      await h.ready;
      try {
        expect((await dig(['blocked.example.test'])).status).toBe('NXDOMAIN');
        const p = await dig(['printer.lan']);
        expect(p.answers).toEqual([{ name: 'printer.lan.', ttl: 42, type: 'A', data: '10.77.0.5' }]);
        expect((await answerFor('printer.lan'))[0]!.str('source')).toBe('hook');
        const rw = await dig(['search.example.test']);
        expect(rw.answers.map((a) => `${a.type} ${a.data}`)).toEqual([
          'CNAME safe.example.test.',
          'A 10.77.1.99',
        ]);
        expect((await answerFor('search.example.test'))[0]!.str('rewrite')).toBe('safe.example.test');
        expect((await dig(['www.example.test'])).answers[0]!.data).toBe('10.77.1.80'); // cached, hook still asked
        expect(seen).toEqual([
          'blocked.example.test',
          'printer.lan',
          'search.example.test',
          'safe.example.test',
          'www.example.test',
        ]);
      } finally {
        h.remove();
      }
      await until(
        async () => (await bus.request('dns:/dns/stats', {})).int('hook-answers') >= 3,
        'hook answers counted',
      );
      // removed (asynchronously, in the daemon): the name goes upstream again (dnsmasq: NXDOMAIN)
      await until(
        async () => {
          const r = await dig(['blocked.example.test']);
          const last = announced.filter((m) => m.str('name') === 'blocked.example.test').at(-1);
          return r.status === 'NXDOMAIN' && last?.str('source') !== 'hook';
        },
        'the hook gone from the chain',
        5000,
      );
      const calls = seen.length;
      expect((await dig(['www.example.test'])).status).toBe('NOERROR');
      expect(seen).toHaveLength(calls);
    });

    it('`metanet listen --prepend --stop --reply rcode=REFUSED dns:/dns/query` refuses from the shell', async () => {
      const cli = lab.spawn(lab.router, process.execPath, [
        '--import',
        'tsx',
        CLI,
        '--dir',
        sockDir,
        'listen',
        '--prepend',
        '--stop',
        '--reply',
        'rcode=REFUSED',
        '-n',
        '1',
        'dns:/dns/query',
      ]);
      await waitForLine(cli, /^listening on dns:\/dns\/query/, 15000);
      const r = await dig(['www.example.test']);
      expect(r.status).toBe('REFUSED');
      await new Promise((res) => (cli.exitCode !== null ? res(null) : cli.once('exit', res)));
      await until(
        async () => (await dig(['www.example.test'])).status === 'NOERROR',
        'the CLI listener gone',
        5000,
      );
    });

    it('a malformed datagram (and 300 more) does not stop it: the next query is answered; all are counted', async () => {
      const before = (await bus.request('dns:/dns/stats', {})).int('malformed');
      const script = `
        const dgram = require('node:dgram');
        const s = dgram.createSocket('udp4');
        const q = Buffer.from('abcd01000001000000000000037777770765786d706c6504746573740000010001', 'hex');
        const out = [Buffer.from('garbage'), Buffer.alloc(0), Buffer.from([0x12,0x34,0x81,0x80,0,1,0,0,0,0,0,0])];
        for (let i = 0; i < 300; i++) {
          const b = Buffer.from(q);
          for (let j = 0; j < 3; j++) b[Math.floor(Math.random() * b.length)] = Math.floor(Math.random() * 256);
          out.push(i % 3 === 0 ? require('node:crypto').randomBytes(i % 64) : b.subarray(0, 12 + (i % (b.length - 11))));
        }
        let n = 0;
        const next = () => n < out.length ? s.send(out[n++], 53, '${lab.routerLanIp}', next) : (console.log('sent', n), s.close());
        next();`;
      const r = await lab.exec(lab.client, process.execPath, ['-e', script], { timeoutMs: 15000 });
      expect(r.stdout).toMatch(/sent 303/);
      const ok = await dig(['www.example.test']);
      expect(ok.answers[0]!.data).toBe('10.77.1.80');
      const after = (await bus.request('dns:/dns/stats', {})).int('malformed');
      expect(after - before).toBeGreaterThanOrEqual(100);
      expect(forwarder.exitCode).toBeNull();
    });

    it('upstream killed: SERVFAIL at once (port unreachable); upstream silent: SERVFAIL within timeoutMs; cached names still answered', async () => {
      const gone = new Promise((r) => upstream.once('exit', r));
      upstream.kill('SIGKILL');
      await gone;
      const refused = await dig(['fresh1.example.test']);
      expect(refused.status).toBe('SERVFAIL');
      expect(refused.ms).toBeLessThan(TIMEOUT_MS);
      // a server that takes the datagrams and never answers
      const silent = lab.spawn(lab.inet, process.execPath, [
        '-e',
        `require('node:dgram').createSocket('udp4').bind(53, '${lab.inetIp}', () => console.log('bound'))`,
      ]);
      await waitForLine(silent, /^bound$/, 10000);
      const slow = await dig(['fresh2.example.test']);
      expect(slow.status).toBe('SERVFAIL');
      expect(slow.ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 100);
      expect(slow.ms).toBeLessThan(TIMEOUT_MS + 1000);
      expect((await dig(['www.example.test'])).answers[0]!.data).toBe('10.77.1.80');
      const s = await bus.request('dns:/dns/stats', {});
      expect(s.int('servfail')).toBeGreaterThanOrEqual(2);
      expect(s.int('upstream-failures')).toBeGreaterThanOrEqual(2);
      expect(log).toMatch(/upstream failed/);
    }, 20000);
  },
);

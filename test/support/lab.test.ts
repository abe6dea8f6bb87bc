import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { have } from './env.js';
import { Lab, processesIn, REPO_ROOT, sweepStale } from './lab.js';
import { until, waitForLine } from './wait.js';

const canLab = have(['ip', 'busybox'], { root: true });
const canDhcp = canLab && have(['udhcpc', 'dhclient', 'dnsmasq'], { root: true });

function namespaces(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);
}

const ping = (lab: Lab, ns: string, to: string) =>
  lab.exec(ns, 'busybox', ['ping', '-c', '1', '-W', '2', to], { timeoutMs: 5000 });

describe.skipIf(!canLab)('Lab', () => {
  it('creates namespaces joined by veth pairs; router reaches inet; a client with an address reaches inet', async () => {
    await Lab.with({ addr: true }, async (lab) => {
      expect(namespaces()).toEqual(expect.arrayContaining(lab.namespaces));
      expect(lab.client).toMatch(new RegExp(`^mn${process.pid}`));
      expect((await ping(lab, lab.router, lab.inetIp)).code).toBe(0);
      expect((await ping(lab, lab.client, lab.inetIp)).code).toBe(0);
      expect(await lab.mac(lab.client, 'c0')).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
      await expect(lab.mac(lab.client, 'nope0')).rejects.toThrow(/no interface nope0/);
      const r = await lab.exec(lab.router, 'sh', ['-c', 'echo out; echo err >&2; exit 3']);
      expect(r).toEqual({ code: 3, stdout: 'out\n', stderr: 'err\n' });
    });
  });

  it('puts several clients on one LAN behind a bridge', async () => {
    await Lab.with({ clients: 3, addr: true }, async (lab) => {
      expect(lab.clients).toHaveLength(3);
      expect((await ping(lab, lab.clients[2]!, lab.clientIp(0))).code).toBe(0);
      expect((await ping(lab, lab.clients[1]!, lab.inetIp)).code).toBe(0);
    });
  });

  it('tears everything down even when the test body throws, killing spawned processes', async () => {
    let names: string[] = [];
    let pid = 0;
    await expect(
      Lab.with({}, async (lab) => {
        names = lab.namespaces;
        const child = lab.spawn(lab.router, 'sleep', ['300']);
        await until(() => child.pid, 'sleep to start');
        pid = child.pid!;
        // a process started outside the lab's tracking, forked into the background
        await lab.exec(lab.inet, 'sh', ['-c', 'sleep 300 >/dev/null 2>&1 &']);
        throw new Error('test body failed');
      }),
    ).rejects.toThrow('test body failed');
    expect(namespaces().filter((n) => names.includes(n))).toEqual([]);
    expect(() => process.kill(pid, 0)).toThrow();
  });

  it('runs a TypeScript file with tsx inside a namespace', async () => {
    await Lab.with({}, async (lab) => {
      const file = lab.file(
        'hello.ts',
        `import { networkInterfaces } from 'node:os';\nconst n: string[] = Object.keys(networkInterfaces());\nconsole.log('ifaces', n.sort().join(','));\n`,
      );
      const child = lab.nodeScript(lab.router, file);
      expect(await waitForLine(child, /^ifaces /, 10_000)).toBe('ifaces lo,r0,r1');
    });
  });

  it('removes its namespaces when the process exits without close(), and sweeps those of a killed process', async () => {
    const script = join(REPO_ROOT, 'test', 'support', `.lab-exit-${process.pid}.ts`);
    writeFileSync(
      script,
      `import { Lab } from './lab.js';\nconst lab = await Lab.create();\nconsole.log('NS', lab.namespaces.join(' '));\n` +
        `if (process.argv[2] === 'exit') process.exit(1); else setInterval(() => {}, 1000);\n`,
    );
    try {
      const run = async (mode: string) => {
        const child = spawn(process.execPath, ['--import', 'tsx', script, mode], { cwd: REPO_ROOT });
        const line = await waitForLine(child, /^NS /, 10_000);
        return { child, names: line.slice(3).split(' ') };
      };
      const exited = await run('exit');
      await new Promise((r) => exited.child.once('exit', r));
      expect(namespaces().filter((n) => exited.names.includes(n))).toEqual([]);

      const killed = await run('hang');
      killed.child.kill('SIGKILL');
      await new Promise((r) => killed.child.once('exit', r));
      expect(namespaces()).toEqual(expect.arrayContaining(killed.names));
      expect(sweepStale()).toEqual(expect.arrayContaining(killed.names));
      expect(namespaces().filter((n) => killed.names.includes(n))).toEqual([]);
    } finally {
      execFileSync('rm', ['-f', script]);
    }
  });
});

describe.skipIf(!canDhcp)('Lab DHCP clients against dnsmasq in the router namespace', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await Lab.create();
    const leases = lab.file('dnsmasq.leases', '');
    const dnsmasq = lab.spawn(lab.router, 'dnsmasq', [
      '-k',
      '-d',
      '--no-ping',
      '--port=0',
      '--interface=r0',
      '--bind-interfaces',
      '--dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,600',
      '--dhcp-option=option:dns-server,10.77.0.1',
      '--dhcp-option=option:domain-name,lab.test',
      '--dhcp-option=114,https://portal.lab.test/api',
      `--dhcp-leasefile=${leases}`,
      '--conf-file=/dev/null',
      '--log-dhcp',
    ]);
    await waitForLine(dnsmasq, /DHCP, IP range/, 5000);
  });
  afterAll(() => lab?.close());

  it('udhcpc gets a lease, with hostname, client-id, broadcast flag and option 114', async () => {
    const l = await lab.udhcpc(lab.client, 'c0', {
      hostname: 'labclient',
      clientId: '01020000aabb01',
      broadcast: true,
      request: [114],
    });
    expect(l.ip).toMatch(/^10\.77\.0\.(1[0-4]\d|150)$/);
    expect(l).toMatchObject({
      client: 'udhcpc',
      mask: '255.255.255.0',
      router: ['10.77.0.1'],
      dns: ['10.77.0.1'],
      leaseTime: 600,
      serverId: '10.77.0.1',
      domain: 'lab.test',
    });
    expect(l.requested[114]?.toString()).toBe('https://portal.lab.test/api');
  });

  it('dhclient gets a lease, applied to the interface, and its daemon is gone afterwards', async () => {
    const l = await lab.dhclient(lab.client, 'c0', { hostname: 'labclient2', apply: true, request: [114] });
    expect(l.requested[114]?.toString()).toBe('https://portal.lab.test/api');
    expect(l).toMatchObject({
      client: 'dhclient',
      mask: '255.255.255.0',
      router: ['10.77.0.1'],
      leaseTime: 600,
    });
    expect((await ping(lab, lab.client, lab.inetIp)).code).toBe(0);
    expect(processesIn(lab.client)).toEqual([]);
  });

  it('rejects bad client options before running anything', async () => {
    await expect(lab.udhcpc(lab.client, 'c0', { hostname: 'a"b' })).rejects.toThrow(/hostname "a\\"b"/);
    await expect(lab.dhclient(lab.client, 'c0', { clientId: '1' })).rejects.toThrow(/clientId "1"/);
  });

  it('fails clearly when no server answers', async () => {
    await Lab.with({}, async (quiet) => {
      await expect(quiet.udhcpc(quiet.client, 'c0', { timeoutS: 1 })).rejects.toThrow(
        /udhcpc in .* no lease within 1 s/,
      );
    });
  });
});

import { type ChildProcess, execFile } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Bus } from '../../../src/core/bus.js';
import { silentLogger } from '../../../src/core/log.js';
import { attachClient } from '../../../src/ipc/daemon.js';
import { parseConfig } from '../../../src/services/dhcp/config.js';
import type { Inbound } from '../../../src/services/dhcp/core.js';
import { getOption } from '../../../src/services/dhcp/options.js';
import { checkConfigOption } from '../../../src/services/dhcp/optionset.js';
import type { DhcpPacket } from '../../../src/services/dhcp/packet.js';
import { have } from '../../support/env.js';
import { Lab, REPO_ROOT } from '../../support/lab.js';
import { until, waitForLine } from '../../support/wait.js';
import { clientPacket, MessageType, type Rig, rawConfig, rig, tmp, typeOf } from './helpers.js';

/**
 * dhcpd on a router with three interfaces, serving two of them by device (SO_BINDTODEVICE):
 *
 *   client0 c0 ──┐ r0 (bridge) 10.77.0.1/24  lan, served
 *   relay   c0 ──┘   │
 *    10.77.0.2       router ── r2 10.77.2.1/24  guest, served ── c0 guest
 *    x0 10.77.5.1    │
 *     └── c0 remote  r1 10.77.1.1/24  wan, NOT served ── i0 10.77.1.2 inet
 *
 * The remote namespace's only link is to the relay namespace, where dnsmasq runs as a real DHCP
 * relay agent (giaddr 10.77.5.1, to 10.77.0.1); the router routes 10.77.5.0/24 via 10.77.0.2.
 * The Lab gives client0, relay (its client1), router (r0, r1) and inet; this file adds r2, the
 * guest and the remote namespaces, named under the lab's prefix (so a crashed run's leftovers
 * are swept like the lab's own), and deletes them in afterAll. dhcpd runs as a process in the
 * router namespace (src/apps/dhcpd/main.ts); the test reads its counters over its daemon socket.
 */
const MAIN = 'src/apps/dhcpd/main.ts';
const FUZZ = join(REPO_ROOT, 'test', 'apps', 'dhcpd', 'fixtures', 'client.ts');

function run(cmd: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { timeout: 10_000 }, (err, out, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`)) : resolve(out),
    ),
  );
}

/** `ip -n NS -batch -`. */
function ipBatch(ns: string | undefined, lines: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const args = [...(ns ? ['-n', ns] : []), '-batch', '-'];
    const child = execFile('ip', args, { timeout: 10_000 }, (err, _o, stderr) =>
      err ? reject(new Error(`ip ${args.join(' ')}: ${stderr.trim() || err.message}`)) : resolve(),
    );
    child.stdin?.end(`${lines.join('\n')}\n`);
  });
}

/** Kill what runs in a namespace of ours, then delete it (deleting it removes its veth pairs). */
async function deleteNs(ns: string): Promise<void> {
  const pids = (await run('ip', ['netns', 'pids', ns]).catch(() => '')).split(/\s+/).filter(Boolean);
  for (const p of pids) {
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      // gone
    }
  }
  await run('ip', ['netns', 'del', ns]).catch(() => {});
}

describe.skipIf(!have(['ip', 'udhcpc', 'dhclient', 'dnsmasq', 'ss'], { root: true }))(
  'dhcpd serving two interfaces of a router by device, never its WAN',
  () => {
    let lab: Lab;
    let guest: string;
    let remote: string;
    let relayNs: string;
    let server: ChildProcess;
    let bus: Bus;
    let log = '';
    const extra: string[] = [];

    const stats = async (): Promise<{ received: number; offers: number; acks: number }> => {
      const m = await bus.request('dhcpd:/dhcpd/stats', {});
      return { received: m.int('received'), offers: m.int('offers'), acks: m.int('acks') };
    };
    const rxPackets = async (ns: string, dev: string): Promise<number> =>
      Number((await lab.exec(ns, 'cat', [`/sys/class/net/${dev}/statistics/rx_packets`])).stdout);

    async function startServer(
      listen: { interface?: string; address: string }[],
      tag: string,
    ): Promise<void> {
      const cfg = lab.file(
        `${tag}.json`,
        JSON.stringify({
          listen,
          subnets: [
            {
              subnet: '10.77.0.0/24',
              pool: { start: '10.77.0.100', end: '10.77.0.150' },
              router: '10.77.0.1',
            },
            {
              subnet: '10.77.2.0/24',
              pool: { start: '10.77.2.100', end: '10.77.2.150' },
              router: '10.77.2.1',
            },
            {
              subnet: '10.77.5.0/24',
              pool: { start: '10.77.5.100', end: '10.77.5.150' },
              router: '10.77.5.1',
            },
          ],
          leaseFile: join(lab.dir, `${tag}.leases`),
        }),
      );
      log = '';
      server = lab.nodeScript(lab.router, MAIN, ['--config', cfg, '--dir', join(lab.dir, `${tag}-sock`)], {
        env: { ...process.env, METANET_LOG: 'info' },
      });
      server.stderr?.on('data', (d: Buffer) => {
        log += d.toString();
      });
      await waitForLine(server, /^dhcpd ready/, 15000);
      await bus?.close();
      bus = new Bus({ name: `dhcpiftest-${process.pid}-${tag}`, logger: silentLogger });
      attachClient(bus, { dir: join(lab.dir, `${tag}-sock`) });
    }

    async function stopServer(): Promise<void> {
      const exited = new Promise<number | null>((r) => server.once('exit', (code) => r(code)));
      server.kill('SIGTERM');
      expect(await exited).toBe(0);
    }

    /**
     * Barrier: one datagram from the LAN client to the server, then wait until the server counted
     * it. Whatever was sent before it (from the WAN) would have been read by then.
     */
    async function barrier(): Promise<number> {
      const before = (await stats()).received;
      const r = await lab.exec(lab.client, process.execPath, [
        '--import',
        'tsx',
        FUZZ,
        'fuzz',
        '1',
        '10.77.0.1',
      ]);
      expect(r.stdout).toMatch(/sent 1/);
      return until(
        async () => {
          const n = (await stats()).received;
          return n >= before + 1 ? n : 0;
        },
        'the LAN barrier datagram to be counted',
        5000,
      );
    }

    beforeAll(async () => {
      lab = await Lab.create({ clients: 2 });
      relayNs = lab.clients[1]!;
      guest = `${lab.prefix}-guest`;
      remote = `${lab.prefix}-remote`;
      for (const ns of [guest, remote]) {
        await run('ip', ['netns', 'add', ns]);
        extra.push(ns);
      }
      await ipBatch(undefined, [
        `link add c0 netns ${guest} type veth peer name r2 netns ${lab.router}`,
        `link add c0 netns ${remote} type veth peer name x0 netns ${relayNs}`,
      ]);
      await Promise.all([
        ipBatch(lab.router, [
          'addr add 10.77.2.1/24 dev r2',
          'link set r2 up',
          'route add 10.77.5.0/24 via 10.77.0.2',
        ]),
        ipBatch(guest, ['link set lo up', 'link set c0 up']),
        ipBatch(remote, ['link set lo up', 'link set c0 up']),
        ipBatch(relayNs, ['addr add 10.77.0.2/24 dev c0', 'addr add 10.77.5.1/24 dev x0', 'link set x0 up']),
      ]);
      await startServer(
        [
          { interface: 'r0', address: '10.77.0.1' },
          { interface: 'r2', address: '10.77.2.1' },
        ],
        'bydev',
      );
    }, 30000);

    afterAll(async () => {
      await bus?.close();
      await lab?.close();
      for (const ns of extra) await deleteNs(ns);
    });

    it('opens one UDP socket per served device on 0.0.0.0:67 and no other (no wildcard, none on the WAN)', async () => {
      const r = await lab.exec(lab.router, 'ss', ['-Hnlu', 'sport = :67']);
      const locals = r.stdout
        .trim()
        .split('\n')
        .map((l) => l.trim().split(/\s+/)[3])
        .sort();
      expect(locals).toEqual(['0.0.0.0%r0:67', '0.0.0.0%r2:67']);
      expect(log).toMatch(/one per device \(r0 r2\)/);
    });

    it('at the same time, udhcpc on the LAN gets 10.77.0.x and dhclient on the guest network 10.77.2.x', async () => {
      const [lan, gst] = await Promise.all([
        lab.udhcpc(lab.client, 'c0', { apply: true }),
        lab.dhclient(guest, 'c0'),
      ]);
      expect(lan.ip).toMatch(/^10\.77\.0\.(1[0-4]\d|150)$/);
      expect(lan.serverId).toBe('10.77.0.1');
      expect(lan.router).toEqual(['10.77.0.1']);
      expect(gst.ip).toMatch(/^10\.77\.2\.(1[0-4]\d|150)$/);
      expect(gst.serverId).toBe('10.77.2.1');
      expect(gst.router).toEqual(['10.77.2.1']);
      // and each again, the other way round (dhclient on the LAN, udhcpc on the guest side)
      const [lan2, gst2] = await Promise.all([lab.dhclient(lab.client, 'c0'), lab.udhcpc(guest, 'c0')]);
      expect(lan2.ip).toBe(lan.ip);
      expect(gst2.ip).toBe(gst.ip);
    }, 30000);

    it('a client on the WAN gets no answer, and nothing arriving on the WAN is even received', async () => {
      const before = await stats();
      const rx0 = await rxPackets(lab.router, 'r1');
      // udhcpc: 3 DISCOVERs a second apart, then it gives up (exit 1, no lease)
      await expect(lab.udhcpc(lab.inet, 'i0', { timeoutS: 3 })).rejects.toThrow(/no lease within 3 s/);
      // unicasts from the WAN side to the server's addresses (a would-be relay or renewal)
      const r = await lab.exec(lab.inet, process.execPath, [
        '--import',
        'tsx',
        FUZZ,
        'fuzz',
        '5',
        '10.77.1.1',
        '10.77.0.1',
      ]);
      expect(r.stdout).toMatch(/sent 10/);
      // they did reach the router (3 DISCOVERs + 10 datagrams, at least) ...
      expect((await rxPackets(lab.router, 'r1')) - rx0).toBeGreaterThanOrEqual(13);
      // ... and the server read none of them: only the LAN barrier datagram after them counts
      expect(await barrier()).toBe(before.received + 1);
      const after = await stats();
      expect(after.offers).toBe(before.offers);
      expect(log).not.toMatch(/10\.77\.1\.2/);
    }, 30000);

    it('unicasts to the server on a served device are received: a RENEWING client (unicast REQUEST, ciaddr) gets its ACK', async () => {
      const mac = await lab.mac(lab.client, 'c0');
      const lan = await lab.udhcpc(lab.client, 'c0', { apply: true });
      const r = await lab.exec(
        lab.client,
        process.execPath,
        ['--import', 'tsx', FUZZ, 'renew', mac, lan.ip, '10.77.0.1'],
        { timeoutMs: 15000 },
      );
      expect(JSON.parse(r.stdout.trim())).toEqual({ type: 5, yiaddr: lan.ip, lease: 3600 });
    }, 30000);

    it('a real relay agent on the LAN (dnsmasq --dhcp-relay) serves a remote subnet: answered to giaddr:67 through the LAN device', async () => {
      const relay = lab.spawn(relayNs, 'dnsmasq', [
        '-k',
        '-d',
        '--port=0',
        '--conf-file=/dev/null',
        '--user=root',
        `--pid-file=${join(lab.dir, 'relay.pid')}`,
        '--dhcp-relay=10.77.5.1,10.77.0.1',
        '--log-dhcp',
      ]);
      await waitForLine(relay, /DHCP relay from 10\.77\.5\.1 to 10\.77\.0\.1/, 5000);
      try {
        const l = await lab.udhcpc(remote, 'c0');
        expect(l.ip).toMatch(/^10\.77\.5\.(1[0-4]\d|150)$/);
        expect(l.router).toEqual(['10.77.5.1']);
        expect(l.serverId).toBe('10.77.0.1');
        const d = await lab.dhclient(remote, 'c0');
        expect(d.ip).toBe(l.ip);
      } finally {
        relay.kill('SIGKILL');
      }
    }, 30000);

    it('SO_BINDTODEVICE failing (no such device) stops the start with an error naming the device', async () => {
      const cfg = lab.file(
        'nodev.json',
        JSON.stringify({
          listen: [
            { interface: 'r0', address: '10.77.0.1' },
            { interface: 'nosuch9', address: '10.77.9.1' },
          ],
          subnets: [{ subnet: '10.77.9.0/24', pool: { start: '10.77.9.100', end: '10.77.9.110' } }],
          leaseFile: join(lab.dir, 'nodev.leases'),
        }),
      );
      const r = await lab.exec(lab.router, process.execPath, ['--import', 'tsx', MAIN, '--config', cfg], {
        timeoutMs: 15000,
      });
      expect(r.code).not.toBe(0);
      expect(r.stdout + r.stderr).toMatch(
        /dhcpd: cannot bind to device nosuch9: SO_BINDTODEVICE: No such device/,
      );
    }, 20000);

    it('control: the same config without interface names (one socket for all interfaces) does receive and offer to the WAN', async () => {
      await stopServer();
      await startServer([{ address: '10.77.0.1' }, { address: '10.77.2.1' }], 'wildcard');
      const before = await stats();
      await expect(lab.udhcpc(lab.inet, 'i0', { timeoutS: 3 })).rejects.toThrow(/no lease/);
      await barrier();
      const after = await stats();
      // 3 WAN DISCOVERs (+ the barrier) were read, and offered LAN addresses (sent out of the LAN)
      expect(after.received - before.received).toBeGreaterThanOrEqual(4);
      expect(after.offers - before.offers).toBeGreaterThanOrEqual(3);
    }, 30000);
  },
);

describe('DHCP core: the subnet of a packet by the device it arrived on (no sockets)', () => {
  let t: ReturnType<typeof tmp>;
  let r: Rig;
  const MAC = '02:00:00:00:00:01';
  const inb = (packet: DhcpPacket, iface?: string): Inbound => ({
    packet,
    from: { address: '0.0.0.0', port: 68 },
    ...(iface === undefined ? {} : { interface: iface }),
  });
  beforeEach(async () => {
    t = tmp();
    r = await rig(join(t.dir, 'leases.jsonl'), {
      listen: [
        { interface: 'r0', address: '10.77.0.1' },
        { interface: 'r8', address: '10.88.0.1' },
      ],
    });
  });
  afterEach(async () => {
    await r.close();
    t.cleanup();
  });

  it('each served device gets its own subnet, server id and sending address', async () => {
    const a = await r.core.handle(inb(clientPacket(MessageType.DISCOVER, MAC), 'r8'));
    expect(a!.packet.yiaddr).toBe('10.88.0.10');
    expect(a!.via).toBe('10.88.0.1');
    expect(getOption(a!.packet, 54)).toEqual(Buffer.from([10, 88, 0, 1]));
    const b = await r.core.handle(inb(clientPacket(MessageType.DISCOVER, '02:00:00:00:00:02'), 'r0'));
    expect(b!.packet.yiaddr).toBe('10.77.0.100');
    expect(b!.via).toBe('10.77.0.1');
  });

  it('the device wins over the lease the client holds elsewhere; a ciaddr of another device is NAKed', async () => {
    const offer = await r.core.handle(inb(clientPacket(MessageType.DISCOVER, MAC), 'r0'));
    const ip = offer!.packet.yiaddr;
    const ack = await r.core.handle(
      inb(clientPacket(MessageType.REQUEST, MAC, { requested: ip, serverId: '10.77.0.1' }), 'r0'),
    );
    expect(typeOf(ack!.packet)).toBe(MessageType.ACK);
    // the client moved to r8's network: it is offered an address there, not its r0 lease
    const moved = await r.core.handle(inb(clientPacket(MessageType.DISCOVER, MAC, { requested: ip }), 'r8'));
    expect(moved!.packet.yiaddr).toMatch(/^10\.88\.0\./);
    const renew = await r.core.handle(inb(clientPacket(MessageType.REQUEST, MAC, { ciaddr: ip }), 'r8'));
    expect(typeOf(renew!.packet)).toBe(MessageType.NAK);
  });

  it('a device no listen entry names is not served; giaddr (a relay) still decides over the device', async () => {
    const before = r.core.counters.dropped;
    expect(await r.core.handle(inb(clientPacket(MessageType.DISCOVER, MAC), 'wan0'))).toBeUndefined();
    expect(r.core.counters.dropped).toBe(before + 1);
    const relayed = await r.core.handle(
      inb(clientPacket(MessageType.DISCOVER, MAC, { giaddr: '10.77.0.5' }), 'r8'),
    );
    expect(relayed!.packet.yiaddr).toMatch(/^10\.77\.0\./);
    expect(relayed!.to).toEqual({ address: '10.77.0.5', port: 67 });
  });

  it('the config names the interface of every listen entry or of none', () => {
    const raw = rawConfig(join(t.dir, 'l'), {
      listen: [{ interface: 'r0', address: '10.77.0.1' }, { address: '10.88.0.1' }],
    });
    expect(() => parseConfig(raw, checkConfigOption)).toThrow(
      /config\.listen\[1\]\.interface: missing: name the interface of every listen entry, or of none/,
    );
  });
});

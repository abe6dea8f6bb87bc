import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../../src/core/bus.js';
import { isMetanetError } from '../../../src/core/errors.js';
import { STOP } from '../../../src/core/listener.js';
import { silentLogger } from '../../../src/core/log.js';
import { installShaperService, type ShaperService, shapePortal } from '../../../src/services/shaper/index.js';
import { until } from '../../support/wait.js';
import { FairnessLab } from './fairness-lab.js';

/**
 * The shaper with real tc in network namespaces, measured with iperf3 (Debian `iperf3`, installed
 * by scripts/setup.sh): a 20 Mbit/s line, the shaper's uplink at 90% of it, guest 0 with 8 parallel
 * streams against guest 1 with one, each way; then a 5 Mbit/s cap on guest 0. Root only, like every
 * lab test; never skipped.
 */
const LINE = 20_000_000;
const UPLINK = 18_000_000;
const CAP = 5_000_000;
const SECONDS = 5;
const PORTS = [5201, 5202];

interface TcQdisc {
  kind: string;
  handle: string;
  parent?: string;
  root?: boolean;
}
interface TcFilter {
  options?: { fh?: string; flowid?: string };
}

describe('shaper (root: namespaces, tc, iperf3)', () => {
  let lab: FairnessLab;
  let bus: Bus;
  let shaper: ShaperService | undefined;
  const tc = (): string[] => ['ip', 'netns', 'exec', lab.router, 'tc'];
  const json = async <T>(args: string[]): Promise<T[]> => {
    const r = await lab.exec(lab.router, 'tc', ['-j', ...args]);
    if (r.code !== 0) throw new Error(`tc -j ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T[];
  };
  /** tc 6.1 prints htb classes as text even with -j: the class ids, from the text. */
  const classes = async (dev: string): Promise<string[]> => {
    const r = await lab.exec(lab.router, 'tc', ['class', 'show', 'dev', dev]);
    return [...r.stdout.matchAll(/^class htb (\S+)/gm)].map((m) => m[1]!).sort();
  };
  const add = async (ip: string, caps: Record<string, number> = {}): Promise<string> => {
    const r = await bus.request(`${shaper!.name}/add`, { ip, ...caps });
    if (r.has('error')) throw new Error(r.str('error'));
    return r.str('class');
  };
  /** Both guests at once: guest 0 with 8 streams, guest 1 with one. */
  const race = async (reverse: boolean): Promise<[number, number]> => {
    const [a, b] = await Promise.all([
      lab.iperf(0, PORTS[0]!, { streams: 8, seconds: SECONDS, reverse }),
      lab.iperf(1, PORTS[1]!, { streams: 1, seconds: SECONDS, reverse }),
    ]);
    return [a.bps, b.bps];
  };
  const mbit = (x: number): string => `${(x / 1e6).toFixed(2)} Mbit/s`;

  beforeAll(async () => {
    lab = await FairnessLab.create({ lineRate: LINE });
    await lab.iperfServers(PORTS);
    bus = new Bus({ name: 'shaper-lab', logger: silentLogger });
  }, 30_000);

  afterAll(async () => {
    await shaper?.close();
    await bus?.close(100);
    await lab?.close();
  });

  it('builds its trees from scratch over whatever was there, and refuses a missing device by name', async () => {
    // Leftovers of an earlier run or another tool: a root qdisc, an ingress, an ifb with a qdisc.
    const junk = [
      'qdisc add dev br-guest root handle 5: pfifo limit 7',
      'qdisc add dev br-guest handle ffff: ingress',
      'link add ifb-guest type ifb',
    ];
    expect(
      (await lab.exec(lab.router, 'tc', ['-batch', '-'], { input: `${junk.slice(0, 2).join('\n')}\n` })).code,
    ).toBe(0);
    expect((await lab.exec(lab.router, 'ip', junk[2]!.split(' '))).code).toBe(0);
    expect(
      (await lab.exec(lab.router, 'tc', ['qdisc', 'add', 'dev', 'ifb-guest', 'root', 'pfifo'])).code,
    ).toBe(0);

    const err = await installShaperService(bus, {
      devices: 'br-nothere',
      uplinkDown: UPLINK,
      uplinkUp: UPLINK,
      tc: tc(),
    }).catch((e: unknown) => e);
    expect(isMetanetError(err, 'ECONFIG')).toBe(true);
    expect((err as Error).message).toContain('br-nothere');

    shaper = await installShaperService(bus, {
      devices: lab.device,
      uplinkDown: UPLINK,
      uplinkUp: UPLINK,
      ifb: 'ifb-guest',
      tc: tc(),
    });
    const dev = await json<TcQdisc>(['qdisc', 'show', 'dev', lab.device]);
    expect(dev.find((q) => q.root)).toMatchObject({ kind: 'htb', handle: '1:' });
    expect(dev.some((q) => q.kind === 'ingress')).toBe(true);
    expect(dev.some((q) => q.handle === '5:')).toBe(false);
    const ifb = await json<TcQdisc>(['qdisc', 'show', 'dev', 'ifb-guest']);
    expect(ifb.find((q) => q.root)).toMatchObject({ kind: 'htb', handle: '1:' });
    expect(await classes(lab.device)).toEqual(['1:1', '1:2']);
    expect(await classes('ifb-guest')).toEqual(['1:1', '1:2']);
    // The ingress redirect to the ifb.
    const redirect = await lab.exec(lab.router, 'tc', ['filter', 'show', 'dev', lab.device, 'ingress']);
    expect(redirect.stdout).toMatch(/mirred \(Egress Redirect to device ifb-guest\)/);
  });

  it('download: guest 1 with one stream gets >= 40% against guest 0 with 8', {
    timeout: 60_000,
  }, async () => {
    expect(await add(lab.guestIp(0))).toBe('1:10');
    expect(await add(lab.guestIp(1))).toBe('1:11');
    const [a, b] = await race(true);
    const share = b / (a + b);
    console.log(`download: shaped A ${mbit(a)} B ${mbit(b)} (B ${(100 * share).toFixed(0)}%)`);
    expect(share).toBeGreaterThanOrEqual(0.4);
    // Fair, and not by wasting the line: together they still fill most of it.
    expect(a + b).toBeGreaterThan(0.7 * LINE);
  });

  it('upload: guest 1 with one stream gets >= 40% against guest 0 with 8', { timeout: 60_000 }, async () => {
    const [a, b] = await race(false);
    const share = b / (a + b);
    console.log(`upload: shaped A ${mbit(a)} B ${mbit(b)} (B ${(100 * share).toFixed(0)}%)`);
    expect(share).toBeGreaterThanOrEqual(0.4);
    expect(a + b).toBeGreaterThan(0.7 * LINE);
  });

  it('a 5 Mbit/s cap holds within ±10% each way, the other guest taking the rest', {
    timeout: 60_000,
  }, async () => {
    const r = await bus.request(`${shaper!.name}/set`, {
      ip: lab.guestIp(0),
      'rate-up': CAP,
      'rate-down': CAP,
    });
    expect(r.has('error'), r.toString()).toBe(false);
    expect(r.int('ceil-down')).toBe(CAP);
    for (const reverse of [true, false]) {
      const [a, b] = await race(reverse);
      console.log(
        `${reverse ? 'download' : 'upload'}: A capped at ${mbit(CAP)} got ${mbit(a)}, B ${mbit(b)}`,
      );
      expect(Math.abs(a / CAP - 1)).toBeLessThanOrEqual(0.1);
      expect(b).toBeGreaterThan(a);
    }
  });

  it('removing a guest removes its class, leaf queue and filter from both trees', async () => {
    const list = await bus.request(`${shaper!.name}/list`, {});
    const ids = list.all('guest').map((t) => (t.value as typeof list).str('class'));
    expect(ids).toEqual(['1:10', '1:11']);
    const r = await bus.request(`${shaper!.name}/remove`, { ip: lab.guestIp(0) });
    expect(r.bool('removed')).toBe(true);
    for (const dev of [lab.device, 'ifb-guest']) {
      expect(await classes(dev)).toEqual(['1:1', '1:11', '1:2']);
      const leaves = await json<TcQdisc>(['qdisc', 'show', 'dev', dev]);
      const leafParents = leaves.filter((q) => q.kind === 'pfifo').map((q) => q.parent);
      expect(leafParents.sort()).toEqual(['1:11', '1:2']);
      const filters = await json<TcFilter>(['filter', 'show', 'dev', dev]);
      expect(filters.map((f) => f.options?.flowid).filter(Boolean)).toEqual(['1:11']);
    }
    // The remaining guest's share grew back: one guest, the whole uplink less the default class.
    expect(shaper!.guests()).toMatchObject([{ ip: lab.guestIp(1), shareDown: UPLINK - UPLINK / 20 }]);
    const again = await bus.request(`${shaper!.name}/remove`, { ip: lab.guestIp(0) });
    expect(again.bool('removed')).toBe(false);
  });

  it('repairs lost shaping from scratch; a device that is gone fails the change, naming it', async () => {
    const errors: string[] = [];
    const h = bus.append(`${shaper!.name}/error`, (m) => void errors.push(m.str('error')));
    try {
      // Someone deletes the ifb behind the shaper's back: the next change finds it gone and rebuilds.
      expect((await lab.exec(lab.router, 'ip', ['link', 'del', 'ifb-guest'])).code).toBe(0);
      expect(await add(lab.guestIp(0))).toBe('1:10');
      expect(await classes('ifb-guest')).toEqual(['1:1', '1:10', '1:11', '1:2']);
      expect(errors.some((e) => /tc failed on ifb-guest: .*rebuilt from scratch/.test(e))).toBe(true);

      // The guest bridge is gone (a network restart): the change fails, naming it.
      expect((await lab.exec(lab.router, 'ip', ['link', 'del', lab.device])).code).toBe(0);
      const r = await bus.request(`${shaper!.name}/remove`, { ip: lab.guestIp(0) });
      expect(r.has('error')).toBe(true);
      expect(r.str('error')).toMatch(/tc failed on br-guest: .*no interface br-guest/);

      // It is back: the next change builds everything again.
      const bridge = [
        `link add ${lab.device} address 02:00:00:00:78:01 type bridge forward_delay 0 stp_state 0`,
        `link set p0 master ${lab.device}`,
        `link set p1 master ${lab.device}`,
        `link set ${lab.device} up`,
        `addr add ${lab.routerGuestIp}/24 dev ${lab.device}`,
      ];
      expect(
        (await lab.exec(lab.router, 'ip', ['-batch', '-'], { input: `${bridge.join('\n')}\n` })).code,
      ).toBe(0);
      const again = await bus.request(`${shaper!.name}/remove`, { ip: lab.guestIp(0) });
      expect(again.toString()).toContain('removed=true');
      expect(await classes(lab.device)).toEqual(['1:1', '1:11', '1:2']);
      expect(await classes('ifb-guest')).toEqual(['1:1', '1:11', '1:2']);
    } finally {
      h.remove();
    }
  });

  it('close removes every qdisc it put there and the ifb', async () => {
    await shaper!.close();
    shaper = undefined;
    const dev = await json<TcQdisc>(['qdisc', 'show', 'dev', lab.device]);
    expect(dev.every((q) => q.kind !== 'htb' && q.kind !== 'ingress')).toBe(true);
    const link = await lab.exec(lab.router, 'ip', ['link', 'show', 'ifb-guest']);
    expect(link.code).not.toBe(0);
  });

  it('shapePortal follows a portal: its sessions at start, then logins and logouts', async () => {
    // A stand-in portal: one session restored at its start, announced by no /login.
    const clients = bus.append('/portal/clients', async (_m, ctx) => {
      await ctx.reply({ count: 1, client: [{ ip: lab.guestIp(1), mac: '02:00:00:00:00:02' }] });
      return STOP;
    });
    const close = await shapePortal(bus, '/portal', {
      devices: lab.device,
      uplinkDown: UPLINK,
      uplinkUp: UPLINK,
      ifb: 'ifb-guest',
      tc: tc(),
    });
    try {
      expect(await classes(lab.device)).toEqual(['1:1', '1:10', '1:2']);
      bus.post('/portal/login', {
        ip: lab.guestIp(0),
        mac: '02:00:00:00:00:01',
        expires: 1,
        'rate-down': CAP,
      });
      await until(async () => (await classes(lab.device)).includes('1:11'), 'the login shaped');
      const shown = await lab.exec(lab.router, 'tc', ['class', 'show', 'dev', lab.device, 'classid', '1:11']);
      expect(shown.stdout).toMatch(/ceil 5Mbit/);
      bus.post('/portal/logged-out', {
        ip: lab.guestIp(1),
        mac: '02:00:00:00:00:02',
        reason: 'idle',
        since: 1,
      });
      await until(async () => !(await classes('ifb-guest')).includes('1:10'), 'the logout unshaped');
      expect(await classes(lab.device)).toEqual(['1:1', '1:11', '1:2']);
    } finally {
      clients.remove();
      await close();
    }
    expect((await lab.exec(lab.router, 'ip', ['link', 'show', 'ifb-guest'])).code).not.toBe(0);
  });
});

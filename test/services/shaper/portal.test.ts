import { afterEach, describe, expect, it } from 'vitest';
import { Bus } from '../../../src/core/bus.js';
import { STOP } from '../../../src/core/listener.js';
import { silentLogger } from '../../../src/core/log.js';
import { followPortal } from '../../../src/services/shaper/index.js';
import { until } from '../../support/wait.js';

/** followPortal against a stand-in shaper (records what it is asked) and a stand-in portal. */
describe('followPortal', () => {
  let bus: Bus;
  afterEach(async () => {
    await bus?.close(100);
  });

  const setup = (opts: { failAdd?: string } = {}) => {
    bus = new Bus({ name: 'follow', logger: silentLogger });
    const asked: string[] = [];
    const shaped = new Set<string>();
    const errors: string[] = [];
    bus.append('/shaper/add', async (m, ctx) => {
      const ip = m.str('ip');
      // Slow adds: a logout right after a login must still come after it.
      await new Promise((r) => setTimeout(r, 20));
      asked.push(`add ${ip} up=${m.int('rate-up', 0)} down=${m.int('rate-down', 0)}`);
      if (ip === opts.failAdd)
        await ctx.reply({ error: 'shaper: tc failed on br-guest: nope', code: 'EFAIL' });
      else {
        shaped.add(ip);
        await ctx.reply({ ip, class: '1:10' });
      }
      return STOP;
    });
    bus.append('/shaper/remove', async (m, ctx) => {
      asked.push(`remove ${m.str('ip')}`);
      await ctx.reply({ ip: m.str('ip'), removed: shaped.delete(m.str('ip')) });
      return STOP;
    });
    bus.append('/shaper/list', async (_m, ctx) => {
      await ctx.reply({ count: shaped.size, guest: [...shaped].map((ip) => ({ ip })) });
      return STOP;
    });
    bus.append('/shaper/error', (m) => void errors.push(`${m.str('mailbox')}: ${m.str('error')}`));
    return { asked, shaped, errors };
  };

  it('adds on login with the rates it carries, removes on logout, in order', async () => {
    const { asked } = setup();
    const f = followPortal(bus, '/shaper', '/portal');
    const since = 1_700_000_000;
    bus.post('/portal/login', { ip: '10.0.0.10', mac: '02:00:00:00:00:01', expires: since + 3600 });
    bus.post('/portal/login', {
      ip: '10.0.0.11',
      mac: '02:00:00:00:00:02',
      expires: since + 3600,
      'rate-up': 1_000_000,
      'rate-down': 5_000_000,
    });
    bus.post('/portal/logged-out', { ip: '10.0.0.10', mac: '02:00:00:00:00:01', reason: 'guest', since });
    bus.post('/portal/login', { ip: '10.0.0.12', mac: '02:00:00:00:00:03', expires: since, 'rate-down': 0 });
    await until(() => asked.length === 4, 'four requests');
    expect(asked).toEqual([
      'add 10.0.0.10 up=0 down=0',
      'add 10.0.0.11 up=1000000 down=5000000',
      'remove 10.0.0.10',
      'add 10.0.0.12 up=0 down=0',
    ]);
    f.close();
    bus.post('/portal/login', { ip: '10.0.0.13', mac: '02:00:00:00:00:04', expires: since });
    await new Promise((r) => setTimeout(r, 50));
    expect(asked).toHaveLength(4);
  });

  it('gives guests whose login carries no rate the default caps; 0 is no cap', async () => {
    const { asked } = setup();
    followPortal(bus, '/shaper', '/portal', { rateUp: 1_000_000, rateDown: 4_000_000 });
    bus.post('/portal/login', { ip: '10.0.0.20', mac: '02:00:00:00:00:20', expires: 1 });
    bus.post('/portal/login', { ip: '10.0.0.21', mac: '02:00:00:00:00:21', expires: 1, 'rate-down': 0 });
    bus.post('/portal/login', {
      ip: '10.0.0.22',
      mac: '02:00:00:00:00:22',
      expires: 1,
      'rate-up': 2_000_000,
    });
    await until(() => asked.length === 3, 'three adds');
    expect(asked).toEqual([
      'add 10.0.0.20 up=1000000 down=4000000',
      'add 10.0.0.21 up=1000000 down=0',
      'add 10.0.0.22 up=2000000 down=4000000',
    ]);
  });

  it('reports a refused add on the shaper error mailbox, naming the portal mailbox', async () => {
    const { errors } = setup({ failAdd: '10.0.0.66' });
    followPortal(bus, '/shaper', '/portal');
    bus.post('/portal/login', { ip: '10.0.0.66', mac: '02:00:00:00:00:66', expires: 1 });
    await until(() => errors.length === 1, 'an error');
    expect(errors[0]).toMatch(/^\/portal\/login: .*tc failed on br-guest/);
  });

  it("sync makes the shaper's guests the portal's sessions", async () => {
    const { asked, shaped } = setup();
    shaped.add('10.0.0.99'); // shaped, but no longer a session
    bus.append('/portal/clients', async (_m, ctx) => {
      await ctx.reply({
        count: 2,
        client: [
          { ip: '10.0.0.10', mac: '02:00:00:00:00:01' },
          { ip: '10.0.0.11', mac: '02:00:00:00:00:02', 'rate-down': 2_000_000 },
        ],
      });
      return STOP;
    });
    const f = followPortal(bus, '/shaper', '/portal');
    expect(await f.sync()).toBe(2);
    expect(asked).toEqual([
      'remove 10.0.0.99',
      'add 10.0.0.10 up=0 down=0',
      'add 10.0.0.11 up=0 down=2000000',
    ]);
    expect([...shaped].sort()).toEqual(['10.0.0.10', '10.0.0.11']);
  });
});

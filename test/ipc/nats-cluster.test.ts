import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../support/daemons.js';
import { have } from '../support/env.js';
import { Lab } from '../support/lab.js';
import { waitForLine } from '../support/wait.js';

const DAEMON = join(ROOT, 'test/ipc/fixtures/nats-daemon.ts');
const CALL = join(ROOT, 'test/ipc/fixtures/nats-call.ts');
const ok = have(['ip', 'nats-server'], { root: true });

/**
 * Two machines, two NATS servers clustered over a routed network:
 *   client0 (10.77.0.10: nats A, daemon p1/fxa)  ── router ──  inet (10.77.1.2: nats B, daemon p2/fxd)
 */
describe.skipIf(!ok)('NATS: a two-server cluster across two network namespaces', () => {
  let lab: Lab;
  let a: string;
  let b: string;

  beforeAll(async () => {
    lab = await Lab.create({ clients: 1, addr: true });
    const ipA = lab.clientIp(0);
    const ipB = lab.inetIp;
    a = `nats://${ipA}:4222`;
    b = `nats://${ipB}:4222`;
    const server = (ns: string, ip: string, peer: string) =>
      lab.spawn(ns, 'nats-server', [
        ...['-a', ip, '-p', '4222', '--cluster_name', 'mn', '--cluster', `nats://${ip}:6222`],
        ...['--routes', `nats://${peer}:6222`],
      ]);
    const sa = server(lab.client, ipA, ipB);
    const sb = server(lab.inet, ipB, ipA);
    await Promise.all([
      waitForLine(sa, /Route connection created/, 10000),
      waitForLine(sb, /Route connection created/, 10000),
    ]);
    const fxd = lab.nodeScript(lab.inet, DAEMON, [b, 'p2', 'fxd']);
    await waitForLine(fxd, /^ready p2\/fxd$/, 15000);
    const fxa = lab.nodeScript(lab.client, DAEMON, [a, 'p1', 'fxa', 'p2/fxd:/chain']);
    await waitForLine(fxa, /^attached$/, 15000);
  });
  afterAll(async () => {
    await lab?.close();
  });

  async function call(ns: string, url: string, address: string, patienceMs = 5000): Promise<string> {
    const c = lab.nodeScript(ns, CALL, [url, 'caller', address, String(patienceMs)]);
    return (await waitForLine(c, /^(reply|error) /, 15000)).trim();
  }

  it('a request crosses the cluster route to the daemon on the other machine', async () => {
    expect(await call(lab.client, a, 'p2/fxd:/echo')).toBe('reply fxd');
  });

  it("a listener on one machine stops the other machine's chain, its reply crossing back", async () => {
    expect(await call(lab.inet, b, 'p2/fxd:/chain')).toBe('reply fxa');
    expect(await call(lab.client, a, 'p2/fxd:/chain')).toBe('reply fxa');
  });

  it('an unknown daemon on the cluster is ENODAEMON', async () => {
    expect(await call(lab.client, a, 'p9/ghost:/echo', 0)).toMatch(
      /^error ENODAEMON daemon "ghost" on host "p9"/,
    );
  });
});

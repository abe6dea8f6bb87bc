import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADDR, type Client, GatewayLab, type Lease, REPO_ROOT } from '../../../examples/gateway-lab/lab.js';
import { have } from '../../support/env.js';
import { until } from '../../support/wait.js';

/**
 * `metanet up` with examples/gateway.json plus `metrics: {listen: "10.10.0.1:9100"}` (the router's
 * LAN address) in the gateway lab: after a DHCP lease and a DNS query, a LAN host scrapes
 * /metrics, the counters are not zero and `promtool check metrics` passes; a guest gets nothing,
 * before login (the portal's firewall) and after it (the endpoint refuses the guest network).
 */
const ok = have(['ip', 'udhcpc', 'dnsmasq', 'curl', 'nft', 'conntrack', 'promtool'], { root: true });
const METRICS = `http://${ADDR.lan}:9100/metrics`;

/** The value of one sample (`name{labels}` exactly as written), or undefined. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n'))
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  return undefined;
}

describe.skipIf(!ok)('gateway lab: /metrics of metanet up', () => {
  let lab: GatewayLab;
  const dir = mkdtempSync(join(tmpdir(), 'mn-metrics-lab-'));
  const leases = new Map<Client, Lease>();
  const leaseOf = async (c: Client): Promise<Lease> => {
    const known = leases.get(c);
    if (known) return known;
    const l = await lab.udhcpc(lab.ns[c]);
    if (!l) throw new Error(`${c}: no DHCP lease`);
    await lab.applyLease(lab.ns[c], l);
    leases.set(c, l);
    return l;
  };
  const scrape = async (): Promise<string> => {
    const r = await lab.curl(lab.ns.lan1, METRICS);
    expect(r.code, r.body).toBe(200);
    expect(r.type).toMatch(/^text\/plain; version=0\.0\.4/);
    return r.body;
  };

  beforeAll(async () => {
    const example = JSON.parse(readFileSync(join(REPO_ROOT, 'examples/gateway.json'), 'utf8')) as object;
    const config = join(dir, 'gateway-metrics.json');
    writeFileSync(config, JSON.stringify({ ...example, metrics: { listen: `${ADDR.lan}:9100` } }, null, 2));
    lab = await GatewayLab.create({ config, gatewayLog: 'warn' });
    const gw = await lab.startGateway();
    expect(gw.line).toMatch(/^gateway ready: dhcpd dns portal /);
  }, 45_000);

  afterAll(async () => {
    const log = lab
      ?.gatewayLogTail(30)
      .replace(/^gateway ready: .*\n?/m, '')
      .trim();
    if (log) process.stderr.write(`gateway log:\n${log}\n`);
    await lab?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('after a lease and a DNS query: non-zero counters, and promtool check metrics passes', async () => {
    await leaseOf('lan1');
    const guest = await leaseOf('guest1');
    expect(guest.ip).toMatch(/^10\.20\.0\./);
    const r = await lab.resolve(lab.ns.guest1, 'www.example.test', ADDR.guest);
    expect(r.addresses).toEqual([ADDR.inet]);

    const text = await scrape();
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(`${check.stdout}${check.stderr}`).toBe('');
    expect(check.status).toBe(0);

    expect(sample(text, 'metanet_dhcp_packets_received_total{type="discover"}')).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'metanet_dhcp_packets_received_total{type="request"}')).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'metanet_dhcp_replies_total{type="offer"}')).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'metanet_dhcp_replies_total{type="ack"}')).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'metanet_dhcp_leases_active{subnet="10.20.0.0/24"}')).toBe(1);
    expect(sample(text, 'metanet_dhcp_leases_active{subnet="10.10.0.0/24"}')).toBe(1);
    // the default pools: the /24 minus network, broadcast and router
    expect(sample(text, 'metanet_dhcp_pool_addresses{subnet="10.20.0.0/24"}')).toBe(253);
    expect(sample(text, 'metanet_dhcp_pool_free_addresses{subnet="10.20.0.0/24"}')).toBe(252);
    // the portal answers dhcpd's lookups: the hook's answers are counted
    expect(sample(text, 'metanet_dhcp_lookups_total{result="answered"}')).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'metanet_dns_queries_total')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'metanet_dns_upstream_queries_total')).toBeGreaterThanOrEqual(1);
    // the portal follows dhcpd over IPC: frames and a peer on dhcpd's socket
    expect(sample(text, 'metanet_ipc_frames_received_total{daemon="dhcpd"}')).toBeGreaterThan(0);
    expect(sample(text, 'metanet_ipc_frames_sent_total{daemon="dhcpd"}')).toBeGreaterThan(0);
    expect(sample(text, 'metanet_ipc_peers{daemon="dhcpd"}')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'metanet_gateway_app_up{app="portal",process="shared"}')).toBe(1);
    expect(sample(text, 'metanet_portal_guests_online')).toBe(0);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m);
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
    // no per-guest label anywhere
    expect(text).not.toContain(guest.ip);
    expect(text).not.toContain(await lab.mac(lab.ns.guest1));
  });

  it('a guest gets no answer, before login and after it; the LAN still does', async () => {
    await leaseOf('guest1');
    expect((await lab.curl(lab.ns.guest1, METRICS)).code).toBeLessThan(0); // the portal's firewall
    // log in: splash, accept
    const splash = await lab.curl(lab.ns.guest1, `http://${ADDR.guest}:8080/`);
    const csrf = /name="csrf" value="([^"]+)"/.exec(splash.body)?.[1];
    expect(csrf, splash.body).toBeTruthy();
    const accept = await lab.curl(lab.ns.guest1, `http://${ADDR.guest}:8080/accept`, [
      '-d',
      `csrf=${csrf}&url=`,
    ]);
    expect(accept.code).toBe(303);
    await until(
      async () => sample(await scrape(), 'metanet_portal_guests_online') === 1,
      'a guest online',
      5000,
    );
    // logged in, the guest may reach the router: the endpoint itself refuses its network
    expect((await lab.curl(lab.ns.guest1, METRICS)).code).toBeLessThan(0);
    expect((await lab.curl(lab.ns.guest1, `http://${ADDR.guest}:9100/metrics`)).code).toBeLessThan(0);
    const text = await scrape();
    expect(sample(text, 'metanet_gateway_app_up{app="dhcpd",process="shared"}')).toBe(1);
    // the login's firewall change, counted by the firewall the portal owns, and its latency
    expect(sample(text, 'metanet_firewall_change_seconds_count{op="allow"}')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'metanet_firewall_change_seconds_bucket{op="allow",le="+Inf"}')).toBe(
      sample(text, 'metanet_firewall_change_seconds_count{op="allow"}'),
    );
    expect(sample(text, 'metanet_firewall_change_seconds_sum{op="allow"}')).toBeGreaterThan(0);
    expect(sample(text, 'metanet_firewall_change_errors_total{op="allow"}')).toBe(0);
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(`${check.stdout}${check.stderr}`).toBe('');
  });
});

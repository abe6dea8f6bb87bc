import { z } from 'zod';
import type { App, GatewayFacts, MetricFamily } from '../app.js';
import { own, parseConfig, type RadiusConfig } from './config.js';
import { type Radius, startRadius } from './radius.js';

/**
 * RADIUS for the captive portal (docs/apps/radius.md) as an app: a glue process, like dhcp-ldap,
 * whose listener is prepended on `portal:/portal/auth`, plus accounting from the portal's
 * announcements and an RFC 5176 Disconnect/CoA server. `start` waits (with backoff) for the portal.
 */
export const radiusApp: App<RadiusConfig> = {
  name: 'radius',
  summary:
    "RADIUS for the portal: authentication hooked on portal's /portal/auth, accounting, Disconnect/CoA",
  section: z.strictObject(own),
  fromGateway(gw: GatewayFacts, s: Record<string, unknown>): unknown {
    return {
      target: 'portal',
      // NAS-IP-Address: the router's address on the (first) captive network, where guests log in.
      nasIp: gw.captive[0]?.address,
      stateDir: gw.stateDir,
      ...(gw.enabled.has('dhcpd') ? { dhcpd: 'dhcpd' } : {}),
      ...s,
    };
  },
  parse: (raw) => parseConfig(raw),
  async start(bus, config) {
    const r = await startRadius(bus, config);
    return {
      status: () => r.status(),
      close: () => r.close(),
      ...(r.daePort === undefined ? {} : { readyNote: String(r.daePort) }),
      metrics: () => radiusMetrics(r),
    };
  },
};

/** The app's metric families (docs/metrics.md): authentication results, the client, accounting. */
function radiusMetrics(r: Radius): readonly MetricFamily[] {
  const families: MetricFamily[] = [
    {
      name: 'metanet_radius_auth_total',
      help: 'Authentications answered on /portal/auth, by result',
      type: 'counter',
      labels: ['result'],
      collect: () => [
        { labels: { result: 'accepted' }, value: r.auth.accepted },
        { labels: { result: 'rejected' }, value: r.auth.rejected },
        { labels: { result: 'unavailable' }, value: r.auth.unavailable },
      ],
    },
    {
      name: 'metanet_radius_requests_total',
      help: 'RADIUS requests sent (retransmissions included) and their fate',
      type: 'counter',
      labels: ['event'],
      collect: () => Object.entries(r.client.stats).map(([event, value]) => ({ labels: { event }, value })),
    },
  ];
  const a = r.accounting;
  if (a)
    families.push(
      {
        name: 'metanet_radius_accounting_queue',
        help: 'Accounting requests waiting for a server',
        type: 'gauge',
        collect: () => a.queue.length,
      },
      {
        name: 'metanet_radius_accounting_dropped_total',
        help: 'Accounting requests dropped from a full queue',
        type: 'counter',
        collect: () => a.queue.dropped,
      },
    );
  return families;
}

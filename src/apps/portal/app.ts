import { join } from 'node:path';
import { z } from 'zod';
import type { App, GatewayFacts } from '../app.js';
import { type PortalConfig, PortalConfigSchema, parseConfig } from './config.js';
import { portalMetrics } from './metrics.js';
import { startCaptivePortal } from './portal.js';

/** The portal's gateway section: what is its own; networks, addresses and state paths come from the gateway. */
const section = PortalConfigSchema.pick({
  port: true,
  portalHost: true,
  sessionSeconds: true,
  idleTimeout: true,
  idleCheckSeconds: true,
  quotaUp: true,
  quotaDown: true,
  quotaTotal: true,
  garden: true,
  title: true,
  policy: true,
  themeDir: true,
  language: true,
  login: true,
  https: true,
  stockAuth: true,
  authTimeoutMs: true,
  cutDelayMs: true,
  uplinkDown: true,
  uplinkUp: true,
  rateUp: true,
  rateDown: true,
  gardenDomains: true,
  gardenTtlMin: true,
  gardenTtlMax: true,
  trustedMacs: true,
  blockedMacs: true,
  maxConnectionsPerClient: true,
}).extend({ dns: z.array(z.string().min(1)).optional() });

/** The captive portal with the nftables firewall it owns (docs/apps/portal.md), as an app. */
export const portalApp: App<PortalConfig> = {
  name: 'portal',
  summary: 'captive portal on the guest network: splash, login bound to MAC in nftables, RFC 8908 API',
  section,
  fromGateway(gw: GatewayFacts, s: Record<string, unknown>): unknown {
    const captive = gw.captive;
    return {
      ...s,
      address: captive[0]?.address,
      lan: captive.map((n) => n.device),
      // Guests reach the router's own resolver (the firewall lets DNS to the router through); without
      // the forwarder they need the upstream servers before login.
      dns: s.dns ?? (gw.enabled.has('dns') ? [] : [...gw.upstreamDns]),
      stateFile: join(gw.stateDir, 'portal.sessions.json'),
      firewallStateFile: join(gw.stateDir, 'firewall.json'),
      commandPrefix: [...gw.commandPrefix],
      ...(gw.enabled.has('dhcpd') ? { dhcpd: 'dhcpd' } : {}),
      // The garden by name follows the forwarder's answers; without it nothing is added.
      ...(gw.enabled.has('dns') ? { forwarder: 'dns' } : {}),
      macFile: join(gw.stateDir, 'portal.macs.json'),
    };
  },
  parse: (raw) => parseConfig(raw),
  async start(bus, config) {
    const portal = await startCaptivePortal(bus, config);
    return {
      status: () => ({ sessions: portal.sessionCount(), url: portal.url }),
      close: () => portal.close(),
      metrics: () =>
        portalMetrics(portal.counts, {
          guestsOnline: () => portal.sessionCount(),
          macs: (list) => portal.macs.list(list).length,
          firewall: () => portal.firewall.stats(),
        }),
    };
  },
};

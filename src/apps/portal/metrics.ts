import {
  CHANGE_BUCKETS,
  CHANGE_OPS,
  type ChangeCount,
  type ChangeOp,
} from '../../services/firewall/index.js';
import type { MetricFamily } from '../app.js';
import { REASONS } from './lifecycle.js';
import type { Sessions } from './sessions.js';

/** The `reason` label of a logout: the portal's own reasons, `other` for any an operator gave. */
export const LOGOUT_REASONS: readonly string[] = [...REASONS, 'other'];

/**
 * The portal's counters (docs/metrics.md, "portal"): plain increments where things happen — the
 * guestbook counts logins, logouts and the bytes of sessions leaving the record; the web part
 * counts redirects, splash pages, auth refusals and API requests. Read at scrape time only.
 */
export class PortalCounts {
  logins = 0;
  readonly logouts = new Map<string, number>(LOGOUT_REASONS.map((r) => [r, 0]));
  redirects = 0;
  splashPages = 0;
  authRefusals = 0;
  apiRequests = 0;
  /** Bytes of sessions no longer on record (ended, or replaced by a new session of the address). */
  endedUp = 0;
  endedDown = 0;

  constructor(readonly sessions: Sessions) {}

  logout(reason: string): void {
    const r = this.logouts.has(reason) ? reason : 'other';
    this.logouts.set(r, (this.logouts.get(r) ?? 0) + 1);
  }

  /** Bytes each way over every session since start: those ended plus those on record, as last sampled. */
  bytes(): { up: number; down: number } {
    let up = this.endedUp;
    let down = this.endedDown;
    for (const s of this.sessions.all()) {
      up += s.usage.up;
      down += s.usage.down;
    }
    return { up, down };
  }
}

/** What the families read besides the counters. */
export interface PortalGauges {
  guestsOnline(): number;
  macs(list: 'trusted' | 'blocked'): number;
  /** The firewall's change counters (`FirewallService.stats()`); absent: no firewall families. */
  firewall?(): Readonly<Record<ChangeOp, Readonly<ChangeCount>>>;
}

/** The firewall's families (docs/metrics.md, "firewall"): change latency and errors by `op`. */
export function firewallMetrics(
  stats: () => Readonly<Record<ChangeOp, Readonly<ChangeCount>>>,
): MetricFamily[] {
  return [
    {
      name: 'metanet_firewall_change_seconds',
      help: "Changes nft applied to the portal's firewall, by kind, and how long each took: from the request to nft's answer.",
      type: 'histogram',
      labels: ['op'],
      buckets: CHANGE_BUCKETS,
      collect: () => {
        const s = stats();
        return CHANGE_OPS.map((op) => ({ labels: { op }, counts: s[op].buckets, sum: s[op].seconds }));
      },
    },
    {
      name: 'metanet_firewall_change_errors_total',
      help: 'Changes nft refused or did not answer in time, by kind.',
      type: 'counter',
      labels: ['op'],
      collect: () => {
        const s = stats();
        return CHANGE_OPS.map((op) => ({ labels: { op }, value: s[op].errors }));
      },
    },
  ];
}

/** The portal's metric families (docs/metrics.md), its firewall's included: no per-guest label. */
export function portalMetrics(c: PortalCounts, g: PortalGauges): MetricFamily[] {
  const fw = g.firewall?.bind(g);
  const families: MetricFamily[] = [
    {
      name: 'metanet_portal_guests_online',
      help: 'Guests with a live portal session.',
      type: 'gauge',
      collect: () => g.guestsOnline(),
    },
    {
      name: 'metanet_portal_logins_total',
      help: 'Guests logged in (firewall opened, session started).',
      type: 'counter',
      collect: () => c.logins,
    },
    {
      name: 'metanet_portal_logouts_total',
      help: 'Sessions ended, by reason (other: an operator-given reason the portal does not know).',
      type: 'counter',
      labels: ['reason'],
      collect: () => [...c.logouts].map(([reason, value]) => ({ labels: { reason }, value })),
    },
    {
      name: 'metanet_portal_redirects_total',
      help: 'Requests for a foreign host redirected to the portal.',
      type: 'counter',
      collect: () => c.redirects,
    },
    {
      name: 'metanet_portal_splash_pages_total',
      help: 'Splash (login) pages served.',
      type: 'counter',
      collect: () => c.splashPages,
    },
    {
      name: 'metanet_portal_auth_refusals_total',
      help: 'Logins the auth mailbox refused.',
      type: 'counter',
      collect: () => c.authRefusals,
    },
    {
      name: 'metanet_portal_api_requests_total',
      help: 'RFC 8908 API requests answered.',
      type: 'counter',
      collect: () => c.apiRequests,
    },
    {
      name: 'metanet_portal_bytes_total',
      help: 'Guest bytes each way summed over sessions, as of the last lifecycle check (moves once per idleCheckSeconds).',
      type: 'counter',
      labels: ['direction'],
      collect: () => {
        const b = c.bytes();
        return [
          { labels: { direction: 'up' }, value: b.up },
          { labels: { direction: 'down' }, value: b.down },
        ];
      },
    },
    {
      name: 'metanet_portal_trusted_macs',
      help: 'MACs on the trusted list (never captive).',
      type: 'gauge',
      collect: () => g.macs('trusted'),
    },
    {
      name: 'metanet_portal_blocked_macs',
      help: 'MACs on the blocked list (no access, no lease).',
      type: 'gauge',
      collect: () => g.macs('blocked'),
    },
  ];
  return fw ? [...families, ...firewallMetrics(fw)] : families;
}

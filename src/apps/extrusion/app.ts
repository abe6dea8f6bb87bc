import { z } from 'zod';
import type { Bus } from '../../core/bus.js';
import { isMetanetError } from '../../core/errors.js';
import { type ListenerHandle, STOP } from '../../core/listener.js';
import type { Message } from '../../core/message.js';
import { inCidr } from '../../services/dhcp/ip.js';
import { attachTable } from '../../services/table.js';
import type { App, AppHandle, GatewayFacts, MetricFamily } from '../app.js';
import { macFor } from '../portal/arp.js';
import { type Action, type ExtrusionConfig, parseExtrusionConfig, sectionShape } from './config.js';
import {
  type ConnEvent,
  type Detection,
  Detectors,
  ip4,
  parsePrefix,
  RULES,
  type RuleName,
} from './detectors.js';
import { ConntrackEvents } from './events.js';
import { extrusionTable } from './table.js';

/** What an `/action` came to, as `/acted` says it. */
type Outcome = 'done' | 'failed' | 'vetoed' | 'skipped';

const RULE_KEY: Readonly<Record<RuleName, 'portScan' | 'smtpBurst' | 'flood' | 'blocklist'>> = {
  'port-scan': 'portScan',
  'smtp-burst': 'smtpBurst',
  flood: 'flood',
  blocklist: 'blocklist',
};

/**
 * Extrusion detection (docs/apps/extrusion.md): per-guest detectors over the conntrack NEW events
 * of the captive networks (port scans, SMTP bursts, connection floods, blocklisted destinations).
 * Each detection is posted on `/extrusion/detected` with its evidence, then sent to
 * `/extrusion/action`, where the stock listener (appended) takes the configured action through
 * the portal — unless a listener prepended by any process stops it (a veto).
 */
export const extrusionApp: App<ExtrusionConfig> = {
  name: 'extrusion',
  summary:
    'per-guest extrusion detection (port scans, SMTP bursts, floods, blocklisted destinations) from conntrack events; log, rate-limit, block or deauth',
  section: z.strictObject(sectionShape),
  fromGateway(gw: GatewayFacts, s: Record<string, unknown>): unknown {
    return {
      ...s,
      captive: gw.captive.flatMap((n) =>
        n.subnet ? [{ name: n.name, device: n.device, subnet: n.subnet }] : [],
      ),
      exclude: gw.networks.flatMap((n) => (n.address ? [n.address] : [])),
      commandPrefix: [...gw.commandPrefix],
      portal: gw.enabled.has('portal') ? 'portal' : false,
    };
  },
  parse: (raw) => parseExtrusionConfig(raw),
  start: (bus, config) => startExtrusion(bus, config),
};

/** The detector on `bus` (named as the daemon wants); what `extrusionApp.start` does. */
export async function startExtrusion(bus: Bus, config: ExtrusionConfig): Promise<AppHandle> {
  const name = config.name;
  const windowMs = config.window * 1000;
  const on = <T extends { enabled: boolean }>(r: T, v: number): number => (r.enabled ? v : 0);
  const det = new Detectors({
    windowMs,
    rules: {
      portScanPorts: on(config.portScan, config.portScan.ports),
      portScanHosts: on(config.portScan, config.portScan.hosts),
      hostsExcept: config.portScan.hostsExcept,
      smtpCount: on(config.smtpBurst, config.smtpBurst.count),
      smtpPorts: config.smtpBurst.ports,
      floodCount: on(config.flood, config.flood.count),
      blocklistCount: on(config.blocklist, config.blocklist.count),
      blocklist: config.blocklist.enabled ? config.blocklist.prefixes : [],
    },
    limits: config.limits,
    subnets: config.captive.map((n) => n.subnet),
    exclude: config.exclude,
  });
  const nets = config.captive.map((n) => ({ name: n.name, cidr: parsePrefix(n.subnet) }));
  const networkOf = (ip: string): string => nets.find((n) => inCidr(n.cidr, ip4(ip)))?.name ?? '';
  const actionOf = (rule: RuleName): Action => config[RULE_KEY[rule]].action;

  const detections = new Map<RuleName, number>(RULES.map((r) => [r, 0]));
  const actions = new Map<string, number>();
  /** `ip action` → when it was last done: the same action is not repeated within a window. */
  const acted = new Map<string, number>();
  const pending = new Set<Promise<void>>();
  let closed = false;

  const error = (mailbox: string, e: unknown, code?: string): void => {
    if (closed) return;
    const text = e instanceof Error ? e.message : String(e);
    bus.post(`${name}/error`, { mailbox, error: text, code: code ?? (isMetanetError(e) ? e.code : 'EFAIL') });
  };

  const feed = (ev: ConnEvent): number => {
    const found = det.observe(ev, Date.now());
    for (const d of found) {
      const p = handle(d).catch((e: unknown) => error(`${name}/action`, e));
      pending.add(p);
      void p.finally(() => pending.delete(p));
    }
    return found.length;
  };

  /** Announce a detection, then send it to `/action` (the veto point). */
  async function handle(d: Detection): Promise<void> {
    detections.set(d.rule, (detections.get(d.rule) ?? 0) + 1);
    let mac = '';
    try {
      mac = (await macFor(d.ip, config.commandPrefix)) ?? '';
    } catch (e) {
      error(`${name}/detected`, e);
    }
    if (closed) return;
    const action = actionOf(d.rule);
    const evidence = {
      ip: d.ip,
      mac,
      network: networkOf(d.ip),
      rule: d.rule,
      measure: d.measure,
      count: d.count,
      threshold: d.threshold,
      window: d.windowSeconds,
      connections: d.connections,
      ports: d.ports,
      hosts: d.hosts,
      first: Math.round(d.first),
      at: Math.round(d.at),
      dst: [...d.sample],
      action,
    };
    bus.post(`${name}/detected`, evidence);
    const r = await bus.send(`${name}/action`, evidence);
    if (r.stoppedBy && r.stoppedBy.id !== stock.id)
      report(
        evidence,
        'none',
        'vetoed',
        `stopped by ${describeListener(r.stoppedBy.identity, r.stoppedBy.remote)}`,
      );
    else if (!r.stopped && !closed)
      // the stock listener did not run (removed?) and nobody stopped the chain
      report(evidence, 'none', 'failed', 'no listener took the action');
  }

  function report(
    e: { ip: string; mac: string; rule: string; action: string },
    performed: string,
    outcome: Outcome,
    detail: string,
  ): void {
    const key = `${e.action} ${outcome}`;
    actions.set(key, (actions.get(key) ?? 0) + 1);
    if (closed) return;
    bus.post(`${name}/acted`, {
      ip: e.ip,
      mac: e.mac,
      rule: e.rule,
      action: e.action,
      performed,
      outcome,
      detail,
    });
    if (outcome === 'failed') error(`${name}/action`, new Error(`${e.action} of ${e.ip}: ${detail}`));
  }

  const portal = config.portal;
  const request = (mailbox: string, init: Record<string, string | number>): Promise<Message> =>
    bus.request(`${portal}:${mailbox}`, init, { timeout: config.actionTimeoutMs });

  async function deauth(ip: string): Promise<string> {
    const r = await request('/portal/logout', { ip, reason: 'blocked' });
    if (r.has('error')) throw new Error(r.str('error'));
    return r.bool('removed', false) ? 'logged out (reason blocked)' : 'had no session';
  }

  /** The stock action: appended to `/action`; stops the chain once done. */
  async function act(m: Message): Promise<'stop'> {
    const e = {
      ip: m.str('ip'),
      mac: m.str('mac', ''),
      rule: m.str('rule', ''),
      action: m.str('action', 'log'),
    };
    const key = `${e.ip} ${e.action}`;
    const last = acted.get(key);
    if (last !== undefined && Date.now() - last < windowMs) {
      report(e, 'none', 'skipped', `${e.action} was done for ${e.ip} less than a window ago`);
      return STOP;
    }
    acted.set(key, Date.now());
    try {
      switch (e.action) {
        case 'deauth':
          report(e, 'deauth', 'done', await deauth(e.ip));
          break;
        case 'block': {
          if (!e.mac) {
            report(e, 'deauth', 'done', `no MAC known for ${e.ip}: ${await deauth(e.ip)} instead of a block`);
            break;
          }
          try {
            const r = await request('/portal/block', { mac: e.mac });
            if (r.has('error')) throw new Error(r.str('error'));
            report(e, 'block', 'done', `${e.mac} blocked by the portal`);
          } catch (x) {
            if (!isMetanetError(x, 'ENOLISTENER')) throw x;
            error(`${portal}:/portal/block`, x, 'ENOVERB');
            report(
              e,
              'deauth',
              'done',
              `the portal has no /portal/block: ${await deauth(e.ip)} instead of a block`,
            );
          }
          break;
        }
        case 'rate-limit': {
          const r = await request(`${config.shaper}/set`, {
            ip: e.ip,
            'rate-up': config.rateLimit.up,
            'rate-down': config.rateLimit.down,
          });
          if (r.has('error')) throw new Error(r.str('error'));
          report(
            e,
            'rate-limit',
            'done',
            `capped at ${config.rateLimit.up} bit/s up, ${config.rateLimit.down} bit/s down`,
          );
          break;
        }
        default:
          bus.log.log('warn', 'extrusion detected', {
            ip: e.ip,
            mac: e.mac,
            rule: e.rule,
            count: m.int('count', 0),
            window: m.int('window', 0),
          });
          report(e, 'log', 'done', 'logged');
      }
    } catch (x) {
      acted.delete(key);
      report(e, 'none', 'failed', x instanceof Error ? x.message : String(x));
    }
    return STOP;
  }

  // The stock action, appended: prepended listeners of other processes see /action first.
  const stock: ListenerHandle = bus.listen(`${name}/action`, (m) => act(m), {
    identity: { app: 'extrusion', action: 'stock' },
  });
  const detach = attachTable(bus, name, extrusionTable, {
    '/event': async (m, ctx) => {
      const dport = m.get('dport');
      const n = feed({
        src: m.str('src'),
        dst: m.str('dst'),
        protonum: m.int('proto'),
        dport: dport?.type === 'int' ? Number(dport.value) : undefined,
      });
      if (ctx.replyTo) await ctx.reply({ detections: n });
      return STOP;
    },
    '/guests': async (m, ctx) => {
      const ip = m.has('ip') ? m.str('ip') : undefined;
      const guest = det.figures(Date.now(), ip).map((g) => ({
        ip: g.ip,
        connections: g.connections,
        ports: g.ports,
        hosts: g.hosts,
        smtp: g.smtp,
        blocked: g.blocked,
        'last-seen': Math.round(g.lastSeen),
      }));
      if (ctx.replyTo) await ctx.reply({ count: guest.length, guest });
      return STOP;
    },
    '/stats': async (_m, ctx) => {
      if (ctx.replyTo) await ctx.reply(stats());
      return STOP;
    },
  });

  let reader: ConntrackEvents | undefined;
  if (config.events === 'conntrack') {
    reader = new ConntrackEvents({
      subnets: config.captive.map((n) => n.subnet),
      commandPrefix: config.commandPrefix,
      bufferBytes: config.bufferBytes,
      onEvent: (ev) => void feed(ev),
      onTrouble: (what, lost) => error(`${name}/event`, new Error(what), lost ? 'ELOST' : 'EFAIL'),
    });
    try {
      await reader.start();
    } catch (e) {
      detach();
      stock.remove();
      throw e;
    }
  }
  const sweep = bus.every(Math.min(10_000, Math.max(1000, windowMs / 4)), () => {
    const now = Date.now();
    det.sweep(now);
    for (const [k, t] of acted) if (now - t >= windowMs) acted.delete(k);
  });

  function stats(): Record<string, number> {
    const size = det.size();
    const c = det.counters;
    const r = reader?.counters;
    return {
      events: c.events,
      ignored: c.ignored,
      evicted: c.evicted,
      'guests-dropped': c.guestsDropped,
      detections: c.detections,
      guests: size.guests,
      held: size.events,
      lines: r?.lines ?? 0,
      unparsed: r?.unparsed ?? 0,
      overflows: r?.overflows ?? 0,
      restarts: r?.restarts ?? 0,
      'reader-cpu-ms': Math.round(reader?.cpuMs() ?? 0),
      readers: reader?.pids().length ?? 0,
    };
  }

  return {
    status: () => {
      const s = det.size();
      return { guests: s.guests, events: det.counters.events, detections: det.counters.detections };
    },
    async close() {
      closed = true;
      sweep.cancel();
      await reader?.close();
      await Promise.race([
        Promise.allSettled([...pending]),
        new Promise((r) => setTimeout(r, config.actionTimeoutMs).unref()),
      ]);
      detach();
      stock.remove();
    },
    metrics: () => extrusionMetrics(det, () => reader, detections, actions),
  };
}

function describeListener(identity: Message, remote: string | undefined): string {
  const id = [...identity].map((t) => `${t.tag}=${String(t.value)}`).join(' ');
  return `${id || 'a listener'}${remote ? ` (${remote})` : ''}`;
}

/** The detector's metric families (no per-guest labels: per-guest figures are on `/guests`). */
function extrusionMetrics(
  det: Detectors,
  reader: () => ConntrackEvents | undefined,
  detections: ReadonlyMap<RuleName, number>,
  actions: ReadonlyMap<string, number>,
): MetricFamily[] {
  return [
    {
      name: 'metanet_extrusion_events_total',
      help: 'New connections of watched guests counted by the detectors.',
      type: 'counter',
      collect: () => det.counters.events - det.counters.ignored,
    },
    {
      name: 'metanet_extrusion_overflows_total',
      help: 'Times the kernel dropped conntrack events (the reader socket buffer was full).',
      type: 'counter',
      collect: () => reader()?.counters.overflows ?? 0,
    },
    {
      name: 'metanet_extrusion_evicted_total',
      help: 'Events that left a window early because of a memory cap.',
      type: 'counter',
      collect: () => det.counters.evicted,
    },
    {
      name: 'metanet_extrusion_guests',
      help: 'Guests with events in their window.',
      type: 'gauge',
      collect: () => det.size().guests,
    },
    {
      name: 'metanet_extrusion_events_held',
      help: 'Events held in the windows now.',
      type: 'gauge',
      collect: () => det.size().events,
    },
    {
      name: 'metanet_extrusion_reader_cpu_seconds_total',
      help: 'CPU time of the conntrack event readers.',
      type: 'counter',
      collect: () => (reader()?.cpuMs() ?? 0) / 1000,
    },
    {
      name: 'metanet_extrusion_detections_total',
      help: 'Detections, by rule.',
      type: 'counter',
      labels: ['rule'],
      collect: () => [...detections].map(([rule, value]) => ({ labels: { rule }, value })),
    },
    {
      name: 'metanet_extrusion_actions_total',
      help: 'Actions, by configured action and outcome (done, failed, vetoed, skipped).',
      type: 'counter',
      labels: ['action', 'outcome'],
      collect: () =>
        [...actions].map(([k, value]) => {
          const [action = '', outcome = ''] = k.split(' ');
          return { labels: { action, outcome }, value };
        }),
    },
  ];
}

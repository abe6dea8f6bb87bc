import { join } from 'node:path';
import { z } from 'zod';
import type { Bus } from '../../core/bus.js';
import { CONTINUE } from '../../core/listener.js';
import type { Message } from '../../core/message.js';
import { isIPv4 } from '../../services/dhcp/ip.js';
import { type App, type AppHandle, ConfigError, type GatewayFacts, parseWith } from '../app.js';
import { follow } from '../follow.js';
import { History } from './history.js';
import { type Detection, type GuestRow, serveDashboard } from './server.js';

const listen = z
  .string()
  .regex(/^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/, 'not address:port (like 127.0.0.1:8081)')
  .refine((s) => isIPv4(s.split(':')[0]!), 'not an IPv4 address')
  .refine((s) => Number(s.split(':')[1]) >= 1 && Number(s.split(':')[1]) <= 65535, 'port not 1..65535');

/** The gateway section: only what is the dashboard's own. */
const sectionShape = {
  listen: listen.default('127.0.0.1:8081'),
  /** The operator password (HTTP Basic); required unless `listen` is loopback. */
  password: z.string().min(8, 'at least 8 characters').optional(),
  /** Also serve on the router's address on a guest (captive) network. */
  allowGuest: z.boolean().default(false),
  /** Guests whose own history is kept (the least recently seen is dropped beyond). */
  maxGuests: z.number().int().min(1).max(4096).default(64),
};

const Config = z
  .strictObject({
    ...sectionShape,
    /** The history file (in the gateway `<stateDir>/dashboard.history`); none: memory only. */
    historyFile: z.string().min(1).optional(),
    portal: z.string().min(1).default('portal'),
    /** The extrusion daemon whose detections are listed; false: none. */
    extrusion: z.union([z.string().min(1), z.literal(false)]).default(false),
    /** Subnets whose hosts are refused a connection (the guest networks unless allowGuest). */
    deny: z.array(z.string()).default([]),
    sampleSeconds: z.number().int().min(1).max(3600).default(10),
    saveSeconds: z.number().int().min(1).max(3600).default(60),
  })
  .refine((c) => c.listen.startsWith('127.') || c.password !== undefined, {
    path: ['password'],
    message: 'a dashboard that is not on loopback needs an operator password',
  });
export type DashboardConfig = z.output<typeof Config>;

/**
 * The operator dashboard (docs/apps/dashboard.md): samples `portal:/portal/clients` every 10 s into
 * a fixed-size round-robin history, serves a page with the guests online, charts of the last
 * hour/day/month, live updates (SSE), extrusion detections, and deauth/block/trust buttons.
 */
export const dashboardApp: App<DashboardConfig> = {
  name: 'dashboard',
  summary: 'operator dashboard: guests online, traffic history (RRD-like) and charts, live updates, actions',
  section: z.strictObject(sectionShape),
  fromGateway(gw: GatewayFacts, s: Record<string, unknown>): unknown {
    const at = typeof s.listen === 'string' ? s.listen : '127.0.0.1:8081';
    const address = at.split(':')[0]!;
    const allowGuest = s.allowGuest === true;
    const rule = "the dashboard is served on loopback (127.0.0.1) or the router's address on a lan network";
    if (!address.startsWith('127.')) {
      const n = gw.networks.find((x) => x.address === address);
      const problem = !n
        ? `${address} is not the router's address on any network: ${rule}`
        : n.role === 'wan'
          ? `${address} is on networks.${n.name}, the WAN: ${rule}`
          : (n.role === 'guest' || n.captive) && !allowGuest
            ? `${address} is on networks.${n.name}, a network guests reach: ${rule} (set allowGuest: true to serve it there anyway)`
            : undefined;
      if (problem) throw new ConfigError([{ path: 'listen', message: problem }]);
    }
    return {
      ...s,
      historyFile: join(gw.stateDir, 'dashboard.history'),
      portal: 'portal',
      extrusion: gw.enabled.has('extrusion') ? 'extrusion' : false,
      deny: allowGuest
        ? []
        : gw.networks.flatMap((n) =>
            n.role !== 'wan' && (n.role === 'guest' || n.captive) && n.subnet ? [n.subnet] : [],
          ),
    };
  },
  parse: (raw) => parseWith(Config, raw),
  start: (bus, config) => startDashboard(bus, config),
};

/** The dashboard on `bus`; what `dashboardApp.start` does. */
export async function startDashboard(bus: Bus, config: DashboardConfig): Promise<AppHandle> {
  const history = History.open(config.historyFile, config.maxGuests);
  const portal = config.portal;
  const detections: Detection[] = [];
  /** The last counters seen per session (`mac since`), to turn totals into deltas. */
  let last = new Map<string, { up: number; down: number; at: number }>();
  let guests: GuestRow[] = [];
  let logins = 0;
  /** Bytes of sessions that ended since the last sample (their last delta), per MAC. */
  let ended = new Map<string, { up: number; down: number }>();
  let sampled = false;
  let samples = 0;
  let failures = 0;

  const readClients = async (): Promise<Message[]> =>
    (await bus.request(`${portal}:/portal/clients`, {}, { timeout: 5000 }))
      .all('client')
      .map((t) => t.value as Message);

  /** Ask the portal for its clients; record a history sample when `record`. */
  async function sample(record: boolean): Promise<void> {
    const now = Date.now();
    let list: Message[];
    try {
      list = await readClients();
    } catch (e) {
      failures++;
      bus.log.log('debug', 'dashboard: no answer from the portal', { error: e });
      return;
    }
    const next = new Map<string, { up: number; down: number; at: number }>();
    const deltas: { mac: string; up: number; down: number }[] = [];
    const rows: GuestRow[] = [];
    for (const c of list) {
      const mac = c.str('mac', '');
      const since = c.int('since', 0);
      const up = c.int('bytes-up', 0);
      const down = c.int('bytes-down', 0);
      const key = `${mac} ${since}`;
      const p = last.get(key);
      // A session not seen before: counted from 0 (it began since), except at the first sample.
      const du = p ? Math.max(0, up - p.up) : sampled ? up : 0;
      const dd = p ? Math.max(0, down - p.down) : sampled ? down : 0;
      const dt = p ? (now - p.at) / 1000 : 0;
      const prevRow = guests.find((g) => g.mac === mac && g.since === since);
      rows.push({
        ip: c.str('ip', ''),
        mac,
        hostname: c.str('hostname', ''),
        since,
        expires: c.int('expires', 0),
        up,
        down,
        idle: c.int('idle', 0),
        rateUp: dt >= 1 ? ((up - (p?.up ?? up)) * 8) / dt : (prevRow?.rateUp ?? 0),
        rateDown: dt >= 1 ? ((down - (p?.down ?? down)) * 8) / dt : (prevRow?.rateDown ?? 0),
      });
      if (record) {
        next.set(key, { up, down, at: now });
        if (mac) deltas.push({ mac, up: du, down: dd });
      } else next.set(key, p ?? { up, down, at: now });
    }
    if (record) {
      for (const [mac, e] of ended) {
        const d = deltas.find((x) => x.mac === mac);
        if (d) deltas[deltas.indexOf(d)] = { mac, up: d.up + e.up, down: d.down + e.down };
        else deltas.push({ mac, ...e });
      }
      ended = new Map();
    }
    guests = rows;
    last = next;
    if (record) {
      history.record(now, {
        online: list.length,
        up: deltas.reduce((n, d) => n + d.up, 0),
        down: deltas.reduce((n, d) => n + d.down, 0),
        logins,
        guests: deltas,
      });
      logins = 0;
      sampled = true;
      samples++;
    }
    server.push('guests', { guests, at: now });
    if (record) server.push('tick', { at: now });
  }

  /** Samples one after the other: each builds on the previous one's counters. */
  let chain: Promise<void> = Promise.resolve();
  const queue = (record: boolean): void => {
    chain = chain.then(() => sample(record)).catch(() => {});
  };
  const server = await serveDashboard({
    config,
    history,
    guests: () => guests,
    detections: () => detections,
    async act(action, target) {
      const verb = action === 'deauth' ? '/portal/logout' : `/portal/${action}`;
      const init: Record<string, string> =
        action === 'deauth' ? { ip: target, reason: 'operator' } : { mac: target };
      const r = await bus.request(`${portal}:${verb}`, init, { timeout: 5000 });
      if (r.has('error')) throw new Error(r.str('error'));
      queue(false);
      return r.toObject();
    },
    log: bus.log,
  });

  const followers = [
    follow(
      bus,
      `${portal}:/portal/login`,
      () => {
        logins++;
        queue(false);
        return CONTINUE;
      },
      { identity: { app: 'dashboard', follows: 'logins' } },
    ),
    follow(
      bus,
      `${portal}:/portal/logged-out`,
      (m) => {
        // The session's last bytes (since the last sample) would be lost with it: keep them.
        const mac = m.str('mac', '');
        const p = last.get(`${mac} ${m.int('since', 0)}`);
        if (p && mac) {
          const e = ended.get(mac) ?? { up: 0, down: 0 };
          ended.set(mac, {
            up: e.up + Math.max(0, m.int('bytes-up', 0) - p.up),
            down: e.down + Math.max(0, m.int('bytes-down', 0) - p.down),
          });
          last.delete(`${mac} ${m.int('since', 0)}`);
        }
        queue(false);
        return CONTINUE;
      },
      { identity: { app: 'dashboard', follows: 'logouts' } },
    ),
  ];
  if (config.extrusion)
    followers.push(
      follow(
        bus,
        `${config.extrusion}:/extrusion/detected`,
        (m) => {
          const d: Detection = {
            at: m.int('at', Date.now()),
            ip: m.str('ip', ''),
            mac: m.str('mac', ''),
            rule: m.str('rule', ''),
            count: m.int('count', 0),
            threshold: m.int('threshold', 0),
            window: m.int('window', 0),
            action: m.str('action', ''),
          };
          detections.unshift(d);
          detections.length = Math.min(detections.length, 100);
          server.push('detection', d);
          return CONTINUE;
        },
        { identity: { app: 'dashboard', follows: 'detections' } },
      ),
    );
  queue(true);
  const sampler = bus.every(config.sampleSeconds * 1000, () => queue(true));
  const save = (): void => {
    try {
      history.save();
    } catch (e) {
      bus.log.log('error', 'dashboard: cannot write the history', { file: config.historyFile, error: e });
    }
  };
  const saver = bus.every(config.saveSeconds * 1000, save);

  return {
    readyNote: `${server.address}:${server.port}`,
    status: () => ({ guests: guests.length, samples, failures, historyBytes: history.bytes }),
    async close() {
      sampler.cancel();
      saver.cancel();
      for (const f of followers) f.remove();
      await chain;
      await server.close();
      save();
    },
  };
}

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bus } from '../../../src/core/bus.js';
import { type Level, type Logger, silentLogger } from '../../../src/core/log.js';
import { type DhcpConfig, parseConfig, type RawDhcpConfig } from '../../../src/services/dhcp/config.js';
import { DhcpCore } from '../../../src/services/dhcp/core.js';
import { LeaseStore } from '../../../src/services/dhcp/leases.js';
import { getOption } from '../../../src/services/dhcp/options.js';
import { checkConfigOption } from '../../../src/services/dhcp/optionset.js';
import { type DhcpOption, type DhcpPacket, MessageType } from '../../../src/services/dhcp/packet.js';
import { Pool } from '../../../src/services/dhcp/pool.js';

export function tmp(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'dhcpd-test-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function rawConfig(leaseFile: string, extra: Partial<RawDhcpConfig> = {}): RawDhcpConfig {
  return {
    listen: [{ interface: 'r0', address: '10.77.0.1' }],
    subnets: [
      {
        subnet: '10.77.0.0/24',
        pool: { start: '10.77.0.100', end: '10.77.0.109' },
        router: '10.77.0.1',
        dns: ['10.77.0.1', '10.77.1.2'],
        domain: 'lab.test',
        leaseTime: 600,
        captivePortal: 'https://portal.lab.test/api',
      },
      {
        subnet: '10.88.0.0/24',
        pool: [{ start: '10.88.0.10', end: '10.88.0.20' }],
        router: '10.88.0.1',
        leaseTime: 1200,
      },
    ],
    hosts: [
      {
        mac: '02:00:00:00:00:aa',
        ip: '10.77.0.50',
        hostname: 'printer',
        options: { 'ntp-server': '10.77.0.1' },
      },
    ],
    leaseFile,
    ...extra,
  };
}

export interface Rig {
  bus: Bus;
  config: DhcpConfig;
  store: LeaseStore;
  pool: Pool;
  core: DhcpCore;
  clock: { t: number };
  close(): Promise<void>;
}

/** A logger that keeps what it is given (every level). */
export function recordingLogger(): Logger & {
  lines: { level: Level; msg: string; fields: Record<string, unknown> }[];
} {
  const lines: { level: Level; msg: string; fields: Record<string, unknown> }[] = [];
  const logger = {
    lines,
    log(level: Level, msg: string, fields: Record<string, unknown> = {}) {
      lines.push({ level, msg, fields });
    },
    child: () => logger,
  };
  return logger;
}

export async function rig(
  leaseFile: string,
  extra: Partial<RawDhcpConfig> = {},
  opts: { log?: Logger; logIntervalMs?: number } = {},
): Promise<Rig> {
  const clock = { t: 1_800_000_000_000 };
  const now = (): number => clock.t;
  const config = parseConfig(rawConfig(leaseFile, extra), checkConfigOption);
  const bus = new Bus({ name: 'dhcpd', logger: silentLogger });
  const store = await LeaseStore.open(leaseFile, { now, log: silentLogger });
  const pool = new Pool(config, store, now);
  const core = new DhcpCore(bus, config, store, pool, {
    log: opts.log ?? silentLogger,
    now,
    logIntervalMs: opts.logIntervalMs,
  });
  core.attachPool();
  return {
    bus,
    config,
    store,
    pool,
    core,
    clock,
    async close() {
      await store.close();
      await bus.close();
    },
  };
}

export function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((h) => Number.parseInt(h, 16)));
}

const ipOpt = (code: number, ip: string): DhcpOption => ({
  code,
  data: Buffer.from(ip.split('.').map(Number)),
});

export function clientPacket(
  type: number,
  mac: string,
  o: {
    xid?: number;
    ciaddr?: string;
    giaddr?: string;
    requested?: string;
    serverId?: string;
    prl?: number[];
    flags?: number;
    extra?: DhcpOption[];
  } = {},
): DhcpPacket {
  const options: DhcpOption[] = [{ code: 53, data: Buffer.from([type]) }];
  if (o.requested) options.push(ipOpt(50, o.requested));
  if (o.serverId) options.push(ipOpt(54, o.serverId));
  if (o.prl) options.push({ code: 55, data: Buffer.from(o.prl) });
  options.push(...(o.extra ?? []));
  return {
    op: 1,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: o.xid ?? 0x1234,
    secs: 0,
    flags: o.flags ?? 0,
    ciaddr: o.ciaddr ?? '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: o.giaddr ?? '0.0.0.0',
    chaddr: macBytes(mac),
    sname: '',
    file: '',
    options,
  };
}

export function typeOf(p: DhcpPacket): number | undefined {
  return getOption(p, 53)?.[0];
}

export { MessageType };

import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Lab, REPO_ROOT } from '../test/support/lab.js';
import { waitForLine } from '../test/support/wait.js';

/**
 * DHCP servers for bench/dhcp.ts, each started in the lab's router namespace, in the foreground,
 * with its own config and lease file in the lab's temp dir. All serve the same bench subnet with
 * the same pool and lease time and persist every lease to disk (Kea memfile persist=true, dnsmasq's
 * lease file, our journal), so the comparison is like for like.
 */

export interface BenchNet {
  /** Interface of the router that faces perfdhcp. */
  readonly iface: string;
  /** The server's address on it (perfdhcp sends here, as a relay). */
  readonly serverIp: string;
  readonly subnet: string;
  readonly poolStart: string;
  readonly poolEnd: string;
  readonly leaseTime: number;
}

export interface RunningServer {
  readonly name: string;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

/** How to run a server for a profile: extra node flags (`--cpu-prof`) and environment (metanet only). */
export interface StartOptions {
  readonly nodeArgs?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  /** Run MetaNet's dhcpd from this checkout instead of this one (compare two commits in one run). */
  readonly root?: string;
  /** Added to the names of the config and lease files: each round starts from an empty lease file. */
  readonly tag?: string;
  /** Pin the server (every thread) to these CPUs (`taskset -c`, e.g. `1`); unset: not pinned. */
  readonly cpus?: string;
}

/** `cmd args`, run under `taskset -c CPUS` when `cpus` is set (taskset execs: the pid stays the server's). */
export function pinned(cpus: string | undefined, cmd: string, args: readonly string[]): [string, string[]] {
  return cpus === undefined ? [cmd, [...args]] : ['taskset', ['-c', cpus, cmd, ...args]];
}

export type ServerStarter = (lab: Lab, net: BenchNet, opts?: StartOptions) => Promise<RunningServer>;

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(t);
}

/** Collects a child's output so a failure can say what the server printed. */
function tail(child: ChildProcess): () => string {
  let out = '';
  const add = (d: Buffer): void => {
    out = (out + d.toString()).slice(-4000);
  };
  child.stdout?.on('data', add);
  child.stderr?.on('data', add);
  return () => out;
}

async function ready(name: string, child: ChildProcess, re: RegExp, ms: number): Promise<RunningServer> {
  const output = tail(child);
  try {
    await waitForLine(child, re, ms);
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`${name} did not start: ${(e as Error).message}\n${output()}`);
  }
  // Keep draining output so a chatty server never blocks on a full pipe.
  child.stdout?.resume();
  child.stderr?.resume();
  return { name, child, stop: () => stopChild(child) };
}

export const startKea: ServerStarter = async (lab, net, opts = {}) => {
  const dir = lab.dir;
  const tag = opts.tag ?? '';
  const config = {
    Dhcp4: {
      'interfaces-config': { interfaces: [net.iface], 'dhcp-socket-type': 'udp' },
      'lease-database': {
        type: 'memfile',
        persist: true,
        name: join(dir, `kea${tag}-leases4.csv`),
        'lfc-interval': 0,
      },
      'valid-lifetime': net.leaseTime,
      subnet4: [
        {
          id: 1,
          subnet: net.subnet,
          pools: [{ pool: `${net.poolStart} - ${net.poolEnd}` }],
          'option-data': [
            { name: 'routers', data: net.serverIp },
            { name: 'domain-name-servers', data: net.serverIp },
          ],
        },
      ],
      loggers: [{ name: 'kea-dhcp4', output_options: [{ output: 'stdout' }], severity: 'INFO' }],
    },
  };
  const file = lab.file(`kea${tag}-dhcp4.json`, JSON.stringify(config, null, 2));
  const child = lab.spawn(lab.router, ...pinned(opts.cpus, 'kea-dhcp4', ['-c', file]), {
    env: { ...process.env, KEA_PIDFILE_DIR: dir, KEA_LOCKFILE_DIR: dir },
  });
  return ready('kea', child, /DHCP4_STARTED/, 10_000);
};

export const startDnsmasq: ServerStarter = async (lab, net, opts = {}) => {
  const child = lab.spawn(
    lab.router,
    ...pinned(opts.cpus, 'dnsmasq', [
      '-k',
      '-d',
      '--no-ping',
      '--port=0',
      `--interface=${net.iface}`,
      '--bind-interfaces',
      `--dhcp-range=${net.poolStart},${net.poolEnd},${net.leaseTime}`,
      `--dhcp-option=option:router,${net.serverIp}`,
      `--dhcp-option=option:dns-server,${net.serverIp}`,
      `--dhcp-leasefile=${lab.file(`dnsmasq${opts.tag ?? ''}.leases`, '')}`,
      `--dhcp-lease-max=${1 << 20}`,
      '--conf-file=/dev/null',
      '--quiet-dhcp',
    ]),
  );
  return ready('dnsmasq', child, /DHCP, IP range/, 5000);
};

/**
 * MetaNet's dhcpd (src/apps/dhcpd/main.ts), as a process of its own in the router namespace.
 * The config follows src/services/dhcp/config.ts (the server helper's schema).
 */
export const startMetanet: ServerStarter = async (lab, net, opts = {}) => {
  const name = opts.root ? 'metanet-base' : 'metanet';
  const tag = `${name}${opts.tag ?? ''}`; // each its own lease file: no replay of the other's
  const config = {
    listen: [{ interface: net.iface, address: net.serverIp }],
    subnets: [
      {
        subnet: net.subnet,
        pool: { start: net.poolStart, end: net.poolEnd },
        router: net.serverIp,
        dns: net.serverIp,
        leaseTime: net.leaseTime,
      },
    ],
    leaseFile: join(lab.dir, `${tag}-leases.jsonl`),
    // perfdhcp is a storm of new MACs by design: switch the new-client limit off (Kea and dnsmasq
    // have none). A baseline checkout older than the limit does not know the key: leave it out there.
    ...(opts.root && !knowsNewClients(opts.root) ? {} : { newClients: { perSecond: 0 } }),
  };
  const file = lab.file(`${tag}.json`, JSON.stringify(config, null, 2));
  const child = lab.spawn(
    lab.router,
    ...pinned(opts.cpus, process.execPath, [
      ...(opts.nodeArgs ?? []),
      '--import',
      'tsx',
      'src/apps/dhcpd/main.ts',
      '--config',
      file,
      '--dir',
      lab.dir,
    ]),
    {
      cwd: opts.root ?? REPO_ROOT,
      env: { ...process.env, METANET_LOG: process.env.METANET_LOG ?? 'warn', ...opts.env },
    },
  );
  return ready(name, child, /dhcpd ready/, 15_000);
};

export const SERVERS: Readonly<Record<string, ServerStarter>> = {
  metanet: startMetanet,
  kea: startKea,
  dnsmasq: startDnsmasq,
};

/** Whether the dhcpd of a checkout takes the `newClients` config key. */
function knowsNewClients(root: string): boolean {
  try {
    return readFileSync(join(root, 'src/services/dhcp/config.ts'), 'utf8').includes('newClients');
  } catch {
    return false;
  }
}

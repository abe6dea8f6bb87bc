import { type ChildProcess, execFile, execFileSync, spawn as spawnChild } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { alive, deleteNs, ipBatch, killAll, pidsIn } from '../../examples/netns.js';

/**
 * A network lab for tests, made of network namespaces joined by veth pairs:
 *
 *   client<i> c0 ──── r0 router r1 ──── i0 inet
 *                10.77.0.1/24   10.77.1.1/24   10.77.1.2/24
 *
 * With one client, c0 and r0 are the two ends of one veth pair. With several, r0 is a bridge in
 * the router (holding 10.77.0.1/24) and each client's c0 is paired with a port of it, so every
 * client is on the same LAN and a server on r0 sees them all. Clients have no address until DHCP
 * (or `addr: true`: client i gets 10.77.0.(10+i)/24 and a default route via the router). The
 * router forwards; inet routes the LAN back through it. Loopback is up everywhere.
 *
 * Decisions:
 * - Namespace names are global, so they are unique per process and lab: `mn<pid>[t<thread>]-<n>-<role>`.
 *   Addresses need not be: each lab's namespaces are their own, isolated network.
 * - Teardown kills every process in each namespace (`ip netns pids`), then deletes it. It runs on
 *   `close()`, at process exit, on SIGINT/SIGTERM, and a new lab first sweeps namespaces left by
 *   processes that died without cleaning up (SIGKILL).
 * - DHCP clients run with a script of our own that only appends its environment to a file: their
 *   default scripts would rewrite the host's /etc/resolv.conf (namespaces share the filesystem).
 */

export interface LabOptions {
  /** Number of client namespaces (default 1). */
  clients?: number;
  /** Give client i the address 10.77.0.(10+i)/24 and a default route (default false: DHCP will). */
  addr?: boolean;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  timeoutMs?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  input?: string;
}

export interface DhcpClientOptions {
  /** Give up after this many seconds (default 5). */
  timeoutS?: number;
  /** udhcpc only: ask for a broadcast reply (BROADCAST flag, `-B`). */
  broadcast?: boolean;
  hostname?: string;
  /** Option 61 as hex, type byte first (e.g. '01020000aabb01'). */
  clientId?: string;
  /** Also request these option codes (e.g. [114]); unknown ones come back in `env`. */
  request?: number[];
  /** Configure the leased address (and default route) on the interface afterwards. */
  apply?: boolean;
}

export interface DhcpLease {
  client: 'udhcpc' | 'dhclient';
  ip: string;
  mask?: string;
  router?: string[];
  dns?: string[];
  leaseTime?: number;
  serverId?: string;
  domain?: string;
  hostname?: string;
  broadcast?: string;
  /** Options asked for with `request`, by code: udhcpc hands them over as hex, dhclient as text. */
  requested: Record<number, Buffer>;
  /** Everything the client handed its script for the bound event. */
  env: Record<string, string>;
}

export const REPO_ROOT = join(dirname(new URL(import.meta.url).pathname), '..', '..');

const LAN = '10.77.0';
const WAN = '10.77.1';
const NAME_RE = /^mn(\d+)(?:t\d+)?-\d+-/;
const open = new Set<Lab>();
let counter = 0;
let handlersInstalled = false;

export class Lab {
  /** `mn<pid>-<n>` — every namespace of this lab starts with it. */
  readonly prefix: string;
  readonly clients: string[];
  readonly router: string;
  readonly inet: string;
  /** Temp directory for scripts, leases, configs; removed at close. */
  readonly dir: string;
  readonly routerLanIp = `${LAN}.1`;
  readonly routerWanIp = `${WAN}.1`;
  readonly inetIp = `${WAN}.2`;
  readonly lanPrefix = `${LAN}.0/24`;
  private readonly children = new Set<ChildProcess>();
  private closed = false;

  private constructor(clients: number) {
    this.prefix = `mn${process.pid}${threadId ? `t${threadId}` : ''}-${counter++}`;
    this.clients = Array.from({ length: clients }, (_, i) => `${this.prefix}-client${i}`);
    this.router = `${this.prefix}-router`;
    this.inet = `${this.prefix}-inet`;
    this.dir = mkdtempSync(join(tmpdir(), `${this.prefix}-`));
    // Scripts written here (lab.file + nodeScript) are ES modules, like the rest of the project.
    writeFileSync(join(this.dir, 'package.json'), '{ "type": "module" }\n');
  }

  /** The first client's namespace. */
  get client(): string {
    return this.clients[0]!;
  }

  /** Address that `addr: true` gives client i. */
  clientIp(i = 0): string {
    return `${LAN}.${10 + i}`;
  }

  get namespaces(): string[] {
    return [...this.clients, this.router, this.inet];
  }

  static async create(opts: LabOptions = {}): Promise<Lab> {
    const n = opts.clients ?? 1;
    if (!Number.isInteger(n) || n < 1 || n > 200) throw new Error(`Lab: clients must be 1..200, got ${n}`);
    if (process.getuid?.() !== 0) throw new Error('Lab: network namespaces need root');
    installHandlers();
    sweepStale();
    const lab = new Lab(n);
    open.add(lab);
    try {
      await lab.build(n, opts.addr ?? false);
    } catch (e) {
      await lab.close();
      throw e;
    }
    return lab;
  }

  /** Build a lab, run `fn`, always tear down. */
  static async with<T>(opts: LabOptions, fn: (lab: Lab) => Promise<T>): Promise<T> {
    const lab = await Lab.create(opts);
    try {
      return await fn(lab);
    } finally {
      await lab.close();
    }
  }

  /** Three `ip -batch` steps: namespaces and veth pairs; then each namespace's own setup, in parallel. */
  private async build(n: number, addr: boolean): Promise<void> {
    const r = this.router;
    const root = this.namespaces.map((ns) => `netns add ${ns}`);
    const router = ['link set lo up'];
    if (n === 1) root.push(`link add c0 netns ${this.client} type veth peer name r0 netns ${r}`);
    else {
      router.push('link add r0 type bridge forward_delay 0 stp_state 0');
      for (let i = 0; i < n; i++) {
        root.push(`link add c0 netns ${this.clients[i]} type veth peer name r0p${i} netns ${r}`);
        router.push(`link set r0p${i} master r0`, `link set r0p${i} up`);
      }
    }
    root.push(`link add r1 netns ${r} type veth peer name i0 netns ${this.inet}`);
    router.push(
      `addr add ${this.routerLanIp}/24 dev r0`,
      `addr add ${this.routerWanIp}/24 dev r1`,
      'link set r0 up',
      'link set r1 up',
    );
    const inet = [
      'link set lo up',
      `addr add ${this.inetIp}/24 dev i0`,
      'link set i0 up',
      `route add ${this.lanPrefix} via ${this.routerWanIp}`,
    ];
    const client = (i: number): string[] => [
      'link set lo up',
      'link set c0 up',
      ...(addr
        ? [`addr add ${this.clientIp(i)}/24 dev c0`, `route add default via ${this.routerLanIp}`]
        : []),
    ];
    await ipBatch(undefined, root, 'Lab');
    await Promise.all([
      ipBatch(r, router, 'Lab'),
      ipBatch(this.inet, inet, 'Lab'),
      ...this.clients.map((c, i) => ipBatch(c, client(i), 'Lab')),
    ]);
    const fwd = await this.exec(r, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    if (fwd.code !== 0) throw new Error(`Lab: cannot enable forwarding in ${r}: ${fwd.stderr}`);
  }

  /** Run a command in a namespace; resolves with its exit code and output (non-zero is not an error). */
  exec(ns: string, cmd: string, args: readonly string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
    const timeout = opts.timeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const child = execFile(
        'ip',
        ['netns', 'exec', ns, cmd, ...args],
        { timeout, killSignal: 'SIGKILL', cwd: opts.cwd ?? REPO_ROOT, env: opts.env, maxBuffer: 64 << 20 },
        (err, stdout, stderr) => {
          if (err && (err as { killed?: boolean }).killed)
            reject(
              new Error(`Lab: timed out after ${timeout} ms: ${cmd} ${args.join(' ')} in ${ns}\n${stderr}`),
            );
          else if (err && typeof (err as { code?: unknown }).code !== 'number')
            reject(new Error(`Lab: cannot run ${cmd} in ${ns}: ${err.message}`));
          else resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout, stderr });
        },
      );
      // EPIPE from a command that exits before reading all its input: its exit code says why
      child.stdin?.on('error', () => {});
      if (opts.input !== undefined) child.stdin?.end(opts.input);
    });
  }

  /** Start a long-running process in a namespace; it is killed at close(). */
  spawn(
    ns: string,
    cmd: string,
    args: readonly string[] = [],
    opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
  ): ChildProcess {
    if (this.closed) throw new Error('Lab: closed');
    const child = spawnChild('ip', ['netns', 'exec', ns, cmd, ...args], {
      cwd: opts.cwd ?? REPO_ROOT,
      env: opts.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    child.on('error', () => this.children.delete(child));
    return child;
  }

  /** Run a TypeScript file with tsx inside a namespace (`node --import tsx FILE ARGS`). */
  nodeScript(
    ns: string,
    file: string,
    args: readonly string[] = [],
    opts: { env?: NodeJS.ProcessEnv } = {},
  ): ChildProcess {
    return this.spawn(ns, process.execPath, ['--import', 'tsx', file, ...args], { cwd: REPO_ROOT, ...opts });
  }

  /** MAC address of an interface, lowercase. */
  async mac(ns: string, ifname: string): Promise<string> {
    const r = await this.exec(ns, 'cat', [`/sys/class/net/${ifname}/address`]);
    if (r.code !== 0) throw new Error(`Lab: no interface ${ifname} in ${ns}: ${r.stderr.trim()}`);
    return r.stdout.trim().toLowerCase();
  }

  /** Write a file into the lab's temp dir; returns its path. */
  file(name: string, content: string, mode = 0o644): string {
    const p = join(this.dir, name);
    writeFileSync(p, content);
    chmodSync(p, mode);
    return p;
  }

  // ------------------------------------------------------------ DHCP clients

  /** Get a lease with busybox udhcpc (`-f -q -n`): resolves with it, or fails saying why. */
  async udhcpc(ns: string, ifname: string, opts: DhcpClientOptions = {}): Promise<DhcpLease> {
    checkClientOptions(opts);
    const timeoutS = opts.timeoutS ?? 5;
    const out = this.recorder('udhcpc');
    const args = [
      '-i',
      ifname,
      '-f',
      '-q',
      '-n',
      '-t',
      String(Math.max(1, timeoutS)),
      '-T',
      '1',
      '-A',
      '1',
      '-s',
      out.script,
    ];
    if (opts.broadcast) args.push('-B');
    if (opts.hostname) args.push('-x', `hostname:${opts.hostname}`);
    if (opts.clientId) args.push('-x', `0x3d:${opts.clientId}`);
    for (const c of opts.request ?? []) args.push('-O', String(c));
    const r = await this.exec(ns, 'udhcpc', args, { timeoutMs: (timeoutS + 3) * 1000 });
    const events = out.events();
    const bound = events.find((e) => e.event === 'bound');
    if (!bound?.ip) {
      const seen = events.map((e) => e.event).join(', ') || 'none';
      throw new Error(
        `udhcpc in ${ns} on ${ifname}: no lease within ${timeoutS} s (exit ${r.code}; script events: ${seen})\n` +
          r.stderr.trim(),
      );
    }
    const lease: DhcpLease = {
      client: 'udhcpc',
      ip: bound.ip,
      mask: bound.subnet,
      router: words(bound.router),
      dns: words(bound.dns),
      leaseTime: num(bound.lease),
      serverId: bound.serverid,
      domain: bound.domain,
      hostname: bound.hostname,
      broadcast: bound.broadcast,
      requested: pick(opts.request, (c) => {
        const hex = bound[`opt${c}`];
        return hex === undefined ? undefined : Buffer.from(hex, 'hex');
      }),
      env: bound,
    };
    if (opts.apply) await this.applyLease(ns, ifname, lease);
    return lease;
  }

  /** Get a lease with ISC dhclient (`-1`); the daemon it forks is killed by its pidfile. */
  async dhclient(ns: string, ifname: string, opts: DhcpClientOptions = {}): Promise<DhcpLease> {
    checkClientOptions(opts);
    const timeoutS = opts.timeoutS ?? 5;
    const out = this.recorder('dhclient');
    const base = out.script.replace(/\.sh$/, '');
    const conf = [`timeout ${timeoutS};`, 'retry 1;', 'initial-interval 1;'];
    if (opts.hostname) conf.push(`send host-name "${opts.hostname}";`);
    if (opts.clientId)
      conf.push(`send dhcp-client-identifier ${opts.clientId.replace(/(..)(?!$)/g, '$1:')};`);
    const extra = (opts.request ?? []).map((c) => `mn-opt-${c}`);
    for (const c of opts.request ?? []) conf.push(`option mn-opt-${c} code ${c} = string;`);
    conf.push(
      `request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name${extra.map((e) => `, ${e}`).join('')};`,
    );
    writeFileSync(`${base}.conf`, `${conf.join('\n')}\n`);
    const pidfile = `${base}.pid`;
    const args = [
      '-4',
      '-1',
      '-v',
      '-cf',
      `${base}.conf`,
      '-sf',
      out.script,
      '-lf',
      `${base}.leases`,
      '-pf',
      pidfile,
      ifname,
    ];
    let r: ExecResult;
    try {
      r = await this.exec(ns, 'dhclient', args, { timeoutMs: (timeoutS + 5) * 1000 });
    } finally {
      killPidfile(pidfile);
      killByArg(ns, pidfile); // the daemon may not have written its pidfile yet
    }
    const bound = out.events().find((e) => e.reason === 'BOUND' || e.reason === 'REBOOT');
    if (!bound?.new_ip_address)
      throw new Error(
        `dhclient in ${ns} on ${ifname}: no lease within ${timeoutS} s (exit ${r.code}; script reasons: ` +
          `${
            out
              .events()
              .map((e) => e.reason)
              .join(', ') || 'none'
          })\n${r.stderr.trim().split('\n').slice(-5).join('\n')}`,
      );
    const lease: DhcpLease = {
      client: 'dhclient',
      ip: bound.new_ip_address,
      mask: bound.new_subnet_mask,
      router: words(bound.new_routers),
      dns: words(bound.new_domain_name_servers),
      leaseTime: num(bound.new_dhcp_lease_time),
      serverId: bound.new_dhcp_server_identifier,
      domain: bound.new_domain_name,
      hostname: bound.new_host_name,
      broadcast: bound.new_broadcast_address,
      requested: pick(opts.request, (c) => {
        const text = bound[`new_mn_opt_${c}`];
        return text === undefined ? undefined : Buffer.from(text);
      }),
      env: bound,
    };
    if (opts.apply) await this.applyLease(ns, ifname, lease);
    return lease;
  }

  private async applyLease(ns: string, ifname: string, lease: DhcpLease): Promise<void> {
    const bits = lease.mask ? maskBits(lease.mask) : 24;
    await ip('-n', ns, 'addr', 'replace', `${lease.ip}/${bits}`, 'dev', ifname);
    const gw = lease.router?.[0];
    if (gw) await ip('-n', ns, 'route', 'replace', 'default', 'via', gw);
  }

  /** A client script of our own: appends `event=<arg>` and its environment, then a separator. */
  private recorder(name: string): { script: string; events: () => Record<string, string>[] } {
    const id = `${name}-${counter++}`;
    const log = join(this.dir, `${id}.env`);
    const script = this.file(
      `${id}.sh`,
      `#!/bin/sh\n{ echo "event=$1"; env; echo "--mn-end--"; } >> '${log}'\nexit 0\n`,
      0o755,
    );
    const events = (): Record<string, string>[] => {
      let text = '';
      try {
        text = readFileSync(log, 'utf8');
      } catch {
        return [];
      }
      return text
        .split('--mn-end--\n')
        .filter((b) => b.trim())
        .map((block) => {
          const env: Record<string, string> = {};
          for (const line of block.split('\n')) {
            const eq = line.indexOf('=');
            if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1);
          }
          return env;
        });
    };
    return { script, events };
  }

  // ------------------------------------------------------------ teardown

  /** Kill every process in the lab's namespaces and delete them. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const exited = [...this.children].map(
      (c) =>
        new Promise<void>((r) =>
          c.exitCode !== null || c.signalCode !== null ? r() : c.once('close', () => r()),
        ),
    );
    for (const c of this.children) c.kill('SIGKILL');
    for (const ns of this.namespaces) killAll(ns);
    const end = Date.now() + 3000;
    for (const ns of this.namespaces) {
      while (pidsIn(ns).length > 0 && Date.now() < end) {
        killAll(ns);
        await new Promise((r) => setTimeout(r, 10));
      }
      deleteNs(ns);
    }
    // Wait until our children are reaped, so none is left even as a zombie.
    await Promise.race([Promise.all(exited), new Promise((r) => setTimeout(r, 2000).unref())]);
    rmSync(this.dir, { recursive: true, force: true });
    open.delete(this);
  }

  /** Synchronous teardown, for exit handlers. */
  closeSync(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.children) c.kill('SIGKILL');
    for (const ns of this.namespaces) killAll(ns);
    for (const ns of this.namespaces) deleteNs(ns);
    rmSync(this.dir, { recursive: true, force: true });
    open.delete(this);
  }
}

// ------------------------------------------------------------ helpers

function ip(...args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('ip', args, { timeout: 10_000 }, (err, _out, stderr) => {
      if (err) reject(new Error(`Lab: ip ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve();
    });
  });
}

/** Kill the processes in `ns` whose command line contains `arg`. */
function killByArg(ns: string, arg: string): void {
  for (const pid of pidsIn(ns)) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(arg))
        process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/** Processes in a namespace, with their command names. */
export function processesIn(ns: string): { pid: number; comm: string }[] {
  return pidsIn(ns).flatMap((pid) => {
    try {
      return [{ pid, comm: readFileSync(`/proc/${pid}/comm`, 'utf8').trim() }];
    } catch {
      return [];
    }
  });
}

function killPidfile(pidfile: string): void {
  try {
    const pid = Number(readFileSync(pidfile, 'utf8').trim());
    if (pid > 1) process.kill(pid, 'SIGKILL');
  } catch {
    // no pidfile (dhclient never forked) or already gone
  }
}

/** Remove namespaces of labs whose process is gone (killed before it could clean up). */
export function sweepStale(): string[] {
  let names: string[] = [];
  try {
    names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter(Boolean);
  } catch {
    return [];
  }
  const swept: string[] = [];
  for (const ns of names) {
    const m = NAME_RE.exec(ns);
    if (!m || alive(Number(m[1]))) continue;
    killAll(ns);
    deleteNs(ns);
    swept.push(ns);
  }
  return swept;
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const lab of [...open]) lab.closeSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const lab of [...open]) lab.closeSync();
      process.kill(process.pid, sig);
    });
  }
}

function checkClientOptions(o: DhcpClientOptions): void {
  if (o.timeoutS !== undefined && !(Number.isInteger(o.timeoutS) && o.timeoutS >= 1))
    throw new Error(`Lab: timeoutS must be a whole number of seconds >= 1, got ${o.timeoutS}`);
  if (o.hostname !== undefined && !/^[A-Za-z0-9][A-Za-z0-9.-]*$/.test(o.hostname))
    throw new Error(`Lab: hostname ${JSON.stringify(o.hostname)}: letters, digits, dots and dashes only`);
  if (o.clientId !== undefined && !/^([0-9a-fA-F]{2}){2,}$/.test(o.clientId))
    throw new Error(
      `Lab: clientId ${JSON.stringify(o.clientId)}: hex bytes, type byte first (at least 2 bytes)`,
    );
  for (const c of o.request ?? [])
    if (!Number.isInteger(c) || c < 1 || c > 254)
      throw new Error(`Lab: request: option code ${c} is not 1..254`);
}

function pick(
  codes: readonly number[] | undefined,
  get: (c: number) => Buffer | undefined,
): Record<number, Buffer> {
  const out: Record<number, Buffer> = {};
  for (const c of codes ?? []) {
    const v = get(c);
    if (v) out[c] = v;
  }
  return out;
}

function words(s: string | undefined): string[] | undefined {
  return s?.trim() ? s.trim().split(/\s+/) : undefined;
}

function num(s: string | undefined): number | undefined {
  return s !== undefined && s !== '' ? Number(s) : undefined;
}

function maskBits(mask: string): number {
  if (/^\d+$/.test(mask)) return Number(mask);
  return mask
    .split('.')
    .map(Number)
    .reduce((n, b) => n + (b.toString(2).match(/1/g)?.length ?? 0), 0);
}

import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { alive, deleteNs, ipBatch, killAll, pidsIn } from '../netns.js';

/**
 * The guest-network gateway lab: a router with a LAN and a guest network, built from network
 * namespaces, running the shipped examples/gateway.json with `metanet up`.
 *
 *                       ┌──────────── router ─────────────┐
 *   inet  i0 ───────────┤ eth0 10.99.0.2/24 (default via .1)│
 *   10.99.0.1/24        │ br-lan   10.10.0.1/24 ── p-lan1 ──┼── c0 lan1
 *   HTTP :80, dnsmasq   │ br-guest 10.20.0.1/24 ── p-guest1 ┼── c0 guest1
 *                       │                       └─ p-guest2 ┼── c0 guest2
 *                       └──────────────────────────────────┘
 *
 * - `inet` is the internet: one HTTP server answering every Host with "Hello from the internet",
 *   and dnsmasq answering every name with 10.99.0.1 (the upstream resolver; other record types get
 *   an empty answer). It routes
 *   10.10.0.0/16 and 10.20.0.0/16 back through the router (no NAT anywhere).
 * - `router` forwards (ip_forward=1, rp_filter strict, bridge netfilter off, fixed bridge MACs) and
 *   sees `/etc/netns/<router>/resolv.conf` (`nameserver 10.99.0.1`) as its /etc/resolv.conf, so the
 *   gateway's upstream DNS comes from there as on a real router. The device names are the ones of
 *   examples/gateway.json: the lab runs that file, changed only in `stateDir`.
 * - Clients (`lan1`, `guest1`, `guest2`) have a `c0` without address until DHCP. `applyLease`
 *   configures what the lease says, including `/etc/netns/<client>/resolv.conf` (what a client's
 *   DHCP script would do), so curl, dig and Chromium in that namespace use the router's resolver.
 *
 * Every name starts with `mnlab<pid>-<n>-`; every address is 10.x inside these namespaces only.
 * Teardown (close(), SIGINT/SIGTERM/SIGHUP, process exit) kills every process in each namespace,
 * deletes it, removes its /etc/netns directory and the lab's temp dir. A new lab first sweeps what
 * a lab whose process died (kill -9) left behind: namespaces, /etc/netns entries and temp dirs
 * whose pid is no longer alive.
 */

export const ADDR = {
  inet: '10.99.0.1',
  routerWan: '10.99.0.2',
  lan: '10.10.0.1',
  guest: '10.20.0.1',
  lanNet: '10.10.0.0/16',
  guestNet: '10.20.0.0/16',
} as const;

/** The page the internet's web server answers every request with (plus the URL asked for). */
export const INTERNET_HELLO = 'Hello from the internet';

export type Role = 'inet' | 'router' | 'lan1' | 'guest1' | 'guest2';
export const CLIENTS = ['lan1', 'guest1', 'guest2'] as const;
export type Client = (typeof CLIENTS)[number];

export interface GatewayLabOptions {
  /** Gateway config to run (default: the repo's examples/gateway.json); only `stateDir` is changed. */
  config?: string;
  /** METANET_LOG for the gateway (default `info`); its output goes to `<dir>/gateway.log`. */
  gatewayLog?: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /** Which `metanet` to run: compiled `dist` or the `src` TypeScript (tsx). Default: like this file. */
  cli?: 'dist' | 'src';
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Lease {
  ip: string;
  /** Prefix length. */
  prefix: number;
  router: string[];
  dns: string[];
  leaseTime: number | undefined;
  serverId: string | undefined;
  /** Option 114 (RFC 8910 captive-portal URI), when the server sent it. */
  captivePortal: string | undefined;
  /** Everything udhcpc handed its script for the bound event. */
  env: Record<string, string>;
}

export interface UdhcpcOptions {
  /** Discover tries, one second apart (default 3). */
  tries?: number;
  /** Also ask for option 114 (default true). */
  captivePortal?: boolean;
  /**
   * Release the lease at once: udhcpc runs without `-q`, stays bound, and is stopped with SIGTERM
   * once bound; with `-R` it then unicasts a DHCPRELEASE. (`-q -R` does not: udhcpc 1.35 quits
   * before it counts as bound, so it releases nothing.)
   */
  release?: boolean;
}

export interface CurlResult {
  /** HTTP status; negative: curl's exit code (no answer). */
  code: number;
  location: string;
  type: string;
  body: string;
  ms: number;
}

const NAME_RE = /^mnlab(\d+)-/;
const NETNS_ETC = '/etc/netns';
const open = new Set<GatewayLab>();
let counter = 0;
let handlersInstalled = false;
let hasDig: boolean | undefined;

/** The repository root: the nearest directory up from this file with metanet's package.json. */
export const REPO_ROOT = (() => {
  let d = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(d, 'package.json'), 'utf8')) as { name?: string };
      if (pkg.name === 'metanet') return d;
    } catch {
      // not here
    }
    const up = dirname(d);
    if (up === d) throw new Error('gateway lab: cannot find the metanet repository root');
    d = up;
  }
})();

const RUNNING_TS = fileURLToPath(import.meta.url).endsWith('.ts');

export class GatewayLab {
  /** `mnlab<pid>-<n>`: every namespace of this lab starts with it. */
  readonly prefix: string;
  readonly ns: Readonly<Record<Role, string>>;
  /** Temp dir: configs, scripts, leases, the gateway's state, sockets and log. Removed at close. */
  readonly dir: string;
  /** The daemons' sockets (`metanet --dir`). */
  readonly sockDir: string;
  readonly stateDir: string;
  /** The copy of the gateway config the lab runs. */
  readonly configFile: string;
  readonly gatewayLogFile: string;
  /** `metanet` as a command line: [node, (--import tsx,) main]. */
  readonly metanet: readonly string[];
  private readonly options: GatewayLabOptions;
  private readonly children = new Set<ChildProcess>();
  private gateway: ChildProcess | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

  private constructor(options: GatewayLabOptions) {
    this.options = options;
    this.prefix = `mnlab${process.pid}-${counter++}`;
    const roles: Role[] = ['inet', 'router', ...CLIENTS];
    this.ns = Object.fromEntries(roles.map((r) => [r, `${this.prefix}-${r}`])) as Record<Role, string>;
    this.dir = mkdtempSync(join(tmpdir(), `${this.prefix}-`));
    this.sockDir = join(this.dir, 'sock');
    this.stateDir = join(this.dir, 'state');
    mkdirSync(this.sockDir);
    mkdirSync(this.stateDir);
    this.configFile = join(this.dir, 'gateway.json');
    this.gatewayLogFile = join(this.dir, 'gateway.log');
    const cli = options.cli ?? (RUNNING_TS ? 'src' : 'dist');
    this.metanet =
      cli === 'src'
        ? [process.execPath, '--import', 'tsx', join(REPO_ROOT, 'src/cli/main.ts')]
        : [process.execPath, join(REPO_ROOT, 'dist/src/cli/main.js')];
  }

  get namespaces(): string[] {
    return Object.values(this.ns);
  }

  /** Build the topology and start the internet's servers (the gateway is `startGateway`). */
  static async create(options: GatewayLabOptions = {}): Promise<GatewayLab> {
    if (process.getuid?.() !== 0)
      throw new Error('gateway lab: network namespaces need root (run it as root, e.g. with sudo)');
    installHandlers();
    sweepStale();
    const lab = new GatewayLab(options);
    open.add(lab);
    try {
      await lab.build();
    } catch (e) {
      await lab.close();
      throw e;
    }
    return lab;
  }

  private async build(): Promise<void> {
    const { inet, router, lan1, guest1, guest2 } = this.ns;
    const raw = JSON.parse(
      readFileSync(this.options.config ?? join(REPO_ROOT, 'examples/gateway.json'), 'utf8'),
    ) as Record<string, unknown>;
    writeFileSync(this.configFile, `${JSON.stringify({ ...raw, stateDir: this.stateDir }, null, 2)}\n`);

    await ipBatch(undefined, [
      ...this.namespaces.map((ns) => `netns add ${ns}`),
      `link add eth0 netns ${router} type veth peer name i0 netns ${inet}`,
      `link add c0 netns ${lan1} type veth peer name p-lan1 netns ${router}`,
      `link add c0 netns ${guest1} type veth peer name p-guest1 netns ${router}`,
      `link add c0 netns ${guest2} type veth peer name p-guest2 netns ${router}`,
    ]);
    const bridge = (name: string, mac: string, ports: string[], cidr: string): string[] => [
      `link add ${name} type bridge forward_delay 0 stp_state 0 nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0`,
      `link set ${name} address ${mac}`,
      ...ports.flatMap((p) => [`link set ${p} master ${name}`, `link set ${p} up`]),
      `addr add ${cidr} dev ${name}`,
      `link set ${name} up`,
    ];
    await Promise.all([
      ipBatch(router, [
        'link set lo up',
        `addr add ${ADDR.routerWan}/24 dev eth0`,
        'link set eth0 up',
        ...bridge('br-lan', '02:6d:6e:0a:00:01', ['p-lan1'], `${ADDR.lan}/24`),
        ...bridge('br-guest', '02:6d:6e:14:00:01', ['p-guest1', 'p-guest2'], `${ADDR.guest}/24`),
        `route add default via ${ADDR.inet}`,
      ]),
      ipBatch(inet, [
        'link set lo up',
        `addr add ${ADDR.inet}/24 dev i0`,
        'link set i0 up',
        `route add ${ADDR.lanNet} via ${ADDR.routerWan}`,
        `route add ${ADDR.guestNet} via ${ADDR.routerWan}`,
      ]),
      // No IPv6 link-local address on the clients (addrgenmode none): the lab is IPv4 only, and
      // an address that becomes valid (duplicate-address detection, ~1 s after link up) while
      // Chromium loads a page makes it abort the load with ERR_NETWORK_CHANGED (seen in the test).
      ...CLIENTS.map((c) =>
        ipBatch(this.ns[c], ['link set lo up', 'link set c0 addrgenmode none', 'link set c0 up']),
      ),
    ]);
    // Forwarding on; strict reverse-path filtering on every interface (the routes are symmetric);
    // bridge netfilter off where the kernel has it, so nft sees routed packets only.
    const devs = ['all', 'default', 'lo', 'eth0', 'br-lan', 'br-guest'];
    const sysctl = await this.exec(router, 'sh', [
      '-ec',
      [
        'sysctl -qw net.ipv4.ip_forward=1',
        ...devs.map((d) => `sysctl -qw net.ipv4.conf.${d}.rp_filter=1`),
        'for f in /proc/sys/net/bridge/bridge-nf-call-arptables /proc/sys/net/bridge/bridge-nf-call-iptables /proc/sys/net/bridge/bridge-nf-call-ip6tables; do if [ -e "$f" ]; then echo 0 > "$f"; fi; done',
      ].join('\n'),
    ]);
    if (sysctl.code !== 0) throw new Error(`gateway lab: router sysctls failed: ${sysctl.stderr.trim()}`);
    this.writeResolvConf(router, [ADDR.inet]);
    await Promise.all([this.startWeb(), this.startDnsmasq()]);
  }

  /** The internet's web server: every Host, every path → the hello page. */
  private async startWeb(): Promise<void> {
    const script = this.file(
      'internet-web.mjs',
      `import http from 'node:http';
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => '&#' + c.charCodeAt(0) + ';');
http.createServer((q, s) => {
  const url = 'http://' + (q.headers.host ?? '${ADDR.inet}') + q.url;
  s.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  s.end('<!doctype html><html><head><title>The internet</title></head><body><h1 id="hello">${INTERNET_HELLO}</h1><p>You asked for <code id="url">' + esc(url) + '</code></p></body></html>\\n');
}).listen(80, '${ADDR.inet}', () => console.log('internet web ready'));
`,
    );
    const web = this.spawn(this.ns.inet, process.execPath, [script]);
    await waitForLine(web, /^internet web ready$/, 10_000, 'the internet web server');
  }

  /** dnsmasq: the upstream resolver, every name → 10.99.0.1; foreground, its own files. */
  private async startDnsmasq(): Promise<void> {
    const d = this.spawn(this.ns.inet, 'dnsmasq', [
      '--keep-in-foreground',
      '--log-facility=-',
      '--conf-file=/dev/null',
      '--no-resolv',
      '--no-hosts',
      `--address=/#/${ADDR.inet}`,
      // every other type (AAAA, HTTPS…): an empty answer, not REFUSED (there is no upstream)
      '--local=/#/',
      `--listen-address=${ADDR.inet}`,
      '--bind-interfaces',
      '--user=root',
      '--group=root',
      `--pid-file=${join(this.dir, 'dnsmasq.pid')}`,
      `--dhcp-leasefile=${join(this.dir, 'dnsmasq.leases')}`,
    ]);
    await waitForLine(d, /started, version/, 10_000, 'dnsmasq');
  }

  /** Run `metanet up` with the lab's config in the router namespace; resolves at its ready line. */
  async startGateway(): Promise<{ line: string; ms: number }> {
    if (this.gateway) throw new Error('gateway lab: the gateway is already running');
    const t0 = performance.now();
    const [node, ...args] = this.metanet;
    const gw = this.spawn(
      this.ns.router,
      node!,
      [...args, '--dir', this.sockDir, 'up', '--config', this.configFile],
      {
        env: { ...process.env, METANET_LOG: this.options.gatewayLog ?? 'info' },
      },
    );
    this.gateway = gw;
    gw.once('exit', () => {
      if (this.gateway === gw) this.gateway = undefined;
    });
    const log = (d: Buffer): void => {
      try {
        writeFileSync(this.gatewayLogFile, d, { flag: 'a' });
      } catch {
        // the lab dir is gone (closing)
      }
    };
    gw.stderr?.on('data', log);
    gw.stdout?.on('data', log);
    const line = await waitForLine(gw, /^gateway ready: /, 30_000, '`metanet up`', this.gatewayLogFile);
    return { line, ms: performance.now() - t0 };
  }

  /** SIGTERM the gateway and wait for it to stop (SIGKILL after `ms`). */
  async stopGateway(ms = 5000): Promise<void> {
    const gw = this.gateway;
    if (!gw || gw.exitCode !== null || gw.signalCode !== null) return;
    const gone = new Promise<void>((r) => gw.once('exit', () => r()));
    gw.kill('SIGTERM');
    const t = setTimeout(() => gw.kill('SIGKILL'), ms);
    await gone;
    clearTimeout(t);
  }

  /** The last lines of the gateway's log (for error messages). */
  gatewayLogTail(lines = 15): string {
    try {
      return readFileSync(this.gatewayLogFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no gateway log)';
    }
  }

  /** Run a command in a namespace; resolves with its exit code and output (non-zero is not an error). */
  exec(
    ns: string,
    cmd: string,
    args: readonly string[] = [],
    opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
  ): Promise<ExecResult> {
    const timeout = opts.timeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      execFile(
        'ip',
        ['netns', 'exec', ns, cmd, ...args],
        { timeout, killSignal: 'SIGKILL', cwd: REPO_ROOT, env: opts.env, maxBuffer: 64 << 20 },
        (err, stdout, stderr) => {
          if (err && (err as { killed?: boolean }).killed)
            reject(new Error(`timed out after ${timeout} ms: ${cmd} ${args.join(' ')} in ${ns}\n${stderr}`));
          else if (err && typeof (err as { code?: unknown }).code !== 'number')
            reject(new Error(`cannot run ${cmd} in ${ns}: ${err.message}`));
          else resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout, stderr });
        },
      );
    });
  }

  /** Start a long-running process in a namespace; killed at close(). */
  spawn(
    ns: string,
    cmd: string,
    args: readonly string[] = [],
    opts: { env?: NodeJS.ProcessEnv } = {},
  ): ChildProcess {
    if (this.closed) throw new Error('gateway lab: closed');
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], {
      cwd: REPO_ROOT,
      env: opts.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    child.on('error', () => this.children.delete(child));
    return child;
  }

  /** Write a file into the lab dir; returns its path. */
  file(name: string, content: string, mode = 0o644): string {
    const p = join(this.dir, name);
    writeFileSync(p, content);
    chmodSync(p, mode);
    return p;
  }

  /** MAC address of an interface, lowercase. */
  async mac(ns: string, ifname = 'c0'): Promise<string> {
    const r = await this.exec(ns, 'cat', [`/sys/class/net/${ifname}/address`]);
    if (r.code !== 0) throw new Error(`no interface ${ifname} in ${ns}: ${r.stderr.trim()}`);
    return r.stdout.trim().toLowerCase();
  }

  // ------------------------------------------------------------ clients

  /**
   * A lease with busybox udhcpc (`-f -q -n`), with a script of the lab's own that only records what
   * it is given (the stock script would rewrite the host's /etc/resolv.conf). Undefined when no
   * server answered within `tries` seconds.
   */
  async udhcpc(ns: string, ifname = 'c0', opts: UdhcpcOptions = {}): Promise<Lease | undefined> {
    return (await this.udhcpcRun(ns, ifname, opts)).lease;
  }

  /** `udhcpc` with its exit code, its messages (stderr) and the events its script saw. */
  async udhcpcRun(
    ns: string,
    ifname = 'c0',
    opts: UdhcpcOptions = {},
  ): Promise<{ lease: Lease | undefined; code: number; stderr: string; events: string[] }> {
    const tries = opts.tries ?? 3;
    const id = `udhcpc-${counter++}`;
    const log = join(this.dir, `${id}.env`);
    const script = this.file(
      `${id}.sh`,
      `#!/bin/sh\n{ echo "event=$1"; env; echo "--end--"; } >> '${log}'\nexit 0\n`,
      0o755,
    );
    const args = ['-i', ifname, '-f', '-n', '-t', String(tries), '-T', '1', '-A', '1', '-s', script];
    if (!opts.release) args.push('-q');
    if (opts.captivePortal ?? true) args.push('-O', '114');
    if (opts.release) args.push('-R');
    let r: { code: number; stderr: string };
    if (opts.release) {
      const c = this.spawn(ns, 'udhcpc', args);
      let stderr = '';
      c.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number>((res) => c.once('close', (code) => res(code ?? -1)));
      const bound = await waitForLine(c, /lease of \S+ obtained/, (tries + 5) * 1000, `udhcpc in ${ns}`).then(
        () => true,
        () => false,
      );
      if (bound) c.kill('SIGTERM');
      r = { code: await exited, stderr };
      if (bound && !/unicasting a release/.test(stderr))
        throw new Error(`udhcpc in ${ns}: bound, but sent no DHCPRELEASE when stopped\n${stderr}`);
    } else r = await this.exec(ns, 'udhcpc', args, { timeoutMs: (tries + 5) * 1000 });
    const all = readEvents(log);
    const events = all.map((e) => e.event ?? '');
    const bound = all.find((e) => e.event === 'bound');
    if (!bound?.ip) {
      if (r.code === 0 && !opts.release)
        throw new Error(`udhcpc in ${ns}: exit 0 but no bound event\n${r.stderr}`);
      return { lease: undefined, code: r.code, stderr: r.stderr, events };
    }
    const hex = bound.opt114;
    const lease: Lease = {
      ip: bound.ip,
      prefix: bound.mask ? Number(bound.mask) : maskBits(bound.subnet ?? '255.255.255.0'),
      router: words(bound.router),
      dns: words(bound.dns),
      leaseTime: bound.lease ? Number(bound.lease) : undefined,
      serverId: bound.serverid,
      captivePortal: hex !== undefined ? Buffer.from(hex, 'hex').toString() : undefined,
      env: bound,
    };
    return { lease, code: r.code, stderr: r.stderr, events };
  }

  /** Configure a lease as a client's script would: address, default route, resolv.conf. */
  async applyLease(ns: string, lease: Lease, ifname = 'c0'): Promise<void> {
    const lines = [`addr replace ${lease.ip}/${lease.prefix} dev ${ifname}`];
    if (lease.router[0]) lines.push(`route replace default via ${lease.router[0]}`);
    await ipBatch(ns, lines);
    this.writeResolvConf(ns, lease.dns);
  }

  /** What `ip netns exec NS` shows as /etc/resolv.conf. */
  writeResolvConf(ns: string, servers: readonly string[]): void {
    const text = servers.map((s) => `nameserver ${s}\n`).join('');
    for (let attempt = 0; ; attempt++) {
      try {
        mkdirSync(join(NETNS_ETC, ns), { recursive: true });
        writeFileSync(join(NETNS_ETC, ns, 'resolv.conf'), text);
        return;
      } catch (e) {
        // another lab removed an empty /etc/netns between our mkdir and write: once more
        if (attempt > 0 || (e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
  }

  /** curl from a namespace: status, Location, Content-Type, body, time. Never follows redirects. */
  async curl(ns: string, url: string, extra: readonly string[] = []): Promise<CurlResult> {
    const t0 = performance.now();
    const r = await this.exec(ns, 'curl', [
      '-s',
      '--connect-timeout',
      '3',
      '-m',
      '5',
      '-w',
      '\n%{http_code}\t%{content_type}\t%{redirect_url}',
      ...extra,
      url,
    ]);
    const ms = performance.now() - t0;
    if (r.code !== 0) return { code: -r.code, location: '', type: '', body: r.stderr, ms };
    const nl = r.stdout.lastIndexOf('\n');
    const [code = '0', type = '', location = ''] = r.stdout.slice(nl + 1).split('\t');
    return { code: Number(code), type, location, body: r.stdout.slice(0, nl), ms };
  }

  /**
   * Resolve `name` (A records) in a namespace by asking `server`: with `dig` when installed, else
   * busybox nslookup. Fails when the tool fails (timeout, SERVFAIL…).
   */
  async resolve(ns: string, name: string, server: string): Promise<{ addresses: string[]; tool: string }> {
    if (hasDig === undefined) hasDig = (await this.exec(ns, 'sh', ['-c', 'command -v dig'])).code === 0;
    const r = hasDig
      ? await this.exec(ns, 'dig', [
          `@${server}`,
          '+time=2',
          '+tries=1',
          '+noall',
          '+answer',
          '+comments',
          name,
          'A',
        ])
      : await this.exec(ns, 'busybox', ['nslookup', '-type=a', name, server]);
    const tool = hasDig ? 'dig' : 'busybox nslookup';
    const text = (r.stdout + r.stderr).trim();
    if (r.code !== 0) throw new Error(`${tool} ${name} @${server} failed (exit ${r.code}): ${text}`);
    if (hasDig) {
      const status = /status: (\w+)/.exec(r.stdout)?.[1];
      if (status !== 'NOERROR') throw new Error(`${tool} ${name} @${server}: ${status ?? text}`);
      const addresses = [...r.stdout.matchAll(/\sIN\s+A\s+(\d+\.\d+\.\d+\.\d+)/g)].map((m) => m[1]!);
      return { addresses, tool };
    }
    // busybox: "Server: …" and its "Address: …" first, then "Name: …" with the answers
    const answers = r.stdout
      .split(/^Name:/m)
      .slice(1)
      .join('\n');
    return { addresses: [...answers.matchAll(/Address:?\s*(\d+\.\d+\.\d+\.\d+)/g)].map((m) => m[1]!), tool };
  }

  // ------------------------------------------------------------ teardown

  /** Stop the gateway (SIGTERM), kill every process in the namespaces, delete them and the files. */
  close(): Promise<void> {
    this.closing ??= this.teardown();
    return this.closing;
  }

  private async teardown(): Promise<void> {
    if (this.closed) return;
    await this.stopGateway(3000).catch(() => {});
    if (this.closed) return;
    this.closed = true;
    const exited = [...this.children].map(
      (c) =>
        new Promise<void>((r) =>
          c.exitCode !== null || c.signalCode !== null ? r() : c.once('close', () => r()),
        ),
    );
    for (const c of this.children) c.kill('SIGKILL');
    const end = Date.now() + 3000;
    for (const ns of this.namespaces) {
      killAll(ns);
      while (pidsIn(ns).length > 0 && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 10));
        killAll(ns);
      }
      deleteNs(ns);
    }
    await Promise.race([Promise.all(exited), new Promise((r) => setTimeout(r, 2000).unref())]);
    this.removeFiles();
    open.delete(this);
  }

  /** Synchronous teardown, for exit handlers: everything SIGKILLed. */
  closeSync(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.children) c.kill('SIGKILL');
    for (const ns of this.namespaces) killAll(ns);
    for (const ns of this.namespaces) deleteNs(ns);
    this.removeFiles();
    open.delete(this);
  }

  private removeFiles(): void {
    for (const ns of this.namespaces) rmSync(join(NETNS_ETC, ns), { recursive: true, force: true });
    removeIfEmpty(NETNS_ETC);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------ helpers

/** Names of lab namespaces on this machine (every lab's, or those of one pid). */
export function labNamespaces(pid?: number): string[] {
  let names: string[];
  try {
    names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter(Boolean);
  } catch {
    return [];
  }
  return names.filter((n) => {
    const m = NAME_RE.exec(n);
    return m !== null && (pid === undefined || Number(m[1]) === pid);
  });
}

/** Remove what labs whose process is gone left behind: namespaces, /etc/netns dirs, temp dirs. */
export function sweepStale(): string[] {
  const swept: string[] = [];
  const dead = (name: string): boolean => {
    const m = NAME_RE.exec(name);
    return m !== null && !alive(Number(m[1]));
  };
  for (const ns of labNamespaces()) {
    if (!dead(ns)) continue;
    killAll(ns);
    deleteNs(ns);
    swept.push(ns);
  }
  for (const base of [NETNS_ETC, tmpdir()]) {
    let entries: string[] = [];
    try {
      entries = readdirSync(base);
    } catch {
      continue;
    }
    for (const e of entries)
      if (dead(e)) {
        rmSync(join(base, e), { recursive: true, force: true });
        swept.push(join(base, e));
      }
  }
  removeIfEmpty(NETNS_ETC);
  return swept;
}

/** Remove /etc/netns once no namespace has an entry there (labs create it). */
function removeIfEmpty(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // not empty, or not there
  }
}

/** Whether a process runs; a zombie (killed, not yet reaped by a lazy init) counts as dead. */
function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const lab of [...open]) lab.closeSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      process.removeListener(sig, onSignal);
      // Gracefully (the gateway stops first), but never longer than 5 s; a second signal kills at once.
      const graceful = Promise.all([...open].map((lab) => lab.close()));
      const limit = new Promise((r) => setTimeout(r, 5000).unref());
      void Promise.race([graceful, limit])
        .catch(() => {})
        .finally(() => {
          for (const lab of [...open]) lab.closeSync();
          // Re-raise unless someone else handles it (the process then decides when to exit).
          if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
        });
      process.once(sig, () => {
        for (const lab of [...open]) lab.closeSync();
        process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
      });
    };
    process.on(sig, onSignal);
  }
}

/** Resolve with the first line of the child's output matching `re`; fail if it exits or times out. */
export function waitForLine(
  child: ChildProcess,
  re: RegExp,
  ms: number,
  what: string,
  logFile?: string,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const recent: string[] = [];
    const bufs = ['', ''];
    const tail = (): string => {
      let extra = recent.slice(-8);
      if (logFile && existsSync(logFile))
        extra = readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-8);
      return extra.length ? `\n  ${extra.join('\n  ')}` : ' (no output)';
    };
    const onData =
      (i: number) =>
      (d: Buffer): void => {
        const lines = (bufs[i] + d.toString()).split('\n');
        bufs[i] = lines.pop() ?? '';
        for (const l of lines) {
          if (re.test(l)) {
            done();
            resolve(l);
            return;
          }
          recent.push(l);
          if (recent.length > 20) recent.shift();
        }
      };
    const out = onData(0);
    const err = onData(1);
    const onExit = (code: number | null, signal: string | null): void => {
      done();
      reject(new Error(`${what} exited (${code ?? signal}) before it was ready:${tail()}`));
    };
    const t = setTimeout(() => {
      done();
      reject(new Error(`${what} not ready within ${ms} ms:${tail()}`));
    }, ms);
    const done = (): void => {
      clearTimeout(t);
      child.stdout?.off('data', out);
      child.stderr?.off('data', err);
      child.off('exit', onExit);
    };
    child.stdout?.on('data', out);
    child.stderr?.on('data', err);
    child.on('exit', onExit);
  });
}

function readEvents(log: string): Record<string, string>[] {
  let text = '';
  try {
    text = readFileSync(log, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('--end--\n')
    .filter((b) => b.trim())
    .map((block) => {
      const env: Record<string, string> = {};
      for (const line of block.split('\n')) {
        const eq = line.indexOf('=');
        if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1);
      }
      return env;
    });
}

function words(s: string | undefined): string[] {
  return s?.trim() ? s.trim().split(/\s+/) : [];
}

function maskBits(mask: string): number {
  return mask
    .split('.')
    .map(Number)
    .reduce((n, b) => n + (b.toString(2).match(/1/g)?.length ?? 0), 0);
}

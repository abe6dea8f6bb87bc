/**
 * `npm start` (node dist/examples/gateway-lab/start.js [--once]): the guest-network gateway, live.
 *
 * Builds the lab of ./lab.ts (a router with a LAN and a guest network in network namespaces, an
 * "internet" with a web server and a resolver), runs the shipped examples/gateway.json in it with
 * `metanet up`, and walks guest1 through what a phone on a café's Wi-Fi does, printing each step
 * with its time:
 *
 *   DHCP (busybox udhcpc: address, router, DNS, option 114) → DNS through the router's forwarder
 *   → http://www.example.test/ redirected to the portal → splash page, CSRF token → POST /accept
 *   (303) → the same URL now reaches the internet → "guest online after N ms".
 *
 * Then it keeps serving and prints commands to try (metanet ls/monitor/call, curl and Chromium as
 * guest2) until Ctrl-C, which removes every namespace, nft table, socket and file it made.
 * `--once` stops after the walk-through (exit 0, everything removed); a failing step exits 1
 * naming it. Needs root.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ADDR, GatewayLab, INTERNET_HELLO, type Lease, REPO_ROOT } from './lab.js';

const URL_ = 'http://www.example.test/';
const NAME = 'www.example.test';

const args = process.argv.slice(2);
const once = args.includes('--once');
if (args.some((a) => a !== '--once')) {
  process.stderr.write('usage: node dist/examples/gateway-lab/start.js [--once]\n');
  process.exit(1);
}

if (process.getuid?.() !== 0) {
  process.stderr.write(
    'npm start needs root: it builds network namespaces, bridges and nftables tables.\n' +
      'Run it as root, e.g.: sudo npm start   (or: sudo node dist/examples/gateway-lab/start.js)\n',
  );
  process.exit(1);
}

const has = (tool: string): boolean => {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};
const missing = ['ip', 'udhcpc', 'dnsmasq', 'curl', 'nft', 'conntrack'].filter((t) => !has(t));
if (!has('dig') && !has('busybox')) missing.push('dig (or busybox nslookup)');
if (missing.length) {
  process.stderr.write(`npm start: missing ${missing.join(', ')}: run scripts/setup.sh as root\n`);
  process.exit(1);
}
if (!existsSync(join(REPO_ROOT, 'dist/src/cli/main.js'))) {
  process.stderr.write('npm start: dist/src/cli/main.js is missing: run `npm run build` first\n');
  process.exit(1);
}

const since = (): string => `${Math.round(performance.now())}`.padStart(6);
let stepNo = 0;
let current = 'starting';

/** Run one step: print it with its own time and the time since the command started. */
async function step<T>(name: string, fn: () => Promise<{ value: T; detail: string }>): Promise<T> {
  current = name;
  stepNo++;
  const t0 = performance.now();
  const { value, detail } = await fn();
  const ms = Math.round(performance.now() - t0);
  process.stdout.write(`[${since()} ms] ${stepNo}. ${name}: ${detail} (${ms} ms)\n`);
  return value;
}

class StepFailed extends Error {}
const fail = (why: string): never => {
  throw new StepFailed(why);
};

let lab: GatewayLab | undefined;
try {
  process.stdout.write('MetaNet guest-network gateway lab: examples/gateway.json in network namespaces\n');
  const l = await step('lab', async () => {
    const value = await GatewayLab.create();
    return {
      value,
      detail: `namespaces ${value.prefix}-{inet,router,lan1,guest1,guest2}; router eth0 ${ADDR.routerWan}, br-lan ${ADDR.lan}/24, br-guest ${ADDR.guest}/24; web and dnsmasq on ${ADDR.inet}`,
    };
  });
  lab = l;
  const guest = l.ns.guest1;
  await step('gateway', async () => {
    const r = await l.startGateway();
    return { value: r, detail: `metanet up in ${l.ns.router}: ${r.line}` };
  });
  const guestStart = performance.now();

  const lease = await step('guest1 DHCP', async () => {
    const value = await l.udhcpc(guest);
    if (!value) return fail('no DHCP lease within 3 s (udhcpc got no answer)');
    if (!value.captivePortal) return fail(`lease ${value.ip} without option 114 (captive-portal URI)`);
    await l.applyLease(guest, value);
    return {
      value,
      detail: `${value.ip}/${value.prefix}, router ${value.router.join(' ')}, DNS ${value.dns.join(' ')}, captive portal ${value.captivePortal}`,
    };
  });

  await step('guest1 DNS before login', async () => {
    const server = lease.dns[0] ?? fail('the lease names no DNS server');
    if (!lease.router.includes(server))
      fail(`the lease's DNS server ${server} is not the router's forwarder (${lease.router.join(' ')})`);
    const { addresses, tool } = await l.resolve(guest, NAME, server);
    if (!addresses.includes(ADDR.inet))
      fail(`${NAME} via ${server} gave ${addresses.join(' ') || 'no address'}, not ${ADDR.inet}`);
    return { value: addresses, detail: `${NAME} → ${addresses.join(' ')} via ${server} (${tool})` };
  });

  const redirect = await step('guest1 captive', async () => {
    const r = await l.curl(guest, URL_);
    if (r.code !== 302 || !r.location.startsWith(`http://${ADDR.guest}:`))
      fail(`curl ${URL_} gave ${describe(r)}, not a 302 to the portal`);
    return { value: r.location, detail: `curl ${URL_} → 302 ${r.location}` };
  });

  const form = await step('splash page', async () => {
    const r = await l.curl(guest, redirect);
    if (r.code !== 200) fail(`GET ${redirect} gave ${describe(r)}`);
    const csrf = /name="csrf" value="([^"]+)"/.exec(r.body)?.[1] ?? fail('no CSRF token on the splash page');
    const url = /name="url" value="([^"]*)"/.exec(r.body)?.[1] ?? '';
    const title = /<title>([^<]*)<\/title>/.exec(r.body)?.[1] ?? '';
    const action = new URL('/accept', redirect).toString();
    return {
      value: { csrf, url: unescapeHtml(url), action },
      detail: `200 "${unescapeHtml(title)}", CSRF token taken`,
    };
  });

  await step('accept', async () => {
    const body = `csrf=${encodeURIComponent(form.csrf)}&url=${encodeURIComponent(form.url)}`;
    const r = await l.curl(guest, form.action, ['-d', body]);
    if (r.code !== 303) fail(`POST ${form.action} gave ${describe(r)}, not 303`);
    return { value: r, detail: `POST ${form.action} → 303 ${r.location}` };
  });

  await step('guest1 online', async () => {
    // The login is in nft before the 303 is sent; a new connection goes through at once. Poll a
    // little in case the router is slow to apply it.
    const end = performance.now() + 3000;
    for (;;) {
      const r = await l.curl(guest, URL_);
      if (r.code === 200 && r.body.includes(INTERNET_HELLO))
        return { value: r, detail: `curl ${URL_} → 200 "${INTERNET_HELLO}"` };
      if (performance.now() > end) return fail(`curl ${URL_} still gives ${describe(r)} 3 s after login`);
      await new Promise((res) => setTimeout(res, 100));
    }
  });
  const online = performance.now();
  process.stdout.write(
    `guest online after ${Math.round(online)} ms (since the command started; guest steps ${Math.round(online - guestStart)} ms)\n`,
  );

  if (once) {
    current = 'cleanup';
    const t0 = performance.now();
    await l.close();
    lab = undefined;
    process.stdout.write(
      `cleaned up in ${Math.round(performance.now() - t0)} ms; total ${Math.round(performance.now())} ms\n`,
    );
    process.exit(0);
  }

  // Serving: give the other clients a lease too, so the commands below work as printed.
  const others: [string, Lease][] = [];
  for (const c of ['guest2', 'lan1'] as const) {
    const le = await l.udhcpc(l.ns[c]);
    if (le) {
      await l.applyLease(l.ns[c], le);
      others.push([c, le]);
    }
  }
  const metanet = `node ${join(REPO_ROOT, 'dist/src/cli/main.js')} --dir ${l.sockDir}`;
  const g2 = l.ns.guest2;
  process.stdout.write(
    [
      '',
      `Serving (total ${Math.round(performance.now())} ms). ${others.map(([c, le]) => `${c} has ${le.ip}`).join(', ')}.`,
      'Try, as root, in another terminal:',
      `  ${metanet} ls`,
      `  ${metanet} monitor portal`,
      `  ${metanet} call portal:/portal/clients`,
      `  ${metanet} status`,
      `  ip netns exec ${g2} curl -v ${URL_}                 # guest2: redirected to the portal`,
      `  ip netns exec ${l.ns.lan1} curl ${URL_}                       # the LAN is never captive`,
      `  ip netns exec ${g2} chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking --disable-component-update --user-data-dir=${join(l.dir, 'chromium-guest2')} --window-size=1024,768 --screenshot=/tmp/guest2.png ${URL_}`,
      `  tail -f ${l.gatewayLogFile}`,
      'Ctrl-C removes every namespace, table, socket and file of the lab.',
      '',
    ].join('\n'),
  );
  const stop = async (): Promise<void> => {
    const t0 = performance.now();
    await l.close();
    process.stdout.write(
      `\nstopped: namespaces ${l.prefix}-*, /etc/netns entries and ${l.dir} removed (${Math.round(performance.now() - t0)} ms)\n`,
    );
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
} catch (e) {
  const why = e instanceof Error ? e.message : String(e);
  process.stderr.write(`\nFAILED at step "${current}": ${why}\n`);
  if (lab) process.stderr.write(`gateway log (last lines):\n${lab.gatewayLogTail()}\n`);
  await lab?.close();
  process.exit(1);
}

function describe(r: { code: number; location: string; body: string }): string {
  if (r.code < 0) return `no answer (curl exit ${-r.code}: ${r.body.trim() || 'no message'})`;
  return `${r.code}${r.location ? ` → ${r.location}` : ''}`;
}

function unescapeHtml(s: string): string {
  return s
    .replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n)))
    .replace(/&#x([0-9a-f]+);/gi, (_, n: string) => String.fromCharCode(Number.parseInt(n, 16)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

import { isIPv4 } from 'node:net';
import type { Command } from 'commander';
import type { Bus } from '../core/bus.js';
import { isErrorCode, MetanetError } from '../core/errors.js';
import type { Message, MessageInit, Tuple } from '../core/message.js';

/**
 * `metanet portal …`: the captive portal's operator verbs (ndsctl's reach), each one request to a
 * portal mailbox (docs/apps/portal.md, "The operator"; docs/cli.md). Registered by main.ts.
 */
export interface PortalCliHelpers {
  /** The CLI's bus, connected to the socket directory. */
  readonly bus: () => Bus;
  /** Wrap a verb: errors become one line on stderr and an exit code (main.ts's `run`). */
  readonly run: <A extends unknown[]>(
    fn: (...a: A) => Promise<number | undefined>,
  ) => (...a: A) => Promise<void>;
  /** Print a line, or its JSON under --json. */
  readonly out: (human: string, json: unknown) => void;
  readonly json: () => boolean;
}

const MAC_RE = /^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$/i;

/** `IP|MAC` → the tuple naming it. */
export function device(arg: string): { ip: string } | { mac: string } {
  if (isIPv4(arg)) return { ip: arg };
  if (MAC_RE.test(arg)) return { mac: arg.toLowerCase().replaceAll('-', ':') };
  throw new MetanetError('EBADTUPLE', `"${arg}" is neither an IPv4 address nor a MAC (xx:xx:xx:xx:xx:xx)`);
}

function mac(arg: string): { mac: string } {
  const d = device(arg);
  if (!('mac' in d)) throw new MetanetError('EBADTUPLE', `"${arg}" is not a MAC (xx:xx:xx:xx:xx:xx)`);
  return d;
}

/** A message as a plain object (lists as objects; a repeated tag as an array). */
export function plain(m: Message): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  const value = (t: Tuple): unknown =>
    t.type === 'list'
      ? plain(t.value)
      : t.type === 'int' && typeof t.value === 'bigint'
        ? t.value.toString()
        : t.type === 'bytes'
          ? Buffer.from(t.value).toString('hex')
          : t.value;
  for (const t of m.tuples) {
    const v = value(t);
    if (!(t.tag in o)) o[t.tag] = v;
    else if (Array.isArray(o[t.tag])) (o[t.tag] as unknown[]).push(v);
    else o[t.tag] = [o[t.tag], v];
  }
  return o;
}

/** `1.2 MB` */
export function bytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** `1h02m`, `3m05s`, `42s`, `2d03h` */
export function duration(s: number): string {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  const two = (x: number): string => String(x).padStart(2, '0');
  if (d > 0) return `${d}d${two(h)}h`;
  if (h > 0) return `${h}h${two(m)}m`;
  if (m > 0) return `${m}m${two(sec)}s`;
  return `${sec}s`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function registerPortalCommands(program: Command, h: PortalCliHelpers): void {
  const portal = program
    .command('portal')
    .description('the captive portal: status, guests, log in/out, block and trust MACs (docs/apps/portal.md)')
    .option('--portal <address>', "the portal's daemon and mailbox prefix", 'portal:/portal');

  const base = (): string => {
    const a = portal.opts<{ portal: string }>().portal;
    if (!/^[A-Za-z0-9._-]+:\/\S*$/.test(a))
      throw new MetanetError('EBADPATH', `--portal "${a}": write daemon:/prefix (default portal:/portal)`);
    return a.replace(/\/$/, '');
  };
  /** One request; an error reply becomes an error with its code (the exit code follows from it). */
  const call = async (suffix: string, init: MessageInit = {}): Promise<Message> => {
    const r = await h.bus().request(`${base()}${suffix}`, init, { timeout: 10_000 });
    if (r.has('error')) {
      const code = r.str('code', 'EFAIL');
      throw new MetanetError(isErrorCode(code) ? code : 'EFAIL', r.str('error'));
    }
    return r;
  };

  portal
    .command('status')
    .description('uptime, guests online, logins since start, bytes each way')
    .action(
      h.run(async () => {
        const r = await call('/status');
        const lines = [
          `uptime    ${duration(r.int('uptime'))} (since ${new Date(r.int('started') * 1000).toISOString()})`,
          `online    ${r.int('online')} guest${r.int('online') === 1 ? '' : 's'}`,
          `logins    ${r.int('logins')} since start (${r.int('logouts')} logouts)`,
          `traffic   up ${bytes(r.int('bytes-up'))}, down ${bytes(r.int('bytes-down'))} since start`,
          `macs      ${r.int('trusted')} trusted, ${r.int('blocked')} blocked`,
          `garden    ${r.int('garden')} addresses learnt from DNS answers`,
          `refused   ${r.int('http-refused')} connections (per-client cap, file descriptors)`,
        ];
        h.out(lines.join('\n'), plain(r));
        return undefined;
      }),
    );

  portal
    .command('clients')
    .description('every guest online: address, MAC, hostname, time left, idle, bytes each way')
    .option('--json', 'one JSON object per guest')
    .action(
      h.run(async (o: { json?: boolean }) => {
        const r = await call('/clients');
        const clients = r.all('client').map((t) => t.value as Message);
        const now = Date.now() / 1000;
        if (o.json || h.json()) {
          for (const c of clients) process.stdout.write(`${JSON.stringify(plain(c))}\n`);
          return undefined;
        }
        if (clients.length === 0) {
          h.out('no guest online', {});
          return undefined;
        }
        const rows = [['IP', 'MAC', 'HOSTNAME', 'LEFT', 'IDLE', 'UP', 'DOWN']];
        for (const c of clients)
          rows.push([
            c.str('ip'),
            c.str('mac'),
            c.str('hostname') || '-',
            duration(Math.max(0, c.int('expires') - now)),
            duration(c.int('idle')),
            bytes(c.int('bytes-up')),
            bytes(c.int('bytes-down')),
          ]);
        h.out(table(rows), undefined);
        return undefined;
      }),
    );

  portal
    .command('client')
    .argument('<device>', 'IP or MAC')
    .description('one device: its state (online, captive, trusted, blocked) and its session')
    .action(
      h.run(async (arg: string) => {
        const r = await call('/client', device(arg));
        const o = plain(r);
        const lines = Object.entries(o)
          .filter(([k]) => k !== 'found')
          .map(([k, v]) => `${k.padEnd(14)}${String(v)}`);
        h.out(lines.join('\n'), o);
        return r.bool('found') ? undefined : 6;
      }),
    );

  portal
    .command('auth')
    .argument('<device>', 'IP or MAC')
    .option('-s, --seconds <n>', 'session length (default: the portal’s sessionSeconds)')
    .description('log a guest in (its MAC from the neighbour table or DHCP)')
    .action(
      h.run(async (arg: string, o: { seconds?: string }) => {
        let seconds: { 'session-timeout'?: number } = {};
        if (o.seconds !== undefined) {
          const n = Number(o.seconds);
          if (!Number.isInteger(n) || n < 1)
            throw new MetanetError('EBADTUPLE', `--seconds "${o.seconds}": whole seconds ≥ 1`);
          seconds = { 'session-timeout': n };
        }
        const r = await call('/authorize', { ...device(arg), ...seconds });
        const until = new Date(r.int('expires') * 1000).toISOString();
        h.out(`${r.str('ip')} (${r.str('mac')}) logged in until ${until}`, plain(r));
        return undefined;
      }),
    );

  portal
    .command('deauth')
    .argument('<device>', 'IP or MAC')
    .description('log a guest out (reason operator)')
    .action(
      h.run(async (arg: string) => {
        const r = await call('/logout', { ...device(arg), reason: 'operator' });
        const who = r.str('ip') || arg;
        h.out(r.bool('removed') ? `${who} logged out` : `${arg} had no session`, plain(r));
        return undefined;
      }),
    );

  for (const [verb, done] of [
    ['block', 'blocked'],
    ['unblock', 'unblocked'],
    ['trust', 'trusted'],
    ['untrust', 'untrusted'],
  ] as const)
    portal
      .command(verb)
      .argument('<mac>', 'the MAC')
      .description(
        {
          block: 'no access at all for a MAC (its sessions end, no DHCP lease); kept across restarts',
          unblock: 'take a MAC off the blocked list',
          trust: 'never captive: a MAC passes like a logged-in guest; kept across restarts',
          untrust: 'take a MAC off the trusted list',
        }[verb],
      )
      .action(
        h.run(async (arg: string) => {
          const r = await call(`/${verb}`, mac(arg));
          const ended =
            r.has('ended') && r.int('ended') > 0
              ? ` (${r.int('ended')} session${r.int('ended') === 1 ? '' : 's'} ended)`
              : '';
          h.out(
            r.bool('changed')
              ? `${r.str('mac')} ${done}${ended}`
              : `${r.str('mac')} was already ${done}${ended}`,
            plain(r),
          );
          return undefined;
        }),
      );
}

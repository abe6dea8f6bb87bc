import { execFile } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import type { Bus } from '../../core/bus.js';
import { MetanetError } from '../../core/errors.js';
import { type Context, STOP } from '../../core/listener.js';
import { type MessageInit, typed } from '../../core/message.js';
import { checkPath } from '../../core/path.js';
import { attachTable } from '../table.js';
import { canonicalIp, familyOf, ipv4, mac as macOf, port as portOf, timeout as timeoutOf } from './addr.js';
import { setElements } from './elements.js';
import { claim, ownerComment, self } from './owner.js';
import {
  authSet,
  buildRuleset,
  checkOptions,
  downSet,
  gardenDnsSet,
  MAC_LISTS,
  type MacList,
  type RulesetOptions,
  SETS,
} from './ruleset.js';
import { type NftAnswer, NftShell } from './shell.js';
import { emptyState, type FirewallState, loadState, prune, saveState } from './state.js';
import { firewallTable } from './table.js';

export { closeConnections } from './conntrack.js';
export { type Owner, readOwner } from './owner.js';
export { buildRuleset, type MacList, type RulesetOptions } from './ruleset.js';
export { firewallTable } from './table.js';

export interface FirewallOptions extends RulesetOptions {
  /** Mailbox prefix (default `/system/firewall`). */
  readonly name?: string;
  /** The nft command, maybe behind a prefix (default `['nft']`; tests: `['ip','netns','exec',NS,'nft']`). */
  readonly nft?: readonly string[];
  /** JSON state file; without one nothing survives a restart. */
  readonly stateFile?: string;
  /** Seconds an `allow` lasts when it names no timeout (default 3600). */
  readonly defaultTimeout?: number;
  /** Per nft command (default 2000 ms). */
  readonly commandTimeoutMs?: number;
}

/** The kinds of change counted by `stats()`: one per mailbox that changes the table. */
export const CHANGE_OPS = [
  'allow',
  'deny',
  'smtp_open',
  'smtp_close',
  'garden_add',
  'mac_add',
  'mac_remove',
] as const;
export type ChangeOp = (typeof CHANGE_OPS)[number];

/**
 * Upper bounds (seconds) of the buckets changes are counted in: nft answers in 1–2 ms on a quiet
 * router, 5–80 ms at p99 under load (docs/services/firewall.md, "Firewall open latency").
 */
export const CHANGE_BUCKETS: readonly number[] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1];

/** Counts of one kind of change since the service was installed (docs/services/firewall.md). */
export interface ChangeCount {
  /** Changes asked of nft and done (not a request that needed none, e.g. a MAC already listed; a delete of an element already gone is one). */
  count: number;
  /** Changes nft refused or did not answer in time (the request got an error). */
  errors: number;
  /** Seconds spent on the applied ones: from the request to nft's answer (its marker line). */
  seconds: number;
  /**
   * The applied ones by duration: `buckets[i]` took more than CHANGE_BUCKETS[i - 1] and at most
   * CHANGE_BUCKETS[i] seconds; the last, more than the highest bound. Not cumulative.
   */
  buckets: number[];
}

export interface FirewallService {
  readonly name: string;
  readonly table: string;
  /** The script loaded at start (with the restored elements). */
  readonly ruleset: string;
  /** PID of the long-lived nft process (for tests and diagnostics). */
  nftPid(): number | undefined;
  /** Changes by kind since install: plain counters, read by the owner's metrics. */
  stats(): Readonly<Record<ChangeOp, Readonly<ChangeCount>>>;
  /** Detach the mailboxes and stop nft. The table stays (clients keep access) unless `removeTable`. */
  close(opts?: { removeTable?: boolean }): Promise<void>;
}

/**
 * nftables for the captive portal: one table of the service's own (`inet metanet`), built at
 * start with one `nft -f -`, changed through one long-lived `nft -e -j -i`. See docs/services/firewall.md.
 * The table carries its owner (owner.ts): installing a table whose owner still runs fails with
 * EEXIST naming it; a dead owner's table is taken over.
 */
export async function installFirewallService(bus: Bus, opts: FirewallOptions): Promise<FirewallService> {
  const name = checkPath(opts.name ?? '/system/firewall');
  const o = checkOptions(opts);
  const nft = opts.nft ?? ['nft'];
  const t = o.table;
  const defaultTimeout = timeoutOf(opts.defaultTimeout ?? 3600, 'firewall defaultTimeout');
  let state: FirewallState = opts.stateFile ? loadState(opts.stateFile) : emptyState();
  const me = self(bus.name ?? `pid${process.pid}`, name);
  const owner = { comment: ownerComment(me), pid: me.pid };
  const release = await claim(nft, t, me);
  const ruleset = buildRuleset(opts, state, Date.now(), owner);
  try {
    await loadRuleset(nft, ruleset);
  } catch (e) {
    release();
    throw e;
  }
  /** When the table (and so every element counter) was last loaded: counters count from 0 since. */
  let loaded = Date.now();
  const save = (): void => {
    state = prune(state);
    if (opts.stateFile) saveState(opts.stateFile, state);
  };
  save();

  const shell = new NftShell({
    command: nft,
    timeoutMs: opts.commandTimeoutMs,
    onFailure: (reason) => bus.post(`${name}/error`, { mailbox: name, error: reason, code: 'EFAIL' }),
  });

  /**
   * Run a change; nft's refusal becomes an EFAIL error. "No such file or directory" means the element
   * is missing (`missingOk`: a delete of what is gone), or else that the table itself is gone (someone
   * ran `flush ruleset`): then the table is rebuilt from the state, reported on `<name>/error`, and
   * the command tried once more.
   */
  const change = async (
    line: string,
    missingOk = false,
    retried = false,
  ): Promise<NftAnswer & { missing: boolean }> => {
    const a = await shell.run(line);
    if (a.errors.length === 0) return { ...a, missing: false };
    const text = a.errors.join('; ');
    const enoent = a.errors.every((e) => e.includes('No such file or directory'));
    if (enoent && missingOk) return { ...a, missing: true };
    if (enoent && !retried) {
      // Another command may have rebuilt it meanwhile: then just try again.
      if (!(await tableExists())) {
        await loadRuleset(nft, buildRuleset(opts, prune(state), Date.now(), owner));
        loaded = Date.now();
        bus.post(`${name}/error`, {
          mailbox: name,
          error: `table inet ${t} was gone (flushed by someone else): rebuilt from the saved state`,
          code: 'EFAIL',
        });
      }
      return change(line, missingOk, true);
    }
    throw new MetanetError('EFAIL', `nft refused "${line}": ${text}`);
  };
  const tableExists = async (): Promise<boolean> =>
    (await shell.run(`list table inet ${t}`)).errors.length === 0;
  const read = async (line: string): Promise<unknown> => {
    const a = await change(line);
    if (a.json.length !== 1)
      throw new MetanetError('EPROTO', `nft: expected one JSON answer to "${line}", got ${a.json.length}`);
    return a.json[0];
  };
  const reply = (ctx: Context, init: MessageInit): void => {
    if (ctx.replyTo) ctx.reply(init).catch(() => {});
  };
  const changes = Object.fromEntries(
    CHANGE_OPS.map((op) => [
      op,
      { count: 0, errors: 0, seconds: 0, buckets: CHANGE_BUCKETS.map(() => 0).concat(0) },
    ]),
  ) as Record<ChangeOp, ChangeCount>;
  /** Run the nft part of a request as one counted change of kind `op`; its duration in ms. */
  const counted = async (op: ChangeOp, since: number, run: () => Promise<unknown>): Promise<number> => {
    try {
      await run();
    } catch (e) {
      changes[op].errors++;
      throw e;
    }
    const ms = performance.now() - since;
    const c = changes[op];
    c.count++;
    c.seconds += ms / 1000;
    let i = 0;
    while (i < CHANGE_BUCKETS.length && ms / 1000 > CHANGE_BUCKETS[i]!) i++;
    c.buckets[i]!++;
    return ms;
  };
  const authKey = (ip: string, mac: string): string => `${ip} . ${mac}`;
  const smtpKey = (c: string, s: string, p: number): string => `${c} . ${s} . ${p}`;

  /** Every authorised client with its counters both ways: `list set` of the auth and down sets, as JSON. */
  const readClients = async () => {
    const clients = [];
    for (const family of ['ipv4', 'ipv6'] as const) {
      const up = authSet(family);
      const down = downSet(family);
      const auth = setElements(await read(`list set inet ${t} ${up}`), up);
      const byIp = new Map(
        setElements(await read(`list set inet ${t} ${down}`), down).map((e) => [String(e.key[0]), e]),
      );
      for (const e of auth) {
        const ip = String(e.key[0]);
        const d = byIp.get(ip);
        clients.push({
          ip,
          mac: String(e.key[1]),
          family,
          timeout: e.timeout,
          expires: e.expires,
          'packets-up': e.packets,
          'bytes-up': e.bytes,
          'packets-down': d?.packets ?? 0,
          'bytes-down': d?.bytes ?? 0,
          // Before the download side existed these were the only counters: kept, meaning upload.
          packets: e.packets,
          bytes: e.bytes,
        });
      }
    }
    return clients;
  };

  const detach = attachTable(bus, name, firewallTable, {
    '/allow': async (m, ctx) => {
      const start = performance.now();
      const ip = canonicalIp(m.str('ip'), `${name}/allow ip`);
      const family = familyOf(ip, `${name}/allow ip`);
      const mac = macOf(m.str('mac'), `${name}/allow mac`);
      const timeout = timeoutOf(m.int('timeout', defaultTimeout), `${name}/allow`);
      // The address now belongs to this MAC: a binding to another MAC is stale, and so is the
      // address's download counter (it counted for the other device).
      const stale = state.clients.filter((c) => c.ip === ip && c.mac !== mac);
      // until nft answered (its marker line)
      const latency = await counted('allow', start, async () => {
        for (const old of stale)
          await change(`delete element inet ${t} ${authSet(family)} { ${authKey(old.ip, old.mac)} }`, true);
        if (stale.length > 0) await change(`delete element inet ${t} ${downSet(family)} { ${ip} }`, true);
        // Both sets in one line: one nft transaction. Adding again refreshes the timeouts, keeps the counters.
        await change(
          `add element inet ${t} ${authSet(family)} { ${authKey(ip, mac)} timeout ${timeout}s }; ` +
            `add element inet ${t} ${downSet(family)} { ${ip} timeout ${timeout}s }`,
        );
      });
      state.clients = state.clients.filter((c) => c.ip !== ip);
      state.clients.push({ ip, mac, timeout, expiresAt: Date.now() + timeout * 1000 });
      save();
      reply(ctx, { ip, mac, family, timeout, latency: typed.float(latency) });
      return STOP;
    },
    '/deny': async (m, ctx) => {
      const start = performance.now();
      const ip = canonicalIp(m.str('ip'), `${name}/deny ip`);
      const family = familyOf(ip, `${name}/deny ip`);
      const mac = macOf(m.str('mac'), `${name}/deny mac`);
      let removed = false;
      await counted('deny', start, async () => {
        const a = await change(`delete element inet ${t} ${authSet(family)} { ${authKey(ip, mac)} }`, true);
        removed = !a.missing;
        state.clients = state.clients.filter((c) => !(c.ip === ip && c.mac === mac));
        if (!state.clients.some((c) => c.ip === ip)) {
          await change(`delete element inet ${t} ${downSet(family)} { ${ip} }`, true);
          for (const s of state.smtp.filter((x) => x.client === ip))
            await change(
              `delete element inet ${t} ${SETS.smtp4} { ${smtpKey(s.client, s.server, s.port)} }`,
              true,
            );
          state.smtp = state.smtp.filter((x) => x.client !== ip);
        }
      });
      save();
      reply(ctx, { ip, mac, removed });
      return STOP;
    },
    '/smtp/open': async (m, ctx) => {
      const start = performance.now();
      const client = ipv4(m.str('client'), `${name}/smtp/open client`);
      const server = ipv4(m.str('server'), `${name}/smtp/open server`);
      const port = portOf(m.int('port', 25), `${name}/smtp/open`);
      const timeout = timeoutOf(m.int('timeout'), `${name}/smtp/open`);
      await counted('smtp_open', start, () =>
        change(
          `add element inet ${t} ${SETS.smtp4} { ${smtpKey(client, server, port)} timeout ${timeout}s }`,
        ),
      );
      state.smtp = state.smtp.filter((s) => !(s.client === client && s.server === server && s.port === port));
      state.smtp.push({ client, server, port, timeout, expiresAt: Date.now() + timeout * 1000 });
      save();
      reply(ctx, { client, server, port, timeout });
      return STOP;
    },
    '/smtp/close': async (m, ctx) => {
      const start = performance.now();
      const client = ipv4(m.str('client'), `${name}/smtp/close client`);
      const server = ipv4(m.str('server'), `${name}/smtp/close server`);
      const port = portOf(m.int('port', 25), `${name}/smtp/close`);
      let removed = false;
      await counted('smtp_close', start, async () => {
        removed = !(
          await change(`delete element inet ${t} ${SETS.smtp4} { ${smtpKey(client, server, port)} }`, true)
        ).missing;
      });
      state.smtp = state.smtp.filter((s) => !(s.client === client && s.server === server && s.port === port));
      save();
      reply(ctx, { client, server, port, removed });
      return STOP;
    },
    '/garden/add': async (m, ctx) => {
      const start = performance.now();
      const timeout = timeoutOf(m.int('timeout'), `${name}/garden/add`);
      const now = Date.now();
      const expiresAt = now + timeout * 1000;
      const ips = m.all('ip').map((x) => canonicalIp(String(x.value), `${name}/garden/add ip`));
      // An element is only ever extended (nft's add element sets the timeout, shorter too), and
      // only when that gains something: a cached answer seen again changes nothing.
      const slack = Math.max(30_000, timeout * 100);
      const fresh = ips.filter((ip, i) => {
        const had = state.garden.find((g) => g.ip === ip);
        return ips.indexOf(ip) === i && (!had || expiresAt > had.expiresAt + slack);
      });
      if (fresh.length > 0) {
        await counted('garden_add', start, () =>
          change(
            fresh
              .map(
                (ip) =>
                  `add element inet ${t} ${gardenDnsSet(familyOf(ip, 'ip'))} { ${ip} timeout ${timeout}s }`,
              )
              .join('; '),
          ),
        );
        state.garden = state.garden.filter((g) => !fresh.includes(g.ip));
        for (const ip of fresh) state.garden.push({ ip, timeout, expiresAt });
        save();
      }
      reply(ctx, { count: ips.length, added: fresh.length, timeout });
      return STOP;
    },
    '/mac/add': async (m, ctx) => {
      const start = performance.now();
      const list = macList(m.str('list'), `${name}/mac/add`);
      const mac = macOf(m.str('mac'), `${name}/mac/add mac`);
      const had = state[list].includes(mac);
      if (!had) {
        await counted('mac_add', start, () => change(`add element inet ${t} ${SETS[list]} { ${mac} }`));
        state[list] = [...state[list], mac];
        save();
      }
      reply(ctx, { list, mac, added: !had });
      return STOP;
    },
    '/mac/remove': async (m, ctx) => {
      const start = performance.now();
      const list = macList(m.str('list'), `${name}/mac/remove`);
      const mac = macOf(m.str('mac'), `${name}/mac/remove mac`);
      let removed = false;
      await counted('mac_remove', start, async () => {
        removed = !(await change(`delete element inet ${t} ${SETS[list]} { ${mac} }`, true)).missing;
      });
      const had = state[list].includes(mac);
      state[list] = state[list].filter((x) => x !== mac);
      if (had) save();
      reply(ctx, { list, mac, removed });
      return STOP;
    },
    '/clients': async (_m, ctx) => {
      // Counters restart from 0 when the table is rebuilt: read again if that happened meanwhile, so
      // `loaded` is the load these counters count from.
      let since = loaded;
      let clients = await readClients();
      if (loaded !== since) {
        since = loaded;
        clients = await readClients();
      }
      reply(ctx, { count: clients.length, loaded: since, client: clients });
      return STOP;
    },
    '/list': async (_m, ctx) => {
      const doc = await read(`list table inet ${t}`);
      const items = (doc as { nftables?: unknown }).nftables;
      const sets: string[] = [];
      const chains: string[] = [];
      if (Array.isArray(items))
        for (const it of items) {
          const s = (it as { set?: { name?: unknown } }).set?.name;
          const c = (it as { chain?: { name?: unknown } }).chain?.name;
          if (typeof s === 'string') sets.push(s);
          if (typeof c === 'string') chains.push(c);
        }
      const smtp = setElements(doc, SETS.smtp4).map((e) => ({
        client: String(e.key[0]),
        server: String(e.key[1]),
        port: Number(e.key[2]),
        timeout: e.timeout,
        expires: e.expires,
      }));
      const garden = [SETS.gardendns4, SETS.gardendns6].flatMap((set) =>
        setElements(doc, set).map((e) => ({ ip: String(e.key[0]), timeout: e.timeout, expires: e.expires })),
      );
      const macs = (set: string): string[] => setElements(doc, set).map((e) => String(e.key[0]));
      reply(ctx, {
        table: `inet ${t}`,
        ruleset,
        set: sets,
        chain: chains,
        smtp,
        garden,
        trusted: macs(SETS.trusted),
        blocked: macs(SETS.blocked),
      });
      return STOP;
    },
  });

  let closed = false;
  return {
    name,
    table: t,
    ruleset,
    nftPid: () => shell.pid,
    stats: () => changes,
    async close(c = {}) {
      if (closed) return;
      closed = true;
      detach();
      // The table stays (clients keep access) but is released: another process may take it over.
      if (c.removeTable) await shell.run(`delete table inet ${t}`).catch(() => {});
      else await shell.run(`flush set inet ${t} ${SETS.owner}`).catch(() => {});
      await shell.close();
      release();
    },
  };
}

function macList(s: string, what: string): MacList {
  if ((MAC_LISTS as readonly string[]).includes(s)) return s as MacList;
  throw new MetanetError(
    'EBADTUPLE',
    `${what}: list must be ${MAC_LISTS.join(' or ')}, got ${JSON.stringify(s)}`,
  );
}

/** Load the whole ruleset with one `nft -f -`; fails with nft's own message. */
function loadRuleset(nft: readonly string[], text: string): Promise<void> {
  const [cmd = 'nft', ...pre] = nft;
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, [...pre, '-f', '-'], { timeout: 10_000 }, (err, _out, stderr) => {
      if (!err) return resolve();
      reject(
        new MetanetError(
          'ECONFIG',
          `firewall: nft -f - refused the ruleset: ${stderr.trim() || err.message}`,
        ),
      );
    });
    child.stdin?.on('error', () => {}); // EPIPE when nft (or its prefix) exits early: reported above
    child.stdin?.end(text);
  });
}

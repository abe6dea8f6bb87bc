#!/usr/bin/env node
import { readdirSync } from 'node:fs';
import { Command } from 'commander';
import { Bus } from '../core/bus.js';
import { isMetanetError, MetanetError } from '../core/errors.js';
import { CONTINUE, STOP } from '../core/listener.js';
import { silentLogger } from '../core/log.js';
import type { Message } from '../core/message.js';
import { parseAddress } from '../core/path.js';
import { attachClient, serveDaemon } from '../ipc/daemon.js';
import { socketDir } from '../ipc/dir.js';
import type { SocketTransport } from '../ipc/transport.js';
import { lsText, messageJson, resultJson, resultText } from './output.js';
import { registerPortalCommands } from './portal.js';
import { parseTuples } from './tuples.js';

/** Exit codes (docs/cli.md). */
export const EXIT = {
  ok: 0,
  usage: 1,
  noDaemon: 2,
  timeout: 3,
  denied: 4,
  undelivered: 5,
  failed: 6,
} as const;

interface Global {
  dir?: string;
  json?: boolean;
}

const program = new Command('metanet')
  .description('Talk to MetaNet daemons: list, send, call, listen, monitor, wait.')
  .option('--dir <dir>', 'socket directory (default: $METANET_DIR or /run/metanet)')
  .option('--json', 'print JSON, one object per line')
  .showHelpAfterError()
  .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : EXIT.usage));

function globals(): Global {
  return program.opts<Global>();
}

function out(human: string, json: unknown): void {
  process.stdout.write(`${globals().json ? JSON.stringify(json) : human}\n`);
}

let client: { bus: Bus; transport: SocketTransport } | undefined;
function connect(): { bus: Bus; transport: SocketTransport } {
  if (!client) {
    const bus = new Bus({ name: `metanet-${process.pid}`, logger: silentLogger });
    client = { bus, transport: attachClient(bus, { dir: globals().dir }) };
  }
  return client;
}

async function done(code: number = EXIT.ok): Promise<never> {
  await client?.bus.close(100);
  // Exiting with output still queued for a pipe would cut it (a big --json reply): drain first.
  if (process.stdout.writableLength > 0) await new Promise((r) => process.stdout.once('drain', r));
  process.exit(code);
}

/** Wrap a verb: known errors become one line on stderr and a documented exit code. */
function run<A extends unknown[]>(fn: (...a: A) => Promise<number | undefined>) {
  return async (...a: A): Promise<void> => {
    try {
      await done((await fn(...a)) ?? EXIT.ok);
    } catch (e) {
      process.stderr.write(`metanet: ${e instanceof Error ? e.message : String(e)}\n`);
      await done(exitCode(e));
    }
  };
}

function exitCode(e: unknown): number {
  if (!isMetanetError(e)) return EXIT.failed;
  switch (e.code) {
    case 'EBADPATH':
    case 'EBADTUPLE':
    case 'ECONFIG':
      return EXIT.usage;
    case 'ENODAEMON':
    case 'EUNREACHABLE':
      return EXIT.noDaemon;
    case 'ETIMEDOUT':
      return EXIT.timeout;
    case 'EDENIED':
      return EXIT.denied;
    case 'ENOLISTENER':
      return EXIT.undelivered;
    default:
      return EXIT.failed;
  }
}

/** An address that names a daemon: `daemon:/path`. */
function remote(address: string): string {
  const a = parseAddress(address);
  if (a.daemon === undefined)
    throw new MetanetError('EBADPATH', `"${address}" names no daemon: write daemon:/path (see metanet ls)`);
  return address;
}

program
  .command('ls')
  .argument('[daemon]', 'a daemon: list its mailboxes, their tuples and listeners')
  .description('list running daemons, or one daemon’s mailboxes')
  .action(
    run(async (daemon?: string) => {
      const { transport } = connect();
      if (daemon !== undefined) {
        const m = await (await transport.link(daemon)).ls();
        out(lsText(m), messageJson(m));
        return EXIT.ok;
      }
      const dir = socketDir(globals().dir);
      let names: string[] = [];
      try {
        names = readdirSync(dir)
          .filter((f) => f.endsWith('.sock'))
          .map((f) => f.slice(0, -5))
          .sort();
      } catch {}
      for (const name of names) {
        let denied = false;
        const link = await transport.link(name).catch((e: unknown) => {
          denied = isMetanetError(e, 'EDENIED'); // EACCES on the socket: running, but not for us
          return undefined;
        });
        const state = link
          ? `pid ${link.peerPid}`
          : denied
            ? 'denied (no permission to open its socket)'
            : 'not running (stale socket)';
        out(`${name}  ${state}`, {
          daemon: name,
          running: link !== undefined || denied,
          denied,
          pid: link?.peerPid ?? null,
        });
      }
      if (names.length === 0 && !globals().json) process.stderr.write(`no daemons in ${dir}\n`);
      return EXIT.ok;
    }),
  );

program
  .command('send')
  .argument('<address>', 'daemon:/mailbox')
  .argument('[tuples...]', 'tag=value …')
  .description('send a message; prints what happened to it')
  .action(
    run(async (address: string, tuples: string[]) => {
      const m = parseTuples(tuples);
      const r = await connect().bus.send(remote(address), m);
      out(resultText(r), resultJson(r));
      return r.delivered ? EXIT.ok : EXIT.undelivered;
    }),
  );

program
  .command('call')
  .argument('<address>', 'daemon:/mailbox')
  .argument('[tuples...]', 'tag=value …')
  .option('-t, --timeout <ms>', 'how long to wait for the reply', '5000')
  .description('request/reply: send with a reply-to and print the reply')
  .action(
    run(async (address: string, tuples: string[], o: { timeout: string }) => {
      const reply = await connect().bus.request(remote(address), parseTuples(tuples), {
        timeout: ms(o.timeout),
      });
      out(reply.toString(), messageJson(reply));
      return undefined;
    }),
  );

program
  .command('listen')
  .argument('<address>', 'daemon:/mailbox (globs are not listened to; see monitor)')
  .option('--prepend', 'go first in the chain (intercept)')
  .option('--stop', 'stop the chain after this listener (with --prepend: nobody else sees the messages)')
  .option(
    '--reply <tag=value>',
    'answer each message that has a reply-to with this tuple (repeatable)',
    collect,
    [],
  )
  .option('-n, --count <n>', 'exit after n messages')
  .option('--timeout <ms>', 'how long the daemon waits for this listener (default 1000)')
  .description('print messages as they arrive in a daemon’s mailbox')
  .action(
    run(
      async (
        address: string,
        o: { prepend?: boolean; stop?: boolean; reply?: string[]; count?: string; timeout?: string },
      ) => {
        const { bus } = connect();
        const reply = o.reply?.length ? parseTuples(o.reply) : undefined;
        const limit = o.count !== undefined ? Number(o.count) : Number.POSITIVE_INFINITY;
        let seen = 0;
        let finish!: () => void;
        const finished = new Promise<void>((r) => (finish = r));
        const h = bus.listen(
          remote(address),
          async function cli(m, ctx) {
            if (seen >= limit) return CONTINUE;
            seen++;
            out(`${ctx.mailbox}  ${m}`, { mailbox: ctx.mailbox, tuples: messageJson(m) });
            if (reply && ctx.replyTo) await ctx.reply(reply);
            if (seen >= limit) setImmediate(finish);
            return o.stop ? STOP : CONTINUE;
          },
          {
            position: o.prepend ? 'prepend' : 'append',
            identity: { cli: 'listen', pid: process.pid },
            timeout: o.timeout !== undefined ? ms(o.timeout) : undefined,
          },
        );
        await h.ready;
        process.stderr.write(
          `listening on ${address}${o.prepend ? ' (first)' : ''}${o.stop ? ', stopping the chain' : ''}\n`,
        );
        await Promise.race([finished, signalled()]);
        h.remove();
        return undefined;
      },
    ),
  );

program
  .command('monitor')
  .argument('<daemon>', 'the daemon to watch')
  .argument('[pattern]', 'mailboxes to watch (* one segment, ** any)', '/**')
  .description('print every message queued in a daemon’s mailboxes')
  .action(
    run(async (daemon: string, pattern: string) => {
      const link = await connect().transport.link(daemon);
      const stop = await link.monitor(pattern, (path, m, listened) =>
        out(`${path}  ${m}${listened ? '' : '  (no listener)'}`, {
          mailbox: path,
          tuples: messageJson(m),
          listened,
        }),
      );
      process.stderr.write(`monitoring ${daemon}:${pattern}\n`);
      const why = await Promise.race([signalled(), link.gone]);
      stop();
      if (why instanceof Error) throw new MetanetError('EUNREACHABLE', `${daemon} went away: ${why.message}`);
      return undefined;
    }),
  );

program
  .command('wait')
  .argument('<address>', 'daemon:/mailbox')
  .option('-m, --match <tag=value>', 'only a message that has this tuple (repeatable)', collect, [])
  .option('-t, --timeout <ms>', 'give up after this long (exit 3)', '30000')
  .description('wait for one message (optionally matching tuples), print it, exit')
  .action(
    run(async (address: string, o: { match?: string[]; timeout: string }) => {
      const m = await connect().bus.wait(remote(address), {
        match: o.match?.length ? parseTuples(o.match) : undefined,
        timeout: ms(o.timeout),
      });
      out(m.toString(), messageJson(m));
      return undefined;
    }),
  );

program
  .command('daemon')
  .argument('<name>', 'daemon name')
  .description('run an empty daemon (a meeting point for listeners and senders)')
  .action(
    run(async (name: string) => {
      const bus = new Bus({ name });
      const d = await serveDaemon(bus, { dir: globals().dir, signals: false });
      process.stderr.write(`daemon ${name} listening on ${d.path}\n`);
      await signalled();
      await d.close();
      await bus.close(200);
      return undefined;
    }),
  );

program
  .command('up')
  .option('-c, --config <file>', 'gateway config (JSON or YAML)', '/etc/metanet/gateway.json')
  .option('--check', 'validate the config and exit (0, or 1 naming every bad field)')
  .description('run the gateway: every app of the config, one process (docs/gateway.md)')
  .action(async (o: { config: string; check?: boolean }) => {
    const { up } = await import('./up.js');
    process.exit(await up({ ...o, dir: globals().dir }));
  });

program
  .command('app')
  .argument('<name>', 'dhcpd, dns, dhcp-ldap, portal or mailproxy')
  .option('-c, --config <file>', "the app's own config, or a gateway config", '/etc/metanet/gateway.json')
  .option('--metrics <addr:port>', 'also serve Prometheus /metrics there (docs/metrics.md)')
  .description('run one app in this process (what metanet@.service does)')
  .action(async (name: string, o: { config: string; metrics?: string }) => {
    const { APPS, APP_NAMES } = await import('../apps/registry.js');
    const load = APPS[name];
    if (!load) {
      process.stderr.write(`metanet: no app "${name}" (known: ${APP_NAMES.join(', ')})\n`);
      process.exit(EXIT.usage);
    }
    const { runApp } = await import('../apps/runner.js');
    const dir = globals().dir;
    await runApp(await load(), {
      argv: [
        '--config',
        o.config,
        ...(dir ? ['--dir', dir] : []),
        ...(o.metrics ? ['--metrics', o.metrics] : []),
      ],
    });
  });

program
  .command('reload')
  .description('make `metanet up` read its config again and apply what changed')
  .action(
    run(async () => {
      const r = await connect().bus.request('gateway:/gateway/reload', {}, { timeout: 60_000 });
      if (!r.bool('ok')) {
        process.stderr.write(`metanet: reload refused, the running config is kept:\n${r.str('error')}\n`);
        return EXIT.usage;
      }
      const list = (tag: string): string =>
        r
          .all(tag)
          .map((t) => String(t.value))
          .join(' ') || 'none';
      out(
        `restarted: ${list('restarted')}; started: ${list('started')}; stopped: ${list('stopped')}; unchanged: ${list('unchanged')}`,
        messageJson(r),
      );
      return EXIT.ok;
    }),
  );

program
  .command('status')
  .description('the apps `metanet up` runs, with a few figures each')
  .action(
    run(async () => {
      const r = await connect().bus.request('gateway:/gateway/status', {});
      const apps = r.all('app').map((t) => t.value as Message);
      if (globals().json) out('', messageJson(r));
      else for (const a of apps) out([...a].map((t) => `${t.tag}=${String(t.value)}`).join('  '), undefined);
      return EXIT.ok;
    }),
  );

function collect(v: string, all: string[]): string[] {
  return [...all, v];
}

function ms(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new MetanetError('EBADTUPLE', `bad duration "${v}" (milliseconds)`);
  return n;
}

function signalled(): Promise<void> {
  return new Promise((r) => {
    process.once('SIGINT', () => r());
    process.once('SIGTERM', () => r());
  });
}

registerPortalCommands(program, { bus: () => connect().bus, run, out, json: () => globals().json === true });

await program.parseAsync(process.argv);

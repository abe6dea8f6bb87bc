import { hostname } from 'node:os';
import { connect, type NodeConnectionOptions } from '@nats-io/transport-node';
import type { Bus } from '../../core/bus.js';
import { MetanetError } from '../../core/errors.js';
import { checkName } from '../../core/path.js';
import { checkPrefix, DEFAULT_PREFIX, Subjects } from './subjects.js';
import { NatsTransport } from './transport.js';

export interface NatsOptions {
  /** NATS server URL(s), e.g. `nats://10.0.0.1:4222`. */
  readonly servers: string | readonly string[];
  /** This machine's name in addresses (`host/daemon:/path`). Default: `os.hostname()`. */
  readonly host?: string;
  /** First subject tokens (default `metanet`): separate installations sharing one NATS. */
  readonly prefix?: string;
  /** How long a send waits for the remote chain's result, and an attach for its answer (ms). Default 5000. */
  readonly timeout?: number;
  /** Re-send remote listeners' attach requests this often (ms); 0 turns it off. Default 30000. */
  readonly refreshMs?: number;
  /**
   * Passed to the NATS client as is: authentication (`user`/`pass`, `token`, `authenticator`),
   * `tls`, reconnect settings. Defaults here: reconnect forever, every 250 ms (± 100 ms jitter).
   */
  readonly connection?: Omit<NodeConnectionOptions, 'servers'>;
}

/**
 * Attach a NATS transport to a bus: its daemon becomes reachable from other machines as
 * `<host>/<bus name>:/path`, and it reaches theirs (docs/nats.md). Resolves once subscribed.
 */
export async function attachNats(bus: Bus, options: NatsOptions): Promise<NatsTransport> {
  if (!bus.name) throw new MetanetError('ECONFIG', 'NATS needs a named bus: new Bus({ name })');
  const host = options.host ?? defaultHost();
  checkName(host, 'host name');
  const subjects = new Subjects(checkPrefix(options.prefix ?? DEFAULT_PREFIX));
  const servers = typeof options.servers === 'string' ? [options.servers] : [...options.servers];
  let nc: Awaited<ReturnType<typeof connect>>;
  try {
    nc = await connect({
      name: `metanet ${host}/${bus.name}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      reconnectJitter: 100,
      ...options.connection,
      servers,
    });
  } catch (e) {
    throw new MetanetError(
      'EUNREACHABLE',
      `cannot connect to NATS at ${servers.join(', ')}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    );
  }
  const t = new NatsTransport(bus, nc, {
    host,
    subjects,
    timeout: options.timeout ?? 5000,
    refreshMs: options.refreshMs ?? 30000,
  });
  try {
    await t.start();
  } catch (e) {
    await nc.close();
    throw e;
  }
  bus.attach(t);
  return t;
}

/** The machine's name, as far as it is a valid host name (`ap2.lan` stays; odd characters do not). */
function defaultHost(): string {
  const h = hostname();
  try {
    return checkName(h, 'host name');
  } catch {
    throw new MetanetError(
      'ECONFIG',
      `the hostname ${JSON.stringify(h)} is not a valid host name: pass { host }`,
    );
  }
}

import {
  type Msg,
  type NatsConnection,
  nuid,
  RequestError,
  type Subscription,
  TimeoutError,
} from '@nats-io/transport-node';
import type { Bus } from '../../core/bus.js';
import { isMetanetError, MetanetError } from '../../core/errors.js';
import {
  CONTINUE,
  type Listener,
  type ListenerHandle,
  type ListenerInfo,
  type ListenerResult,
  type ListenOptions,
  type SendResult,
  STOP,
} from '../../core/listener.js';
import { Message } from '../../core/message.js';
import type { Address } from '../../core/path.js';
import type { RemoteAttachment, Transport } from '../../core/transport.js';
import { RELAY, REPLY_PREFIX, relayTarget } from '../frames.js';
import { REMOTE_TIMEOUT } from '../link.js';
import { listenFor } from '../proxies.js';
import { F, type Frame } from '../wire.js';
import {
  deliverFrame,
  errorFrame,
  errorFromFrame,
  handedOver,
  listenFrame,
  okFrame,
  parseDeliver,
  parseListen,
  parseSend,
  parseUnlisten,
  resultFrame,
  resultFromFrame,
  sendFrame,
  unlistenFrame,
  unpack,
  verdictFrame,
} from './frames.js';
import type { Subjects } from './subjects.js';

export interface NatsTransportOptions {
  /** This machine's name (`host` in `host/daemon:/path`). */
  readonly host: string;
  readonly subjects: Subjects;
  /** How long a send waits for the remote chain's result (ms). */
  readonly timeout: number;
  /** Re-send every listener's attach request this often (ms); 0: only on (re)connect events. */
  readonly refreshMs: number;
}

/** One of this process's listeners, attached to a mailbox of a daemon on another machine. */
interface OutListener {
  readonly lid: number;
  readonly host: string;
  readonly daemon: string;
  readonly path: string;
  readonly fn: Listener;
  readonly options: ListenOptions;
  readonly info: ListenerInfo;
  /** Where the target delivers to it. */
  readonly subject: string;
  readonly sub: Subscription;
}

/**
 * Reaches daemons on other machines over NATS and makes this bus's daemon reachable from them
 * (docs/nats.md). One NATS connection per bus; the NATS client reconnects by itself, and this
 * transport re-attaches its remote listeners when it does.
 */
export class NatsTransport implements Transport {
  readonly daemon: string;
  /** Unique per process run: delivery subjects of a restarted process never collide with the old ones. */
  readonly instance = nuid.next();
  private readonly out = new Map<number, OutListener>();
  /** Proxies standing in this bus for listeners of other machines, by delivery subject. */
  private readonly proxies = new Map<string, ListenerHandle>();
  private readonly subs: Subscription[] = [];
  private refresh: NodeJS.Timeout | undefined;
  private nextLid = 1;
  private closed = false;

  constructor(
    private readonly bus: Bus,
    readonly nc: NatsConnection,
    private readonly o: NatsTransportOptions,
  ) {
    this.daemon = bus.name ?? '';
  }

  get host(): string {
    return this.o.host;
  }

  /** Subscribe to this daemon's subjects; resolves once the server has them. */
  async start(): Promise<void> {
    const s = this.o.subjects;
    this.subs.push(
      this.nc.subscribe(s.send(this.host, this.daemon), { callback: (_e, m) => this.onSend(m) }),
      this.nc.subscribe(s.listen(this.host, this.daemon), { callback: (_e, m) => this.onListen(m) }),
      this.nc.subscribe(s.anyUp, { callback: (_e, m) => this.onUp(m) }),
    );
    await this.nc.flush();
    this.announce();
    void this.watch();
    if (this.o.refreshMs > 0) {
      this.refresh = setInterval(() => this.reattach(() => true), this.o.refreshMs);
      this.refresh.unref();
    }
  }

  handles(addr: Address): boolean {
    return addr.host !== undefined;
  }

  private isSelf(addr: Address): boolean {
    return addr.host === this.host && addr.daemon === this.daemon;
  }

  // ---- outgoing --------------------------------------------------------------------------

  send(addr: Address, m: Message): Promise<SendResult> {
    if (this.isSelf(addr)) return this.local(addr.path, m);
    const subject = this.o.subjects.send(addr.host!, addr.daemon!);
    let payload: Uint8Array;
    try {
      payload = sendFrame(addr.path, this.qualify(m));
      if (addr.path.startsWith(REPLY_PREFIX)) {
        // A reply is one-way (docs/ipc.md): the asker's request() times out if it is lost.
        this.nc.publish(subject, payload);
        return Promise.resolve(handedOver(addr.path));
      }
    } catch (e) {
      return Promise.reject(this.failure(e, addr, subject));
    }
    let pending: Promise<Msg>;
    try {
      pending = this.nc.request(subject, payload, { timeout: this.o.timeout });
    } catch (e) {
      return Promise.reject(this.failure(e, addr, subject));
    }
    return pending.then(
      (r) => {
        const f = unpack(r.data, [F.RESULT, F.ERROR]);
        if (f[0] === F.ERROR) throw errorFromFrame(f, `${addr.host}/${addr.daemon}`);
        return resultFromFrame(addr.path, f);
      },
      (e: unknown) => {
        throw this.failure(e, addr, subject);
      },
    );
  }

  listen(addr: Address, fn: Listener, options: ListenOptions): RemoteAttachment {
    if (this.isSelf(addr)) {
      const h = this.bus.listen(addr.path, fn, options);
      return { ready: h.ready, remove: () => h.remove() };
    }
    const lid = this.nextLid++;
    const subject = this.o.subjects.deliver(this.host, this.daemon, this.instance, lid);
    const info: ListenerInfo = {
      id: lid,
      mailbox: addr.path,
      identity: Message.from(options.identity),
      name: fn.name || 'anonymous',
      timeout: options.timeout,
      onTimeout: options.onTimeout ?? 'continue',
    };
    const sub = this.nc.subscribe(subject, { callback: (_e, m) => this.onDeliver(ol, m) });
    const ol: OutListener = {
      lid,
      host: addr.host!,
      daemon: addr.daemon!,
      path: addr.path,
      fn,
      options,
      info,
      subject,
      sub,
    };
    this.out.set(lid, ol);
    const ready = this.nc.flush().then(() => this.attach(ol));
    ready.catch(() => {
      this.out.delete(lid);
      sub.unsubscribe();
    });
    return {
      ready,
      remove: () => {
        if (!this.out.delete(lid)) return;
        sub.unsubscribe();
        if (this.closed) return;
        const to = this.o.subjects.listen(ol.host, ol.daemon);
        this.nc.request(to, unlistenFrame(lid, subject), { timeout: this.o.timeout }).catch(() => {});
      },
    };
  }

  /** Ask the target to put (or keep) one of our listeners in its chain. Idempotent. */
  private async attach(ol: OutListener): Promise<void> {
    const addr = { host: ol.host, daemon: ol.daemon, path: ol.path };
    const subject = this.o.subjects.listen(ol.host, ol.daemon);
    const o = ol.options;
    let r: Msg;
    try {
      r = await this.nc.request(
        subject,
        listenFrame({
          path: ol.path,
          lid: ol.lid,
          identity: ol.info.identity,
          position: o.position ?? 'append',
          timeout: o.timeout ?? 0,
          onTimeout: ol.info.onTimeout,
          name: ol.info.name,
          subject: ol.subject,
          origin: `${this.host}/${this.daemon}[pid ${process.pid}]`,
        }),
        { timeout: this.o.timeout },
      );
    } catch (e) {
      throw this.failure(e, addr, subject);
    }
    const f = unpack(r.data, [F.OK, F.ERROR]);
    if (f[0] === F.ERROR) throw errorFromFrame(f, `${ol.host}/${ol.daemon}`);
  }

  /** Re-send the attach requests of our listeners on the daemons `which` selects. */
  private reattach(which: (ol: OutListener) => boolean): void {
    for (const ol of this.out.values())
      if (which(ol))
        this.attach(ol).then(
          () => this.bus.log.log('debug', 'listener attached', { to: `${ol.host}/${ol.daemon}:${ol.path}` }),
          (e: unknown) =>
            this.bus.log.log('warn', 'cannot re-attach listener', {
              to: `${ol.host}/${ol.daemon}:${ol.path}`,
              error: e instanceof Error ? e.message : String(e),
            }),
        );
  }

  /**
   * A reply-to must make sense on the other machine: a bare path names this daemon
   * (`host/daemon:/path`); another daemon of this machine is reached through this one
   * (`host/daemon:/system/relay/<other>/path`).
   */
  private qualify(m: Message): Message {
    const t = m.get('reply-to');
    if (t?.type !== 'str') return m;
    const v = t.value;
    const me = `${this.host}/${this.daemon}:`;
    let to: string | undefined;
    if (v.charCodeAt(0) === 47) to = `${me}${v}`;
    else {
      const colon = v.indexOf(':/');
      const where = v.slice(0, colon);
      if (colon > 0 && !where.includes('/'))
        to =
          where === this.daemon
            ? `${me}${v.slice(colon + 1)}`
            : `${me}${RELAY}/${where}${v.slice(colon + 1)}`;
    }
    return to === undefined ? m : m.without('reply-to').with([{ tag: 'reply-to', type: 'str', value: to }]);
  }

  /** A NATS failure as a MetanetError naming the daemon. */
  private failure(e: unknown, addr: Address, subject: string): Error {
    if (isMetanetError(e)) return e;
    const where = `${addr.host}/${addr.daemon}:${addr.path}`;
    const why = e instanceof Error ? e.message : String(e);
    if (e instanceof RequestError && e.isNoResponders())
      return new MetanetError(
        'ENODAEMON',
        `daemon "${addr.daemon}" on host "${addr.host}" is not on NATS (no responder on ${subject})`,
        { cause: e },
      );
    if (e instanceof TimeoutError || (e instanceof Error && e.cause instanceof TimeoutError))
      return new MetanetError(
        'ETIMEDOUT',
        `no answer from ${where} within ${this.o.timeout} ms (the message may or may not have been delivered)`,
        { cause: e },
      );
    if (this.closed || this.nc.isClosed())
      return new MetanetError('ECLOSED', `NATS connection closed: cannot reach ${where}`, { cause: e });
    return new MetanetError('EUNREACHABLE', `cannot reach ${where} over NATS: ${why}`, { cause: e });
  }

  // ---- incoming --------------------------------------------------------------------------

  /** A send to a path of this daemon (relay paths go on to the daemon they name). */
  private local(path: string, m: Message): Promise<SendResult> {
    const to = relayTarget(path);
    if (to !== path) return this.bus.send(to, m);
    return new Promise((resolve, reject) => {
      try {
        this.bus.sendLocal(path, m, resolve);
      } catch (e) {
        reject(e);
      }
    });
  }

  private onSend(msg: Msg): void {
    let f: Frame;
    try {
      f = unpack(msg.data, [F.SEND]);
      const { path, msg: m } = parseSend(f);
      if (!msg.reply) {
        this.local(path, m).catch((e: unknown) => this.bad(msg, e));
        return;
      }
      this.local(path, m).then(
        (r) => msg.respond(resultFrame(r)),
        (e: unknown) => msg.respond(errorFrame(e)),
      );
    } catch (e) {
      this.bad(msg, e);
    }
  }

  private onListen(msg: Msg): void {
    try {
      const f = unpack(msg.data, [F.LISTEN, F.UNLISTEN]);
      if (f[0] === F.UNLISTEN) {
        const subject = parseUnlisten(f);
        this.proxies.get(subject)?.remove();
        this.proxies.delete(subject);
        msg.respond(okFrame(null));
        return;
      }
      const l = parseListen(f);
      const known = this.proxies.get(l.subject);
      if (known) {
        msg.respond(okFrame(known.id)); // a refresh: it keeps its place
        return;
      }
      const timeout = l.timeout || REMOTE_TIMEOUT;
      const onTimeout = l.onTimeout;
      const proxy = (m: Message): Promise<ListenerResult> =>
        this.deliver(l.subject, l.lid, l.path, m, timeout, onTimeout);
      Object.defineProperty(proxy, 'name', { value: l.name });
      const h = listenFor(this.bus, l.path, proxy, {
        identity: l.identity,
        position: l.position,
        timeout,
        onTimeout,
        remote: l.origin,
      });
      this.proxies.set(l.subject, h);
      msg.respond(okFrame(h.id));
    } catch (e) {
      this.bad(msg, e);
    }
  }

  /** The chain reached a proxy: ask the listener's process for its verdict. */
  private async deliver(
    subject: string,
    lid: number,
    path: string,
    m: Message,
    timeout: number,
    onTimeout: 'continue' | 'stop',
  ): Promise<ListenerResult> {
    let r: Msg;
    try {
      // The bus times the listener out first (it records the timeout); this only bounds the request.
      r = await this.nc.request(subject, deliverFrame(lid, path, this.qualify(m)), {
        timeout: timeout + 1000,
      });
    } catch (e) {
      if (e instanceof RequestError && e.isNoResponders()) {
        // Its process is gone: drop the proxy, as a closed connection does (docs/ipc.md).
        this.proxies.get(subject)?.remove();
        this.proxies.delete(subject);
        this.bus.log.log('info', 'remote listener gone', { mailbox: path, subject });
      } else if (!this.closed)
        this.bus.log.log('warn', 'remote listener unreachable', { mailbox: path, error: String(e) });
      return onTimeout === 'stop' ? STOP : CONTINUE;
    }
    const f = unpack(r.data, [F.VERDICT, F.ERROR]);
    if (f[0] === F.ERROR) throw errorFromFrame(f, 'remote listener');
    if (typeof f[3] === 'string') throw new Error(`remote listener: ${f[3]}`);
    return f[2] === STOP ? STOP : CONTINUE;
  }

  private onDeliver(ol: OutListener, msg: Msg): void {
    let parsed: { path: string; msg: Message };
    try {
      parsed = parseDeliver(unpack(msg.data, [F.DELIVER]));
    } catch (e) {
      this.bad(msg, e);
      return;
    }
    this.bus.invoke(parsed.path, parsed.msg, ol.fn, ol.info).then(
      (v) => {
        if (v !== undefined && v !== STOP && v !== CONTINUE)
          msg.respond(verdictFrame(false, `listener returned ${String(v)}, not a verdict`));
        else msg.respond(verdictFrame(v === STOP, null));
      },
      (e: unknown) => msg.respond(verdictFrame(false, e instanceof Error ? e.message : String(e))),
    );
  }

  private onUp(msg: Msg): void {
    const who = this.o.subjects.parseUp(msg.subject);
    if (!who || (who.host === this.host && who.daemon === this.daemon)) return;
    this.reattach((ol) => ol.host === who.host && ol.daemon === who.daemon);
  }

  /** A bad request: answered with an ERROR frame when it wants an answer; logged either way. */
  private bad(msg: Msg, e: unknown): void {
    this.bus.log.log('warn', 'bad NATS request', {
      subject: msg.subject,
      error: e instanceof Error ? e.message : String(e),
    });
    if (msg.reply) msg.respond(errorFrame(e));
  }

  // ---- connection ------------------------------------------------------------------------

  /** Tell listeners' processes this daemon is (back) on NATS: they re-attach at once. */
  private announce(): void {
    this.nc.publish(this.o.subjects.up(this.host, this.daemon));
  }

  private async watch(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === 'reconnect') {
        this.bus.log.log('info', 'NATS reconnected', { server: s.server });
        this.announce();
        this.reattach(() => true);
      } else if (s.type === 'disconnect') this.bus.log.log('warn', 'NATS disconnected', { server: s.server });
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.refresh);
    for (const h of this.proxies.values()) h.remove();
    this.proxies.clear();
    this.out.clear();
    await this.nc.close();
  }
}

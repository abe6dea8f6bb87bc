import { MetanetError } from './errors.js';
import {
  CONTINUE,
  type Context,
  type Listener,
  type ListenerFailure,
  type ListenerHandle,
  type ListenerInfo,
  type ListenerResult,
  type ListenOptions,
  type SendResult,
  STOP,
} from './listener.js';
import { createLogger, type Logger } from './log.js';
import { type Attached, Mailbox, type MailboxInfo } from './mailbox.js';
import { Message, type MessageInit, type Tuple } from './message.js';
import { type Address, checkPath, formatAddress, parseAddress } from './path.js';
import { type Timer, Timers } from './timers.js';
import type { Transport } from './transport.js';

/** Well-known mailboxes of every bus. */
export const UNDELIVERED = '/system/undelivered';
export const ERRORS = '/system/error';
/** The tag that carries the address a reply goes to. */
export const REPLY_TO = 'reply-to';

export interface BusOptions {
  /** The daemon name; `name:/path` addresses with this name are local. */
  readonly name?: string;
  readonly logger?: Logger;
}

export interface MailboxOptions {
  readonly tuples?: MessageInit;
  /** Finish one message's whole chain before starting the next (default false). */
  readonly serial?: boolean;
}

export interface WaitOptions {
  /** Tuples the message must contain, or a predicate. */
  readonly match?: MessageInit | ((m: Message) => boolean);
  /** Milliseconds; default 30000. `Infinity` waits forever. */
  readonly timeout?: number;
  readonly signal?: AbortSignal;
}

export interface RequestOptions {
  /** Milliseconds; default 5000. */
  readonly timeout?: number;
}

/** One message on its way down one mailbox's chain. */
class Delivery {
  next = 0;
  ran = 0;
  stoppedBy: ListenerInfo | undefined;
  errors: ListenerFailure[] | undefined;
  timedOut: ListenerInfo[] | undefined;
  chain: readonly Attached[] = [];
  constructor(
    readonly bus: Bus,
    readonly mb: Mailbox | undefined,
    readonly path: string,
    readonly msg: Message,
    readonly done: ((r: SendResult) => void) | undefined,
  ) {}

  result(): SendResult {
    return {
      mailbox: this.path,
      delivered: this.ran > 0,
      listeners: this.ran,
      stopped: this.stoppedBy !== undefined,
      stoppedBy: this.stoppedBy,
      errors: this.errors ?? [],
      timedOut: this.timedOut ?? [],
    };
  }
}

class ListenerContext implements Context {
  constructor(
    private readonly d: Delivery,
    readonly listener: ListenerInfo,
  ) {}
  get mailbox(): string {
    return this.d.path;
  }
  get replyTo(): string | undefined {
    const t = this.d.msg.get(REPLY_TO);
    return t?.type === 'str' ? t.value : undefined;
  }
  reply(init?: MessageInit): Promise<SendResult> {
    const to = this.replyTo;
    if (to === undefined) {
      // The sender decides whether a message has a reply-to: a listener that does not await its
      // reply must not crash the daemon over it. Logged; awaiting still sees the error.
      const e = new MetanetError(
        'ENOTUPLE',
        `cannot reply: the message to ${this.d.path} has no "${REPLY_TO}" tuple`,
      );
      const p = Promise.reject(e);
      p.catch(() => this.d.bus.log.log('warn', e.message, { mailbox: this.d.path }));
      return p;
    }
    return this.send(to, init);
  }
  /**
   * Sends from listeners are often not awaited (`void ctx.reply(…)`): a failure (the asker went
   * away) is then logged instead of becoming an unhandled rejection that would end the process.
   * Awaiting the promise still sees the error.
   */
  send(address: string, init?: MessageInit): Promise<SendResult> {
    const p = this.d.bus.send(address, init);
    p.catch((e: unknown) =>
      this.d.bus.log.log('debug', 'send from a listener failed', {
        mailbox: this.d.path,
        to: address,
        error: errorText(e),
      }),
    );
    return p;
  }
}

/** A monitor of all local traffic: path, message, and whether the mailbox has listeners. */
export type Tap = (path: string, msg: Message, listened: boolean) => void;

/** Passed to listeners that declare no context parameter (they cannot reach it): saves an allocation per call. */
const NO_CONTEXT = undefined as unknown as Context;
const TIMED_OUT = Symbol('timed out');

function isThenable(x: unknown): x is PromiseLike<ListenerResult> {
  return typeof x === 'object' && x !== null && typeof (x as PromiseLike<unknown>).then === 'function';
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * The bus: a namespace of mailboxes, each with an ordered chain of listeners, and the loop that
 * delivers messages to them. See docs/core.md for the rules (ordering, verdicts, async, errors).
 */
export class Bus {
  readonly name: string | undefined;
  readonly log: Logger;
  private readonly boxes = new Map<string, Mailbox>();
  /**
   * Two slots per queued message: a Delivery and `undefined` (from send), or a Mailbox and the
   * Message (from post: no Delivery is allocated unless the chain needs one).
   */
  private queue: (Delivery | Mailbox | Message | undefined)[] = [];
  private scheduled: NodeJS.Immediate | undefined;
  private nextId = 1;
  private closed = false;
  private readonly timers: Timers;
  private readonly transports: Transport[] = [];
  private taps: Tap[] = [];
  private readonly waiters = new Set<(e: Error) => void>();
  private readonly replies = new Set<PendingReply>();
  private inflight = 0;
  private idle: (() => void)[] = [];

  constructor(options: BusOptions = {}) {
    this.name = options.name;
    this.log = options.logger ?? createLogger(options.name ? { daemon: options.name } : {});
    this.timers = new Timers((e) => this.reportError('(timer)', undefined, e));
  }

  // ---- mailboxes -------------------------------------------------------------------------

  /** Create a mailbox with its own tuples. EEXIST if it exists (listen() creates bare ones implicitly). */
  create(path: string, options: MailboxOptions = {}): MailboxInfo {
    checkPath(path);
    const old = this.boxes.get(path);
    if (old && (old.chain.length > 0 || old.tuples.length > 0 || old.serial))
      throw new MetanetError('EEXIST', `mailbox ${path} already exists`);
    const mb = new Mailbox(path, Message.from(options.tuples), options.serial ?? false);
    if (old) mb.chain = old.chain;
    this.boxes.set(path, mb);
    return mb.info();
  }

  /** Remove a mailbox and detach its listeners. Returns false if there was none. */
  remove(path: string): boolean {
    const mb = this.boxes.get(checkPath(path));
    if (!mb) return false;
    mb.removeAll();
    this.boxes.delete(path);
    return true;
  }

  has(path: string): boolean {
    return this.boxes.has(path);
  }

  /** Introspection: one mailbox (undefined if absent) … */
  mailbox(path: string): MailboxInfo | undefined {
    return this.boxes.get(checkPath(path))?.info();
  }

  /** … or all of them, sorted by path. */
  mailboxes(): MailboxInfo[] {
    return [...this.boxes.values()].map((m) => m.info()).sort((a, b) => (a.path < b.path ? -1 : 1));
  }

  // ---- listeners -------------------------------------------------------------------------

  /**
   * Attach a listener. A local mailbox that does not exist yet is created. For a remote address
   * (`daemon:/path`) the handle is returned at once and `handle.ready` settles when the remote
   * daemon has it in its chain.
   */
  listen(address: string, fn: Listener, options: ListenOptions = {}): ListenerHandle {
    this.open();
    const addr = parseAddress(address);
    const identity = Message.from(options.identity);
    const id = this.nextId++;
    if (!this.isLocal(addr)) {
      const remote = this.transportFor(addr).listen(addr, fn, options);
      remote.ready.catch(() => {}); // the caller sees it through handle.ready
      return { id, address, identity, ready: remote.ready, remove: () => remote.remove() };
    }
    const path = addr.path;
    let mb = this.boxes.get(path);
    if (!mb) {
      mb = new Mailbox(path, Message.empty, false);
      this.boxes.set(path, mb);
    }
    const attached: Attached = {
      info: {
        id,
        mailbox: path,
        identity,
        name: fn.name || 'anonymous',
        remote: options.remote,
        timeout: options.timeout,
        onTimeout: options.onTimeout ?? 'continue',
      },
      fn,
      wantsContext: fn.length >= 2,
      removed: false,
    };
    mb.insert(attached, options.position);
    const box = mb;
    return {
      id,
      address,
      identity,
      ready: Promise.resolve(),
      remove: () => {
        box.remove(id);
      },
    };
  }

  append(address: string, fn: Listener, identity?: MessageInit): ListenerHandle {
    return this.listen(address, fn, { identity, position: 'append' });
  }

  prepend(address: string, fn: Listener, identity?: MessageInit): ListenerHandle {
    return this.listen(address, fn, { identity, position: 'prepend' });
  }

  /** Detach listeners of a local mailbox by handle, id, or identity tuples. Returns how many. */
  unlisten(path: string, which: ListenerHandle | number | MessageInit): number {
    if (
      typeof which === 'object' &&
      which !== null &&
      'remove' in which &&
      typeof which.remove === 'function'
    ) {
      const before = this.boxes.get(path)?.chain.length ?? 0;
      which.remove();
      return before - (this.boxes.get(path)?.chain.length ?? 0);
    }
    const mb = this.boxes.get(checkPath(path));
    return mb ? mb.remove(which) : 0;
  }

  // ---- sending ---------------------------------------------------------------------------

  /**
   * Queue a message for delivery through the loop. Resolves when the chain has finished, with
   * what happened (listeners run, stop, errors). Never rejects for listener failures; rejects
   * for a bad address, a closed bus, or an unreachable remote daemon.
   */
  send(address: string, init?: MessageInit): Promise<SendResult> {
    if (this.closed)
      return Promise.reject(new MetanetError('ECLOSED', `bus closed: cannot send to ${address}`));
    let addr: Address;
    let m: Message;
    try {
      addr = parseAddress(address);
      m = Message.from(init);
    } catch (e) {
      return Promise.reject(e);
    }
    if (!this.isLocal(addr)) {
      try {
        return this.transportFor(addr).send(addr, m);
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return new Promise((resolve) => this.enqueue(addr.path, m, resolve));
  }

  /** Fire-and-forget send: like send() without the result promise (cheaper on hot paths). */
  post(address: string, init?: MessageInit): void {
    if (this.closed) throw new MetanetError('ECLOSED', `bus closed: cannot send to ${address}`);
    const mb = address.charCodeAt(0) === 47 /* '/' */ ? this.boxes.get(address) : undefined;
    if (mb !== undefined) {
      const m = init instanceof Message ? init : Message.from(init);
      if (this.taps.length > 0) for (const t of this.taps) t(address, m, mb.chain.length > 0);
      this.queue.push(mb, m);
      this.inflight++;
      if (this.scheduled === undefined) this.scheduled = setImmediate(this.drain);
      return;
    }
    if (address.charCodeAt(0) !== 47) {
      try {
        const addr = parseAddress(address);
        const t = this.isLocal(addr) ? undefined : this.transportFor(addr);
        if (t?.post) {
          t.post(addr, init instanceof Message ? init : Message.from(init))?.catch((e) =>
            this.reportError(address, undefined, e),
          );
          return;
        }
      } catch (e) {
        this.reportError(address, undefined, e);
        return;
      }
    }
    this.send(address, init).catch((e) => this.reportError(address, undefined, e));
  }

  /**
   * `send()` to a local path with a callback instead of a promise: `done` is called the moment
   * the chain finishes (the IPC layer answers in the same write as the replies listeners sent).
   * Throws for a bad path or a closed bus.
   */
  sendLocal(path: string, m: Message, done: (r: SendResult) => void): void {
    this.open();
    this.enqueue(checkPath(path), m, done);
  }

  private enqueue(path: string, m: Message, done: ((r: SendResult) => void) | undefined): void {
    this.push(new Delivery(this, this.boxes.get(path), path, m, done));
  }

  private push(d: Delivery): void {
    if (this.taps.length > 0)
      for (const t of this.taps) t(d.path, d.msg, d.mb !== undefined && d.mb.chain.length > 0);
    this.queue.push(d, undefined);
    this.inflight++;
    if (this.scheduled === undefined) this.scheduled = setImmediate(this.drain);
  }

  /**
   * Deliver what is queued now instead of at the next turn of the loop. For I/O layers at the
   * end of an I/O callback (the IPC layer after a read): it saves a loop iteration per message
   * and keeps every ordering rule — nothing runs before `send()` returns.
   */
  deliverQueued(): void {
    if (this.scheduled === undefined) return;
    clearImmediate(this.scheduled);
    this.drain();
  }

  /** Runs once per loop turn: delivers what was queued before it started (later sends wait a turn). */
  private readonly drain = (): void => {
    this.scheduled = undefined;
    const q = this.queue;
    this.queue = [];
    for (let i = 0; i < q.length; i += 2) {
      const a = q[i];
      if (a instanceof Delivery) this.start(a);
      else this.fast(a as Mailbox, q[i + 1] as Message);
    }
  };

  /**
   * A posted message: walk a chain of synchronous, context-free listeners without allocating a
   * Delivery; at anything else (a context, a promise, a verdict, an error, nobody listening, a
   * serial mailbox) take a Delivery from where the walk is and go on the general way.
   */
  private fast(mb: Mailbox, m: Message): void {
    const chain = mb.chain;
    let ran = 0;
    if (!mb.serial)
      for (let i = 0; i < chain.length; i++) {
        const a = chain[i]!;
        if (a.removed) continue;
        if (a.wantsContext) {
          this.run(this.resume(mb, m, chain, i, ran));
          return;
        }
        let r: unknown;
        try {
          r = a.fn(m, NO_CONTEXT);
        } catch (e) {
          const d = this.resume(mb, m, chain, i + 1, ran + 1);
          this.failed(d, a.info, e);
          this.run(d);
          return;
        }
        ran++;
        if (r === undefined || r === CONTINUE) continue;
        const d = this.resume(mb, m, chain, i + 1, ran);
        if (isThenable(r)) void this.runAsync(d, a.info, r);
        else if (this.verdict(d, a.info, r)) this.finish(d);
        else this.run(d);
        return;
      }
    if (ran === 0) {
      this.start(new Delivery(this, mb, mb.path, m, undefined));
      return;
    }
    this.inflight--;
    if (this.inflight === 0 && this.idle.length) for (const f of this.idle.splice(0)) f();
  }

  private resume(mb: Mailbox, m: Message, chain: readonly Attached[], next: number, ran: number): Delivery {
    const d = new Delivery(this, mb, mb.path, m, undefined);
    d.chain = chain;
    d.next = next;
    d.ran = ran;
    return d;
  }

  private start(d: Delivery): void {
    const mb = d.mb;
    if (mb === undefined || mb.chain.length === 0) {
      this.finish(d);
      return;
    }
    if (mb.serial) {
      if (mb.busy) {
        mb.backlog.push(() => this.start(d));
        return;
      }
      mb.busy = true;
    }
    d.chain = mb.chain;
    this.run(d);
  }

  /** Walk the chain synchronously; at the first listener that returns a promise, hand over to runAsync. */
  private run(d: Delivery): void {
    const chain = d.chain;
    while (d.next < chain.length) {
      const a = chain[d.next++]!;
      if (a.removed) continue;
      d.ran++;
      let r: unknown;
      try {
        r = a.wantsContext ? a.fn(d.msg, new ListenerContext(d, a.info)) : a.fn(d.msg, NO_CONTEXT);
      } catch (e) {
        this.failed(d, a.info, e);
        continue;
      }
      if (r === undefined || r === CONTINUE) continue;
      if (isThenable(r)) {
        void this.runAsync(d, a.info, r);
        return;
      }
      if (this.verdict(d, a.info, r)) break;
    }
    this.finish(d);
  }

  /** The rest of a chain that went async: one async function per delivery, awaiting each listener in turn. */
  private async runAsync(
    d: Delivery,
    info: ListenerInfo,
    pending: PromiseLike<ListenerResult>,
  ): Promise<void> {
    const chain = d.chain;
    let p: PromiseLike<ListenerResult> | undefined = pending;
    let current = info;
    for (;;) {
      if (p !== undefined) {
        let v: unknown;
        try {
          v =
            current.timeout !== undefined && Number.isFinite(current.timeout)
              ? await this.within(p, current)
              : await p;
        } catch (e) {
          this.failed(d, current, e ?? new Error('listener rejected'));
          v = undefined;
        }
        if (v === TIMED_OUT) {
          (d.timedOut ??= []).push(current);
          this.log.log('warn', 'listener timed out', {
            mailbox: d.path,
            listener: current.id,
            ms: current.timeout,
          });
          if (current.onTimeout === 'stop') {
            d.stoppedBy = current;
            break;
          }
        } else if (v !== undefined && v !== CONTINUE && this.verdict(d, current, v)) break;
        p = undefined;
      }
      if (d.next >= chain.length) break;
      const a = chain[d.next++]!;
      if (a.removed) continue;
      d.ran++;
      current = a.info;
      try {
        const r = a.wantsContext ? a.fn(d.msg, new ListenerContext(d, a.info)) : a.fn(d.msg, NO_CONTEXT);
        if (r === undefined || r === CONTINUE) continue;
        if (isThenable(r)) p = r;
        else if (this.verdict(d, a.info, r)) break;
      } catch (e) {
        this.failed(d, a.info, e);
      }
    }
    this.finish(d);
  }

  /** A verdict other than "go on": STOP (returns true) or an invalid value (reported; returns false). */
  private verdict(d: Delivery, info: ListenerInfo, v: unknown): boolean {
    if (v === STOP) {
      d.stoppedBy = info;
      return true;
    }
    this.failed(
      d,
      info,
      new Error(`listener returned ${JSON.stringify(v)}; return STOP, CONTINUE or nothing`),
    );
    return false;
  }

  private within(p: PromiseLike<ListenerResult>, info: ListenerInfo): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => resolve(TIMED_OUT), info.timeout);
      p.then(
        (v) => {
          clearTimeout(t);
          resolve(v);
        },
        (e: unknown) => {
          clearTimeout(t);
          reject(e);
        },
      );
    });
  }

  private failed(d: Delivery, info: ListenerInfo, e: unknown): void {
    (d.errors ??= []).push({ listener: info, error: errorText(e) });
    this.reportError(d.path, info, e);
  }

  private finish(d: Delivery): void {
    const mb = d.mb;
    if (mb?.serial && d.chain.length > 0) {
      mb.busy = false;
      const next = mb.backlog.shift();
      if (next) next();
    }
    if (d.ran === 0 && d.path !== UNDELIVERED && d.path !== ERRORS) {
      if (this.boxes.get(UNDELIVERED)?.chain.length)
        this.enqueue(UNDELIVERED, undeliveredMessage(d), undefined);
      else this.log.log('debug', 'undelivered', { mailbox: d.path });
    }
    this.inflight--;
    if (d.done) d.done(d.result());
    if (this.inflight === 0 && this.idle.length) for (const f of this.idle.splice(0)) f();
  }

  private reportError(mailbox: string, info: ListenerInfo | undefined, e: unknown): void {
    const fields = { mailbox, listener: info?.id, name: info?.name, error: errorText(e) };
    if (mailbox !== ERRORS && !this.closed && this.boxes.get(ERRORS)?.chain.length) {
      this.enqueue(
        ERRORS,
        Message.from({ mailbox, listener: info?.id, name: info?.name, error: errorText(e) }),
        undefined,
      );
    } else this.log.log('error', 'listener failed', fields);
  }

  // ---- synchronous style -----------------------------------------------------------------

  /**
   * Resolve with the next message on `address` that matches. The waiter is prepended, so it sees
   * the message even when a listener later in the chain stops it; it never stops the chain itself.
   */
  wait(address: string, options: WaitOptions = {}): Promise<Message> {
    this.open();
    const ms = options.timeout ?? 30000;
    const m = options.match;
    const test: (x: Message) => boolean =
      typeof m === 'function'
        ? m
        : m === undefined
          ? () => true
          : (
              (p) => (x: Message) =>
                x.matches(p)
            )(Message.from(m));
    return new Promise<Message>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const cleanup = (): void => {
        if (timer) clearTimeout(timer);
        handle.remove();
        this.waiters.delete(fail);
        options.signal?.removeEventListener('abort', onAbort);
      };
      const fail = (e: Error): void => {
        cleanup();
        reject(e);
      };
      const onAbort = (): void => fail(new MetanetError('ETIMEDOUT', `wait on ${address} aborted`));
      const handle = this.listen(
        address,
        function wait(x) {
          let ok: boolean;
          try {
            ok = test(x);
          } catch (e) {
            fail(e instanceof Error ? e : new Error(String(e)));
            return;
          }
          if (!ok) return;
          cleanup();
          resolve(x);
        },
        { position: 'prepend', identity: { wait: address } },
      );
      handle.ready.catch(fail);
      this.waiters.add(fail);
      if (Number.isFinite(ms))
        timer = setTimeout(() => {
          const what =
            m === undefined
              ? ''
              : typeof m === 'function'
                ? ' matching the predicate'
                : ` matching {${Message.from(m)}}`;
          fail(new MetanetError('ETIMEDOUT', `no message on ${address}${what} within ${ms} ms`));
        }, ms);
      if (options.signal?.aborted) onAbort();
      else options.signal?.addEventListener('abort', onAbort);
    });
  }

  /**
   * Request/reply: send `init` plus a `reply-to` tuple naming a fresh mailbox, and resolve with
   * the first message sent there (listeners answer with `ctx.reply(...)`). Rejects at once when
   * nobody listens, with ETIMEDOUT when nobody replies in time.
   */
  request(address: string, init?: MessageInit, options: RequestOptions = {}): Promise<Message> {
    if (this.closed) return Promise.reject(new MetanetError('ECLOSED', 'the bus is closed'));
    let m: Message;
    try {
      m = Message.from(init);
    } catch (e) {
      return Promise.reject(e);
    }
    const ms = options.timeout ?? 5000;
    const replyPath = `/system/reply/${this.nextId++}`;
    return new Promise<Message>((resolve, reject) => {
      new PendingReply(this, address, replyPath, ms, resolve, reject).start(m);
    });
  }

  /** @internal A request's reply mailbox with its one prepended listener (what `wait()` would attach, for less). */
  openReply(r: PendingReply): void {
    let mb = this.boxes.get(r.path);
    if (!mb) {
      mb = new Mailbox(r.path, Message.empty, false);
      this.boxes.set(r.path, mb);
    }
    mb.insert(r.attached, 'prepend');
    this.replies.add(r);
  }

  /** @internal */
  closeReply(r: PendingReply): void {
    this.replies.delete(r);
    this.boxes.get(r.path)?.removeAll();
    this.boxes.delete(r.path);
  }

  /** One-shot timer on the loop; cancelled by `close()`. */
  timeout(ms: number, fn: () => unknown): Timer {
    return this.timers.timeout(ms, fn);
  }

  /** Periodic timer on the loop; cancelled by `close()`. */
  every(ms: number, fn: () => unknown): Timer {
    return this.timers.every(ms, fn);
  }

  // ---- remote ----------------------------------------------------------------------------

  /**
   * Watch every message queued for a local mailbox (the `monitor` verb). Taps are called
   * synchronously at send time and must not throw; returns a function that removes the tap.
   */
  tap(fn: Tap): () => void {
    this.taps = [...this.taps, fn];
    return () => {
      this.taps = this.taps.filter((t) => t !== fn);
    };
  }

  /**
   * Call one listener function as if it stood in `path`'s chain, with a Context (the IPC layer
   * runs listeners attached from this process to another daemon's mailbox this way). Resolves
   * with its verdict; rejects with what it threw.
   */
  async invoke(path: string, m: Message, fn: Listener, info: ListenerInfo): Promise<ListenerResult> {
    const d = new Delivery(this, undefined, path, m, undefined);
    return fn(m, new ListenerContext(d, info));
  }

  /** Route addresses that name other daemons or hosts through this transport. */
  attach(t: Transport): void {
    this.transports.push(t);
  }

  isLocal(addr: Address): boolean {
    return addr.daemon === undefined || (addr.host === undefined && addr.daemon === this.name);
  }

  private transportFor(addr: Address): Transport {
    const t = this.transports.find((x) => x.handles(addr));
    if (!t)
      throw new MetanetError(
        'ENOREMOTE',
        `cannot reach ${formatAddress(addr)}: this bus has no transport for ${addr.host ? 'other hosts (NATS)' : 'other daemons'}`,
      );
    return t;
  }

  // ---- lifecycle -------------------------------------------------------------------------

  private open(): void {
    if (this.closed) throw new MetanetError('ECLOSED', 'the bus is closed');
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Resolves when every queued and running chain has finished. */
  settled(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  /**
   * Shut down: refuse new sends, let queued chains finish (up to `graceMs`), cancel timers and
   * waits, close transports. Leaves no timer or handle behind.
   */
  async close(graceMs = 1000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.inflight > 0) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([this.settled(), new Promise<void>((r) => (t = setTimeout(r, graceMs)))]);
      clearTimeout(t);
    }
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    this.timers.closeAll();
    for (const f of [...this.waiters]) f(new MetanetError('ECLOSED', 'the bus closed while waiting'));
    for (const r of [...this.replies]) r.fail(new MetanetError('ECLOSED', 'the bus closed while waiting'));
    await Promise.all(this.transports.map((t) => t.close()));
  }
}

/**
 * One `request()` in flight: the reply mailbox's listener, the timer, and the send's result.
 * It settles with the reply once the send said a listener ran (ENOLISTENER at once otherwise),
 * whichever of the two comes first; ETIMEDOUT when no reply comes in time; ECLOSED on close().
 * Same behaviour as `wait()` + `send()`, with one closure and no listener handle per request.
 */
class PendingReply {
  readonly attached: Attached;
  private timer: NodeJS.Timeout | undefined;
  private reply: Message | undefined;
  private delivered = false;
  private done = false;

  constructor(
    private readonly bus: Bus,
    private readonly address: string,
    readonly path: string,
    private readonly ms: number,
    private readonly resolve: (m: Message) => void,
    private readonly reject: (e: Error) => void,
  ) {
    this.attached = {
      info: {
        id: 0,
        mailbox: path,
        identity: new Message([{ tag: 'wait', type: 'str', value: path }]),
        name: 'wait',
        onTimeout: 'continue',
      },
      // bound, not an arrow: no closure to name per request (tsx/esbuild keepNames)
      fn: this.take.bind(this),
      wantsContext: false,
      removed: false,
    };
  }

  fail(e: Error): void {
    if (this.done) return;
    this.finish();
    this.reject(e);
  }

  start(m: Message): void {
    this.bus.openReply(this);
    if (Number.isFinite(this.ms))
      this.timer = setTimeout(
        () => this.fail(new MetanetError('ETIMEDOUT', `no reply from ${this.address} within ${this.ms} ms`)),
        this.ms,
      );
    this.bus.send(this.address, withReplyTo(m, this.path)).then(
      (r) => this.sent(r),
      (e: unknown) => this.fail(e instanceof Error ? e : new Error(String(e))),
    );
  }

  private sent(r: SendResult): void {
    if (this.done) return;
    if (!r.delivered) {
      this.fail(new MetanetError('ENOLISTENER', `no listener on ${this.address} to answer the request`));
      return;
    }
    this.delivered = true;
    if (this.reply !== undefined) this.settle(this.reply);
  }

  /** The first message on the reply mailbox (later ones are ignored, as by wait()). */
  private take(x: Message): void {
    if (this.done || this.reply !== undefined) return;
    this.reply = x;
    this.attached.removed = true;
    if (this.delivered) this.settle(x);
  }

  private settle(x: Message): void {
    this.finish();
    this.resolve(x);
  }

  private finish(): void {
    this.done = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.bus.closeReply(this);
  }
}

/** `m` with its reply-to tuples replaced by one naming `path` (at the end, as `set()` puts it). */
function withReplyTo(m: Message, path: string): Message {
  const src = m.tuples;
  const out: Tuple[] = [];
  for (let i = 0; i < src.length; i++) if (src[i]!.tag !== REPLY_TO) out.push(src[i]!);
  out.push({ tag: REPLY_TO, type: 'str', value: path });
  return new Message(out);
}

function undeliveredMessage(d: Delivery): Message {
  return Message.from({ mailbox: d.path, message: d.msg });
}

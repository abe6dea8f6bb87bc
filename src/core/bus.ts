/**
 * The bus: a namespace of mailboxes, each with an ordered chain of listeners, and the loop that
 * delivers messages to them. By concern:
 *   delivery.ts      the queue and the chain walks (verdicts, async, timeouts, errors, undelivered)
 *   reply.ts         wait() and request/reply
 *   introspection.ts mailboxes(), taps
 *   route.ts         routes: a family of paths under a prefix served by one handler
 *   bus.ts           the namespace (create, listen, remove), sending, timers, remote, close
 * See docs/core.md for the rules.
 */
import { Delivery, Dispatcher, ListenerContext } from './delivery.js';
import { MetanetError } from './errors.js';
import { addTap, describeAll, describeRoutes, removeTap, type Tap } from './introspection.js';
import type {
  Listener,
  ListenerHandle,
  ListenerInfo,
  ListenerResult,
  ListenOptions,
  SendResult,
} from './listener.js';
import { createLogger, type Logger } from './log.js';
import { type Attached, Mailbox, type MailboxInfo } from './mailbox.js';
import { Message, type MessageInit } from './message.js';
import { type Address, checkPath, formatAddress, parseAddress } from './path.js';
import { PendingReply, REPLY_ROUTE, type RequestOptions, type WaitOptions, waitFor } from './reply.js';
import { Route, type RouteHandle, type RouteHandler, routeFor } from './route.js';
import { type Timer, Timers } from './timers.js';
import type { SendWaiter, Transport } from './transport.js';

export { ERRORS, REPLY_TO, UNDELIVERED } from './delivery.js';
export type { Tap } from './introspection.js';
export type { RequestOptions, WaitOptions } from './reply.js';
export type { RouteHandle, RouteHandler } from './route.js';

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

export class Bus extends Dispatcher {
  readonly name: string | undefined;
  private nextId = 1;
  private readonly timers: Timers;
  private readonly transports: Transport[] = [];
  private readonly waiters = new Set<(e: Error) => void>();
  /** Pending requests by reply path; `/system/reply/*` is served by the route made below. */
  private readonly replies = new Map<string, PendingReply>();

  constructor(options: BusOptions = {}) {
    super(options.logger ?? createLogger(options.name ? { daemon: options.name } : {}));
    this.name = options.name;
    this.timers = new Timers((e) => this.reportError('(timer)', undefined, e));
    this.route(REPLY_ROUTE, (path, m) => this.replies.get(path)?.take(m) ?? false, 'reply');
  }

  // ---- mailboxes -------------------------------------------------------------------------

  /** Create a mailbox with its own tuples. EEXIST if it exists (listen() creates bare ones implicitly). */
  create(path: string, options: MailboxOptions = {}): MailboxInfo {
    checkPath(path);
    const old = this.boxes.get(path);
    if (old && (old.chain.length > 0 || old.tuples.length > 0 || old.serial))
      throw new MetanetError('EEXIST', `mailbox ${path} already exists`);
    const tuples = Message.from(options.tuples);
    if (old) this.drop(old);
    const mb = this.box(path, tuples, options.serial ?? false);
    if (old) mb.chain = old.chain;
    return mb.info();
  }

  /** Remove a mailbox and detach its listeners. Returns false if there was none. */
  remove(path: string): boolean {
    const mb = this.boxes.get(checkPath(path));
    if (!mb) return false;
    mb.removeAll();
    this.drop(mb);
    return true;
  }

  /** A new mailbox in the namespace; under a route, the route's listener heads its chain. */
  private box(path: string, tuples: Message, serial: boolean): Mailbox {
    const mb = new Mailbox(path, tuples, serial);
    this.boxes.set(path, mb);
    this.forget();
    if (this.routes.length > 0) routeFor(this.routes, path)?.adopt(mb, 'prepend');
    return mb;
  }

  private drop(mb: Mailbox): void {
    this.boxes.delete(mb.path);
    this.forget();
    if (this.routes.length > 0) routeFor(this.routes, mb.path)?.boxes.delete(mb);
  }

  has(path: string): boolean {
    return this.boxes.has(path);
  }

  /** Introspection: one mailbox (undefined if absent) … */
  mailbox(path: string): MailboxInfo | undefined {
    return this.boxes.get(checkPath(path))?.info();
  }

  /** … or all of them, sorted by path (real mailboxes only: routes are listed by `routeInfos()`). */
  mailboxes(): MailboxInfo[] {
    return describeAll(this.boxes);
  }

  /** Introspection: every route, as `<prefix>/*` with its listener (id and name). */
  routeInfos(): MailboxInfo[] {
    return describeRoutes(this.routes);
  }

  // ---- routes ----------------------------------------------------------------------------

  /**
   * Serve every path under `prefix` that has no mailbox of its own with one handler: no mailbox,
   * no map entry per path (the HTTP service's `<name>/client/<n>/…`). Messages to those paths are
   * queued and delivered like any other. A mailbox created under the prefix (before or after)
   * gets the route's listener in its chain (at its head when created after), so listeners there
   * see what they would see beside an ordinary listener. EEXIST when it overlaps another route.
   */
  route(prefix: string, fn: RouteHandler, name = fn.name || 'anonymous'): RouteHandle {
    this.open();
    checkPath(prefix);
    const r = new Route(prefix, fn, {
      id: this.nextId++,
      mailbox: `${prefix}/*`,
      identity: Message.empty,
      name,
      onTimeout: 'continue',
    });
    for (const o of this.routes)
      if (o.prefix === prefix || o.covers(prefix) || r.covers(o.prefix))
        throw new MetanetError('EEXIST', `route ${prefix} overlaps route ${o.prefix}`);
    this.routes = [...this.routes, r];
    for (const mb of this.boxes.values()) if (r.covers(mb.path)) r.adopt(mb, 'append');
    this.forget();
    return {
      id: r.info.id,
      prefix,
      get mailboxes() {
        return r.boxes.size;
      },
      remove: () => {
        if (r.removed) return;
        r.removed = true;
        this.routes = this.routes.filter((x) => x !== r);
        for (const mb of r.boxes) mb.remove(r.info.id);
        r.boxes.clear();
      },
    };
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
    const mb = this.boxes.get(path) ?? this.box(path, Message.empty, false);
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
      settle: undefined,
    };
    mb.insert(attached, options.position);
    const box = mb;
    return {
      id,
      address,
      identity,
      ready: Promise.resolve(),
      remove: () => {
        if (box.remove(id) > 0) this.prune(box);
      },
    };
  }

  /**
   * A mailbox under a route left bare but for the route's listener (no tuples, not serial) leaves
   * the namespace: the route serves the path the same way without it. Its chain is left alone, so
   * a delivery walking it still reaches the route's listener.
   */
  private prune(mb: Mailbox): void {
    if (this.routes.length === 0 || mb.tuples.length > 0 || mb.serial || this.boxes.get(mb.path) !== mb)
      return;
    const c = mb.chain;
    if (c.length === 1 && c[0]!.info === routeFor(this.routes, mb.path)?.info) this.drop(mb);
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
      const mb = this.boxes.get(path);
      const before = mb?.chain.length ?? 0;
      which.remove();
      return before - (mb?.chain.length ?? 0);
    }
    const mb = this.boxes.get(checkPath(path));
    if (!mb) return 0;
    const n = mb.remove(which);
    if (n > 0) this.prune(mb);
    return n;
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

  /** @internal `send()` of a built message answered through `w` (a request's own send: no promise). */
  sendFor(address: string, m: Message, w: SendWaiter): void {
    let addr: Address;
    let t: Transport | undefined;
    try {
      this.open();
      addr = parseAddress(address);
      t = this.isLocal(addr) ? undefined : this.transportFor(addr);
    } catch (e) {
      w.failed(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    if (t === undefined) this.enqueue(addr.path, m, (r) => w.sent(r));
    else if (t.sendFor !== undefined) t.sendFor(addr, m, w);
    else
      t.send(addr, m).then(
        (r) => w.sent(r),
        (e: unknown) => w.failed(e instanceof Error ? e : new Error(String(e))),
      );
  }

  /** Fire-and-forget send: like send() without the result promise (cheaper on hot paths). */
  post(address: string, init?: MessageInit): void {
    // Small enough to be inlined at the caller: the mailbox of the last post, a built message.
    // (The cache is forgotten when a mailbox comes or goes, a tap is added, or the bus closes.)
    // `constructor ===`, not `instanceof`: against an imported class V8 cannot fold instanceof
    // and calls its generic builtin.
    // A subclass of Message takes postAny's instanceof: same result, slower.
    if (address === this.lastPath && init != null && init.constructor === Message) {
      const q = this.queue;
      const n = this.queued;
      q[n] = this.lastBox;
      q[n + 1] = init as Message;
      this.queued = n + 2;
      if (this.scheduled === undefined && this.held === 0) this.scheduled = setImmediate(this.drain);
      return;
    }
    this.postAny(address, init);
  }

  private postAny(address: string, init?: MessageInit): void {
    if (this.closed) throw new MetanetError('ECLOSED', `bus closed: cannot send to ${address}`);
    let mb: Mailbox | undefined;
    if (address.charCodeAt(0) === 47 /* '/' */) {
      // Under a route with no mailbox at all (its usual state): no Map lookup of a fresh path.
      const r = this.routes.length > 0 ? routeFor(this.routes, address) : undefined;
      if (r === undefined || r.boxes.size > 0) mb = this.boxes.get(address);
      if (r !== undefined && mb === undefined) {
        this.postRouted(address, init, r);
        return;
      }
    }
    if (mb !== undefined) {
      const m = init instanceof Message ? init : Message.from(init);
      if (this.taps.length > 0) for (const t of this.taps) t(address, m, mb.chain.length > 0);
      else {
        this.lastPath = address;
        this.lastBox = mb;
      }
      this.queue[this.queued++] = mb;
      this.queue[this.queued++] = m;
      if (this.scheduled === undefined && this.held === 0) this.scheduled = setImmediate(this.drain);
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

  /** A post to a path under a route with no mailbox of its own: queued as (path, message). */
  private postRouted(address: string, init: MessageInit | undefined, r: Route): void {
    let m: Message;
    try {
      // a pending request's reply path was made here: valid
      if (r.prefix !== REPLY_ROUTE || !this.replies.has(address)) checkPath(address);
      m = init instanceof Message ? init : Message.from(init);
    } catch (e) {
      this.reportError(address, undefined, e);
      return;
    }
    if (this.taps.length > 0) for (const t of this.taps) t(address, m, true);
    this.queue[this.queued++] = address;
    this.queue[this.queued++] = m;
    if (this.scheduled === undefined && this.held === 0) this.scheduled = setImmediate(this.drain);
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

  // ---- synchronous style -----------------------------------------------------------------

  /**
   * Resolve with the next message on `address` that matches. The waiter is prepended, so it sees
   * the message even when a listener later in the chain stops it; it never stops the chain itself.
   */
  wait(address: string, options: WaitOptions = {}): Promise<Message> {
    this.open();
    return waitFor(this, this.waiters, address, options);
  }

  /**
   * Request/reply: send `init` plus a `reply-to` tuple naming a fresh reply path, and resolve with
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
    const replyPath = `${REPLY_ROUTE}/${this.nextId++}`;
    return new Promise<Message>((resolve, reject) => {
      new PendingReply(this, address, replyPath, ms, resolve, reject).start(m);
    });
  }

  /** @internal A request waits for its reply: messages to its path reach it through the reply route. */
  openReply(r: PendingReply): void {
    this.replies.set(r.path, r);
  }

  /** @internal */
  closeReply(r: PendingReply): void {
    this.replies.delete(r.path);
  }

  /**
   * @internal A reply from another process to a request of this bus waiting at `path`: handed
   * to the request at once when nothing else could see it (no tap, no mailbox at the path),
   * else posted. Taking it only settles the request's promise: no listener runs before this
   * returns, as with a post.
   */
  postReply(path: string, m: Message): void {
    const r = this.replies.get(path);
    if (r !== undefined && this.taps.length === 0 && !this.closed && !this.boxes.has(path) && r.take(m))
      return;
    this.post(path, m);
  }

  /** Whether a request of this bus waits for a reply at `path` (`/system/reply/N`). */
  awaitsReply(path: string): boolean {
    return this.replies.has(path);
  }

  /**
   * @internal `who` (an IPC connection) may answer the request waiting at `path`: the request
   * went over it. False when no request waits there. The mark leaves with the request.
   */
  allowAnswer(path: string, who: object): boolean {
    const r = this.replies.get(path);
    r?.allow(who);
    return r !== undefined;
  }

  /** @internal Whether `who` was allowed to answer the request waiting at `path`. */
  mayAnswer(path: string, who: object): boolean {
    return this.replies.get(path)?.allows(who) ?? false;
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
    this.taps = addTap(this.taps, fn);
    this.forget(); // post() then goes through postAny, which calls the taps
    return () => {
      this.taps = removeTap(this.taps, fn);
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

  /**
   * Shut down: refuse new sends, let queued chains finish (up to `graceMs`), cancel timers and
   * waits, close transports. Leaves no timer or handle behind.
   */
  async close(graceMs = 1000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.forget(); // post() must see the bus closed
    if (this.busy) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([this.settled(), new Promise<void>((r) => (t = setTimeout(r, graceMs)))]);
      clearTimeout(t);
    }
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    this.timers.closeAll();
    for (const f of [...this.waiters]) f(new MetanetError('ECLOSED', 'the bus closed while waiting'));
    for (const r of [...this.replies.values()])
      r.fail(new MetanetError('ECLOSED', 'the bus closed while waiting'));
    await Promise.all(this.transports.map((t) => t.close()));
  }
}

/**
 * Queue and delivery: the loop that takes queued messages and walks each down its mailbox's
 * chain (verdicts, async listeners in order, timeouts, errors, nobody listening). The Bus
 * (bus.ts) is this plus the namespace, the sending API, request/reply and the lifecycle.
 * The rules are docs/core.md's.
 */
import { MetanetError } from './errors.js';
import type { Tap } from './introspection.js';
import {
  CONTINUE,
  type Context,
  type ListenerFailure,
  type ListenerInfo,
  type ListenerResult,
  NONE,
  type SendResult,
  STOP,
} from './listener.js';
import type { Logger } from './log.js';
import type { Attached, Mailbox, Settle } from './mailbox.js';
import { Message, type MessageInit } from './message.js';
import { type Route, routeFor } from './route.js';

/** Well-known mailboxes of every bus. */
export const UNDELIVERED = '/system/undelivered';
export const ERRORS = '/system/error';
/** The tag that carries the address a reply goes to. */
export const REPLY_TO = 'reply-to';

/** One message on its way down one mailbox's chain. */
export class Delivery {
  next = 0;
  ran = 0;
  stoppedBy: ListenerInfo | undefined;
  errors: ListenerFailure[] | undefined;
  timedOut: ListenerInfo[] | undefined;
  chain: readonly Attached[] = [];
  constructor(
    readonly bus: Dispatcher,
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
      errors: this.errors ?? NONE,
      timedOut: this.timedOut ?? NONE,
    };
  }
}

export class ListenerContext implements Context {
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

/** Passed to listeners that declare no context parameter (they cannot reach it): saves an allocation per call. */
const NO_CONTEXT = undefined as unknown as Context;
const TIMED_OUT = Symbol('timed out');

/**
 * A queue slot pair: a Delivery and `undefined` (from send), a Mailbox and the Message (from
 * post: no Delivery is allocated unless the chain needs one), or a path under a route and the
 * Message (a post to a path with no mailbox of its own; the route is looked up at delivery).
 */
type Slot = Delivery | Mailbox | Message | string | undefined;

function isThenable(x: unknown): x is PromiseLike<ListenerResult> {
  return typeof x === 'object' && x !== null && typeof (x as PromiseLike<unknown>).then === 'function';
}

function badVerdict(v: unknown): Error {
  return new Error(`listener returned ${JSON.stringify(v)}; return STOP, CONTINUE or nothing`);
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * The delivery loop of a bus: the queue (two arrays used in turn, slots reused), one
 * `setImmediate` turn per burst, and the chain walks.
 */
export abstract class Dispatcher {
  readonly log: Logger;
  protected readonly boxes = new Map<string, Mailbox>();
  protected closed = false;
  protected taps: Tap[] = [];
  /** Routes (route.ts); replaced, never mutated. */
  protected routes: Route[] = [];
  protected queue: Slot[] = [];
  /** Slots used in `queue` (the array is reused: its length is its high-water mark). */
  protected queued = 0;
  /** The other array of the queue, or undefined while a drain walks it. */
  private spare: Slot[] | undefined = [];
  /** The last path post() resolved to a mailbox: most hot paths post to one mailbox in a row. */
  protected lastPath: string | undefined;
  protected lastBox: Mailbox | undefined;
  protected scheduled: NodeJS.Immediate | undefined;
  /** Holds on scheduling a turn (`holdDelivery`): while any, sends only queue. */
  protected held = 0;
  /** Messages taken off the queue and not finished yet (queued ones are `queued / 2`). */
  private running = 0;
  private idle: (() => void)[] = [];

  constructor(log: Logger) {
    this.log = log;
  }

  /** Listeners' contexts send through this. */
  abstract send(address: string, init?: MessageInit): Promise<SendResult>;

  /** post()'s cache of path → mailbox is stale once a mailbox is added, replaced or removed. */
  protected forget(): void {
    this.lastPath = undefined;
    this.lastBox = undefined;
  }

  protected enqueue(path: string, m: Message, done: ((r: SendResult) => void) | undefined): void {
    const d = new Delivery(this, this.boxes.get(path), path, m, done);
    if (this.taps.length > 0) {
      const listened = d.mb !== undefined ? d.mb.chain.length > 0 : routeFor(this.routes, path) !== undefined;
      for (const t of this.taps) t(d.path, d.msg, listened);
    }
    this.queue[this.queued++] = d;
    this.queue[this.queued++] = undefined;
    if (this.scheduled === undefined && this.held === 0) this.scheduled = setImmediate(this.drain);
  }

  /**
   * Deliver what is queued now instead of at the next turn of the loop. For I/O layers at the
   * end of an I/O callback (the IPC layer after a read): it saves a loop iteration per message
   * and keeps every ordering rule — nothing runs before `send()` returns.
   */
  deliverQueued(): void {
    if (this.scheduled !== undefined) clearImmediate(this.scheduled);
    else if (this.queued === 0) return; // nothing queued (or, held, queued without a turn: delivered now too)
    this.drain();
  }

  /**
   * For I/O layers, around the handling of one read (the IPC layer's turn of frames): what is
   * sent from here to `releaseDelivery()` is delivered by that call, and no loop turn is
   * scheduled for it meanwhile (a `setImmediate` and its clearing per read saved). Holds nest;
   * the last release delivers. Every hold must be released (in a `finally`).
   */
  holdDelivery(): void {
    this.held++;
  }

  releaseDelivery(): void {
    if (this.held === 0) throw new Error('releaseDelivery() without holdDelivery()');
    if (--this.held === 0) this.deliverQueued();
  }

  /** Runs once per loop turn: delivers what was queued before it started (later sends wait a turn). */
  protected readonly drain = (): void => {
    this.scheduled = undefined;
    const q = this.queue;
    const n = this.queued;
    // Sends during this turn fill the other array. A drain nested in a listener (deliverQueued)
    // finds no spare and takes a fresh one.
    this.queue = this.spare ?? [];
    this.queued = 0;
    this.spare = undefined;
    this.running += n >> 1;
    let finished = 0;
    for (let i = 0; i < n; i += 2) {
      const a = q[i];
      const b = q[i + 1];
      q[i] = undefined;
      q[i + 1] = undefined;
      if (b === undefined) {
        this.start(a as Delivery);
        continue;
      }
      if (typeof a === 'string') {
        this.routed(a, b as Message);
        finished++;
        continue;
      }
      const mb = a as Mailbox;
      const solo = mb.solo;
      if (solo === undefined || solo.removed) {
        if (this.fast(mb, b as Message)) finished++;
        continue;
      }
      // A chain of one synchronous-style listener: call it here, no loop, no Delivery.
      const chain = mb.chain;
      let r: unknown;
      try {
        r = solo.fn(b as Message, NO_CONTEXT);
      } catch (e) {
        this.reportError(mb.path, solo.info, e);
        finished++;
        continue;
      }
      // STOP from the last listener of a posted message changes nothing.
      if (
        r === undefined ||
        r === CONTINUE ||
        r === STOP ||
        this.went(mb, b as Message, chain, 0, 1, solo, r)
      )
        finished++;
    }
    // Keep the array for the next turn unless a burst left it far larger than needed.
    this.spare = q.length > 65536 && n < q.length >> 2 ? [] : q;
    this.running -= finished;
    if (this.running === 0 && this.queued === 0 && this.idle.length) this.wake();
  };

  /**
   * A posted message: walk a chain of synchronous, context-free listeners without allocating a
   * Delivery; at anything else (a context, a promise, a verdict, an error, nobody listening, a
   * serial mailbox) take a Delivery from where the walk is and go on the general way.
   * True when the message is finished (the caller counts it).
   */
  private fast(mb: Mailbox, m: Message): boolean {
    const chain = mb.chain;
    let ran = 0;
    if (!mb.serial)
      for (let i = 0; i < chain.length; i++) {
        const a = chain[i]!;
        if (a.removed) continue;
        if (a.wantsContext) {
          this.run(this.resume(mb, m, chain, i, ran));
          return false;
        }
        let r: unknown;
        try {
          r = a.fn(m, NO_CONTEXT);
        } catch (e) {
          const d = this.resume(mb, m, chain, i + 1, ran + 1);
          this.failed(d, a.info, e);
          this.run(d);
          return false;
        }
        ran++;
        if (r === undefined || r === CONTINUE) continue;
        return this.went(mb, m, chain, i, ran, a, r);
      }
    if (ran === 0) {
      this.start(new Delivery(this, mb, mb.path, m, undefined));
      return false;
    }
    return true;
  }

  /**
   * Listener `i` of a posted message's chain returned `r` (not nothing, not CONTINUE): STOP, a
   * promise or a wrong value. True when the message is finished here.
   */
  private went(
    mb: Mailbox,
    m: Message,
    chain: readonly Attached[],
    i: number,
    ran: number,
    a: Attached,
    r: unknown,
  ): boolean {
    if (r === STOP) return true; // the chain ends here, and nobody asks who stopped it
    if (r instanceof Promise && i + 1 === chain.length && !(a.info.timeout! < Infinity)) {
      // The last listener went async and nothing waits for a result: when it settles, report
      // what it did wrong (if anything) and count the message done. No Delivery, no async frame.
      const s = a.settle ?? (a.settle = this.settler(a.info));
      r.then(s[0], s[1]);
      return false;
    }
    const d = this.resume(mb, m, chain, i + 1, ran);
    if (isThenable(r)) void this.runAsync(d, a.info, r);
    else if (this.verdict(d, a.info, r)) this.finish(d);
    else this.run(d);
    return false;
  }

  /** The two callbacks that end a posted message whose last listener went async (one pair per listener). */
  private settler(info: ListenerInfo): Settle {
    return [
      (v: unknown) => {
        if (v !== undefined && v !== CONTINUE && v !== STOP)
          this.reportError(info.mailbox, info, badVerdict(v));
        this.done();
      },
      (e: unknown) => {
        this.reportError(info.mailbox, info, e ?? new Error('listener rejected'));
        this.done();
      },
    ];
  }

  /** One message taken off the queue is finished. */
  private done(): void {
    this.running--;
    if (this.running === 0 && this.queued === 0 && this.idle.length) this.wake();
  }

  private wake(): void {
    for (const f of this.idle.splice(0)) f();
  }

  private resume(mb: Mailbox, m: Message, chain: readonly Attached[], next: number, ran: number): Delivery {
    const d = new Delivery(this, mb, mb.path, m, undefined);
    d.chain = chain;
    d.next = next;
    d.ran = ran;
    return d;
  }

  /** A posted message to a path with no mailbox: its route's handler, or undelivered. */
  private routed(path: string, m: Message): void {
    const r = routeFor(this.routes, path);
    if (r !== undefined)
      try {
        if (r.fn(path, m)) return;
      } catch (e) {
        this.reportError(path, r.info, e);
        return;
      }
    this.undelivered(path, m);
  }

  private start(d: Delivery): void {
    const mb = d.mb;
    if (mb === undefined || mb.chain.length === 0) {
      const r = mb === undefined && this.routes.length > 0 ? routeFor(this.routes, d.path) : undefined;
      if (r !== undefined)
        try {
          if (r.fn(d.path, d.msg)) d.ran = 1;
        } catch (e) {
          d.ran = 1;
          this.failed(d, r.info, e);
        }
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
    this.failed(d, info, badVerdict(v));
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
    if (d.ran === 0) this.undelivered(d.path, d.msg);
    this.running--;
    if (d.done) d.done(d.result());
    if (this.running === 0 && this.queued === 0 && this.idle.length) this.wake();
  }

  /** Nobody took a message: to `/system/undelivered` when someone listens there, else a debug line. */
  private undelivered(path: string, m: Message): void {
    if (path === UNDELIVERED || path === ERRORS) return;
    if (this.boxes.get(UNDELIVERED)?.chain.length)
      this.enqueue(UNDELIVERED, Message.from({ mailbox: path, message: m }), undefined);
    else this.log.log('debug', 'undelivered', { mailbox: path });
  }

  protected reportError(mailbox: string, info: ListenerInfo | undefined, e: unknown): void {
    const fields = { mailbox, listener: info?.id, name: info?.name, error: errorText(e) };
    if (mailbox !== ERRORS && !this.closed && this.boxes.get(ERRORS)?.chain.length) {
      this.enqueue(ERRORS, Message.from(fields), undefined);
    } else this.log.log('error', 'listener failed', fields);
  }

  /** Whether messages are queued or on their way down a chain. */
  protected get busy(): boolean {
    return this.running > 0 || this.queued > 0;
  }

  /** Resolves when every queued and running chain has finished. */
  settled(): Promise<void> {
    if (!this.busy) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }
}

/**
 * The synchronous style over the queue: `wait()` (the next matching message on a mailbox) and
 * request/reply (`request()`: a message with a `reply-to` path, settled by the first message
 * sent there). See docs/core.md, "Synchronous style".
 */
import { REPLY_TO } from './delivery.js';
import { MetanetError } from './errors.js';
import type { Listener, ListenerHandle, ListenOptions, SendResult } from './listener.js';
import { Message, type MessageInit, type Tuple } from './message.js';
import { Deadlines, type Due, type DueLane } from './timers.js';
import type { SendWaiter } from './transport.js';

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

/** What `wait()` needs of its bus. */
export interface WaitHost {
  listen(address: string, fn: Listener, options: ListenOptions): ListenerHandle;
}

/**
 * Resolve with the next message on `address` that matches. The waiter is prepended, so it sees
 * the message even when a listener later in the chain stops it; it never stops the chain itself.
 * `waiters` holds its failure function while it waits (close() fails it with ECLOSED).
 */
export function waitFor(
  bus: WaitHost,
  waiters: Set<(e: Error) => void>,
  address: string,
  options: WaitOptions,
): Promise<Message> {
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
      waiters.delete(fail);
      options.signal?.removeEventListener('abort', onAbort);
    };
    const fail = (e: Error): void => {
      cleanup();
      reject(e);
    };
    const onAbort = (): void => fail(new MetanetError('ETIMEDOUT', `wait on ${address} aborted`));
    const handle = bus.listen(
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
    waiters.add(fail);
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

/** What a pending request needs of its bus. */
export interface ReplyHost {
  sendFor(address: string, m: Message, w: SendWaiter): void;
  /** The request waits at its reply path. */
  openReply(r: PendingReply): void;
  /** It does no more. */
  closeReply(r: PendingReply): void;
}

/** The timeouts of every request of the process, on one timer (timers.ts, `Deadlines`). */
const requestTimeouts = new Deadlines();

/** Where requests wait for their replies: `/system/reply/N`, one route for all (bus.ts). */
export const REPLY_ROUTE = '/system/reply';

/**
 * One `request()` in flight: its reply path, the timeout, and the send's result. Its reply
 * path has no mailbox: the bus's reply route hands the first message sent there to `take()`
 * (queued and delivered like any message; a mailbox someone makes there, e.g. to wait on it,
 * sees the messages too). It settles with the reply once the send said a listener ran
 * (ENOLISTENER at once otherwise), whichever of the two comes first; ETIMEDOUT when no reply
 * comes in time; ECLOSED on close(). Same behaviour as `wait()` + `send()`, with one object and
 * no mailbox or listener per request.
 */
export class PendingReply implements Due, SendWaiter {
  dueAt = 0;
  duePrev: Due | undefined = undefined;
  dueNext: Due | undefined = undefined;
  dueLane: DueLane | undefined = undefined;
  /** Who may answer it: the connections the request went over, as the IPC layer marks them. */
  private answerers: object | object[] | undefined = undefined;
  private reply: Message | undefined;
  private delivered = false;
  private done = false;

  constructor(
    private readonly bus: ReplyHost,
    private readonly address: string,
    readonly path: string,
    private readonly ms: number,
    private readonly resolve: (m: Message) => void,
    private readonly reject: (e: Error) => void,
  ) {}

  /** @internal `who` may answer (an IPC connection the request went over). */
  allow(who: object): void {
    const a = this.answerers;
    if (a === undefined) this.answerers = who;
    else if (Array.isArray(a)) {
      if (!a.includes(who)) a.push(who);
    } else if (a !== who) this.answerers = [a, who];
  }

  /** @internal */
  allows(who: object): boolean {
    const a = this.answerers;
    return a === who || (Array.isArray(a) && a.includes(who));
  }

  fail(e: Error): void {
    if (this.done) return;
    this.finish();
    this.reject(e);
  }

  start(m: Message): void {
    this.bus.openReply(this);
    if (Number.isFinite(this.ms)) requestTimeouts.add(this, this.ms);
    this.bus.sendFor(this.address, withReplyTo(m, this.path), this);
  }

  /** @internal The timeout passed (called by the sweep). */
  expire(): void {
    this.fail(new MetanetError('ETIMEDOUT', `no reply from ${this.address} within ${this.ms} ms`));
  }

  /**
   * @internal A message to the reply path (the reply route's handler). The first one is the
   * reply (true); later ones are not delivered (false), as to a mailbox whose waiter has left.
   */
  take(x: Message): boolean {
    if (this.done || this.reply !== undefined) return false;
    this.reply = x;
    if (this.delivered) this.settle(x);
    return true;
  }

  /** @internal The send failed (SendWaiter). */
  failed(e: Error): void {
    this.fail(e);
  }

  /** @internal What the send did (SendWaiter). */
  sent(r: SendResult): void {
    if (this.done) return;
    if (!r.delivered) {
      this.fail(new MetanetError('ENOLISTENER', `no listener on ${this.address} to answer the request`));
      return;
    }
    this.delivered = true;
    if (this.reply !== undefined) this.settle(this.reply);
  }

  private settle(x: Message): void {
    this.finish();
    this.resolve(x);
  }

  private finish(): void {
    this.done = true;
    if (this.dueLane !== undefined) requestTimeouts.remove(this);
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

import type { Listener, ListenOptions, SendResult } from './listener.js';
import type { Message } from './message.js';
import type { Address } from './path.js';

/** A listener attached in another daemon. */
export interface RemoteAttachment {
  /** Resolves when the remote daemon has the listener in its chain; rejects with the reason it refused. */
  readonly ready: Promise<void>;
  remove(): void;
}

/**
 * Who waits for a send's result: `send()` with two callbacks instead of a promise. One of them is
 * called once, possibly synchronously from inside the bus's delivery or a transport's read: a
 * waiter does no more than note the result (it must not throw, nor run user code there).
 */
export interface SendWaiter {
  sent(r: SendResult): void;
  failed(e: Error): void;
}

/**
 * How a bus reaches mailboxes that live elsewhere. The IPC layer (Unix sockets) and the NATS
 * layer implement it; the core only routes addresses to the first transport that `handles` them.
 */
export interface Transport {
  handles(address: Address): boolean;
  send(address: Address, msg: Message): Promise<SendResult>;
  /**
   * `send()` answered through `w` (no promise per send); never throws: every failure goes to
   * `w.failed`. Optional: the bus uses `send()` without it.
   */
  sendFor?(address: Address, msg: Message, w: SendWaiter): void;
  /**
   * Fire-and-forget (pipelined, no result). Returns undefined when the message was handed over at
   * once, else a promise that rejects if it could not be (e.g. the daemon is not running).
   */
  post?(address: Address, msg: Message): Promise<void> | undefined;
  listen(address: Address, fn: Listener, options: ListenOptions): RemoteAttachment;
  close(): Promise<void>;
}

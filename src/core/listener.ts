import type { Message, MessageInit } from './message.js';

/** Return this from a listener to stop the chain: no later listener sees the message. */
export const STOP = 'stop' as const;
/** Return this (or nothing) to let the chain go on. */
export const CONTINUE = 'continue' as const;
export type Verdict = typeof STOP | typeof CONTINUE | undefined;

/** What a listener is told besides the message. */
export interface Context {
  /** The mailbox path the message was sent to (in this process). */
  readonly mailbox: string;
  /** This listener, as introspection shows it. */
  readonly listener: ListenerInfo;
  /** The `reply-to` address of the message, if it has one. */
  readonly replyTo: string | undefined;
  /** Send to the message's `reply-to` mailbox; fails with ENOTUPLE when it has none. */
  reply(init?: MessageInit): Promise<SendResult>;
  /** Send to any address (same as `bus.send`). */
  send(address: string, init?: MessageInit): Promise<SendResult>;
}

// biome-ignore lint/suspicious/noConfusingVoidType: a listener that returns nothing lets the chain go on
export type ListenerResult = Verdict | void;
export type Listener = (msg: Message, ctx: Context) => ListenerResult | Promise<ListenerResult>;

/** Where a new listener goes in the chain. `before`/`after` name another listener by identity or handle. */
export type Position =
  | 'append'
  | 'prepend'
  | { readonly before: MessageInit | ListenerHandle }
  | { readonly after: MessageInit | ListenerHandle };

export interface ListenOptions {
  /** Tuples that identify this listener (for before/after/remove and introspection). */
  readonly identity?: MessageInit;
  /** Default 'append'. */
  readonly position?: Position;
  /**
   * For an async listener: how long the chain waits for its verdict (ms). After that the chain
   * goes on (`onTimeout: 'continue'`, fail-open, the default) or stops (`'stop'`, fail-closed).
   * Default: no limit for local listeners; remote listeners get 1000 ms.
   */
  readonly timeout?: number;
  readonly onTimeout?: 'continue' | 'stop';
  /** Set by the IPC layer: who attached this listener from another process (shown by introspection). */
  readonly remote?: string;
}

export interface ListenerInfo {
  /** Unique in this bus; handles refer to it. */
  readonly id: number;
  readonly mailbox: string;
  readonly identity: Message;
  /** The function's name, for introspection. */
  readonly name: string;
  /** For a listener attached from another process: who attached it (e.g. `glue[pid 42]`). */
  readonly remote?: string;
  readonly timeout?: number;
  readonly onTimeout: 'continue' | 'stop';
}

export interface ListenerHandle {
  readonly id: number;
  /** Address the listener was attached to (`/a/b` or `dhcpd:/a/b`). */
  readonly address: string;
  readonly identity: Message;
  /** Resolves once the listener is in place (immediately for local ones). */
  readonly ready: Promise<void>;
  /** Detach. Idempotent. */
  remove(): void;
}

export interface ListenerFailure {
  readonly listener: ListenerInfo;
  readonly error: string;
}

/** The `errors` or `timedOut` of a send that had none: one frozen empty array, not two fresh ones per send. */
export const NONE: readonly never[] = Object.freeze([]);

/** What happened to a sent message. */
export interface SendResult {
  /** The address it was sent to. */
  readonly mailbox: string;
  /** False when no listener ran (the message went to `/system/undelivered`). */
  readonly delivered: boolean;
  /** How many listeners ran (including ones that failed or timed out). */
  readonly listeners: number;
  /** True when a listener returned STOP (or a fail-closed listener timed out). */
  readonly stopped: boolean;
  readonly stoppedBy?: ListenerInfo;
  /** Listeners that threw or rejected; the chain went on past them. */
  readonly errors: readonly ListenerFailure[];
  /** Async listeners that did not answer within their timeout. */
  readonly timedOut: readonly ListenerInfo[];
}

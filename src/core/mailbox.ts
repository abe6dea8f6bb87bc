import { MetanetError } from './errors.js';
import type { Listener, ListenerHandle, ListenerInfo, Position } from './listener.js';
import { Message, type MessageInit } from './message.js';

/** A listener as the bus keeps it. */
export interface Attached {
  readonly info: ListenerInfo;
  readonly fn: Listener;
  /** The function declares a second parameter: only then is a Context built for each call. */
  readonly wantsContext: boolean;
  removed: boolean;
  /** Made on first use: what ends a posted message whose last listener is this one and went async. */
  settle: Settle | undefined;
}

/** Called with the verdict / the rejection of a listener's promise. */
export type Settle = readonly [(v: unknown) => void, (e: unknown) => void];

export interface MailboxInfo {
  readonly path: string;
  readonly tuples: Message;
  /** Serial mailboxes finish one message's chain before starting the next. */
  readonly serial: boolean;
  /** In chain order. */
  readonly listeners: readonly ListenerInfo[];
}

function isHandle(x: unknown): x is ListenerHandle {
  return typeof x === 'object' && x !== null && 'remove' in x && typeof (x as ListenerHandle).id === 'number';
}

/**
 * A mailbox: a path, its own tuples, and an ordered chain of listeners.
 * The chain array is replaced, never mutated, so a delivery in progress keeps a stable view.
 */
export class Mailbox {
  private list: readonly Attached[] = [];
  /**
   * The chain's one listener when it is the whole chain, synchronous-style (no context) and the
   * mailbox is not serial: the loop calls it directly (docs/core.md, Performance).
   */
  solo: Attached | undefined;
  /** Deliveries waiting for a serial mailbox's current chain to finish. */
  readonly backlog: (() => void)[] = [];
  busy = false;

  constructor(
    readonly path: string,
    public tuples: Message,
    readonly serial: boolean,
  ) {}

  get chain(): readonly Attached[] {
    return this.list;
  }

  set chain(c: readonly Attached[]) {
    this.list = c;
    const a = c.length === 1 ? c[0] : undefined;
    this.solo = a !== undefined && !a.wantsContext && !this.serial ? a : undefined;
  }

  info(): MailboxInfo {
    return {
      path: this.path,
      tuples: this.tuples,
      serial: this.serial,
      listeners: this.chain.map((a) => a.info),
    };
  }

  insert(a: Attached, position: Position = 'append'): void {
    const chain = [...this.chain];
    if (position === 'append') chain.push(a);
    else if (position === 'prepend') chain.unshift(a);
    else if ('before' in position) chain.splice(this.indexOf(position.before), 0, a);
    else chain.splice(this.indexOf(position.after) + 1, 0, a);
    this.chain = chain;
  }

  /** Remove the listeners matched by a handle, an id, or identity tuples. Returns how many. */
  remove(which: ListenerHandle | number | MessageInit): number {
    const match = this.matcher(which);
    const gone = this.chain.filter(match);
    for (const a of gone) a.removed = true;
    if (gone.length) this.chain = this.chain.filter((a) => !a.removed);
    return gone.length;
  }

  removeAll(): void {
    for (const a of this.chain) a.removed = true;
    this.chain = [];
  }

  private indexOf(which: ListenerHandle | MessageInit): number {
    const i = this.chain.findIndex(this.matcher(which));
    if (i < 0) {
      const what = isHandle(which) ? `listener #${which.id}` : `listener matching {${Message.from(which)}}`;
      throw new MetanetError('ENOLISTENER', `no ${what} on ${this.path}`);
    }
    return i;
  }

  private matcher(which: ListenerHandle | number | MessageInit): (a: Attached) => boolean {
    if (typeof which === 'number') return (a) => a.info.id === which;
    if (isHandle(which)) return (a) => a.info.id === which.id;
    const pattern = Message.from(which);
    if (pattern.length === 0) throw new MetanetError('EBADTUPLE', 'an empty identity matches every listener');
    return (a) => a.info.identity.matches(pattern);
  }
}

/**
 * Routes: a family of dynamic paths under one prefix served by one handler, without a mailbox
 * per path (`bus.route()`, docs/core.md "Routes"). A message sent to a path under the prefix
 * that has no mailbox of its own goes to the handler, queued like any other (never re-entrant,
 * in order). A mailbox someone creates at such a path (a listener, a wait, a tap from another
 * process) gets the route's listener at the head of its chain, so it sees the messages exactly
 * as if the route had been an ordinary listener there from the start.
 */
import type { Context, ListenerInfo } from './listener.js';
import type { Attached, Mailbox, MailboxInfo } from './mailbox.js';
import { Message } from './message.js';

/**
 * Called with the path (`<prefix>/…`) and the message. Synchronous; returns whether the path is
 * one it serves (false: the message is undelivered, as at a path nobody listens on). A throw is
 * reported like a listener's.
 */
export type RouteHandler = (path: string, m: Message) => boolean;

export interface RouteHandle {
  /** The route's listener id (shown by introspection, in every mailbox under the prefix). */
  readonly id: number;
  readonly prefix: string;
  /** How many mailboxes exist under the prefix now (0 on the hot path: nobody else is there). */
  readonly mailboxes: number;
  /** Stop serving the prefix; its listener leaves the mailboxes under it. Idempotent. */
  remove(): void;
}

/** What introspection shows for a route: a pseudo-mailbox `<prefix>/*` with the route's listener. */
const ROUTE_TUPLES = Message.from({ route: 'paths under it with no mailbox of their own' });

export class Route {
  /** Mailboxes under the prefix; each has the route's listener in its chain. */
  readonly boxes = new Set<Mailbox>();
  removed = false;

  constructor(
    readonly prefix: string,
    readonly fn: RouteHandler,
    readonly info: ListenerInfo,
  ) {}

  /** Whether `path` is strictly under the prefix. */
  covers(path: string): boolean {
    const n = this.prefix.length;
    return path.length > n + 1 && path.charCodeAt(n) === 47 /* '/' */ && path.startsWith(this.prefix);
  }

  /** A mailbox appeared under the prefix: the route's listener joins its chain. */
  adopt(mb: Mailbox, position: 'prepend' | 'append'): void {
    const a: Attached = {
      info: this.info,
      fn: this.listener,
      wantsContext: true,
      removed: false,
      settle: undefined,
    };
    mb.insert(a, position);
    this.boxes.add(mb);
  }

  /** The route's listener in a mailbox's chain: the handler, with the mailbox's path. */
  private readonly listener = (m: Message, ctx: Context): void => {
    if (!this.removed) this.fn(ctx.mailbox, m);
  };

  describe(): MailboxInfo {
    return { path: `${this.prefix}/*`, tuples: ROUTE_TUPLES, serial: false, listeners: [this.info] };
  }
}

/** The route serving `path`, if any (routes never nest: at most one covers a path). */
export function routeFor(routes: readonly Route[], path: string): Route | undefined {
  for (let i = 0; i < routes.length; i++) if (routes[i]!.covers(path)) return routes[i];
  return undefined;
}

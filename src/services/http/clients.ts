/**
 * The requests of the HTTP servers of one name on one bus, between their arrival and the end of
 * the bus turn they were answered in: `<name>/client/<n>/response` and `/close` are one route of
 * the bus (`bus.route('<name>/client')`, docs/core.md "Routes": no mailbox, listener or map entry
 * per request), whose handler reads `n` from the path and finds the request in a ring (a map for
 * the requests beyond RING waiting at once). Shared by the servers of one name (the service makes
 * one; a bench may add a socket-free twin), so numbers stay unique among them.
 */
import type { Bus } from '../../core/bus.js';
import type { Message } from '../../core/message.js';
import type { RouteHandle } from '../../core/route.js';

/** What a request needs to be found and answered. */
export interface Client {
  readonly seq: number;
  readonly clientname: string;
  /** `<clientname>/response`. */
  respond(m: Message): void;
  /** `<clientname>/close`. */
  close(): void;
}

/** Slots of the ring that finds a request by its number. */
const RING = 4096;
const RESPONSE = '/response';
const CLOSE = '/close';

const tables = new WeakMap<Bus, Map<string, Clients>>();

export class Clients {
  /** `<name>/client/`: the base of every clientname. */
  readonly base: string;
  private seq = 0;
  private readonly ring: (Client | undefined)[] = new Array<Client | undefined>(RING).fill(undefined);
  private readonly overflow = new Map<number, Client>();
  private readonly route: RouteHandle;
  private users = 0;

  private constructor(
    private readonly bus: Bus,
    private readonly name: string,
  ) {
    this.base = `${name}/client/`;
    this.route = bus.route(`${name}/client`, this.routed, 'requests');
  }

  /** The table of `name`'s servers on `bus`, made (and its route attached) for the first one. */
  static take(bus: Bus, name: string): Clients {
    let byName = tables.get(bus);
    if (byName === undefined) tables.set(bus, (byName = new Map()));
    let c = byName.get(name);
    if (c === undefined) byName.set(name, (c = new Clients(bus, name)));
    c.users++;
    return c;
  }

  /** A server is done with it: the last one removes the route. */
  release(): void {
    if (--this.users > 0) return;
    this.route.remove();
    tables.get(this.bus)?.delete(this.name);
  }

  /** The number of the next request. */
  next(): number {
    return ++this.seq;
  }

  add(c: Client): void {
    const slot = c.seq & (RING - 1);
    if (this.ring[slot] === undefined) this.ring[slot] = c;
    else this.overflow.set(c.seq, c);
  }

  /**
   * Answered requests whose paths are served no more (a message there is undelivered from now on).
   * A mailbox someone made at one of their paths (a listener of their own) goes with them.
   */
  drop(done: readonly Client[]): void {
    const ring = this.ring;
    const boxes = this.route.mailboxes > 0;
    for (let i = 0; i < done.length; i++) {
      const c = done[i]!;
      const slot = c.seq & (RING - 1);
      if (ring[slot] === c) ring[slot] = undefined;
      else this.overflow.delete(c.seq);
      if (boxes) {
        this.bus.remove(c.clientname + RESPONSE);
        this.bus.remove(c.clientname + CLOSE);
      }
    }
  }

  /** The route's handler: `<base><n>/response` or `/close` of a request not dropped yet. */
  private readonly routed = (path: string, m: Message): boolean => {
    const base = this.base.length;
    let i = base;
    let n = 0;
    for (; i < path.length && i < base + 15; i++) {
      const ch = path.charCodeAt(i);
      if (ch < 48 || ch > 57) break;
      n = n * 10 + ch - 48;
    }
    if (i === base || (path.charCodeAt(base) === 48 /* a leading 0 */ && i > base + 1)) return false;
    let c = this.ring[n & (RING - 1)];
    if (c === undefined || c.seq !== n) {
      c = this.overflow.size > 0 ? this.overflow.get(n) : undefined;
      if (c === undefined) return false;
    }
    const rest = path.length - i;
    if (rest === RESPONSE.length && path.startsWith(RESPONSE, i)) c.respond(m);
    else if (rest === CLOSE.length && path.startsWith(CLOSE, i)) c.close();
    else return false;
    return true;
  };
}

import type { Bus } from '../core/bus.js';
import type { Listener, ListenerHandle, ListenOptions } from '../core/listener.js';

/**
 * Listeners of other processes standing in this bus (a peer's LISTEN). A mailbox that did not
 * exist before such a listener came is made for it, and goes away with the last listener when
 * it is still bare (no tuples of its own, not serial, nobody else listening): a peer that
 * listens on 60,000 new paths and leaves takes its 60,000 mailboxes with it (docs/ipc.md).
 */
const madeFor = new WeakMap<Bus, Set<string>>();

/** `bus.listen` for a remote listener; the handle's `remove` also drops the mailbox made for it. */
export function listenFor(bus: Bus, path: string, fn: Listener, options: ListenOptions): ListenerHandle {
  let paths = madeFor.get(bus);
  if (!bus.has(path)) {
    if (!paths) madeFor.set(bus, (paths = new Set()));
    paths.add(path);
  }
  let h: ListenerHandle;
  try {
    h = bus.listen(path, fn, options);
  } catch (e) {
    release(bus, path); // e.g. before/after a listener that is not there: no mailbox left behind
    throw e;
  }
  if (!paths?.has(path)) return h;
  return new Releasing(h, bus, path);
}

/** The bus's handle, whose `remove` also drops the mailbox made for remote listeners. */
class Releasing implements ListenerHandle {
  readonly id: number;
  readonly address: string;
  readonly identity: ListenerHandle['identity'];
  readonly ready: Promise<void>;
  constructor(
    private readonly h: ListenerHandle,
    private readonly bus: Bus,
    private readonly path: string,
  ) {
    this.id = h.id;
    this.address = h.address;
    this.identity = h.identity;
    this.ready = h.ready;
  }
  remove(): void {
    this.h.remove();
    release(this.bus, this.path);
  }
}

function release(bus: Bus, path: string): void {
  const paths = madeFor.get(bus);
  if (!paths?.has(path)) return;
  const info = bus.mailbox(path);
  if (info === undefined) {
    paths.delete(path);
    return;
  }
  if (info.listeners.length > 0) return; // still in use: the last one to leave removes it
  paths.delete(path);
  if (info.tuples.length === 0 && !info.serial) bus.remove(path);
}

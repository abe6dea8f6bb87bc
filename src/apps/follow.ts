import type { Bus } from '../core/bus.js';
import type { Listener, ListenOptions } from '../core/listener.js';

/**
 * Attach a listener to another daemon's mailbox and keep it there: while the daemon is not (yet)
 * running, try again with backoff (100 ms doubling to 2 s); once attached, the IPC layer re-attaches
 * it by itself after the daemon restarts. `attached` resolves the first time it is in the chain.
 */
export function follow(
  bus: Bus,
  address: string,
  fn: Listener,
  options: Partial<ListenOptions> = {},
): { readonly attached: Promise<void>; remove(): void } {
  let removed = false;
  let current: { remove(): void } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let resolve!: () => void;
  const attached = new Promise<void>((r) => (resolve = r));
  const attempt = (delay: number): void => {
    if (removed) return;
    const h = bus.listen(address, fn, options);
    current = h;
    h.ready.then(resolve, (e: unknown) => {
      if (removed) return;
      bus.log.log('debug', 'waiting for a daemon to attach to', { address, error: e });
      timer = setTimeout(() => attempt(Math.min(delay * 2, 2000)), delay);
    });
  };
  attempt(100);
  return {
    attached,
    remove() {
      removed = true;
      if (timer) clearTimeout(timer);
      current?.remove();
    },
  };
}

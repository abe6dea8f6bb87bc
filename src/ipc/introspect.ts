import type { Bus } from '../core/bus.js';
import type { ListenerInfo } from '../core/listener.js';
import type { Operation } from './acl.js';
import { toWire, type WireTuple } from './wire.js';

/**
 * The answer to LS (docs/wire-protocol.md, "LS"), as wire tuples: this process's mailboxes
 * under `under` (all when undefined), as far as the asker may see them: a mailbox is listed
 * when it may send to it or listen on it, and its listeners only when it may listen there.
 * Built straight as wire tuples, with no Message in between (3,000 mailboxes: ~1 ms instead of
 * ~3 ms on the development VM, best of 40).
 */
export function lsWire(
  bus: Bus,
  daemon: string,
  under: string | undefined,
  may: (op: Operation, path: string) => boolean,
): WireTuple[] {
  const out: WireTuple[] = [
    ['daemon', 0, daemon],
    ['pid', 1, process.pid],
  ];
  for (const b of bus.mailboxes()) {
    if (under !== undefined && b.path !== under && !b.path.startsWith(`${under}/`)) continue;
    const listen = may('listen', b.path);
    if (!listen && !may('send', b.path)) continue;
    const box: WireTuple[] = [
      ['path', 0, b.path],
      ['tuples', 6, toWire(b.tuples)],
      ['serial', 3, b.serial],
    ];
    if (listen) for (const l of b.listeners) box.push(['listener', 6, listenerWire(l)]);
    out.push(['mailbox', 6, box]);
  }
  return out;
}

function listenerWire(l: ListenerInfo): WireTuple[] {
  const t: WireTuple[] = [
    ['id', 1, l.id],
    ['name', 0, l.name],
    ['identity', 6, toWire(l.identity)],
  ];
  if (l.remote !== undefined) t.push(['remote', 0, l.remote]);
  const ms = l.timeout;
  if (ms !== undefined) t.push(Number.isInteger(ms) ? ['timeout', 1, wideInt(ms)] : ['timeout', 2, ms]);
  t.push(['on-timeout', 0, l.onTimeout]);
  return t;
}

/** An int beyond 32 bits as a bigint, so that it is written as int64 (as toWire does). */
function wideInt(v: number): number | bigint {
  return v > 0xffffffff || v < -0x80000000 ? BigInt(v) : v;
}

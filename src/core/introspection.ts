/**
 * Introspection: what a bus shows of itself — its mailboxes with their listeners in chain
 * order (`bus.mailboxes()`, `bus.mailbox(path)`, the `ls` verb) and taps on the traffic
 * (`bus.tap()`, the `monitor` verb).
 */
import type { Mailbox, MailboxInfo } from './mailbox.js';
import type { Message } from './message.js';
import type { Route } from './route.js';

/** A monitor of all local traffic: path, message, and whether the mailbox has listeners. */
export type Tap = (path: string, msg: Message, listened: boolean) => void;

/** Every mailbox of a namespace, sorted by path. */
export function describeAll(boxes: ReadonlyMap<string, Mailbox>): MailboxInfo[] {
  return sortByPath([...boxes.values()].map((m) => m.info()));
}

/** Every route of a namespace (as `<prefix>/*` with its listener), sorted by prefix. */
export function describeRoutes(routes: readonly Route[]): MailboxInfo[] {
  return sortByPath(routes.map((r) => r.describe()));
}

function sortByPath(infos: MailboxInfo[]): MailboxInfo[] {
  return infos.sort((a, b) => (a.path < b.path ? -1 : 1));
}

/** `taps` with `fn` added (a new array: a send in progress keeps calling the ones it started with). */
export function addTap(taps: readonly Tap[], fn: Tap): Tap[] {
  return [...taps, fn];
}

/** `taps` without `fn`. */
export function removeTap(taps: readonly Tap[], fn: Tap): Tap[] {
  return taps.filter((t) => t !== fn);
}

import { MetanetError } from '../core/errors.js';
import { Message, type Tuple } from '../core/message.js';
import { noteAddress } from '../core/path.js';
import { isReplyPath, RELAY } from './frames.js';

/**
 * Names on a daemon's connections (docs/ipc.md, "Names"). A client's HELLO name is only how it
 * calls itself. The daemon routes each connection by a name it makes: the HELLO name, a dot and
 * the peer's process id as the kernel reports it (`metanet-4242.4242`), plus `.N` for a further
 * connection of that process under the same name. Nobody can claim that name in advance (no
 * other live process has that pid, and the daemon hands each name out once), and no connection
 * is ever routed by a bare name, so a client cannot stand in for a daemon either.
 *
 * Replies find the connection because the daemon rewrites the reply-to of every SEND from it:
 * `NAME:/path` (the peer naming itself) becomes `ROUTE:/path`; frames back to the peer turn
 * `ROUTE:/path` into `NAME:/path` again, so the peer sees only its own name.
 */

const MAX_NAME = 64;
/** A daemon name may not look like a route name (`….DIGITS`): those are the daemon's own. */
const ROUTE_LIKE = /\.\d+$/;

export function isRouteLike(name: string): boolean {
  return ROUTE_LIKE.test(name);
}

/** The route name for a peer: `NAME.PID`, then `NAME.PID.2`, `NAME.PID.3`… while `taken`. */
export function routeName(name: string, pid: number, taken: (n: string) => boolean): string {
  for (let n = 1; ; n++) {
    const suffix = n === 1 ? `.${pid}` : `.${pid}.${n}`;
    const r = `${name.slice(0, MAX_NAME - suffix.length)}${suffix}`;
    if (!taken(r)) return r;
  }
}

const REPLY_TO = 'reply-to';

function replyToAt(m: Message): number {
  const ts = m.tuples;
  for (let i = 0; i < ts.length; i++) if (ts[i]!.tag === REPLY_TO) return i;
  return -1;
}

function withReplyTo(m: Message, at: number, value: string): Message {
  const out: Tuple[] = m.tuples.slice();
  out[at] = { tag: REPLY_TO, type: 'str', value };
  return new Message(out);
}

/**
 * A message arriving from a peer: a reply-to must name a process (`NAME:/path`); one naming the
 * peer itself is rewritten to its route name when it has one. A bare path is refused (EPROTO):
 * the answer would go to a mailbox of this process, not back to the sender.
 */
export function inboundReplyTo(m: Message, peer: string, route: string | undefined): Message {
  const at = replyToAt(m);
  if (at < 0) return m;
  const t = m.tuples[at]!;
  if (t.type !== 'str') return m;
  const v = t.value;
  if (v.charCodeAt(0) === 47 /* '/' */)
    throw new MetanetError(
      'EPROTO',
      `reply-to "${v}" is a bare path: the sender must name itself (${peer}:${v}), see docs/wire-protocol.md`,
    );
  if (route === undefined || v.charCodeAt(peer.length) !== 58 /* ':' */ || !v.startsWith(peer)) return m;
  const to = `${route}${v.slice(peer.length)}`;
  noteAddress(to, route, v, peer.length + 1); // the answer's address, parsed once here
  return withReplyTo(m, at, to);
}

/**
 * A message going to a peer: its reply-to must make sense on the other side. A bare path names
 * this process (`me:/path`); the peer's route name is the peer's own name again; an address of a
 * third process the peer may not reach is routed through this one
 * (`me:/system/relay/<name>/path`, docs/wire-protocol.md, "Relaying"). When the reply-to it
 * writes is a reply path of this process (its own or relayed), `grant` is told the path the
 * peer will send the reply to (replies.ts).
 */
export function outboundReplyTo(
  m: Message,
  local: string,
  peer: string | undefined,
  route: string | undefined,
  grant?: (path: string) => void,
): Message {
  const at = replyToAt(m);
  if (at < 0) return m;
  const t = m.tuples[at]!;
  if (t.type !== 'str') return m;
  const v = t.value;
  if (v.charCodeAt(0) === 47 /* '/' */) {
    if (grant !== undefined && isReplyPath(v)) grant(v);
    return withReplyTo(m, at, `${local}:${v}`);
  }
  const colon = v.indexOf(':');
  if (colon <= 0) return m;
  const name = v.slice(0, colon);
  if (name.includes('/') || name === peer) return m;
  if (name === local) {
    if (grant !== undefined && isReplyPath(v.slice(colon + 1))) grant(v.slice(colon + 1));
    return m;
  }
  if (name === route) return withReplyTo(m, at, `${peer}${v.slice(colon)}`);
  const relayed = `${RELAY}/${name}${v.slice(colon + 1)}`;
  if (grant !== undefined && isReplyPath(relayed)) grant(relayed);
  return withReplyTo(m, at, `${local}:${relayed}`);
}

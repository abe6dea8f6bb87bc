import type { Bus } from '../core/bus.js';
import { MetanetError } from '../core/errors.js';
import { CONTINUE, type ListenerHandle, type ListenerResult, STOP } from '../core/listener.js';
import type { Message } from '../core/message.js';
import { checkPath, pathMatches } from '../core/path.js';
import type { Acl, Operation } from './acl.js';
import {
  errorFrame,
  isReplyPath,
  onTimeoutFromWire,
  positionFromWire,
  RELAY,
  REMOTE_TIMEOUT,
  REPLY_PREFIX,
  relayTarget,
  resultToFrame,
  timeoutFromWire,
} from './frames.js';
import { lsWire } from './introspect.js';
import { inboundReplyTo } from './names.js';
import type { PeerCred } from './peercred.js';
import { listenFor } from './proxies.js';
import { F, type Frame, field, frameName, fromWire } from './wire.js';

/** Paths that passed `checkPath` lately: peers send to a few mailboxes over and over. */
const validPaths = new Set<string>();
const VALID_PATHS_KEPT = 1024;

function knownPath(path: string): string {
  if (validPaths.has(path)) return path;
  checkPath(path);
  // a reply path is used once: not worth remembering
  if (!path.startsWith(REPLY_PREFIX)) {
    if (validPaths.size >= VALID_PATHS_KEPT) validPaths.clear();
    validPaths.add(path);
  }
  return path;
}

/** What `Served` needs of its link. */
export interface ServedLink {
  readonly bus: Bus;
  readonly localName: string;
  readonly acl: Acl | undefined;
  readonly cred: PeerCred | undefined;
  /** `NAME[pid N]`. */
  readonly who: string;
  readonly peerName: string | undefined;
  readonly routeName: string | undefined;
  write(frame: readonly unknown[]): void;
  /** The reply-to of a message going to the peer, made sense of there (names.ts). */
  qualify(m: Message): Message;
  /** Whether the peer was given the reply path `path` (replies.ts). */
  mayReply(path: string): boolean;
  /** An answer went out after its chain ran (the link may be waiting for the last one to close). */
  answered(): void;
}

/**
 * What the peer of one connection asks of this process (docs/wire-protocol.md): SEND, LISTEN
 * and UNLISTEN (its listeners standing in this bus, and the VERDICTs they owe), MONITOR and
 * UNMONITOR, LS — each checked against the access rules. It throws for a bad request; the link
 * answers that with an ERROR.
 */
export class Served {
  /** Requests whose answer is not written yet (their chains are running). */
  answering = 0;
  /** Proxies standing in this bus for the peer's listeners, by the peer's lid. */
  private readonly proxies = new Map<number, ListenerHandle>();
  private readonly verdicts = new Map<
    number,
    { resolve(v: ListenerResult): void; reject(e: Error): void; onTimeout: 'continue' | 'stop' }
  >();
  private nextDelivery = 1;
  private readonly monitors = new Map<number, () => void>();
  private nextMonitor = 1;

  constructor(private readonly l: ServedLink) {}

  /** Handlers by frame type. */
  readonly handlers: Readonly<Record<number, (f: Frame) => void>> = {
    [F.SEND]: (f) => this.onSend(f),
    [F.LISTEN]: (f) => this.onListen(f),
    [F.UNLISTEN]: (f) => this.onUnlisten(f),
    [F.VERDICT]: (f) => this.onVerdict(f),
    [F.MONITOR]: (f) => this.onMonitor(f),
    [F.UNMONITOR]: (f) => this.onUnmonitor(f),
    [F.LS]: (f) => this.onLs(f),
  };

  /** The peer is gone (or its stream broke): its listeners leave the chains — a delivery waiting on one goes on as its onTimeout says — and its monitors stop. */
  drop(): void {
    for (const h of this.proxies.values()) h.remove();
    this.proxies.clear();
    for (const v of this.verdicts.values()) v.resolve(v.onTimeout === 'stop' ? STOP : CONTINUE);
    this.verdicts.clear();
    for (const stop of this.monitors.values()) stop();
    this.monitors.clear();
  }

  private allowed(op: Operation, path: string): void {
    this.l.acl?.check(op, path, this.l.cred);
  }

  /** The id of a request that must be answered (all but SEND, whose id 0 means one-way). */
  private requestId(f: Frame): number {
    const id = field.uint(f, 1, 'id');
    if (id === 0)
      throw new MetanetError(
        'EPROTO',
        `${frameName(f[0])} frame: id 0 is for a SEND that wants no answer; this request needs an id > 0`,
      );
    return id;
  }

  private onSend(f: Frame): void {
    const id = field.uint(f, 1, 'id');
    const bus = this.l.bus;
    const to0 = field.str(f, 2, 'path');
    // a reply to a request of ours: a path this process made, valid by construction
    const awaited = bus.awaitsReply(to0);
    const path = awaited ? to0 : knownPath(to0);
    let m = fromWire(f[3], path);
    this.allowed('send', path);
    // A reply nobody asked this peer for: to a request that no longer waits (a late or second
    // answer) it is delivered to nobody; into a request still waiting, or relayed, it is
    // refused: a peer that knows a client's route name must not answer that client's requests.
    if (
      isReplyPath(path) &&
      !this.l.mayReply(path) &&
      (path.startsWith(RELAY) || bus.awaitsReply(path) || bus.has(path))
    )
      throw new MetanetError(
        'EDENIED',
        `send ${path} denied to ${this.l.who}: no request of ${path.startsWith(RELAY) ? 'that process' : 'this process'} was sent to it or through it`,
      );
    m = inboundReplyTo(m, this.l.peerName!, this.l.routeName);
    const to = relayTarget(path);
    if (id === 0) {
      if (awaited) bus.postReply(path, m);
      else bus.post(to, m);
      return;
    }
    this.answering++;
    if (to === path) bus.sendLocal(path, m, (r) => this.answer(resultToFrame(id, r)));
    else
      bus.send(to, m).then(
        (r) => this.answer(resultToFrame(id, r)),
        (e: unknown) => this.answer(errorFrame(id, e)),
      );
  }

  private answer(frame: unknown[]): void {
    this.l.write(frame);
    this.answering--;
    this.l.answered();
  }

  private onListen(f: Frame): void {
    const id = this.requestId(f);
    const path = checkPath(field.str(f, 2, 'path'));
    const lid = field.uint(f, 3, 'lid');
    const identity = fromWire(f[4], 'LISTEN identity');
    const position = positionFromWire(f[5]);
    const timeout = timeoutFromWire(f, 6) || REMOTE_TIMEOUT;
    const onTimeout = onTimeoutFromWire(f[7]);
    const name = field.optStr(f, 8, 'name') ?? `#${lid}`;
    this.allowed('listen', path);
    this.proxies.get(lid)?.remove();
    this.proxies.delete(lid);
    const proxy = (m: Message): Promise<ListenerResult> =>
      new Promise((resolve, reject) => {
        const did = this.nextDelivery++;
        this.verdicts.set(did, { resolve, reject, onTimeout });
        this.l.write([F.DELIVER, did, lid, path, this.l.qualify(m)]);
      });
    Object.defineProperty(proxy, 'name', { value: name });
    const h = listenFor(this.l.bus, path, proxy, {
      identity,
      position,
      timeout,
      onTimeout,
      remote: this.l.who,
    });
    this.proxies.set(lid, h);
    this.l.write([F.OK, id, h.id]);
  }

  private onUnlisten(f: Frame): void {
    const id = this.requestId(f);
    const lid = field.uint(f, 2, 'lid');
    this.proxies.get(lid)?.remove();
    this.proxies.delete(lid);
    this.l.write([F.OK, id, null]);
  }

  private onVerdict(f: Frame): void {
    const did = field.uint(f, 1, 'delivery id');
    const v = this.verdicts.get(did);
    if (!v) return; // answered after the daemon stopped waiting: ignored
    this.verdicts.delete(did);
    const err = field.optStr(f, 3, 'error');
    if (err !== undefined) v.reject(new Error(`remote listener in ${this.l.who}: ${err}`));
    else if (f[2] === STOP || f[2] === CONTINUE) v.resolve(f[2]);
    else
      v.reject(
        new Error(
          `remote listener in ${this.l.who}: verdict ${JSON.stringify(f[2])} is not "stop" or "continue"`,
        ),
      );
  }

  private onMonitor(f: Frame): void {
    const id = this.requestId(f);
    const pattern = field.str(f, 2, 'pattern');
    this.allowed('listen', pattern);
    const all = pattern === '/**' || pattern === '**';
    const mid = this.nextMonitor++;
    const stop = this.l.bus.tap((path, m, listened) => {
      if (all || pathMatches(pattern, path)) this.l.write([F.EVENT, mid, path, m, listened]);
    });
    this.monitors.set(mid, stop);
    this.l.write([F.OK, id, mid]);
  }

  private onUnmonitor(f: Frame): void {
    const id = this.requestId(f);
    const mid = field.uint(f, 2, 'monitor id');
    this.monitors.get(mid)?.();
    this.monitors.delete(mid);
    this.l.write([F.OK, id, null]);
  }

  private onLs(f: Frame): void {
    const id = this.requestId(f);
    const under = field.optStr(f, 2, 'path');
    const { acl, cred } = this.l;
    const may =
      acl?.active === true
        ? (op: Operation, p: string): boolean => acl.allows(op, p, cred)
        : (): boolean => true;
    this.l.write([F.OK, id, lsWire(this.l.bus, this.l.localName, under, may)]);
  }
}

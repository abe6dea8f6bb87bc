import { REPLY_PREFIX } from './frames.js';

/** Reply paths of this process (with a mailbox, no request) kept at least until this many were given to one peer, then swept. */
const SWEEP_FIRST = 1024;
/** A relayed reply path is honoured at least this long after it was given (ms)… */
const RELAY_WINDOW = 30_000;
/** …unless the peer was given this many others since. */
const RELAY_KEPT = 65_536;

/** What the grants need of the bus: its pending requests (core/bus.ts) and its mailboxes. */
export interface GrantHost {
  awaitsReply(path: string): boolean;
  allowAnswer(path: string, who: object): boolean;
  mayAnswer(path: string, who: object): boolean;
  has(path: string): boolean;
}

/**
 * The reply paths one peer may send to (docs/ipc.md, "Replies come back the way the request
 * went"). A request's reply path (`/system/reply/N`) takes a reply only from a connection the
 * request was sent over, or delivered over to a remote listener; a relayed one
 * (`/system/relay/NAME/…/system/reply/N`) is forwarded only for a peer that was given it. Every
 * reply-to this process writes to the peer as its own is granted here (`grant`), so a peer that
 * merely knows or guesses another client's route name and reply number cannot answer its request.
 *
 * A grant of a request's reply path is a mark on the pending request itself (`allowAnswer`),
 * gone with it. Bounded otherwise: grants of other reply paths of this process (a mailbox made
 * there) are swept when the path is served no more, each time their number doubles; relayed
 * grants, whose request lives in another process, are kept for RELAY_WINDOW ms or RELAY_KEPT
 * further grants.
 */
export class ReplyGrants {
  private own = new Set<string>();
  private sweepAt = SWEEP_FIRST;
  private relayed = new Set<string>();
  private relayedBefore = new Set<string>();
  private relayedSince = 0;

  private cleared = false;

  constructor(private readonly bus: GrantHost) {}

  /** The peer is given `path` (a reply path of this process, as the peer will send to it). */
  grant(path: string): void {
    if (path.startsWith(REPLY_PREFIX)) {
      if (this.bus.allowAnswer(path, this)) return;
      this.own.add(path);
      if (this.own.size >= this.sweepAt) this.sweep();
      return;
    }
    const now = Date.now();
    if (this.relayed.size === 0) this.relayedSince = now;
    else if (this.relayed.size >= RELAY_KEPT || now - this.relayedSince >= RELAY_WINDOW) {
      this.relayedBefore = this.relayed;
      this.relayed = new Set();
      this.relayedSince = now;
    }
    this.relayed.add(path);
  }

  /** Whether the peer may send to the reply path `path`. */
  allows(path: string): boolean {
    if (this.cleared) return false;
    return (
      this.bus.mayAnswer(path, this) ||
      this.own.has(path) ||
      this.relayed.has(path) ||
      this.relayedBefore.has(path)
    );
  }

  /** Nothing is granted any more (the connection is gone). */
  clear(): void {
    this.cleared = true;
    this.own.clear();
    this.relayed.clear();
    this.relayedBefore.clear();
  }

  private sweep(): void {
    for (const p of this.own) if (!this.bus.awaitsReply(p) && !this.bus.has(p)) this.own.delete(p);
    this.sweepAt = Math.max(SWEEP_FIRST, 2 * this.own.size);
  }
}

import { LineReader } from './lines.js';

/** What a sniffer saw in the protocol. */
export type SniffEvent =
  | { readonly kind: 'login'; readonly user?: string; readonly command: string }
  | { readonly kind: 'starttls' }
  | { readonly kind: 'overflow'; readonly side: 'client' | 'server' };

/**
 * Watches both directions of one mail connection, incrementally, until it has seen what it can:
 * a successful login, STARTTLS, or a line too long. Then `done` is true and it ignores the rest
 * (the proxy keeps relaying).
 */
export interface Sniffer {
  readonly protocol: 'imap' | 'pop3';
  readonly done: boolean;
  client(chunk: Buffer): SniffEvent[];
  server(chunk: Buffer): SniffEvent[];
}

/** The part both protocols share: two line readers, one verdict, then silence. */
export abstract class LineSniffer implements Sniffer {
  abstract readonly protocol: 'imap' | 'pop3';
  done = false;
  private readonly fromClient: LineReader;
  private readonly fromServer: LineReader;

  /** `literals`: the reader understands IMAP `{n}` literals. */
  constructor(literals: boolean) {
    this.fromClient = new LineReader(literals);
    this.fromServer = new LineReader(literals);
  }

  client(chunk: Buffer): SniffEvent[] {
    if (this.done) return [];
    for (const line of this.fromClient.push(chunk)) this.clientLine(line);
    return this.fromClient.overflow ? this.finish({ kind: 'overflow', side: 'client' }) : [];
  }

  server(chunk: Buffer): SniffEvent[] {
    if (this.done) return [];
    for (const line of this.fromServer.push(chunk)) {
      const ev = this.serverLine(line);
      if (ev) return this.finish(ev);
    }
    return this.fromServer.overflow ? this.finish({ kind: 'overflow', side: 'server' }) : [];
  }

  protected abstract clientLine(line: string): void;
  protected abstract serverLine(line: string): SniffEvent | undefined;
  /** Drop what the protocol kept about commands in flight. */
  protected abstract reset(): void;

  private finish(ev: SniffEvent): SniffEvent[] {
    this.done = true;
    this.reset();
    return [ev];
  }
}

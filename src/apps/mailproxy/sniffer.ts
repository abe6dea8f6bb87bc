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

import { randomBytes } from 'node:crypto';

/**
 * Per-page CSRF tokens: 128 random bits, bound to the client address that got the page, valid for
 * `ttlMs`, used once. At most `max` are kept (the oldest go first), so a client reloading the page
 * in a loop cannot grow memory.
 */
export class Tokens {
  private readonly map = new Map<string, { ip: string; expires: number }>();

  constructor(
    private readonly ttlMs = 15 * 60_000,
    private readonly max = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  issue(ip: string): string {
    const token = randomBytes(16).toString('base64url');
    this.map.set(token, { ip, expires: this.now() + this.ttlMs });
    while (this.map.size > this.max) this.map.delete(this.map.keys().next().value as string);
    return token;
  }

  /** True when `token` was issued to `ip` and is still valid; it is used up either way. */
  take(token: string | null | undefined, ip: string): boolean {
    if (!token) return false;
    const t = this.map.get(token);
    if (!t) return false;
    this.map.delete(token);
    return t.ip === ip && t.expires > this.now();
  }
}

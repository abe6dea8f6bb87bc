import { saslUser } from './sasl.js';
import { LineSniffer, type SniffEvent } from './sniffer.js';

type Pending =
  | { readonly kind: 'login'; readonly user?: string }
  | { kind: 'auth'; readonly mechanism: string; user?: string; responses: number }
  | { readonly kind: 'starttls' };

/**
 * IMAP4rev1 (RFC 3501) login detection: a tagged `OK` answering that tag's `LOGIN` or
 * `AUTHENTICATE`. Commands are matched by tag, so pipelined commands are fine. While an
 * AUTHENTICATE runs, client lines are SASL responses. A tagged `OK` to `STARTTLS` ends parsing.
 */
export class ImapSniffer extends LineSniffer {
  readonly protocol = 'imap';
  private readonly pending = new Map<string, Pending>();
  private authTag: string | undefined;

  constructor() {
    super(true);
  }

  protected reset(): void {
    this.pending.clear();
  }

  protected clientLine(line: string): void {
    const auth = this.authTag === undefined ? undefined : this.pending.get(this.authTag);
    if (auth?.kind === 'auth') {
      if (auth.responses++ === 0 && auth.user === undefined) auth.user = saslUser(auth.mechanism, line);
      return;
    }
    const m = /^([^\s(){%*"\\\]]+) ([A-Za-z]+)(?: (.*))?$/s.exec(line);
    if (!m) return;
    const [, tag, name, rest] = m as unknown as [string, string, string, string | undefined];
    const cmd = name.toUpperCase();
    if (cmd === 'LOGIN') this.pending.set(tag, { kind: 'login', user: imapArgs(rest ?? '')[0] });
    else if (cmd === 'AUTHENTICATE') {
      const [mechanism = '', initial] = (rest ?? '').split(' ');
      const p: Pending = { kind: 'auth', mechanism, responses: 0 };
      if (initial !== undefined) p.user = saslUser(mechanism, initial);
      this.pending.set(tag, p);
      if (initial === undefined) this.authTag = tag;
    } else if (cmd === 'STARTTLS') this.pending.set(tag, { kind: 'starttls' });
  }

  protected serverLine(line: string): SniffEvent | undefined {
    const m = /^(\S+) (OK|NO|BAD)\b/i.exec(line);
    if (!m || m[1] === '*' || m[1] === '+') return undefined;
    const tag = m[1]!;
    const p = this.pending.get(tag);
    if (!p) return undefined;
    this.pending.delete(tag);
    if (tag === this.authTag) this.authTag = undefined;
    if (m[2]!.toUpperCase() !== 'OK') return undefined;
    if (p.kind === 'starttls') return { kind: 'starttls' };
    return p.user === undefined
      ? { kind: 'login', command: p.kind === 'login' ? 'LOGIN' : 'AUTHENTICATE' }
      : { kind: 'login', user: p.user, command: p.kind === 'login' ? 'LOGIN' : 'AUTHENTICATE' };
  }
}

/** IMAP arguments: atoms, quoted strings (with `\"` and `\\`), and literals `{n}CRLF<n bytes>`. */
export function imapArgs(s: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < s.length) {
    if (s[i] === ' ') {
      i++;
    } else if (s[i] === '"') {
      let v = '';
      i++;
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < s.length) i++;
        v += s[i++];
      }
      i++;
      out.push(v);
    } else {
      const lit = /^\{(\d{1,9})\+?\}\r\n/.exec(s.slice(i));
      if (lit) {
        const start = i + lit[0].length;
        out.push(s.slice(start, start + Number(lit[1])));
        i = start + Number(lit[1]);
      } else {
        const end = s.indexOf(' ', i);
        out.push(s.slice(i, end < 0 ? s.length : end));
        i = end < 0 ? s.length : end;
      }
    }
  }
  return out;
}

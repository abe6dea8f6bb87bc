import { saslUser } from './sasl.js';
import { LineSniffer, type SniffEvent } from './sniffer.js';

interface Command {
  readonly name: string;
  readonly arg: string;
}

/** Commands whose +OK answer is followed by lines up to a lone "." (RFC 1939, 2449, 5034). */
function multiLine(c: Command): boolean {
  if (c.name === 'CAPA' || c.name === 'RETR' || c.name === 'TOP') return true;
  if (c.name === 'LIST' || c.name === 'UIDL' || c.name === 'AUTH') return c.arg === '';
  return false;
}

/**
 * POP3 (RFC 1939) login detection: `+OK` answering `PASS`, `APOP` or `AUTH <mechanism>` (RFC 5034,
 * after its `+ ` continuations). Answers are matched to commands in order (the first server line is
 * the greeting), so pipelined commands (RFC 2449) are fine. `+OK` to `STLS` ends parsing.
 */
export class Pop3Sniffer extends LineSniffer {
  readonly protocol = 'pop3';
  private readonly queue: Command[] = [];
  private greeted = false;
  private body = false;
  private user: string | undefined;
  private sasl: { mechanism: string; responses: number; user?: string } | undefined;

  constructor() {
    super(false);
  }

  protected reset(): void {
    this.queue.length = 0;
  }

  protected clientLine(line: string): void {
    if (this.sasl) {
      if (this.sasl.responses++ === 0 && this.sasl.user === undefined)
        this.sasl.user = saslUser(this.sasl.mechanism, line);
      return;
    }
    const m = /^([A-Za-z]{3,4})(?: (.*))?$/s.exec(line);
    if (!m) return;
    const c: Command = { name: m[1]!.toUpperCase(), arg: m[2] ?? '' };
    this.queue.push(c);
    if (c.name === 'USER') this.user = c.arg;
    if (c.name === 'AUTH' && c.arg !== '') {
      const [mechanism = '', initial] = c.arg.split(' ');
      this.sasl = { mechanism, responses: 0 };
      if (initial !== undefined) this.sasl.user = saslUser(mechanism, initial);
    }
  }

  protected serverLine(line: string): SniffEvent | undefined {
    if (this.body) {
      if (line === '.') this.body = false;
      return undefined;
    }
    if (!this.greeted) {
      this.greeted = true;
      return undefined;
    }
    if (this.sasl && (line === '+' || line.startsWith('+ '))) return undefined;
    const ok = /^\+OK\b/i.test(line);
    if (!ok && !/^-ERR\b/i.test(line)) return undefined;
    const c = this.queue.shift();
    if (!c) return undefined;
    const sasl = c.name === 'AUTH' && c.arg !== '' ? this.sasl : undefined;
    if (sasl) this.sasl = undefined;
    if (!ok) return undefined;
    if (multiLine(c)) this.body = true;
    if (c.name === 'STLS') return { kind: 'starttls' };
    if (c.name === 'PASS')
      return this.user ? { kind: 'login', user: this.user, command: 'PASS' } : login('PASS');
    if (c.name === 'APOP') {
      const user = c.arg.split(' ')[0];
      return user ? { kind: 'login', user, command: 'APOP' } : login('APOP');
    }
    if (sasl) return sasl.user ? { kind: 'login', user: sasl.user, command: 'AUTH' } : login('AUTH');
    return undefined;
  }
}

function login(command: string): SniffEvent {
  return { kind: 'login', command };
}

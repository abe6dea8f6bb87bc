import { MetanetError } from '../../core/errors.js';

/**
 * The NATS subject scheme (docs/nats.md). Host and daemon names may contain `.`, which NATS uses
 * between tokens: it is written `~` (a character names never contain). Mailbox paths never appear
 * in subjects (NATS subjects cannot hold `/`); they travel in the payload.
 *
 *   <prefix>.<host>.<daemon>.send            SEND requests (and one-way replies)
 *   <prefix>.<host>.<daemon>.listen          LISTEN / UNLISTEN requests
 *   <prefix>.<host>.<daemon>.up              announced when a daemon (re)connects
 *   <prefix>.<host>.<daemon>.l.<inst>.<lid>  DELIVER to one remote listener of that process
 */
export const DEFAULT_PREFIX = 'metanet';

const TOKEN = /^[A-Za-z0-9_-]+$/;

export function checkPrefix(prefix: string): string {
  if (typeof prefix !== 'string' || prefix.split('.').some((t) => !TOKEN.test(t)))
    throw new MetanetError(
      'ECONFIG',
      `bad NATS subject prefix ${JSON.stringify(prefix)}: dot-separated tokens of A-Z a-z 0-9 _ -`,
    );
  return prefix;
}

/** A host or daemon name as one subject token. */
export function token(name: string): string {
  return name.replaceAll('.', '~');
}

export function untoken(t: string): string {
  return t.replaceAll('~', '.');
}

export class Subjects {
  constructor(readonly prefix: string) {}

  daemon(host: string, daemon: string): string {
    return `${this.prefix}.${token(host)}.${token(daemon)}`;
  }
  send(host: string, daemon: string): string {
    return `${this.daemon(host, daemon)}.send`;
  }
  listen(host: string, daemon: string): string {
    return `${this.daemon(host, daemon)}.listen`;
  }
  up(host: string, daemon: string): string {
    return `${this.daemon(host, daemon)}.up`;
  }
  /** Every daemon's `up` announcement. */
  get anyUp(): string {
    return `${this.prefix}.*.*.up`;
  }
  /** Where the target delivers to one of our listeners. */
  deliver(host: string, daemon: string, instance: string, lid: number): string {
    return `${this.daemon(host, daemon)}.l.${instance}.${lid}`;
  }

  /** Host and daemon of an `up` subject, or undefined when it is not one. */
  parseUp(subject: string): { host: string; daemon: string } | undefined {
    const t = subject.split('.');
    const n = this.prefix.split('.').length;
    if (t.length !== n + 3 || t[n + 2] !== 'up') return undefined;
    return { host: untoken(t[n]!), daemon: untoken(t[n + 1]!) };
  }
}

import type { Bus } from '../../core/bus.js';
import type { Context, ListenerResult } from '../../core/listener.js';
import { STOP } from '../../core/listener.js';
import type { Message } from '../../core/message.js';
import type { InHandler } from '../table.js';

/** An error with a system-style code (EINVAL, ENOTCONN, ...) that the socket service raises itself. */
export class SocketError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export type ErrorTuples = { readonly error: string; readonly code: string };

/** {error, code}: the thrown error's own code (ECONNREFUSED, EADDRINUSE, EBADTUPLE, ...) or EFAIL. */
export function errorTuples(e: unknown): ErrorTuples {
  const code = (e as { code?: unknown } | null)?.code;
  return {
    error: e instanceof Error ? e.message : String(e),
    code: typeof code === 'string' ? code : 'EFAIL',
  };
}

/** Send {mailbox?, error, code} to `<name>/error`, and {error, code} to the reply-to, if any. */
export function report(bus: Bus, name: string, e: unknown, ctx?: Context): void {
  const t = errorTuples(e);
  bus.post(`${name}/error`, ctx ? { mailbox: ctx.mailbox, ...t } : t);
  if (ctx?.replyTo) ctx.reply(t).catch(() => {});
}

/**
 * Wrap a handler so that whatever it throws or rejects with is reported with its code on
 * `<name>/error` and the reply (attachTable would answer only {error, mailbox}), and the chain stops.
 */
export function guarded(bus: Bus, name: string, fn: (m: Message, ctx: Context) => unknown): InHandler {
  return async (m, ctx): Promise<ListenerResult> => {
    try {
      await fn(m, ctx);
    } catch (e) {
      report(bus, name, e, ctx);
    }
    return STOP;
  };
}

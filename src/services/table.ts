import type { Bus } from '../core/bus.js';
import { MetanetError } from '../core/errors.js';
import type { Context, ListenerHandle, ListenerResult } from '../core/listener.js';
import type { Message, TupleType } from '../core/message.js';

/**
 * The declarative table every service keeps: one entry per mailbox, saying who sends there,
 * which tuples it carries, and what it means. The same table validates incoming messages
 * (a bad one gets a clear error naming the tag) and is what docs/services/<name>.md lists.
 */
export interface TupleSpec {
  readonly tag: string;
  readonly type: TupleType | readonly TupleType[];
  /** Default true. */
  readonly required?: boolean;
  /** The tag may appear more than once. */
  readonly repeated?: boolean;
  readonly doc: string;
}

export interface MailboxSpec {
  /** Appended to the object's name: `/write` → `/captive/sock/write`. `''` is the name itself. */
  readonly suffix: string;
  /** `in`: users send here, the service listens. `out`: the service sends here, users listen. */
  readonly dir: 'in' | 'out';
  readonly doc: string;
  readonly tuples: readonly TupleSpec[];
}

export type ServiceTable = readonly MailboxSpec[];

/** Check a message against a mailbox's spec; throws EBADTUPLE naming the mailbox and the tag. */
export function validate(spec: MailboxSpec, path: string, m: Message): void {
  for (const t of spec.tuples) {
    const found = m.all(t.tag);
    if (found.length === 0) {
      if (t.required !== false)
        throw new MetanetError(
          'EBADTUPLE',
          `${path}: missing tuple "${t.tag}" (${typesText(t.type)}): ${t.doc}`,
        );
      continue;
    }
    if (found.length > 1 && !t.repeated)
      throw new MetanetError(
        'EBADTUPLE',
        `${path}: tuple "${t.tag}" given ${found.length} times, expected once`,
      );
    const allowed = typeof t.type === 'string' ? [t.type] : t.type;
    for (const f of found)
      if (!allowed.includes(f.type))
        throw new MetanetError(
          'EBADTUPLE',
          `${path}: tuple "${t.tag}" is ${f.type}, expected ${typesText(t.type)}`,
        );
  }
}

function typesText(t: TupleType | readonly TupleType[]): string {
  return typeof t === 'string' ? t : t.join('|');
}

export type InHandler = (m: Message, ctx: Context) => ListenerResult | Promise<ListenerResult>;

/**
 * Attach the service's handlers for the `in` mailboxes of one object named `base`. Each incoming
 * message is validated first; a bad one, or a handler that throws, is answered on `<base>/error`
 * (and on the message's reply-to, if any) with {mailbox, error}, and the service keeps serving.
 * Returns a function that detaches everything.
 */
export function attachTable(
  bus: Bus,
  base: string,
  table: ServiceTable,
  handlers: { readonly [suffix: string]: InHandler },
  errorSuffix = '/error',
): () => void {
  const handles: ListenerHandle[] = [];
  for (const spec of table) {
    if (spec.dir !== 'in') continue;
    const handler = handlers[spec.suffix];
    if (!handler) throw new Error(`service table for ${base}: no handler for ${spec.suffix}`);
    const path = base + spec.suffix;
    const report = (e: unknown, m: Message): void => {
      const error = e instanceof Error ? e.message : String(e);
      bus.post(base + errorSuffix, {
        mailbox: path,
        error,
        code: e instanceof MetanetError ? e.code : 'EFAIL',
      });
      const to = m.get('reply-to');
      if (to?.type === 'str')
        bus
          .send(to.value, { error, code: e instanceof MetanetError ? e.code : 'EFAIL', mailbox: path })
          .catch(() => {});
    };
    handles.push(
      bus.listen(
        path,
        function service(m, ctx) {
          try {
            validate(spec, path, m);
            const r = handler(m, ctx);
            if (r instanceof Promise)
              return r.catch((e: unknown) => {
                report(e, m);
                return undefined;
              });
            return r;
          } catch (e) {
            report(e, m);
            return undefined;
          }
        },
        { identity: { service: base } },
      ),
    );
  }
  return () => {
    for (const h of handles) h.remove();
  };
}

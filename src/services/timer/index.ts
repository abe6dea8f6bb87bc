import type { Bus } from '../../core/bus.js';
import { MetanetError } from '../../core/errors.js';
import { type Context, STOP } from '../../core/listener.js';
import { Message } from '../../core/message.js';
import { checkPath } from '../../core/path.js';
import type { Timer } from '../../core/timers.js';
import { attachTable } from '../table.js';
import { timerFactoryTable, timerTable } from './table.js';

export { timerFactoryTable, timerTable } from './table.js';

/** setTimeout's limit: a longer delay would silently become 1 ms. */
const MAX_MS = 2 ** 31 - 1;

export interface TimerService {
  /** Cancel every timer and detach every mailbox this service made. */
  close(): Promise<void>;
}

interface TimerObject {
  count: number;
  cancel(): void;
}

/**
 * Timers as messages: `/system/timer/new` {name, ms, periodic?, tuples?} makes a timer that sends
 * `<name>/fire` {count, ...tuples}; `<name>/cancel` stops it. See docs/services/timer.md.
 */
export function installTimerService(bus: Bus): TimerService {
  const timers = new Map<string, TimerObject>();

  const create = (m: Message): string => {
    const name = checkPath(m.str('name'));
    const ms = m.float('ms');
    const periodic = m.bool('periodic', false);
    if (!Number.isFinite(ms) || ms < 0 || ms > MAX_MS || (periodic && ms === 0))
      throw new MetanetError(
        'EBADTUPLE',
        `/system/timer/new: tuple "ms" must be ${periodic ? '> 0' : '>= 0'} and <= ${MAX_MS}, got ${ms}`,
      );
    if (timers.has(name)) throw new MetanetError('EEXIST', `timer ${name} already exists`);
    const extra = m.list('tuples', Message.empty);
    const obj: TimerObject = { count: 0, cancel: () => {} };
    const fire = (): void => {
      obj.count++;
      bus.post(`${name}/fire`, new Message([{ tag: 'count', type: 'int', value: obj.count }, ...extra]));
      if (!periodic) obj.cancel();
    };
    const timer: Timer = periodic ? bus.every(ms, fire) : bus.timeout(ms, fire);
    const detach = attachTable(bus, name, timerTable, {
      '/cancel': (_m, ctx) => {
        obj.cancel();
        if (ctx.replyTo) ctx.reply({ name, count: obj.count }).catch(() => {});
        return STOP;
      },
    });
    obj.cancel = () => {
      timer.cancel();
      detach();
      timers.delete(name);
    };
    timers.set(name, obj);
    return name;
  };

  const detachFactory = attachTable(bus, '/system/timer', timerFactoryTable, {
    '/new': (m, ctx: Context) => {
      try {
        const name = create(m);
        if (ctx.replyTo) ctx.reply({ name }).catch(() => {});
      } catch (e) {
        const error = { error: e instanceof Error ? e.message : String(e), code: codeOf(e) };
        bus.post('/system/timer/error', { mailbox: ctx.mailbox, ...error });
        if (ctx.replyTo) ctx.reply(error).catch(() => {});
      }
      return STOP;
    },
  });

  return {
    async close() {
      detachFactory();
      for (const t of [...timers.values()]) t.cancel();
    },
  };
}

function codeOf(e: unknown): string {
  return e instanceof MetanetError ? e.code : 'EFAIL';
}

import type { Bus } from '../../core/bus.js';
import { MetanetError } from '../../core/errors.js';
import { type Context, STOP } from '../../core/listener.js';
import type { Message, MessageInit } from '../../core/message.js';
import { attachTable } from '../table.js';
import { classesOf, type Guest, upsert } from './guests.js';
import { deleteIfb, ensureIfb } from './links.js';
import { type CheckedOptions, cap, checkOptions, guestIp, type ShaperOptions } from './options.js';
import { type TcFailure, TcShell } from './shell.js';
import { shaperTable } from './table.js';
import { clearLines, diffLines, redirectLines, type TcLine, type Tree, treeLines } from './tc.js';

export interface ShapedGuest {
  readonly ip: string;
  /** `1:<id>` in every tree. */
  readonly class: string;
  /** The caps asked for, bits/s (0: none). */
  readonly rateUp: number;
  readonly rateDown: number;
  /** What the classes have: ceiling (cap or uplink) and guaranteed share, bits/s. */
  readonly ceilUp: number;
  readonly ceilDown: number;
  readonly shareUp: number;
  readonly shareDown: number;
}

export interface ShaperService {
  readonly name: string;
  readonly devices: readonly string[];
  readonly ifb: string;
  /** The guests shaped now, as the kernel has them. */
  guests(): ShapedGuest[];
  /** PID of the long-lived tc (for tests and diagnostics). */
  tcPid(): number | undefined;
  /** Detach the mailboxes, remove every qdisc the shaper put on the devices and delete the ifb. */
  close(): Promise<void>;
}

/**
 * Fair sharing of the guest uplink (docs/services/shaper.md): per guest one HTB class each way
 * (download on the guest-side devices' egress, upload on an ifb their ingress is redirected to),
 * an equal share guaranteed and an optional cap, classified by u32 on the guest's IPv4 address.
 * Built from scratch at start with one tc batch; every change afterwards is one batch of the
 * lines that differ, written to one long-lived `tc -force -batch -`.
 */
export async function installShaperService(bus: Bus, options: ShaperOptions): Promise<ShaperService> {
  const o = checkOptions(options);
  const { name } = o;
  const trees: Tree[] = [
    ...o.devices.map(
      (dev): Tree => ({ dev, key: 'dst', uplink: o.uplinkDown, leaf: o.leaf, queueMs: o.queueMs }),
    ),
    { dev: o.ifb, key: 'src', uplink: o.uplinkUp, leaf: o.leaf, queueMs: o.queueMs },
  ];
  const dirOf = (t: Tree): 'up' | 'down' => (t.key === 'src' ? 'up' : 'down');
  /** What no reply carries, on `<name>/error` (unless the bus is already closed). */
  const report = (error: string): void => {
    if (!bus.isClosed) bus.post(`${name}/error`, { mailbox: name, error, code: 'EFAIL' });
  };
  const shell = new TcShell({
    command: o.tc,
    timeoutMs: o.commandTimeoutMs,
    onFailure: (reason) => report(reason),
  });

  let guests: Guest[] = [];
  /** The kernel may not match `guests` (a change failed and so did the rebuild): rebuild first. */
  let dirty = false;

  /** Everything from scratch: the ifb, then each device's and the ifb's tree, then the redirects. */
  const rebuild = async (list: readonly Guest[]): Promise<void> => {
    await ensureIfb(o.ip, o.devices, o.ifb);
    await shell.restart(); // a fresh tc: the one running may hold indexes of devices made again since
    const lines: TcLine[] = [
      ...o.devices.flatMap((d) => clearLines(d, true)),
      ...clearLines(o.ifb, false),
      ...trees.flatMap((t) => treeLines(t, classesOf(list, dirOf(t), t.uplink))),
      ...o.devices.flatMap((d) => redirectLines(d, o.ifb)),
    ];
    check(await shell.run(lines));
  };

  try {
    await rebuild([]);
  } catch (e) {
    await teardown(shell, o).catch(() => {});
    await shell.close();
    throw e instanceof MetanetError && e.code === 'EFAIL' ? new MetanetError('ECONFIG', e.message) : e;
  }

  /** One change at a time, in the order asked. */
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = chain.then(fn);
    chain = p.catch(() => {});
    return p;
  };

  /**
   * Move the kernel from `guests` to `next` with one batch of the lines that differ. When tc refuses
   * one (the kernel lost the shaping: a device made again, someone else's tc), everything is built
   * again from scratch with `next`, and the change succeeds after all (reported on `<name>/error`).
   * When that fails too (a device is gone), the previous guests are put back if possible and the
   * change fails naming the interface; if nothing can be built, the next change rebuilds first.
   */
  const apply = (next: Guest[]): Promise<void> =>
    serial(async () => {
      if (dirty) {
        await rebuild(next);
        dirty = false;
        guests = next;
        return;
      }
      const lines = trees.flatMap((t) =>
        diffLines(t, classesOf(guests, dirOf(t), t.uplink), classesOf(next, dirOf(t), t.uplink)),
      );
      try {
        check(await shell.run(lines));
        guests = next;
        return;
      } catch (e) {
        try {
          await rebuild(next);
          guests = next;
          report(`${msgOf(e)}: rebuilt from scratch`);
          return;
        } catch (e2) {
          try {
            await rebuild(guests);
          } catch {
            dirty = true;
          }
          throw new MetanetError(
            'EFAIL',
            `${msgOf(e)}; rebuilding from scratch failed too: ${msgOf(e2)}` +
              (dirty ? ' (the next change rebuilds first)' : ''),
          );
        }
      }
    });

  const describe = (g: Guest): ShapedGuest => {
    const up = classesOf(guests, 'up', o.uplinkUp).find((c) => c.ip === g.ip)!;
    const down = classesOf(guests, 'down', o.uplinkDown).find((c) => c.ip === g.ip)!;
    return {
      ip: g.ip,
      class: `1:${g.id.toString(16)}`,
      rateUp: g.up,
      rateDown: g.down,
      ceilUp: up.ceil,
      ceilDown: down.ceil,
      shareUp: up.rate,
      shareDown: down.rate,
    };
  };
  const reply = (ctx: Context, init: MessageInit): void => {
    if (ctx.replyTo) ctx.reply(init).catch(() => {});
  };
  const shapedReply = (ctx: Context, ip: string): void => {
    const g = describe(guests.find((x) => x.ip === ip)!);
    reply(ctx, {
      ip,
      class: g.class,
      'ceil-up': g.ceilUp,
      'ceil-down': g.ceilDown,
      'share-up': g.shareUp,
      'share-down': g.shareDown,
      guests: guests.length,
    });
  };
  const capsOf = (m: Message, mailbox: string): { up: number; down: number } => ({
    up: cap(m.int('rate-up', 0), `${mailbox} rate-up`),
    down: cap(m.int('rate-down', 0), `${mailbox} rate-down`),
  });

  const detach = attachTable(bus, name, shaperTable, {
    '/add': async (m, ctx) => {
      const ip = guestIp(m.str('ip'), `${name}/add ip`);
      const { up, down } = capsOf(m, `${name}/add`);
      await apply(upsert(guests, ip, up, down));
      shapedReply(ctx, ip);
      return STOP;
    },
    '/set': async (m, ctx) => {
      const ip = guestIp(m.str('ip'), `${name}/set ip`);
      const { up, down } = capsOf(m, `${name}/set`);
      if (!guests.some((g) => g.ip === ip))
        throw new MetanetError('EFAIL', `${name}/set: ${ip} is not shaped (add it first)`);
      await apply(upsert(guests, ip, up, down));
      shapedReply(ctx, ip);
      return STOP;
    },
    '/remove': async (m, ctx) => {
      const ip = guestIp(m.str('ip'), `${name}/remove ip`);
      const there = guests.some((g) => g.ip === ip);
      if (there) await apply(guests.filter((g) => g.ip !== ip));
      reply(ctx, { ip, removed: there, guests: guests.length });
      return STOP;
    },
    '/list': (_m, ctx) => {
      reply(ctx, {
        'uplink-up': o.uplinkUp,
        'uplink-down': o.uplinkDown,
        device: [...o.devices],
        ifb: o.ifb,
        count: guests.length,
        guest: guests.map((x) => {
          const g = describe(x);
          return {
            ip: g.ip,
            class: g.class,
            'rate-up': g.rateUp,
            'rate-down': g.rateDown,
            'ceil-up': g.ceilUp,
            'ceil-down': g.ceilDown,
            'share-up': g.shareUp,
            'share-down': g.shareDown,
          };
        }),
      });
      return STOP;
    },
  });

  let closed = false;
  return {
    name,
    devices: o.devices,
    ifb: o.ifb,
    guests: () => guests.map(describe),
    tcPid: () => shell.pid,
    async close() {
      if (closed) return;
      closed = true;
      detach();
      await chain;
      await teardown(shell, o).catch(() => {});
      await shell.close();
    },
  };
}

/** Throw for the first line that failed and was not optional, naming its interface. */
function check(failures: readonly TcFailure[]): void {
  const f = failures.find((x) => !x.optional);
  if (f) throw new MetanetError('EFAIL', `shaper: tc failed on ${f.dev}: ${f.error} (in "${f.line}")`);
}

/** Remove the qdiscs from the devices and the ifb, then the ifb itself. */
async function teardown(shell: TcShell, o: CheckedOptions): Promise<void> {
  await shell.run([...o.devices.flatMap((d) => clearLines(d, true)), ...clearLines(o.ifb, false)]);
  await deleteIfb(o.ip, o.ifb);
}

function msgOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

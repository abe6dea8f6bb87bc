import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Bus, type ListenerHandle, STOP, silentLogger } from '../../src/core/index.js';

/**
 * Model-based property test: random sequences of prepend/append/before/after/remove operations,
 * then a send where some listeners stop; the bus must call exactly the listeners a plain array
 * model predicts, in its order, up to and including the first that stops.
 */
type Op =
  | { kind: 'append' | 'prepend'; group: number }
  | { kind: 'before' | 'after'; target: number; group: number }
  | { kind: 'removeHandle'; target: number }
  | { kind: 'removeGroup'; group: number };

const group = fc.integer({ min: 0, max: 3 });
const target = fc.nat({ max: 20 });
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constantFrom('append' as const, 'prepend' as const), group }),
  fc.record({ kind: fc.constantFrom('before' as const, 'after' as const), target, group }),
  fc.record({ kind: fc.constant('removeHandle' as const), target }),
  fc.record({ kind: fc.constant('removeGroup' as const), group }),
);

describe('listener chain against a model', () => {
  it('orders, removes and stops exactly like the model (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(op, { maxLength: 25 }),
        fc.array(fc.boolean(), { maxLength: 30 }),
        fc.boolean(),
        async (ops, stops, asyncMode) => {
          const bus = new Bus({ logger: silentLogger });
          const model: { n: number; group: number }[] = [];
          const handles = new Map<number, ListenerHandle>();
          const called: number[] = [];
          let n = 0;
          const make = (id: number) =>
            asyncMode
              ? async () => {
                  called.push(id);
                  await Promise.resolve();
                  return stops[id] ? STOP : undefined;
                }
              : () => {
                  called.push(id);
                  return stops[id] ? STOP : undefined;
                };
          for (const o of ops) {
            if (o.kind === 'append' || o.kind === 'prepend') {
              const id = n++;
              handles.set(
                id,
                bus.listen('/m', make(id), { identity: { id, group: o.group }, position: o.kind }),
              );
              if (o.kind === 'append') model.push({ n: id, group: o.group });
              else model.unshift({ n: id, group: o.group });
            } else if (o.kind === 'before' || o.kind === 'after') {
              if (model.length === 0) continue;
              const t = model[o.target % model.length]!;
              const id = n++;
              const pos = o.kind === 'before' ? { before: { id: t.n } } : { after: handles.get(t.n)! };
              handles.set(
                id,
                bus.listen('/m', make(id), { identity: { id, group: o.group }, position: pos }),
              );
              const i = model.indexOf(t);
              model.splice(o.kind === 'before' ? i : i + 1, 0, { n: id, group: o.group });
            } else if (o.kind === 'removeHandle') {
              if (model.length === 0) continue;
              const t = model[o.target % model.length]!;
              handles.get(t.n)!.remove();
              model.splice(model.indexOf(t), 1);
            } else {
              const expected = model.filter((x) => x.group === o.group).length;
              expect(bus.unlisten('/m', { group: o.group })).toBe(expected);
              for (let i = model.length - 1; i >= 0; i--) if (model[i]!.group === o.group) model.splice(i, 1);
            }
          }
          expect(bus.mailbox('/m')?.listeners.map((l) => l.identity.int('id')) ?? []).toEqual(
            model.map((x) => x.n),
          );
          const r = await bus.send('/m');
          const firstStop = model.findIndex((x) => stops[x.n]);
          const expectCalled = (firstStop < 0 ? model : model.slice(0, firstStop + 1)).map((x) => x.n);
          expect(called).toEqual(expectCalled);
          expect(r.listeners).toBe(expectCalled.length);
          expect(r.stopped).toBe(firstStop >= 0);
          expect(r.delivered).toBe(expectCalled.length > 0);
          // post() walks the chain by its own fast paths (one listener, synchronous, async tail):
          // the same listeners in the same order.
          called.length = 0;
          bus.post('/m', {});
          await bus.settled();
          expect(called).toEqual(expectCalled);
          await bus.close();
        },
      ),
      { numRuns: 300 },
    );
  });
});

import { describe, expect, it } from 'vitest';
import { Intake, isDiscover } from '../../../src/services/dhcp/intake.js';
import { encodePacket, MessageType } from '../../../src/services/dhcp/packet.js';
import { clientPacket } from './helpers.js';

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** An intake over strings with a clock the test moves; what it handled and shed, in order. */
function rig(opts: { turnMs?: number; lifoAfterMs?: number; staleMs?: number; maxQueued?: number } = {}) {
  const clock = { t: 0 };
  const handled: string[] = [];
  const shed: string[] = [];
  const intake = new Intake<string>(
    (p) => handled.push(p),
    (p, why) => shed.push(`${p}:${why}`),
    { ...opts, now: () => clock.t },
  );
  return { clock, handled, shed, intake };
}

describe('the intake (overload: order and shedding)', () => {
  it('tells a DISCOVER from other packets without decoding', () => {
    const mac = '02:00:00:00:00:01';
    expect(isDiscover(encodePacket(clientPacket(MessageType.DISCOVER, mac)))).toBe(true);
    expect(isDiscover(encodePacket(clientPacket(MessageType.REQUEST, mac)))).toBe(false);
    expect(isDiscover(encodePacket(clientPacket(MessageType.RELEASE, mac)))).toBe(false);
    expect(isDiscover(Buffer.alloc(100))).toBe(false);
    const truncated = encodePacket(clientPacket(MessageType.DISCOVER, mac)).subarray(0, 241);
    expect(isDiscover(truncated)).toBe(false);
  });

  it('handles packets that complete an exchange first, then DISCOVERs oldest first while fresh', async () => {
    const { handled, intake } = rig();
    intake.add('d1', true);
    intake.add('d2', true);
    intake.add('r1', false);
    intake.add('r2', false);
    await turn();
    expect(handled).toEqual(['r1', 'r2', 'd1', 'd2']);
  });

  it('answers DISCOVERs newest first once the oldest has waited, and sheds the stale ones', async () => {
    const { clock, handled, shed, intake } = rig({ lifoAfterMs: 100, staleMs: 1000 });
    intake.add('old', true);
    clock.t = 950;
    intake.add('mid', true);
    clock.t = 1000; // 'old' has waited 1,000 ms: shed; 'mid' 50 ms: fresh, oldest first
    intake.add('new', true);
    await turn();
    expect(shed).toEqual(['old:stale']);
    expect(handled).toEqual(['mid', 'new']);
    handled.length = 0;
    intake.add('a', true);
    intake.add('b', true);
    intake.add('c', true);
    clock.t = 1200; // all have waited 200 ms: the server is behind, newest first
    await turn();
    expect(handled).toEqual(['c', 'b', 'a']);
  });

  it('never sheds a REQUEST by age', async () => {
    const { clock, handled, shed, intake } = rig({ staleMs: 1000 });
    intake.add('r', false);
    clock.t = 60_000;
    await turn();
    expect(handled).toEqual(['r']);
    expect(shed).toEqual([]);
  });

  it('keeps at most maxQueued packets: the oldest DISCOVER goes first, then the oldest other', async () => {
    const { handled, shed, intake } = rig({ maxQueued: 3 });
    intake.add('r1', false);
    intake.add('d1', true);
    intake.add('d2', true);
    intake.add('r2', false); // 4 waiting: d1 goes
    intake.add('r3', false); // d2 goes
    intake.add('r4', false); // no DISCOVER left: r1 goes
    expect(intake.queued).toBe(3);
    await turn();
    expect(shed).toEqual(['d1:full', 'd2:full', 'r1:full']);
    expect(handled).toEqual(['r2', 'r3', 'r4']);
  });

  it('ends a turn after turnMs so the sockets are read again; the rest waits for the next turn', async () => {
    const clock = { t: 0 };
    const handled: number[] = [];
    const intake = new Intake<number>(
      (p) => {
        handled.push(p);
        clock.t += 1; // each packet takes 1 ms
      },
      () => {},
      { turnMs: 4, lifoAfterMs: 1e9, now: () => clock.t },
    );
    for (let i = 0; i < 10; i++) intake.add(i, false);
    await turn();
    expect(handled).toEqual([0, 1, 2, 3]);
    await turn();
    expect(handled).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    await turn();
    expect(handled).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(intake.queued).toBe(0);
  });

  it('forgets what waits when closed', async () => {
    const { handled, intake } = rig();
    intake.add('r', false);
    intake.close();
    intake.add('late', false);
    await turn();
    expect(handled).toEqual([]);
    expect(intake.queued).toBe(0);
  });
});

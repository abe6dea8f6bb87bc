import { MetanetError } from '../../core/errors.js';
import { FIRST_ID, type GuestClass, guestShare, LAST_ID, MAX_GUESTS } from './tc.js';

/** A shaped guest: its address, its class minor (the same in every tree), its caps (bits/s, 0 = none). */
export interface Guest {
  readonly ip: string;
  readonly id: number;
  readonly up: number;
  readonly down: number;
}

/** The guests' classes in one tree: an equal guaranteed share each (never above its ceil), its cap as ceil. */
export function classesOf(guests: readonly Guest[], dir: 'up' | 'down', uplink: number): GuestClass[] {
  const share = guestShare(uplink, guests.length);
  return guests.map((g) => {
    const c = dir === 'up' ? g.up : g.down;
    const ceil = c > 0 ? Math.min(c, uplink) : uplink;
    return { ip: g.ip, id: g.id, rate: Math.min(share, ceil), ceil };
  });
}

/** The guest list with `ip` added or its caps changed; a new guest gets the lowest free id. */
export function upsert(guests: readonly Guest[], ip: string, up: number, down: number): Guest[] {
  const old = guests.find((g) => g.ip === ip);
  if (old) return guests.map((g) => (g.ip === ip ? { ...g, up, down } : g));
  if (guests.length >= MAX_GUESTS)
    throw new MetanetError(
      'EFAIL',
      `shaper: ${MAX_GUESTS} guests shaped already (class ids ${FIRST_ID}..${LAST_ID})`,
    );
  const used = new Set(guests.map((g) => g.id));
  let id = FIRST_ID;
  while (used.has(id)) id++;
  return [...guests, { ip, id, up, down }];
}

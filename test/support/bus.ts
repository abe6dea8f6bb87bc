import { afterEach } from 'vitest';
import { Bus, silentLogger } from '../../src/core/index.js';

/** A function making a fresh bus named `test` (silent); the last one made is closed after each test. */
export function freshBuses(): () => Bus {
  let bus: Bus | undefined;
  afterEach(async () => {
    await bus?.close();
  });
  return () => {
    bus = new Bus({ name: 'test', logger: silentLogger });
    return bus;
  };
}

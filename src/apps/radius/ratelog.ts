import type { Level, Logger } from '../../core/log.js';

/**
 * A log that writes at most `max` lines per `windowMs` and then counts: what a hostile sender can
 * trigger (dropped DAE requests, forged answers) must not flood the log. The next window's first
 * line says how many were left out.
 */
export function rateLimited(
  log: Logger,
  max = 20,
  windowMs = 10_000,
): (level: Level, msg: string, fields?: Record<string, unknown>) => void {
  let start = 0;
  let written = 0;
  let skipped = 0;
  return (level, msg, fields) => {
    const now = Date.now();
    if (now - start >= windowMs) {
      if (skipped > 0) log.log('warn', 'radius: log lines left out (rate limit)', { skipped, windowMs });
      start = now;
      written = 0;
      skipped = 0;
    }
    if (written < max) {
      written++;
      log.log(level, msg, fields);
    } else skipped++;
  };
}

/**
 * Structured logs: one JSON object per line on stderr, `{"t":…,"level":…,"msg":…,…fields}`.
 * The level comes from METANET_LOG (debug|info|warn|error|silent; default info).
 */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const RANK: Record<Level | 'silent', number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

export interface Logger {
  log(level: Level, msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

function threshold(): number {
  const v = (process.env.METANET_LOG ?? 'info') as Level | 'silent';
  return RANK[v] ?? RANK.info;
}

function plain(v: unknown): unknown {
  if (v instanceof Error) return v.message;
  if (typeof v === 'bigint') return v.toString();
  return v;
}

export function createLogger(
  base: Record<string, unknown> = {},
  write = (line: string) => process.stderr.write(line),
): Logger {
  const min = threshold();
  return {
    log(level, msg, fields) {
      if (RANK[level] < min) return;
      const o: Record<string, unknown> = { t: new Date().toISOString(), level, msg, ...base };
      if (fields) for (const [k, v] of Object.entries(fields)) o[k] = plain(v);
      write(`${JSON.stringify(o)}\n`);
    },
    child(fields) {
      return createLogger({ ...base, ...fields }, write);
    },
  };
}

/** A logger that drops everything (tests, benchmarks). */
export const silentLogger: Logger = { log() {}, child: () => silentLogger };

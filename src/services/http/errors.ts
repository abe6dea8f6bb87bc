import { MetanetError } from '../../core/errors.js';

/** The stable code of an error: a MetanetError's, a Node/OS error's (`EADDRINUSE`, `HPE_…`), or EFAIL. */
export function errorCode(e: unknown): string {
  if (e instanceof MetanetError) return e.code;
  const c = typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
  return typeof c === 'string' ? c : 'EFAIL';
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

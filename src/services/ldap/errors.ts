import { ResultCodeError } from 'ldapts';

/** A failure of the LDAP service: `code` is a stable string, `result` the LDAP resultCode if any. */
export class LdapError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly result?: number,
  ) {
    super(message);
  }
}

/**
 * The error tuples for anything ldapts or the socket threw: an LDAP result becomes E + its name
 * (InvalidCredentialsError → EINVALIDCREDENTIALS) with `result`; a socket error keeps its code.
 */
export function ldapErrorTuples(e: unknown, what: string): { error: string; code: string; result?: number } {
  if (e instanceof LdapError) return { error: e.message, code: e.code, result: e.result };
  const text = e instanceof Error ? e.message : String(e);
  if (e instanceof ResultCodeError) {
    const name = e.name.replace(/Error$/, '');
    const detail = /^\s*Code: 0x[0-9a-f]+\s*$/i.test(text) ? '' : `: ${text.trim()}`; // ldapts' bare "Code: 0x20"
    return { error: `${what}: ${name} (${e.code})${detail}`, code: `E${name.toUpperCase()}`, result: e.code };
  }
  const code = (e as { code?: unknown } | null)?.code;
  return { error: `${what}: ${text}`, code: typeof code === 'string' ? code : 'EFAIL' };
}

/** Whether the error means the connection is unusable (as opposed to the server refusing a request). */
export function isConnectionError(e: unknown): boolean {
  return !(e instanceof ResultCodeError) && !(e instanceof LdapError && e.code === 'EINVAL');
}

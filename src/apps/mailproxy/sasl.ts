/**
 * The user name inside a client's first SASL response, when the mechanism shows it: PLAIN
 * (`authzid NUL authcid NUL password`, the authentication identity) or LOGIN (the first response is
 * the name). Other mechanisms (CRAM-MD5, SCRAM, XOAUTH2…) give undefined. Never throws.
 */
export function saslUser(mechanism: string, response: string): string | undefined {
  const mech = mechanism.toUpperCase();
  if (mech !== 'PLAIN' && mech !== 'LOGIN') return undefined;
  if (response === '' || response === '=' || response === '*') return undefined;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(response)) return undefined;
  const text = Buffer.from(response, 'base64').toString('utf8');
  if (mech === 'LOGIN') return text || undefined;
  const parts = text.split('\0');
  return parts.length === 3 && parts[1] ? parts[1] : undefined;
}

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ldapFactoryTable, ldapTable } from '../../../src/services/ldap/index.js';

const doc = readFileSync(new URL('../../../docs/services/ldap.md', import.meta.url), 'utf8');

describe('docs/services/ldap.md', () => {
  it('lists every mailbox and every tuple of the service table', () => {
    for (const spec of [ldapFactoryTable, ldapTable].flat()) {
      expect(doc, `mailbox ${spec.suffix}`).toContain(`${spec.suffix}\` — ${spec.dir}`);
      for (const t of spec.tuples) expect(doc, `tuple ${t.tag} of ${spec.suffix}`).toContain(`\`${t.tag}\``);
    }
  });
});

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { firewallTable } from '../../../src/services/firewall/index.js';

const doc = readFileSync(new URL('../../../docs/services/firewall.md', import.meta.url), 'utf8');

describe('docs/services/firewall.md', () => {
  it('lists every mailbox and every tuple of the service table', () => {
    for (const spec of firewallTable) {
      expect(doc, `mailbox ${spec.suffix}`).toContain(`${spec.suffix}\` — ${spec.dir}`);
      for (const t of spec.tuples) expect(doc, `tuple ${t.tag} of ${spec.suffix}`).toContain(`\`${t.tag}\``);
    }
  });
});

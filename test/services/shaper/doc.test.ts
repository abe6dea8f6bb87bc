import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { shaperTable } from '../../../src/services/shaper/index.js';

const doc = readFileSync(new URL('../../../docs/services/shaper.md', import.meta.url), 'utf8');

describe('docs/services/shaper.md', () => {
  it('lists every mailbox and every tuple of the service table', () => {
    for (const spec of shaperTable) {
      expect(doc, `mailbox ${spec.suffix}`).toContain(`${spec.suffix}\` — ${spec.dir}`);
      for (const t of spec.tuples) expect(doc, `tuple ${t.tag} of ${spec.suffix}`).toContain(`\`${t.tag}\``);
    }
  });
});

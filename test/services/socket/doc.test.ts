import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { socketFactoryTable, socketTable } from '../../../src/services/socket/index.js';

const doc = readFileSync(new URL('../../../docs/services/socket.md', import.meta.url), 'utf8');

describe('docs/services/socket.md', () => {
  it('lists every mailbox and every tuple of the service table', () => {
    for (const spec of [socketFactoryTable, socketTable].flat()) {
      expect(doc, `mailbox ${spec.suffix}`).toContain(`${spec.suffix}\` — ${spec.dir}`);
      for (const t of spec.tuples) expect(doc, `tuple ${t.tag} of ${spec.suffix}`).toContain(`\`${t.tag}\``);
    }
  });
});

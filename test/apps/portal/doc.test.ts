import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PortalConfigSchema } from '../../../src/apps/portal/config.js';
import { REASONS } from '../../../src/apps/portal/lifecycle.js';
import { portalTable } from '../../../src/apps/portal/table.js';

const doc = readFileSync(new URL('../../../docs/apps/portal.md', import.meta.url), 'utf8');

describe('docs/apps/portal.md', () => {
  it('has a section for every mailbox of the portal table, naming each of its tuples', () => {
    for (const spec of portalTable) {
      const at = doc.indexOf(`### \`/portal${spec.suffix}\``);
      expect(at, `mailbox /portal${spec.suffix}`).toBeGreaterThanOrEqual(0);
      const end = doc.indexOf('\n### ', at + 1);
      const section = doc.slice(at, end < 0 ? undefined : end);
      for (const t of spec.tuples)
        expect(section, `tuple ${t.tag} of /portal${spec.suffix}`).toContain(`\`${t.tag}\``);
    }
  });

  it('lists every config field and every logout reason', () => {
    for (const key of Object.keys(PortalConfigSchema.shape))
      expect(doc, `config ${key}`).toContain(`\`${key}\``);
    for (const r of REASONS) expect(doc, `reason ${r}`).toContain(`| \`${r}\` |`);
  });
});

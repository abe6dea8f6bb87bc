import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HTTP_TABLE } from '../../../src/services/http/index.js';

const doc = readFileSync(new URL('../../../docs/services/http.md', import.meta.url), 'utf8');

describe('docs/services/http.md', () => {
  it('lists every mailbox of the table with its direction', () => {
    for (const s of HTTP_TABLE) {
      const name =
        s.scope === 'service' ? s.suffix : `<${s.scope === 'server' ? 'name' : 'clientname'}>${s.suffix}`;
      expect(doc, name).toContain(`### \`${name}\` (${s.dir})`);
    }
  });

  it('lists every tuple of every mailbox with its type and whether it is required', () => {
    for (const s of HTTP_TABLE) {
      const name =
        s.scope === 'service' ? s.suffix : `<${s.scope === 'server' ? 'name' : 'clientname'}>${s.suffix}`;
      const start = doc.indexOf(`### \`${name}\``);
      const end = doc.indexOf('\n### ', start + 1);
      const section = doc.slice(start, end < 0 ? undefined : end);
      for (const t of s.tuples) {
        const type = typeof t.type === 'string' ? t.type : t.type.join(' or ');
        const req = t.required === false ? 'no' : 'yes';
        expect(section, `${name} ${t.tag}`).toContain(`| \`${t.tag}\` | ${type} | ${req} |`);
      }
    }
  });

  it('documents the status codes the service gives by itself', () => {
    for (const code of ['400', '413', '500', '503', '504'])
      expect(doc).toMatch(new RegExp(`\\*\\*${code}\\*\\*|\\| ${code} `));
  });
});

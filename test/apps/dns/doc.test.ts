import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DnsConfigSchema } from '../../../src/apps/dns/config.js';
import { dnsTable, FLUSH_REPLY, QUERY_REPLY, RECORD, STATS_REPLY } from '../../../src/apps/dns/table.js';

const doc = readFileSync(new URL('../../../docs/apps/dns.md', import.meta.url), 'utf8');

describe('docs/apps/dns.md', () => {
  it('lists every mailbox and every tuple of the table, with the direction', () => {
    for (const spec of dnsTable) {
      expect(doc, `mailbox ${spec.suffix}`).toContain(`### \`/dns${spec.suffix}\` — ${spec.dir}`);
      for (const t of spec.tuples)
        expect(doc, `tuple ${t.tag} of ${spec.suffix}`).toContain(`| \`${t.tag}\` |`);
    }
  });

  it('lists every tuple of the replies and of a hook record', () => {
    for (const t of [...QUERY_REPLY, ...RECORD, ...STATS_REPLY, ...FLUSH_REPLY])
      expect(doc, `reply tuple ${t.tag}`).toContain(`| \`${t.tag}\` |`);
  });

  it('lists every config field', () => {
    for (const k of Object.keys(DnsConfigSchema.shape)) expect(doc, `config ${k}`).toContain(`| \`${k}\` |`);
  });
});

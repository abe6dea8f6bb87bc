import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/services/dhcp/config.js';
import { DHCPD_TABLE, LOOKUP_REPLY, STATS_REPLY } from '../../../src/services/dhcp/table.js';
import { rawConfig } from './helpers.js';

const doc = readFileSync(new URL('../../../docs/services/dhcp.md', import.meta.url), 'utf8');

/** The text of one `###`/`##` section, from its heading to the next heading of any level ≤ 3. */
function section(heading: string): string {
  const at = doc.indexOf(heading);
  expect(at, heading).toBeGreaterThanOrEqual(0);
  const rest = doc.slice(at + heading.length);
  const end = rest.search(/\n#{2,3} /);
  return end < 0 ? rest : rest.slice(0, end);
}

/** Rows of the markdown tables in `text`: the first cell, without backticks. */
const firstCells = (text: string): string[] => [...text.matchAll(/^\| `([^`]+)`/gm)].map((m) => m[1]!);

describe('docs/services/dhcp.md', () => {
  it('lists every mailbox of table.ts, and in each mailbox’s section every tuple, in the same order', () => {
    for (const spec of DHCPD_TABLE) {
      // the hook is an `out` mailbox (the server sends, others answer)
      const dir = spec.suffix === '/lookup' ? 'the hook' : spec.dir;
      expect(doc, `mailbox ${spec.suffix}`).toContain(`### \`/dhcpd${spec.suffix}\` — ${dir}`);
      // the `in` mailboxes take only reply-to; their replies are described in prose or a table
      if (spec.dir === 'in') continue;
      const cells = firstCells(section(`### \`/dhcpd${spec.suffix}\``));
      expect(cells.slice(0, spec.tuples.length), spec.suffix).toEqual(spec.tuples.map((t) => t.tag));
    }
    const lookup = firstCells(section('### `/dhcpd/lookup`'));
    for (const t of LOOKUP_REPLY) expect(lookup, `lookup answer ${t.tag}`).toContain(t.tag);
  });

  it('the /dhcpd/packet table has the arrival interface, optional', () => {
    expect(section('### `/dhcpd/packet`')).toMatch(/^\| `interface` \| str \| no \|/m);
  });

  it('lists every field /dhcpd/stats returns, in order, and nothing else', () => {
    expect(firstCells(section('### `/dhcpd/stats`'))).toEqual(STATS_REPLY.map((t) => t.tag));
  });

  it('the configuration table has every field of the config, and says leaseFile is required', () => {
    const c = parseConfig(rawConfig('/tmp/x'));
    const cells = firstCells(section('## Configuration'));
    for (const key of Object.keys(c))
      expect(
        cells.some((cell) => cell.startsWith(key)),
        key,
      ).toBe(true);
    expect(section('## Configuration')).toMatch(/\| `leaseFile` \| \*\*required\*\*/);
    expect(section('## Configuration')).toMatch(
      /relative path is resolved from the \*\*working directory\*\*/,
    );
  });
});

import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tmp } from '../../services/dhcp/helpers.js';

const MAIN = join(import.meta.dirname, '..', '..', '..', 'src', 'apps', 'dhcpd', 'main.ts');

function run(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    c.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    c.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    c.on('exit', (code) => resolve({ code, out }));
  });
}

describe('dhcpd process: bad invocations', () => {
  it('a bad config exits 1 naming every bad field, before binding anything', async () => {
    const t = tmp();
    try {
      const f = join(t.dir, 'bad.json');
      writeFileSync(
        f,
        JSON.stringify({
          listen: [{ address: '10.77.0.1' }],
          subnets: [{ subnet: '10.77.0.0/24', pool: { start: '10.77.0.300', end: '10.77.0.9' } }],
          leaseFile: join(t.dir, 'l'),
        }),
      );
      const r = await run(['--config', f]);
      expect(r.code).toBe(1);
      expect(r.out).toContain(`dhcpd: ${f}: invalid configuration:`);
      expect(r.out).toContain('subnets[0].pool.start: not an IPv4 address');
    } finally {
      t.cleanup();
    }
  });

  it('no --config: usage, exit 1', async () => {
    const r = await run([]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/usage: dhcpd --config FILE/);
  });
});

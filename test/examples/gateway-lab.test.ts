import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { labNamespaces, REPO_ROOT } from '../../examples/gateway-lab/lab.js';
import { have } from '../support/env.js';

/**
 * `npm start --once`, as a user runs it: the compiled walk-through (CI builds before the tests)
 * must take guest1 online, exit 0 and leave nothing behind.
 */
const START = join(REPO_ROOT, 'dist/examples/gateway-lab/start.js');
const ok = have(['ip', 'udhcpc', 'dnsmasq', 'curl', 'nft', 'conntrack'], { root: true });

describe.skipIf(!ok)('examples/gateway-lab: npm start --once', () => {
  it('walks guest1 online, exits 0 and removes every namespace, /etc/netns entry and temp dir', async () => {
    if (!existsSync(START))
      throw new Error(`${START} is missing: run \`npm run build\` before this test (CI builds first)`);
    const child = spawn(process.execPath, [START, '--once'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => {
      const t = setTimeout(() => child.kill('SIGTERM'), 40_000);
      child.on('close', (c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
    process.stderr.write(out);
    expect(code, out).toBe(0);
    const online = /^guest online after (\d+) ms/m.exec(out);
    expect(online, out).not.toBeNull();
    expect(out).toMatch(/gateway ready: dhcpd dns portal/);
    expect(out).toMatch(/captive portal http:\/\/10\.20\.0\.1:8080\/api/);
    expect(out).toMatch(/www\.example\.test → 10\.99\.0\.1 via 10\.20\.0\.1/);
    expect(out).toMatch(/→ 302 http:\/\/10\.20\.0\.1:8080\/\?url=http%3A%2F%2Fwww\.example\.test%2F/);
    expect(out).toMatch(/POST http:\/\/10\.20\.0\.1:8080\/accept → 303 http:\/\/www\.example\.test\//);
    expect(out).toMatch(/→ 200 "Hello from the internet"/);
    const pid = child.pid!;
    expect(labNamespaces(pid)).toEqual([]);
    expect(labNamespaces().filter((n) => n.startsWith(`mnlab${pid}-`))).toEqual([]);
    const left = (dir: string): string[] => {
      try {
        return readdirSync(dir).filter((e) => e.startsWith(`mnlab${pid}-`));
      } catch {
        return [];
      }
    };
    expect(left('/etc/netns')).toEqual([]);
    expect(left(tmpdir())).toEqual([]);
  }, 60_000);
});

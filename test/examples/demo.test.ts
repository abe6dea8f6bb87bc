import { expect, it } from 'vitest';
import { ROOT, runTs, tempDir } from '../support/daemons.js';

it('npm run demo: the portal daemon answers its own requests and shows the messages flowing', async () => {
  const dir = tempDir();
  const c = runTs(`${ROOT}/examples/demo.ts`, [], {
    env: { ...process.env, DEMO_ONESHOT: '1', PORT: '0', METANET_DIR: dir },
  });
  let out = '';
  c.stdout?.on('data', (d: Buffer) => (out += d));
  const code = await new Promise<number | null>((r) => c.on('exit', r));
  expect(code).toBe(0);
  expect(out).toMatch(
    /-> \/captive\/server\/request {2}clientname="\/captive\/server\/client\/1" method="GET" Host="example\.org"/,
  );
  expect(out).toMatch(/<- 307 http:\/\/127\.0\.0\.1:\d+\/\?url=http%3A%2F%2Fexample\.org%2Fnews%3Fid%3D1/);
  expect(out).toMatch(/<- 200 text\/html/);
  expect(out).toContain(`daemon socket: ${dir}/portal.sock`);
  expect(out).toMatch(/another process sees: 3 mailboxes under \/captive/);
}, 30000);

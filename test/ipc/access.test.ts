/**
 * Access rules (docs/ipc.md, "Access control"): the first matching rule decides; group rules
 * match supplementary groups too; LS shows only what the asker may send to or listen on.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Acl, type AclRule } from '../../src/ipc/acl.js';
import { peerCred } from '../../src/ipc/peercred.js';
import { cleanup, ROOT, runTs, startFixture, stopAll, tempDir } from '../support/daemons.js';
import { have } from '../support/env.js';
import { waitForLine } from '../support/wait.js';

const dirs: string[] = [];
function dir(): string {
  const d = tempDir();
  dirs.push(d);
  return d;
}
afterEach(stopAll);
afterAll(() => {
  for (const d of dirs) cleanup(d);
});

const peer = (uid: number, gid: number, groups: number[] = []) => ({ pid: 1, uid, gid, groups });

describe('the rules', () => {
  it('a group rule matches a supplementary group of the peer, not only its primary group', () => {
    const acl = new Acl([{ group: 4242, allow: ['send'], mailboxes: ['/dhcpd/**'] }]);
    expect(acl.allows('send', '/dhcpd/leases', peer(1000, 1000, [27, 4242]))).toBe(true);
    expect(acl.allows('send', '/dhcpd/leases', peer(1000, 4242))).toBe(true);
    expect(acl.allows('send', '/dhcpd/leases', peer(1000, 1000, [27]))).toBe(false);
  });

  it('the first matching rule decides, for every operation: what it does not allow is denied', () => {
    const rules: AclRule[] = [
      { user: 1000, allow: ['listen'], mailboxes: ['/a/**'] },
      { user: '*', allow: ['send', 'listen'], mailboxes: ['/a/**'] },
    ];
    const acl = new Acl(rules);
    expect(acl.allows('listen', '/a/x', peer(1000, 1000))).toBe(true);
    // rule 0 matches first and does not allow send: rule 1 is never asked
    expect(() => acl.check('send', '/a/x', peer(1000, 1000))).toThrow(
      'send /a/x denied to uid 1000 by rule 0 (user 1000 allow listen on /a/**)',
    );
    expect(acl.allows('send', '/a/x', peer(1001, 1001))).toBe(true);
    // the example of docs/ipc.md: anyone may send to dhcpd's mailboxes, nobody else may listen
    const example = new Acl([{ user: '*', allow: ['send'], mailboxes: ['/dhcpd/**'] }]);
    expect(example.allows('send', '/dhcpd/lookup', peer(1001, 1001))).toBe(true);
    expect(example.allows('listen', '/dhcpd/lookup', peer(1001, 1001))).toBe(false);
  });

  it('the daemon reads the peer’s supplementary groups when it accepts the connection', async () => {
    const d = dir();
    const path = `${d}/cred.sock`;
    const accepted = new Promise<Socket>((resolve) => {
      const server: Server = createServer(resolve);
      server.listen(path);
      afterAll(() => server.close());
    });
    const c = netConnect(path);
    const sock = await accepted;
    const cred = peerCred(sock);
    expect(cred?.pid).toBe(process.pid);
    const own = /^Groups:(.*)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]?.trim() ?? '';
    expect(cred?.groups).toEqual(own === '' ? [] : own.split(/\s+/).map(Number));
    c.destroy();
    sock.destroy();
  });
});

describe.skipIf(!have([], { root: true }))(
  'as another user, with a supplementary group (SO_PEERCRED, /proc)',
  () => {
    const nobody = (): [number, number] => [
      Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' })),
      Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' })),
    ];
    async function as(d: string, groups: number[], op: string, addr: string): Promise<string[]> {
      const [uid, gid] = nobody();
      const c = runTs(`${ROOT}/test/ipc/fixtures/client.ts`, [d, op, addr], {
        env: { ...process.env, METANET_LOG: 'warn', MN_AS: `${uid}:${gid}:${groups.join(',')}` },
      });
      const first = await waitForLine(c, /^(ok|error)/, 15000);
      if (op !== 'ls' || first !== 'ok') return [first];
      const lines: string[] = [];
      for (;;) {
        const l = await waitForLine(c, /^(mailbox|end)/, 5000);
        if (l === 'end') return lines;
        lines.push(l);
      }
    }

    it('a group rule lets a member of a supplementary group in; LS lists only what it may use', async () => {
      const d = dir();
      chmodSync(d, 0o755);
      await startFixture('guarded', d, [
        { group: 4242, allow: ['send'], mailboxes: ['/echo'] },
        { user: 'nobody', allow: ['send', 'listen'], mailboxes: ['/chain'] },
      ]);
      expect(await as(d, [4242], 'send', 'guarded:/echo')).toEqual(['ok']);
      expect((await as(d, [], 'send', 'guarded:/echo'))[0]).toMatch(/^error EDENIED .*no rule allows it/);
      // /count, /count/get, /slow: no right, not listed; /echo: send only, listed without its listeners
      expect(await as(d, [4242], 'ls', 'guarded')).toEqual(['mailbox /chain 1', 'mailbox /echo 0']);
      expect(await as(d, [], 'ls', 'guarded')).toEqual(['mailbox /chain 1']);
    }, 60000);
  },
);

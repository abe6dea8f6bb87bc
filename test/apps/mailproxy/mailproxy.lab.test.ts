import type { ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../../src/core/bus.js';
import { silentLogger } from '../../../src/core/log.js';
import { attachClient } from '../../../src/ipc/daemon.js';
import { have } from '../../support/env.js';
import { Lab } from '../../support/lab.js';
import { until, waitForLine } from '../../support/wait.js';

/**
 * The mail proxy daemon in the lab's router namespace (its redirect table and the firewall service
 * in the same process, nft run there), real Dovecot (IMAP 143, POP3 110) in the inet namespace,
 * real clients (curl, and a raw line client for LOGIN and USER/PASS) in the client namespace.
 * The test reaches the daemon's mailboxes over its socket and reads its event lines.
 */
const ok = have(['nft', 'ip', 'dovecot', 'curl', 'openssl', 'smtp-sink', 'swaks'], { root: true });
const TALK = join(import.meta.dirname, 'talk.mjs');
const SECOND = '10.77.1.3';

interface Event {
  kind: string;
  body: Record<string, unknown>;
}

describe.skipIf(!ok)('mail proxy against real Dovecot, nftables and curl in a lab', () => {
  let lab: Lab;
  let proxy: ChildProcess;
  let bus: Bus;
  let mailDir: string;
  let message: string;
  let proxyPort: number;
  const events: Event[] = [];
  const user = 'alice';
  const pass = 's3cret';

  const curl = (url: string, extra: string[] = [], ns?: string) =>
    lab.exec(ns ?? lab.client, 'curl', ['-sS', '--connect-timeout', '2', '-m', '5', ...extra, url]);
  const talkTo = (host: string, port: number, ...args: string[]) =>
    lab.exec(lab.client, process.execPath, [TALK, host, String(port), ...args]);
  const talk = (port: number, ...args: string[]) => talkTo(lab.inetIp, port, ...args);
  const smtpSet = async (): Promise<string[]> => {
    const r = await lab.exec(lab.router, 'nft', ['-j', 'list', 'set', 'inet', 'metanet', 'smtp4']);
    const doc = JSON.parse(r.stdout) as { nftables: { set?: { elem?: unknown[] } }[] };
    const elems = doc.nftables.find((x) => x.set)?.set?.elem ?? [];
    return elems.map((e) => {
      const v = (e as { elem?: { val: unknown } }).elem?.val ?? e;
      return ((v as { concat: unknown[] }).concat ?? []).join('.');
    });
  };
  /** swaks (a real SMTP client) from the client to a server's port 25: true when the mail went. */
  const sendMail = async (server: string): Promise<{ sent: boolean; out: string }> => {
    const r = await lab.exec(lab.client, 'swaks', [
      '--server',
      `${server}:25`,
      '--from',
      'a@example.org',
      '--to',
      'b@example.org',
      '--timeout',
      '3',
    ]);
    return { sent: r.code === 0, out: `exit ${r.code}\n${r.stdout.slice(-800)}\n${r.stderr.slice(-800)}` };
  };
  const expectMail = async (server: string, sent: boolean): Promise<void> => {
    const r = await sendMail(server);
    expect(r.sent, r.out).toBe(sent);
  };
  const logins = (): Event[] => events.filter((e) => e.kind === 'login');

  beforeAll(async () => {
    lab = await Lab.create({ addr: true });
    const dir = join(lab.dir, 'dovecot');
    mkdirSync(dir);
    chmodSync(lab.dir, 0o755);
    mailDir = join(dir, 'mail', user);
    for (const d of ['cur', 'new', 'tmp']) mkdirSync(join(mailDir, d), { recursive: true });
    mkdirSync(join(dir, 'home'));
    // CRLF lines, a line that POP3 dot-stuffs, ~200 KB: the relay must copy every byte.
    const body = Array.from({ length: 3000 }, (_, i) => `line ${i} ${'x'.repeat(60)}`).join('\r\n');
    message = `From: a@example.org\r\nTo: ${user}@example.org\r\nSubject: t\r\n\r\n.dot\r\n${body}\r\n`;
    writeFileSync(join(mailDir, 'new', '1700000000.M1P1.lab'), message);
    // Dovecot refuses UID 0 for mail: the mail user is nobody (65534).
    for (const p of [
      join(dir, 'mail'),
      mailDir,
      ...['cur', 'new', 'tmp'].map((d) => join(mailDir, d)),
      join(dir, 'home'),
    ])
      chownSync(p, 65534, 65534);
    chownSync(join(mailDir, 'new', '1700000000.M1P1.lab'), 65534, 65534);
    writeFileSync(join(dir, 'users'), `${user}:{PLAIN}${pass}:65534:65534::${join(dir, 'home')}::\n`);
    writeFileSync(
      join(dir, 'dovecot.conf'),
      [
        'protocols = imap pop3',
        `listen = ${lab.inetIp}, ${SECOND}`,
        `base_dir = ${join(dir, 'run')}`,
        `state_dir = ${join(dir, 'state')}`,
        `log_path = ${join(dir, 'dovecot.log')}`,
        // TLS on offer (STARTTLS/STLS), plaintext logins still allowed.
        'ssl = yes',
        `ssl_cert = <${join(dir, 'cert.pem')}`,
        `ssl_key = <${join(dir, 'key.pem')}`,
        'disable_plaintext_auth = no',
        'auth_failure_delay = 0',
        'auth_mechanisms = plain login',
        `mail_location = maildir:${join(dir, 'mail')}/%u`,
        `passdb {\n  driver = passwd-file\n  args = scheme=PLAIN ${join(dir, 'users')}\n}`,
        // No growing delay after failed logins (every proxied login comes from the router's address).
        'service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}',
        `userdb {\n  driver = passwd-file\n  args = ${join(dir, 'users')}\n}`,
        '',
      ].join('\n'),
    );
    // A second server address: the proxy must report the one dialled, not guess.
    expect((await lab.exec(lab.inet, 'ip', ['addr', 'add', `${SECOND}/24`, 'dev', 'i0'])).code).toBe(0);
    const cert = await lab.exec(lab.inet, 'openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=mail.test',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ]);
    expect(cert.code, cert.stderr).toBe(0);
    // A real SMTP peer on both server addresses.
    lab.spawn(lab.inet, 'smtp-sink', ['-u', 'nobody', `${lab.inetIp}:25`, '16']);
    lab.spawn(lab.inet, 'smtp-sink', ['-u', 'nobody', `${SECOND}:25`, '16']);
    lab.spawn(lab.inet, 'dovecot', ['-F', '-c', join(dir, 'dovecot.conf')]);
    await until(
      async () => (await curl(`pop3://${lab.inetIp}/`, ['-u', `${user}:${pass}`], lab.inet)).code === 0,
      'dovecot answering POP3',
      10000,
    );
    // The sinks answer the router (not filtered): a refusal seen by the client is the firewall's.
    for (const server of [lab.inetIp, SECOND])
      await until(
        async () =>
          (
            await lab.exec(lab.router, 'swaks', [
              ...['--server', `${server}:25`, '--from', 'a@example.org', '--to', 'b@example.org'],
              ...['--timeout', '3'],
            ])
          ).code === 0,
        `smtp-sink on ${server}`,
      );
    const sockDir = join(lab.dir, 'sock');
    const config = lab.file(
      'mailproxy.json',
      JSON.stringify({
        port: 0,
        smtpTimeout: 120,
        installFirewall: { name: '/fw', lan: 'r0', portal: { address: lab.routerLanIp, port: 8080 } },
        redirect: { lan: ['r0'] },
      }),
    );
    proxy = lab.nodeScript(lab.router, 'src/apps/mailproxy/main.ts', ['--config', config, '--dir', sockDir]);
    let buf = '';
    proxy.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const m = /^mailproxy (login|starttls|error) (\{.*\})$/.exec(buf.slice(0, i));
        if (m) events.push({ kind: m[1]!, body: JSON.parse(m[2]!) });
        buf = buf.slice(i + 1);
      }
    });
    proxyPort = Number((await waitForLine(proxy, /^mailproxy ready \d+$/, 20000)).split(' ')[2]);
    bus = new Bus({ name: 'mailtest', logger: silentLogger });
    attachClient(bus, { dir: sockDir });
    // The client must be an authorised portal client to reach the router (and the proxy) at all.
    const mac = await lab.mac(lab.client, 'c0');
    const a = await bus.request('mailproxy:/fw/allow', { ip: lab.clientIp(0), mac });
    expect(a.has('error'), a.toString()).toBe(false);
  }, 40000);

  afterAll(async () => {
    if (proxy && proxy.exitCode === null) {
      const exited = new Promise((r) => proxy.once('exit', r));
      proxy.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
    }
    await bus?.close();
    await lab?.close();
  });

  it('IMAP LOGIN with a wrong password: no login event, SMTP stays closed', async () => {
    const r = await talk(143, '^\\* OK', 'a1 LOGIN alice wrong', '^a1 ', 'a2 LOGOUT', '^a2 ');
    expect(r.stdout).toContain('a1 NO [AUTHENTICATIONFAILED]');
    const r2 = await talk(110, '^\\+OK', 'USER alice', '^\\+OK', 'PASS wrong', '^-ERR', 'QUIT', '^\\+OK');
    expect(r2.stdout).toContain('-ERR [AUTH] Authentication failed.');
    const stats = await bus.request('mailproxy:/mailproxy/stats', {});
    expect(stats.int('connections')).toBe(2);
    expect(logins()).toEqual([]);
    expect(await smtpSet()).toEqual([]);
    await expectMail(lab.inetIp, false);
  });

  it('IMAP LOGIN: login event with the original destination; SMTP opened for client → server', async () => {
    const t0 = performance.now();
    const r = await talk(143, '^\\* OK', `a1 LOGIN ${user} "${pass}"`, '^a1 ', 'a2 LOGOUT', '^a2 ');
    expect(r.stdout).toMatch(/^a1 OK .*Logged in/m);
    await until(() => logins().length === 1, 'the login event');
    const ev = logins()[0];
    expect(ev!.body).toEqual({
      client: lab.clientIp(0),
      server: lab.inetIp,
      port: 143,
      protocol: 'imap',
      command: 'LOGIN',
      user,
    });
    await until(
      async () => (await smtpSet()).includes(`${lab.clientIp(0)}.${lab.inetIp}.25`),
      'smtp4 element',
    );
    console.log(`IMAP LOGIN → smtp4 element visible: ${(performance.now() - t0).toFixed(1)} ms`);
    await expectMail(lab.inetIp, true);
    await expectMail(SECOND, false); // opened for that server only
  });

  it('curl IMAP (AUTHENTICATE PLAIN) fetches the message byte for byte', async () => {
    const direct = await curl(`imap://${lab.inetIp}/INBOX;UID=1`, ['-u', `${user}:${pass}`], lab.router);
    const proxied = await curl(`imap://${lab.inetIp}/INBOX;UID=1`, ['-u', `${user}:${pass}`]);
    expect(proxied.code, proxied.stderr).toBe(0);
    expect(proxied.stdout.length).toBe(message.length);
    expect(proxied.stdout === direct.stdout).toBe(true);
    expect(proxied.stdout === message).toBe(true);
    await until(() => logins().length === 2, 'the second login event');
    expect(logins()[1]!.body).toMatchObject({ protocol: 'imap', command: 'AUTHENTICATE', user, port: 143 });
  });

  it('POP3 USER/PASS and curl POP3 (AUTH PLAIN): login events; RETR byte for byte', async () => {
    const r = await talk(110, '^\\+OK', `USER ${user}`, '^\\+OK', `PASS ${pass}`, '^[-+]', 'QUIT', '^\\+OK');
    expect(r.stdout).toContain('+OK Logged in.');
    await until(() => logins().length === 3, 'the USER/PASS login event');
    expect(logins()[2]!.body).toMatchObject({ protocol: 'pop3', command: 'PASS', user, port: 110 });
    const proxied = await curl(`pop3://${lab.inetIp}/1`, ['-u', `${user}:${pass}`]);
    expect(proxied.code, proxied.stderr).toBe(0);
    expect(proxied.stdout === message).toBe(true);
    await until(() => logins().length === 4, 'the AUTH login event');
    expect(logins()[3]!.body).toMatchObject({ protocol: 'pop3', command: 'AUTH', user });
    const stats = await bus.request('mailproxy:/mailproxy/stats', {});
    expect(stats.int('logins')).toBe(4);
    console.log(
      `proxy: last login → smtp/open reply ${stats.float('openMs').toFixed(2)} ms; ` +
        `getsockopt(SO_ORIGINAL_DST) ${stats.float('origDstMs').toFixed(3)} ms`,
    );
    expect(stats.float('openMs')).toBeGreaterThan(0);
    expect(await smtpSet()).toEqual([`${lab.clientIp(0)}.${lab.inetIp}.25`]);
  });

  it('the original destination is the address dialled: a second server address', async () => {
    const n = logins().length;
    const r = await talkTo(SECOND, 143, '^\\* OK', `b1 LOGIN ${user} ${pass}`, '^b1 ', 'b2 LOGOUT', '^b2 ');
    expect(r.stdout).toMatch(/^b1 OK/m);
    await until(() => logins().length === n + 1, 'the login event');
    expect(logins()[n]!.body).toMatchObject({ server: SECOND, port: 143 });
    await until(async () => (await smtpSet()).includes(`${lab.clientIp(0)}.${SECOND}.25`), 'smtp4 element');
    await expectMail(SECOND, true);
  });

  it('STARTTLS / STLS: relayed (curl logs in over TLS), reported, and no login is seen', async () => {
    const n = logins().length;
    const imap = await curl(`imap://${lab.inetIp}/INBOX;UID=1`, [
      '--ssl-reqd',
      '-k',
      '-u',
      `${user}:${pass}`,
    ]);
    expect(imap.code, imap.stderr).toBe(0);
    expect(imap.stdout === message).toBe(true);
    const pop = await curl(`pop3://${lab.inetIp}/1`, ['--ssl-reqd', '-k', '-u', `${user}:${pass}`]);
    expect(pop.code, pop.stderr).toBe(0);
    expect(pop.stdout === message).toBe(true);
    await until(() => events.filter((e) => e.kind === 'starttls').length === 2, 'two starttls events');
    expect(events.filter((e) => e.kind === 'starttls').map((e) => e.body.protocol)).toEqual(['imap', 'pop3']);
    expect(logins().length).toBe(n);
  });

  it('a connection straight to the proxy port (not redirected) is closed and reported', async () => {
    const before = events.filter((e) => e.kind === 'error').length;
    const r = await lab.exec(lab.router, process.execPath, [
      TALK,
      lab.routerLanIp,
      String(proxyPort),
      '^never',
    ]);
    expect(r.code).not.toBe(0);
    await until(() => events.filter((e) => e.kind === 'error').length > before, 'the error event');
    expect(events.at(-1)!.body).toMatchObject({ code: 'ENOTREDIRECTED', mailbox: '/mailproxy' });
  });
});

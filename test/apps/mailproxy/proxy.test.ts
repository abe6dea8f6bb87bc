import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MailProxy, startMailProxy } from '../../../src/apps/mailproxy/proxy.js';
import { Bus } from '../../../src/core/bus.js';
import { silentLogger } from '../../../src/core/log.js';
import type { Message } from '../../../src/core/message.js';
import { until } from '../../support/wait.js';

/**
 * The proxy in this process on loopback, without root: the original destination is a stand-in
 * (the lab test uses the real SO_ORIGINAL_DST). The server is a scripted POP3 peer that echoes
 * whatever it does not know, so relaying can be checked byte for byte.
 */
describe('mail proxy relay (loopback, stand-in destination)', () => {
  let bus: Bus;
  let server: Server;
  let serverPort: number;
  let proxy: MailProxy;
  let target: { address: string; port: number };
  const opens: Message[] = [];

  beforeAll(async () => {
    bus = new Bus({ name: 'proxytest', logger: silentLogger });
    bus.listen('/fw/smtp/open', (m, ctx) => {
      opens.push(m);
      ctx.reply({ client: m.str('client'), server: m.str('server'), port: 25, timeout: m.int('timeout') });
    });
    server = createServer((s) => {
      s.write('+OK ready\r\n');
      let buf = '';
      s.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          const line = buf.slice(0, i + 1);
          buf = buf.slice(i + 1);
          if (/^PASS good/.test(line)) s.write('+OK Logged in.\r\n');
          else if (/^PASS /.test(line)) s.write('-ERR [AUTH] Authentication failed.\r\n');
          else if (/^USER /.test(line)) s.write('+OK\r\n');
          else s.write(`ECHO ${line}`);
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    serverPort = (server.address() as { port: number }).port;
    target = { address: '127.0.0.1', port: serverPort };
    proxy = await startMailProxy(bus, {
      address: '127.0.0.1',
      firewall: '/fw',
      smtpTimeout: 77,
      protocols: { [serverPort]: 'pop3' },
      destination: () => target,
    });
  });

  afterAll(async () => {
    await proxy.close();
    await new Promise((r) => server.close(r));
    await bus.close();
  });

  /** Send the lines (each piece written separately), read until `until` matches, return it all. */
  const dialogue = (pieces: string[], until: RegExp): Promise<string> =>
    new Promise((resolve, reject) => {
      const s: Socket = connect(proxy.port(), '127.0.0.1');
      let got = '';
      const t = setTimeout(
        () => reject(new Error(`no ${until} in ${JSON.stringify(got.slice(-200))}`)),
        3000,
      );
      s.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (until.test(got)) {
          clearTimeout(t);
          s.end();
          resolve(got);
        }
      });
      s.on('error', reject);
      s.once('data', () => {
        for (const p of pieces) s.write(p);
      });
    });

  it('sees a login split across writes, posts the event, asks the firewall', async () => {
    const login = bus.wait('/mailproxy/login', { timeout: 3000 });
    await dialogue(['US', 'ER al', 'ice\r\nPA', 'SS go', 'od\r', '\n'], /Logged in/);
    const ev = await login;
    expect(ev.str('user')).toBe('alice');
    expect(ev.str('protocol')).toBe('pop3');
    expect(ev.str('server')).toBe('127.0.0.1');
    await until(() => opens.length === 1, 'the smtp/open request');
    expect(opens[0]!.int('timeout')).toBe(77);
    expect(opens[0]!.str('client')).toBe('127.0.0.1');
  });

  it('a wrong password posts nothing', async () => {
    const n = opens.length;
    const stats0 = (await bus.request('/mailproxy/stats', {})).int('logins');
    await dialogue(['USER a\r\nPASS bad\r\n'], /-ERR/);
    expect((await bus.request('/mailproxy/stats', {})).int('logins')).toBe(stats0);
    expect(opens.length).toBe(n);
  });

  it('a line over 8 KiB stops parsing (ELINE) but every byte is relayed', async () => {
    const err = bus.wait('/mailproxy/error', { timeout: 3000 });
    const long = `NOOP ${'y'.repeat(9000)}\r\n`;
    const got = await dialogue([long, 'USER a\r\nPASS good\r\n'], /Logged in/);
    expect(got).toBe(`+OK ready\r\nECHO ${long}+OK\r\n+OK Logged in.\r\n`);
    expect((await err).str('code')).toBe('ELINE');
  });

  it('half-close passes through: the server still answers after the client ended its side', async () => {
    const got = await new Promise<string>((resolve, reject) => {
      const s = connect(proxy.port(), '127.0.0.1');
      let buf = '';
      s.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
      });
      s.once('data', () => s.end('LAST words\r\n'));
      s.on('end', () => resolve(buf));
      s.on('error', reject);
    });
    expect(got).toBe('+OK ready\r\nECHO LAST words\r\n');
  });

  it('a server that cannot be reached: ECONNECT, the client is cut', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as { port: number }).port;
    await new Promise((r) => closed.close(r));
    target = { address: '127.0.0.1', port };
    const err = bus.wait('/mailproxy/error', { timeout: 3000 });
    const s = connect(proxy.port(), '127.0.0.1');
    await new Promise((r) => s.on('close', r));
    expect((await err).str('code')).toBe('ECONNECT');
    target = { address: '127.0.0.1', port: serverPort };
  });
});

import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Bus, type Message, silentLogger } from '../../../src/core/index.js';
import { installSocketService, type SocketService } from '../../../src/services/socket/index.js';
import { have } from '../../support/env.js';
import { until, waitForLine } from '../../support/wait.js';

let bus: Bus;
let service: SocketService;
const cleanups: (() => unknown)[] = [];
beforeEach(() => {
  bus = new Bus({ name: 'test', logger: silentLogger });
  service = installSocketService(bus);
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await service.close();
  await bus.close();
});

/** Every message sent to a mailbox, as it arrives. */
function collect(path: string): Message[] {
  const got: Message[] = [];
  bus.append(path, (m) => {
    got.push(m);
  });
  return got;
}

/** The text of every `read` on a socket object, joined, once it contains `want`. */
async function readUntil(name: string, want: string): Promise<string> {
  let text = '';
  await bus.wait(`${name}/read`, {
    match: (m) => (text += Buffer.from(m.bytes('data')).toString()).includes(want),
    timeout: 3000,
  });
  return text;
}

async function newSocket(name: string, protocol: string): Promise<void> {
  const r = await bus.request('/system/socket/new', { name, protocol });
  expect(r.toObject()).toEqual({ name });
}

/** A MetaNet tcp listener on 127.0.0.1 at an OS-chosen port. */
async function tcpListener(name: string): Promise<number> {
  await newSocket(name, 'tcp');
  await bus.request(`${name}/bind`, { host: '127.0.0.1', port: 0 });
  const r = await bus.request(`${name}/listen`, { backlog: 8 });
  expect(r.str('host')).toBe('127.0.0.1');
  return r.int('port');
}

function handles(): number {
  return process
    .getActiveResourcesInfo()
    .filter((h) => /TCP|UDP|Pipe/.test(h) && h !== 'PipeWrap' /* stdio */).length;
}

describe('tcp', () => {
  it('accepts a node:net client: new_client, read, write, close both ways', async () => {
    const port = await tcpListener('/s/srv');
    const accepted = bus.wait('/s/srv/new_client', { timeout: 3000 });
    const peer = net.connect(port, '127.0.0.1');
    cleanups.push(() => peer.destroy());
    await once(peer, 'connect');
    const nc = await accepted;
    const client = nc.str('client');
    expect(client).toBe('/s/srv/client/1');
    expect(nc.str('peerhost')).toBe('127.0.0.1');
    expect(nc.int('peerport')).toBe(peer.localPort);

    const got = readUntil(client, 'ping');
    peer.write('ping');
    expect(await got).toBe('ping');

    let back = '';
    peer.on('data', (d) => (back += d));
    const w = await bus.request(`${client}/write`, { data: 'pong' });
    expect(w.bool('full')).toBe(false);
    await bus.request(`${client}/write`, { data: new Uint8Array([0x21, 0x0a]) });
    await until(() => back === 'pong!\n', 'the peer to read pong');

    // the peer closes: the client object says closed and detaches its mailboxes
    const closed = bus.wait(`${client}/closed`, { timeout: 3000 });
    peer.end();
    await closed;
    await bus.settled();
    await expect(bus.request(`${client}/write`, { data: 'x' })).rejects.toMatchObject({
      code: 'ENOLISTENER',
    });

    // the listener still accepts; closing a client from our side ends the peer
    const second = bus.wait('/s/srv/new_client', { timeout: 3000 });
    const peer2 = net.connect(port, '127.0.0.1');
    cleanups.push(() => peer2.destroy());
    const c2 = (await second).str('client');
    expect(c2).toBe('/s/srv/client/2');
    const ended = once(peer2, 'end');
    const closed2 = bus.wait(`${c2}/closed`, { timeout: 3000 });
    await bus.send(`${c2}/close`, {});
    await ended;
    await closed2;
  });

  it('connects to a node:net server and talks to it', async () => {
    const server = net.createServer();
    cleanups.push(() => new Promise((r) => server.close(r)));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    const conn = once(server, 'connection') as Promise<[net.Socket]>;

    await newSocket('/s/cli', 'tcp');
    const connected = bus.wait('/s/cli/connected', { timeout: 3000 });
    const r = await bus.request('/s/cli/connect', { host: '127.0.0.1', port });
    expect(r.int('port')).toBe(port);
    expect(r.str('localhost')).toBe('127.0.0.1');
    expect((await connected).int('localport')).toBe(r.int('localport'));
    const [s] = await conn;
    cleanups.push(() => s.destroy());

    let heard = '';
    s.on('data', (d) => (heard += d));
    await bus.send('/s/cli/write', { data: 'hello server' });
    await until(() => heard === 'hello server', 'the server to hear us');

    const got = readUntil('/s/cli', 'hello client');
    s.write('hello client');
    await got;

    const closed = bus.wait('/s/cli/closed', { timeout: 3000 });
    const ended = once(s, 'end');
    await bus.send('/s/cli/close', {});
    await ended; // the server sees our FIN and (allowHalfOpen false) ends its side too
    await closed;
  });

  it('reports full when the kernel buffer fills and drain when it empties', async () => {
    const server = net.createServer();
    cleanups.push(() => new Promise((r) => server.close(r)));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const conn = once(server, 'connection') as Promise<[net.Socket]>;
    await newSocket('/s/bp', 'tcp');
    await bus.request('/s/bp/connect', {
      host: '127.0.0.1',
      port: (server.address() as net.AddressInfo).port,
    });
    const [s] = await conn;
    cleanups.push(() => s.destroy());
    s.pause(); // the peer does not read: the kernel buffers fill up

    const fulls = collect('/s/bp/full');
    const chunk = new Uint8Array(256 * 1024);
    let writes = 0;
    let reply: Message;
    do {
      reply = await bus.request('/s/bp/write', { data: chunk });
      writes++;
    } while (!reply.bool('full') && writes < 400);
    expect(reply.bool('full')).toBe(true);
    expect(reply.int('buffered')).toBeGreaterThan(0);
    await bus.settled();
    expect(fulls).toHaveLength(1);
    expect(fulls[0]!.int('buffered')).toBeGreaterThan(0);

    const drained = bus.wait('/s/bp/drain', { timeout: 5000 });
    let received = 0;
    s.on('data', (d: Buffer) => (received += d.length));
    s.resume();
    await drained;
    await until(() => received === writes * chunk.length, 'the peer to read everything', 5000);
  });

  it('talks to a real external program: busybox nc as client and as server', async () => {
    if (!have(['busybox'])) return;
    const port = await tcpListener('/s/nc');
    const accepted = bus.wait('/s/nc/new_client', { timeout: 3000 });
    const nc = spawn('busybox', ['nc', '127.0.0.1', String(port)], { stdio: ['pipe', 'pipe', 'pipe'] });
    cleanups.push(() => nc.kill());
    const client = (await accepted).str('client');
    const got = readUntil(client, 'hello from nc\n');
    nc.stdin.write('hello from nc\n');
    await got;
    const line = waitForLine(nc, /^hello nc$/);
    await bus.send(`${client}/write`, { data: 'hello nc\n' });
    await line;
    const exited = once(nc, 'exit');
    await bus.send(`${client}/close`, {});
    await exited; // nc exits when we close the connection

    // busybox nc -l as the server, MetaNet connecting; the port comes from the OS (listen on 0, close)
    const probe = net.createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const free = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const srv = spawn('busybox', ['nc', '-l', '-p', String(free)], { stdio: 'pipe' });
    cleanups.push(() => srv.kill());
    await newSocket('/s/nc2', 'tcp');
    await until(
      async () => !(await bus.request('/s/nc2/connect', { host: '127.0.0.1', port: free })).has('error'),
      'busybox nc -l to accept',
    );
    const heard = waitForLine(srv, /^to nc server$/);
    await bus.send('/s/nc2/write', { data: 'to nc server\n' });
    await heard;
    const back = readUntil('/s/nc2', 'from nc server');
    srv.stdin.write('from nc server\n');
    await back;
    const closed = bus.wait('/s/nc2/closed', { timeout: 3000 });
    srv.kill();
    await closed;
  });
});

describe('udp', () => {
  it('bound socket reads datagrams with the peer address and writes back to it', async () => {
    await newSocket('/s/udp', 'udp');
    const listening = bus.wait('/s/udp/listening', { timeout: 3000 });
    const b = await bus.request('/s/udp/bind', { host: '127.0.0.1', port: 0 });
    const port = b.int('port');
    expect(port).toBeGreaterThan(0);
    expect((await listening).int('port')).toBe(port);

    const peer = dgram.createSocket('udp4');
    cleanups.push(() => peer.close());
    peer.bind(0, '127.0.0.1');
    await once(peer, 'listening');
    const got = bus.wait('/s/udp/read', { timeout: 3000 });
    peer.send('dgram in', port, '127.0.0.1');
    const r = await got;
    expect(Buffer.from(r.bytes('data')).toString()).toBe('dgram in');
    expect(r.str('peerhost')).toBe('127.0.0.1');
    expect(r.int('peerport')).toBe(peer.address().port);

    const back = once(peer, 'message') as Promise<[Buffer, dgram.RemoteInfo]>;
    await bus.request('/s/udp/write', {
      data: 'dgram out',
      host: r.str('peerhost'),
      port: r.int('peerport'),
    });
    const [data, rinfo] = await back;
    expect(data.toString()).toBe('dgram out');
    expect(rinfo.port).toBe(port);

    // without a destination and not connected: a clear error
    const e = await bus.request('/s/udp/write', { data: 'x' });
    expect(e.str('code')).toBe('EDESTADDRREQ');
    expect(e.str('error')).toMatch(/give "host" and "port"/);
  });

  it('connected socket writes without a destination', async () => {
    const peer = dgram.createSocket('udp4');
    cleanups.push(() => peer.close());
    peer.bind(0, '127.0.0.1');
    await once(peer, 'listening');
    await newSocket('/s/udpc', 'udp');
    const c = await bus.request('/s/udpc/connect', { host: '127.0.0.1', port: peer.address().port });
    expect(c.int('port')).toBe(peer.address().port);
    const msgIn = once(peer, 'message') as Promise<[Buffer, dgram.RemoteInfo]>;
    await bus.request('/s/udpc/write', { data: new Uint8Array([1, 2, 3]) });
    const [data, rinfo] = await msgIn;
    expect([...data]).toEqual([1, 2, 3]);
    const got = bus.wait('/s/udpc/read', { timeout: 3000 });
    peer.send('reply', rinfo.port, rinfo.address);
    expect(Buffer.from((await got).bytes('data')).toString()).toBe('reply');
    const closed = bus.wait('/s/udpc/closed', { timeout: 3000 });
    await bus.send('/s/udpc/close', {});
    await closed;
  });
});

describe('unix', () => {
  it('listens on a socket file and talks to a node:net client', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'metanet-sock-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 's.sock');
    await newSocket('/s/ux', 'unix');
    await bus.request('/s/ux/bind', { path });
    expect((await bus.request('/s/ux/listen', {})).str('path')).toBe(path);
    const accepted = bus.wait('/s/ux/new_client', { timeout: 3000 });
    const peer = net.connect(path);
    cleanups.push(() => peer.destroy());
    const nc = await accepted;
    expect(nc.has('peerhost')).toBe(false);
    const client = nc.str('client');
    const got = readUntil(client, 'over unix');
    peer.write('over unix');
    await got;
    let back = '';
    peer.on('data', (d) => (back += d));
    await bus.send(`${client}/write`, { data: 'and back' });
    await until(() => back === 'and back', 'the unix peer to read');

    // a unix client object too
    await newSocket('/s/uxc', 'unix');
    const second = bus.wait('/s/ux/new_client', { timeout: 3000 });
    expect((await bus.request('/s/uxc/connect', { path })).str('path')).toBe(path);
    const c2 = (await second).str('client');
    const heard = readUntil(c2, 'client to server');
    await bus.send('/s/uxc/write', { data: 'client to server' });
    await heard;
  });
});

describe('errors and teardown', () => {
  it('answers bad requests and failures with {error, code} on the reply and <name>/error', async () => {
    const bad = await bus.request('/system/socket/new', { name: '/s/x', protocol: 'sctp' });
    expect(bad.toObject()).toMatchObject({ code: 'EINVAL' });
    expect(bad.str('error')).toMatch(/protocol must be tcp, udp or unix, got "sctp"/);
    expect((await bus.request('/system/socket/new', { name: 'rel', protocol: 'tcp' })).str('code')).toBe(
      'EBADPATH',
    );
    expect((await bus.request('/system/socket/new', { protocol: 'tcp' })).str('error')).toMatch(
      /missing tuple "name"/,
    );

    await newSocket('/s/e', 'tcp');
    expect((await bus.request('/system/socket/new', { name: '/s/e', protocol: 'tcp' })).str('code')).toBe(
      'EEXIST',
    );
    const errors = collect('/s/e/error');
    // refused connection: the port of a server we just closed
    const probe = net.createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const dead = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const refused = await bus.request('/s/e/connect', { host: '127.0.0.1', port: dead });
    expect(refused.str('code')).toBe('ECONNREFUSED');
    expect((await bus.request('/s/e/write', { data: 'x' })).str('code')).toBe('ENOTCONN');
    expect((await bus.request('/s/e/listen', {})).str('error')).toMatch(/bind before listen/);
    expect((await bus.request('/s/e/bind', { port: 70000 })).str('error')).toMatch(
      /port 70000 is out of range/,
    );
    expect((await bus.request('/s/e/bind', { path: '/tmp/x' })).str('error')).toMatch(/unix sockets only/);
    expect((await bus.request('/s/e/write', { data: 5 })).str('error')).toMatch(
      /"data" is int, expected bytes\|str/,
    );
    await bus.settled();
    expect(errors.map((e) => e.str('code'))).toEqual([
      'ECONNREFUSED',
      'ENOTCONN',
      'EDESTADDRREQ',
      'EINVAL',
      'EINVAL',
      'EBADTUPLE',
    ]);
    expect(errors[0]!.str('mailbox')).toBe('/s/e/connect');

    // address in use, then the same object still works on another port
    const busy = net.createServer().listen(0, '127.0.0.1');
    cleanups.push(() => new Promise((r) => busy.close(r)));
    await once(busy, 'listening');
    await bus.request('/s/e/bind', { host: '127.0.0.1', port: (busy.address() as net.AddressInfo).port });
    expect((await bus.request('/s/e/listen', {})).str('code')).toBe('EADDRINUSE');
    await bus.request('/s/e/bind', { host: '127.0.0.1', port: 0 });
    expect((await bus.request('/s/e/listen', {})).int('port')).toBeGreaterThan(0);
    expect((await bus.request('/s/e/connect', { host: '127.0.0.1', port: 1 })).str('code')).toBe('EISCONN');

    await newSocket('/s/u', 'udp');
    expect((await bus.request('/s/u/listen', {})).str('code')).toBe('EOPNOTSUPP');
  });

  it('close() leaves no socket handle behind', async () => {
    const before = handles();
    const port = await tcpListener('/s/t');
    const peers = [net.connect(port, '127.0.0.1'), net.connect(port, '127.0.0.1')];
    cleanups.push(() => {
      for (const p of peers) p.destroy();
    });
    await bus.wait('/s/t/new_client', { match: { client: '/s/t/client/2' }, timeout: 3000 });
    await newSocket('/s/d', 'udp');
    await bus.request('/s/d/bind', { host: '127.0.0.1', port: 0 });
    await newSocket('/s/idle', 'tcp');
    expect(handles()).toBeGreaterThanOrEqual(before + 4);
    for (const p of peers) p.destroy();
    await service.close();
    await until(() => handles() === before, `socket handles back to ${before}`, 3000);
    expect(bus.mailboxes().filter((b) => b.listeners.length > 0)).toEqual([]);
  });
});

describe('random input', () => {
  it('answers every message with a result or {error, code}, touching no network', async () => {
    const value = fc.oneof(
      fc.integer({ min: -70000, max: 70000 }),
      fc.string({ maxLength: 12 }),
      fc.boolean(),
      fc.constant(null),
      fc.uint8Array({ maxLength: 8 }),
    );
    const init = (tags: string[]) =>
      fc.record(Object.fromEntries(tags.map((t) => [t, value])), { requiredKeys: [] });
    let n = 0;
    const before = handles();
    await fc.assert(
      fc.asyncProperty(
        init(['protocol']),
        init(['host', 'port', 'path']),
        init(['data', 'host', 'port']),
        async (create, bind, write) => {
          const name = `/fz/${++n}`;
          const r = await bus.request('/system/socket/new', { protocol: 'tcp', ...create, name } as never);
          expect(r.has('name') !== r.has('error')).toBe(true);
          if (!r.has('name')) return;
          // tcp bind only records the address and write needs a connection: nothing leaves the process
          if (create.protocol === undefined) {
            const b = await bus.request(`${name}/bind`, bind as never);
            expect(b.has('error') || b.has('port')).toBe(true);
            const w = await bus.request(`${name}/write`, write as never);
            expect(w.str('error')).toContain(name); // names the socket and what was wrong
          }
          await bus.send(`${name}/close`, {});
        },
      ),
      { numRuns: 150 },
    );
    expect(handles()).toBe(before);
  });
});

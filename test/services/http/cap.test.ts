import { connect, type Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { STOP } from '../../../src/core/index.js';
import type { Message } from '../../../src/core/message.js';
import { type Fixture, fixture, newServer } from './support.js';

/**
 * `maxConnectionsPerPeer`: one client address holding the cap gets its next connections reset at
 * accept (counted in `<name>/stats`, reported once per window on `<name>/error`), while another
 * address is served. The guest-scale version (20,000 connections through the portal) is
 * test/apps/portal/hostile.lab.test.ts.
 */
const open = (port: number, localAddress = '127.0.0.1'): Promise<Socket> =>
  new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, localAddress }, () => resolve(s));
    s.once('error', reject);
  });

/** What happens to a connection: the server resets it, or it stays open (`ms` later). */
const fate = (s: Socket, ms = 300): Promise<'reset' | 'closed' | 'open'> =>
  new Promise((resolve) => {
    const t = setTimeout(() => resolve('open'), ms);
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      resolve(e.code === 'ECONNRESET' ? 'reset' : 'closed');
    });
    s.once('close', () => {
      clearTimeout(t);
      resolve('closed');
    });
  });

/** A connection that is expected to be refused: its fate from the start (the reset may beat 'connect'). */
const attempt = (port: number, ms = 300): Promise<string> =>
  new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    const t = setTimeout(() => {
      s.destroy();
      resolve('open');
    }, ms);
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      resolve(e.code === 'ECONNRESET' ? 'reset' : String(e.code));
    });
    s.once('close', () => {
      clearTimeout(t);
      resolve('closed');
    });
  });

const get = (s: Socket): Promise<string> =>
  new Promise((resolve) => {
    let text = '';
    s.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('\r\n\r\n') && text.endsWith('ok')) resolve(text);
    });
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  });

describe('HTTP server: per-peer connection cap', () => {
  let f: Fixture;
  const sockets: Socket[] = [];
  beforeEach(() => {
    f = fixture();
  });
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await f.close();
  });

  it('resets connections over the cap at accept, serves other addresses, counts and reports once', async () => {
    const errors: Message[] = [];
    f.bus.append('/capped/error', (m) => {
      errors.push(m);
    });
    f.bus.append('/capped/request', (m) => {
      f.bus.post(`${m.str('clientname')}/response`, { code: 200, data: 'ok' });
      return STOP;
    });
    const port = await newServer(f.bus, '/capped', { maxConnectionsPerPeer: 5 });
    for (let i = 0; i < 5; i++) sockets.push(await open(port));
    expect(await Promise.all([0, 1, 2].map(() => attempt(port)))).toEqual(['reset', 'reset', 'reset']);
    // the five held ones still work
    expect(await get(sockets[0]!)).toMatch(/^HTTP\/1\.1 200 OK/);
    // another address is not this peer's business
    const other = await open(port, '127.0.0.2');
    sockets.push(other);
    expect(await get(other)).toMatch(/^HTTP\/1\.1 200 OK/);
    const stats = await f.bus.request('/capped/stats', {});
    expect(stats.int('refused-cap')).toBe(3);
    expect(stats.int('connections')).toBe(6);
    expect(stats.int('peers')).toBe(2);
    expect(stats.int('max-per-peer')).toBe(5);
    expect(stats.int('accepted')).toBe(9);
    // one report for the three refusals (the next one comes after the window, with the count)
    await new Promise((r) => setTimeout(r, 50));
    expect(errors.length).toBe(1);
    expect(errors[0]!.str('code')).toBe('ECONNCAP');
    expect(errors[0]!.str('peerhost')).toBe('127.0.0.1');
    expect(errors[0]!.str('error')).toMatch(/holds 5 connections \(maxConnectionsPerPeer 5\)/);
    // one of the five goes: the peer may connect again
    const gone = fate(sockets[1]!);
    sockets[1]!.destroy();
    await gone;
    await new Promise((r) => setTimeout(r, 50));
    const again = await open(port);
    sockets.push(again);
    expect(await fate(again, 200)).toBe('open');
  });

  it('no cap by default; a bad cap is EBADTUPLE', async () => {
    const port = await newServer(f.bus, '/uncapped');
    for (let i = 0; i < 40; i++) sockets.push(await open(port));
    expect(await fate(sockets[39]!, 100)).toBe('open');
    expect((await f.bus.request('/uncapped/stats', {})).int('refused-cap')).toBe(0);
    const r = await f.bus.request('/system/http/server/new', { name: '/bad', maxConnectionsPerPeer: -1 });
    expect(r.str('code')).toBe('EBADTUPLE');
  });
});

/**
 * The daemon does what docs/wire-protocol.md says, frame by frame, for a client written from
 * the doc alone (raw frames here, nothing from the TypeScript client).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import type { Message } from '../../src/core/message.js';
import { attachClient, serveDaemon } from '../../src/ipc/daemon.js';
import { F } from '../../src/ipc/wire.js';
import { cleanup, tempDir } from '../support/daemons.js';
import { until } from '../support/wait.js';
import { type RawPeer, rawPeer } from './fixtures/raw.js';

let dir: string;
let bus: Bus;
let close: () => Promise<void>;
const errors: Message[] = [];

beforeAll(async () => {
  dir = tempDir();
  bus = new Bus({ name: 'wire' });
  bus.append('/echo', function echo(m, ctx) {
    if (ctx.replyTo) void ctx.reply(m.without('reply-to'));
  });
  bus.append('/count', function count() {});
  bus.append('/later', async function later() {
    await new Promise((r) => setTimeout(r, 100));
  });
  bus.append('/system/error', function collect(m) {
    errors.push(m);
  });
  const d = await serveDaemon(bus, { dir, signals: false });
  close = async () => {
    await d.close();
    await bus.close();
  };
});
afterAll(async () => {
  await close();
  cleanup(dir);
});

function peer(name = 'raw'): Promise<RawPeer> {
  return rawPeer(`${dir}/wire.sock`, { hello: name });
}
const result = (id: number) => (f: unknown[]) => f[0] === F.RESULT && f[1] === id;
const answer = (id: number) => (f: unknown[]) => (f[0] === F.OK || f[0] === F.ERROR) && f[1] === id;

/** 0xcf (uint64) or 0xd3 (int64) followed by the big-endian value. */
function wide(tag: 0xcf | 0xd3, v: bigint): Buffer {
  const b = Buffer.alloc(9);
  b[0] = tag;
  if (tag === 0xcf) b.writeBigUInt64BE(v, 1);
  else b.writeBigInt64BE(v, 1);
  return b;
}
function frameBytes(...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}
const str = (s: string): Buffer => Buffer.concat([Buffer.from([0xa0 | s.length]), Buffer.from(s)]);

describe('id 0: one-way requests', () => {
  it('a one-way request read before a bad frame is carried out, its reply written, before the ERROR and the close', async () => {
    const p = await peer('early');
    p.send(
      [
        F.SEND,
        0,
        '/echo',
        [
          ['q', 0, 'first'],
          ['reply-to', 0, 'early:/system/reply/1'],
        ],
      ],
      [99, 1],
    );
    await p.closed;
    const reply = p.frames.findIndex((f) => f[0] === F.SEND && f[2] === '/system/reply/1');
    const error = p.frames.findIndex((f) => f[0] === F.ERROR && f[1] === 0);
    expect(p.frames[reply]).toEqual([F.SEND, 0, '/system/reply/1', [['q', 0, 'first']]]);
    expect(String(p.frames[error]?.[3])).toMatch(/unknown frame type 99/);
    expect(reply).toBeLessThan(error);
  });
  it('a bad one-way request is not answered; its error goes to /system/error and the connection stays', async () => {
    errors.length = 0;
    const p = await peer('oneway');
    p.send(
      [F.SEND, 0, 'no-slash', []],
      [F.SEND, 0, '/echo', [['a', 1, 'x']]],
      [F.LISTEN, 0, '/x', 1, [], 'append', 0, 'continue', 'n'],
      [F.SEND, 7, '/count', []],
    );
    await p.next(result(7), 'the RESULT of the request after them');
    expect(p.frames.filter((f) => f[0] === F.ERROR)).toEqual([]);
    await until(() => errors.length === 3, 'three messages on /system/error');
    expect(errors.map((m) => [m.str('mailbox'), m.str('code'), m.str('frame')])).toEqual([
      ['no-slash', 'EBADPATH', 'SEND'],
      ['/echo', 'EPROTO', 'SEND'],
      ['/x', 'EPROTO', 'LISTEN'],
    ]);
    expect(errors[0]!.str('peer')).toBe(`oneway[pid ${process.pid}]`);
    expect(errors[2]!.str('error')).toBe(
      'LISTEN frame: id 0 is for a SEND that wants no answer; this request needs an id > 0',
    );
    expect(p.isClosed()).toBe(false);
    p.sock.destroy();
  });
});

describe('integers: any MessagePack encoding of a value that fits', () => {
  it('frame-level ints written as uint64/int64 are read (type, id, lid, timeout)', async () => {
    const p = await peer('wide');
    // SEND [1, 7, "/count", []] with type and id as 64-bit ints
    p.send(
      frameBytes(Buffer.from([0x94]), wide(0xcf, 1n), wide(0xd3, 7n), str('/count'), Buffer.from([0x90])),
    );
    await p.next(result(7), 'RESULT 7');
    // LISTEN [3, 8, "/w", 5, [], "append", 250, "stop", "w"] with id, lid and timeout as uint64
    p.send(
      frameBytes(
        Buffer.from([0x99, 0x03]),
        wide(0xcf, 8n),
        str('/w'),
        wide(0xcf, 5n),
        Buffer.from([0x90]),
        str('append'),
        wide(0xcf, 250n),
        str('stop'),
        str('w'),
      ),
    );
    expect((await p.next(answer(8), 'LISTEN answer'))[0]).toBe(F.OK);
    expect(bus.mailbox('/w')?.listeners[0]).toMatchObject({ timeout: 250, onTimeout: 'stop' });
    p.sock.destroy();
  });

  it('an int tuple of 2^63 (uint64) is refused: ints are signed 64-bit', async () => {
    const p = await peer('big');
    // SEND [1, 9, "/count", [["n", 1, 2^63]]]
    p.send(
      frameBytes(
        Buffer.from([0x94, 0x01, 0x09]),
        str('/count'),
        Buffer.from([0x91, 0x93]),
        str('n'),
        Buffer.from([0x01]),
        wide(0xcf, 2n ** 63n),
      ),
    );
    const err = await p.next(answer(9), 'ERROR 9');
    expect(err).toEqual([
      F.ERROR,
      9,
      'EPROTO',
      '/count: tuple "n" holds 9223372036854775808, outside the signed 64-bit range of an int',
    ]);
    p.send([F.SEND, 10, '/count', [['n', 1, 2n ** 63n - 1n]]]);
    await p.next(result(10), 'RESULT 10');
    p.sock.destroy();
  });

  it('a negative id is a connection error; a negative or too long timeout is an error for that LISTEN', async () => {
    const p = await peer('neg');
    p.send(
      [F.LISTEN, 1, '/n', 1, [], 'append', -5, 'continue', 'n'],
      [F.LISTEN, 2, '/n', 1, [], 'append', 2 ** 31, 'continue', 'n'],
    );
    expect(await p.next(answer(1), 'ERROR 1')).toEqual([
      F.ERROR,
      1,
      'EPROTO',
      'LISTEN frame: field timeout must be an integer from 0 to 2147483647, got -5',
    ]);
    expect((await p.next(answer(2), 'ERROR 2'))[2]).toBe('EPROTO');
    p.send([F.SEND, -1, '/count', []]);
    await p.closed;
    expect(p.frames.find((f) => f[0] === F.ERROR && f[1] === 0)).toEqual([
      F.ERROR,
      0,
      'EPROTO',
      'SEND frame: field id must be an integer from 0 to 9007199254740991, got -1',
    ]);
  });
});

describe('LISTEN fields', () => {
  it('onTimeout other than "continue", "stop" or nil is refused: a typo must not turn fail-closed into fail-open', async () => {
    const p = await peer('typo');
    p.send(
      [F.LISTEN, 1, '/t', 1, [], 'append', 100, 'STOP', 'a'],
      [F.LISTEN, 2, '/t', 2, [], 'append', 100, 'maybe', 'b'],
      [F.LISTEN, 3, '/t', 3, [], 'append', 100, null, 'c'],
    );
    expect(await p.next(answer(1), 'answer 1')).toEqual([
      F.ERROR,
      1,
      'EPROTO',
      'LISTEN frame: onTimeout must be "continue" or "stop", got "STOP"',
    ]);
    expect((await p.next(answer(2), 'answer 2'))[0]).toBe(F.ERROR);
    expect((await p.next(answer(3), 'answer 3'))[0]).toBe(F.OK);
    expect(bus.mailbox('/t')?.listeners.map((l) => [l.name, l.onTimeout])).toEqual([['c', 'continue']]);
    p.sock.destroy();
  });
});

describe('a malformed frame', () => {
  it('the requests before it in the same read get their RESULT, then ERROR id 0, then the close', async () => {
    const p = await peer('broken');
    p.send(
      [F.SEND, 3, '/later', []],
      [F.SEND, 4, '/count', []],
      [F.SEND, 0, '/count', []],
      [F.SEND, 6, '/echo', [['reply-to', 0, 'broken:/system/reply/1']]],
      Buffer.from([0, 0, 0, 2, 0xc1, 0xc1]),
      [F.SEND, 5, '/count', []],
    );
    await p.closed;
    expect(p.frames.slice(1).map((f) => [f[0], f[1]])).toEqual([
      [F.RESULT, 4],
      [F.SEND, 0], // the reply to request 6, then its RESULT
      [F.RESULT, 6],
      [F.RESULT, 3],
      [F.ERROR, 0],
    ]);
    expect(p.frames[4]?.slice(0, 4)).toEqual([F.RESULT, 3, true, 1]);
    expect(p.frames[5]?.slice(0, 3)).toEqual([F.ERROR, 0, 'EPROTO']);
  });
});

describe('reply-to and replies', () => {
  it('a reply-to the client forgot to qualify is an error, not a reply that vanishes', async () => {
    const p = await peer('forgot');
    p.send([F.SEND, 1, '/echo', [['reply-to', 0, '/system/reply/1']]]);
    expect(await p.next(answer(1), 'ERROR 1')).toEqual([
      F.ERROR,
      1,
      'EPROTO',
      'reply-to "/system/reply/1" is a bare path: the sender must name itself (forgot:/system/reply/1), see docs/wire-protocol.md',
    ]);
    p.sock.destroy();
  });

  it('a reply arrives as SEND id 0; a SEND to another mailbox of the client carries an id to answer', async () => {
    const p = await peer('asker');
    p.send([
      F.SEND,
      9,
      '/echo',
      [
        ['q', 0, 'x'],
        ['reply-to', 0, 'asker:/system/reply/1'],
      ],
    ]);
    await p.next(result(9), 'RESULT 9');
    expect(p.frames.find((f) => f[0] === F.SEND)).toEqual([F.SEND, 0, '/system/reply/1', [['q', 0, 'x']]]);
    p.send([
      F.SEND,
      10,
      '/echo',
      [
        ['q', 0, 'y'],
        ['reply-to', 0, 'asker:/inbox'],
      ],
    ]);
    const s = await p.next((f) => f[0] === F.SEND && f[2] === '/inbox', 'the SEND to /inbox');
    expect(s[1]).toBeGreaterThan(0);
    p.send([F.RESULT, s[1], true, 1, false, null, [], 0]);
    await p.next(result(10), 'RESULT 10');
    p.sock.destroy();
  });

  it('a listener error reaches the sender as "NAME: remote listener in PEER[pid N]: TEXT"', async () => {
    const p = await peer('glue');
    p.send([F.LISTEN, 1, '/chain2', 7, [['app', 0, 'glue']], 'prepend', 0, 'continue', 'ldap']);
    await p.next(answer(1), 'OK');
    const other = new Bus({ name: 'other' });
    attachClient(other, { dir });
    const verdicts: unknown[] = [
      ['continue', 'LDAP down'],
      ['maybe', null],
      ['stop', null],
    ];
    const seen: unknown[] = [];
    for (const [verdict, error] of verdicts as [string, string | null][]) {
      const sent = other.send('wire:/chain2', {});
      const d = await p.next((f) => f[0] === F.DELIVER && !seen.includes(f[1]), 'a DELIVER');
      seen.push(d[1]);
      expect(d.slice(2, 4)).toEqual([7, '/chain2']);
      p.send([F.VERDICT, d[1], verdict, error]);
      const r = await sent;
      if (verdict === 'stop') expect(r.stopped).toBe(true);
      else
        expect(r.errors.map((e) => e.error)).toEqual([
          verdict === 'maybe'
            ? `ldap: remote listener in glue[pid ${process.pid}]: verdict "maybe" is not "stop" or "continue"`
            : `ldap: remote listener in glue[pid ${process.pid}]: LDAP down`,
        ]);
    }
    await other.close(100);
    p.sock.destroy();
  });
});

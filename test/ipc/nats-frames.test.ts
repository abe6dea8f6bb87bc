import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { MetanetError } from '../../src/core/errors.js';
import { Message } from '../../src/core/message.js';
import {
  deliverFrame,
  listenFrame,
  parseDeliver,
  parseListen,
  parseSend,
  parseUnlisten,
  resultFrame,
  resultFromFrame,
  sendFrame,
  unlistenFrame,
  unpack,
} from '../../src/ipc/nats/frames.js';
import { checkPrefix, Subjects, token, untoken } from '../../src/ipc/nats/subjects.js';
import { F } from '../../src/ipc/wire.js';

const s = new Subjects('metanet');

describe('NATS subjects', () => {
  it('carry host and daemon as tokens, dots written ~', () => {
    expect(s.send('ap2.lan', 'dhcpd')).toBe('metanet.ap2~lan.dhcpd.send');
    expect(s.listen('ap2', 'd.x')).toBe('metanet.ap2.d~x.listen');
    expect(s.deliver('m1', 'glue', 'ABC', 7)).toBe('metanet.m1.glue.l.ABC.7');
    expect(s.parseUp(s.up('ap2.lan', 'dhcpd'))).toEqual({ host: 'ap2.lan', daemon: 'dhcpd' });
    expect(s.parseUp('metanet.a.b.send')).toBeUndefined();
    expect(new Subjects('site.one').parseUp('site.one.h.d.up')).toEqual({ host: 'h', daemon: 'd' });
  });

  it('round-trip every valid name', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/), (n) => {
        expect(token(n)).not.toMatch(/[.*>\s]/);
        expect(untoken(token(n))).toBe(n);
      }),
    );
  });

  it('refuse a bad prefix clearly', () => {
    expect(() => checkPrefix('a.*')).toThrow(/bad NATS subject prefix "a\.\*"/);
    expect(() => checkPrefix('')).toThrow(MetanetError);
  });
});

describe('NATS payloads', () => {
  it('round-trip SEND, LISTEN, UNLISTEN, DELIVER and RESULT', () => {
    const m = Message.from({ a: 1, l: { b: 'c' } });
    expect(parseSend(unpack(sendFrame('/x/y', m), [F.SEND]))).toEqual({ path: '/x/y', msg: m });
    expect(parseDeliver(unpack(deliverFrame(3, '/x', m), [F.DELIVER]))).toEqual({ path: '/x', msg: m });
    expect(parseUnlisten(unpack(unlistenFrame(3, 'a.b'), [F.UNLISTEN]))).toBe('a.b');
    const l = {
      path: '/p',
      lid: 4,
      identity: Message.from({ app: 'x' }),
      position: { before: Message.from({ stock: true }) },
      timeout: 200,
      onTimeout: 'stop' as const,
      name: 'guard',
      subject: 'metanet.h.d.l.I.4',
      origin: 'h/d[pid 1]',
    };
    expect(parseListen(unpack(listenFrame(l), [F.LISTEN]))).toEqual(l);
    const r = resultFromFrame(
      '/p',
      unpack(
        resultFrame({
          mailbox: '/p',
          delivered: true,
          listeners: 2,
          stopped: false,
          errors: [],
          timedOut: [],
        }),
        [F.RESULT],
      ),
    );
    expect(r).toMatchObject({ delivered: true, listeners: 2, stopped: false });
  });

  it('a frame of the wrong type on a subject is refused naming both', () => {
    expect(() => unpack(sendFrame('/x', Message.empty), [F.LISTEN])).toThrow(
      /expected LISTEN on this subject, got SEND/,
    );
  });

  const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
  const parsers = [
    (b: Uint8Array) => parseSend(unpack(b, [F.SEND])),
    (b: Uint8Array) => parseListen(unpack(b, [F.LISTEN])),
    (b: Uint8Array) => parseUnlisten(unpack(b, [F.UNLISTEN])),
    (b: Uint8Array) => parseDeliver(unpack(b, [F.DELIVER])),
  ];
  const onlyMetanetErrors = (b: Uint8Array): void => {
    for (const p of parsers)
      try {
        p(b);
      } catch (e) {
        if (!(e instanceof MetanetError)) throw e;
        expect(e.message.length).toBeGreaterThan(0);
      }
  };

  it('decoders fail only with a MetanetError on random bytes (fuzz)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), onlyMetanetErrors), { numRuns: 2000 });
  });

  it('decoders fail only with a MetanetError on random MessagePack frames (fuzz)', () => {
    const value = fc.oneof(
      fc.string(),
      fc.integer(),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.uint8Array({ maxLength: 4 }),
      fc.array(fc.oneof(fc.string(), fc.integer(), fc.constant(null)), { maxLength: 4 }),
      fc.array(fc.tuple(fc.string(), fc.integer({ min: -1, max: 8 }), fc.anything()), { maxLength: 3 }),
    );
    const frame = fc.tuple(fc.integer({ min: 0, max: 12 }), fc.array(value, { maxLength: 11 }));
    fc.assert(
      fc.property(frame, ([t, rest]) => onlyMetanetErrors(packr.pack([t, ...rest]))),
      { numRuns: 3000 },
    );
  });
});

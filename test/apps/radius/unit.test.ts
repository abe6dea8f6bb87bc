import { createHash, createHmac } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import type { GatewayFacts } from '../../../src/apps/app.js';
import { REASONS } from '../../../src/apps/portal/lifecycle.js';
import { TERMINATE_CAUSES, terminateCause } from '../../../src/apps/radius/accounting.js';
import { radiusApp } from '../../../src/apps/radius/app.js';
import {
  A,
  CHILLI,
  Code,
  ErrorCause,
  TerminateCause,
  VENDOR,
  WISPR,
} from '../../../src/apps/radius/attributes.js';
import { limitsFrom, replyMessage, requestAttrs } from '../../../src/apps/radius/auth.js';
import { RadiusClient } from '../../../src/apps/radius/client.js';
import { formatMac, MAC_FORMATS, parseConfig, RadiusConfigSchema } from '../../../src/apps/radius/config.js';
import { DaeServer, type DaeSession } from '../../../src/apps/radius/dae.js';
import {
  type Attr,
  attr,
  chapPassword,
  decode,
  encode,
  find,
  hidePassword,
  intOf,
  maOffset,
  type Packet,
  revealPassword,
  signRequest,
  signResponse,
  textOf,
  verifyRequest,
  verifyResponse,
} from '../../../src/apps/radius/packet.js';
import { AcctQueue, type Queued } from '../../../src/apps/radius/queue.js';
import { isMetanetError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/log.js';

const dir = mkdtempSync(join(tmpdir(), 'radius-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const md5 = (...b: (Buffer | string)[]): Buffer => {
  const h = createHash('md5');
  for (const x of b) h.update(x);
  return h.digest();
};

/** Any attribute the codec must carry unchanged: standard ones (not 26) and vendor ones. */
const anyAttr: fc.Arbitrary<Attr> = fc.oneof(
  fc.record({
    type: fc
      .integer({ min: 1, max: 255 })
      .filter((t) => t !== A.VendorSpecific && t !== A.MessageAuthenticator),
    value: fc.uint8Array({ maxLength: 253 }).map((b) => Buffer.from(b)),
  }),
  fc.record({
    type: fc.integer({ min: 0, max: 255 }),
    vendor: fc.integer({ min: 1, max: 0xffffff }),
    value: fc.uint8Array({ maxLength: 247 }).map((b) => Buffer.from(b)),
  }),
);
const anyPacket: fc.Arbitrary<Packet> = fc.record({
  code: fc.integer({ min: 0, max: 255 }),
  id: fc.integer({ min: 0, max: 255 }),
  authenticator: fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b)),
  attrs: fc.array(anyAttr, { maxLength: 12 }),
});
const plain = (p: Packet) => ({
  ...p,
  attrs: p.attrs.map((a) => ({ type: a.type, vendor: a.vendor, value: [...a.value] })),
  authenticator: [...p.authenticator],
});

describe('codec', () => {
  it('round-trips any packet: encode then decode gives it back', () => {
    fc.assert(
      fc.property(anyPacket, (p) => {
        const b = encode(p);
        expect(b.length).toBe(b.readUInt16BE(2));
        expect(plain(decode(b))).toEqual(plain(p));
      }),
    );
  });

  it('RFC 2865 §7.1: the Access-Request example, its hidden password and the Access-Accept', () => {
    const secret = 'xyzzy5461';
    const request = hex(`01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb 98 f4 22 7a
      01 06 6e 65 6d 6f 02 12 0d be 70 8d 93 d4 13 ce 31 96 e4 3f 78 2a 0a ee
      04 06 c0 a8 01 10 05 06 00 00 00 03`);
    const p = decode(request);
    expect(p.code).toBe(Code.AccessRequest);
    expect(textOf(p, A.UserName)).toBe('nemo');
    expect(revealPassword(find(p, A.UserPassword)!.value, secret, p.authenticator)).toBe('arctangent');
    expect(hidePassword('arctangent', secret, p.authenticator)).toEqual(find(p, A.UserPassword)!.value);
    expect(encode(p)).toEqual(request);
    const accept = hex(`02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf 9b 55 e0 b2
      06 06 00 00 00 01 0f 06 00 00 00 00 0e 06 c0 a8 01 03`);
    expect(verifyResponse(accept, p.authenticator, secret)).toEqual({ ok: true });
    expect(verifyResponse(accept, p.authenticator, 'wrong')).toMatchObject({ ok: false });
    expect(verifyResponse(accept, p.authenticator, secret, { requireMessageAuthenticator: true })).toEqual({
      ok: false,
      why: 'no Message-Authenticator',
    });
    const signed = signResponse(
      { ...decode(accept), authenticator: Buffer.alloc(16) },
      p.authenticator,
      secret,
    );
    expect(signed).toEqual(accept);
  });

  it('vendor attributes: one per Vendor-Specific out; several in one, or an odd layout, come in whole', () => {
    const p: Packet = {
      code: 2,
      id: 1,
      authenticator: Buffer.alloc(16),
      attrs: [
        attr.int(CHILLI.MaxTotalOctets, 5_000_000, VENDOR.ChilliSpot),
        attr.int(WISPR.BandwidthMaxUp, 1e6, VENDOR.WISPr),
      ],
    };
    const b = encode(p);
    expect(b.subarray(20, 32).toString('hex')).toBe('1a0c000038df0306004c4b40');
    // Two sub-attributes in one Vendor-Specific (RFC 2865 allows it).
    const two = hex('1a 12 00 00 38 df 01 06 00 00 00 0a 02 06 00 00 00 14');
    const d = decode(Buffer.concat([hex('02 01 00 26'), Buffer.alloc(16), two]));
    expect(intOf(d, CHILLI.MaxInputOctets, VENDOR.ChilliSpot)).toBe(10);
    expect(intOf(d, CHILLI.MaxOutputOctets, VENDOR.ChilliSpot)).toBe(20);
    const odd = hex('1a 09 00 00 38 df 01 09 00');
    const o = decode(Buffer.concat([hex('02 01 00 1d'), Buffer.alloc(16), odd]));
    expect(o.attrs).toEqual([{ type: A.VendorSpecific, value: odd.subarray(2) }]);
  });

  it('refuses what is malformed, with EPROTO only', () => {
    const head = (len: number) =>
      Buffer.concat([Buffer.from([1, 1, len >> 8, len & 0xff]), Buffer.alloc(16)]);
    for (const [bytes, why] of [
      [Buffer.alloc(19), /shorter than the header/],
      [head(19), /length field 19/],
      [head(4097), /length field 4097/],
      [head(30), /beyond the 20 bytes/],
      [Buffer.concat([head(22), Buffer.from([1, 1])]), /has length 1/],
      [Buffer.concat([head(23), Buffer.from([1, 5, 0])]), /runs past/],
      [Buffer.concat([head(21), Buffer.from([1])]), /cut off/],
      [Buffer.concat([head(24), Buffer.from([80, 4, 0, 0])]), /Message-Authenticator of 2 bytes/],
    ] as const) {
      let err: unknown;
      try {
        decode(bytes);
      } catch (e) {
        err = e;
      }
      expect(isMetanetError(err, 'EPROTO'), String(err)).toBe(true);
      expect((err as Error).message).toMatch(why);
    }
  });

  it('fuzz: any bytes decode or throw EPROTO, nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), (bytes, fixLength) => {
        const b = Buffer.from(bytes);
        if (fixLength && b.length >= 4) b.writeUInt16BE(b.length, 2);
        try {
          const p = decode(b);
          expect(p.authenticator.length).toBe(16);
        } catch (e) {
          expect(isMetanetError(e, 'EPROTO'), String(e)).toBe(true);
        }
      }),
      { numRuns: 5000 },
    );
  });
});

describe('authenticators', () => {
  const secret = 's3cret';

  it('Access-Request: Message-Authenticator is HMAC-MD5 over the packet with the random authenticator', () => {
    const auth = Buffer.alloc(16, 7);
    const b = signRequest(
      { code: Code.AccessRequest, id: 9, authenticator: auth, attrs: [attr.str(A.UserName, 'bob')] },
      secret,
      {
        messageAuthenticator: true,
      },
    );
    const o = maOffset(b);
    expect(o).toBeGreaterThan(20);
    const copy = Buffer.from(b);
    copy.fill(0, o, o + 16);
    expect(b.subarray(o, o + 16)).toEqual(createHmac('md5', secret).update(copy).digest());
    expect(b.subarray(4, 20)).toEqual(auth);
  });

  it('Accounting-, Disconnect-, CoA-Request: Message-Authenticator over zeros, then the MD5 Request Authenticator', () => {
    for (const code of [Code.AccountingRequest, Code.DisconnectRequest, Code.CoaRequest]) {
      const b = signRequest(
        { code, id: 3, authenticator: Buffer.alloc(16, 1), attrs: [attr.str(A.AcctSessionId, 'X')] },
        secret,
        {
          messageAuthenticator: true,
        },
      );
      const zeroed = Buffer.from(b);
      zeroed.fill(0, 4, 20);
      expect(b.subarray(4, 20)).toEqual(md5(zeroed, secret));
      const o = maOffset(b);
      const z = Buffer.from(zeroed);
      z.fill(0, o, o + 16);
      expect(b.subarray(o, o + 16)).toEqual(createHmac('md5', secret).update(z).digest());
      expect(verifyRequest(b, secret, { requireMessageAuthenticator: true })).toEqual({ ok: true });
      expect(verifyRequest(b, 'other')).toMatchObject({ ok: false });
      const tampered = Buffer.from(b);
      tampered[tampered.length - 1]! ^= 1;
      expect(verifyRequest(tampered, secret)).toMatchObject({ ok: false });
    }
  });

  it('responses: a forged or altered answer, or one without Message-Authenticator when required, is refused', () => {
    const reqAuth = Buffer.alloc(16, 5);
    const answer = signResponse(
      { code: Code.AccessAccept, id: 1, authenticator: reqAuth, attrs: [attr.int(A.SessionTimeout, 60)] },
      reqAuth,
      secret,
      { messageAuthenticator: true },
    );
    expect(verifyResponse(answer, reqAuth, secret, { requireMessageAuthenticator: true })).toEqual({
      ok: true,
    });
    expect(verifyResponse(answer, Buffer.alloc(16, 6), secret)).toMatchObject({ ok: false });
    // BlastRADIUS: attributes changed and the Response Authenticator recomputed without the secret
    // is impossible; with a wrong one it is caught by either check.
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: answer.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        (i, x) => {
          const b = Buffer.from(answer);
          b[i]! ^= x;
          expect(verifyResponse(b, reqAuth, secret).ok).toBe(false);
        },
      ),
    );
    const noMa = signResponse(
      { code: Code.AccessAccept, id: 1, authenticator: reqAuth, attrs: [] },
      reqAuth,
      secret,
    );
    expect(verifyResponse(noMa, reqAuth, secret)).toEqual({ ok: true });
    expect(verifyResponse(noMa, reqAuth, secret, { requireMessageAuthenticator: true })).toMatchObject({
      ok: false,
    });
  });

  it('PAP hides and reveals any password up to 128 bytes; CHAP is ident + MD5(ident, password, challenge)', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 40 }).filter((s) => !s.includes('\0') && Buffer.byteLength(s) <= 128),
        fc.string({ minLength: 1 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        (pw, sec, ra) => {
          const auth = Buffer.from(ra);
          const h = hidePassword(pw, sec, auth);
          expect(h.length % 16).toBe(0);
          expect(h.length).toBeGreaterThanOrEqual(16);
          expect(revealPassword(h, sec, auth)).toBe(pw);
        },
      ),
    );
    const challenge = Buffer.alloc(16, 0xab);
    const c = chapPassword(42, 'secret', challenge);
    expect(c.length).toBe(17);
    expect(c[0]).toBe(42);
    expect(c.subarray(1)).toEqual(md5(Buffer.from([42]), 'secret', challenge));
  });
});

describe('attribute mapping', () => {
  const accept = (attrs: Attr[]): Packet => ({
    code: Code.AccessAccept,
    id: 0,
    authenticator: Buffer.alloc(16),
    attrs,
  });

  it('Access-Accept → the portal reply tuples', () => {
    const p = accept([
      attr.int(A.SessionTimeout, 120),
      attr.int(A.IdleTimeout, 60),
      attr.int(CHILLI.MaxInputOctets, 1000, VENDOR.ChilliSpot),
      attr.int(CHILLI.MaxOutputOctets, 5, VENDOR.ChilliSpot),
      attr.int(CHILLI.MaxOutputGigawords, 2, VENDOR.ChilliSpot),
      attr.int(CHILLI.MaxTotalGigawords, 1, VENDOR.ChilliSpot),
      attr.int(WISPR.BandwidthMaxUp, 1_000_000, VENDOR.WISPr),
      attr.int(CHILLI.BandwidthMaxDown, 2048, VENDOR.ChilliSpot),
      attr.str(A.ReplyMessage, 'Hello'),
      attr.str(A.ReplyMessage, 'there'),
    ]);
    expect(limitsFrom(p)).toEqual({
      'session-timeout': 120,
      'idle-timeout': 60,
      'quota-up': 1000,
      'quota-down': 2 * 2 ** 32 + 5,
      'quota-total': 2 ** 32,
      'rate-up': 1_000_000,
      'rate-down': 2_048_000,
    });
    expect(limitsFrom(p, true)).toMatchObject({ 'quota-up': 2 * 2 ** 32 + 5, 'quota-down': 1000 });
    expect(replyMessage(p)).toBe('Hello there');
  });

  it('Session-Timeout 0 is the portal default; huge timeouts are capped; WISPr wins over ChilliSpot', () => {
    expect(limitsFrom(accept([attr.int(A.SessionTimeout, 0)]))).toEqual({});
    expect(
      limitsFrom(accept([attr.int(A.SessionTimeout, 0xffffffff), attr.int(A.IdleTimeout, 0xffffffff)])),
    ).toEqual({
      'session-timeout': 4233600,
      'idle-timeout': 4233600,
    });
    expect(
      limitsFrom(
        accept([
          attr.int(CHILLI.BandwidthMaxUp, 64, VENDOR.ChilliSpot),
          attr.int(WISPR.BandwidthMaxUp, 1, VENDOR.WISPr),
        ]),
      ),
    ).toEqual({ 'rate-up': 1 });
    // A malformed integer (not 4 bytes) is ignored, not misread.
    expect(limitsFrom(accept([{ type: A.SessionTimeout, value: Buffer.from([1, 2]) }]))).toEqual({});
  });

  it('Acct-Terminate-Cause for every logout reason of the portal', () => {
    for (const r of REASONS) expect(TERMINATE_CAUSES[r], r).toBeDefined();
    expect(terminateCause('idle')).toBe(TerminateCause.IdleTimeout);
    expect(terminateCause('session')).toBe(TerminateCause.SessionTimeout);
    expect(terminateCause('operator')).toBe(TerminateCause.AdminReset);
    expect(terminateCause('guest')).toBe(TerminateCause.UserRequest);
    expect(terminateCause('lease')).toBe(TerminateCause.LostCarrier);
    expect(terminateCause('something else')).toBe(TerminateCause.NasRequest);
  });

  it('MAC formats (uspot mac_format) and the Access-Request attributes', () => {
    const out = MAC_FORMATS.map((f) => formatMac('2:A:bb:c:dd:0e', f));
    expect(out).toEqual([
      '020abb0cdd0e',
      '02-0a-bb-0c-dd-0e',
      '02:0a:bb:0c:dd:0e',
      '020ABB0CDD0E',
      '02-0A-BB-0C-DD-0E',
      '02:0A:BB:0C:DD:0E',
    ]);
    const c = parseConfig({
      nasIp: '10.0.0.1',
      servers: [{ host: '127.0.0.1', secret: 'x' }],
      nasIdentifier: 'cafe',
    });
    const attrs = requestAttrs(c, {
      ip: '10.0.0.23',
      macName: '02:0a:bb:0c:dd:0e',
      user: 'bob',
      sessionId: 'S1',
    });
    expect(textOf(attrs, A.UserName)).toBe('bob');
    expect(textOf(attrs, A.CallingStationId)).toBe('02:0a:bb:0c:dd:0e');
    expect(textOf(attrs, A.CalledStationId)).toBe('cafe');
    expect(textOf(attrs, A.NasIdentifier)).toBe('cafe');
    expect(find(attrs, A.NasIpAddress)?.value).toEqual(Buffer.from([10, 0, 0, 1]));
    expect(find(attrs, A.FramedIpAddress)?.value).toEqual(Buffer.from([10, 0, 0, 23]));
    expect(intOf(attrs, A.NasPortType)).toBe(19);
  });
});

describe('config', () => {
  it('names every bad field; defaults are fail-closed and BlastRADIUS-hard', () => {
    let err: unknown;
    try {
      parseConfig({
        nasIp: 'nope',
        servers: [],
        macFormat: 'xx',
        dae: { clients: [{ address: '1.2.3.4' }] },
      });
    } catch (e) {
      err = e;
    }
    expect(isMetanetError(err, 'ECONFIG')).toBe(true);
    const msg = (err as Error).message;
    for (const p of ['nasIp', 'servers', 'macFormat', 'dae.clients[0].secret']) expect(msg).toContain(p);
    const c = parseConfig({ nasIp: '10.0.0.1', servers: [{ host: 'radius.example', secret: 's' }] });
    expect(c).toMatchObject({
      failOpen: false,
      requireMessageAuthenticator: true,
      auth: 'pap',
      target: 'portal',
    });
    expect(c.servers[0]).toMatchObject({ authPort: 1812, acctPort: 1813 });
  });

  it('under metanet up: NAS-IP from the captive network, state in the gateway stateDir, target the portal', () => {
    const guest = {
      name: 'guest',
      role: 'guest' as const,
      device: 'br-guest',
      address: '10.20.0.1',
      prefix: 24,
      subnet: '10.20.0.0/24',
      captive: true,
    };
    const facts: GatewayFacts = {
      networks: [guest],
      served: [guest],
      captive: [guest],
      upstreamDns: ['192.0.2.53'],
      stateDir: '/var/lib/metanet',
      commandPrefix: [],
      enabled: new Set(['portal', 'radius']),
      portal: { address: '10.20.0.1', port: 8080 },
    };
    const section = radiusApp.section.parse({ servers: [{ host: '192.0.2.5', secret: 's' }], macAuth: true });
    const c = radiusApp.parse(radiusApp.fromGateway(facts, section));
    expect(c).toMatchObject({
      target: 'portal',
      nasIp: '10.20.0.1',
      stateDir: '/var/lib/metanet',
      macAuth: true,
    });
    expect(
      radiusApp.section.safeParse({ servers: [{ host: 'x', secret: 's' }], nasIp: '1.2.3.4' }).success,
    ).toBe(false);
  });

  it('docs/apps/radius.md lists every config field', () => {
    const doc = readFileSync(new URL('../../../docs/apps/radius.md', import.meta.url), 'utf8');
    for (const key of Object.keys(RadiusConfigSchema.shape)) expect(doc, key).toContain(`\`${key}\``);
    for (const key of ['host', 'authPort', 'acctPort', 'secret', 'address', 'port', 'clients'])
      expect(doc, key).toContain(`\`${key}\``);
    for (const r of REASONS) expect(doc, `reason ${r}`).toContain(`\`${r}\``);
  });
});

describe('accounting queue', () => {
  const q = (kind: Queued['kind'], sessionId: string, n = 0): Queued => ({
    kind,
    sessionId,
    created: n,
    attrs: [{ t: A.AcctSessionId, x: Buffer.from(sessionId).toString('hex') }],
  });

  it('keeps order on disk, replaces a session queued interims, drops the oldest past max, sends after a failure', async () => {
    const file = join(dir, 'queue.json');
    let up = false;
    const sent: string[] = [];
    const queue = new AcctQueue(
      file,
      4,
      30,
      async (x) => {
        if (!up) throw new Error('down');
        sent.push(`${x.kind}:${x.sessionId}`);
      },
      silentLogger,
    );
    queue.submit(q('start', 'A'));
    await queue.kick();
    expect(queue.waiting).toBe(true);
    queue.submit(q('interim', 'A', 1));
    queue.submit(q('interim', 'A', 2)); // replaces the first interim
    queue.submit(q('start', 'B'));
    expect(queue.list().map((x) => `${x.kind}:${x.sessionId}:${x.created}`)).toEqual([
      'start:A:0',
      'interim:A:2',
      'start:B:0',
    ]);
    queue.submit(q('stop', 'A')); // replaces A's interim
    queue.submit(q('start', 'C'));
    queue.submit(q('start', 'D')); // 5 > 4: start:A goes
    expect(queue.length).toBe(4);
    expect(queue.dropped).toBe(1);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    // A restart reads the same queue back.
    const again = new AcctQueue(file, 4, 30, async () => {}, silentLogger);
    expect(again.list().map((x) => `${x.kind}:${x.sessionId}`)).toEqual([
      'start:B',
      'stop:A',
      'start:C',
      'start:D',
    ]);
    await again.close();
    up = true;
    await new Promise((r) => setTimeout(r, 80));
    await queue.kick();
    expect(sent).toEqual(['start:B', 'stop:A', 'start:C', 'start:D']);
    expect(queue.length).toBe(0);
    expect(JSON.parse(readFileSync(file, 'utf8')).queue).toEqual([]);
    await queue.close();
  });
});

describe('client (against a scripted UDP server)', () => {
  /** A server on loopback that answers each request with `answer(packet)` (undefined: no answer). */
  const server = async (
    answer: (p: Packet) => Buffer | undefined,
  ): Promise<{ port: number; seen: number; close: () => void }> => {
    const s = dgram.createSocket('udp4');
    const state = { port: 0, seen: 0, close: () => s.close() };
    s.on('message', (raw, r) => {
      state.seen++;
      const out = answer(decode(raw));
      if (out) s.send(out, r.port, r.address);
    });
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    state.port = s.address().port;
    return state;
  };
  const accept = (p: Packet, secret: string, ma = true) =>
    signResponse(
      {
        code: Code.AccessAccept,
        id: p.id,
        authenticator: p.authenticator,
        attrs: [attr.int(A.SessionTimeout, 77)],
      },
      p.authenticator,
      secret,
      {
        messageAuthenticator: ma,
      },
    );

  it('retransmits, fails over, drops forged answers and answers without Message-Authenticator', async () => {
    let first = true;
    const flaky = await server((p) => {
      // Request checks: PAP hidden with this secret, Message-Authenticator present and right.
      expect(revealPassword(find(p, A.UserPassword)!.value, 'a', p.authenticator)).toBe('pw');
      expect(find(p, A.MessageAuthenticator)).toBeDefined();
      if (first) {
        first = false;
        return undefined; // lost: the client sends again
      }
      return accept(p, 'a');
    });
    const forger = await server((p) => accept(p, 'not-the-secret'));
    const bare = await server((p) => accept(p, 'c', false));
    const good = await server((p) => accept(p, 'd'));
    const client = new RadiusClient({
      servers: [
        { host: '127.0.0.1', authPort: flaky.port, acctPort: flaky.port, secret: 'a' },
        { host: '127.0.0.1', authPort: forger.port, acctPort: forger.port, secret: 'b' },
        { host: '127.0.0.1', authPort: bare.port, acctPort: bare.port, secret: 'c' },
        { host: '127.0.0.1', authPort: good.port, acctPort: good.port, secret: 'd' },
      ],
      timeoutMs: 100,
      retries: 1,
      requireMessageAuthenticator: true,
      log: silentLogger,
    });
    const spec = { code: Code.AccessRequest, attrs: [attr.str(A.UserName, 'u')], password: 'pw' };
    const a1 = await client.send('auth', spec);
    expect(a1.server).toBe(`127.0.0.1:${flaky.port}`);
    expect(a1.sends).toBe(2);
    expect(intOf(a1.packet, A.SessionTimeout)).toBe(77);
    flaky.close(); // down: ICMP unreachable → next at once; forged and bare answers are dropped
    const t0 = performance.now();
    const a2 = await client.send('auth', spec);
    expect(a2.server).toBe(`127.0.0.1:${good.port}`);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(client.stats.dropped).toBeGreaterThanOrEqual(4); // 2 forged + 2 bare
    expect(client.active('auth')).toBe(`127.0.0.1:${good.port}`);
    // Sticky: the next request goes to the good server first.
    const before = forger.seen;
    await client.send('auth', spec);
    expect(forger.seen).toBe(before);
    // Nobody left: ETIMEDOUT within the budget.
    good.close();
    const t1 = performance.now();
    await expect(client.send('auth', spec, { budgetMs: 150 })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    expect(performance.now() - t1).toBeLessThan(400);
    client.close();
    forger.close();
    bare.close();
  });
});

describe('DAE server', () => {
  const secret = 'dae-secret';
  const sessions: DaeSession[] = [
    { ip: '10.0.0.23', mac: '02:00:00:00:00:23', sessionId: 'S23', username: 'alice' },
    { ip: '10.0.0.24', mac: '02:00:00:00:00:24', sessionId: 'S24', username: 'bob' },
  ];
  const make = (opts: { requireMessageAuthenticator?: boolean } = {}) => {
    const out: string[] = [];
    const d = new DaeServer(
      {
        address: '127.0.0.1',
        port: 0,
        clients: [{ address: '127.0.0.1', secret }],
        requireMessageAuthenticator: opts.requireMessageAuthenticator ?? false,
      },
      {
        nasIp: '10.0.0.1',
        nasIdentifier: 'cafe',
        calledStationId: 'cafe',
        sessions: async () => sessions,
        logout: async (ip) => {
          out.push(ip);
          return true;
        },
        log: silentLogger,
      },
    );
    return { d, out };
  };
  const request = (code: number, attrs: Attr[], opts: { ma?: boolean; id?: number; sec?: string } = {}) =>
    signRequest({ code, id: opts.id ?? 7, authenticator: Buffer.alloc(16), attrs }, opts.sec ?? secret, {
      messageAuthenticator: opts.ma,
    });
  const answerOf = (raw: Buffer, ans: Buffer | undefined) => {
    expect(ans).toBeDefined();
    expect(verifyResponse(ans!, raw.subarray(4, 20), secret).ok).toBe(true);
    const p = decode(ans!);
    return { code: p.code, cause: intOf(p, A.ErrorCause), p };
  };

  it('Disconnect by address → logout, ACK with Proxy-State and Message-Authenticator echoed', async () => {
    const { d, out } = make();
    const raw = request(
      Code.DisconnectRequest,
      [
        attr.ip(A.FramedIpAddress, '10.0.0.23'),
        attr.str(A.ProxyState, 'px'),
        attr.int(A.EventTimestamp, Date.now() / 1000),
      ],
      { ma: true },
    );
    // A retransmission while the first is still being handled: one logout, the same answer.
    const [first, again] = await Promise.all([
      d.handle(raw, '127.0.0.1', 5000),
      d.handle(raw, '127.0.0.1', 5000),
    ]);
    expect(again).toEqual(first);
    const a = answerOf(raw, first);
    expect(a.code).toBe(Code.DisconnectAck);
    expect(a.cause).toBeUndefined();
    expect(textOf(a.p, A.ProxyState)).toBe('px');
    expect(find(a.p, A.MessageAuthenticator)).toBeDefined();
    expect(
      verifyResponse((await d.handle(raw, '127.0.0.1', 5000)) as Buffer, raw.subarray(4, 20), secret, {
        requireMessageAuthenticator: true,
      }).ok,
    ).toBe(true);
    expect(out).toEqual(['10.0.0.23']); // the duplicate got the same answer, not a second logout
  });

  it('by user, by session id, by MAC in any format; NAKs with the right Error-Cause', async () => {
    const { d, out } = make();
    const ask = async (code: number, attrs: Attr[], id: number) => {
      const raw = request(code, attrs, { id });
      return answerOf(raw, await d.handle(raw, '127.0.0.1', 5001));
    };
    expect((await ask(Code.DisconnectRequest, [attr.str(A.UserName, 'bob')], 1)).code).toBe(
      Code.DisconnectAck,
    );
    expect((await ask(Code.DisconnectRequest, [attr.str(A.AcctSessionId, 'S23')], 2)).code).toBe(
      Code.DisconnectAck,
    );
    expect(
      (await ask(Code.DisconnectRequest, [attr.str(A.CallingStationId, '02-00-00-00-00-24')], 3)).code,
    ).toBe(Code.DisconnectAck);
    expect(out).toEqual(['10.0.0.24', '10.0.0.23', '10.0.0.24']);
    const cases: [number, Attr[], number, number][] = [
      [
        Code.DisconnectRequest,
        [attr.ip(A.FramedIpAddress, '10.0.0.99')],
        Code.DisconnectNak,
        ErrorCause.SessionContextNotFound,
      ],
      [
        Code.DisconnectRequest,
        [attr.str(A.UserName, 'alice'), attr.ip(A.FramedIpAddress, '10.0.0.24')],
        Code.DisconnectNak,
        ErrorCause.SessionContextNotFound,
      ],
      [
        Code.DisconnectRequest,
        [attr.ip(A.NasIpAddress, '10.9.9.9'), attr.str(A.UserName, 'bob')],
        Code.DisconnectNak,
        ErrorCause.NasIdentificationMismatch,
      ],
      [
        Code.DisconnectRequest,
        [attr.str(A.NasIdentifier, 'other'), attr.str(A.UserName, 'bob')],
        Code.DisconnectNak,
        ErrorCause.NasIdentificationMismatch,
      ],
      [
        Code.DisconnectRequest,
        [attr.int(A.SessionTimeout, 5), attr.str(A.UserName, 'bob')],
        Code.DisconnectNak,
        ErrorCause.UnsupportedAttribute,
      ],
      [
        Code.DisconnectRequest,
        [attr.str(A.ProxyState, 'only')],
        Code.DisconnectNak,
        ErrorCause.MissingAttribute,
      ],
      [
        Code.CoaRequest,
        [attr.str(A.UserName, 'bob'), attr.int(A.SessionTimeout, 5)],
        Code.CoaNak,
        ErrorCause.UnsupportedService,
      ],
      [
        Code.CoaRequest,
        [attr.str(A.UserName, 'bob'), attr.int(WISPR.BandwidthMaxUp, 5, VENDOR.WISPr)],
        Code.CoaNak,
        ErrorCause.UnsupportedService,
      ],
      [
        Code.CoaRequest,
        [attr.str(A.UserName, 'nobody'), attr.int(A.SessionTimeout, 5)],
        Code.CoaNak,
        ErrorCause.SessionContextNotFound,
      ],
    ];
    let id = 10;
    for (const [code, attrs, want, cause] of cases) {
      const a = await ask(code, attrs, id++);
      expect([a.code, a.cause], JSON.stringify(attrs.map((x) => x.type))).toEqual([want, cause]);
    }
    expect((await ask(Code.CoaRequest, [attr.str(A.UserName, 'bob')], 99)).code).toBe(Code.CoaAck);
    expect(out.length).toBe(3); // no NAK logged anyone out
  });

  it('drops a wrong secret, an unknown client, a missing Message-Authenticator when required, a stale Event-Timestamp', async () => {
    const { d, out } = make({ requireMessageAuthenticator: true });
    const ok = [attr.ip(A.FramedIpAddress, '10.0.0.23')];
    expect(
      await d.handle(request(Code.DisconnectRequest, ok, { sec: 'wrong', ma: true }), '127.0.0.1', 1),
    ).toBeUndefined();
    expect(await d.handle(request(Code.DisconnectRequest, ok, { ma: true }), '127.0.0.2', 1)).toBeUndefined();
    expect(await d.handle(request(Code.DisconnectRequest, ok), '127.0.0.1', 1)).toBeUndefined();
    const stale = [...ok, attr.int(A.EventTimestamp, Date.now() / 1000 - 3600)];
    expect(
      await d.handle(request(Code.DisconnectRequest, stale, { ma: true }), '127.0.0.1', 1),
    ).toBeUndefined();
    expect(await d.handle(request(Code.AccessRequest, ok), '127.0.0.1', 1)).toBeUndefined();
    expect(out).toEqual([]);
    expect(d.stats.dropped).toBe(5);
  });

  it('fuzz: hostile datagrams (random, and well-signed with random attributes) never throw', async () => {
    const { d } = make();
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.boolean(), async (bytes, sign) => {
        let b = Buffer.from(bytes);
        if (sign && b.length >= 20) {
          // A packet from the allowed client with the right secret: whatever its attributes hold,
          // it reaches the decoder and the decision.
          b[0] = b[0]! % 2 === 0 ? Code.DisconnectRequest : Code.CoaRequest;
          b.writeUInt16BE(b.length, 2);
          b.fill(0, 4, 20);
          md5(b, secret).copy(b, 4);
        }
        const answer = await d.handle(b, '127.0.0.1', 4242);
        if (answer) {
          const p = decode(answer);
          expect([Code.DisconnectAck, Code.DisconnectNak, Code.CoaAck, Code.CoaNak]).toContain(p.code);
        }
        b = Buffer.alloc(0);
      }),
      { numRuns: 3000 },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(anyAttr, { maxLength: 8 }), fc.boolean(), async (attrs, coa) => {
        const raw = request(coa ? Code.CoaRequest : Code.DisconnectRequest, attrs, { id: attrs.length });
        const answer = await d.handle(raw, '127.0.0.1', 4243);
        if (answer) expect(verifyResponse(answer, raw.subarray(4, 20), secret).ok).toBe(true);
      }),
      { numRuns: 1000 },
    );
    expect(d.stats.received).toBe(4000);
  });

  it('on a real socket: a datagram flood of garbage leaves it answering', async () => {
    const { d } = make();
    const { port } = await d.listen();
    const c = dgram.createSocket('udp4');
    for (let i = 0; i < 500; i++)
      c.send(Buffer.from(fc.sample(fc.uint8Array({ maxLength: 100 }), 1)[0]!), port, '127.0.0.1');
    const raw = request(Code.DisconnectRequest, [attr.ip(A.FramedIpAddress, '10.0.0.24')], { id: 200 });
    // Sent again until answered, as a DAE client does: the flood may fill the socket's buffer.
    const answer = await new Promise<Buffer>((resolve) => {
      const again = setInterval(() => c.send(raw, port, '127.0.0.1'), 200);
      c.on('message', (m) => {
        if (m[1] !== 200) return;
        clearInterval(again);
        resolve(m);
      });
      c.send(raw, port, '127.0.0.1');
    });
    expect(decode(answer).code).toBe(Code.DisconnectAck);
    c.close();
    await d.close();
  });
});

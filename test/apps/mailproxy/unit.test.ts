import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkConfig } from '../../../src/apps/mailproxy/config.js';
import { ImapSniffer, imapArgs } from '../../../src/apps/mailproxy/imap.js';
import { LineReader, MAX_LINE } from '../../../src/apps/mailproxy/lines.js';
import { decodeSockaddrIn } from '../../../src/apps/mailproxy/origdst.js';
import { Pop3Sniffer } from '../../../src/apps/mailproxy/pop3.js';
import { redirectRuleset } from '../../../src/apps/mailproxy/ruleset.js';
import { saslUser } from '../../../src/apps/mailproxy/sasl.js';
import type { SniffEvent, Sniffer } from '../../../src/apps/mailproxy/sniffer.js';

type Step = ['c' | 's', string];

/** Feed a dialogue, each side's text cut into pieces of `cut` bytes; collect the events. */
function run(s: Sniffer, steps: Step[], cut = 1 << 20): SniffEvent[] {
  const out: SniffEvent[] = [];
  for (const [side, text] of steps) {
    const b = Buffer.from(text, 'latin1');
    for (let i = 0; i < b.length; i += cut) {
      const part = b.subarray(i, i + cut);
      out.push(...(side === 'c' ? s.client(part) : s.server(part)));
    }
  }
  return out;
}

const plain = (u: string, p: string): string => Buffer.from(`\0${u}\0${p}`).toString('base64');
const GREET =
  '* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] Dovecot ready.\r\n';
const IMAP_OK = (t: string): string => `${t} OK [CAPABILITY IMAP4rev1 SASL-IR ID] Logged in\r\n`;
const IMAP_NO = (t: string): string => `${t} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n`;

const imapGood: Step[] = [
  ['s', GREET],
  ['c', 'a0 CAPABILITY\r\n'],
  [
    's',
    '* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na0 OK Pre-login capabilities listed, post-login capabilities have more.\r\n',
  ],
  ['c', 'a1 LOGIN "alice" "s3cr\\"t"\r\n'],
  ['s', IMAP_OK('a1')],
];

describe('IMAP sniffer', () => {
  it('sees a tagged OK to LOGIN, at every split', () => {
    for (const cut of [1, 2, 3, 7, 1 << 20])
      expect(run(new ImapSniffer(), imapGood, cut)).toEqual([
        { kind: 'login', user: 'alice', command: 'LOGIN' },
      ]);
  });
  it('a NO is no login; an OK to another tag is no login', () => {
    expect(
      run(new ImapSniffer(), [
        ['s', GREET],
        ['c', 'a1 LOGIN alice bad\r\n'],
        ['s', IMAP_NO('a1')],
      ]),
    ).toEqual([]);
    expect(
      run(new ImapSniffer(), [
        ['c', 'a1 LOGIN alice x\r\na2 NOOP\r\n'],
        ['s', 'a2 OK done\r\n'],
      ]),
    ).toEqual([]);
    expect(run(new ImapSniffer(), [['s', '* OK a1 OK\r\n']])).toEqual([]);
  });
  it('AUTHENTICATE PLAIN with SASL-IR (curl) and with a continuation', () => {
    const ir: Step[] = [
      ['s', GREET],
      ['c', `A001 AUTHENTICATE PLAIN ${plain('bob', 'pw')}\r\n`],
      ['s', IMAP_OK('A001')],
    ];
    expect(run(new ImapSniffer(), ir)).toEqual([{ kind: 'login', user: 'bob', command: 'AUTHENTICATE' }]);
    const cont: Step[] = [
      ['c', 'x AUTHENTICATE PLAIN\r\n'],
      ['s', '+ \r\n'],
      ['c', `${plain('carol', 'pw')}\r\n`],
      ['s', IMAP_OK('x')],
    ];
    expect(run(new ImapSniffer(), cont, 3)).toEqual([
      { kind: 'login', user: 'carol', command: 'AUTHENTICATE' },
    ]);
    const cram: Step[] = [
      ['c', 'x AUTHENTICATE CRAM-MD5\r\n'],
      ['s', '+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2U+\r\n'],
      ['c', 'dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n'],
      ['s', 'x OK done\r\n'],
    ];
    expect(run(new ImapSniffer(), cram)).toEqual([{ kind: 'login', command: 'AUTHENTICATE' }]);
  });
  it('LOGIN with literals', () => {
    const steps: Step[] = [
      ['c', 'a LOGIN {5}\r\n'],
      ['s', '+ OK\r\n'],
      ['c', 'alice {4}\r\nab\r\n\r\n'],
      ['s', 'a OK in\r\n'],
    ];
    expect(run(new ImapSniffer(), steps, 1)).toEqual([{ kind: 'login', user: 'alice', command: 'LOGIN' }]);
    expect(imapArgs('{3}\r\na b "c d" e')).toEqual(['a b', 'c d', 'e']);
  });
  it('STARTTLS OK stops parsing; a LOGIN afterwards is not seen', () => {
    const s = new ImapSniffer();
    expect(
      run(s, [
        ['s', GREET],
        ['c', 's STARTTLS\r\n'],
        ['s', 's OK Begin TLS negotiation now.\r\n'],
      ]),
    ).toEqual([{ kind: 'starttls' }]);
    expect(
      run(s, [
        ['c', 'a LOGIN u p\r\n'],
        ['s', 'a OK\r\n'],
      ]),
    ).toEqual([]);
    expect(s.done).toBe(true);
  });
  it('a line over 8 KiB stops parsing', () => {
    const s = new ImapSniffer();
    expect(run(s, [['c', `a1 NOOP ${'x'.repeat(MAX_LINE)}\r\n`]], 1000)).toEqual([
      { kind: 'overflow', side: 'client' },
    ]);
    expect(
      run(s, [
        ['c', 'a2 LOGIN u p\r\n'],
        ['s', 'a2 OK\r\n'],
      ]),
    ).toEqual([]);
    expect(run(new ImapSniffer(), [['c', 'a LOGIN {99999}\r\n']])).toEqual([
      { kind: 'overflow', side: 'client' },
    ]);
  });
});

describe('POP3 sniffer', () => {
  const greet = '+OK Dovecot ready.\r\n';
  it('+OK to PASS, at every split; -ERR is no login', () => {
    const good: Step[] = [
      ['s', greet],
      ['c', 'USER alice\r\n'],
      ['s', '+OK\r\n'],
      ['c', 'PASS secret\r\n'],
      ['s', '+OK Logged in.\r\n'],
    ];
    for (const cut of [1, 2, 5, 1 << 20])
      expect(run(new Pop3Sniffer(), good, cut)).toEqual([{ kind: 'login', user: 'alice', command: 'PASS' }]);
    const bad: Step[] = [
      ['s', greet],
      ['c', 'USER alice\r\n'],
      ['s', '+OK\r\n'],
      ['c', 'PASS x\r\n'],
      ['s', '-ERR [AUTH] Authentication failed.\r\n'],
    ];
    expect(run(new Pop3Sniffer(), bad)).toEqual([]);
  });
  it('pipelined USER/PASS; the +OK to USER is not a login; the greeting is not an answer', () => {
    const steps: Step[] = [
      ['c', 'USER a\r\nPASS b\r\n'],
      ['s', greet],
      ['s', '+OK\r\n'],
    ];
    const s = new Pop3Sniffer();
    expect(run(s, steps)).toEqual([]);
    expect(run(s, [['s', '+OK Logged in.\r\n']])).toEqual([{ kind: 'login', user: 'a', command: 'PASS' }]);
  });
  it('CAPA body lines are not answers; AUTH PLAIN with initial response (curl) and with continuation', () => {
    const capa: Step[] = [
      ['s', greet],
      ['c', 'CAPA\r\n'],
      ['s', '+OK\r\nUSER\r\n+OK fake\r\nSASL PLAIN\r\n.\r\n'],
      ['c', `AUTH PLAIN ${plain('bob', 'x')}\r\n`],
      ['s', '+OK Logged in.\r\n'],
    ];
    expect(run(new Pop3Sniffer(), capa, 4)).toEqual([{ kind: 'login', user: 'bob', command: 'AUTH' }]);
    const cont: Step[] = [
      ['s', greet],
      ['c', 'AUTH PLAIN\r\n'],
      ['s', '+ \r\n'],
      ['c', `${plain('carol', 'x')}\r\n`],
      ['s', '+OK Logged in.\r\n'],
    ];
    expect(run(new Pop3Sniffer(), cont)).toEqual([{ kind: 'login', user: 'carol', command: 'AUTH' }]);
    const list: Step[] = [
      ['s', greet],
      ['c', 'AUTH\r\n'],
      ['s', '+OK\r\nPLAIN\r\n.\r\n'],
    ];
    expect(run(new Pop3Sniffer(), list)).toEqual([]);
  });
  it('APOP; STLS stops parsing', () => {
    expect(
      run(new Pop3Sniffer(), [
        ['s', greet],
        ['c', 'APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n'],
        ['s', '+OK\r\n'],
      ]),
    ).toEqual([{ kind: 'login', user: 'mrose', command: 'APOP' }]);
    const s = new Pop3Sniffer();
    expect(
      run(s, [
        ['s', greet],
        ['c', 'STLS\r\n'],
        ['s', '+OK Begin TLS\r\n'],
      ]),
    ).toEqual([{ kind: 'starttls' }]);
    expect(
      run(s, [
        ['c', 'USER a\r\nPASS b\r\n'],
        ['s', '+OK\r\n+OK\r\n'],
      ]),
    ).toEqual([]);
  });
});

describe('decoders and helpers', () => {
  it('line reader keeps complete lines before an overflow', () => {
    const r = new LineReader(false, 10);
    expect(r.push(Buffer.from('ab\r\ncd\n01234567890'))).toEqual(['ab', 'cd']);
    expect(r.overflow).toBe(true);
    expect(r.push(Buffer.from('x\n'))).toEqual([]);
  });
  it('struct sockaddr_in', () => {
    const b = Buffer.from([2, 0, 0, 143, 10, 77, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(decodeSockaddrIn(b)).toEqual({ address: '10.77.1.2', port: 143 });
    expect(decodeSockaddrIn(Buffer.from([10, 0, 0, 143, 1, 2, 3, 4]))).toBeUndefined();
    expect(decodeSockaddrIn(Buffer.alloc(4))).toBeUndefined();
  });
  it('SASL user names', () => {
    expect(saslUser('plain', plain('u', 'p'))).toBe('u');
    expect(saslUser('LOGIN', Buffer.from('me').toString('base64'))).toBe('me');
    expect(saslUser('PLAIN', '*')).toBeUndefined();
    expect(saslUser('PLAIN', 'not base64!')).toBeUndefined();
    expect(saslUser('XOAUTH2', plain('u', 'p'))).toBeUndefined();
  });
  it('redirect ruleset and its checks', () => {
    const r = redirectRuleset({ lan: ['r0'], proxyPort: 1143 });
    expect(r).toContain('iifname { "r0" } meta nfproto ipv4 tcp dport { 143, 110 } redirect to :1143');
    expect(() => redirectRuleset({ lan: ['r0"; flush ruleset'], proxyPort: 1 })).toThrow(
      /not an interface name/,
    );
    expect(() => redirectRuleset({ lan: ['r0'], proxyPort: 70000 })).toThrow(/port 70000/);
  });
  it('config checks name what is wrong', () => {
    expect(() => checkConfig({ port: 1, bogus: 1 })).toThrow(/unknown field "bogus"/);
    expect(() => checkConfig({ port: -1 })).toThrow(/port must be/);
    expect(() => checkConfig({ port: 1, smtpTimeout: 0 })).toThrow(/smtpTimeout/);
    expect(() => checkConfig([])).toThrow(/JSON object/);
    expect(checkConfig({ port: 0, firewall: false }).port).toBe(0);
  });
});

describe('fuzz', () => {
  const dialogue = fc.array(
    fc.tuple(
      fc.constantFrom<'c' | 's'>('c', 's'),
      fc.oneof(
        fc.string(),
        fc.constantFrom('a OK\r\n', '+OK\r\n', 'a LOGIN u p\r\n', 'PASS x\r\n', '{3}\r\n', '+ \r\n'),
      ),
    ),
    { maxLength: 30 },
  );
  it('the sniffers never throw, and how the bytes are cut changes nothing', () => {
    fc.assert(
      fc.property(dialogue, fc.integer({ min: 1, max: 9 }), (steps, cut) => {
        for (const make of [() => new ImapSniffer(), () => new Pop3Sniffer()]) {
          const whole = run(make(), steps as Step[]);
          expect(run(make(), steps as Step[], cut)).toEqual(whole);
        }
      }),
      { numRuns: 300 },
    );
  });
  it('decodeSockaddrIn and saslUser never throw', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 20 }), (b) => void decodeSockaddrIn(Buffer.from(b))));
    fc.assert(fc.property(fc.string(), fc.string(), (m, r) => void saslUser(m, r)));
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getOption, messageType, optionToValue } from '../../../src/services/dhcp/options.js';
import { decodePacket, encodePacket, MessageType, macOf } from '../../../src/services/dhcp/packet.js';
import { have } from '../../support/env.js';
import { Lab } from '../../support/lab.js';
import { waitForLine } from '../../support/wait.js';

const canRun = have(['ip', 'udhcpc', 'dhclient'], { root: true });

/** Prints the first UDP datagram that reaches 0.0.0.0:67, as hex, then exits (plain JS: starts fast). */
const CAPTURE = `import dgram from 'node:dgram';
const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
s.on('message', (m) => { console.log('PKT ' + m.toString('hex')); s.close(); });
s.bind(67, '0.0.0.0', () => console.log('READY'));
`;

describe.skipIf(!canRun)('decoding DISCOVERs captured live from real clients', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await Lab.create();
  });
  afterAll(() => lab?.close());

  async function capture(run: () => Promise<unknown>): Promise<Buffer> {
    const child = lab.spawn(lab.router, process.execPath, [lab.file(`capture-${Date.now()}.mjs`, CAPTURE)]);
    await waitForLine(child, /^READY/, 10_000);
    const line = waitForLine(child, /^PKT /, 10_000);
    run().catch(() => {}); // no server answers: the client gives up, we only want its DISCOVER
    return Buffer.from((await line).slice(4), 'hex');
  }

  it('busybox udhcpc', async () => {
    const mac = await lab.mac(lab.client, 'c0');
    const raw = await capture(() =>
      lab.udhcpc(lab.client, 'c0', { timeoutS: 1, hostname: 'live-udhcpc', broadcast: true }),
    );
    const p = decodePacket(raw);
    expect(messageType(p)).toBe(MessageType.DISCOVER);
    expect(macOf(p)).toBe(mac);
    expect(p.flags & 0x8000).toBe(0x8000);
    expect(optionToValue(12, getOption(p, 12)!)).toBe('live-udhcpc');
    expect(decodePacket(encodePacket(p))).toEqual(p);
  });

  it('ISC dhclient', async () => {
    const mac = await lab.mac(lab.client, 'c0');
    const raw = await capture(() =>
      lab.dhclient(lab.client, 'c0', { timeoutS: 1, hostname: 'live-dhclient' }),
    );
    const p = decodePacket(raw);
    expect(messageType(p)).toBe(MessageType.DISCOVER);
    expect(macOf(p)).toBe(mac);
    expect(optionToValue(12, getOption(p, 12)!)).toBe('live-dhclient');
    expect(decodePacket(encodePacket(p))).toEqual(p);
  });
});

import dnsPacket, { type Answer } from 'dns-packet';
import type { CachedAnswer } from '../../../src/apps/dns/cache.js';
import type { Resolver, UpstreamResult } from '../../../src/apps/dns/upstream.js';

/** Shared by the DNS tests: records, queries, and an upstream that answers from a table. */

export const a = (name: string, data: string, ttl: number): Answer => ({ name, type: 'A', ttl, data });
export const soa = (ttl: number, minimum: number): Answer => ({
  name: 'example.test',
  type: 'SOA',
  ttl,
  data: { mname: 'ns.example.test', rname: 'hostmaster.example.test', serial: 1, minimum },
});
export const answer = (rcode: number, answers: Answer[], authorities: Answer[] = []): CachedAnswer => ({
  rcode,
  answers,
  authorities,
  additionals: [],
});

export function query(
  name: string,
  type = 'A',
  opts: { id?: number; edns?: number; flags?: number } = {},
): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id: opts.id ?? 4242,
    flags: opts.flags ?? dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as 'A', class: 'IN' }],
    additionals:
      opts.edns === undefined
        ? []
        : [
            {
              type: 'OPT',
              name: '.',
              udpPayloadSize: opts.edns,
              extendedRcode: 0,
              ednsVersion: 0,
              flags: 0,
              flag_do: false,
              options: [],
            },
          ],
  });
}

/** An upstream that answers from a table; counts calls; can be slowed or broken. */
export class FakeUpstream implements Resolver {
  readonly counters = { sent: 0, tcpRetries: 0, mismatched: 0 };
  calls: string[] = [];
  fail = false;
  delayMs = 0;
  constructor(private readonly zone: Record<string, Answer[]>) {}
  async resolve(name: string, type: string): Promise<UpstreamResult> {
    this.calls.push(`${name} ${type}`);
    this.counters.sent++;
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.fail) throw new Error('upstream down');
    const records = this.zone[name];
    const answers = records?.filter((r) => r.type === type) ?? [];
    const response = {
      rcode: records ? 0 : 3,
      truncated: false,
      answers,
      authorities: answers.length ? [] : [soa(300, 60)],
      additionals: [],
    };
    return { response, server: 'fake:53', tcp: false };
  }
  close(): void {}
}

export const ZONE: Record<string, Answer[]> = {
  'www.example.test': [a('www.example.test', '10.77.1.80', 300)],
  'safe.example.test': [a('safe.example.test', '10.77.1.99', 300)],
};

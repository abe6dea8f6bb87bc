import { afterEach, describe, expect, it } from 'vitest';
import { Bus, type Message, silentLogger, UNDELIVERED } from '../../../src/core/index.js';
import { type Client, Clients } from '../../../src/services/http/clients.js';

/**
 * The requests' paths of the HTTP servers of one name (clients.ts): found by number in a ring, or
 * in the overflow map when more wait at once than the ring holds or an old one still holds a slot.
 */
let bus: Bus;
afterEach(async () => {
  await bus?.close();
});

function client(table: Clients, log: string[]): Client {
  const seq = table.next();
  return {
    seq,
    clientname: table.base + seq,
    respond: (m: Message) => log.push(`${seq} response ${m.int('code')}`),
    close: () => log.push(`${seq} close`),
  };
}

describe('HTTP clients table', () => {
  it('finds every waiting request, beyond the ring too, and none once dropped', async () => {
    bus = new Bus({ name: 'clients-test', logger: silentLogger });
    const undelivered: string[] = [];
    bus.listen(UNDELIVERED, (m) => {
      undelivered.push(m.str('mailbox'));
    });
    const table = Clients.take(bus, '/t/web');
    const log: string[] = [];
    const all = Array.from({ length: 10_000 }, () => client(table, log));
    for (const c of all) table.add(c);
    for (const c of all) bus.post(`${c.clientname}/response`, { code: 200 });
    bus.post(`${all[4096]!.clientname}/close`);
    await bus.settled();
    expect(log.length).toBe(10_001);
    expect(log[0]).toBe('1 response 200');
    expect(log[9_999]).toBe('10000 response 200');
    expect(log[10_000]).toBe('4097 close');
    // dropped requests are not found any more; a number is read strictly (no leading 0, no other suffix)
    table.drop(all.slice(0, 5000));
    log.length = 0;
    bus.post(`${all[0]!.clientname}/response`, { code: 200 });
    bus.post(`${all[5000]!.clientname}/response`, { code: 201 });
    for (const p of ['/t/web/client/05001/response', '/t/web/client/5001/other', '/t/web/client/x/close'])
      bus.post(p, { code: 200 });
    await bus.settled();
    expect(log).toEqual(['5001 response 201']);
    expect(undelivered).toEqual([
      '/t/web/client/1/response',
      '/t/web/client/05001/response',
      '/t/web/client/5001/other',
      '/t/web/client/x/close',
    ]);
    table.release();
    expect(bus.mailboxes().map((b) => b.path)).toEqual([UNDELIVERED]);
  });

  it('is shared by the servers of one name until the last releases it', () => {
    bus = new Bus({ name: 'clients-test', logger: silentLogger });
    const a = Clients.take(bus, '/t/web');
    const b = Clients.take(bus, '/t/web');
    expect(b).toBe(a);
    expect([a.next(), b.next()]).toEqual([1, 2]);
    a.release();
    const served = (): string[] => bus.routeInfos().map((x) => x.path);
    expect(served()).toEqual(['/system/reply/*', '/t/web/client/*']);
    b.release();
    expect(served()).toEqual(['/system/reply/*']); // the bus's own route for requests
    expect(Clients.take(bus, '/t/web').next()).toBe(1);
  });
});

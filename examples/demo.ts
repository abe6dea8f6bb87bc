/**
 * `npm run demo`: the main job for now. Starts the paper's portal (examples/paper-portal.ts) as
 * the daemon `portal` (socket in $METANET_DIR, default /tmp/metanet-demo), sends it two HTTP
 * requests of its own so you see the messages flow, then keeps serving until Ctrl-C. While it
 * runs, other processes can watch or hook it:
 *
 *   METANET_DIR=/tmp/metanet-demo node dist/src/cli/main.js monitor portal
 *   curl -i -H 'Host: example.org' http://127.0.0.1:8080/news
 */
import { type IncomingMessage, request } from 'node:http';
import { Bus } from '../src/core/bus.js';
import { serveDaemon } from '../src/ipc/daemon.js';
import { startPortal } from './paper-portal.js';

const dir = process.env.METANET_DIR ?? '/tmp/metanet-demo';
const portal = await startPortal({
  port: Number(process.env.PORT ?? 8080),
  host: process.env.HOST ?? '127.0.0.1',
  log: (line) => console.log(`   ${line}`),
});
const daemon = await serveDaemon(portal.bus, { dir, signals: false });
portal.bus.prepend('/captive/server/request', function show(m) {
  console.log(`-> /captive/server/request  ${m.without('header', 'headers', 'body')}`);
});
console.log(`portal: http://127.0.0.1:${portal.port}/  daemon socket: ${daemon.path}\n`);

for (const [host, path] of [
  ['example.org', '/news?id=1'],
  [`127.0.0.1:${portal.port}`, '/'],
] as const) {
  console.log(`GET http://${host}${path}`);
  const r = await get(portal.port, host, path);
  console.log(`<- ${r.statusCode} ${r.headers.location ?? r.headers['content-type']}\n`);
}

function get(port: number, host: string, path: string): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    request({ port, path, headers: { Host: host } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res));
    })
      .on('error', reject)
      .end();
  });
}

// a second process's view: what `metanet ls portal` prints
const cli = new Bus({ name: `demo-cli-${process.pid}` });
const { attachClient } = await import('../src/ipc/daemon.js');
const t = attachClient(cli, { dir });
const ls = await (await t.link('portal')).ls('/captive');
console.log(`another process sees: ${ls.all('mailbox').length} mailboxes under /captive in daemon "portal"`);
await cli.close(100);

console.log(`\nserving; try: METANET_DIR=${dir} node dist/src/cli/main.js monitor portal   (Ctrl-C stops)`);
const stop = (): void => {
  void daemon
    .close()
    .then(() => portal.close())
    .then(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
if (process.env.DEMO_ONESHOT) stop();

/**
 * The mail proxy alone: `node dist/src/apps/mailproxy/main.js --config FILE [--dir SOCKDIR]`, FILE a
 * mail proxy config (docs/apps/mailproxy.md) or a gateway config. Prints one line per event:
 * `mailproxy ready PORT`, `mailproxy login {json}`, `mailproxy starttls {json}`,
 * `mailproxy error {json}`. Stops cleanly on SIGINT/SIGTERM (the redirect table is deleted; a
 * firewall table it installed stays).
 */
import type { Message } from '../../core/message.js';
import { runApp } from '../runner.js';
import { mailProxyApp } from './app.js';

function line(kind: string, m: Message): void {
  const o: Record<string, unknown> = {};
  for (const t of m) o[t.tag] = t.value;
  process.stdout.write(`mailproxy ${kind} ${JSON.stringify(o)}\n`);
}

await runApp(mailProxyApp, {
  onStarted(bus) {
    for (const kind of ['login', 'starttls', 'error'])
      bus.append(`/mailproxy/${kind}`, (m) => {
        line(kind, m);
      });
  },
});

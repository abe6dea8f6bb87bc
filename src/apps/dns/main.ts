/**
 * The DNS forwarder alone: `node dist/src/apps/dns/main.js --config FILE [--dir SOCKDIR]`, FILE a
 * forwarder config (docs/apps/dns.md) or a gateway config. Prints `dns ready <port>`; see runApp.
 */
import { runApp } from '../runner.js';
import { dnsApp } from './app.js';

await runApp(dnsApp);

/**
 * The captive portal alone: `node dist/src/apps/portal/main.js --config FILE [--dir SOCKDIR]`, FILE a
 * portal config (docs/apps/portal.md) or a gateway config. Serves daemon `portal` (so another
 * process can prepend `portal:/portal/auth`) and prints `portal ready`; the firewall table stays
 * when it stops (logged-in clients keep access meanwhile). See runApp.
 */
import { runApp } from '../runner.js';
import { portalApp } from './app.js';

await runApp(portalApp);

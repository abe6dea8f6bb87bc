/**
 * The RADIUS glue alone: `node dist/src/apps/radius/main.js --config FILE [--dir SOCKDIR]`.
 * Config (JSON, docs/apps/radius.md): { "nasIp": "10.0.0.1", "servers": [{ "host": "192.0.2.5",
 * "secret": "…" }], "stateDir": "/var/lib/metanet", "dae": { "clients": [{ "address": "192.0.2.5",
 * "secret": "…" }] } }, or a gateway config. Prints `radius ready [DAEPORT]` once its listener is in
 * the portal's `/portal/auth` chain; waits for the portal if it is not running yet.
 */
import { runApp } from '../runner.js';
import { radiusApp } from './app.js';

await runApp(radiusApp);

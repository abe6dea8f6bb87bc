/**
 * The extrusion detector alone: `node dist/src/apps/extrusion/main.js --config FILE [--dir SOCKDIR]`,
 * FILE an extrusion config (docs/apps/extrusion.md) or a gateway config with `apps.extrusion`.
 * Serves daemon `extrusion`, prints `extrusion ready` once its conntrack readers run; needs root
 * (conntrack events) in the router's network namespace, or a `commandPrefix` that gets there.
 */
import { runApp } from '../runner.js';
import { extrusionApp } from './app.js';

await runApp(extrusionApp);

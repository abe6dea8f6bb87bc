/**
 * The operator dashboard alone: `node dist/src/apps/dashboard/main.js --config FILE [--dir SOCKDIR]`,
 * FILE a dashboard config (docs/apps/dashboard.md) or a gateway config with `apps.dashboard` (once
 * the app is in src/apps/registry.ts). Serves daemon `dashboard`, prints `dashboard ready ADDR:PORT`.
 */
import { runApp } from '../runner.js';
import { dashboardApp } from './app.js';

await runApp(dashboardApp);

/**
 * The dhcpd daemon alone: `node dist/src/apps/dhcpd/main.js --config FILE [--dir SOCKDIR]`, FILE a
 * DHCP config (docs/services/dhcp.md) or a gateway config. Prints `dhcpd ready`; see runApp.
 */
import { runApp } from '../runner.js';
import { dhcpdApp } from './app.js';

await runApp(dhcpdApp);

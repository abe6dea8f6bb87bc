/**
 * The dhcp-ldap glue alone: `node dist/src/apps/dhcp-ldap/main.js --config FILE [--dir SOCKDIR]`.
 * Config (JSON): { "target": "dhcpd", "url": "ldap://127.0.0.1:389/", "bindDN": "…",
 * "password": "…", "base": "ou=hosts,dc=example,dc=org", "timeout": 500 }, or a gateway config.
 * Prints `dhcp-ldap ready` once its listener is in dhcpd's chain; waits for dhcpd if it is not
 * running yet, and re-attaches by itself when dhcpd restarts.
 */
import { runApp } from '../runner.js';
import { dhcpLdapApp } from './app.js';

await runApp(dhcpLdapApp);

import type { App } from './app.js';

/**
 * Every app `metanet up` can host, in the order it starts them (a dependency comes before what
 * uses it: dhcpd before the LDAP glue hooking it and the portal following its leases). Each is
 * loaded only when a config names it, so what a gateway does not use costs no memory.
 */
export const APPS: Readonly<Record<string, () => Promise<App>>> = {
  dhcpd: async () => (await import('./dhcpd/app.js')).dhcpdApp,
  dns: async () => (await import('./dns/app.js')).dnsApp,
  'dhcp-ldap': async () => (await import('./dhcp-ldap/app.js')).dhcpLdapApp,
  portal: async () => (await import('./portal/app.js')).portalApp,
  radius: async () => (await import('./radius/app.js')).radiusApp,
  mailproxy: async () => (await import('./mailproxy/app.js')).mailProxyApp,
  extrusion: async () => (await import('./extrusion/app.js')).extrusionApp,
  dashboard: async () => (await import('./dashboard/app.js')).dashboardApp,
};

export const APP_NAMES: readonly string[] = Object.keys(APPS);

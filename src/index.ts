/**
 * The public API: the core (messages, mailboxes, the bus), daemons and remote mailboxes, and
 * the services. Apps (dhcpd, dhcp-ldap) and the CLI are programs, not library code.
 */
export * from './core/index.js';
export * from './ipc/index.js';
export { startDhcpServer } from './services/dhcp/server.js';
export { installDnsService } from './services/dns/index.js';
export { installHttpService } from './services/http/index.js';
export { installLdapService } from './services/ldap/index.js';
export { installSocketService } from './services/socket/index.js';
export { installTimerService } from './services/timer/index.js';

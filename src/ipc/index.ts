export type { AclRule, Operation } from './acl.js';
export { attachClient, type Daemon, type DaemonOptions, serveDaemon } from './daemon.js';
export { socketDir, socketPath } from './dir.js';
export { REMOTE_TIMEOUT } from './link.js';
export { attachNats, type NatsOptions } from './nats/attach.js';
export type { PeerCred } from './peercred.js';
export { SocketTransport } from './transport.js';
export { PROTOCOL_VERSION } from './wire.js';

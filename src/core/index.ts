export * from './bus.js';
export * from './errors.js';
export * from './listener.js';
export { createLogger, type Level, type Logger, silentLogger } from './log.js';
export type { MailboxInfo } from './mailbox.js';
export * from './message.js';
export * from './path.js';
export type { Timer } from './timers.js';
export type { RemoteAttachment, SendWaiter, Transport } from './transport.js';

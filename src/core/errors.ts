/**
 * Every error MetaNet raises on purpose is a MetanetError with a stable `code`,
 * so programs (and the CLI's exit codes) can tell failures apart without parsing text.
 */
export type ErrorCode =
  | 'EBADPATH' // a mailbox path or address that does not parse
  | 'EBADTUPLE' // a tuple or message that is not well formed
  | 'ENOTUPLE' // a typed accessor asked for a tag that is absent
  | 'ETUPLETYPE' // a typed accessor found another type
  | 'ENOLISTENER' // before/after/remove named a listener that is not there
  | 'ENOMAILBOX' // an operation needs a mailbox that does not exist
  | 'EEXIST' // create() of a mailbox that already exists
  | 'ETIMEDOUT' // wait/request ran out of time
  | 'ECLOSED' // the bus (or a connection) is closed
  | 'ENODAEMON' // an address names a daemon that is not running
  | 'ENOREMOTE' // an address names another daemon but no IPC transport is attached
  | 'EDENIED' // access control refused the operation
  | 'EPROTO' // a peer broke the wire protocol
  | 'ECONFIG' // a configuration file or option is invalid
  | 'EUNREACHABLE' // a peer is away (disconnected) and the message was refused
  | 'EFAIL'; // anything else a peer reported (e.g. a listener's own exception)

export class MetanetError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'MetanetError';
  }
}

const CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'EBADPATH',
  'EBADTUPLE',
  'ENOTUPLE',
  'ETUPLETYPE',
  'ENOLISTENER',
  'ENOMAILBOX',
  'EEXIST',
  'ETIMEDOUT',
  'ECLOSED',
  'ENODAEMON',
  'ENOREMOTE',
  'EDENIED',
  'EPROTO',
  'ECONFIG',
  'EUNREACHABLE',
  'EFAIL',
]);

/** Whether a code (e.g. from a peer's ERROR frame) is one of ours. */
export function isErrorCode(code: string): code is ErrorCode {
  return CODES.has(code);
}

export function isMetanetError(e: unknown, code?: ErrorCode): e is MetanetError {
  return e instanceof MetanetError && (code === undefined || e.code === code);
}

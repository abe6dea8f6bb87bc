import { MetanetError } from './errors.js';

/**
 * Mailbox paths are filesystem-style: `/captive/server/request`.
 * Each segment is 1..128 of `A-Z a-z 0-9 _ . - + @ =`, not `.` or `..`; at most 32 segments, 1024 bytes.
 *
 * Addresses add where the mailbox lives: `dhcpd:/dhcpd/lookup` (daemon on this machine) or
 * `ap2/dhcpd:/dhcpd/lookup` (daemon on another machine, over NATS). A daemon or host name is
 * 1..64 of `A-Z a-z 0-9 _ . -`, starting with a letter or digit.
 */
const SEGMENT = /^[A-Za-z0-9_.\-+@=]{1,128}$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const MAX_PATH = 1024;
const MAX_SEGMENTS = 32;

export interface Address {
  /** Machine (NATS host name), when the address names one. */
  readonly host?: string;
  /** Daemon, when the address names one. */
  readonly daemon?: string;
  readonly path: string;
}

function bad(what: string, input: string, why: string): never {
  throw new MetanetError('EBADPATH', `bad ${what} ${JSON.stringify(input)}: ${why}`);
}

/** The common case in one regex; anything it rejects goes through the detailed check for its error. */
const VALID_PATH = /^(?:\/[A-Za-z0-9_.\-+@=]{1,128}){1,32}$/;
const DOT_SEGMENT = /\/\.\.?(?:\/|$)/;

/** Returns the path unchanged when valid; throws EBADPATH naming what is wrong otherwise. */
export function checkPath(path: string): string {
  if (typeof path === 'string' && path.length <= MAX_PATH && VALID_PATH.test(path) && !DOT_SEGMENT.test(path))
    return path;
  validatePath(path);
  return path;
}

function validatePath(path: string): void {
  if (typeof path !== 'string') bad('mailbox path', String(path), 'not a string');
  if (!path.startsWith('/')) bad('mailbox path', path, 'must start with "/"');
  if (path.length > MAX_PATH) bad('mailbox path', path.slice(0, 40) + '…', `longer than ${MAX_PATH} bytes`);
  if (path.length === 1) bad('mailbox path', path, 'needs at least one segment after "/"');
  if (path.endsWith('/')) bad('mailbox path', path, 'must not end with "/"');
  const segs = path.slice(1).split('/');
  if (segs.length > MAX_SEGMENTS) bad('mailbox path', path, `more than ${MAX_SEGMENTS} segments`);
  for (const s of segs) {
    if (s === '') bad('mailbox path', path, 'empty segment ("//")');
    if (s === '.' || s === '..') bad('mailbox path', path, `segment "${s}" is not allowed`);
    if (!SEGMENT.test(s))
      bad('mailbox path', path, `segment "${s}" has a character outside A-Z a-z 0-9 _ . - + @ =`);
  }
}

export function checkName(name: string, what = 'daemon name'): string {
  if (typeof name !== 'string' || !NAME.test(name))
    bad(what, String(name), '1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit');
  return name;
}

/** Parse `[host/]daemon:/path` or a bare `/path`. */
export function parseAddress(addr: string): Address {
  if (typeof addr !== 'string') bad('address', String(addr), 'not a string');
  const colon = addr.indexOf(':/');
  if (colon < 0) {
    if (addr.includes(':')) bad('address', addr, 'expected DAEMON:/path');
    return { path: checkPath(addr) };
  }
  const where = addr.slice(0, colon);
  const path = checkPath(addr.slice(colon + 1));
  const slash = where.indexOf('/');
  if (slash < 0) return { daemon: checkName(where), path };
  return {
    host: checkName(where.slice(0, slash), 'host name'),
    daemon: checkName(where.slice(slash + 1)),
    path,
  };
}

export function formatAddress(a: Address): string {
  if (a.daemon === undefined) return a.path;
  return `${a.host !== undefined ? `${a.host}/` : ''}${a.daemon}:${a.path}`;
}

/** True when `path` matches a glob: `*` matches one segment, `**` (as a whole segment) any rest. */
export function pathMatches(pattern: string, path: string): boolean {
  const p = pattern.split('/');
  const s = path.split('/');
  for (let i = 0; i < p.length; i++) {
    const seg = p[i]!;
    if (seg === '**') return true;
    if (i >= s.length) return false;
    if (seg === '*') continue;
    if (seg.includes('*')) {
      const re = new RegExp(`^${seg.split('*').map(escapeRe).join('[^/]*')}$`);
      if (!re.test(s[i]!)) return false;
    } else if (seg !== s[i]) return false;
  }
  return p.length === s.length;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

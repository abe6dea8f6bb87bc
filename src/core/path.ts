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

/** 1 for a character allowed in a path segment (`A-Z a-z 0-9 _ . - + @ =`), 2 also in a name. */
const CHARS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/[A-Za-z0-9_.-]/.test(ch)) CHARS[c] = 3;
  else if (/[+@=]/.test(ch)) CHARS[c] = 1;
}

/**
 * Whether `s` from `start` to its end is a valid path: one pass over the characters, no regex
 * (regexes here would cost ~9% of a client's CPU on pipelined sends). Anything it rejects
 * goes through `validatePath` for the error that says why.
 */
function isPathAt(s: string, start: number): boolean {
  const end = s.length;
  if (end - start > MAX_PATH || end - start < 2 || s.charCodeAt(start) !== 47 /* '/' */) return false;
  let segs = 0;
  let from = start + 1;
  for (let i = from; i <= end; i++) {
    const c = i < end ? s.charCodeAt(i) : 47;
    if (c === 47) {
      const len = i - from;
      if (len === 0 || len > 128 || ++segs > MAX_SEGMENTS) return false;
      // '.' and '..' are not segments
      if (s.charCodeAt(from) === 46 && (len === 1 || (len === 2 && s.charCodeAt(from + 1) === 46)))
        return false;
      from = i + 1;
    } else if (c >= 128 || CHARS[c] === 0) return false;
  }
  return true;
}

/** Whether `s[start, end)` is a valid daemon or host name (what `NAME` says, without the regex). */
function isNameAt(s: string, start: number, end: number): boolean {
  const len = end - start;
  if (len < 1 || len > 64) return false;
  const first = s.charCodeAt(start);
  if (
    first >= 128 ||
    CHARS[first] !== 3 ||
    first === 95 /* _ */ ||
    first === 46 /* . */ ||
    first === 45 /* - */
  )
    return false;
  for (let i = start + 1; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || CHARS[c] !== 3) return false;
  }
  return true;
}

/** Returns the path unchanged when valid; throws EBADPATH naming what is wrong otherwise. */
export function checkPath(path: string): string {
  if (typeof path === 'string' && isPathAt(path, 0)) return path;
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

/**
 * Addresses parsed lately (one `Address` per string, shared): a process sends to a few addresses over
 * and over. Reply paths (`…/system/reply/N`) are used once and are not kept; the map is emptied
 * when it holds `ADDRESSES_KEPT`, so it stays small whatever a process sends to.
 */
const parsed = new Map<string, Address>();
const ADDRESSES_KEPT = 1024;
const REPLY_PART = '/system/reply/';

/** The address `noteAddress` was told last: the reply address of the request being served. */
let noted: string | undefined;
let notedAs: Address | undefined;

/**
 * `addr` is `daemon` + ':' + the path in `from` at `pathStart` (a string the caller made, e.g.
 * the IPC layer rewriting a request's reply-to): remembered, when valid, as the next address
 * likely parsed — the answer's — so that parsing it is one comparison. One is kept.
 */
export function noteAddress(addr: string, daemon: string, from: string, pathStart: number): void {
  if (!isNameAt(daemon, 0, daemon.length) || !isPathAt(from, pathStart)) return;
  noted = addr;
  notedAs = { daemon, path: from.slice(pathStart) };
}

/** Parse `[host/]daemon:/path` or a bare `/path`. The result is shared: do not change it. */
export function parseAddress(addr: string): Address {
  if (addr === noted) return notedAs!;
  const known = parsed.get(addr);
  if (known !== undefined) return known;
  const reply = parseReply(addr);
  if (reply !== undefined) return reply;
  const a = parseFresh(addr);
  if (!addr.includes(REPLY_PART)) {
    if (parsed.size >= ADDRESSES_KEPT) parsed.clear();
    parsed.set(addr, a);
  }
  return a;
}

/** Daemon names seen in reply addresses lately (valid names): a process answers a few peers over and over. */
const replyNames = new Set<string>();

/**
 * `daemon:/system/reply/N` (N decimal digits), the address every answer to a remote request goes
 * to: the path checked by its shape, the name once per name. Anything else: undefined.
 */
function parseReply(addr: string): Address | undefined {
  if (typeof addr !== 'string') return undefined;
  const colon = addr.indexOf(':');
  if (colon <= 0 || !addr.startsWith(REPLY_PART, colon + 1)) return undefined;
  const from = colon + 1 + REPLY_PART.length;
  const end = addr.length;
  if (end === from || end - from > 16) return undefined;
  for (let i = from; i < end; i++) {
    const c = addr.charCodeAt(i);
    if (c < 48 || c > 57) return undefined;
  }
  const daemon = addr.slice(0, colon);
  if (!replyNames.has(daemon)) {
    if (!isNameAt(addr, 0, colon)) return undefined;
    if (replyNames.size >= ADDRESSES_KEPT) replyNames.clear();
    replyNames.add(daemon);
  }
  return { daemon, path: addr.slice(colon + 1) };
}

function parseFresh(addr: string): Address {
  if (typeof addr !== 'string') bad('address', String(addr), 'not a string');
  const colon = addr.indexOf(':/');
  if (colon < 0) {
    if (addr.includes(':')) bad('address', addr, 'expected DAEMON:/path');
    return { path: checkPath(addr) };
  }
  const slash = addr.indexOf('/');
  // the common shapes, checked in one pass each: `daemon:/path`, `host/daemon:/path`
  if (isPathAt(addr, colon + 1)) {
    const path = addr.slice(colon + 1);
    if (slash === colon + 1) {
      if (isNameAt(addr, 0, colon)) return { daemon: addr.slice(0, colon), path };
    } else if (isNameAt(addr, 0, slash) && isNameAt(addr, slash + 1, colon))
      return { host: addr.slice(0, slash), daemon: addr.slice(slash + 1, colon), path };
  }
  // the detailed checks, for the error that says what is wrong
  const where = addr.slice(0, colon);
  const path = checkPath(addr.slice(colon + 1));
  const at = where.indexOf('/');
  if (at < 0) return { daemon: checkName(where), path };
  return {
    host: checkName(where.slice(0, at), 'host name'),
    daemon: checkName(where.slice(at + 1)),
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

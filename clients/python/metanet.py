"""A MetaNet wire-protocol client (docs/wire-protocol.md), standard library + msgpack.

    c = Client()                                   # HELLO name py-<pid>, dir $METANET_DIR or /run/metanet
    c.call('dhcpd:/echo', {'x': 1})                # -> Message [('x', 1), ('from', 'dhcpd')]
    c.listen('dhcpd:/lookup', lambda m, ctx: ctx.reply({'ok': True}) or 'stop', position='prepend')
"""

import itertools
import os
import re
import socket
import struct
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import msgpack

PROTOCOL_VERSION = 1
MAX_FRAME = 16 * 1024 * 1024  # what this client reads from a daemon; a daemon reads up to 1 MiB by default
MAX_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

HELLO, SEND, RESULT, LISTEN, UNLISTEN, DELIVER, VERDICT, OK, ERROR, MONITOR, EVENT, LS, UNMONITOR = range(13)
FRAME_NAMES = ('HELLO SEND RESULT LISTEN UNLISTEN DELIVER VERDICT OK ERROR MONITOR EVENT LS UNMONITOR').split()
TYPE_NAMES = ('str', 'int', 'float', 'bool', 'bytes', 'null', 'list')
TYPE_CODES = {n: i for i, n in enumerate(TYPE_NAMES)}
NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')
REPLY_PREFIX = '/system/reply/'
STOP, CONTINUE = 'stop', 'continue'

__all__ = ['Client', 'Message', 'Typed', 'MetanetError', 'STOP', 'CONTINUE', 'encode_frame', 'decode_payload',
           'to_wire', 'from_wire']


class MetanetError(Exception):
    """An error with a MetaNet code (EBADPATH, EPROTO, ENODAEMON, ETIMEDOUT, ...)."""

    def __init__(self, code, message):
        super().__init__(f'{code}: {message}')
        self.code = code
        self.message = message


def _proto(text):
    return MetanetError('EPROTO', text)


# ---- messages -----------------------------------------------------------------------------------

class Typed:
    """An explicit tuple type: Typed('float', 2) travels as a float, Typed('int', 2.0) as an int."""

    __slots__ = ('type', 'value')

    def __init__(self, type, value):
        if type not in TYPE_CODES:
            raise MetanetError('ETUPLETYPE', f'unknown tuple type {type!r} (one of {", ".join(TYPE_NAMES)})')
        self.type = type
        self.value = value

    def __repr__(self):
        return f'Typed({self.type!r}, {self.value!r})'

    def __eq__(self, other):
        return isinstance(other, Typed) and (self.type, self.value) == (other.type, other.value)


class Message(list):
    """Tuples in order: a list of (tag, value). Built from a dict, pairs or another Message.

    Types are inferred (str, int, float, bool, bytes, None, list of pairs / dict / Message for a
    nested list); use Typed(...) to force one.
    """

    def __init__(self, tuples=()):
        super().__init__(_pairs(tuples))

    def get(self, tag, default=None):
        """The value of the first tuple with this tag."""
        for t, v in self:
            if t == tag:
                return v
        return default

    def all(self, tag):
        """The values of every tuple with this tag, in order."""
        return [v for t, v in self if t == tag]

    def without(self, tag):
        return Message([(t, v) for t, v in self if t != tag])

    def tags(self):
        return [t for t, _ in self]

    def __repr__(self):
        return f'Message({list.__repr__(self)})'


def _pairs(tuples):
    if tuples is None:
        return []
    if isinstance(tuples, dict):
        tuples = tuples.items()
    out = []
    for i, t in enumerate(tuples):
        if not isinstance(t, (tuple, list)) or len(t) != 2:
            raise MetanetError('EBADTUPLE', f'tuple {i} must be a (tag, value) pair, got {t!r}')
        tag, value = t
        if not isinstance(tag, str) or not tag:
            raise MetanetError('EBADTUPLE', f'tuple {i} has a bad tag {tag!r}: tags are non-empty strings')
        if isinstance(value, dict) or (isinstance(value, (list, tuple)) and not isinstance(value, Message)):
            value = Message(value)
        out.append((tag, value))
    return out


def to_wire(tuples, depth=0):
    """Tuples (a Message, dict or pairs) as the wire carries them: [[tag, code, value], ...]."""
    if depth > MAX_DEPTH:
        raise MetanetError('ETUPLETYPE', f'lists nested deeper than {MAX_DEPTH}')
    msg = tuples if isinstance(tuples, Message) else Message(tuples)
    return [[tag, *_encode_value(tag, value, depth)] for tag, value in msg]


def _encode_value(tag, v, depth):
    if isinstance(v, Typed):
        return _encode_typed(tag, v.type, v.value, depth)
    if v is None:
        return 5, None
    if isinstance(v, bool):
        return 3, v
    if isinstance(v, int):
        return _encode_typed(tag, 'int', v, depth)
    if isinstance(v, float):
        return 2, v
    if isinstance(v, str):
        return 0, v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return 4, bytes(v)
    if isinstance(v, (list, tuple, dict)):
        return 6, to_wire(v, depth + 1)
    raise MetanetError('ETUPLETYPE', f'tuple "{tag}": cannot send a {type(v).__name__} (use Typed(...))')


def _encode_typed(tag, type, v, depth):
    bad = MetanetError('ETUPLETYPE', f'tuple "{tag}" is typed {type} but holds {type_of(v)} {v!r}')
    if type == 'str':
        if not isinstance(v, str):
            raise bad
    elif type == 'int':
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad
        if not INT64_MIN <= v <= INT64_MAX:
            raise MetanetError('ETUPLETYPE', f'tuple "{tag}": {v} does not fit a signed 64-bit int')
    elif type == 'float':
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise bad
        v = float(v)
    elif type == 'bool':
        if not isinstance(v, bool):
            raise bad
    elif type == 'bytes':
        if not isinstance(v, (bytes, bytearray, memoryview)):
            raise bad
        v = bytes(v)
    elif type == 'null':
        if v is not None:
            raise bad
    elif type == 'list':
        if not isinstance(v, (list, tuple, dict)):
            raise bad
        v = to_wire(v, depth + 1)
    return TYPE_CODES[type], v


def type_of(v):
    if v is None:
        return 'nil'
    if isinstance(v, list):
        return 'array'
    if isinstance(v, bytes):
        return 'bin'
    return type(v).__name__


def from_wire(w, where='message', depth=0):
    """Decode wire tuples to a Message; EPROTO naming the tuple that is wrong."""
    if not isinstance(w, list):
        raise _proto(f'{where}: tuples must be an array, got {type_of(w)}')
    if depth > MAX_DEPTH:
        raise _proto(f'{where}: lists nested deeper than {MAX_DEPTH}')
    out = []
    for i, e in enumerate(w):
        if not isinstance(e, list) or len(e) != 3:
            raise _proto(f'{where}: tuple {i} must be [tag, type, value]')
        tag, code, v = e
        if not isinstance(tag, str) or not tag:
            raise _proto(f'{where}: tuple {i} has a bad tag ({type_of(tag)})')
        if type(code) is not int or not 0 <= code < len(TYPE_NAMES):
            raise _proto(f'{where}: tuple "{tag}" has unknown type code {code!r}')
        name = TYPE_NAMES[code]
        ok = (
            (code == 0 and isinstance(v, str))
            or (code == 1 and type(v) is int)
            or (code == 2 and type(v) in (int, float))
            or (code == 3 and type(v) is bool)
            or (code == 4 and isinstance(v, bytes))
            or (code == 5 and v is None)
            or code == 6
        )
        if not ok:
            raise _proto(f'{where}: tuple "{tag}" is typed {name} but holds {type_of(v)}')
        if code == 1 and not INT64_MIN <= v <= INT64_MAX:
            raise _proto(f'{where}: tuple "{tag}" holds {v}, outside the signed 64-bit range of an int')
        if code == 2:
            v = float(v)
        elif code == 6:
            v = from_wire(v, f'{where} > {tag}', depth + 1)
        out.append((tag, v))
    m = Message()
    m.extend(out)
    return m


# ---- frames -------------------------------------------------------------------------------------

def encode_frame(frame, max_frame=MAX_FRAME):
    """One frame (a list starting with its type), length prefix included."""
    body = msgpack.packb(frame, use_bin_type=True)
    if len(body) > max_frame:
        raise _proto(f'frame of {len(body)} bytes exceeds the limit of {max_frame} bytes')
    return struct.pack('>I', len(body)) + body


def _no_ext(code, data):
    raise ValueError(f'extension type {code} is not used by the protocol')


def _no_map(pairs):
    raise ValueError('maps are not used by the protocol')


def decode_payload(payload):
    """One frame's payload (no length prefix) to a list; EPROTO when it is not a frame."""
    try:
        v = msgpack.unpackb(payload, raw=False, ext_hook=_no_ext, object_pairs_hook=_no_map, strict_map_key=False)
    except Exception as e:  # msgpack raises several types: all mean "not a frame"
        raise _proto(f'frame is not valid MessagePack: {e}') from None
    if not isinstance(v, list) or not v or type(v[0]) is not int:
        raise _proto(f'a frame must be an array starting with its type, got {type_of(v)}')
    return v


def _field(f, i, name, kind):
    v = f[i] if i < len(f) else None
    ok = {'int': lambda: type(v) is int, 'str': lambda: isinstance(v, str),
          'optstr': lambda: v is None or isinstance(v, str)}[kind]()
    if not ok:
        fname = FRAME_NAMES[f[0]] if 0 <= f[0] < len(FRAME_NAMES) else f'frame {f[0]}'
        raise _proto(f'{fname} frame: field {name} must be {kind}, got {type_of(v)}')
    return v


def parse_address(addr, default_daemon=None):
    """'daemon:/path' -> (daemon, path). A bare '/path' needs a default daemon."""
    if not isinstance(addr, str):
        raise MetanetError('EBADPATH', f'address must be a string, got {type_of(addr)}')
    colon = addr.find(':')
    if colon > 0 and '/' not in addr[:colon]:
        daemon, path = addr[:colon], addr[colon + 1:]
    elif addr.startswith('/') and default_daemon:
        daemon, path = default_daemon, addr
    else:
        raise MetanetError('EBADPATH', f'bad address "{addr}": use "daemon:/path" (or Client(daemon=...) for /path)')
    if not NAME_RE.match(daemon):
        raise MetanetError('EBADPATH', f'bad address "{addr}": daemon name must be 1-64 of A-Z a-z 0-9 _ . -')
    return daemon, path


# ---- the client ---------------------------------------------------------------------------------

_instances = itertools.count(1)


def _default_name():
    n = next(_instances)
    return f'py-{os.getpid()}' if n == 1 else f'py-{os.getpid()}-{n}'


class Client:
    """Connections to MetaNet daemons, one per daemon, opened on first use.

    name: this process's name on the wire (HELLO; replies are addressed to it), default py-<pid>
    (py-<pid>-N for further clients in one process). It need not be unique: a daemon routes each
    connection by a name of its own (NAME.PID) and rewrites our reply-tos to it.
    dir: the socket directory, else $METANET_DIR, else /run/metanet.
    daemon: the daemon for bare '/path' addresses (optional).
    """

    def __init__(self, name=None, dir=None, daemon=None, max_frame=MAX_FRAME):
        self.name = name or _default_name()
        if not NAME_RE.match(self.name):
            raise MetanetError('ECONFIG', f'client name "{self.name}" must be 1-64 of A-Z a-z 0-9 _ . -, '
                                          f'starting with a letter or digit')
        self.dir = dir or os.environ.get('METANET_DIR') or '/run/metanet'
        self.daemon = daemon
        self.max_frame = max_frame
        self._lock = threading.RLock()
        self._conns = {}
        self._listeners = {}  # lid -> Listener
        self._monitors = {}  # key -> Monitor
        self._replies = {}  # reply number -> _Call
        self._lids = itertools.count(1)
        self._reply_ids = itertools.count(1)
        self._monitor_keys = itertools.count(1)
        self._reattaching = set()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix=f'metanet-{self.name}-listener')
        self._events = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f'metanet-{self.name}-monitor')
        self._closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- sending ----------------------------------------------------------------------------------

    def send(self, addr, tuples=(), wait=True, timeout=30):
        """Send to `daemon:/path`. wait=True: the daemon's RESULT as a dict (delivered, listeners,
        stopped, stopped_by, errors, timed_out). wait=False: pipelined (id 0), returns None and
        nothing is answered, not even errors."""
        daemon, path = parse_address(addr, self.daemon)
        wire = to_wire(self._qualify(Message(tuples)))
        conn = self._conn(daemon)
        if not wait:
            conn.write([SEND, 0, path, wire])
            return None
        return _result(conn.request([SEND, 0, path, wire]).result_or_raise(timeout, f'SEND {addr}'))

    def call(self, addr, tuples=(), timeout=5):
        """Request/reply: send with a `reply-to` naming a mailbox of this client and return the reply."""
        daemon, path = parse_address(addr, self.daemon)
        n = next(self._reply_ids)
        waiter = _Call()
        msg = Message(tuples).without('reply-to')
        msg.append(('reply-to', f'{self.name}:{REPLY_PREFIX}{n}'))
        wire = to_wire(msg)
        with self._lock:
            self._replies[n] = waiter
        try:
            conn = self._conn(daemon)
            conn.request([SEND, 0, path, wire]).add_done_callback(waiter.on_result)
            return waiter.wait(timeout, addr)
        finally:
            with self._lock:
                self._replies.pop(n, None)

    def _qualify(self, msg):
        """A bare reply-to path names this client on the other side (`name:/path`)."""
        rt = msg.get('reply-to')
        if isinstance(rt, str) and rt.startswith('/'):
            msg = Message([(t, f'{self.name}:{v}' if t == 'reply-to' else v) for t, v in msg])
        return msg

    # -- listening --------------------------------------------------------------------------------

    def listen(self, addr, fn, position='append', identity=None, timeout_ms=0, on_timeout='continue', name=None,
               timeout=10):
        """Put fn(msg, ctx) into the chain of `daemon:/path`. fn returns 'stop' or None ('continue');
        it may call ctx.reply(tuples). An exception is reported to the daemon (the chain goes on).
        position: 'append', 'prepend', ('before', identity tuples) or ('after', identity tuples).
        timeout_ms: how long the daemon waits for each verdict (0: its default, 1000 ms);
        on_timeout: 'continue' (fail-open) or 'stop' (fail-closed). Returns a Listener handle."""
        daemon, path = parse_address(addr, self.daemon)
        if on_timeout not in (CONTINUE, STOP):
            raise MetanetError('ECONFIG', f'on_timeout must be "continue" or "stop", got {on_timeout!r}')
        if type(timeout_ms) is not int or timeout_ms < 0:
            raise MetanetError('ECONFIG', f'timeout_ms must be an int >= 0, got {timeout_ms!r}')
        lis = Listener(self, next(self._lids), daemon, path, fn, Message(identity), _position(position),
                       timeout_ms, on_timeout, name or getattr(fn, '__name__', None) or 'anonymous')
        with self._lock:
            self._listeners[lis.lid] = lis
        try:
            self._attach(self._conn(daemon), lis, timeout)
        except BaseException:
            with self._lock:
                self._listeners.pop(lis.lid, None)
            raise
        return lis

    def _attach(self, conn, lis, timeout):
        frame = [LISTEN, 0, lis.path, lis.lid, to_wire(lis.identity), lis.position, lis.timeout_ms,
                 lis.on_timeout, lis.name]
        ok = conn.request(frame).result_or_raise(timeout, f'LISTEN {lis.daemon}:{lis.path}')
        lis.id = ok[2] if len(ok) > 2 else None

    def unlisten(self, listener, timeout=5):
        """Take a listener (the handle listen() returned, or its lid) out of the daemon's chain."""
        lid = listener.lid if isinstance(listener, Listener) else listener
        with self._lock:
            lis = self._listeners.pop(lid, None)
            conn = self._conns.get(lis.daemon) if lis else None
        if conn and not conn.closed:
            conn.request([UNLISTEN, 0, lid]).result_or_raise(timeout, f'UNLISTEN {lid}')

    def monitor(self, pattern, fn, timeout=10):
        """Stream the daemon's traffic on mailboxes matching `daemon:PATTERN` (`*` one segment,
        `**` any number) to fn(path, msg, listened). Returns a Monitor handle (close() stops it)."""
        daemon, pat = parse_address(pattern, self.daemon)
        mon = Monitor(self, next(self._monitor_keys), daemon, pat, fn)
        with self._lock:
            self._monitors[mon.key] = mon
        try:
            self._watch(self._conn(daemon), mon, timeout)
        except BaseException:
            with self._lock:
                self._monitors.pop(mon.key, None)
            raise
        return mon

    def _watch(self, conn, mon, timeout):
        def hook(frame):  # runs in the reader thread before any EVENT that follows the OK
            if frame[0] == OK and len(frame) > 2 and type(frame[2]) is int:
                mon.id = frame[2]
                conn.sinks[mon.id] = mon

        conn.request([MONITOR, 0, mon.pattern], hook).result_or_raise(timeout, f'MONITOR {mon.daemon}:{mon.pattern}')

    def unmonitor(self, monitor, timeout=5):
        with self._lock:
            mon = self._monitors.pop(monitor.key, None)
            conn = self._conns.get(monitor.daemon) if mon else None
        if conn and not conn.closed and mon.id is not None:
            conn.sinks.pop(mon.id, None)
            conn.request([UNMONITOR, 0, mon.id]).result_or_raise(timeout, f'UNMONITOR {mon.id}')

    def ls(self, path=None, timeout=10):
        """A daemon's mailboxes and their listeners: ls('daemon'), ls('daemon:/path')."""
        if path is None:
            if not self.daemon:
                raise MetanetError('EBADPATH', 'ls() needs a daemon: ls("daemon") or ls("daemon:/path")')
            path = self.daemon
        daemon, sub = (path, None) if NAME_RE.match(path) else parse_address(path, self.daemon)
        ok = self._conn(daemon).request([LS, 0, sub or None]).result_or_raise(timeout, f'LS {path}')
        return from_wire(ok[2] if len(ok) > 2 else None, 'LS reply')

    # -- connections ------------------------------------------------------------------------------

    def _conn(self, daemon):
        with self._lock:
            if self._closed:
                raise MetanetError('ECLOSED', f'client {self.name} is closed')
            c = self._conns.get(daemon)
            if c is None or c.closed:
                c = self._conns[daemon] = _Conn(self, daemon)
            return c

    def _dropped(self, conn):
        with self._lock:
            if self._conns.get(conn.daemon) is conn:
                del self._conns[conn.daemon]
            wanted = any(x.daemon == conn.daemon for x in self._listeners.values()) or any(
                m.daemon == conn.daemon for m in self._monitors.values())
            if self._closed or not wanted or conn.daemon in self._reattaching:
                return
            self._reattaching.add(conn.daemon)
        threading.Thread(target=self._reattach, args=(conn.daemon,), daemon=True,
                         name=f'metanet-{self.name}-reattach-{conn.daemon}').start()

    def _reattach(self, daemon):
        """The daemon went away: reconnect with backoff and put our listeners and monitors back."""
        delay = 0.05
        try:
            while not self._closed:
                time.sleep(delay)
                try:
                    conn = self._conn(daemon)
                    with self._lock:
                        listeners = [x for x in self._listeners.values() if x.daemon == daemon]
                        monitors = [m for m in self._monitors.values() if m.daemon == daemon]
                    for lis in listeners:
                        self._attach(conn, lis, 10)
                    for mon in monitors:
                        self._watch(conn, mon, 10)
                    return
                except MetanetError:
                    delay = min(delay * 2, 2.0)
        finally:
            with self._lock:
                self._reattaching.discard(daemon)

    def _reply_waiter(self, path):
        """The call() waiting on this mailbox of ours (/system/reply/N), if any."""
        if not path.startswith(REPLY_PREFIX):
            return None
        try:
            n = int(path[len(REPLY_PREFIX):])
        except ValueError:
            return None
        with self._lock:
            return self._replies.get(n)

    def close(self):
        """Close every connection: the daemons drop this client's listeners and monitors."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conns = list(self._conns.values())
            self._conns.clear()
        for c in conns:
            c.close()
        for c in conns:
            c.reader.join(2)
        self._pool.shutdown(wait=False)
        self._events.shutdown(wait=False)


def _position(p):
    if p in ('append', 'prepend'):
        return p
    if isinstance(p, (tuple, list)) and len(p) == 2 and p[0] in ('before', 'after'):
        return [p[0], to_wire(p[1].identity if isinstance(p[1], Listener) else p[1])]
    raise MetanetError('ECONFIG', f"position must be 'append', 'prepend', ('before', tuples) or ('after', tuples), "
                                  f'got {p!r}')


def _result(f):
    stopped_by = f[5] if len(f) > 5 else None
    return {
        'delivered': len(f) > 2 and f[2] is True,
        'listeners': f[3] if len(f) > 3 and type(f[3]) is int else 0,
        'stopped': len(f) > 4 and f[4] is True,
        'stopped_by': from_wire(stopped_by, 'RESULT stoppedBy') if isinstance(stopped_by, list) else None,
        'errors': [str(e) for e in f[6]] if len(f) > 6 and isinstance(f[6], list) else [],
        'timed_out': f[7] if len(f) > 7 and type(f[7]) is int else 0,
    }


class Listener:
    """A listener attached with Client.listen(); `id` is the daemon's id for it."""

    def __init__(self, client, lid, daemon, path, fn, identity, position, timeout_ms, on_timeout, name):
        self.client, self.lid, self.daemon, self.path, self.fn = client, lid, daemon, path, fn
        self.identity, self.position, self.timeout_ms, self.on_timeout, self.name = (
            identity, position, timeout_ms, on_timeout, name)
        self.id = None

    def remove(self):
        self.client.unlisten(self)

    def __repr__(self):
        return f'<Listener {self.name} lid={self.lid} on {self.daemon}:{self.path}>'


class Monitor:
    def __init__(self, client, key, daemon, pattern, fn):
        self.client, self.key, self.daemon, self.pattern, self.fn = client, key, daemon, pattern, fn
        self.id = None

    def close(self):
        self.client.unmonitor(self)


class Context:
    """What a listener gets besides the message: where it came from, and reply()."""

    def __init__(self, client, conn, path, msg, listener):
        self.client, self.daemon, self.path, self.message, self.listener = client, conn.daemon, path, msg, listener
        self._conn = conn

    @property
    def reply_to(self):
        rt = self.message.get('reply-to')
        return rt if isinstance(rt, str) else None

    def reply(self, tuples=()):
        """Send tuples to the message's reply-to. Travels before this listener's VERDICT."""
        rt = self.reply_to
        if rt is None:
            raise MetanetError('ENOTUPLE', f'message to {self.daemon}:{self.path} has no reply-to')
        colon = rt.find(':')
        daemon, path = (rt[:colon], rt[colon + 1:]) if colon > 0 and '/' not in rt[:colon] else (None, rt)
        msg = Message(tuples)
        if daemon == self.client.name:
            waiter = self.client._reply_waiter(path)
            if waiter is not None:
                waiter.on_reply(msg)
        elif daemon is None or daemon == self._conn.peer or daemon == self._conn.daemon:
            self._conn.write([SEND, 0, path, to_wire(self.client._qualify(msg))])
        else:
            self.client.send(f'{daemon}:{path}', msg, wait=False)


class _Call:
    """A call() waiting for its reply, and for the RESULT of its SEND (errors, nobody listening)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.reply = None
        self.result = None
        self.error = None

    def on_reply(self, msg):
        with self.cond:
            if self.reply is not None:
                return False
            self.reply = msg
            self.cond.notify_all()
            return True

    def on_result(self, fut):
        with self.cond:
            try:
                self.result = _result(fut.result())
            except Exception as e:
                self.error = e
            self.cond.notify_all()

    def wait(self, timeout, addr):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if self.reply is not None:
                    return self.reply
                if self.error is not None:
                    raise self.error
                if self.result is not None and not self.result['delivered']:
                    raise MetanetError('ENOLISTENER', f'nobody listens on {addr}')
                left = deadline - time.monotonic()
                if left <= 0:
                    errs = self.result['errors'] if self.result else []
                    raise MetanetError('ETIMEDOUT', f'no reply from {addr} within {timeout} s'
                                       + (f' (listener errors: {"; ".join(errs)})' if errs else ''))
                self.cond.wait(left)


class _Pending(Future):
    def result_or_raise(self, timeout, what):
        try:
            return self.result(timeout)
        except FutureTimeout:
            raise MetanetError('ETIMEDOUT', f'{what}: no answer within {timeout} s') from None


class _Conn:
    """One connection to one daemon, with a reader thread."""

    def __init__(self, client, daemon):
        self.client = client
        self.daemon = daemon
        self.path = os.path.join(client.dir, f'{daemon}.sock')
        self.peer = None
        self.closed = False
        self.closed_with = None
        self.pending = {}  # id -> (_Pending, hook)
        self.sinks = {}  # monitor id -> Monitor
        self._ids = itertools.count(1)
        self._wlock = threading.Lock()
        self._plock = threading.Lock()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except OSError as e:
            sock.close()
            why = {FileNotFoundError: 'no socket', ConnectionRefusedError: 'socket refuses connections (stale)'}.get(
                type(e), e.strerror or str(e))
            raise MetanetError('ENODAEMON', f'daemon "{daemon}" is not running in {client.dir} ({self.path}: {why})'
                               ) from None
        self.sock = sock
        self.write([HELLO, PROTOCOL_VERSION, client.name, os.getpid()])
        self.reader = threading.Thread(target=self._run, daemon=True, name=f'metanet-{client.name}-{daemon}')
        self.reader.start()

    # -- out --

    def write(self, frame):
        data = encode_frame(frame, self.client.max_frame)
        with self._wlock:
            if self.closed:
                raise self.closed_with
            try:
                self.sock.sendall(data)
            except OSError as e:
                raise MetanetError('EUNREACHABLE', f'daemon "{self.daemon}": {e}') from None

    def request(self, frame, hook=None):
        fut = _Pending()
        with self._plock:
            if self.closed:
                fut.set_exception(self.closed_with)
                return fut
            rid = next(self._ids)
            frame[1] = rid
            self.pending[rid] = (fut, hook)
        try:
            self.write(frame)
        except MetanetError as e:
            with self._plock:
                self.pending.pop(rid, None)
            if not fut.done():
                fut.set_exception(e)
        return fut

    def _try_write(self, frame):
        try:
            self.write(frame)
        except MetanetError:
            pass

    # -- in --

    def _run(self):
        why = MetanetError('EUNREACHABLE', f'connection to daemon "{self.daemon}" closed')
        buf = bytearray()
        try:
            while True:
                chunk = self.sock.recv(1 << 18)
                if not chunk:
                    break
                buf += chunk
                off = 0
                while len(buf) - off >= 4:
                    n = struct.unpack_from('>I', buf, off)[0]
                    if n == 0:
                        raise _proto('empty frame')
                    if n > self.client.max_frame:
                        raise _proto(f'frame of {n} bytes exceeds the limit of {self.client.max_frame} bytes')
                    if len(buf) - off - 4 < n:
                        break
                    frame = decode_payload(bytes(buf[off + 4:off + 4 + n]))
                    off += 4 + n
                    self._handle(frame)
                del buf[:off]
        except MetanetError as e:  # the stream cannot be trusted: say why and close
            why = e
            if not getattr(e, 'from_peer', False):
                self._try_write([ERROR, 0, e.code, e.message])
        except OSError as e:
            if not self.closed:
                why = MetanetError('EUNREACHABLE', f'daemon "{self.daemon}": {e}')
        finally:
            self._shutdown(why)

    def _handle(self, f):
        t = f[0]
        if self.peer is None and t != HELLO:
            raise _proto(f'expected HELLO first, got {FRAME_NAMES[t] if 0 <= t < len(FRAME_NAMES) else t}')
        try:
            if t == HELLO:
                if self.peer is not None:
                    raise _proto('HELLO sent twice')
                version = _field(f, 1, 'version', 'int')
                if version != PROTOCOL_VERSION:
                    raise _proto(f'unsupported protocol version {version} (this side speaks {PROTOCOL_VERSION})')
                self.peer = _field(f, 2, 'name', 'str')
            elif t in (RESULT, OK):
                self._settle(_field(f, 1, 'id', 'int'), f, None)
            elif t == ERROR:
                rid = _field(f, 1, 'id', 'int')
                err = MetanetError(_field(f, 2, 'code', 'str'), f'{self.daemon}: {_field(f, 3, "message", "str")}')
                if rid == 0:
                    err.from_peer = True
                    raise err
                self._settle(rid, f, err)
            elif t == SEND:
                self._on_send(f)
            elif t == DELIVER:
                self._on_deliver(f)
            elif t == EVENT:
                mid = _field(f, 1, 'monitor id', 'int')
                path = _field(f, 2, 'path', 'str')
                msg = from_wire(f[3] if len(f) > 3 else None, f'EVENT {path}')
                mon = self.sinks.get(mid)
                if mon is not None:
                    self.client._events.submit(_run_monitor, mon, path, msg, len(f) > 4 and f[4] is True)
            elif t == VERDICT:
                pass  # this client delivers to no one: nothing waits for a verdict
            elif t == LS:
                rid = _field(f, 1, 'id', 'int')
                self.write([OK, rid, to_wire({'daemon': self.client.name, 'pid': os.getpid()})])
            elif t in (UNLISTEN, UNMONITOR):
                self.write([OK, _field(f, 1, 'id', 'int'), None])
            elif t in (LISTEN, MONITOR):
                rid = _field(f, 1, 'id', 'int')
                self.write([ERROR, rid, 'ENOMAILBOX', f'{self.client.name} is a Python client: it has no mailboxes'])
            else:
                raise _proto(f'unknown frame type {t}')
        except MetanetError as e:
            # A frame we cannot make sense of: answer a request with ERROR and keep the connection;
            # anything else (HELLO, answers, a connection error) closes it.
            rid = f[1] if len(f) > 1 and type(f[1]) is int else None
            if t == DELIVER and rid is not None and rid > 0:
                self.write([VERDICT, rid, CONTINUE, f'{e.code}: {e.message}'])
            elif t == SEND and rid == 0 and not getattr(e, 'from_peer', False):
                # one-way: nothing is answered, the connection stays (we have no /system/error: say it here)
                print(f'metanet: one-way SEND from {self.daemon} refused: {e.code}: {e.message}', file=sys.stderr)
            elif rid is not None and rid > 0 and t not in (HELLO, RESULT, OK, ERROR):
                self.write([ERROR, rid, e.code, e.message])
            else:
                raise

    def _settle(self, rid, f, err):
        with self._plock:
            fut, hook = self.pending.pop(rid, (None, None))
        if fut is None:
            return
        if err is not None:
            fut.set_exception(err)
            return
        if hook:
            hook(f)
        fut.set_result(f)

    def _on_send(self, f):
        rid = _field(f, 1, 'id', 'int')
        if rid < 0:
            raise _proto(f'SEND frame: field id must be an integer >= 0, got {rid}')
        path = _field(f, 2, 'path', 'str')
        msg = from_wire(f[3] if len(f) > 3 else None, f'SEND {path}')
        waiter = self.client._reply_waiter(path)
        if rid > 0:  # answered before the caller wakes: a client closing right after its call must
            # not leave the daemon waiting for this RESULT (README.md, "Daemon behaviour this client relies on")
            self._try_write([RESULT, rid, waiter is not None, 1 if waiter else 0, False, None, [], 0])
        if waiter is not None:
            waiter.on_reply(msg)

    def _on_deliver(self, f):
        did = _field(f, 1, 'delivery id', 'int')
        lid = _field(f, 2, 'lid', 'int')
        path = _field(f, 3, 'path', 'str')
        msg = from_wire(f[4] if len(f) > 4 else None, f'DELIVER {path}')
        lis = self.client._listeners.get(lid)
        if lis is None:
            self.write([VERDICT, did, CONTINUE, f'no listener {lid} in {self.client.name}'])
            return
        try:
            self.client._pool.submit(self._run_listener, did, lis, path, msg)
        except RuntimeError:  # the client is closing
            self._try_write([VERDICT, did, CONTINUE, f'{self.client.name} is closing'])

    def _run_listener(self, did, lis, path, msg):
        error = None
        try:
            v = lis.fn(msg, Context(self.client, self, path, msg, lis))
            if v is None or v == CONTINUE:
                verdict = CONTINUE
            elif v == STOP:
                verdict = STOP
            else:
                verdict, error = CONTINUE, f'listener returned {v!r}, not a verdict'
        except Exception as e:
            verdict, error = CONTINUE, f'{type(e).__name__}: {e}'
        self._try_write([VERDICT, did, verdict, error])

    def _shutdown(self, why):
        with self._plock:
            if not self.closed:
                self.closed = True
                self.closed_with = why
            pending = list(self.pending.values())
            self.pending.clear()
        for fut, _ in pending:
            if not fut.done():
                fut.set_exception(self.closed_with)
        try:
            self.sock.close()
        except OSError:
            pass
        self.client._dropped(self)

    def close(self):
        with self._plock:
            if not self.closed:
                self.closed = True
                self.closed_with = MetanetError('ECLOSED', f'connection to daemon "{self.daemon}" closed by this side')
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _run_monitor(mon, path, msg, listened):
    try:
        mon.fn(path, msg, listened)
    except Exception as e:  # a monitor has no verdict to report to: say it here
        print(f'metanet: monitor {mon.daemon}:{mon.pattern} raised {type(e).__name__}: {e}', file=sys.stderr)

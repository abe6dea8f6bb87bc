"""Tests of the Python MetaNet client: the wire test vectors, then a real TypeScript daemon.

Run: cd clients/python && /usr/bin/python3 -m unittest discover -v -p 'test_*.py'
"""

import json
import os
import queue
import random
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import msgpack

import metanet
from metanet import Client, Message, MetanetError, Typed

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, '..', '..'))
VECTORS = os.path.join(ROOT, 'docs', 'wire-vectors.json')
FIXTURE = 'test/ipc/fixtures/daemon.ts'
READY_TIMEOUT = 20


def from_json(v):
    """The vectors' JSON: {"$int": "..."} is an int64, {"$bytes": "hex"} bytes."""
    if isinstance(v, list):
        return [from_json(x) for x in v]
    if isinstance(v, dict):
        if set(v) == {'$int'}:
            return int(v['$int'])
        if set(v) == {'$bytes'}:
            return bytes.fromhex(v['$bytes'])
        raise ValueError(f'unexpected object in vectors: {v}')
    return v


def strict(v):
    """A form where equal means equal types too (True != 1, 2.0 != 2, b'' != '')."""
    if isinstance(v, (list, tuple)):
        return ('list', [strict(x) for x in v])
    return (type(v).__name__, v)


def until(pred, timeout=5.0, what='condition'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.01)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}')


def same_but_int_width(ts, py):
    """Byte-equal, except where the TypeScript side wrote a positive int64 (0xd3) and msgpack-python a
    uint64 (0xcf) for the same value: both valid, both read back as the same int (the doc allows any width)."""
    if len(ts) != len(py):
        return False
    i = 0
    while i < len(ts):
        if ts[i] != py[i]:
            if not (ts[i] == 0xD3 and py[i] == 0xCF and ts[i + 1] < 0x80 and ts[i + 1:i + 9] == py[i + 1:i + 9]):
                return False
            i += 9
            continue
        i += 1
    return True


class VectorTests(unittest.TestCase):
    """docs/wire-vectors.json: plain vectors (encoders write these bytes), "decode": "only" (bytes another
    encoder may write: decoders read them) and "refused" (bytes a receiver must refuse with that code)."""

    @classmethod
    def setUpClass(cls):
        with open(VECTORS) as f:
            vectors = json.load(f)
        cls.exact = [v for v in vectors if not v.get('decode') and not v.get('refused')]
        cls.decode_only = [v for v in vectors if v.get('decode') == 'only']
        cls.refused = [v for v in vectors if v.get('refused')]
        cls.vectors = cls.exact + cls.decode_only

    def test_vectors_decode_to_their_frames(self):
        self.assertGreaterEqual(len(self.exact), 21)
        self.assertGreaterEqual(len(self.decode_only), 1)
        for v in self.vectors:
            with self.subTest(v['name']):
                raw = bytes.fromhex(v['hex'])
                (n,) = struct.unpack('>I', raw[:4])
                self.assertEqual(n, len(raw) - 4)
                frame = metanet.decode_payload(raw[4:])
                self.assertEqual(strict(frame), strict(from_json(v['frame'])))

    def test_refused_vectors_are_refused(self):
        self.assertGreaterEqual(len(self.refused), 3)
        for v in self.refused:
            with self.subTest(v['name']):
                raw = bytes.fromhex(v['hex'])
                self.assertEqual(struct.unpack('>I', raw[:4])[0], len(raw) - 4)
                with self.assertRaises(MetanetError) as e:
                    metanet.from_wire(metanet.decode_payload(raw[4:])[3])
                self.assertEqual(e.exception.code, v['refused'])

    def test_vectors_round_trip(self):
        for v in self.exact:
            with self.subTest(v['name']):
                frame = from_json(v['frame'])
                raw = metanet.encode_frame(frame)
                self.assertEqual(struct.unpack('>I', raw[:4])[0], len(raw) - 4)
                self.assertEqual(strict(metanet.decode_payload(raw[4:])), strict(frame))

    def test_python_encodes_the_vectors_byte_for_byte_but_for_int_width(self):
        for v in self.exact:
            with self.subTest(v['name']):
                ours = metanet.encode_frame(from_json(v['frame']))
                self.assertTrue(same_but_int_width(bytes.fromhex(v['hex']), ours), ours.hex())

    def test_fuzzed_frames_fail_only_with_metanet_errors(self):
        seed = int(os.environ.get('FUZZ_SEED', time.time_ns() % 100000))
        rnd = random.Random(seed)
        payloads = [bytes.fromhex(v['hex'])[4:] for v in self.vectors]
        decoded = 0
        for _ in range(3000):
            p = bytearray(rnd.choice(payloads))
            for _ in range(rnd.randint(1, 4)):
                op, i = rnd.randrange(3), rnd.randrange(len(p))
                if op == 0:
                    p[i] = rnd.randrange(256)
                elif op == 1:
                    del p[i:]
                else:
                    p[i:i] = bytes([rnd.randrange(256)])
                if not p:
                    p = bytearray(b'\x90')
            try:
                f = metanet.decode_payload(bytes(p))
                for field in f[1:]:
                    if isinstance(field, list):
                        metanet.from_wire(field)
                decoded += 1
            except MetanetError as e:
                self.assertEqual(e.code, 'EPROTO', f'seed {seed}')
        self.assertGreater(decoded, 0)

    def test_random_messages_round_trip(self):
        seed = int(os.environ.get('FUZZ_SEED', time.time_ns() % 100000))
        rnd = random.Random(seed)

        def value(depth):
            k = rnd.randrange(8 if depth < 4 else 7)
            return [lambda: ''.join(rnd.choice('aé€\x00z') for _ in range(rnd.randrange(5))),
                    lambda: rnd.randint(-(2**63), 2**63 - 1), lambda: rnd.randint(-200, 200),
                    lambda: rnd.uniform(-1e9, 1e9), lambda: rnd.random() < 0.5,
                    lambda: rnd.randbytes(rnd.randrange(6)), lambda: None,
                    lambda: [(rnd.choice('abc'), value(depth + 1)) for _ in range(rnd.randrange(4))]][k]()

        for _ in range(300):
            m = Message([(rnd.choice(['a', 'b', 'reply-to', 'ü']), value(0)) for _ in range(rnd.randrange(6))])
            raw = metanet.encode_frame([1, 7, '/x', metanet.to_wire(m)])
            back = metanet.from_wire(metanet.decode_payload(raw[4:])[3])
            self.assertEqual(strict(back), strict(m), f'seed {seed}')

    def test_vector_tuples_decode_to_messages(self):
        where = {1: 3, 5: 4, 10: 3}  # SEND, DELIVER, EVENT: the field holding tuples

        def floats(w):  # a float tuple may travel as an int (2.0 as 2): compare as floats
            return [[t, c, floats(v) if c == 6 else float(v) if c == 2 else v] for t, c, v in w]

        for v in self.vectors:
            frame = metanet.decode_payload(bytes.fromhex(v['hex'])[4:])
            if frame[0] not in where:
                continue
            with self.subTest(v['name']):
                m = metanet.from_wire(frame[where[frame[0]]])
                self.assertEqual(strict(metanet.to_wire(m)), strict(floats(frame[where[frame[0]]])))
        send = metanet.decode_payload(bytes.fromhex(self.vectors[1]['hex'])[4:])
        m = metanet.from_wire(send[3])
        self.assertEqual(m.get('big'), 1099511627776)
        self.assertIs(type(m.get('f')), float)
        self.assertEqual(m.get('b'), b'\xde\xad')
        self.assertIsNone(m.get('z', 'absent'))
        self.assertEqual(m.get('l'), [('a', 1)])
        self.assertIsInstance(m.get('l'), Message)

    def test_float_code_with_an_int_value_decodes_as_float(self):
        m = metanet.from_wire([['f', 2, 2]])
        self.assertEqual(strict(m.get('f')), ('float', 2.0))

    def test_ints_beyond_32_bits_travel_as_64_bit_ints(self):
        for n, head in ((2**40, 0xCF), (-(2**40), 0xD3), (2**63 - 1, 0xCF), (-(2**63), 0xD3)):
            body = metanet.encode_frame([1, 0, '/a', metanet.to_wire({'n': n})])[4:]
            self.assertIn(bytes([head]) + struct.pack('>q' if head == 0xD3 else '>Q', n), body)
            self.assertEqual(metanet.from_wire(metanet.decode_payload(body)[3]).get('n'), n)
        with self.assertRaises(MetanetError) as e:
            metanet.to_wire({'n': 2**63})
        self.assertEqual(e.exception.code, 'ETUPLETYPE')

    def test_int_tuples_beyond_signed_64_bits_are_refused(self):
        for v in (2**63, -(2**63) - 1):
            with self.assertRaises(MetanetError) as e:
                metanet.from_wire([['n', 1, v]])
            self.assertEqual(e.exception.code, 'EPROTO')
        self.assertEqual(metanet.from_wire([['n', 1, 2**63 - 1]]).get('n'), 2**63 - 1)

    def test_type_inference_and_typed(self):
        w = metanet.to_wire([('s', 'x'), ('i', 1), ('f', 1.5), ('t', True), ('b', b'\x00'), ('z', None),
                             ('l', {'a': 1}), ('F', Typed('float', 2)), ('I', Typed('int', 3.0))])
        self.assertEqual(strict(w), strict([['s', 0, 'x'], ['i', 1, 1], ['f', 2, 1.5], ['t', 3, True],
                                            ['b', 4, b'\x00'], ['z', 5, None], ['l', 6, [['a', 1, 1]]],
                                            ['F', 2, 2.0], ['I', 1, 3]]))
        for bad in (Typed('int', 'x'), Typed('bool', 1), object()):
            with self.assertRaises(MetanetError) as e:
                metanet.to_wire({'x': bad})
            self.assertEqual(e.exception.code, 'ETUPLETYPE')

    def test_message_helpers(self):
        m = Message([('a', 1), ('b', 2), ('a', 3)])
        self.assertEqual(m.get('a'), 1)
        self.assertEqual(m.all('a'), [1, 3])
        self.assertEqual(m.get('zz', 'd'), 'd')
        self.assertEqual(m.without('a'), [('b', 2)])
        self.assertEqual(Message({'x': {'y': 1}}).get('x').get('y'), 1)
        with self.assertRaises(MetanetError):
            Message([('', 1)])

    def test_malformed_input_is_eproto(self):
        bad_payloads = [b'\xc1', msgpack.packb({'a': 1}), msgpack.packb('x'), msgpack.packb([]),
                        msgpack.packb(['x', 1]), msgpack.packb([1, 2]) + b'\x01', msgpack.ExtType(1, b'x')]
        for p in bad_payloads:
            with self.subTest(p):
                if isinstance(p, msgpack.ExtType):
                    p = msgpack.packb([1, p])
                with self.assertRaises(MetanetError) as e:
                    f = metanet.decode_payload(p)
                    metanet.from_wire(f[1])
                self.assertEqual(e.exception.code, 'EPROTO')
        bad_tuples = [[['a', 1]], [['a', 9, 1]], [['', 0, 'x']], [['a', 1, 'x']], [['a', 1, True]],
                      [['a', 2, 'x']], [['a', 3, 0]], [['a', 4, 'x']], [['a', 5, 0]], [['a', 6, 'x']], 'x']
        for t in bad_tuples:
            with self.subTest(t):
                with self.assertRaises(MetanetError) as e:
                    metanet.from_wire(t)
                self.assertEqual(e.exception.code, 'EPROTO')
        deep = [['l', 5, None]]
        for _ in range(40):
            deep = [['l', 6, deep]]
        with self.assertRaises(MetanetError) as e:
            metanet.from_wire(deep)
        self.assertIn('nested deeper', e.exception.message)


class Fixture:
    """The TypeScript fixture daemon, in its own temp dir. Every line it prints is kept."""

    def __init__(self, name, dir):
        self.name, self.dir = name, dir
        self.lines = queue.Queue()
        self.proc = subprocess.Popen(['node', '--import', 'tsx', FIXTURE, name, dir], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.output = []
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise AssertionError(f'daemon {name} not ready in {READY_TIMEOUT} s: {self.output}') from None
            if line is None:
                raise AssertionError(f'daemon {name} exited before ready: {self.output}')
            if line == f'ready {name}':
                return

    def _drain(self):  # keep reading: a full pipe would block the daemon
        for raw in self.proc.stdout:
            line = raw.decode(errors='replace').rstrip('\n')
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stdout.close()


class DaemonTests(unittest.TestCase):
    """Against one real daemon for the class (it takes ~2 s to start); clients are per test."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix='metanet-py-')
        cls.name = f'fx{os.getpid()}'
        cls.daemon = Fixture(cls.name, cls.dir)

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def client(self, **kw):
        c = Client(dir=self.dir, **kw)
        self.clients.append(c)
        return c

    def a(self, path):
        return f'{self.name}:{path}'

    def chain_listeners(self, c):
        ls = c.ls(self.a('/chain'))
        box = [b for b in ls.all('mailbox') if b.get('path') == '/chain'][0]
        return box.all('listener')

    def test_echo_every_tuple_type(self):
        c = self.client()
        sent = [('s', 'héllo'), ('i', 5), ('big', 2**40), ('neg', -3), ('f', 2.0), ('half', 2.5), ('t', True),
                ('no', False), ('b', b'\x00\xffdata'), ('z', None), ('l', [('a', 1), ('in', [('deep', 'x')])]),
                ('s', 'repeated tag')]
        reply = c.call(self.a('/echo'), sent)
        self.assertEqual(strict(list(reply)), strict(sent + [('from', self.name)]))
        self.assertIs(type(reply.get('f')), float)
        self.assertEqual(reply.all('s'), ['héllo', 'repeated tag'])
        forced = c.call(self.a('/echo'), {'n': Typed('float', 2)})
        self.assertEqual(strict(forced.get('n')), ('float', 2.0))

    def test_send_result(self):
        c = self.client()
        r = c.send(self.a('/echo'), {'x': 1})
        self.assertEqual((r['delivered'], r['listeners'], r['stopped'], r['errors']), (True, 1, False, []))
        r = c.send(self.a('/nobody/here'), {'x': 1})
        self.assertFalse(r['delivered'])
        with self.assertRaises(MetanetError) as e:
            c.call(self.a('/nobody/here'), {'x': 1}, timeout=2)
        self.assertEqual(e.exception.code, 'ENOLISTENER')

    def test_pipelined_10000_then_count(self):
        c = self.client()
        before = c.call(self.a('/count/get')).get('n')
        t0 = time.monotonic()
        for i in range(10000):
            c.send(self.a('/count'), {'i': i}, wait=False)
        n = c.call(self.a('/count/get'), timeout=10).get('n')
        took = time.monotonic() - t0
        self.assertEqual(n - before, 10000)
        print(f'\n  10000 pipelined sends + count/get: {took:.2f} s ({10000 / took:.0f} msg/s)', end=' ')

    def test_prepended_python_listener_stops_the_chain(self):
        py, other = self.client(), self.client()
        seen = []

        def glue(m, ctx):
            seen.append(m.get('q'))
            if ctx.reply_to:
                ctx.reply({'from': 'python'})
            return 'stop'

        lis = py.listen(self.a('/chain'), glue, position='prepend', identity={'app': 'glue'})
        self.assertIsInstance(lis.id, int)
        self.assertEqual(other.call(self.a('/chain'), {'q': 1}).get('from'), 'python')
        self.assertEqual(seen, [1])
        r = other.send(self.a('/chain'), {'q': 2})
        self.assertTrue(r['stopped'])
        self.assertEqual(r['stopped_by'], [('app', 'glue')])
        # ls shows it first in the chain, attached from another process
        first = self.chain_listeners(other)[0]
        self.assertEqual(first.get('name'), 'glue')
        self.assertIn(py.name, first.get('remote'))
        self.assertEqual(first.get('identity'), [('app', 'glue')])
        lis.remove()
        self.assertEqual(other.call(self.a('/chain')).get('from'), 'stock')

    def test_listener_returning_none_lets_stock_answer(self):
        py, other = self.client(), self.client()
        seen = []
        py.listen(self.a('/chain'), lambda m, ctx: seen.append(m.get('q')), position='prepend')
        self.assertEqual(other.call(self.a('/chain'), {'q': 'x'}).get('from'), 'stock')
        self.assertEqual(seen, ['x'])

    def test_listener_that_raises_lets_the_chain_go_on(self):
        py, other = self.client(), self.client()

        def broken(m, ctx):
            raise ValueError('boom')

        py.listen(self.a('/chain'), broken, position='prepend')
        self.assertEqual(other.call(self.a('/chain')).get('from'), 'stock')
        r = other.send(self.a('/chain'))
        self.assertEqual(r['listeners'], 2)
        self.assertTrue(any('boom' in e for e in r['errors']), r['errors'])

    def test_listener_past_its_timeout_lets_stock_answer(self):
        py, other = self.client(), self.client()
        release = threading.Event()

        def sleepy(m, ctx):
            release.wait(2)
            ctx.reply({'from': 'late python'})
            return 'stop'

        py.listen(self.a('/chain'), sleepy, position='prepend', timeout_ms=200)
        t0 = time.monotonic()
        self.assertEqual(other.call(self.a('/chain')).get('from'), 'stock')
        took = time.monotonic() - t0
        release.set()
        self.assertGreaterEqual(took, 0.19)
        self.assertLess(took, 1.5)
        timeout = [x.get('timeout') for x in self.chain_listeners(other) if x.get('name') == 'sleepy']
        self.assertEqual(timeout, [200])

    def test_position_after_and_fail_closed(self):
        py, other = self.client(), self.client()
        order = []
        py.listen(self.a('/chain'), lambda m, ctx: order.append('after-stock'), position=('after', {'stock': True}))
        py.listen(self.a('/chain'), lambda m, ctx: order.append('before-stock'), position=('before', {'stock': True}))
        other.send(self.a('/chain'))
        self.assertEqual(order, ['before-stock', 'after-stock'])
        names = [x.get('remote') is not None for x in self.chain_listeners(other)]
        self.assertEqual(names, [True, False, True])

    def test_monitor_sees_a_message_to_echo(self):
        c, other = self.client(), self.client()
        events = queue.Queue()
        mon = c.monitor(self.a('/echo'), lambda path, m, listened: events.put((path, m, listened)))
        other.send(self.a('/echo'), {'watched': 42})
        path, m, listened = events.get(timeout=5)
        self.assertEqual((path, m.get('watched'), listened), ('/echo', 42, True))
        mon.close()
        other.send(self.a('/echo'), {'watched': 43})
        other.send(self.a('/echo'), {'sync': 1})  # a round trip after which an event would have come
        self.assertTrue(events.empty())

    def test_bad_path_is_ebadpath(self):
        c = self.client()
        for addr in (self.a('no-slash'), self.a('/a//b'), self.a('/sp ace')):
            with self.subTest(addr):
                with self.assertRaises(MetanetError) as e:
                    c.send(addr, {'x': 1})
                self.assertEqual(e.exception.code, 'EBADPATH')
        with self.assertRaises(MetanetError) as e:
            c.listen(self.a('/a//b'), lambda m, ctx: None)
        self.assertEqual(e.exception.code, 'EBADPATH')
        self.assertEqual(c.call(self.a('/echo'), {'still': 'open'}).get('still'), 'open')

    def test_unknown_daemon_is_enodaemon(self):
        c = self.client()
        with self.assertRaises(MetanetError) as e:
            c.call('nosuchdaemon:/echo', {'x': 1})
        self.assertEqual(e.exception.code, 'ENODAEMON')
        self.assertIn('nosuchdaemon', e.exception.message)
        self.assertIn(self.dir, e.exception.message)

    def test_close_removes_the_listener(self):
        py, other = self.client(), self.client()
        py.listen(self.a('/chain'), lambda m, ctx: 'stop', position='prepend', name='leaving')
        self.assertIn('leaving', [x.get('name') for x in self.chain_listeners(other)])
        py.close()
        until(lambda: 'leaving' not in [x.get('name') for x in self.chain_listeners(other)], what='listener removed')
        self.assertEqual(other.call(self.a('/chain')).get('from'), 'stock')
        with self.assertRaises(MetanetError) as e:
            py.send(self.a('/echo'))
        self.assertEqual(e.exception.code, 'ECLOSED')

    def test_listener_calls_back_into_the_daemon(self):
        py, other = self.client(), self.client()

        def relay(m, ctx):
            ctx.reply(ctx.client.call(self.a('/echo'), {'via': 'python'}).without('via'))
            return 'stop'

        py.listen(self.a('/chain'), relay, position='prepend')
        self.assertEqual(other.call(self.a('/chain')).get('from'), self.name)

    def test_bad_frame_from_the_client_closes_only_that_connection(self):
        c = self.client()
        conn = c._conn(self.name)
        with conn._wlock:
            conn.sock.sendall(struct.pack('>I', 3) + b'\xc1\xc1\xc1')
        until(lambda: conn.closed, what='connection closed')
        self.assertEqual(conn.closed_with.code, 'EPROTO')
        self.assertEqual(c.call(self.a('/echo'), {'again': 1}).get('again'), 1)  # a new connection


    def test_two_clients_with_one_name_each_get_their_replies(self):
        # the daemon routes each connection by a name of its own (NAME.PID): a name held by
        # another live connection (a squatter, or a second Client) blocks nobody
        a, b = self.client(name='same-name'), self.client(name='same-name')
        for i in range(10):
            self.assertEqual(a.call(self.a('/echo'), {'who': 'a', 'i': i}).get('who'), 'a')
            self.assertEqual(b.call(self.a('/echo'), {'who': 'b', 'i': i}).get('who'), 'b')

    def test_one_way_send_error_keeps_the_connection(self):
        c = self.client()
        conn = c._conn(self.name)
        conn.write([metanet.SEND, 0, 'no-slash', []])  # not answered, not even with an error
        self.assertEqual(c.call(self.a('/echo'), {'still': 'open'}).get('still'), 'open')
        self.assertIs(c._conn(self.name), conn)

    def test_frames_before_a_malformed_one_are_answered(self):
        c = self.client()
        conn = c._conn(self.name)
        fut = conn.request([metanet.SEND, 0, '/count', []])
        with conn._wlock:
            conn.sock.sendall(struct.pack('>I', 2) + b'\xc1\xc1')
        self.assertTrue(metanet._result(fut.result_or_raise(5, 'SEND'))['delivered'])
        until(lambda: conn.closed, what='connection closed')
        self.assertEqual(conn.closed_with.code, 'EPROTO')

    def test_close_right_after_a_call_leaves_the_daemon_running(self):
        # The daemon sends a reply as SEND with an id and waits for our RESULT; leaving before it
        # used to take the fixture daemon down (README.md, "Daemon behaviour this client relies on").
        for i in range(20):
            with Client(dir=self.dir) as c:
                self.assertEqual(c.call(self.a('/echo'), {'i': i}).get('i'), i)
        self.assertEqual(self.client().call(self.a('/echo'), {'alive': True}).get('alive'), True)
        self.assertIsNone(self.daemon.proc.poll())


class LimitTests(unittest.TestCase):
    def test_a_connection_beyond_the_limit_is_refused_with_edenied(self):
        dir = tempfile.mkdtemp(prefix='metanet-py-')
        name = f'fl{os.getpid()}'
        os.environ['MN_FIXTURE_OPTIONS'] = json.dumps({'maxConnectionsPerUid': 2})
        try:
            daemon = Fixture(name, dir)
        finally:
            del os.environ['MN_FIXTURE_OPTIONS']
        clients = [Client(dir=dir) for _ in range(3)]
        try:
            for c in clients[:2]:
                self.assertEqual(c.call(f'{name}:/echo', {'x': 1}).get('x'), 1)
            with self.assertRaises(MetanetError) as e:
                clients[2].call(f'{name}:/echo', {'x': 1}, timeout=5)
            self.assertEqual(e.exception.code, 'EDENIED')
            self.assertIn('too many connections from uid', e.exception.message)
        finally:
            for c in clients:
                c.close()
            daemon.stop()
            shutil.rmtree(dir, ignore_errors=True)


class ReconnectTests(unittest.TestCase):
    def test_listener_is_reattached_after_the_daemon_restarts(self):
        dir = tempfile.mkdtemp(prefix='metanet-py-')
        name = f'fr{os.getpid()}'
        daemon = Fixture(name, dir)
        py = Client(dir=dir)
        other = Client(dir=dir)
        try:
            py.listen(f'{name}:/chain', lambda m, ctx: ctx.reply({'from': 'python'}) or 'stop', position='prepend')
            self.assertEqual(other.call(f'{name}:/chain').get('from'), 'python')
            daemon.stop()
            daemon = Fixture(name, dir)

            def python_answers():
                try:
                    return other.call(f'{name}:/chain', timeout=1).get('from') == 'python'
                except MetanetError:
                    return False

            until(python_answers, timeout=10, what='listener re-attached')
        finally:
            py.close()
            other.close()
            daemon.stop()
            shutil.rmtree(dir, ignore_errors=True)


if __name__ == '__main__':
    unittest.main()

"""Tests of dataflow.remote: send_dataflow_zmq and RemoteDataZMQ, across sockets and processes."""

from __future__ import annotations

import ctypes
import gc
import importlib.util
import json
import multiprocessing
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import warnings
from fractions import Fraction

import msgpack
import msgpack_numpy
import numpy as np
import pytest
import zmq

import dataflow
from dataflow import (
    DataFlow,
    DataFromList,
    ReentrancyError,
    RemoteDataZMQ,
    RepeatedData,
    UnknownLengthError,
    check_dataflow,
    send_dataflow_zmq,
)
from dataflow._progress import ProgressBar
from dataflow._transport import DATA, encode
from dataflow.parallel._workers import own_progress_lock
from dataflow.remote import PeerWarning
from dataflow.serialize import PickleSerializer, Serializer

pytestmark = pytest.mark.timeout(30)

WAIT_S = 20  # how long a receiver in these tests waits before failing instead of hanging
# A source that blocks after a few quick datapoints blocks this long; what it made
# before must arrive within LATENCY_LIMIT_S (a few ms are expected; generous for a
# loaded 2-core machine, and far below BLOCK_S).
BLOCK_S = 5.0
LATENCY_LIMIT_S = 1.5


# ---- helpers -----------------------------------------------------------------------


def ipc_address():
    return f"ipc://@dataflow-test-remote-{os.getpid()}-{uuid.uuid4().hex}"


def tcp_address():
    """A loopback TCP endpoint on a port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


ADDRESSES = {"ipc": ipc_address, "tcp": tcp_address}


def datapoints(n, large=True):
    """Lists and dicts, alternately, with small and (if *large*) >= 64 KiB arrays of
    several dtypes, a non-contiguous one among them."""
    out = []
    for i in range(n):
        small = [
            np.arange(5, dtype=np.int16) + i,
            np.full((2, 3), i, dtype=np.float32),
            np.array([i % 2, 1], dtype=bool),
            np.complex64(i + 1j),
            np.array(i, dtype=np.uint8),
        ]
        big = []
        if large:
            big = [
                np.arange(20_000, dtype=np.float32) + i,  # 80 KB
                np.full((300, 300), i % 256, dtype=np.uint8),  # 90 KB
                (np.arange(40_000, dtype=np.float64) * i)[::2],  # 160 KB, not contiguous
                np.ones(70_000, dtype=bool),
            ]
        if i % 2:
            out.append({"index": i, "name": f"dp{i}", "arrays": small + big})
        else:
            out.append([i, f"dp{i}", *small, *big, None, 2.5])
    return out


def assert_same(received, expected):
    assert type(received) is type(expected), (received, expected)
    if isinstance(expected, dict):
        assert received.keys() == expected.keys()
        for key in expected:
            assert_same(received[key], expected[key])
    elif isinstance(expected, (list, tuple)):
        assert len(received) == len(expected)
        for a, b in zip(received, expected):
            assert_same(a, b)
    elif isinstance(expected, (np.ndarray, np.generic)):
        assert isinstance(received, type(expected))
        assert received.dtype == expected.dtype
        assert received.shape == expected.shape
        np.testing.assert_array_equal(received, expected)
    else:
        assert received == expected


class SenderThread(threading.Thread):
    """Runs send_dataflow_zmq; keeps what it returned or raised."""

    def __init__(self, df, addr, **kwargs):
        super().__init__(name="test-sender")
        self.args = (df, addr)
        # Closing waits up to linger for undelivered messages (the last ones may find
        # a receiver that stopped reading): not the default 30 s, a test's timeout.
        kwargs.setdefault("linger", 5.0)
        self.kwargs = kwargs
        self.result = None
        self.error = None

    def run(self):
        try:
            self.result = send_dataflow_zmq(*self.args, **self.kwargs)
        except BaseException as exc:  # noqa: B036 - reported by the test
            self.error = exc


def receive(df, n):
    it = iter(df)
    try:
        return [next(it) for _ in range(n)]
    finally:
        it.close()


class Failing(DataFlow):
    """Yields *good* datapoints, then raises *exc*."""

    def __init__(self, good, exc, delay=0.0):
        self.good = good
        self.exc = exc
        self.delay = delay
        self.resets = self.closes = 0

    def reset_state(self):
        self.resets += 1

    def close(self):
        self.closes += 1

    def __iter__(self):
        for i in range(self.good):
            time.sleep(self.delay)
            yield [i]
        raise self.exc


class QuickThenBlocked(DataFlow):
    """``[time made, i]`` for *i* in ``range(n)``, quickly, then blocks until *release*
    is set or BLOCK_S passed: waiting, or (*spin*) computing in Python with the GIL held."""

    def __init__(self, n, release, spin=False):
        self.n = n
        self.release = release
        self.spin = spin

    def __iter__(self):
        for i in range(self.n):
            yield [time.monotonic(), i]
        deadline = time.monotonic() + BLOCK_S
        if not self.spin:
            self.release.wait(BLOCK_S)
        while self.spin and time.monotonic() < deadline and not self.release.is_set():
            total = 0
            for k in range(10_000):
                total += k


class Paced(DataFlow):
    """``[i]`` for *i* in ``range(n)``, pausing *pause_s* after every *every* datapoints."""

    def __init__(self, n, every=37, pause_s=0.007):
        self.n, self.every, self.pause_s = n, every, pause_s

    def __len__(self):
        return self.n

    def __iter__(self):
        for i in range(self.n):
            yield [i]
            if (i + 1) % self.every == 0:
                time.sleep(self.pause_s)


class JSONSerializer(Serializer):
    name = "json"

    def dumps(self, obj):
        return json.dumps(obj).encode()

    def loads(self, buf):
        return json.loads(bytes(buf))


def _send_in_process(df, addr):
    own_progress_lock()  # a forked sender must not share its parent's tqdm lock
    return send_dataflow_zmq(df, addr)


def _send_in_child(addr, n, fail_after):
    own_progress_lock()
    if fail_after is None:
        send_dataflow_zmq(DataFromList(datapoints(n), shuffle=False), addr)
    else:
        send_dataflow_zmq(Failing(fail_after, ValueError("source broke")), addr)


def _send_forever(addr, bind):
    forever = RepeatedData(DataFromList([[i, np.arange(i)] for i in range(100)], shuffle=False), -1)
    # Ctrl-C ends it: between the two locks tqdm takes, it would leave the parent's taken.
    own_progress_lock()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if the tests' shell ignores it
    try:
        send_dataflow_zmq(forever, addr, bind=bind)
    except KeyboardInterrupt:
        pass


def raw_push(addr, frames_list):
    """Send messages as raw frames (what another program could send)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    try:
        sock.connect(addr)
        for frames in frames_list:
            sock.send_multipart(frames)
    finally:
        sock.close(linger=5000)
        ctx.term()


# ---- send_dataflow_zmq -------------------------------------------------------------


class TestSendDataflowZmq:
    @pytest.mark.parametrize("transport", ["ipc", "tcp"])
    def test_round_trip_of_list_and_dict_datapoints(self, transport):
        addr = ADDRESSES[transport]()
        expected = datapoints(12)
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            sender = SenderThread(DataFromList(expected, shuffle=False), addr)
            sender.start()
            received = receive(df, len(expected))
            sender.join()
        assert sender.error is None and sender.result == len(expected)
        assert_same(received, expected)

    def test_many_small_datapoints_with_a_small_hwm_all_arrive_in_order(self):
        addr = ipc_address()
        expected = [[i, str(i)] for i in range(3000)] + datapoints(3)
        with RemoteDataZMQ(addr, hwm=1, timeout=WAIT_S) as df:
            df.reset_state()
            sender = SenderThread(DataFromList(expected, shuffle=False), addr, hwm=1)
            sender.start()
            received = receive(df, len(expected))
            sender.join()
        assert sender.error is None and sender.result == len(expected)
        assert_same(received, expected)

    @pytest.mark.parametrize("spin", [False, True], ids=["waiting", "computing"])
    @pytest.mark.parametrize("sender_kind", ["thread", "process"])
    def test_datapoints_made_before_the_source_blocks_arrive_at_once(self, spin, sender_kind):
        addr = ipc_address()
        if sender_kind == "thread":
            release = threading.Event()
            sender = SenderThread(QuickThenBlocked(5, release, spin), addr)
        else:
            release = multiprocessing.get_context("fork").Event()
            sender = multiprocessing.get_context("fork").Process(
                target=_send_in_process, args=(QuickThenBlocked(5, release, spin), addr)
            )
        waited = []
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            sender.start()
            it = iter(df)
            try:
                for _ in range(5):
                    made, _ = next(it)
                    waited.append(time.monotonic() - made)
            finally:
                it.close()
                release.set()
                sender.join(WAIT_S)
        assert max(waited) < LATENCY_LIMIT_S, waited
        if sender_kind == "thread":
            assert sender.error is None and sender.result == 5
        else:
            assert sender.exitcode == 0

    def test_paced_datapoints_with_a_small_hwm_all_arrive_in_order(self):
        # Some batches leave with the datapoint that fills them, some with the flusher.
        addr = ipc_address()
        with RemoteDataZMQ(addr, hwm=1, timeout=WAIT_S) as df:
            df.reset_state()
            sender = SenderThread(Paced(2000), addr, hwm=1)
            sender.start()
            it = iter(df)
            first = [next(it) for _ in range(100)]
            time.sleep(0.2)  # the sender blocks at the high-water mark meanwhile
            rest = [next(it) for _ in range(1900)]
            it.close()
            sender.join()
        assert sender.error is None and sender.result == 2000
        assert first + rest == [[i] for i in range(2000)]

    def test_arrays_arrive_writable(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            sender = SenderThread(DataFromList(datapoints(1), shuffle=False), addr)
            sender.start()
            (dp,) = receive(df, 1)
            sender.join()
        for array in dp[2:9]:
            if isinstance(array, np.ndarray):
                assert array.flags.writeable
                array[...] = 0

    def test_a_source_that_reuses_its_buffer_still_sends_each_datapoint(self):
        class Refill(DataFlow):
            def __iter__(self):
                buf = np.zeros(50_000, dtype=np.int32)
                for i in range(5):
                    buf[:] = i
                    yield [buf]

        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            sender = SenderThread(Refill(), addr)
            sender.start()
            sender.join()  # everything is queued before the first is read
            received = receive(df, 5)
        assert [int(dp[0][0]) for dp in received] == [0, 1, 2, 3, 4]

    def test_bind_on_the_sender_side_with_a_connecting_receiver(self):
        addr = tcp_address()
        expected = datapoints(4)
        sender = SenderThread(DataFromList(expected, shuffle=False), addr, bind=True)
        sender.start()
        with RemoteDataZMQ(addr, bind=False, timeout=WAIT_S) as df:
            df.reset_state()
            received = receive(df, len(expected))
            sender.join()
        assert sender.error is None and sender.result == 4
        assert_same(received, expected)

    def test_a_sender_started_before_its_receiver_waits_for_it(self):
        addr = tcp_address()
        sender = SenderThread(DataFromList([[i] for i in range(5)], shuffle=False), addr)
        sender.start()
        time.sleep(0.3)
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            received = receive(df, 5)
            sender.join()
        assert received == [[i] for i in range(5)]

    def test_sender_in_a_forked_process(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            proc = multiprocessing.get_context("fork").Process(
                target=_send_in_child, args=(addr, 6, None)
            )
            proc.start()
            try:
                received = receive(df, 6)
            finally:
                proc.join(WAIT_S)
        assert proc.exitcode == 0
        assert_same(received, datapoints(6))

    def test_a_forked_sender_that_raises_mid_stream_is_named_and_ends_the_pass(self):
        # The receiver gets what was sent before the error, then a warning naming the
        # sender (its pid) with its exception and traceback, and the pass ends.
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            proc = multiprocessing.get_context("fork").Process(
                target=_send_in_child, args=(addr, 0, 5)
            )
            proc.start()
            proc.join(WAIT_S)
            with pytest.warns(PeerWarning) as caught:
                received = list(df)
        assert proc.exitcode == 1
        assert received == [[i] for i in range(5)]
        (warning,) = [w for w in caught if "raised" in str(w.message)]
        text = str(warning.message)
        assert f"pid {proc.pid}" in text and "raised ValueError: source broke" in text
        assert "stopped after 5 datapoints" in text and "raise self.exc" in text

    def test_a_sender_that_raises_reraises_and_closes_everything(self):
        addr = ipc_address()
        source = Failing(5, ValueError("source broke"), delay=0.01)
        with RemoteDataZMQ(addr, timeout=WAIT_S, on_error="raise") as df:
            df.reset_state()
            sender = SenderThread(source, addr)
            sender.start()
            received = []
            with pytest.raises(dataflow.remote.SenderError) as info:
                for dp in df:
                    received.append(dp)
            sender.join()
        assert isinstance(sender.error, ValueError) and str(sender.error) == "source broke"
        assert received == [[i] for i in range(5)]
        assert "raised ValueError: source broke" in str(info.value)
        assert "Its traceback:\nTraceback (most recent call last):" in str(info.value)
        assert (source.resets, source.closes) == (1, 1)

    def test_keyboard_interrupt_returns_at_once_without_waiting_to_deliver(self):
        source = Failing(3, KeyboardInterrupt())
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            send_dataflow_zmq(source, ipc_address())  # nobody receives; linger is 30 s
        assert time.monotonic() - start < 5
        assert source.closes == 1

    def test_resets_and_closes_the_dataflow_and_returns_the_count(self):
        class Counted(DataFlow):
            resets = closes = 0

            def reset_state(self):
                self.resets += 1

            def close(self):
                self.closes += 1

            def __iter__(self):
                yield from ([i] for i in range(4))

        addr = ipc_address()
        counted = Counted()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            sender = SenderThread(counted, addr)
            sender.start()
            receive(df, 4)
            sender.join()
        assert sender.result == 4
        assert (counted.resets, counted.closes) == (1, 1)

    def test_an_empty_dataflow_sends_no_datapoint_returns_zero_and_ends_the_pass(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            sender = SenderThread(DataFromList([], shuffle=False), addr)
            sender.start()
            assert list(df) == []
            sender.join(WAIT_S)
        assert sender.result == 0
        assert [s.state for s in df.stats.senders] == ["finished"]

    def test_an_infinite_dataflow_is_sent_until_interrupted(self, monkeypatch):
        # The interrupt may land while the sender's progress bar holds its lock: give
        # the bars of this test a lock of their own, so a lock left held dies with it.
        monkeypatch.setattr(ProgressBar, "_lock", threading.RLock(), raising=False)
        addr = ipc_address()
        forever = RepeatedData(DataFromList([[1], [2]], shuffle=False), -1)
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            sender = SenderThread(forever, addr)
            sender.start()
            assert receive(df, 1000)[-2:] == [[1], [2]]
            # Ctrl-C, delivered to the sending thread; by now it is usually blocked,
            # waiting for the receiver (which stopped reading) to take more.
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(sender.ident), ctypes.py_object(KeyboardInterrupt)
            )
            sender.join(WAIT_S)
            assert not sender.is_alive(), "the sender did not stop on KeyboardInterrupt"
        assert isinstance(sender.error, KeyboardInterrupt)

    def test_shows_progress_on_standard_error(self, capsys):
        send_dataflow_zmq(DataFromList([], shuffle=False), ipc_address(), linger=0)
        assert "send_dataflow_zmq to ipc://@dataflow-test-remote" in capsys.readouterr().err

    def test_undelivered_datapoints_are_dropped_after_linger_with_a_warning(self):
        addr = ipc_address()  # nobody binds it: the datapoint waits in the queue
        start = time.monotonic()
        with pytest.warns(RuntimeWarning, match=r"gave up after 0\.2 s delivering the last"):
            n = send_dataflow_zmq(DataFromList([[1]]), addr, linger=0.2)
        assert n == 1 and time.monotonic() - start < 5

    def test_a_value_msgpack_cannot_store_names_its_component(self):
        with pytest.raises(TypeError) as info:
            send_dataflow_zmq(DataFromList([[1, Fraction(1, 3)]]), ipc_address())
        assert str(info.value).startswith(
            "send_dataflow_zmq cannot serialize a value of type 'fractions.Fraction' at "
            "component 1: "
        )

    def test_format_pickle_needs_allow_pickle_on_the_receiver(self):
        addr = ipc_address()
        expected = [[Fraction(1, 3), (1, 2)], [np.arange(3), {"k": Fraction(2)}]]
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            sender = SenderThread(DataFromList(expected, shuffle=False), addr, format="pickle")
            sender.start()
            with pytest.warns(PeerWarning) as caught:
                assert list(df) == []  # dropped, and the sender finished
            sender.join()
            assert df.stats.dropped >= 1  # the first datapoint leaves alone, the rest batched
        (warning,) = caught  # one: rate-limited
        assert str(warning.message).startswith("RemoteDataZMQ dropped a message from sender id ")
        assert str(warning.message).endswith(
            f"at {addr} from localhost:0:0:{os.getpid()}: it holds pickled datapoints (the "
            "sender used format='pickle'). Unpickling runs code chosen by the sender, so it is "
            "refused unless you trust every sender that can reach this address and pass "
            "allow_pickle=True. The other senders' datapoints keep coming; see "
            "RemoteDataZMQ.stats.dropped"
        )
        for receiver_options in ({"allow_pickle": True}, {"serializer": PickleSerializer()}):
            with RemoteDataZMQ(addr, timeout=WAIT_S, **receiver_options) as df:
                df.reset_state()
                sender = SenderThread(
                    DataFromList(expected, shuffle=False), addr, serializer=PickleSerializer()
                )
                sender.start()
                received = receive(df, 2)
                sender.join()
            assert received[0] == expected[0]
            np.testing.assert_array_equal(received[1][0], expected[1][0])
            assert received[1][1] == expected[1][1]

    def test_format_msgpack_is_the_default_encoding(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            source = DataFromList(datapoints(2), shuffle=False)
            sender = SenderThread(source, addr, format="msgpack")
            sender.start()
            received = receive(df, 2)
            sender.join()
        assert_same(received, datapoints(2))

    def test_a_serializer_of_your_own_is_needed_on_both_sides(self):
        addr = ipc_address()
        expected = [[1, {"a": [2.5, "x"]}], [3, {}]]
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            sender = SenderThread(
                DataFromList(expected, shuffle=False), addr, serializer=JSONSerializer()
            )
            sender.start()
            with pytest.warns(PeerWarning, match="pass the same serializer to RemoteDataZMQ"):
                assert list(df) == []
            sender.join()
        with RemoteDataZMQ(addr, timeout=WAIT_S, serializer=JSONSerializer()) as df:
            df.reset_state()
            sender = SenderThread(
                DataFromList(expected, shuffle=False), addr, serializer=JSONSerializer()
            )
            sender.start()
            assert receive(df, 2) == expected
            sender.join()

    def test_bind_failure_is_an_os_error_naming_the_address(self):
        addr = tcp_address()
        with RemoteDataZMQ(addr) as df:
            df.reset_state()
            with pytest.raises(OSError) as info:
                send_dataflow_zmq(DataFromList([[1]]), addr, bind=True)
        assert f"send_dataflow_zmq cannot bind {addr!r}: " in str(info.value)
        assert "another process (or another socket of this one) is bound there" in str(info.value)

    @pytest.mark.parametrize(
        "kwargs,error,message",
        [
            ({"hwm": 0}, ValueError, "hwm must be a positive int, got 0"),
            ({"hwm": -3}, ValueError, "hwm must be a positive int, got -3"),
            ({"hwm": 2.0}, TypeError, "hwm must be a positive int, got 2.0"),
            (
                {"format": "json"},
                ValueError,
                "format must be None, 'msgpack' or 'pickle' (tensorpack's 'zmq_ops' format, "
                "read by its TensorFlow op, is not supported), got 'json'",
            ),
            (
                {"format": "zmq_ops"},
                ValueError,
                "format must be None, 'msgpack' or 'pickle' (tensorpack's 'zmq_ops' format, "
                "read by its TensorFlow op, is not supported), got 'zmq_ops'",
            ),
            ({"format": 1}, TypeError, "format must be None, 'msgpack' or 'pickle'"),
            (
                {"format": "pickle", "serializer": PickleSerializer()},
                ValueError,
                "serializer must be None when format='pickle' is given, got PickleSerializer()",
            ),
            (
                {"serializer": "pickle"},
                TypeError,
                "serializer must be a Serializer (e.g. MsgpackSerializer()) or None, got 'pickle'",
            ),
            ({"bind": "yes"}, TypeError, "bind must be a bool, got 'yes'"),
            (
                {"linger": -1},
                ValueError,
                "linger must be a non-negative number of seconds, got -1",
            ),
            ({"linger": float("inf")}, ValueError, "linger must be a finite number of seconds"),
            ({"linger": None}, TypeError, "linger must be a non-negative number of seconds"),
        ],
    )
    def test_bad_arguments(self, kwargs, error, message):
        with pytest.raises(error) as info:
            send_dataflow_zmq(DataFromList([[1]]), ipc_address(), **kwargs)
        assert str(info.value).startswith(message)

    @pytest.mark.parametrize(
        "addr,error,message",
        [
            (
                8877,
                TypeError,
                "addr must be a ZeroMQ endpoint string such as 'tcp://10.0.0.1:8877' or "
                "'ipc:///tmp/feed', got 8877",
            ),
            (
                "localhost:8877",
                ValueError,
                "addr must be a ZeroMQ endpoint string such as 'tcp://10.0.0.1:8877' or "
                "'ipc:///tmp/feed', got 'localhost:8877'",
            ),
            (
                "inproc://feed",
                ValueError,
                "addr must be an endpoint that other processes can reach, such as tcp:// or "
                "ipc:// (inproc:// only joins sockets of one ZeroMQ context), got "
                "'inproc://feed'",
            ),
        ],
    )
    def test_bad_addresses(self, addr, error, message):
        with pytest.raises(error) as info:
            send_dataflow_zmq(DataFromList([[1]]), addr)
        assert str(info.value) == message

    def test_df_must_be_a_dataflow(self):
        with pytest.raises(TypeError, match=r"^df must be a dataflow.DataFlow, got list$"):
            send_dataflow_zmq([[1]], ipc_address())

        class Foreign:
            pass

        with pytest.raises(TypeError, match=r"got test_remote\..*Foreign$"):
            send_dataflow_zmq(Foreign(), ipc_address())

    def test_an_unknown_protocol_is_an_os_error(self):
        with pytest.raises(OSError, match=r"send_dataflow_zmq cannot connect to 'foo://x'"):
            send_dataflow_zmq(DataFromList([[1]]), "foo://x")

    def test_tensorpack_positional_arguments(self):
        addr = tcp_address()
        sender = SenderThread(DataFromList([[7]]), addr, hwm=10, format=None, bind=True)
        sender.args = (DataFromList([[7]]), addr, 10, None, True)
        sender.kwargs = {}
        sender.start()
        with RemoteDataZMQ(addr, None, 10, False, timeout=WAIT_S) as df:
            df.reset_state()
            assert receive(df, 1) == [[7]]
            sender.join()
        assert sender.result == 1


# ---- RemoteDataZMQ -----------------------------------------------------------------


class TestRemoteDataZMQ:
    def test_two_senders_into_addr1_and_addr2(self):
        addr1, addr2 = ipc_address(), tcp_address()
        first = [[0, i, np.full(20_000, i, np.float64)] for i in range(30)]
        second = [[1, i, np.arange(3) + i] for i in range(40)]
        with RemoteDataZMQ(addr1, addr2, timeout=WAIT_S, min_senders=2) as df:
            df.reset_state()
            senders = [
                SenderThread(DataFromList(first, shuffle=False), addr1),
                SenderThread(DataFromList(second, shuffle=False), addr2),
            ]
            for s in senders:
                s.start()
            received = receive(df, 70)
            for s in senders:
                s.join()
            assert (df.cnt1, df.cnt2) == (30, 40)
        assert_same([dp for dp in received if dp[0] == 0], first)
        assert_same([dp for dp in received if dp[0] == 1], second)

    def test_two_senders_into_one_address_interleave_keeping_their_order(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S, min_senders=2) as df:
            df.reset_state()
            senders = [
                SenderThread(DataFromList([[k, i] for i in range(500)], shuffle=False), addr)
                for k in range(2)
            ]
            for s in senders:
                s.start()
            received = receive(df, 1000)
            for s in senders:
                s.join()
            assert (df.cnt1, df.cnt2) == (1000, 0)
        for k in range(2):
            assert [i for j, i in received if j == k] == list(range(500))

    def test_has_no_length(self):
        df = RemoteDataZMQ(ipc_address())
        with pytest.raises(UnknownLengthError, match="what its senders send: it has no length"):
            len(df)
        with pytest.raises(NotImplementedError):
            df.size()

    def test_opens_no_socket_before_reset_state_and_pickles(self):
        addr = tcp_address()
        a, b = RemoteDataZMQ(addr), RemoteDataZMQ(addr)  # would clash if they bound
        with pytest.raises(RuntimeError, match=r"call reset_state\(\) first"):
            a.endpoints  # noqa: B018
        clone = pickle.loads(pickle.dumps(a))
        assert repr(clone) == f"RemoteDataZMQ({addr!r}, bind=True)"
        with a:
            a.reset_state()
            assert a.endpoints == [addr]
            with pytest.raises(OSError, match="RemoteDataZMQ cannot bind"):
                b.reset_state()
        b.close()

    def test_a_star_port_is_resolved_in_endpoints(self):
        with RemoteDataZMQ("tcp://127.0.0.1:*", ipc_address()) as df:
            df.reset_state()
            tcp, ipc = df.endpoints
        assert tcp.startswith("tcp://127.0.0.1:") and not tcp.endswith("*")
        assert ipc.startswith("ipc://@dataflow-test-remote-")

    def test_timeout_error_names_the_address_and_what_to_check(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=0.3) as df:
            df.reset_state()
            start = time.monotonic()
            with pytest.raises(TimeoutError) as info:
                next(iter(df))
            seconds = time.monotonic() - start
        assert 0.25 < seconds < 5
        assert str(info.value) == (
            f"RemoteDataZMQ received no datapoint on {addr!r} for 0.3 s; no sender has "
            "announced itself. Check that a sender (send_dataflow_zmq) is running and connects "
            "to that address, that it has not ended or failed (see its output), and that no "
            "firewall blocks the port"
        )

    def test_timeout_error_of_a_connecting_receiver_names_both_addresses(self):
        addr1, addr2 = ipc_address(), ipc_address()
        with RemoteDataZMQ(addr1, addr2, bind=False, timeout=0.1) as df:
            df.reset_state()
            with pytest.raises(TimeoutError) as info:
                next(iter(df))
        assert f"no datapoint on {addr1!r} or {addr2!r} for 0.1 s" in str(info.value)
        assert "is running and binds that address" in str(info.value)

    def test_the_timeout_counts_from_the_last_datapoint(self):
        addr = ipc_address()
        source = Failing(15, ValueError("done"), delay=0.1)  # slower in total than the timeout
        with RemoteDataZMQ(addr, timeout=1.0) as df:
            df.reset_state()
            sender = SenderThread(source, addr)
            sender.start()
            assert receive(df, 15) == [[i] for i in range(15)]
            sender.join()

    def test_a_loop_left_early_loses_nothing(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            sender = SenderThread(DataFromList([[i] for i in range(50)], shuffle=False), addr)
            sender.start()
            first = []
            for dp in df:
                first.append(dp[0])
                if len(first) == 5:
                    break
            sender.join()
            rest = receive(df, 45)
        assert first + [dp[0] for dp in rest] == list(range(50))

    def test_break_then_close_leaves_nothing_behind(self):
        addr = tcp_address()
        df = RemoteDataZMQ(addr, timeout=WAIT_S)
        df.reset_state()
        sender = SenderThread(DataFromList([[i] for i in range(20)], shuffle=False), addr)
        sender.start()
        for dp in df:
            if dp[0] == 2:
                break
        sender.join()
        df.close()
        df.close()  # twice is harmless
        with RemoteDataZMQ(addr) as again:  # the port is free
            again.reset_state()

    def test_without_reset_state_a_loop_opens_and_closes_its_own_sockets(self):
        # tensorpack's way: the sockets live as long as the loop.
        addr = tcp_address()
        df = RemoteDataZMQ(addr, timeout=WAIT_S)
        sender = SenderThread(DataFromList([[i] for i in range(3)], shuffle=False), addr)
        sender.start()
        assert receive(df, 3) == [[0], [1], [2]]
        sender.join(WAIT_S)
        with pytest.raises(RuntimeError, match="not open"):
            df.endpoints  # noqa: B018
        with RemoteDataZMQ(addr) as again:  # the port is free
            again.reset_state()

    def test_garbage_collection_closes_the_sockets(self):
        addr = tcp_address()
        df = RemoteDataZMQ(addr)
        df.reset_state()
        del df
        gc.collect()
        with RemoteDataZMQ(addr) as again:
            again.reset_state()

    def test_closing_during_a_loop_is_an_error_at_the_next_datapoint(self):
        addr = ipc_address()
        df = RemoteDataZMQ(addr, timeout=WAIT_S)
        df.reset_state()
        it = iter(df)
        sender = SenderThread(DataFromList([[1]]), addr)
        sender.start()
        assert next(it) == [1]
        sender.join()
        df.close()
        with pytest.raises(RuntimeError, match="was closed while a loop over it was running"):
            next(it)

    def test_cannot_be_iterated_from_two_places_at_once(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            sender = SenderThread(DataFromList([[1], [2]], shuffle=False), addr)
            sender.start()
            outer = iter(df)
            assert next(outer) == [1]
            with pytest.raises(ReentrancyError):
                next(iter(df))
            assert next(outer) == [2]
            outer.close()
            sender.join()

    def test_reset_state_zeroes_the_counters_and_keeps_the_sockets(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            sender = SenderThread(DataFromList([[1], [2]], shuffle=False), addr)
            sender.start()
            assert receive(df, 1) == [[1]]
            sender.join()
            df.reset_state()
            assert (df.cnt1, df.cnt2) == (0, 0)
            assert receive(df, 1) == [[2]]

    @pytest.mark.parametrize("bind", [True, False])
    def test_keeps_the_dataflow_contract(self, bind):
        max_datapoints, num_passes = 20, 2
        addr = ipc_address()
        # A sender that never ends (as tensorpack's did), in a process of its own (the
        # check looks for threads left running): stopped by Ctrl-C at the end.
        proc = multiprocessing.get_context("fork").Process(
            target=_send_forever, args=(addr, not bind)
        )
        proc.start()
        try:
            first = check_dataflow(
                lambda: RemoteDataZMQ(addr, bind=bind, timeout=WAIT_S),
                infinite=True,
                max_datapoints=max_datapoints,
                num_passes=num_passes,
            )
        finally:
            os.kill(proc.pid, signal.SIGINT)
            proc.join(WAIT_S)
        assert proc.exitcode == 0
        assert [dp[0] for dp in first] == list(range(max_datapoints))

    def test_a_message_that_is_not_from_a_sender_is_dropped_with_a_clear_warning(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=0.5) as df:
            df.reset_state()
            raw_push(
                addr,
                [
                    encode(DATA, 0xDF00, 1, [b"\xc1"], []),  # 0xc1: never msgpack
                    [b"\x01garbage"],
                    # a message of the parallel dataflows' transport, not of send_dataflow_zmq
                    encode(DATA, 0, 0, [msgpack.packb([1])], []),
                ],
            )
            with pytest.warns(PeerWarning) as caught, pytest.raises(TimeoutError):
                next(iter(df))
            assert df.stats.dropped == 3
        texts = [str(w.message) for w in caught]
        assert len(texts) == 1  # one peer, one kind of problem: rate-limited
        assert texts[0].startswith(f"RemoteDataZMQ dropped a message from {addr} from ")
        assert "not valid msgpack" in texts[0]

    # ---- tensorpack's messages --------------------------------------------------------

    def test_reads_tensorpack_msgpack_messages(self):
        # What tensorpack 0.11 sends with TENSORPACK_SERIALIZE=msgpack: one frame per
        # datapoint, msgpack with msgpack-numpy's arrays.
        addr = ipc_address()
        expected = [[np.arange(6, dtype=np.float32).reshape(2, 3), 1], [np.zeros(70_000), "x"]]
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            raw_push(
                addr,
                [
                    [msgpack.packb(dp, default=msgpack_numpy.encode, use_bin_type=True)]
                    for dp in expected
                ],
            )
            received = receive(df, 2)
        assert_same(received, expected)
        assert received[0][0].flags.writeable

    def test_reads_tensorpack_pickle_messages_only_when_allowed(self):
        # What tensorpack 0.11 sends by default: one pickle (protocol -1) per datapoint.
        addr = ipc_address()
        expected = [(np.arange(3), 1), [{"a": Fraction(1, 2)}]]
        with RemoteDataZMQ(addr, timeout=0.5) as df:
            df.reset_state()
            raw_push(addr, [[pickle.dumps(expected[0], protocol=-1)]])
            with pytest.warns(PeerWarning) as caught, pytest.raises(TimeoutError):
                next(iter(df))
            assert df.stats.dropped == 1
        (warning,) = caught
        assert str(warning.message).endswith(
            ": it holds pickled datapoints (tensorpack's send_dataflow_zmq pickles by default). "
            "Unpickling runs code chosen by the sender, so it is refused unless you trust every "
            "sender that can reach this address and pass allow_pickle=True (or have the "
            "tensorpack senders use msgpack: TENSORPACK_SERIALIZE=msgpack). The other senders' "
            "datapoints keep coming; see RemoteDataZMQ.stats.dropped"
        )
        with RemoteDataZMQ(addr, timeout=WAIT_S, allow_pickle=True) as df:
            df.reset_state()
            raw_push(addr, [[pickle.dumps(dp, protocol=-1)] for dp in expected])
            received = receive(df, 2)
        np.testing.assert_array_equal(received[0][0], expected[0][0])
        assert received[0][1] == 1 and type(received[0]) is list  # a tuple comes back a list
        assert received[1] == expected[1]

    def test_an_empty_dict_in_msgpack_is_not_taken_for_pickle(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            raw_push(addr, [[msgpack.packb({})]])
            assert receive(df, 1) == [{}]

    @pytest.mark.skipif(
        importlib.util.find_spec("tensorpack") is None, reason="tensorpack is not installed"
    )
    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("codec", ["pickle", "msgpack"])
    def test_receives_from_real_tensorpack(self, codec):
        script = textwrap.dedent(
            """
            import sys, numpy as np
            import tensorpack.dataflow as tp
            data = [[np.arange(6, dtype=np.float32).reshape(2, 3) + i, i,
                     np.full(30_000, i, dtype=np.int32)] for i in range(10)]
            tp.send_dataflow_zmq(tp.DataFromList(data, shuffle=False), sys.argv[1])
            """
        )
        addr = ipc_address()
        env = dict(os.environ, TENSORPACK_SERIALIZE=codec)
        with RemoteDataZMQ(addr, timeout=45, allow_pickle=codec == "pickle") as df:
            df.reset_state()
            proc = subprocess.Popen(
                [sys.executable, "-c", script, addr],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                received = receive(df, 15)  # tensorpack sends its dataflow forever
            finally:
                proc.kill()
                proc.communicate(timeout=WAIT_S)
        expected = [
            [np.arange(6, dtype=np.float32).reshape(2, 3) + i, i, np.full(30_000, i, np.int32)]
            for i in range(10)
        ]
        assert_same(received, expected + expected[:5])

    @pytest.mark.parametrize(
        "args,kwargs,error,message",
        [
            ((), {"hwm": 0}, ValueError, "hwm must be a positive int, got 0"),
            ((), {"hwm": None}, TypeError, "hwm must be a positive int, got None"),
            (
                (None,),
                {},
                TypeError,
                "addr1 must be a ZeroMQ endpoint string such as 'tcp://10.0.0.1:8877' or "
                "'ipc:///tmp/feed', got None",
            ),
            (
                (b"tcp://*:1",),
                {},
                TypeError,
                "addr1 must be a ZeroMQ endpoint string such as 'tcp://10.0.0.1:8877' or "
                "'ipc:///tmp/feed', got b'tcp://*:1'",
            ),
            (
                ("tcp://*:1", 5),
                {},
                TypeError,
                "addr2 must be a ZeroMQ endpoint string such as 'tcp://10.0.0.1:8877' or "
                "'ipc:///tmp/feed', got 5",
            ),
            (
                (),
                {"timeout": 0},
                ValueError,
                "timeout must be None or a positive number of seconds, got 0",
            ),
            (
                (),
                {"timeout": -1.5},
                ValueError,
                "timeout must be None or a positive number of seconds, got -1.5",
            ),
            (
                (),
                {"timeout": "10"},
                TypeError,
                "timeout must be None or a positive number of seconds, got '10'",
            ),
            ((), {"bind": 1}, TypeError, "bind must be a bool, got 1"),
            ((), {"allow_pickle": "yes"}, TypeError, "allow_pickle must be a bool, got 'yes'"),
            (
                (),
                {"serializer": PickleSerializer},
                TypeError,
                "serializer must be a Serializer (e.g. MsgpackSerializer()) or None, got <class",
            ),
        ],
    )
    def test_bad_arguments(self, args, kwargs, error, message):
        with pytest.raises(error) as info:
            RemoteDataZMQ(*(args or ("tcp://127.0.0.1:*",)), **kwargs)
        assert str(info.value).startswith(message)

    def test_exported_from_the_package(self):
        assert dataflow.RemoteDataZMQ is RemoteDataZMQ
        assert {"RemoteDataZMQ", "send_dataflow_zmq"} <= set(dataflow.__all__)


def test_no_warning_after_a_delivered_pass():
    addr = ipc_address()
    with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
        df.reset_state()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            sender = SenderThread(DataFromList([[1]]), addr, linger=5)
            sender.start()
            assert receive(df, 1) == [[1]]
            sender.join()
    assert sender.error is None

"""Tests of what a RemoteDataZMQ does with messages it cannot trust: the decoding in
dataflow._transport.guard, and the receiver that drops, counts and names them while
the good senders' stream goes on."""

from __future__ import annotations

import os
import socket
import threading
import time
import tracemalloc
import uuid
import warnings

import msgpack
import numpy as np
import pytest
import zmq
from msgpack import ExtType

from dataflow import DataFlow, RemoteDataZMQ, send_dataflow_zmq
from dataflow._arrays import new_header
from dataflow._transport import DATA, END, ERROR, MARK, PREFIX, encode
from dataflow._transport.guard import FAST_MAX_LEN, Limits, Malformed, decode_untrusted
from dataflow.remote import PeerWarning

pytestmark = pytest.mark.timeout(60)

WAIT_S = 20
LIMITS = Limits(max_bytes=1 << 20, max_frames=64)
MARKER = 0xDF20  # send_dataflow_zmq's marker, protocol 2, codec 0
SENDER_ID = 0x12345678


def ipc_address():
    return f"ipc://@dataflow-test-guard-{os.getpid()}-{uuid.uuid4().hex}"


def tcp_address():
    """A loopback TCP endpoint on a port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def frames_of(*parts):
    return [zmq.Frame(p) for p in parts]


def message(body: bytes, *frames, kind=DATA, marker=MARKER, epoch=SENDER_ID):
    """A message with the given msgpack *body* (not checked) and extra frames."""
    return [PREFIX.pack(kind, marker, epoch) + body, *frames]


def array_ref(dtype, shape):
    """The msgpack of a reference to an out-of-band array frame."""
    return msgpack.packb(ExtType(3, new_header(np.dtype(dtype), shape)[0]))


def bomb_body(levels, length=0xFFFFFFFF):
    """Array headers declaring *length* items, nested *levels* deep: a few bytes that
    would make a naive unpacker allocate *levels* lists of *length* slots."""
    return (b"\xdd" + length.to_bytes(4, "big")) * levels + b"\x00"


class TestDecodeUntrusted:
    def test_reads_a_good_message_with_an_out_of_band_array(self):
        array = np.arange(20_000, dtype=np.float32)
        frames = frames_of(
            PREFIX.pack(DATA, MARKER, SENDER_ID) + b"\x91\x92\x01" + array_ref("f4", (20_000,)),
            array.tobytes(),
        )
        kind, marker, epoch, payload = decode_untrusted(frames, LIMITS)
        assert (kind, marker, epoch) == (DATA, MARKER, SENDER_ID)
        assert payload[0][0] == 1
        np.testing.assert_array_equal(payload[0][1], array)

    @pytest.mark.parametrize(
        "frames, reason",
        [
            ([], "an empty message"),
            (frames_of(b"\x01\x00"), "a first frame of 2 bytes, shorter than the prefix"),
            (frames_of(PREFIX.pack(9, MARKER, 1) + b"\x90"), "an unknown kind 9"),
            (frames_of(*message(b"\xc1")), "not valid msgpack"),  # 0xc1: never used
            (frames_of(*message(b"\x92\x01")), "not valid msgpack"),  # truncated
            (frames_of(*message(b"\x90\x90")), "not valid msgpack"),  # extra data
            (frames_of(*message(b"\x01")), "a body of type int, not a list"),
            (frames_of(*message(b"\x91" + array_ref("f4", (10,)))), "an array's frame is missing"),
            (
                frames_of(*message(b"\x91" + array_ref("f4", (10,)), b"\x00" * 39)),
                "an array frame of 39 bytes, but shape (10,) and dtype float32 need 40",
            ),
            (
                frames_of(*message(b"\x90", b"\x00" * 8)),
                "1 array frames, but the body refers to 0",
            ),
            (
                frames_of(*message(b"\x91" + msgpack.packb(ExtType(42, b"x")))),
                "an unknown msgpack extension type 42",
            ),
            (frames_of(*message(b"\x90", kind=END)), "an end-of-pass message without a count"),
            (
                frames_of(*message(msgpack.packb([1, 2, 3]), kind=ERROR)),
                "an error report that is not a list of strings",
            ),
            (frames_of(*message(b"\x90", kind=MARK)), "a heartbeat of 0 parts, not 3"),
            (frames_of(*message(b"\x90", *([b"x"] * 64))), "65 frames, more than the limit of 64"),
            (
                frames_of(*message(b"\x90", b"x" * (1 << 20))),
                f"{(1 << 20) + PREFIX.size + 1} bytes, more than the limit of {1 << 20}",
            ),
        ],
    )
    def test_a_malformed_message_raises_malformed_saying_what_is_wrong(self, frames, reason):
        with pytest.raises(Malformed) as info:
            decode_untrusted(frames, LIMITS)
        assert str(info.value).startswith(reason)

    def test_a_missing_array_frame_never_yields_an_ext_type(self):
        # The bug this guards against: the body refers to an array whose frame is not
        # there, and a raw msgpack ExtType reached the caller as if it were data.
        frames = frames_of(*message(b"\x92\x01" + array_ref("u1", (100_000,))))
        with pytest.raises(Malformed, match="an array's frame is missing"):
            decode_untrusted(frames, LIMITS)

    @pytest.mark.parametrize("levels", [1, 50, 1000])
    def test_a_bomb_of_huge_declared_lengths_allocates_almost_nothing(self, levels):
        body = bomb_body(levels)
        tracemalloc.start()
        try:
            with pytest.raises(Malformed):
                decode_untrusted(frames_of(*message(body)), LIMITS)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # A naive unpacker would ask for levels * 8 * len(body) bytes or more.
        assert peak < 8 << 20, f"decoding {len(body)} bytes allocated {peak} bytes"

    def test_a_bomb_of_maps_allocates_almost_nothing(self):
        body = (b"\xdf" + (0xFFFFFFFF).to_bytes(4, "big") + b"\x00") * 500 + b"\x00"
        tracemalloc.start()
        try:
            with pytest.raises(Malformed):
                decode_untrusted(frames_of(*message(b"\x91" + body)), LIMITS)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 8 << 20

    def test_nesting_deeper_than_msgpack_allows_is_malformed(self):
        body = b"\x91" * 5000 + b"\x00"
        with pytest.raises(Malformed, match="not valid msgpack"):
            decode_untrusted(frames_of(*message(body)), LIMITS)

    def test_a_real_list_longer_than_the_fast_limit_still_decodes(self):
        items = [[list(range(FAST_MAX_LEN + 5)), {i: i for i in range(FAST_MAX_LEN + 1)}]]
        frames = frames_of(*message(msgpack.packb(items)))
        assert decode_untrusted(frames, LIMITS).payload == items

    def test_tuple_dict_keys_come_back_as_tuples(self):
        frames = frames_of(*message(msgpack.packb([[{(1, 2): "a"}]])))
        assert decode_untrusted(frames, LIMITS).payload == [[{(1, 2): "a"}]]


# ---- through a receiver -----------------------------------------------------------


class Counting(DataFlow):
    def __init__(self, n, pause_s=0.002):
        self.n, self.pause_s = n, pause_s

    def __iter__(self):
        for i in range(self.n):
            time.sleep(self.pause_s)
            yield [i, np.full(3, i)]


class Sender(threading.Thread):
    def __init__(self, df, addr):
        super().__init__(name="test-sender")
        self.df, self.addr = df, addr
        self.result = self.error = None

    def run(self):
        import contextlib
        import io

        try:
            with contextlib.redirect_stderr(io.StringIO()):
                self.result = send_dataflow_zmq(self.df, self.addr)
        except BaseException as exc:  # noqa: B036 - the test looks at it
            self.error = exc


def raw_socket(addr):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 2000)
    sock.connect(addr)
    return ctx, sock


GARBAGE = [
    [b"\x01"],  # a prefix cut short
    [b"\x01garbage"],  # the DATA byte, then nonsense
    message(b"\x92\x01"),  # truncated body
    message(b"\x91" + array_ref("f8", (1000,))),  # the array frame is missing
    message(b"\x91" + array_ref("f8", (1000,)), b"\x00" * 10),  # frame of the wrong size
    message(bomb_body(1000)),  # declared lengths of 4 G, 1000 deep
    message(b"\x91" * 5000),  # nesting deeper than msgpack's stack
    message(msgpack.packb([7])),  # a datapoint that is not a list or dict
    message(msgpack.packb([[1]]), marker=0x1234),  # another program's marker
    encode(DATA, 0, 0, [msgpack.packb([1])], []),  # the parallel runners' transport
    [msgpack.packb({"a": 1}) + b"junk"],  # tensorpack-like, with trailing bytes
]


class TestReceiverWithUntrustedPeers:
    def test_garbage_is_dropped_counted_and_named_while_the_good_stream_goes_on(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S, max_message_bytes=1 << 20) as df:
            df.reset_state()
            sender = Sender(Counting(200), addr)
            sender.start()
            ctx, sock = raw_socket(addr)
            try:
                received = []
                with pytest.warns(PeerWarning) as caught:
                    for dp in df:
                        received.append(dp)
                        if len(received) == 50:
                            for frames in GARBAGE:
                                sock.send_multipart(frames)
            finally:
                sock.close()
                ctx.term()
                sender.join(WAIT_S)
            stats = df.stats
        assert [dp[0] for dp in received] == list(range(200))
        assert stats.dropped == len(GARBAGE)
        assert all(isinstance(dp, list) for dp in received)  # never an ExtType or int
        texts = [str(w.message) for w in caught]
        assert texts and all(t.startswith("RemoteDataZMQ dropped a message from ") for t in texts)
        assert any(f"from localhost:0:0:{os.getpid()}" in t for t in texts)  # the peer's pid

    def test_a_frame_larger_than_the_limit_never_arrives_and_the_stream_goes_on(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S, max_message_bytes=64 * 1024) as df:
            df.reset_state()
            ctx, sock = raw_socket(addr)
            try:
                sock.send_multipart(message(b"\x91", *[b"\x00" * 40_000] * 3))  # 120 KB in all
                # ZeroMQ disconnects a peer that sends a larger frame than the limit
                sock.send_multipart(message(b"\x90", b"\x00" * (1 << 20)))
                sender = Sender(Counting(20), addr)
                sender.start()
                with pytest.warns(PeerWarning, match="more than the limit of 65536"):
                    received = list(df)
                sender.join(WAIT_S)
            finally:
                sock.close()
                ctx.term()
            assert [dp[0] for dp in received] == list(range(20))
            assert df.stats.dropped == 1  # the one that fit in a frame; ZeroMQ dropped the other

    def test_a_flood_of_garbage_gives_one_warning_and_costs_no_memory(self):
        # TCP: libzmq 4.3 may drop what an ipc:// PUSH socket still queues when it is
        # closed while the receiver's queue is full, which would make the count vary.
        addr = tcp_address()

        def flood():
            ctx, sock = raw_socket(addr)
            try:
                for _ in range(300):
                    sock.send_multipart(message(bomb_body(200)))
            finally:
                sock.close(linger=WAIT_S * 1000)
                ctx.term()

        with RemoteDataZMQ(addr, timeout=0.5) as df:
            df.reset_state()
            flooder = threading.Thread(target=flood)
            flooder.start()
            tracemalloc.start()
            deadline = time.monotonic() + WAIT_S
            try:
                with pytest.warns(PeerWarning) as caught:
                    while df.stats.dropped < 300 and time.monotonic() < deadline:
                        with pytest.raises(TimeoutError):
                            next(iter(df))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
                flooder.join(WAIT_S)
            assert df.stats.dropped == 300
        assert len(caught) == 1  # rate-limited: one per peer and kind every 10 s
        assert peak < 32 << 20

    def test_a_later_warning_counts_the_ones_it_held_back(self, monkeypatch):
        from dataflow import _remote_peers

        monkeypatch.setattr(_remote_peers, "WARN_EVERY_S", 0.3)
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=0.5) as df:
            df.reset_state()
            ctx, sock = raw_socket(addr)
            try:
                with pytest.warns(PeerWarning) as caught:
                    for _ in range(5):
                        sock.send_multipart([b"\x01junk"])
                    with pytest.raises(TimeoutError):
                        next(iter(df))
                    time.sleep(0.4)
                    sock.send_multipart([b"\x01junk"])
                    with pytest.raises(TimeoutError):
                        next(iter(df))
            finally:
                sock.close()
                ctx.term()
        assert len(caught) == 2
        assert str(caught[1].message).endswith("(4 more like it since the last warning)")

    def test_forged_messages_of_no_sender_do_not_end_the_pass(self):
        # An END or ERROR whose id no sender announced is dropped: it neither ends
        # the pass nor counts as a sender; the loop waits for the real sender.
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            ctx, sock = raw_socket(addr)
            try:
                sock.send_multipart(message(msgpack.packb(["X", "forged", ""]), kind=ERROR))
                sock.send_multipart(message(msgpack.packb([0]), kind=END, epoch=4242))
                sender = Sender(Counting(10), addr)
                sender.start()
                with pytest.warns(PeerWarning, match="never announced"):
                    received = list(df)
                sender.join(WAIT_S)
            finally:
                sock.close()
                ctx.term()
        assert [dp[0] for dp in received] == list(range(10))

    def test_made_up_sender_ids_are_bounded_in_memory_and_in_warnings(self):
        from dataflow import _remote_peers

        addr = tcp_address()

        def forge():
            ctx, sock = raw_socket(addr)
            try:
                for sender_id in range(2, 1502):  # 1500 heartbeats of made-up senders
                    sock.send_multipart(
                        message(msgpack.packb([0, {"host": "x"}, None]), kind=MARK, epoch=sender_id)
                    )
            finally:
                sock.close(linger=WAIT_S * 1000)
                ctx.term()

        with RemoteDataZMQ(addr, timeout=WAIT_S, heartbeat_timeout=1.5) as df:
            df.reset_state()
            forger = threading.Thread(target=forge)
            forger.start()
            try:
                with pytest.warns(PeerWarning) as caught:
                    assert list(df) == []  # they all went silent: the pass is over
            finally:
                forger.join(WAIT_S)
            assert len(df.stats.senders) <= 1024
        assert len(caught) <= _remote_peers.WARNINGS_PER_WINDOW
        assert all("sent nothing for" in str(w.message) for w in caught)


def test_warnings_are_peer_warnings_which_are_runtime_warnings():
    assert issubclass(PeerWarning, RuntimeWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeerWarning)
        with pytest.raises(PeerWarning):
            warnings.warn("x", PeerWarning, stacklevel=1)

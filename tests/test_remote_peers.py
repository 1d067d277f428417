"""Tests of the liveness protocol of dataflow.remote: hellos, heartbeats, the end of a
pass, senders that fail, die, go silent or are interrupted, and receivers that wait."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import uuid

import msgpack
import pytest
import zmq

import dataflow.remote as remote
from dataflow import DataFlow, RemoteDataZMQ, send_dataflow_zmq
from dataflow.remote import PeerWarning, SenderError, SenderInfo

pytestmark = pytest.mark.timeout(60)

WAIT_S = 20


def ipc_address():
    return f"ipc://@dataflow-test-peers-{os.getpid()}-{uuid.uuid4().hex}"


class Slow(DataFlow):
    """``[tag, i]`` for *i* in ``range(n)`` (forever if *n* is None), *pause_s* apart."""

    def __init__(self, tag, n=None, pause_s=0.0):
        self.tag, self.n, self.pause_s = tag, n, pause_s

    def __iter__(self):
        i = 0
        while self.n is None or i < self.n:
            if self.pause_s:
                time.sleep(self.pause_s)
            yield [self.tag, i]
            i += 1


class Raising(DataFlow):
    def __init__(self, good):
        self.good = good

    def __iter__(self):
        for i in range(self.good):
            yield [i]
        raise KeyError("missing label")


def _quiet_send(df, addr):
    import contextlib
    import io

    from dataflow.parallel._workers import own_progress_lock

    own_progress_lock()  # some tests kill this process: it must not hold the parent's lock
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if the tests' shell ignores it
    with contextlib.redirect_stderr(io.StringIO()):
        send_dataflow_zmq(df, addr)


def start_process(df, addr):
    proc = multiprocessing.get_context("fork").Process(target=_quiet_send, args=(df, addr))
    proc.start()
    return proc


class Sender(threading.Thread):
    def __init__(self, df, addr, **kwargs):
        super().__init__(name="test-sender")
        self.args, self.kwargs = (df, addr), kwargs
        self.result = self.error = None

    def run(self):
        import contextlib
        import io

        try:
            with contextlib.redirect_stderr(io.StringIO()):
                self.result = send_dataflow_zmq(*self.args, **self.kwargs)
        except BaseException as exc:  # noqa: B036 - the test looks at it
            self.error = exc


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


def stop(*procs, wait_s=WAIT_S):
    """Join each of *procs*, killing any still alive after *wait_s*."""
    for proc in procs:
        proc.join(wait_s)
        if proc.is_alive():
            proc.kill()
            proc.join(WAIT_S)


class TestPasses:
    def test_two_sender_processes_each_datapoint_once_and_the_pass_ends_when_both_finish(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S, min_senders=2) as df:
            df.reset_state()
            a = start_process(Slow("a", 300), addr)
            time.sleep(0.3)  # 'a' may well finish before 'b' starts: min_senders waits
            b = start_process(Slow("b", 200, pause_s=0.001), addr)
            try:
                received = list(df)
            finally:
                stop(a, b)
        assert (a.exitcode, b.exitcode) == (0, 0)
        assert sorted(received) == sorted([["a", i] for i in range(300)]) + sorted(
            [["b", i] for i in range(200)]
        )
        senders = {s.pid: s for s in df.stats.senders}
        assert set(senders) == {a.pid, b.pid}
        assert senders[a.pid].received == 300 and senders[b.pid].received == 200
        assert all(s.state == "finished" for s in senders.values())
        assert senders[a.pid].description == "Slow(tag='a', n=300, pause_s=0.0)"  # its repr
        assert isinstance(df.stats.senders[0], SenderInfo)

    def test_the_next_pass_takes_the_next_senders(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            for tag in ("first", "second"):
                sender = Sender(Slow(tag, 5), addr)
                sender.start()
                assert list(df) == [[tag, i] for i in range(5)]
                sender.join(WAIT_S)
                assert [s.state for s in df.stats.senders] == ["finished"]
                assert sender.result == 5

    def test_keep_waiting_does_not_end_the_pass_when_the_senders_finish(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=1.0, keep_waiting=True) as df:
            df.reset_state()
            sender = Sender(Slow("a", 3), addr)
            sender.start()
            received = []
            with pytest.raises(TimeoutError, match=r"\(finished\)"):
                for dp in df:
                    received.append(dp)
            sender.join(WAIT_S)
            late = Sender(Slow("late", 2), addr)  # a new sender is welcome
            late.start()
            stream = iter(df)
            received += [next(stream), next(stream)]
            stream.close()
            late.join(WAIT_S)
        assert received == [["a", 0], ["a", 1], ["a", 2], ["late", 0], ["late", 1]]

    def test_a_slow_training_step_does_not_make_a_sender_look_silent(self):
        # The consumer holds each datapoint for longer than the heartbeat timeout; the
        # sender is alive all along, so no warning (warnings are errors in the tests).
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S, heartbeat_timeout=1.2) as df:
            df.reset_state()
            sender = Sender(Slow("a", 3), addr)
            sender.start()
            received = []
            for dp in df:
                received.append(dp)
                time.sleep(1.6)
            sender.join(WAIT_S)
        assert received == [["a", i] for i in range(3)]

    def test_a_pipeline_slow_to_produce_keeps_its_sender_live(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S, heartbeat_timeout=1.5) as df:
            df.reset_state()
            sender = Sender(Slow("a", 2, pause_s=2.5), addr)  # no datapoint for 2.5 s
            sender.start()
            assert list(df) == [["a", 0], ["a", 1]]
            sender.join(WAIT_S)


class TestSendersThatStop:
    def test_a_sender_killed_mid_stream_is_named_and_the_others_finish_the_pass(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S, heartbeat_timeout=1.5, min_senders=2) as df:
            df.reset_state()
            doomed = start_process(Slow("doomed", None, pause_s=0.01), addr)
            good = start_process(Slow("good", 60, pause_s=0.05), addr)
            received = []
            try:
                with pytest.warns(PeerWarning) as caught:
                    for dp in df:
                        received.append(dp)
                        if dp == ["doomed", 20]:
                            os.kill(doomed.pid, signal.SIGKILL)
            finally:
                stop(doomed, good)
        assert good.exitcode == 0 and doomed.exitcode == -signal.SIGKILL
        assert [dp for dp in received if dp[0] == "good"] == [["good", i] for i in range(60)]
        doomed_seen = [dp[1] for dp in received if dp[0] == "doomed"]
        assert doomed_seen == list(range(len(doomed_seen))) and len(doomed_seen) >= 21
        (warning,) = [w for w in caught if "sent nothing" in str(w.message)]
        text = str(warning.message)
        assert f"pid {doomed.pid}" in text and "heartbeat stopped" in text
        assert "goes on with the other senders" in text
        states = {s.pid: s.state for s in df.stats.senders}
        assert states == {doomed.pid: "silent", good.pid: "finished"}

    def test_a_sender_whose_pipeline_raises_is_reported_with_its_traceback(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            sender = Sender(Raising(4), addr)
            sender.start()
            with pytest.warns(PeerWarning) as caught:
                received = list(df)
            sender.join(WAIT_S)
        assert received == [[i] for i in range(4)]
        assert isinstance(sender.error, KeyError)
        (warning,) = caught
        text = str(warning.message)
        assert f"pid {os.getpid()}" in text and "raised KeyError: 'missing label'" in text
        assert "stopped after 4 datapoints" in text and "on_error='raise'" in text
        assert "Its traceback ends: " in text and "KeyError: 'missing label'" in text
        assert [s.state for s in df.stats.senders] == ["failed"]

    def test_on_error_raise_makes_a_senders_error_an_exception(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S, on_error="raise") as df:
            df.reset_state()
            sender = Sender(Raising(2), addr)
            sender.start()
            received = []
            with pytest.raises(SenderError) as info:
                for dp in df:
                    received.append(dp)
            sender.join(WAIT_S)
        assert received == [[0], [1]]
        assert "raise KeyError" in str(info.value)  # the remote traceback
        assert isinstance(info.value, RuntimeError)

    def test_an_interrupted_sender_says_so_and_ends_the_pass(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            proc = start_process(Slow("a", None, pause_s=0.01), addr)
            received = []
            try:
                with pytest.warns(PeerWarning, match="was interrupted after"):
                    for dp in df:
                        received.append(dp)
                        if len(received) == 10:
                            os.kill(proc.pid, signal.SIGINT)
            finally:
                stop(proc, wait_s=5)
        assert received == [["a", i] for i in range(len(received))]
        assert [s.state for s in df.stats.senders] == ["interrupted"]

    def test_no_live_sender_for_long_warns_periodically_and_timeout_still_raises(self, monkeypatch):
        monkeypatch.setattr(remote, "_IDLE_WARN_S", 0.3)
        with RemoteDataZMQ(ipc_address(), timeout=2.0) as df:
            df.reset_state()
            with pytest.warns(PeerWarning) as caught, pytest.raises(TimeoutError):
                next(iter(df))
        texts = [str(w.message) for w in caught]
        assert 2 <= len(texts) <= 4  # after 0.3 s, then 0.6 s more, then 1.2 s more
        assert all("has had no live sender on" in t for t in texts)
        assert "python -m dataflow.serve" in texts[0]


class TestAnonymousSenders:
    def test_messages_without_the_protocol_are_admitted_by_default(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            raw_push(addr, [[msgpack.packb([1, "x"])]])  # as tensorpack sends
            stream = iter(df)
            assert next(stream) == [1, "x"]
            stream.close()
            (info,) = df.stats.senders
            assert (info.state, info.received, info.id) == ("anonymous", 1, 0)

    def test_allow_anonymous_false_drops_them(self):
        addr = ipc_address()
        with RemoteDataZMQ(addr, timeout=0.5, allow_anonymous=False) as df:
            df.reset_state()
            raw_push(addr, [[msgpack.packb([1, "x"])]])
            with pytest.warns(PeerWarning, match="allow_anonymous=False"):
                with pytest.raises(TimeoutError):
                    next(iter(df))
            assert df.stats.dropped == 1


class TestArguments:
    @pytest.mark.parametrize(
        "kwargs, error, message",
        [
            ({"min_senders": 0}, ValueError, "min_senders must be a positive int, got 0"),
            ({"keep_waiting": 1}, TypeError, "keep_waiting must be"),
            (
                {"heartbeat_timeout": 0.5},
                ValueError,
                "heartbeat_timeout must be a finite number of seconds above 1 (the senders' "
                "heartbeat interval), got 0.5",
            ),
            (
                {"on_error": "ignore"},
                ValueError,
                "on_error must be 'warn' or 'raise', got 'ignore'",
            ),
            ({"allow_anonymous": None}, TypeError, "allow_anonymous must be"),
            ({"max_message_bytes": 10}, ValueError, "max_message_bytes must be an int >= 1024"),
        ],
    )
    def test_bad_arguments(self, kwargs, error, message):
        with pytest.raises(error) as info:
            RemoteDataZMQ(ipc_address(), **kwargs)
        assert str(info.value).startswith(message)

"""A datapoint already produced leaves its worker within the batching delay.

The ZeroMQ senders batch small datapoints, several to a message. A batch
must not wait for the next datapoint: behind a source that blocks (a queue,
a stuck read) or computes for a long time, what it already made must still
arrive within a few milliseconds. These tests let a source yield a few
datapoints quickly and then block for ``BLOCK_S``; each datapoint carries the
time it was made (``time.monotonic`` is the same clock in every process on
Linux), and each must arrive well within ``LATENCY_LIMIT_S``.

The dataflows the workers run are defined at module level, so that the spawn
start method can pickle them.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
import zmq

from dataflow import DataFlow, MultiProcessRunnerZMQ, get_worker_info
from dataflow._transport import DATA, END, ERROR, Stopped
from dataflow._transport import ZmqReceiver as Receiver
from dataflow._transport import ZmqSender as Sender
from dataflow._transport import zmq as _wire

TIMEOUT_S = 30
SPAWN_TIMEOUT_S = 90  # spawn children import numpy and this module first
# How long a source blocks after its quick datapoints. Without a flusher the
# batched ones arrive after this long; with one, after a few milliseconds.
BLOCK_S = 5.0
# What a test accepts: far above the few milliseconds expected, for a loaded
# 2-core machine, and far below BLOCK_S.
LATENCY_LIMIT_S = 1.5
# How long a test waits for something that should take milliseconds.
WAIT_S = 10.0
QUICK = 5  # datapoints a source yields quickly before it blocks

pytestmark = pytest.mark.timeout(TIMEOUT_S)


# ---- dataflows the workers run ----------------------------------------------------


def spin_until(deadline, release):
    """Pure-Python work that holds the GIL until *deadline* or until *release* is set."""
    while time.monotonic() < deadline and not release.is_set():
        total = 0
        for i in range(10_000):
            total += i


class QuickThenBlocked(DataFlow):
    """``[time made, worker, i]`` for *i* in ``range(QUICK)``, quickly; then blocks until
    *release* is set or ``BLOCK_S`` passed: waiting (*how* ``'wait'``), computing in
    Python with the GIL held (``'spin'``), or sleeping without *release* (``'sleep'``,
    for start methods that cannot pass an event)."""

    def __init__(self, release=None, how="wait"):
        self.release = release
        self.how = how

    def __iter__(self):
        info = get_worker_info()
        index = 0 if info is None else info.index
        for i in range(QUICK):
            yield [time.monotonic(), index, i]
        if self.how == "wait":
            self.release.wait(BLOCK_S)
        elif self.how == "spin":
            spin_until(time.monotonic() + BLOCK_S, self.release)
        else:
            time.sleep(BLOCK_S)


class Paced(DataFlow):
    """``[i]`` for *i* in ``range(n)``, or this worker's shard of it, pausing
    *pause_s* after every *every* datapoints (so that some batches are sent by
    the datapoint that fills them and some by the flusher)."""

    def __init__(self, n, every=37, pause_s=0.007, sharded=False):
        self.n = n
        self.every = every
        self.pause_s = pause_s
        self.sharded = sharded

    def _indices(self):
        info = get_worker_info()
        return range(self.n) if info is None or not self.sharded else info.shard(self.n)

    def __len__(self):
        return len(self._indices())

    def __iter__(self):
        for k, i in enumerate(self._indices(), 1):
            yield [i]
            if k % self.every == 0:
                time.sleep(self.pause_s)


# ---- helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def resource_tracker():
    """Start spawn's resource tracker before the test takes its snapshot of live
    children: it serves the whole session, it is not a worker left behind."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


def latencies(df, count):
    """Seconds from making to receiving, of the first *count* datapoints of *df*."""
    out = []
    it = iter(df)
    try:
        for _ in range(count):
            made, _, _ = next(it)
            out.append(time.monotonic() - made)
    finally:
        it.close()
    return out


def sender_pair(hwm=50):
    """A connected ``(Receiver, Sender, stop event, context)`` in this process."""
    ctx = zmq.Context()
    receiver = Receiver(ctx, hwm, None)
    stop = threading.Event()
    sender = Sender(ctx, receiver.address, hwm, 3, "test", stop.is_set, None)
    return receiver, sender, stop, ctx


def close_pair(receiver, sender, ctx):
    sender.close()
    receiver.close()
    ctx.term()


def messages(receiver, until_kind=None, quiet_s=0.3):
    """``(kind, worker, epoch, payload)`` of the messages that arrive until one of
    *until_kind*, or until none came for *quiet_s*."""
    out = []
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        message = receiver.recv(quiet_s if until_kind is None else 0.1)
        if message is None:
            if until_kind is None:
                return out
            continue
        out.append(message)
        if message[0] == until_kind:
            return out
    raise AssertionError(f"no message of kind {until_kind} within {WAIT_S} s: {out}")


def data_items(msgs):
    return [item for kind, _, _, payload in msgs if kind == DATA for item in payload]


class FullForTheFlusher:
    """``send_frames`` as if the queue were full, for the flusher thread only (while
    *full*); it notes the time of each of the flusher's tries."""

    def __init__(self):
        self.real = _wire.send_frames
        self.full = True
        self.tries = []

    def __call__(self, sock, frames, copy):
        if self.full and threading.current_thread().name.startswith("dataflow-flusher"):
            self.tries.append(time.monotonic())
            raise zmq.Again()
        self.real(sock, frames, copy)


def flusher_threads():
    return [t for t in threading.enumerate() if t.name.startswith("dataflow-flusher")]


# ---- the runner -------------------------------------------------------------------


class TestMultiProcessRunnerZMQ:
    @pytest.mark.parametrize("exactly_once", [False, True], ids=["clones", "exactly_once"])
    @pytest.mark.parametrize("num_proc", [1, 2])
    def test_datapoints_made_before_the_source_blocks_arrive_at_once(self, exactly_once, num_proc):
        release = multiprocessing_event()
        df = MultiProcessRunnerZMQ(QuickThenBlocked(release), num_proc, exactly_once=exactly_once)
        try:
            df.reset_state()
            waited = latencies(df, QUICK * num_proc)
        finally:
            release.set()
            df.close()
        assert max(waited) < LATENCY_LIMIT_S, waited

    def test_datapoints_made_before_a_long_computation_arrive_at_once(self):
        # The source holds the GIL: the flusher still gets its turn.
        release = multiprocessing_event()
        df = MultiProcessRunnerZMQ(QuickThenBlocked(release, how="spin"), 1)
        try:
            df.reset_state()
            waited = latencies(df, QUICK)
        finally:
            release.set()
            df.close()
        assert max(waited) < LATENCY_LIMIT_S, waited

    @pytest.mark.timeout(SPAWN_TIMEOUT_S)
    def test_spawned_workers_flush_and_stop(self, resource_tracker):
        df = MultiProcessRunnerZMQ(QuickThenBlocked(how="sleep"), 2, start_method="spawn")
        try:
            df.reset_state()
            waited = latencies(df, QUICK * 2)
        finally:
            df.close()
        assert max(waited) < LATENCY_LIMIT_S, waited

    def test_paced_clones_with_a_tiny_hwm_lose_and_reorder_nothing(self):
        with MultiProcessRunnerZMQ(Paced(1500), 1, hwm=1) as df:
            df.reset_state()
            it = iter(df)
            first = [next(it)[0] for _ in range(200)]
            time.sleep(0.2)  # the worker blocks at the high-water mark meanwhile
            rest = [dp[0] for dp in it]
        assert first + rest == list(range(1500))

    def test_paced_exactly_once_passes_after_an_abandoned_one(self):
        with MultiProcessRunnerZMQ(Paced(900, sharded=True), 2, hwm=2, exactly_once=True) as df:
            df.reset_state()
            for dp in df:  # abandon the first pass early
                if dp[0] > 10:
                    break
            for _ in range(2):
                assert sorted(dp[0] for dp in df) == list(range(900))


def multiprocessing_event():
    import multiprocessing

    return multiprocessing.get_context("fork").Event()


# ---- the sender -------------------------------------------------------------------


class TestSender:
    def test_a_batched_item_leaves_while_the_producer_waits(self):
        receiver, sender, _, ctx = sender_pair()
        try:
            made = time.monotonic()
            for i in range(QUICK):
                sender.put([i])
            got = []
            while len(got) < QUICK and time.monotonic() - made < WAIT_S:
                message = receiver.recv(0.1)
                if message is not None:
                    got.extend(message[3])
            waited = time.monotonic() - made
        finally:
            close_pair(receiver, sender, ctx)
        assert got == [[i] for i in range(QUICK)]
        assert waited < LATENCY_LIMIT_S

    def test_a_batched_item_leaves_while_the_producer_holds_the_gil(self):
        receiver, sender, _, ctx = sender_pair()
        arrived = []

        def receive():
            while len(arrived) < QUICK:
                message = receiver.recv(0.1)
                if message is not None:
                    arrived.extend((time.monotonic(), dp) for dp in message[3])

        thread = threading.Thread(target=receive, name="test-receiver")
        thread.start()
        release = threading.Event()
        try:
            made = time.monotonic()
            for i in range(QUICK):
                sender.put([i])
            deadline = made + BLOCK_S
            while len(arrived) < QUICK and time.monotonic() < deadline:
                spin_until(time.monotonic() + 0.01, release)  # holds the GIL, mostly
        finally:
            release.set()
            thread.join(WAIT_S)
            close_pair(receiver, sender, ctx)
        assert [dp for _, dp in arrived] == [[i] for i in range(QUICK)]
        assert max(t for t, _ in arrived) - made < LATENCY_LIMIT_S

    def test_end_follows_all_data_of_its_pass(self):
        receiver, sender, _, ctx = sender_pair()
        try:
            sender.epoch = 7
            for i in range(300):
                sender.put([i])
                if i % 50 == 0:
                    time.sleep(0.01)  # the flusher sends this batch
            sender.send_end(300)
            msgs = messages(receiver, END)
        finally:
            close_pair(receiver, sender, ctx)
        assert [m[0] for m in msgs[:-1]] == [DATA] * (len(msgs) - 1)
        assert msgs[-1][0] == END and msgs[-1][3] == [300]
        assert {(m[1], m[2]) for m in msgs} == {(3, 7)}
        assert data_items(msgs) == [[i] for i in range(300)]

    def test_items_made_around_the_delay_arrive_once_and_in_order(self):
        # The flusher and put() race for batches, most at the moment a batch turns
        # _BATCH_DELAY_S old; the list they share must lose and repeat nothing. A
        # small queue and a slow reader make both meet the high-water mark too.
        receiver, sender, _, ctx = sender_pair(hwm=2)
        msgs = []

        def read():
            while not msgs or msgs[-1][0] != END:
                message = receiver.recv(WAIT_S)
                if message is None:
                    return
                msgs.append(message)
                if len(msgs) % 50 == 0:
                    time.sleep(0.01)

        reader = threading.Thread(target=read, name="test-reader")
        reader.start()
        rng = random.Random(0)
        try:
            for i in range(20_000):
                sender.put([i])
                if rng.random() < 0.003:
                    time.sleep(rng.choice([0.0005, 0.004, 0.005, 0.006]))
            sender.send_end(20_000)
        finally:
            reader.join(WAIT_S)
            close_pair(receiver, sender, ctx)
        assert msgs[-1][0] == END
        assert data_items(msgs) == [[i] for i in range(20_000)]

    def test_an_error_report_follows_the_data_made_before_it(self):
        receiver, sender, _, ctx = sender_pair()
        try:
            for i in range(4):
                sender.put([i])
            time.sleep(0.05)  # some may leave with the flusher, some not
            sender.put([4])
            sender.send_error(("ValueError", "bad", "Traceback ..."))
            msgs = messages(receiver, ERROR)
        finally:
            close_pair(receiver, sender, ctx)
        assert data_items(msgs) == [[i] for i in range(5)]
        assert msgs[-1][0] == ERROR and msgs[-1][3] == ["ValueError", "bad", "Traceback ..."]

    def test_a_batch_keeps_the_pass_it_was_made_in(self):
        receiver, sender, _, ctx = sender_pair()
        try:
            sender.epoch = 1
            sender.put([0])
            sender.put([1])
            sender.epoch = 2  # never done with a batch waiting, but the batch must not care
            msgs = messages(receiver)
        finally:
            close_pair(receiver, sender, ctx)
        assert [(m[2], m[3]) for m in msgs] == [(1, [[0]]), (1, [[1]])]

    def test_discard_drops_what_waits(self):
        receiver, sender, _, ctx = sender_pair()
        try:
            sender.put([0])
            for i in range(1, 20):
                sender.put([i])
            sender.discard()
            sender.put(["next"])
            msgs = messages(receiver)
        finally:
            close_pair(receiver, sender, ctx)
        items = data_items(msgs)
        # What the flusher sent before discard() went out; nothing after it but "next".
        assert items[0] == [0] and items[-1] == ["next"]
        assert items[:-1] == [[i] for i in range(len(items) - 1)]

    def test_at_the_high_water_mark_the_flusher_keeps_the_batch_and_retries(self, monkeypatch):
        full = FullForTheFlusher()
        monkeypatch.setattr(_wire, "send_frames", full)
        receiver, sender, _, ctx = sender_pair()
        try:
            for i in range(QUICK):  # the first goes out at once, the others wait
                sender.put([i])
            deadline = time.monotonic() + WAIT_S
            while len(full.tries) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(full.tries) >= 3  # it keeps trying ...
            full.full = False
            msgs = messages(receiver)  # ... and sends once there is room
        finally:
            close_pair(receiver, sender, ctx)
        assert data_items(msgs) == [[i] for i in range(QUICK)]

    def test_close_ends_the_flusher_at_once_even_when_the_queue_is_full(self, monkeypatch):
        full = FullForTheFlusher()
        monkeypatch.setattr(_wire, "send_frames", full)
        receiver, sender, _, ctx = sender_pair()
        try:
            for i in range(QUICK):
                sender.put([i])
            deadline = time.monotonic() + WAIT_S
            while not full.tries and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(flusher_threads()) == 1
        finally:
            start = time.monotonic()
            close_pair(receiver, sender, ctx)
            closing = time.monotonic() - start
        assert closing < 1.0
        assert flusher_threads() == []

    def test_put_raises_stopped_when_blocked_and_told_to_stop(self):
        receiver, sender, stop, ctx = sender_pair(hwm=1)
        timer = threading.Timer(0.3, stop.set)
        timer.start()
        try:
            with pytest.raises(Stopped):
                while True:  # the receiver never reads: this blocks, then stops
                    sender.put([b"x" * 200])  # batches under zero-copy size
        finally:
            timer.join()
            close_pair(receiver, sender, ctx)
        assert flusher_threads() == []

    def test_the_mapper_way_sends_results_that_wait_without_a_flush(self):
        # A mapper's worker adds results with put_now and flushes after a chunk; a
        # result made before a slow task must not wait for that task to end.
        receiver, sender, _, ctx = sender_pair()
        try:
            for i in range(3):
                sender.put_now([i])
            msgs = messages(receiver)  # no flush: the flusher thread sends them
            assert data_items(msgs) == [[0], [1], [2]]
            sender.put_now([3])
            sender.flush()
            assert data_items(messages(receiver)) == [[3]]
        finally:
            close_pair(receiver, sender, ctx)
        assert flusher_threads() == []  # and close() ends it

"""Large arrays through the shared-memory arena of the ZeroMQ runners and mappers.

Workers of these tests are forked (or spawned) from this module, so its
module-level functions are what they run.
"""

from __future__ import annotations

import gc
import mmap
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
from _procs import process_alive, survivors

from dataflow import (
    DataFlow,
    DataFromList,
    MultiProcessMapAndBatchDataZMQ,
    MultiProcessMapDataZMQ,
    MultiProcessRunnerZMQ,
)
from dataflow._transport import shm as shm_module
from dataflow.parallel import SharedMemoryWarning, WorkerDiedError

# Python 3.12+ warns at a fork while threads run (a test's own helpers may); inside
# pytest.warns() that warning would be re-raised as an error.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)

BIG = (64, 1024)  # 64 KiB of uint8: at the threshold, so it travels out of band
SPAWN_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def multiprocessing_helpers():
    """Start the helper processes of spawn and forkserver (they serve the whole
    session) before a test takes its snapshot of live children."""
    from multiprocessing import forkserver, resource_tracker

    resource_tracker.ensure_running()
    forkserver.ensure_running()


def _dev_shm() -> set:
    """The entries of /dev/shm this library could have made (other programs' come and go)."""
    try:
        return {name for name in os.listdir("/dev/shm") if "dataflow" in name}
    except OSError:
        return set()


def _arena_mappings(pid: int) -> int:
    """How many mappings of a dataflow arena process *pid* has."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return sum("dataflow-arena" in line for line in f)
    except OSError:
        return 0


class Filled(DataFlow):
    """*n* datapoints ``[array full of i % 251, i]``; shards itself."""

    def __init__(self, n, shape=BIG, dtype=np.uint8):
        self.n, self.shape, self.dtype = n, shape, dtype

    def _indices(self):
        from dataflow import get_worker_info

        info = get_worker_info()
        if info is None or not info.sharded:
            return range(self.n)
        return range(self.n)[info.index :: info.num_workers]

    def __len__(self):
        return len(self._indices())

    def __iter__(self):
        for i in self._indices():
            yield [np.full(self.shape, i % 251, self.dtype), i]


def _check(dp):
    array, i = dp
    assert array.shape == BIG and array.dtype == np.uint8
    assert array[0, 0] == i % 251 and array[-1, -1] == i % 251, (array[0, 0], i)


def _in_arena(array):
    return isinstance(array.base, mmap.mmap)


def _fill(dp):
    return [np.full(BIG, dp[0] % 251, np.uint8), dp[0]]


class TestRunner:
    @pytest.mark.timeout(60)
    def test_large_arrays_arrive_as_writable_views_of_the_arena(self):
        with MultiProcessRunnerZMQ(Filled(40), 2, exactly_once=True) as df:
            df.reset_state()
            seen = []
            for dp in df:
                _check(dp)
                assert _in_arena(dp[0]) and dp[0].flags.writeable
                dp[0][0, 0] = 7  # the consumer may write into it
                seen.append(dp[1])
        assert sorted(seen) == list(range(40))

    @pytest.mark.timeout(60)
    def test_shm_false_sends_frames(self):
        with MultiProcessRunnerZMQ(Filled(10), 1, exactly_once=True, shm=False) as df:
            df.reset_state()
            arrays = [dp[0] for dp in df]
        assert arrays and not any(_in_arena(a) for a in arrays)

    @pytest.mark.timeout(120)
    def test_room_is_reused_many_times_over(self):
        # 32 MiB in all: 16 MiB per worker, and 1000 arrays of 1 MiB pass through.
        with warnings.catch_warnings():
            warnings.simplefilter("error", SharedMemoryWarning)
            with MultiProcessRunnerZMQ(
                Filled(1000, (1024, 1024)), 2, exactly_once=True, shm_bytes=32 << 20
            ) as df:
                df.reset_state()
                count = 0
                for array, i in df:
                    assert _in_arena(array) and array[5, 5] == i % 251
                    count += 1
        assert count == 1000

    @pytest.mark.timeout(120)
    def test_kept_arrays_never_change_and_a_full_arena_copies_with_a_warning(self):
        kept = []
        with pytest.warns(SharedMemoryWarning, match="still alive hold"):
            with MultiProcessRunnerZMQ(
                Filled(120, (1024, 1024)), 2, exactly_once=True, shm_bytes=32 << 20
            ) as df:
                df.reset_state()
                for dp in df:
                    kept.append(dp)  # 120 MiB kept: far more than the arena holds
                for array, i in kept:  # nothing overwrote a kept array
                    assert (array == i % 251).all()
        assert sorted(i for _, i in kept) == list(range(120))
        assert any(_in_arena(a) for a, _ in kept) and not all(_in_arena(a) for a, _ in kept)

    @pytest.mark.timeout(120)
    def test_room_of_released_arrays_returns_to_the_workers(self):
        with MultiProcessRunnerZMQ(Filled(50), 2, exactly_once=True) as df:
            df.reset_state()
            arena = df._arena
            for _ in range(2):
                for dp in df:
                    _check(dp)
                del dp
                gc.collect()
                # Between passes the workers wait: every ticket was released.
                assert not arena.tickets.any()

    @pytest.mark.timeout(120)
    def test_an_abandoned_pass_gives_back_the_room_of_what_was_not_sent(self):
        with MultiProcessRunnerZMQ(Filled(400), 2, exactly_once=True, hwm=2) as df:
            df.reset_state()
            for k, _dp in enumerate(df):
                if k == 5:
                    break
            del _dp
            count = sum(1 for _ in df)  # the next pass, whole
            assert count == 400
            gc.collect()
            assert not df._arena.tickets.any()

    @pytest.mark.timeout(60)
    def test_an_array_larger_than_a_quarter_region_travels_as_frames_with_one_warning(self):
        with pytest.warns(SharedMemoryWarning, match="more than a quarter") as record:
            with MultiProcessRunnerZMQ(
                Filled(3, (5 << 20,)), 1, exactly_once=True, shm_bytes=16 << 20
            ) as df:
                df.reset_state()
                arrays = [dp[0] for dp in df]
        assert len([w for w in record if w.category is SharedMemoryWarning]) == 1
        assert [int(a[-1]) for a in arrays] == [0, 1, 2]
        assert not any(_in_arena(a) for a in arrays)

    @pytest.mark.timeout(60)
    def test_too_little_shared_memory_falls_back_at_reset_with_a_warning(self, monkeypatch):
        monkeypatch.setattr(shm_module, "_available_bytes", lambda path: 8 << 20)
        with pytest.warns(SharedMemoryWarning, match="per worker could be taken"):
            df = MultiProcessRunnerZMQ(Filled(4), 2, exactly_once=True)
            df.reset_state()
        with df:
            arrays = [dp[0] for dp in df]
        assert len(arrays) == 4 and not any(_in_arena(a) for a in arrays)

    @pytest.mark.timeout(60)
    def test_asking_for_more_than_is_available_warns_and_falls_back(self, monkeypatch):
        monkeypatch.setattr(shm_module, "_available_bytes", lambda path: 64 << 20)
        with pytest.warns(SharedMemoryWarning, match="more than the 64 MiB"):
            df = MultiProcessRunnerZMQ(Filled(2), 1, shm_bytes=1 << 30, exactly_once=True)
            df.reset_state()
        with df:
            assert len([dp for dp in df]) == 2

    def test_checks_its_arguments(self):
        with pytest.raises(TypeError, match="shm must be True, False or None, got 'yes'"):
            MultiProcessRunnerZMQ(Filled(2), 1, shm="yes")
        with pytest.raises(ValueError, match="shm_bytes must be a positive int"):
            MultiProcessRunnerZMQ(Filled(2), 1, shm_bytes=0)
        from dataflow.serialize import PickleSerializer

        with pytest.raises(ValueError, match="shm=True needs the built-in wire format"):
            MultiProcessMapDataZMQ(Filled(2), 1, _fill, shm=True, serializer=PickleSerializer())

    @pytest.mark.timeout(SPAWN_TIMEOUT_S)
    @pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
    def test_works_with_spawn_and_forkserver(self, start_method, multiprocessing_helpers):
        with MultiProcessRunnerZMQ(
            Filled(12), 2, exactly_once=True, start_method=start_method
        ) as df:
            df.reset_state()
            got = []
            for dp in df:
                _check(dp)
                assert _in_arena(dp[0])
                got.append(dp[1])
        assert sorted(got) == list(range(12))


class Several(DataFlow):
    """*n* datapoints of *count* arrays of *shape* each, all full of i % 251."""

    def __init__(self, n, count, shape):
        self.n, self.count, self.shape = n, count, shape

    def __len__(self):
        return self.n

    def __iter__(self):
        for i in range(self.n):
            yield [i, *[np.full(self.shape, i % 251, np.uint8) for _ in range(self.count)]]


class TestNoStalemate:
    """The process that iterates always holds its last datapoint (and a buffer may
    hold many) while it waits for the next one: a worker never waits for that room."""

    @pytest.mark.timeout(60)
    def test_arrays_of_a_datapoint_beyond_a_quarter_of_a_region_travel_as_frames(self):
        with pytest.warns(SharedMemoryWarning, match="more than a quarter of a worker's"):
            with MultiProcessRunnerZMQ(
                Several(10, 3, (3 << 20,)), 1, exactly_once=True, shm_bytes=16 << 20, timeout=20
            ) as df:
                df.reset_state()
                got = []
                for dp in df:  # nothing kept but the loop's own variable
                    assert all((a == dp[0] % 251).all() for a in dp[1:])
                    got.append(dp[0])
        assert got == list(range(10))

    @pytest.mark.timeout(60)
    def test_more_arrays_in_a_datapoint_than_a_quarter_of_the_tickets(self):
        with pytest.warns(SharedMemoryWarning, match="or 256 arrays"):
            with MultiProcessRunnerZMQ(
                Several(3, 300, (1 << 16,)), 1, exactly_once=True, timeout=20
            ) as df:
                df.reset_state()
                got = []
                for dp in df:  # nothing kept but the loop's own variable
                    assert all((a == dp[0] % 251).all() for a in dp[1:])
                    got.append(dp[0])
        assert got == [0, 1, 2]

    @pytest.mark.timeout(120)
    def test_a_large_shuffle_buffer_after_the_runner(self):
        from dataflow import LocallyShuffleData

        runner = MultiProcessRunnerZMQ(Filled(3000), 2, exactly_once=True, timeout=30)
        with pytest.warns(SharedMemoryWarning, match="still alive hold"):
            with LocallyShuffleData(runner, buffer_size=2000) as df:
                df.reset_state()
                seen = []
                for dp in df:
                    _check(dp)
                    seen.append(dp[1])
        assert sorted(seen) == list(range(3000))


def _image(dp):
    return [np.full((64, 64, 3), dp[0] % 251, np.uint8), dp[0]]


def _every_other(batch):
    return batch if batch[1][0] % 64 == 0 else None  # drops the batch in the worker


def _no_copy(dst, src):
    raise AssertionError("an array was copied into the arena")


def _batches(n, batch_size):
    from dataflow import BatchData, MapData

    return BatchData(
        MapData(DataFromList([[i] for i in range(n)], shuffle=False), _image), batch_size
    )


class TestBatchesFilledInPlace:
    """BatchData in a worker fills its batches straight into the arena: no copy."""

    @pytest.mark.timeout(60)
    def test_a_runner_sends_batches_made_in_the_arena(self, monkeypatch):
        monkeypatch.setattr(shm_module, "_copy", _no_copy)  # the forked workers' too
        with MultiProcessRunnerZMQ(_batches(256, 32), 2, exactly_once=True) as df:
            df.reset_state()
            for _ in range(2):
                seen = []
                for images, labels in df:
                    assert _in_arena(images) and images.shape == (32, 64, 64, 3)
                    assert (images[:, 5, 5, 0] == labels % 251).all()
                    seen += labels.tolist()
                assert sorted(seen) == list(range(256))
            del images, labels
            gc.collect()
            assert not df._arena.tickets.any()

    @pytest.mark.timeout(60)
    def test_map_and_batch_sends_batches_made_in_the_arena(self, monkeypatch):
        monkeypatch.setattr(shm_module, "_copy", _no_copy)
        source = DataFromList([[i] for i in range(64)], shuffle=False)
        with MultiProcessMapAndBatchDataZMQ(
            source, 2, _image, batch_size=16, strict=True, ordered=True
        ) as df:
            df.reset_state()
            batches = list(df)
        assert [b[1].tolist() for b in batches] == [
            list(range(k, k + 16)) for k in range(0, 64, 16)
        ]
        assert all(_in_arena(b[0]) and (b[0][:, 1, 1, 2] == b[1] % 251).all() for b in batches)

    @pytest.mark.timeout(60)
    def test_a_batch_sent_twice_arrives_twice_intact(self):
        from dataflow import RepeatedDataPoint

        with MultiProcessRunnerZMQ(
            RepeatedDataPoint(_batches(128, 32), 2), 1, exactly_once=True
        ) as df:
            df.reset_state()
            kept = list(df)
        assert [b[1][0] for b in kept] == [0, 0, 32, 32, 64, 64, 96, 96]
        for images, labels in kept:  # later batches never overwrote a kept one
            assert (images[:, 7, 7, 1] == labels % 251).all()
        assert kept[0][0] is not kept[1][0] and _in_arena(kept[1][0])

    @pytest.mark.timeout(60)
    def test_the_room_of_batches_dropped_in_the_worker_comes_back(self):
        from dataflow import MapData

        dropped = MapData(_batches(3200, 32), _every_other)
        with MultiProcessRunnerZMQ(
            dropped, 1, exactly_once=True, shm_bytes=16 << 20, timeout=30
        ) as df:
            df.reset_state()
            with warnings.catch_warnings():
                warnings.simplefilter("error", SharedMemoryWarning)
                firsts = [int(labels[0]) for images, labels in df if _in_arena(images)]
        assert firsts == list(range(0, 3200, 64))


class TestArenaWriter:
    @pytest.fixture
    def arena(self):
        arena, why = shm_module.create_arena(1, 16 << 20)
        assert arena is not None, why
        yield arena
        arena.close()

    def test_a_full_region_waits_for_the_consumer(self, arena):
        class Stop(Exception):
            pass

        deadline = time.monotonic() + 0.3

        def check_stop():
            if time.monotonic() > deadline:
                raise Stop

        writer = shm_module.ArenaWriter(arena, 0, check_stop)
        array = np.zeros(3 << 20, np.uint8)
        for _ in range(5):  # 15 of 16 MiB held by "the consumer", which reads on
            assert writer.put(array) is not None
            writer.sent()
        with pytest.raises(Stop):
            writer.put(array)  # waits for room until told to stop

    def test_gives_up_waiting_when_the_consumer_waits_while_holding_the_room(self, arena):
        writer = shm_module.ArenaWriter(arena, 0, lambda: None)
        array = np.zeros(3 << 20, np.uint8)
        for _ in range(5):
            assert writer.put(array) is not None
            writer.sent()
        arena.waiting[0] = time.monotonic() - 1.0  # waiting for a message for a second
        start = time.monotonic()
        assert writer.put(array) is None  # frames instead
        assert time.monotonic() - start < 5
        reader = shm_module.ArenaReader(arena, "Runner")
        with pytest.warns(SharedMemoryWarning, match="the loop waited for a datapoint while"):
            reader.frames_used(0)

    def test_room_comes_back_when_the_consumer_releases_it(self, arena):
        writer = shm_module.ArenaWriter(arena, 0, lambda: None)
        array = np.arange(3 << 20, dtype=np.int64).astype(np.uint8)
        first = writer.put(array)
        writer.sent()
        ticket, offset = shm_module.DESCRIPTOR.unpack_from(first)
        assert arena.tickets[0, ticket] == 1
        arena.tickets[0, ticket] = 0  # released
        second = writer.put(array)
        assert shm_module.DESCRIPTOR.unpack_from(second)[1] == offset  # the same room
        view = np.ndarray(array.shape, array.dtype, arena.mm, arena.base(0) + offset)
        assert (view == array).all()
        writer.discard()  # not sent: its ticket is free again
        assert not arena.tickets.any()

    def test_one_message_takes_at_most_a_quarter_of_the_region(self, arena):
        writer = shm_module.ArenaWriter(arena, 0, lambda: None)
        assert writer.put(np.zeros(3 << 20, np.uint8)) is not None
        assert writer.put(np.zeros(2 << 20, np.uint8)) is None  # 5 MiB > 4 MiB
        writer.sent()
        assert writer.put(np.zeros(2 << 20, np.uint8)) is not None  # a new message


DTYPES = [
    np.bool_,
    np.int8,
    np.uint16,
    np.int32,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
    np.complex128,
    ">i4",
    "<U8",
    "S5",
]


def _arrays_of_every_kind():
    rng = np.random.RandomState(0)
    out = []
    for dtype in DTYPES:
        dtype = np.dtype(dtype)
        n = (1 << 17) // dtype.itemsize
        raw = rng.randint(0, 100, n)
        out.append(raw.astype(dtype))
    base = rng.randint(0, 255, (512, 512)).astype(np.uint8)
    out.append(base.T)  # not contiguous
    out.append(base[::2, 1::3])  # strided
    out.append(np.asfortranarray(rng.rand(200, 300)))
    out.append(np.zeros((0, 1 << 20), np.float32))  # empty, with a large shape
    out.append(rng.rand(1 << 14, 1, 2)[:, 0, :])  # a 2-D view of 3-D memory
    out.append(np.float64(3.5))  # a scalar
    return out


class KindsSource(DataFlow):
    def __init__(self):
        self.arrays = _arrays_of_every_kind()

    def __len__(self):
        return len(self.arrays)

    def __iter__(self):
        for i, a in enumerate(self.arrays):
            yield [i, a]


class TestEveryDtypeAndShape:
    @pytest.mark.timeout(60)
    def test_every_dtype_and_layout_arrives_equal(self):
        expected = _arrays_of_every_kind()
        with MultiProcessRunnerZMQ(KindsSource(), 1) as df:
            df.reset_state()
            got = {}
            for i, a in df:
                got.setdefault(i, a)
                if len(got) == len(expected):
                    break
        for i, want in enumerate(expected):
            have = np.asarray(got[i])
            assert have.dtype == np.asarray(want).dtype, i
            assert have.shape == np.shape(want), i
            np.testing.assert_array_equal(have, want)
        assert _in_arena(got[0])  # the big ones went through the arena


class TestMappers:
    @pytest.mark.timeout(60)
    def test_map_results_arrive_in_the_arena(self):
        source = DataFromList([[i] for i in range(30)], shuffle=False)
        with MultiProcessMapDataZMQ(source, 2, _fill, strict=True, ordered=True) as df:
            df.reset_state()
            out = list(df)
        assert [dp[1] for dp in out] == list(range(30))
        for dp in out:
            _check(dp)
        assert all(_in_arena(dp[0]) for dp in out)

    @pytest.mark.timeout(60)
    def test_batches_arrive_in_the_arena(self):
        source = DataFromList([[i] for i in range(32)], shuffle=False)
        with MultiProcessMapAndBatchDataZMQ(
            source, 2, _fill, batch_size=8, strict=True, ordered=True
        ) as df:
            df.reset_state()
            batches = list(df)
        assert len(batches) == 4
        for k, (arrays, labels) in enumerate(batches):
            assert _in_arena(arrays) and arrays.shape == (8, *BIG)
            assert labels.tolist() == list(range(8 * k, 8 * k + 8))
            assert (arrays[:, 3, 3] == labels % 251).all()

    @pytest.mark.timeout(SPAWN_TIMEOUT_S)
    def test_batches_arrive_in_the_arena_under_spawn(self, multiprocessing_helpers):
        source = DataFromList([[i] for i in range(16)], shuffle=False)
        with MultiProcessMapAndBatchDataZMQ(
            source, 2, _fill, batch_size=4, strict=True, ordered=True, start_method="spawn"
        ) as df:
            df.reset_state()
            batches = list(df)
        assert [b[1].tolist() for b in batches] == [list(range(k, k + 4)) for k in (0, 4, 8, 12)]
        assert all(_in_arena(b[0]) for b in batches)


# ---- processes killed -------------------------------------------------------------------


class KillsItselfWhileCopying:
    """Stands in for the copy into the arena: copies half, then SIGKILLs the process."""

    def __init__(self, copy):
        self.copy = copy
        self.calls = 0

    def __call__(self, dst, src):
        self.calls += 1
        if self.calls == 3:
            flat = dst.reshape(-1)
            flat[: flat.size // 2] = src.reshape(-1)[: flat.size // 2]
            os.kill(os.getpid(), signal.SIGKILL)
        self.copy(dst, src)


def _drain(df):
    for dp in df:
        _check(dp)


class TestKilled:
    @pytest.mark.timeout(60)
    def test_a_worker_killed_while_filling_a_slot_is_named_and_nothing_is_left(self, monkeypatch):
        before = _dev_shm()
        monkeypatch.setattr(shm_module, "_copy", KillsItselfWhileCopying(shm_module._copy))
        df = MultiProcessRunnerZMQ(Filled(100), 1, exactly_once=True)
        df.reset_state()
        with pytest.raises(WorkerDiedError, match=r"worker 0 .*SIGKILL"):
            _drain(df)
        df.close()
        gc.collect()
        assert _dev_shm() == before
        assert _arena_mappings(os.getpid()) == 0

    @pytest.mark.timeout(60)
    def test_a_worker_killed_while_waiting_for_room_is_named(self):
        df = MultiProcessRunnerZMQ(Filled(100, (1024, 1024)), 1, shm_bytes=16 << 20, hwm=100)
        df.reset_state()
        it = iter(df)
        kept = [next(it) for _ in range(5)]  # 5 of the 16 MiB held
        time.sleep(0.5)  # the worker fills the rest and waits for room
        os.kill(df._workers.pid(0), signal.SIGKILL)
        with pytest.raises(WorkerDiedError, match=r"worker 0 .*SIGKILL"):
            for dp in it:
                assert (dp[0] == dp[1] % 251).all()
        df.close()
        for array, i in kept:
            assert (array == i % 251).all()

    @pytest.mark.timeout(90)
    def test_a_consumer_killed_leaves_no_worker_and_no_shared_memory(self, tmp_path):
        before = _dev_shm()
        script = tmp_path / "consumer.py"
        script.write_text(
            textwrap.dedent(
                f"""
                import sys, time
                sys.path.insert(0, {os.path.dirname(__file__)!r})
                from test_shm import Filled
                from dataflow import MultiProcessRunnerZMQ
                df = MultiProcessRunnerZMQ(Filled(10**6), 2)
                df.reset_state()
                it = iter(df)
                kept = [next(it) for _ in range(20)]
                print(*[df._workers.pid(i) for i in range(2)], flush=True)
                time.sleep(60)
                """
            )
        )
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            workers = [int(p) for p in line.split()]
            assert len(workers) == 2 and all(process_alive(p) for p in workers)
            assert all(_arena_mappings(p) == 1 for p in workers)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            assert survivors(workers, timeout=10) == []
        finally:
            proc.kill()
            proc.wait(timeout=10)
            proc.stdout.close()
        assert _dev_shm() == before

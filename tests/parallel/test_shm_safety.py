"""Arrays in the shared-memory arena are never overwritten while anyone holds them.

The cases here each corrupted data once: a batch made in a worker's region
and kept there (a cache) while the consumer released its copy; a message
decoded twice (a tuple dict key makes the decoder try again); a process
forked from the consumer letting go of arrays the consumer still holds.
Also: an arena that cannot be mapped falls back to frames, and arrays of
numpy subclasses (``np.memmap``) travel through the arena too.
"""

from __future__ import annotations

import gc
import mmap
import os
import types
import warnings

import numpy as np
import pytest

from dataflow import BatchData, CacheData, DataFlow, MultiProcessMapDataZMQ, MultiProcessRunnerZMQ
from dataflow._transport import shm as shm_module
from dataflow.parallel import SharedMemoryWarning

pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)

SHAPE = (3, 64, 64)  # 12 KiB each; a batch of 8 is 96 KiB: made in the arena


def _in_arena(array):
    return isinstance(array.base, mmap.mmap)


class Labelled(DataFlow):
    """*n* datapoints ``[array full of i % 251, i]``."""

    def __init__(self, n, shape=SHAPE):
        self.n, self.shape = n, shape

    def __len__(self):
        return self.n

    def __iter__(self):
        for i in range(self.n):
            yield [np.full(self.shape, i % 251, np.uint8), i]


def _wrong(batch):
    arrays, labels = batch
    return int(sum(not (a == y % 251).all() for a, y in zip(arrays, labels)))


class TestBatchesKeptInTheWorker:
    @pytest.mark.timeout(120)
    def test_a_cache_of_batches_made_in_the_arena_replays_them_intact(self):
        # CacheData keeps the batches BatchData made in the worker's region; the consumer
        # releases its views pass after pass while the worker yields them again.
        with MultiProcessRunnerZMQ(CacheData(BatchData(Labelled(64), 8)), 1) as df:
            df.reset_state()
            wrong = seen = 0
            arena_batches = 0
            for _ in range(8):
                for batch in df:
                    wrong += _wrong(batch)
                    arena_batches += _in_arena(batch[0])
                    seen += 1
                gc.collect()
        assert seen == 64 and wrong == 0
        assert arena_batches > 0  # the first pass's batches, at least, came from the arena

    @pytest.mark.timeout(120)
    def test_a_cache_larger_than_a_quarter_of_the_region_leaves_room_to_send(self):
        # 200 batches of 96 KiB, kept by the cache: more than a whole 16 MiB region.
        # The worker stops making batches in the arena before they fill it, so what it
        # sends still finds room there (without waiting for the loop, or a warning).
        with warnings.catch_warnings():
            warnings.simplefilter("error", SharedMemoryWarning)
            with MultiProcessRunnerZMQ(
                CacheData(BatchData(Labelled(1600), 8)), 1, exactly_once=True, shm_bytes=16 << 20
            ) as df:
                df.reset_state()
                wrong = in_arena = 0
                for _ in range(3):
                    for batch in df:
                        wrong += _wrong(batch)
                        in_arena += _in_arena(batch[0])
        assert wrong == 0 and in_arena == 600

    @pytest.mark.timeout(120)
    def test_the_room_of_a_kept_batch_comes_back_once_the_worker_drops_it(self):
        with MultiProcessRunnerZMQ(
            BatchData(Labelled(400), 8), 1, exactly_once=True, shm_bytes=16 << 20
        ) as df:
            df.reset_state()
            for _ in range(3):  # 50 batches of 96 KiB a pass, far more than the room
                assert sum(_wrong(batch) for batch in df) == 0
            gc.collect()
            assert not df._arena.tickets.any()


class Keyed(DataFlow):
    """Endless ``[{"img": array full of i % 251, (0, 1): "x"}]``: a tuple dict key."""

    def __iter__(self):
        i = 0
        while True:
            yield [{"img": np.full((256, 1024), i % 251, np.uint8), (0, 1): "x"}]
            i += 1


def _keyed(dp):
    return [{"img": np.full((256, 1024), dp[0] % 251, np.uint8), (0, 1): "x"}, dp[0]]


class Numbers(DataFlow):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __iter__(self):
        for i in range(self.n):
            yield [i]


class TestMessagesDecodedTwice:
    @pytest.mark.timeout(120)
    @pytest.mark.parametrize("shm", [None, False])
    def test_a_tuple_dict_key_beside_a_large_array(self, shm):
        with MultiProcessRunnerZMQ(Keyed(), 1, shm=shm) as df:
            df.reset_state()
            wrong = 0
            kept = []
            for n, (d,) in zip(range(300), df):
                assert d[(0, 1)] == "x"
                wrong += not (d["img"] == n % 251).all()
                if n % 10 == 0:
                    kept.append((n, d["img"]))
        assert wrong == 0
        assert all((img == n % 251).all() for n, img in kept)

    @pytest.mark.timeout(120)
    def test_a_mapper_result_with_a_tuple_dict_key(self):
        with MultiProcessMapDataZMQ(Numbers(200), 2, _keyed, strict=True) as df:
            df.reset_state()
            got = [(i, d["img"]) for d, i in df]
        assert sorted(i for i, _ in got) == list(range(200))
        assert all((img == i % 251).all() for i, img in got)


class TestForkedChildren:
    @pytest.mark.timeout(120)
    def test_a_child_of_the_consumer_that_drops_its_copies_frees_nothing(self):
        with MultiProcessRunnerZMQ(
            Labelled(200, (256, 1024)), 1, exactly_once=True, shm_bytes=16 << 20
        ) as df:
            df.reset_state()
            it = iter(df)
            kept = [next(it) for _ in range(3)]
            assert all(_in_arena(a) for a, _ in kept)
            pid = os.fork()
            if pid == 0:  # the child lets go of its copies of the arrays
                del kept
                gc.collect()
                os._exit(0)
            os.waitpid(pid, 0)
            rest = sum(1 for _ in it)  # the worker goes on: not into the kept arrays' room
        assert rest == 197
        assert [(a == i % 251).all() for a, i in kept] == [True, True, True]


class TestFallbacks:
    @pytest.mark.timeout(60)
    def test_an_arena_that_cannot_be_mapped_falls_back_to_frames(self, monkeypatch):
        def no_address_space(*args, **kwargs):
            raise OSError(12, "Cannot allocate memory")

        monkeypatch.setattr(shm_module, "mmap", types.SimpleNamespace(mmap=no_address_space))
        before = set(os.listdir("/proc/self/fd"))
        with pytest.warns(SharedMemoryWarning, match="could not be mapped"):
            df = MultiProcessRunnerZMQ(Labelled(4, (256, 1024)), 1, exactly_once=True)
            df.reset_state()
        with df:
            arrays = [dp[0] for dp in df]
        assert len(arrays) == 4 and not any(_in_arena(a) for a in arrays)
        leaked = [
            fd
            for fd in set(os.listdir("/proc/self/fd")) - before
            if "memfd" in os.readlink(f"/proc/self/fd/{fd}")
        ]
        assert leaked == []

    @pytest.mark.timeout(60)
    def test_the_default_arena_fits_the_address_space_limit(self, monkeypatch):
        monkeypatch.setattr(shm_module, "_address_space", lambda: 256 << 20)
        arena, why = shm_module.create_arena(2, None)
        assert arena is not None and why == ""
        try:
            assert arena.size <= 256 << 20
        finally:
            arena.close()

    def test_a_tiny_address_space_limit_says_so(self, monkeypatch):
        monkeypatch.setattr(shm_module, "_address_space", lambda: 32 << 20)
        arena, why = shm_module.create_arena(2, None)
        assert arena is None
        assert "a quarter of the available address space (ulimit -v)" in why


class Mapped(DataFlow):
    """Frames read from an ``np.memmap`` file, as video frames often are."""

    def __init__(self, path, n):
        self.path, self.n = path, n

    def __len__(self):
        return self.n

    def __iter__(self):
        frames = np.load(self.path, mmap_mode="r")
        for i in range(self.n):
            yield [frames[i], i]


class TestSubclasses:
    @pytest.mark.timeout(60)
    def test_memmap_slices_travel_through_the_arena(self, tmp_path):
        path = str(tmp_path / "frames.npy")
        data = np.stack([np.full((256, 1024), i % 251, np.uint8) for i in range(6)])
        np.save(path, data)
        with warnings.catch_warnings():
            warnings.simplefilter("error", SharedMemoryWarning)
            with MultiProcessRunnerZMQ(Mapped(path, 6), 1) as df:
                df.reset_state()
                got = [dp for dp in df]
        assert [i for _, i in got] == list(range(6))
        assert all(type(a) is np.ndarray and _in_arena(a) for a, _ in got)
        assert all((a == i % 251).all() for a, i in got)

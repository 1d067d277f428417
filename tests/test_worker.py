"""Tests of dataflow.worker: which worker the code runs in, shards and per-worker seeds."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import pickle
import threading
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflow import (
    DataFlow,
    DataFromIterable,
    DataFromList,
    FakeData,
    MultiProcessRunnerZMQ,
    MultiThreadRunner,
    RNGDataFlow,
    WorkerInfo,
    check_dataflow,
    get_worker_info,
)
from dataflow._rng import shared_seed as _shared_seed
from dataflow._worker_state import begin_pass, worker_context
from dataflow.parallel._workers import worker_seeds
from dataflow.worker import shard_order, shard_order_array

TIMEOUT_S = 30


class Coin(RNGDataFlow):
    """Five draws from ``self.rng``."""

    def __iter__(self):
        for _ in range(5):
            yield [int(self.rng.randint(1 << 30))]

    def __len__(self):
        return 5


class WhereAmI(DataFlow):
    """Once: ``[index, num_workers, seed, sharded]`` of the worker it runs in."""

    def __len__(self):
        return 1

    def __iter__(self):
        info = get_worker_info()
        yield [info.index, info.num_workers, info.seed, info.sharded]


def draws(seed=None):
    """The first pass of a fresh Coin seeded with *seed*, reset here."""
    coin = Coin().set_seed(seed)
    coin.reset_state()
    return list(coin)


class TestWorkerInfo:
    @pytest.mark.timeout(TIMEOUT_S)
    def test_defaults_to_no_seed_and_no_shards(self):
        info = WorkerInfo(1, 4)
        assert (info.index, info.num_workers, info.seed, info.sharded) == (1, 4, None, False)
        assert info.shared_seed is None

    @pytest.mark.timeout(TIMEOUT_S)
    def test_is_frozen_hashable_and_picklable(self):
        info = WorkerInfo(index=0, num_workers=2, seed=7, sharded=True)
        with pytest.raises(dataclasses.FrozenInstanceError):
            info.index = 1
        assert info == WorkerInfo(0, 2, 7, True) and hash(info) == hash(WorkerInfo(0, 2, 7, True))
        assert pickle.loads(pickle.dumps(info)) == info

    @pytest.mark.timeout(TIMEOUT_S)
    def test_shard_is_a_contiguous_block_when_sharded(self):
        assert WorkerInfo(1, 3, sharded=True).shard(8) == range(2, 5)
        assert [list(WorkerInfo(i, 3, sharded=True).shard(8)) for i in range(3)] == [
            [0, 1],
            [2, 3, 4],
            [5, 6, 7],
        ]
        assert list(WorkerInfo(0, 2, sharded=True).shard(5)) == [0, 1]
        assert list(WorkerInfo(1, 2, sharded=True).shard(5)) == [2, 3, 4]
        assert [list(WorkerInfo(i, 4, sharded=True).shard(3)) for i in range(4)] == [
            [],
            [0],
            [1],
            [2],
        ]
        assert WorkerInfo(3, 4, sharded=True).shard(0) == range(0, 0)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_shard_is_everything_when_not_sharded(self):
        assert WorkerInfo(1, 3).shard(8) == range(8)
        assert WorkerInfo(0, 1, sharded=True).shard(4) == range(4)

    @pytest.mark.timeout(TIMEOUT_S)
    @given(st.integers(0, 200), st.integers(1, 9))
    def test_shards_of_all_workers_are_consecutive_blocks_of_the_indices(self, n, workers):
        shards = [WorkerInfo(i, workers, sharded=True).shard(n) for i in range(workers)]
        assert list(itertools.chain(*shards)) == list(range(n))  # in order: block after block
        assert all(shard.step == 1 for shard in shards)
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        for i, shard in enumerate(shards):
            assert shard == range(i * n // workers, (i + 1) * n // workers)

    @pytest.mark.timeout(TIMEOUT_S)
    @given(
        n=st.integers(0, 200),
        workers=st.integers(1, 9),
        seed=st.integers(0, 2**64 - 1),
        pass_number=st.integers(0, 1000),
    )
    def test_shard_indices_of_all_workers_partition_the_indices(
        self, n, workers, seed, pass_number
    ):
        infos = [WorkerInfo(i, workers, sharded=True, shared_seed=seed) for i in range(workers)]
        parts = [info.shard_indices(n, pass_number=pass_number) for info in infos]
        assert sorted(itertools.chain(*parts)) == list(range(n))
        assert [len(part) for part in parts] == [len(info.shard(n)) for info in infos]

    @pytest.mark.timeout(TIMEOUT_S)
    def test_shard_indices_are_random_samples_that_depend_on_seed_and_pass(self):
        info = WorkerInfo(0, 2, sharded=True, shared_seed=1)
        part = info.shard_indices(1000)
        assert part != list(range(500)) and 200 < sum(i < 500 for i in part) < 300
        assert info.shard_indices(1000) == part  # the same seed and pass: the same part
        assert info.shard_indices(1000, pass_number=1) != part
        assert info.shard_indices(1000, seed=2) != part
        assert WorkerInfo(0, 2, sharded=True, shared_seed=2).shard_indices(1000) != part
        assert WorkerInfo(0, 2, sharded=True, shared_seed=2).shard_indices(1000, seed=1) == part

    @pytest.mark.timeout(TIMEOUT_S)
    def test_shard_indices_without_a_seed_or_shards(self):
        assert WorkerInfo(1, 3, sharded=True).shard_indices(8) == [2, 3, 4]
        assert WorkerInfo(1, 3, shared_seed=4).shard_indices(8) == range(8)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_sharded_sources_read_only_their_shard(self):
        lst = [[i] for i in range(8)]
        with worker_context(WorkerInfo(1, 3, sharded=True)):
            for df in (DataFromList(lst, shuffle=False), DataFromIterable(lst)):
                df.reset_state()
                assert (list(df), len(df)) == ([[2], [3], [4]], 3)
            shuffled = DataFromList(lst, seed=0)
            shuffled.reset_state()
            assert len(list(shuffled)) == len(shuffled) == 3  # a part of a partition
            assert len(FakeData([[1]], size=8)) == 3
        with worker_context(WorkerInfo(0, 3, sharded=True)):
            fake = FakeData([[1]], size=8)
            fake.reset_state()
            assert len(fake) == len(list(fake)) == 2

    @pytest.mark.timeout(TIMEOUT_S)
    def test_sources_read_everything_when_not_sharded(self):
        lst = [[i] for i in range(8)]
        with worker_context(WorkerInfo(1, 3, seed=5, sharded=False)):
            df = DataFromList(lst, shuffle=False)
            df.reset_state()
            assert list(df) == lst and len(FakeData([[1]], size=8)) == 8

    # -- seed: every worker its own reproducible stream --------------------------------

    @pytest.mark.timeout(TIMEOUT_S)
    def test_worker_seed_seeds_each_generator_reset_in_the_worker(self):
        def in_worker(index, seed):
            with worker_context(WorkerInfo(index, 2, seed=seed)):
                return draws(), draws()  # two generators, reset one after the other

        first, second = in_worker(0, 123)
        assert first != second  # each generator its own stream
        assert in_worker(0, 123) == (first, second)  # reproducible, in the order of resets
        assert in_worker(0, 124)[0] != first

    @pytest.mark.timeout(TIMEOUT_S)
    def test_explicit_seed_gives_each_worker_its_own_reproducible_stream(self):
        def in_worker(index):
            with worker_context(WorkerInfo(index, 2, seed=None)):
                return draws(seed=3)

        assert in_worker(1) == in_worker(1)
        assert in_worker(0) != in_worker(1)
        # Worker 0 keeps the seed's own stream, so one worker yields what ds yields alone.
        assert draws(seed=3) == in_worker(0) != in_worker(1)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_no_seed_anywhere_draws_fresh_entropy(self):
        with worker_context(WorkerInfo(0, 2)):
            first, second = draws(), draws()
        with worker_context(WorkerInfo(0, 2)):
            third = draws()
        assert len({tuple(map(tuple, d)) for d in (first, second, third)}) == 3

    @pytest.mark.timeout(TIMEOUT_S)
    def test_runner_seed_gives_workers_different_reproducible_seeds(self):
        def infos(seed, exactly_once=False):
            with MultiThreadRunner(WhereAmI, 3, 3, seed=seed, exactly_once=exactly_once) as df:
                df.reset_state()
                found = {}
                deadline = time.monotonic() + 15.0  # a thread may start late
                while time.monotonic() < deadline:
                    for dp in df:
                        found[dp[0]] = dp
                    if len(found) == 3:
                        return [found[i] for i in range(3)]
            raise AssertionError(f"not every worker answered: {found}")

        seeded = infos(9)
        assert [dp[:2] for dp in seeded] == [[0, 3], [1, 3], [2, 3]]
        assert all(isinstance(dp[2], int) for dp in seeded)
        assert len({dp[2] for dp in seeded}) == 3
        assert infos(9) == seeded
        assert [dp[2] for dp in infos(10)] != [dp[2] for dp in seeded]
        assert [dp[2] for dp in infos(None)] == [None] * 3
        assert {dp[3] for dp in seeded} == {False}
        assert {dp[3] for dp in infos(9, exactly_once=True)} == {True}


class TestGetWorkerInfo:
    @pytest.mark.timeout(TIMEOUT_S)
    def test_is_none_outside_workers(self):
        assert get_worker_info() is None

    @pytest.mark.timeout(TIMEOUT_S)
    def test_is_the_info_of_the_worker_context_and_restored_after(self):
        outer, inner = WorkerInfo(0, 2), WorkerInfo(1, 2, seed=4, sharded=True)
        with worker_context(outer):
            assert get_worker_info() is outer
            with worker_context(inner):
                assert get_worker_info() is inner
            assert get_worker_info() is outer
        assert get_worker_info() is None

    @pytest.mark.timeout(TIMEOUT_S)
    def test_is_restored_after_an_exception(self):
        with pytest.raises(KeyError):
            with worker_context(WorkerInfo(0, 1)):
                raise KeyError("x")
        assert get_worker_info() is None

    @pytest.mark.timeout(TIMEOUT_S)
    def test_a_worker_thread_does_not_change_other_threads(self):
        seen = []
        entered, release = threading.Event(), threading.Event()

        def work():
            with worker_context(WorkerInfo(0, 1)):
                entered.set()
                release.wait(5)
                seen.append(get_worker_info())

        t = threading.Thread(target=work)
        t.start()
        try:
            assert entered.wait(5)
            assert get_worker_info() is None
        finally:
            release.set()
            t.join(5)
        assert seen == [WorkerInfo(0, 1)]

    @pytest.mark.timeout(TIMEOUT_S)
    def test_tells_each_thread_of_a_runner_which_worker_it_is(self):
        with MultiThreadRunner(WhereAmI, 2, 2, exactly_once=True) as df:
            df.reset_state()
            assert sorted(df) == [[0, 2, None, True], [1, 2, None, True]]
        assert get_worker_info() is None

    @pytest.mark.timeout(TIMEOUT_S)
    def test_tells_each_process_of_a_runner_which_worker_it_is(self):
        out = check_dataflow(
            lambda: MultiProcessRunnerZMQ(WhereAmI(), num_proc=2, exactly_once=True, seed=1)
        )
        assert [dp[:2] + dp[3:] for dp in sorted(out)] == [[0, 2, True], [1, 2, True]]
        seeds = [dp[2] for dp in out]
        assert all(isinstance(s, int) for s in seeds) and seeds[0] != seeds[1]
        assert get_worker_info() is None  # the consumer's process is no worker

    @pytest.mark.timeout(TIMEOUT_S)
    def test_shards_a_source_of_your_own(self):
        class Shardable(DataFlow):
            def __init__(self, items):
                self.items = items

            def __len__(self):
                info = get_worker_info()
                return len(info.shard(len(self.items)) if info else self.items)

            def __iter__(self):
                info = get_worker_info()
                indices = info.shard(len(self.items)) if info else range(len(self.items))
                for i in indices:
                    yield [self.items[i]]

        items = list("abcdefg")
        out = check_dataflow(
            lambda: MultiThreadRunner(lambda: Shardable(items), 2, 3, exactly_once=True)
        )
        assert sorted(dp[0] for dp in out) == items

    @pytest.mark.timeout(TIMEOUT_S)
    @pytest.mark.parametrize("runner", ["processes", "threads"])
    def test_every_worker_of_a_runner_gets_the_same_shared_seed(self, runner):
        def shared_seeds(seed):
            if runner == "threads":
                df = MultiThreadRunner(SharedSeed, 2, 3, exactly_once=True, seed=seed)
            else:
                df = MultiProcessRunnerZMQ(SharedSeed(), 3, exactly_once=True, seed=seed)
            with df:
                df.reset_state()
                first = [dp[0] for dp in df]
                assert [dp[0] for dp in df] == first  # the same in every pass
                return first

        seeded = shared_seeds(5)
        assert len(set(seeded)) == 1 and isinstance(seeded[0], int)
        assert shared_seeds(5) == seeded  # derived from the runner's seed
        fresh = shared_seeds(None)
        assert len(set(fresh)) == 1 and fresh != shared_seeds(None)  # drawn once per runner


class SharedSeed(DataFlow):
    """Once: ``[shared_seed]`` of the worker it runs in."""

    def __len__(self):
        return 1

    def __iter__(self):
        yield [get_worker_info().shared_seed]


class TestShardOrder:
    @pytest.mark.timeout(TIMEOUT_S)
    def test_without_rng_is_the_range_or_the_contiguous_block(self):
        assert shard_order(5, None) == range(5)
        with worker_context(WorkerInfo(1, 2, sharded=True, shared_seed=3)):
            assert shard_order(5, None) == range(2, 5)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_outside_sharded_workers_is_the_rngs_permutation(self):
        infos = [None, WorkerInfo(1, 3, seed=2), WorkerInfo(0, 1, sharded=True, shared_seed=3)]
        for info in infos:
            with contextlib.ExitStack() as stack:
                if info is not None:
                    stack.enter_context(worker_context(info))
                order = shard_order(9, np.random.RandomState(4))
            assert order == np.random.RandomState(4).permutation(9).tolist()

    @pytest.mark.timeout(TIMEOUT_S)
    def test_in_sharded_workers_is_a_part_of_a_partition_in_the_rngs_order(self):
        orders = []
        for i in range(3):
            info = WorkerInfo(i, 3, sharded=True, shared_seed=8)
            with worker_context(info):
                orders.append(shard_order(20, np.random.RandomState(i)))
            assert sorted(orders[-1]) == sorted(info.shard_indices(20))
            assert orders[-1] != info.shard_indices(20)  # shuffled with the rng too
        assert sorted(itertools.chain(*orders)) == list(range(20))

    @pytest.mark.timeout(TIMEOUT_S)
    def test_a_source_seed_partitions_instead_of_the_shared_seed(self):
        def part(shared_seed, seed):
            with worker_context(WorkerInfo(0, 2, sharded=True, shared_seed=shared_seed)):
                return sorted(shard_order(50, np.random.RandomState(0), seed=seed))

        assert part(1, 7) == part(2, 7) != part(1, None) != part(2, None)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_announced_passes_draw_new_partitions_and_the_count_of_passes_does_not(self):
        info = WorkerInfo(0, 2, sharded=True, shared_seed=6)
        rng = np.random.RandomState(0)
        with worker_context(info):
            unannounced = [frozenset(shard_order(50, rng)) for _ in range(3)]
            begin_pass(1)
            first = frozenset(shard_order(50, rng))
            again = frozenset(shard_order(50, rng))  # e.g. RepeatedData inside the runner
            begin_pass(2)
            second = frozenset(shard_order(50, rng))
        assert len(set(unannounced)) == 1
        assert first == again == frozenset(info.shard_indices(50, pass_number=1))
        assert second == frozenset(info.shard_indices(50, pass_number=2)) != first

    @pytest.mark.timeout(TIMEOUT_S)
    def test_begin_pass_outside_workers_does_nothing(self):
        begin_pass(3)
        assert get_worker_info() is None
        assert shard_order(4, np.random.RandomState(1)) == (
            np.random.RandomState(1).permutation(4).tolist()
        )


class TestShardOrderArray:
    @pytest.mark.timeout(TIMEOUT_S)
    @pytest.mark.parametrize("seed", [None, 3])
    def test_the_same_order_and_draws_as_the_list_everywhere(self, seed):
        infos = [None, WorkerInfo(1, 3, seed=2), WorkerInfo(0, 1, sharded=True, shared_seed=3)]
        infos += [WorkerInfo(i, 3, sharded=True, shared_seed=8) for i in range(3)]
        infos += [WorkerInfo(0, 2, sharded=True, shard_index=1, num_shards=3, shared_seed=1)]
        for info in infos:
            for pass_number in (None, 2):
                a, b = np.random.RandomState(7), np.random.RandomState(7)
                with contextlib.ExitStack() as stack:
                    if info is not None:
                        stack.enter_context(worker_context(info))
                        if pass_number is not None:
                            begin_pass(pass_number)
                    sharded = info is not None and info.sharded and info.part[1] > 1
                    if sharded:
                        part = info.shard_indices(41, seed=seed, pass_number=pass_number or 0)
                    ref = np.random.RandomState(7)  # rng.permutation, as before the array
                    for _ in range(2):  # two passes: the rng moves on alike
                        reference = ref.permutation(np.array(part) if sharded else 41)
                        expected = shard_order(41, a, seed=seed)
                        got = shard_order_array(41, b, seed=seed)
                        assert isinstance(got, np.ndarray) and got.dtype == np.int32
                        assert got.tolist() == expected == reference.tolist(), info
                assert a.randint(1 << 30) == b.randint(1 << 30) == ref.randint(1 << 30)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_empty_and_one(self):
        assert shard_order_array(0, np.random.RandomState(0)).tolist() == []
        assert shard_order_array(1, np.random.RandomState(0)).tolist() == [0]

    @pytest.mark.timeout(TIMEOUT_S)
    def test_needs_a_generator(self):
        with pytest.raises(TypeError, match=r"needs the source's random generator, got rng=None"):
            shard_order_array(3, None)


class TestSharedSeed:
    @pytest.mark.timeout(TIMEOUT_S)
    def test_is_derived_from_the_runner_seed_apart_from_the_worker_seeds(self):
        assert _shared_seed(3) == _shared_seed(3) != _shared_seed(4)
        assert _shared_seed(3) not in worker_seeds(3, 64)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_without_a_seed_is_fresh_entropy(self):
        assert _shared_seed(None) != _shared_seed(None)

"""How runners split the work: shuffled exactly-once shards, and the warning for clones
that repeat each other.

The dataflows and functions the workers run are defined at module level, so that
the spawn start method can pickle them.
"""

from __future__ import annotations

import collections
import functools
import importlib
import statistics
import threading
import warnings

import pytest

from dataflow import (
    BatchData,
    CacheData,
    ConcatData,
    DataFlow,
    DataFromGenerator,
    DataFromIterable,
    DataFromList,
    FakeData,
    FixedSizeData,
    JoinData,
    LocallyShuffleData,
    MapData,
    MapDataComponent,
    PrintData,
    RandomChooseData,
    RandomMixData,
    RepeatedData,
    RepeatedDataPoint,
    SelectComponent,
    get_worker_info,
)
from dataflow._clones import _KNOWN, ClonesRepeatWarning, is_deterministic
from dataflow.parallel import MultiProcessRunner, MultiProcessRunnerZMQ, MultiThreadRunner

TIMEOUT_S = 30
SPAWN_TIMEOUT_S = 90
NUM_CLASSES = 10
PER_CLASS = 64
BATCH = 32

# [label, serial number], sorted by label, as a dataset listed class after class often is.
SORTED = [[label, label * PER_CLASS + k] for label in range(NUM_CLASSES) for k in range(PER_CLASS)]


def class_batches(shuffle=True, seed=None):
    """Batches of BATCH datapoints of SORTED, made inside the worker."""
    return BatchData(DataFromList(SORTED, shuffle=shuffle, seed=seed), BATCH)


def tag_with_worker(dp):
    return [dp[0], get_worker_info().index]


def tagged_items(n):
    """``[i, worker index]`` for i of a shuffled ``range(n)``."""
    return MapData(DataFromList([[i] for i in range(n)]), tag_with_worker)


RUNNERS = ["MultiProcessRunnerZMQ", "MultiProcessRunner", "MultiThreadRunner"]


@pytest.fixture(scope="module")
def resource_tracker():
    """Start multiprocessing's resource tracker before the test takes its snapshot of
    live children: it serves the whole session, it is no worker left behind."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


def make_runner(kind, source, workers, **kwargs):
    """A runner of *kind* with *workers* workers over the dataflows ``source()`` builds."""
    if kind == "MultiProcessRunnerZMQ":
        return MultiProcessRunnerZMQ(source(), num_proc=workers, **kwargs)
    if kind == "MultiProcessRunner":
        return MultiProcessRunner(source(), num_prefetch=4, num_proc=workers, **kwargs)
    return MultiThreadRunner(source, num_prefetch=4, num_thread=workers, **kwargs)


def serials(batches):
    return sorted(int(s) for batch in batches for s in batch[1])


# ---- exactly-once passes over a shuffled source ------------------------------------------


class TestShuffledExactlyOnce:
    @pytest.mark.timeout(TIMEOUT_S)
    @pytest.mark.parametrize("kind", RUNNERS)
    def test_batches_made_in_the_workers_mix_every_class(self, kind):
        # Contiguous blocks gave each of the 2 workers 5 classes: no batch held more.
        with make_runner(kind, class_batches, 2, exactly_once=True) as df:
            df.reset_state()
            for _ in range(2):
                batches = list(df)
                assert len(batches) == len(df) == len(SORTED) // BATCH
                assert serials(batches) == list(range(len(SORTED)))  # each once
                distinct = [len(set(batch[0].tolist())) for batch in batches]
                assert min(distinct) > 5 and statistics.mean(distinct) > 8

    @pytest.mark.timeout(TIMEOUT_S)
    @pytest.mark.parametrize("kind", RUNNERS)
    def test_every_datapoint_once_per_pass_around_abandoned_passes(self, kind):
        lst = [[i] for i in range(60)]
        with make_runner(kind, functools.partial(DataFromList, lst), 3, exactly_once=True) as df:
            df.reset_state()
            for _ in range(3):
                assert sorted(dp[0] for dp in df) == list(range(60))
                for _ in range(2):
                    assert next(iter(df)) in lst  # abandoned after one datapoint
            assert sorted(dp[0] for dp in df) == list(range(60))

    @pytest.mark.timeout(TIMEOUT_S)
    def test_a_worker_that_misses_abandoned_passes_reads_its_own_part(self):
        # Worker 1 is still in reset_state() while passes 1 and 2 are started and
        # abandoned: it starts with pass 3, whereas worker 0 has begun every pass.
        # Partitions counted by each worker's own passes would then disagree.
        release = threading.Event()

        class Slow(DataFromList):
            def reset_state(self):
                super().reset_state()
                if get_worker_info().index == 1:
                    release.wait(10)

        lst = [[i] for i in range(64)]
        with MultiThreadRunner(lambda: Slow(lst), 2, 2, exactly_once=True) as df:
            try:
                df.reset_state()
                for _ in range(2):
                    assert next(iter(df)) in lst
                it = iter(df)
                first = next(it)
            finally:
                release.set()
            assert sorted(dp[0] for dp in [first, *it]) == list(range(64))
            assert sorted(dp[0] for dp in df) == list(range(64))

    @pytest.mark.timeout(TIMEOUT_S)
    @pytest.mark.parametrize("kind", RUNNERS)
    def test_seed_reproduces_what_each_worker_reads(self, kind):
        def per_worker(seed):
            with make_runner(
                kind, functools.partial(tagged_items, 40), 2, exactly_once=True, seed=seed
            ) as df:
                df.reset_state()
                out = collections.defaultdict(list)
                for _ in range(2):
                    for i, index in df:
                        out[index].append(i)
                return dict(out)

        first = per_worker(3)
        assert first == per_worker(3)
        assert first != per_worker(4)
        assert sorted(first[0][:20] + first[1][:20]) == list(range(40))
        assert first[0][:20] != first[0][20:]  # a new order every pass

    @pytest.mark.timeout(TIMEOUT_S)
    @pytest.mark.parametrize("kind", RUNNERS)
    def test_every_pass_draws_a_new_partition(self, kind):
        # A partition fixed for the runner's life would never let items of different
        # parts meet in a batch made inside a worker.
        with make_runner(kind, functools.partial(tagged_items, 40), 2, exactly_once=True) as df:
            df.reset_state()
            parts = []
            for _ in range(3):
                part = sorted(i for i, index in df if index == 0)
                assert len(part) == 20
                parts.append(part)
        assert parts[0] != parts[1] and parts[1] != parts[2]

    @pytest.mark.timeout(TIMEOUT_S)
    def test_a_shuffled_reader_partitions_the_whole_file(self, tmp_path):
        pytest.importorskip("lmdb")
        from dataflow.formats import LMDBSerializer

        path = str(tmp_path / "sorted.lmdb")
        LMDBSerializer.save(DataFromList(SORTED, shuffle=False), path)
        source = functools.partial(BatchData, LMDBSerializer.load(path, shuffle=True), BATCH)
        with make_runner("MultiProcessRunnerZMQ", source, 2, exactly_once=True) as df:
            df.reset_state()
            batches = list(df)
        assert serials(batches) == list(range(len(SORTED)))
        distinct = [len(set(batch[0].tolist())) for batch in batches]
        assert min(distinct) > 5 and statistics.mean(distinct) > 8

    @pytest.mark.timeout(TIMEOUT_S)
    def test_without_shuffle_each_worker_reads_a_contiguous_block(self):
        with MultiProcessRunnerZMQ(tagged_unshuffled(10), 2, exactly_once=True) as df:
            df.reset_state()
            out = collections.defaultdict(list)
            for i, index in df:
                out[index].append(i)
        assert dict(out) == {0: [0, 1, 2, 3, 4], 1: [5, 6, 7, 8, 9]}

    @pytest.mark.timeout(SPAWN_TIMEOUT_S)
    def test_spawned_workers_partition_alike(self, resource_tracker):
        with MultiProcessRunnerZMQ(
            class_batches(), 2, exactly_once=True, start_method="spawn"
        ) as df:
            df.reset_state()
            batches = list(df)
        assert serials(batches) == list(range(len(SORTED)))
        assert min(len(set(batch[0].tolist())) for batch in batches) > 5


def tagged_unshuffled(n):
    return MapData(DataFromList([[i] for i in range(n)], shuffle=False), tag_with_worker)


# ---- clones of a dataflow without randomness ----------------------------------------------


def caught(run):
    """The warnings that *run()* warns, all of them."""
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        run()
    return [w for w in got if issubclass(w.category, ClonesRepeatWarning)]


def run_passes(df, num_passes=2):
    with df:
        df.reset_state()
        for _ in range(num_passes):
            for _ in df:
                pass


def unshuffled_items():
    return DataFromList([[i] for i in range(20)], shuffle=False)


def shuffled_items():
    return DataFromList([[i] for i in range(20)])


class TestClonesRepeatWarning:
    @pytest.mark.timeout(TIMEOUT_S)
    def test_warns_once_when_clones_of_an_unshuffled_list_repeat_each_other(self):
        got = caught(lambda: run_passes(MultiProcessRunnerZMQ(unshuffled_items(), num_proc=2)))
        assert len(got) == 1
        assert str(got[0].message) == (
            "MultiProcessRunnerZMQ runs 2 clones of DataFromList, which has no randomness: "
            "every clone yields the same datapoints in the same order, so each datapoint "
            "arrives 2 times and a pass holds only about 1/2 of them. Pass exactly_once=True "
            "to MultiProcessRunnerZMQ to split the datapoints among the workers, each once "
            "per pass"
        )
        assert got[0].filename == __file__  # the loop that iterates the runner

    @pytest.mark.timeout(TIMEOUT_S)
    @pytest.mark.parametrize("kind", RUNNERS)
    def test_every_runner_warns_for_a_deterministic_pipeline(self, kind):
        def source():
            return BatchData(RepeatedData(unshuffled_items(), 2), 4)

        got = caught(lambda: run_passes(make_runner(kind, source, 3)))
        assert len(got) == 1
        assert str(got[0].message).startswith(f"{kind} runs 3 clones of BatchData, ")

    @pytest.mark.timeout(TIMEOUT_S)
    @pytest.mark.parametrize(
        "source, workers, kwargs",
        [
            (shuffled_items, 2, {}),
            (unshuffled_items, 2, {"exactly_once": True}),
            (unshuffled_items, 1, {}),
            (lambda: MapDataComponent(unshuffled_items(), abs, 0), 2, {}),
            (lambda: LocallyShuffleData(unshuffled_items(), 4), 2, {}),
        ],
        ids=["shuffled", "exactly-once", "one-worker", "map", "locally-shuffled"],
    )
    @pytest.mark.parametrize("kind", RUNNERS)
    def test_no_warning_when_clones_may_differ_or_are_not_clones(
        self, kind, source, workers, kwargs
    ):
        assert caught(lambda: run_passes(make_runner(kind, source, workers, **kwargs))) == []


class Mine(DataFlow):
    def __iter__(self):
        yield [1]


class MyList(DataFromList):
    pass


class Items:
    def __iter__(self):
        return iter([[1], [2]])


class TestIsDeterministic:
    def test_every_known_name_is_a_class_of_the_library(self):
        for name in _KNOWN:
            module, _, qualname = name.rpartition(".")
            try:
                kind = getattr(importlib.import_module(module), qualname)
            except ImportError as err:  # an optional dependency: the name is still checked
                pytest.skip(f"{module}: {err}")
            assert isinstance(kind, type) and issubclass(kind, DataFlow), name

    @pytest.mark.parametrize(
        "make",
        [
            unshuffled_items,
            lambda: DataFromIterable([[1], [2]]),
            lambda: DataFromIterable(collections.deque([[1]])),
            lambda: BatchData(unshuffled_items(), 4, remainder=True),
            lambda: SelectComponent(unshuffled_items(), [0]),
            lambda: RepeatedDataPoint(FixedSizeData(unshuffled_items(), 5), 2),
            lambda: CacheData(unshuffled_items()),
            lambda: PrintData(unshuffled_items()),
            lambda: ConcatData([unshuffled_items(), DataFromIterable(([1],))]),
            lambda: JoinData([unshuffled_items(), unshuffled_items()]),
        ],
    )
    def test_pipelines_of_known_deterministic_dataflows_are(self, make):
        assert is_deterministic(make())

    @pytest.mark.parametrize(
        "make",
        [
            shuffled_items,
            lambda: FakeData([[1]], size=4),
            lambda: FakeData([[1]], size=4, random=False),
            lambda: DataFromGenerator(lambda: iter([[1]])),
            lambda: DataFromIterable(Items()),
            lambda: MyList([[1]], shuffle=False),
            lambda: Mine(),
            lambda: MapData(unshuffled_items(), lambda dp: dp),
            lambda: LocallyShuffleData(unshuffled_items(), 4),
            lambda: CacheData(unshuffled_items(), shuffle=True),
            lambda: RandomChooseData([unshuffled_items(), unshuffled_items()]),
            lambda: RandomMixData([unshuffled_items(), unshuffled_items()]),
            lambda: ConcatData([unshuffled_items(), shuffled_items()]),
            lambda: BatchData(JoinData([unshuffled_items(), Mine()]), 2),
            lambda: MultiProcessRunnerZMQ(unshuffled_items(), 2),
        ],
    )
    def test_random_or_unknown_nodes_make_a_pipeline_not_provably_deterministic(self, make):
        assert not is_deterministic(make())

    def test_a_shared_node_is_examined_once(self):
        shared = unshuffled_items()
        df = functools.reduce(lambda a, _: JoinData([a, a]), range(40), shared)
        assert is_deterministic(df)
        assert not is_deterministic(JoinData([df, Mine()]))

    def test_a_pipeline_too_large_to_examine_is_not_provably_deterministic(self):
        df = ConcatData([unshuffled_items() for _ in range(2000)])
        assert not is_deterministic(df)

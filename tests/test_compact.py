"""Tests of dataflow._compact and of DataFromList's compact store: exact round
trips, the same passes, shards and states as the plain list, and workers that
share the store instead of copying it."""

from __future__ import annotations

import collections
import enum
import gc
import itertools
import json
import os
import pickle
import subprocess
import sys
import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflow import (
    DataFromList,
    MultiProcessRunnerZMQ,
    WorkerInfo,
    check_dataflow,
)
from dataflow import _compact as compact_module
from dataflow import sources as sources_module
from dataflow._compact import CompactList, compact, shares_objects
from dataflow._worker_state import begin_pass, worker_context
from dataflow.testing import check_resume
from dataflow.worker import shard_order, shard_order_array

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Label(enum.IntEnum):
    CAT = 1


class Names(list):
    """A list subclass: pickled."""


class Point:
    """A user's class: pickled, and equal by value."""

    def __init__(self, x):
        self.x = x

    def __eq__(self, other):
        return type(other) is Point and other.x == self.x


def assert_same(a, b, where="datapoint"):
    """*a* and *b* are equal, with the same types all the way down (arrays: the
    same dtype, shape and values)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), where
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{k}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            assert_same(ka, kb, f"{where} key {ka!r}")
            assert_same(va, vb, f"{where}[{ka!r}]")
    elif isinstance(a, float) and a != a:
        assert b != b, where
    else:
        assert a == b, where


ITEMS = {
    "ints": [0, 1, -1, 255, 2**63 - 1, -(2**63), 2**64 - 1],
    "big ints": [2**64, -(2**63) - 1, 10**40],
    "floats": [0.0, -0.0, 1.5, float("inf"), float("-inf"), float("nan"), 1e-300],
    "bools and None": [True, False, None],
    "str": ["", "a", "é中", "x" * 1000, "\ud800"],
    "bytes": [b"", b"\x00\xff", b"x" * 70_000],
    "lists": [[], [[]], [1, [2, [3]]]],
    "tuples": [(), (1,), (1, (2, (3, ()))), [(1, 2), (3,)]],
    "dicts": [{}, {"a": 1}, {1: "x", 2.5: None, None: 3, b"k": [1], (1, "t"): {"n": ()}}],
    "nested": [{"file": "a.jpg", "boxes": [[1, 2, 3, 4]], "meta": {"size": (640, 480)}}],
    "numpy scalars": [
        np.float32(1.5),
        np.float64(2.0),
        np.int8(-3),
        np.uint64(2**64 - 1),
        np.bool_(True),
        np.str_("ab"),
        np.bytes_(b"cd"),
        np.datetime64("2020-01-02"),
        np.complex64(1 + 2j),
    ],
    "arrays": [
        np.arange(6, dtype=np.int16).reshape(2, 3),
        np.zeros((0, 3), np.float32),
        np.array(3.5),
        np.arange(4, dtype=">u4"),
        np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        np.arange(10)[::3],
        np.array([True, False]),
        np.array(["ab", "c"]),
        np.array([1 + 2j], np.complex128),
        np.array(["2020-01-01"], "datetime64[D]"),
        np.float16([1.5, 2]),
    ],
    "pickled": [
        Label.CAT,
        collections.OrderedDict(a=1),
        collections.deque([1, 2]),
        frozenset({1, 2}),
        1 + 2j,
        Point(3),
        np.array([{"a": 1}], dtype=object),
        np.zeros(2, dtype=[("x", "i4"), ("y", "f4")]),
        np.ma.masked_array([1, 2], mask=[0, 1]),
        Names(["a"]),
    ],
}


class TestCompactList:
    @pytest.mark.parametrize("kind", sorted(ITEMS))
    def test_every_kind_of_item_round_trips_with_its_types(self, kind):
        datapoints = [[value] for value in ITEMS[kind]] + [list(ITEMS[kind])]
        store = compact(datapoints)
        assert store is not None
        assert len(store) == len(datapoints)
        for k, dp in enumerate(datapoints):
            assert_same(dp, store[k], f"{kind} {k}")
        for dp, out in zip(datapoints, store):
            assert_same(dp, out, kind)

    def test_bytearray_and_memoryview_come_back_as_bytes(self):
        # As with MsgpackSerializer (msgpack stores both natively as bytes).
        assert compact([[bytearray(b"ab"), memoryview(b"cd")]])[0] == [b"ab", b"cd"]
        assert type(compact([[bytearray(b"ab")]])[0][0]) is bytes

    def test_masked_arrays_keep_their_mask(self):
        masked = np.ma.masked_array([1, 2], mask=[0, 1])
        out = compact([[masked]])[0][0]
        assert type(out) is np.ma.MaskedArray
        assert out.mask.tolist() == [False, True]

    def test_a_datapoint_that_is_a_dict_subclass_is_pickled_whole(self):
        dp = collections.OrderedDict(b=1, a=(2,))
        assert_same(compact([dp])[0], dp)

    def test_a_recursive_datapoint_is_pickled(self):
        dp = [1]
        dp.append(dp)
        out = compact([dp])[0]
        assert out[0] == 1 and out[1] is out

    def test_tuples_nested_deeper_than_the_packers_are_pickled(self):
        deep = ()
        for _ in range(100):
            deep = (deep,)
        assert_same(compact([[deep]])[0], [deep])

    def test_what_pickle_cannot_store_gives_no_store(self):
        assert compact([[1], [lambda: 0]]) is None
        assert compact([[1], [iter([])]]) is not None  # list iterators pickle
        assert compact([[(x for x in ())]]) is None

    def test_a_pickle_msgpack_cannot_hold_gives_no_store(self, monkeypatch):
        # msgpack holds at most 4 GiB in one value: too large to test for real.
        def too_large(code, data):
            raise ValueError("ExtData is too large")

        monkeypatch.setattr(compact_module, "ExtType", too_large)
        assert compact([[Point(1)]]) is None

    def test_arrays_come_back_as_writable_copies(self):
        array = np.arange(3)
        array.flags.writeable = False
        store = compact([[array]])
        first, second = store[0][0], store[0][0]
        first[0] = 7
        assert second[0] == 0 and first.flags.writeable and first.flags.c_contiguous

    def test_each_read_is_a_new_copy(self):
        store = compact([[{"a": [1]}]])
        store[0][0]["a"].append(2)
        assert store[0] == [{"a": [1]}]

    def test_an_empty_store(self):
        store = compact([])
        assert len(store) == 0 and list(store) == [] and store[:] == []
        with pytest.raises(IndexError):
            store[0]

    def test_indexing_like_a_tuple(self):
        data = [[i, str(i)] for i in range(10)]
        store = compact(data)
        assert store[-1] == data[-1] and store[3] == data[3]
        assert store[2:9:3] == data[2:9:3] and store[::-1] == data[::-1]
        assert store.index([4, "4"]) == 4 and [5, "5"] in store
        with pytest.raises(IndexError, match=r"CompactList index out of range: 10 for 10 items"):
            store[10]
        with pytest.raises(IndexError):
            store[-11]
        with pytest.raises(TypeError):
            store["a"]

    def test_a_huge_item_among_small_ones(self):
        huge = np.arange(6_000_000, dtype=np.float64)  # 48 MB, larger than a read chunk
        data = [[i] for i in range(3000)]
        data[1500] = [huge, "huge"]
        store = compact(data)
        out = list(store.read(np.arange(3000)[::-1]))
        assert np.array_equal(out[1499][0], huge) and out[1499][1] == "huge"
        assert [dp[0] for k, dp in enumerate(out) if k != 1499] == [
            i for i in range(2999, -1, -1) if i != 1500
        ]

    def test_reads_chunks_by_size(self):
        data = [[b"x" * 300_000] for _ in range(10)]  # 3 MB: more than one chunk of bytes
        store = compact(data)
        assert list(store) == data and list(store.read(np.arange(10)[::-1])) == data

    def test_pickles_and_holds_no_object_per_datapoint(self):
        data = [[i, f"name{i}"] for i in range(1000)]
        store = compact(data)
        copy = pickle.loads(pickle.dumps(store))
        assert type(copy) is CompactList and list(copy) == data
        assert gc.get_referents(store) == [] or all(
            isinstance(r, (bytes, np.ndarray, type)) for r in gc.get_referents(store)
        )
        assert store.nbytes < 0.5 * sum(sys.getsizeof(dp) + sys.getsizeof(dp[1]) for dp in data)
        assert repr(store).startswith("<CompactList of 1000 items in ")

    def test_the_reader_counts_what_is_left(self):
        store = compact([[i] for i in range(3000)])
        reader = store.read(range(100, 3000), start=5)
        assert reader.__length_hint__() == 2895
        assert next(reader) == [105]
        taken = list(itertools.islice(reader, 1500))
        assert taken[-1] == [1605] and reader.__length_hint__() == 2895 - 1501
        assert len(list(reader)) == 2895 - 1501 and reader.__length_hint__() == 0

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(
            st.recursive(
                st.none()
                | st.booleans()
                | st.integers()
                | st.floats(allow_nan=False)
                | st.text()
                | st.binary(),
                lambda inner: (
                    st.lists(inner, max_size=4)
                    | st.tuples(inner, inner)
                    | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4)
                ),
                max_leaves=10,
            ).map(lambda x: [x]),
            max_size=20,
        )
    )
    def test_round_trip_law(self, datapoints):
        store = compact(datapoints)
        assert len(store) == len(datapoints)
        for dp, out in zip(datapoints, store):
            assert_same(dp, out)

    def test_shared_objects_are_detected(self):
        big = np.zeros(10_000)
        assert shares_objects([[i, big] for i in range(1000)])
        assert shares_objects([[i, big[:]] for i in range(1000)])
        assert not shares_objects([[f"/data/{i}.jpg", i] for i in range(1000)])
        assert not shares_objects([[np.full(100, i)] for i in range(1000)])  # owners
        assert not shares_objects([])


class TestOrderArray:
    @pytest.mark.parametrize("n", [0, 1, 7, 100])
    @pytest.mark.parametrize("seed", [None, 3])
    def test_equals_shard_order_everywhere(self, n, seed):
        def both():
            a, b = np.random.RandomState(5), np.random.RandomState(5)
            return shard_order(n, a, seed=seed), shard_order_array(n, b, seed=seed), a, b

        cases = [None, WorkerInfo(0, 1, sharded=True, shared_seed=2), WorkerInfo(1, 3)]
        cases += [WorkerInfo(i, 3, sharded=True, shared_seed=2) for i in range(3)]
        for info in cases:
            for pass_number in (None, 1, 4):
                if info is None:
                    expected, got, a, b = both()
                else:
                    with worker_context(info):
                        if pass_number is not None:
                            begin_pass(pass_number)
                        expected, got, a, b = both()
                assert list(expected) == got.tolist(), (info, pass_number)
                assert a.randint(1 << 30) == b.randint(1 << 30)  # the same draws


@pytest.fixture(scope="module")
def multiprocessing_helpers():
    """Start spawn's resource tracker before a test takes its snapshot of live
    children: it serves the whole session, it is not a worker left behind."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


def items(n):
    return [[f"/data/train/{i % 7}/img_{i:06d}.jpg", i % 7] for i in range(n)]


def passes(df, count):
    df.reset_state()
    return [list(df) for _ in range(count)]


class TestDataFromListCompact:
    @pytest.mark.parametrize("shuffle", [False, True])
    def test_same_output_as_the_plain_list_for_the_same_seed(self, shuffle):
        data = items(5000)
        plain = DataFromList(data, shuffle=shuffle, seed=4, compact=False)
        store = DataFromList(data, shuffle=shuffle, seed=4, compact=True)
        assert isinstance(store.lst, CompactList) and store.lst is not data
        assert plain.lst is data
        assert passes(plain, 3) == passes(store, 3)
        assert len(plain) == len(store) == 5000

    def test_unseeded_draws_the_same_random_numbers(self):
        data = items(300)
        plain = DataFromList(data, compact=False)
        store = DataFromList(data, compact=True)
        plain.reset_state()
        store.reset_state()
        store.rng.set_state(plain.rng.get_state())
        assert list(plain) == list(store)
        assert plain.rng.randint(1 << 30) == store.rng.randint(1 << 30)

    @pytest.mark.parametrize("shuffle", [False, True])
    @pytest.mark.parametrize("num_workers", [1, 2, 3])
    def test_same_shards_as_the_plain_list(self, shuffle, num_workers):
        data = items(1001)
        out = {}
        for option in (False, True):
            out[option] = []
            for i in range(num_workers):
                with worker_context(WorkerInfo(i, num_workers, sharded=True, shared_seed=8)):
                    df = DataFromList(data, shuffle=shuffle, seed=4, compact=option)
                    df.reset_state()
                    got = []
                    for pass_number in (1, 2):
                        begin_pass(pass_number)
                        got.append(list(df))
                    out[option].append((len(df), got))
        assert out[True] == out[False]
        first = [dp for _, got in out[True] for dp in got[0]]
        assert sorted(first) == sorted(data)

    @pytest.mark.parametrize("shuffle", [False, True])
    def test_resumes_exactly(self, shuffle):
        data = items(40)
        check_resume(lambda: DataFromList(data, shuffle=shuffle, seed=2, compact=True))
        check_resume(lambda: DataFromList(data, shuffle=shuffle, compact=True))

    def test_resumes_exactly_in_a_shard(self):
        data = items(40)
        with worker_context(WorkerInfo(1, 3, sharded=True, shared_seed=3)):
            check_resume(lambda: DataFromList(data, seed=1, compact=True))
            check_resume(lambda: DataFromList(data, shuffle=False, compact=True))

    def test_a_state_loads_across_the_two_ways(self):
        data = items(50)
        saved = DataFromList(data, seed=1, compact=False)
        saved.reset_state()
        it = iter(saved)
        for _ in range(17):
            next(it)
        state = json.loads(json.dumps(saved.state_dict()))
        rest = list(it)
        loaded = DataFromList(data, seed=1, compact=True)
        loaded.reset_state()
        loaded.load_state_dict(state)
        assert list(loaded) == rest
        assert repr(loaded) == repr(saved) == "DataFromList(n=50, shuffle=True, seed=1)"

    @pytest.mark.parametrize("shuffle", [False, True])
    def test_keeps_the_contract(self, shuffle):
        data = items(30)
        check_dataflow(lambda: DataFromList(data, shuffle=shuffle, compact=True))

    def test_empty_list(self):
        assert check_dataflow(lambda: DataFromList([], compact=True)) == []

    def test_yields_copies_and_ignores_later_changes_to_the_list(self):
        data = [[1, [2]], [3, [4]]]
        df = DataFromList(data, shuffle=False, compact=True)
        df.reset_state()
        first = list(df)
        first[0][1].append(5)
        data[1][0] = 99
        data.append([5, [6]])
        assert list(df) == [[1, [2]], [3, [4]]] and len(df) == 2

    def test_the_plain_list_shows_changes_in_later_passes(self):
        data = [[1], [2]]
        df = DataFromList(data, shuffle=False, compact=False)
        df.reset_state()
        data.append([3])
        assert list(df) == [[1], [2], [3]]
        assert all(out is dp for out, dp in zip(df, data))

    def test_frees_the_list_when_the_caller_drops_it(self):
        class Items(list):
            pass

        for option, freed in ((True, True), (False, False)):
            data = Items(items(100))
            ref = weakref.ref(data)
            df = DataFromList(data, compact=option)
            del data
            gc.collect()
            assert (ref() is None) == freed
            assert len(df) == 100

    def test_packs_a_long_list_when_the_process_forks(self, monkeypatch):
        monkeypatch.setattr(sources_module, "_COMPACT_MIN_ITEMS", 100)
        data = items(100)
        df, short = DataFromList(data, seed=1), DataFromList(items(99))
        assert df.lst is data and isinstance(short.lst, list)  # no fork yet: full speed
        before = passes(df, 2)
        pid = os.fork()
        if pid == 0:  # the child sees the store
            os._exit(0 if isinstance(df.lst, CompactList) else 1)
        assert os.waitpid(pid, 0)[1] == 0
        assert isinstance(df.lst, CompactList) and short.lst is not data
        assert isinstance(short.lst, list)
        assert passes(df, 2) == before  # reset again: the same seeded passes

    def test_pickling_packs_a_long_list_once(self, monkeypatch):
        monkeypatch.setattr(sources_module, "_COMPACT_MIN_ITEMS", 100)
        data = items(100)
        df = DataFromList(data, seed=2)
        blob = pickle.dumps(df)  # as a runner sends it to spawned workers
        assert isinstance(df.lst, CompactList)
        store = df.lst
        copy = pickle.loads(blob)
        assert isinstance(copy.lst, CompactList)
        pickle.dumps(df)
        assert df.lst is store  # packed once
        assert passes(copy, 2) == passes(DataFromList(data, seed=2, compact=False), 2)

    def test_a_runner_starting_its_workers_packs_the_list(self, monkeypatch):
        monkeypatch.setattr(sources_module, "_COMPACT_MIN_ITEMS", 100)
        data = items(300)
        df = DataFromList(data, shuffle=False)
        with MultiProcessRunnerZMQ(df, 2, exactly_once=True) as runner:
            runner.reset_state()
            assert sorted(runner) == sorted(data)
        assert isinstance(df.lst, CompactList)

    def test_keeps_a_list_whose_datapoints_share_large_objects(self, monkeypatch):
        monkeypatch.setattr(sources_module, "_COMPACT_MIN_ITEMS", 100)
        big = np.zeros(10_000)
        shared = [[i, big] for i in range(200)]
        df = DataFromList(shared)
        forced = DataFromList(shared, compact=True)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        assert df.lst is shared and isinstance(forced.lst, CompactList)

    def test_compact_false_never_packs(self, monkeypatch):
        monkeypatch.setattr(sources_module, "_COMPACT_MIN_ITEMS", 100)
        data = items(100)
        df = DataFromList(data, compact=False)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        assert df.lst is data

    def test_a_source_waiting_for_a_fork_can_be_freed(self, monkeypatch):
        monkeypatch.setattr(sources_module, "_COMPACT_MIN_ITEMS", 100)
        df = DataFromList(items(100))
        ref = weakref.ref(df)
        del df
        gc.collect()
        assert ref() is None

    def test_the_default_threshold(self):
        assert sources_module._COMPACT_MIN_ITEMS == 100_000
        df = DataFromList([[i] for i in range(100_000)])
        assert isinstance(df.lst, list)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        assert isinstance(df.lst, CompactList)

    def test_keeps_the_list_without_error_when_an_item_cannot_be_stored(self, caplog):
        data = [[1], [lambda: 0]]
        with caplog.at_level("INFO", logger="dataflow._compact"):
            df = DataFromList(data, shuffle=False, compact=True)
        assert df.lst is data
        assert "cannot be encoded or pickled; keeping the list" in caplog.text
        df.reset_state()
        assert [dp is orig for dp, orig in zip(df, data)] == [True, True]

    def test_rejects_a_compact_that_is_not_a_bool(self):
        with pytest.raises(TypeError, match=r"^compact must be None, True or False, got 'yes'$"):
            DataFromList([[1]], compact="yes")

    def test_picklable_before_reset_with_the_same_orders(self):
        df = DataFromList(items(200), seed=3, compact=True)
        copy = pickle.loads(pickle.dumps(df))
        assert isinstance(copy.lst, CompactList)
        assert passes(df, 2) == passes(copy, 2)

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("shuffle", [False, True])
    def test_exactly_once_runner_yields_every_datapoint_once(self, shuffle):
        data = items(3000)
        out = {}
        for option in (False, True):
            df = DataFromList(data, shuffle=shuffle, seed=4, compact=option)
            with MultiProcessRunnerZMQ(df, 3, exactly_once=True, seed=5) as runner:
                runner.reset_state()
                out[option] = [sorted(map(tuple, runner)) for _ in range(2)]
        expected = sorted(map(tuple, data))
        assert out[True] == out[False] == [expected, expected]

    @pytest.mark.timeout(60)
    def test_a_runner_resumes_mid_pass(self):
        data = items(60)
        check_resume(
            lambda: MultiProcessRunnerZMQ(
                DataFromList(data, seed=1, compact=True), 2, exactly_once=True, seed=3
            ),
            ordered=False,
        )

    @pytest.mark.timeout(90)
    def test_spawned_workers_read_a_pickled_store(self, multiprocessing_helpers):
        data = items(500)
        df = DataFromList(data, shuffle=False, compact=True)
        with MultiProcessRunnerZMQ(df, 2, exactly_once=True, start_method="spawn") as runner:
            runner.reset_state()
            assert sorted(runner) == sorted(data)

    @pytest.mark.timeout(60)
    def test_the_consumer_may_stop_early(self):
        df = DataFromList(items(20_000), compact=True)
        with MultiProcessRunnerZMQ(df, 2) as runner:
            runner.reset_state()
            first = list(itertools.islice(runner, 10))
        assert len(first) == 10 and all(dp[0].startswith("/data/train/") for dp in first)

    @pytest.mark.timeout(60)
    def test_a_worker_that_raises_is_reported(self):
        from dataflow import MapData

        def fail(dp):
            if dp[1] == 3:
                raise ValueError("bad label")
            return dp

        df = MapData(DataFromList(items(500), compact=True), fail)
        with MultiProcessRunnerZMQ(df, 2) as runner:
            runner.reset_state()
            with pytest.raises(Exception, match="bad label"):
                list(itertools.islice(runner, 2000))


# ---- memory: the workers share the store ----------------------------------------------


def children():
    """The pids of this process's children."""
    pids = []
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children", encoding="ascii") as f:
            pids += [int(p) for p in f.read().split()]
    return pids


def private_dirty(pid):
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no Private_Dirty line")


def worker_private_bytes(data, compact_option):
    """Private_Dirty of each of 2 forked workers after the consumer read
    ``len(data)`` datapoints (each worker iterated about half of a shuffled pass)."""
    df = DataFromList(data, compact=compact_option, seed=1)
    del data
    gc.collect()
    before = set(children())
    with MultiProcessRunnerZMQ(df, 2, seed=1) as runner:
        runner.reset_state()
        it = iter(runner)
        for _ in range(len(df)):
            next(it)
        pids = sorted(set(children()) - before)
        assert len(pids) == 2, pids
        return [private_dirty(pid) for pid in pids]


@pytest.mark.skipif(
    not os.path.exists("/proc/self/smaps_rollup")
    or not os.path.exists(f"/proc/self/task/{os.getpid()}/children"),
    reason="needs Linux's /proc/<pid>/smaps_rollup and children",
)
@pytest.mark.timeout(120)
def test_workers_share_the_store_instead_of_copying_the_list():
    n = 200_000
    size = sum(sys.getsizeof(dp) + sys.getsizeof(dp[0]) + sys.getsizeof(dp[1]) for dp in items(n))
    baseline = max(worker_private_bytes(items(2000), False))  # a worker holding almost nothing
    with_store = worker_private_bytes(items(n), True)
    with_list = worker_private_bytes(items(n), False)
    grown_store = [p - baseline for p in with_store]
    grown_list = [p - baseline for p in with_list]
    # A worker iterating the plain list copies most of it; one reading the store
    # holds little more than a pass's order (8 bytes a datapoint).
    assert all(g > size / 2 for g in grown_list), (size, baseline, with_list)
    assert all(g < size / 5 for g in grown_store), (size, baseline, with_store)


def test_the_memory_benchmark_runs():
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_memory"]
        + ["--items", "20000", "--seconds", "1", "--interval", "0.3", "--no-tensorpack"]
        + ["--speed-items", "2000", "--repeats", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| dataflow (default)" in run.stdout, run.stdout[-3000:]
    assert "| dataflow, compact=False (before)" in run.stdout
    assert "chain: dataflow, compact=None" in run.stdout

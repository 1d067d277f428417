"""Tests of the compact store in the dataset readers (``FileListReader.imglist``)
and in ``ColumnsData`` (long list columns): the same passes, shards and states
as with the lists, packing before a fork or when pickled, and forked workers
that share the store instead of copying the list."""

from __future__ import annotations

import gc
import os
import pickle
import sys

import numpy as np
import pytest

from dataflow import MultiProcessRunnerZMQ, WorkerInfo, check_dataflow
from dataflow._compact import CompactList
from dataflow._worker_state import begin_pass, worker_context
from dataflow.dataset import _readers as readers_module
from dataflow.dataset._readers import FileListReader
from dataflow.formats import _files as files_module
from dataflow.formats._files import ColumnsData
from dataflow.testing import check_resume

TIMEOUT_S = 60


def image_list(n):
    return [(f"n{i % 5:08d}/n{i % 5:08d}_{i}.JPEG", i % 5) for i in range(n)]


class Files(FileListReader):
    """A reader over *n* made-up files (the list is all it reads)."""

    def __init__(self, n, shuffle=True, *, seed=None):
        super().__init__("train", ["train"], shuffle, seed)
        self._set_list("/data/train", image_list(n))


class Decoding(Files):
    """A reader with a get of its own, as the readers that decode images have."""

    def get(self, index):
        name, label = self.imglist[index]
        return [name.upper(), label]


@pytest.fixture
def pack_from_100(monkeypatch):
    """Lists of 100 items or more are packed."""
    monkeypatch.setattr(readers_module, "COMPACT_MIN_ITEMS", 100)
    monkeypatch.setattr(files_module, "COMPACT_MIN_ITEMS", 100)


def packed(df):
    df._pack_for_fork()
    return df


def passes(df, count=2):
    df.reset_state()
    return [list(df) for _ in range(count)]


def in_workers(make, num_workers, pass_numbers=(1, 2)):
    """The passes each of *num_workers* sharded workers reads."""
    out = []
    for i in range(num_workers):
        with worker_context(WorkerInfo(i, num_workers, sharded=True, shared_seed=5)):
            df = make()
            df.reset_state()
            for pass_number in pass_numbers:
                begin_pass(pass_number)
                out.append(list(df))
    return out


@pytest.mark.usefixtures("pack_from_100")
class TestFileListReader:
    @pytest.mark.parametrize("kind", [Files, Decoding])
    @pytest.mark.parametrize("shuffle", [False, True])
    def test_same_passes_as_the_list(self, kind, shuffle):
        plain = kind(99, shuffle, seed=3)
        store = packed(kind(150, shuffle, seed=3))
        assert isinstance(plain.imglist, list) and isinstance(store.imglist, CompactList)
        plain._set_list("/data/train", image_list(150))  # the same files, as a list
        plain.__dict__.pop("_pack_pending")
        assert isinstance(plain.imglist, list)
        assert passes(store, 3) == passes(plain, 3)
        assert store.get(7) == plain.get(7)

    @pytest.mark.parametrize("shuffle", [False, True])
    def test_same_shards_as_the_list(self, shuffle, monkeypatch):
        store = in_workers(lambda: packed(Files(301, shuffle, seed=1)), 3)
        monkeypatch.setattr(readers_module, "COMPACT_MIN_ITEMS", 10**9)
        plain = in_workers(lambda: Files(301, shuffle, seed=1), 3)
        assert store == plain
        assert sorted(store[0] + store[2] + store[4]) == sorted(passes(Files(301, False))[0])

    def test_resumes_exactly(self):
        check_resume(lambda: packed(Files(120, seed=4)))
        check_resume(lambda: packed(Files(120, False)))
        check_resume(lambda: packed(Decoding(120, seed=4)))

    def test_a_state_loads_across_the_two_ways(self, monkeypatch):
        store = packed(Files(200, seed=6))
        store.reset_state()
        it = iter(store)
        for _ in range(37):
            next(it)
        state = store.state_dict()
        rest = list(it)
        monkeypatch.setattr(readers_module, "COMPACT_MIN_ITEMS", 10**9)
        plain = Files(200, seed=6)
        plain.reset_state()
        plain.load_state_dict(state)
        assert isinstance(plain.imglist, list) and list(plain) == rest

    def test_keeps_the_contract(self):
        check_dataflow(lambda: packed(Files(130, seed=2)))

    def test_imglist_gives_the_same_tuples(self):
        df = packed(Files(100))
        data = image_list(100)
        assert list(df.imglist) == data and df.imglist[-1] == data[-1]
        assert df.imglist[10:13] == data[10:13] and type(df.imglist[0]) is tuple
        assert len(df) == len(df.imglist) == 100

    def test_packs_when_the_process_forks_and_not_a_short_list(self):
        df, short = Files(100, seed=1), Files(99, seed=1)
        assert isinstance(df.imglist, list)  # no fork yet: a list
        pid = os.fork()
        if pid == 0:  # the child sees the store
            os._exit(0 if isinstance(df.imglist, CompactList) else 1)
        assert os.waitpid(pid, 0)[1] == 0
        assert isinstance(df.imglist, CompactList) and isinstance(short.imglist, list)

    def test_pickling_packs_once(self):
        df = Files(100, seed=2)
        blob = pickle.dumps(df)  # as a runner sends it to spawned workers
        store = df.imglist
        assert isinstance(store, CompactList)
        pickle.dumps(df)
        assert df.imglist is store
        copy = pickle.loads(blob)
        assert isinstance(copy.imglist, CompactList) and passes(copy) == passes(df)

    def test_keeps_the_list_when_an_item_cannot_be_stored(self, caplog):
        df = Files(100)
        df.imglist[5] = ("x.JPEG", lambda: 0)
        data = df.imglist
        with caplog.at_level("INFO", logger="dataflow._compact"):
            df._pack_for_fork()
        assert df.imglist is data and "Files: an item cannot be encoded" in caplog.text

    def test_a_list_assigned_later_is_packed_too(self):
        df = Files(99)
        df.imglist = image_list(120)  # as users of tensorpack's readers do
        df._pack_for_fork()
        assert isinstance(df.imglist, CompactList) and len(df) == 120
        df.imglist = df.imglist[:110]  # a subset of a packed list: a new list
        assert type(df.imglist) is list
        pid = os.fork()
        if pid == 0:
            os._exit(0 if isinstance(df.imglist, CompactList) else 1)
        assert os.waitpid(pid, 0)[1] == 0
        assert isinstance(df.imglist, CompactList) and len(df) == 110
        assert list(df.imglist) == image_list(110)
        df.imglist = image_list(50)
        df._pack_for_fork()
        assert type(df.imglist) is list  # short: kept

    @pytest.mark.timeout(TIMEOUT_S)
    def test_an_exactly_once_runner_yields_every_file_once(self):
        df = Files(300, seed=3)
        with MultiProcessRunnerZMQ(df, 2, exactly_once=True, seed=3) as runner:
            runner.reset_state()
            got = list(runner)
        assert sorted(got) == sorted(passes(Files(300, False), 1)[0])
        assert isinstance(df.imglist, CompactList)


def columns_of(n):
    names = [f"img_{i:06d}.jpg" for i in range(n)]
    pairs = [(i, {"w": i % 3, "tags": ["a"] * (i % 2)}) for i in range(n)]
    return [names, np.arange(n) * 2, pairs]


@pytest.mark.usefixtures("pack_from_100")
class TestColumnsData:
    @pytest.mark.parametrize("keys", [None, ["name", "x", "meta"]])
    @pytest.mark.parametrize("shuffle", [False, True])
    def test_same_passes_as_the_lists(self, keys, shuffle, monkeypatch):
        store = packed(ColumnsData(columns_of(150), keys, 150, shuffle, 5))
        kinds = [type(c) for c in store._columns]
        assert kinds == [CompactList, np.ndarray, CompactList]
        monkeypatch.setattr(files_module, "COMPACT_MIN_ITEMS", 10**9)
        plain = packed(ColumnsData(columns_of(150), keys, 150, shuffle, 5))
        assert [type(c) for c in plain._columns] == [list, np.ndarray, list]
        assert passes(store, 3) == passes(plain, 3)
        assert store.get(9) == plain.get(9)

    @pytest.mark.parametrize("shuffle", [False, True])
    def test_same_shards_as_the_lists(self, shuffle, monkeypatch):
        def make():
            return packed(ColumnsData(columns_of(200), None, 200, shuffle, 2))

        store = in_workers(make, 2)
        monkeypatch.setattr(files_module, "COMPACT_MIN_ITEMS", 10**9)
        assert store == in_workers(make, 2)

    def test_resumes_exactly_and_keeps_the_contract(self):
        check_resume(lambda: packed(ColumnsData(columns_of(120), None, 120, True, 8)))
        check_resume(lambda: packed(ColumnsData(columns_of(120), ["a", "b", "c"], 120, False, 8)))
        check_dataflow(lambda: packed(ColumnsData(columns_of(110), None, 110, True, 1)))

    def test_what_is_not_packed(self):
        views = np.arange(300.0)
        ragged = [views[i : i + 2] for i in range(150)]  # views into one array
        unstorable = [lambda: 0] * 150
        columns = [ragged, tuple(range(150)), list(range(99)) + [0] * 51, unstorable]
        df = packed(ColumnsData(columns + [list(range(99))], None, 99, False, None))
        kinds = [type(c) for c in df._columns]
        assert kinds == [list, CompactList, CompactList, list, list]
        assert df._columns[0] is ragged and df._columns[3] is unstorable
        df.reset_state()
        first = next(iter(df))
        assert first[0].base is views and first[1:3] == [0, 0] and first[3] is unstorable[0]

    def test_no_long_list_means_nothing_to_pack(self):
        df = ColumnsData([np.arange(500), list(range(50))], None, 50, True, None)
        assert "_pack_pending" in df.__dict__ and not df._pack_pending

    def test_pickling_packs(self):
        df = ColumnsData(columns_of(100), None, 100, True, 4)
        copy = pickle.loads(pickle.dumps(df))
        assert isinstance(df._columns[0], CompactList)
        assert isinstance(copy._columns[0], CompactList)
        assert passes(copy) == passes(df)


# ---- memory: the workers share the store ----------------------------------------------


def children():
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


def worker_private_bytes(make, n):
    """Private_Dirty of each of 2 forked workers after the consumer read *n*
    datapoints of ``make(n)`` (each worker iterated about half of a shuffled pass)."""
    df = make(n)
    gc.collect()
    before = set(children())
    with MultiProcessRunnerZMQ(df, 2, seed=1) as runner:
        runner.reset_state()
        it = iter(runner)
        for _ in range(n):
            next(it)
        pids = sorted(set(children()) - before)
        assert len(pids) == 2, pids
        return [private_dirty(pid) for pid in pids]


def make_files(n):
    return Files(n, seed=1)


def make_columns(n):
    names = [f"n{i % 5:08d}/n{i % 5:08d}_{i}.JPEG" for i in range(n)]
    return ColumnsData([names, np.arange(n)], None, n, True, 1)


@pytest.mark.skipif(
    not os.path.exists("/proc/self/smaps_rollup")
    or not os.path.exists(f"/proc/self/task/{os.getpid()}/children"),
    reason="needs Linux's /proc/<pid>/smaps_rollup and children",
)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("make", [make_files, make_columns])
def test_workers_share_the_store_instead_of_copying_the_list(make, monkeypatch):
    n = 200_000
    names = [name for name, _ in image_list(n)]
    size = sum(map(sys.getsizeof, names)) + 8 * n  # the names and the list's pointers
    baseline = max(worker_private_bytes(make, 2000))  # a worker holding almost nothing
    with_store = worker_private_bytes(make, n)  # packed: n is over 100,000
    monkeypatch.setattr(readers_module, "COMPACT_MIN_ITEMS", 10**9)
    monkeypatch.setattr(files_module, "COMPACT_MIN_ITEMS", 10**9)
    with_list = worker_private_bytes(make, n)
    grown_store = [p - baseline for p in with_store]
    grown_list = [p - baseline for p in with_list]
    # A worker iterating the list copies most of its objects; one reading the
    # store holds little more than a pass's order (4 bytes an index).
    assert all(g > size / 2 for g in grown_list), (size, baseline, with_list)
    assert all(g < size / 5 for g in grown_store), (size, baseline, with_store)

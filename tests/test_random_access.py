"""Tests of dataflow._random_access: RandomAccessDataFlow, the base of sources
that read by index, and what it gives them (passes, sharding, resume)."""

from __future__ import annotations

import contextlib
import copy
import json
import tracemalloc

import numpy as np
import pytest

from dataflow import BatchData, check_dataflow
from dataflow._random_access import IndexOrder
from dataflow._worker_state import begin_pass
from dataflow.sources import RandomAccessDataFlow
from dataflow.testing import check_resume
from dataflow.worker import WorkerInfo, _worker_context, shard_order


class Squares(RandomAccessDataFlow):
    """Datapoint i is [i, i * i]; records the indices it reads (test double)."""

    def __init__(self, n, shuffle=True, *, seed=None):
        super().__init__(shuffle, seed=seed)
        self.n = n
        self.reads = []

    def num_datapoints(self):
        return self.n

    def get(self, index):
        self.reads.append(index)
        return [index, index * index]


class Blocks(Squares):
    """Reads consecutive indices a block at a time (test double of read())."""

    def read(self, indices):
        self.reads.append(indices)
        return ([i, i * i] for i in indices)


def pass_of(df):
    return [dp[0] for dp in df]


class TestRandomAccessDataFlow:
    def test_keeps_the_dataflow_contract_and_resumes(self):
        check_dataflow(lambda: Squares(7))
        check_dataflow(lambda: Squares(7, shuffle=False))
        check_dataflow(lambda: Blocks(7, shuffle=False))
        check_resume(lambda: BatchData(Squares(11, seed=2), 3, remainder=True))

    def test_in_order_or_a_new_permutation_each_pass(self):
        df = Squares(6, shuffle=False)
        df.reset_state()
        assert pass_of(df) == list(range(6)) and len(df) == 6
        df = Squares(6, seed=1)
        df.reset_state()
        first, second = pass_of(df), pass_of(df)
        assert sorted(first) == sorted(second) == list(range(6)) and first != second

    def test_a_seed_gives_the_same_passes_in_every_run(self):
        a, b = Squares(20, seed=3), Squares(20, seed=3)
        a.reset_state()
        b.reset_state()
        assert [pass_of(a) for _ in range(3)] == [pass_of(b) for _ in range(3)]

    def test_each_worker_of_an_exactly_once_runner_reads_its_shard(self):
        for shuffle in (False, True):
            seen = []
            for i in range(3):
                with _worker_context(WorkerInfo(i, 3, sharded=True, shared_seed=5)):
                    df = Squares(10, shuffle=shuffle, seed=i)
                    df.reset_state()
                    part = pass_of(df)
                    assert len(df) == len(part)
                    seen += part
            assert sorted(seen) == list(range(10))

    def test_resumes_inside_a_worker_at_its_position_in_its_shard(self):
        info = WorkerInfo(1, 2, sharded=True, shared_seed=9)
        with _worker_context(info):
            df = Squares(14, seed=4)
            df.reset_state()
            it = iter(df)
            head = [next(it)[0] for _ in range(3)]
            state = json.loads(json.dumps(df.state_dict()))
            rest = [dp[0] for dp in it]
            resumed = Squares(14, seed=4)
            resumed.reset_state()
            resumed.load_state_dict(state)
            assert pass_of(resumed) == rest
        assert state["state"]["pos"] == 3 and len(head + rest) == 7

    @pytest.mark.parametrize("shuffle", [False, True])
    def test_a_resumed_pass_reads_only_what_follows_the_position(self, shuffle):
        df = Squares(100, shuffle=shuffle, seed=0)
        df.reset_state()
        it = iter(df)
        for _ in range(90):
            next(it)
        state = df.state_dict()
        rest = [dp[0] for dp in it]
        resumed = Squares(100, shuffle=shuffle, seed=0)
        resumed.reset_state()
        resumed.load_state_dict(state)
        assert pass_of(resumed) == rest
        assert resumed.reads == rest  # the first 90 were never read

    def test_read_gets_the_consecutive_indices_still_to_visit(self):
        df = Blocks(10, shuffle=False)
        df.reset_state()
        it = iter(df)
        next(it), next(it)
        resumed = Blocks(10, shuffle=False)
        resumed.reset_state()
        resumed.load_state_dict(df.state_dict())
        assert pass_of(resumed) == list(range(2, 10))
        assert resumed.reads == [range(2, 10)]

    def test_state_is_the_position_plus_the_random_state_of_the_pass(self):
        df = Squares(10, shuffle=False)
        df.reset_state()
        it = iter(df)
        next(it)
        assert df.state_dict()["state"] == {"rng": None, "pos": 1}
        df = Squares(10, seed=0)
        df.reset_state()
        it = iter(df)
        next(it)
        state = df.state_dict()["state"]
        assert state["pos"] == 1 and set(state["rng"]) == {"mt19937", "pos", "has_gauss", "gauss"}
        assert len(json.dumps(state)) < 3500
        list(it)
        assert df.state_dict()["state"]["pos"] is None  # between passes

    def test_refuses_a_position_past_the_end(self):
        df = Squares(4, shuffle=False)
        df.reset_state()
        state = df.state_dict()
        state["state"]["pos"] = 5
        with pytest.raises(ValueError, match=r"^load_state_dict\(\) of Squares: the position must"):
            df.load_state_dict(state)

    def test_a_subclass_is_told_what_to_define(self):
        class Empty(RandomAccessDataFlow):
            pass

        df = Empty()
        df.reset_state()
        with pytest.raises(NotImplementedError, match="Empty must define num_datapoints()"):
            len(df)
        with pytest.raises(NotImplementedError, match=r"Empty must define get\(index\)"):
            df.get(0)

    def test_shuffle_must_be_a_bool(self):
        with pytest.raises(TypeError, match="shuffle must be"):
            Squares(3, shuffle="yes")


class TestShuffledOrderAsAnArray:
    """A shuffled pass keeps its order in a numpy array, not a list of ints."""

    @pytest.mark.parametrize(
        "info",
        [
            None,
            WorkerInfo(1, 3, seed=4),
            WorkerInfo(0, 1, sharded=True, shared_seed=2),
            WorkerInfo(0, 3, sharded=True, shared_seed=2),
            WorkerInfo(2, 3, sharded=True, shared_seed=2),
        ],
    )
    def test_passes_are_those_of_the_list_order(self, info):
        with contextlib.ExitStack() as stack:
            if info is not None:
                stack.enter_context(_worker_context(info))
            df = Squares(50, seed=6)
            df.reset_state()
            for pass_number in (1, 2, 3):
                if info is not None:
                    begin_pass(pass_number)
                rng = copy.deepcopy(df.rng)
                assert pass_of(df) == shard_order(50, rng)  # the list form, same draws
                assert df.rng.randint(1 << 30) == rng.randint(1 << 30)

    def test_read_gets_python_ints_and_the_array(self):
        df = Blocks(30, seed=1)
        df.reset_state()
        passed = list(df)
        (indices,) = df.reads
        assert isinstance(indices, IndexOrder) and len(indices) == 30
        assert all(type(i) is int for i in indices)
        assert all(type(dp[0]) is int and type(dp[1]) is int for dp in passed)
        array = np.asarray(indices)
        assert array.dtype == np.int32 and array.tolist() == [dp[0] for dp in passed]
        assert type(indices[3]) is int and indices[3] == passed[3][0]
        assert indices[-1] == passed[-1][0]
        tail = indices[28:]
        assert isinstance(tail, IndexOrder) and list(tail) == [passed[28][0], passed[29][0]]
        assert np.asarray(indices, dtype=np.int64).dtype == np.int64
        assert np.asarray(indices, dtype=np.int32) is array
        assert np.array(indices) is not array and np.array(indices).tolist() == array.tolist()
        assert sorted(indices) == list(range(30)) and 5 in indices
        assert repr(tail).startswith("IndexOrder(array(")

    def test_iteration_crosses_chunks_in_order(self, monkeypatch):
        import dataflow._random_access as ra

        monkeypatch.setattr(ra, "_CHUNK", 3)
        array = np.random.RandomState(0).permutation(10).astype(np.int32)
        assert list(IndexOrder(array)) == array.tolist()
        assert list(IndexOrder(array[:0])) == []

    def test_a_resumed_shuffled_pass_reads_the_rest_of_the_order(self):
        df = Blocks(40, seed=3)
        df.reset_state()
        it = iter(df)
        head = [next(it)[0] for _ in range(15)]
        state = df.state_dict()
        rest = [dp[0] for dp in it]
        resumed = Blocks(40, seed=3)
        resumed.reset_state()
        resumed.load_state_dict(state)
        assert pass_of(resumed) == rest and sorted(head + rest) == list(range(40))
        assert isinstance(resumed.reads[0], IndexOrder) and list(resumed.reads[0]) == rest

    def test_the_order_of_a_pass_takes_a_few_bytes_per_index(self):
        n = 200_000
        df = Squares(n, seed=0)
        df.reset_state()
        df.get = lambda index: [index]  # no record of the reads
        tracemalloc.start()
        try:
            it = iter(df)
            next(it)
            held, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert held < 6 * n  # int32: 4 bytes an index; a list of ints takes about 36
        assert sum(1 for _ in it) == n - 1

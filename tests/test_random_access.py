"""Tests of dataflow._random_access: RandomAccessDataFlow, the base of sources
that read by index, and what it gives them (passes, sharding, resume)."""

from __future__ import annotations

import json

import pytest

from dataflow import BatchData, check_dataflow
from dataflow.sources import RandomAccessDataFlow
from dataflow.testing import check_resume
from dataflow.worker import WorkerInfo, _worker_context


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

"""Tests of DataFlow.state_dict() / load_state_dict() (dataflow/_state.py): the
protocol, its errors, resuming in a new process, and the built-ins' states."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from dataflow import (
    BatchData,
    BatchDataByShape,
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
    MultiThreadMapData,
    ProxyDataFlow,
    RandomChooseData,
    RandomMixData,
    RepeatedData,
    RepeatedDataPoint,
    SelectComponent,
)
from dataflow._state import rng_from_state, rng_state
from dataflow.testing import check_resume

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ints(n, **kwargs):
    return DataFromList([[i] for i in range(n)], **kwargs)


def add_one(x):
    return x + 1


# Unseeded on purpose: the state holds the random states, so these resume exactly too.
PIPELINES = {
    "DataFromList shuffled": lambda: ints(9),
    "DataFromList in order": lambda: ints(9, shuffle=False),
    "FakeData": lambda: FakeData([[2], []], size=7, dtype=["float32", "int64"], domain=(0, 5)),
    "FakeData fixed": lambda: FakeData([[3]], size=4, random=False),
    "DataFromIterable list": lambda: DataFromIterable([[i] for i in range(6)]),
    "DataFromIterable range-like": lambda: DataFromIterable(range(6)),
    "DataFromGenerator": lambda: DataFromGenerator(lambda: ([i] for i in range(6))),
    "MapData dropping": lambda: MapData(ints(9), lambda dp: dp if dp[0] % 3 else None),
    "MapDataComponent": lambda: MapDataComponent(ints(7), add_one, 0),
    "SelectComponent": lambda: SelectComponent(DataFromList([[i, -i] for i in range(5)]), [1]),
    "RepeatedData": lambda: RepeatedData(ints(4), 3),
    "RepeatedDataPoint": lambda: RepeatedDataPoint(ints(4), 3),
    "FixedSizeData": lambda: FixedSizeData(ints(5), 3),
    "FixedSizeData restarting": lambda: FixedSizeData(ints(5), 3, keep_state=False),
    "BatchData remainder": lambda: BatchData(ints(10), 4, remainder=True),
    "BatchDataByShape": lambda: BatchDataByShape(
        DataFromList([[np.zeros(i % 3)] for i in range(20)]), 2, 0
    ),
    "ConcatData": lambda: ConcatData([ints(4), ints(3, shuffle=False)]),
    "JoinData not strict": lambda: JoinData([ints(5), ints(3)], strict=False),
    "RandomChooseData": lambda: RandomChooseData([ints(5), ints(4)]),
    "RandomMixData": lambda: RandomMixData([ints(5), ints(3)]),
    "LocallyShuffleData": lambda: LocallyShuffleData(ints(20), 6, num_reuse=2),
    "CacheData shuffled": lambda: CacheData(ints(8), shuffle=True),
    "deep chain": lambda: BatchData(
        LocallyShuffleData(RepeatedData(ConcatData([ints(7), FakeData([[]], size=5)]), 2), 4),
        3,
        remainder=True,
        use_list=True,
    ),
}


class TestStateDict:
    @pytest.mark.parametrize("name", sorted(PIPELINES))
    def test_resumes_exactly(self, name):
        check_resume(PIPELINES[name])

    def test_infinite_repeat_resumes_exactly(self):
        check_resume(lambda: RepeatedData(ints(5), -1), infinite=True, max_datapoints=12)

    def test_state_is_plain_json_data(self):
        df = BatchData(LocallyShuffleData(ints(50), 10), 4)
        df.reset_state()
        it = iter(df)
        next(it)
        state = df.state_dict()
        assert json.loads(json.dumps(state)) == state
        assert state["dataflow"] == "BatchData(batch_size=4, remainder=False, use_list=False)"
        assert [p["dataflow"] for p in state["parents"]] == [
            "LocallyShuffleData(buffer_size=10, num_reuse=1)"
        ]

    def test_shuffle_buffer_of_10000_slots_saves_under_64_kib(self):
        df = LocallyShuffleData(ints(30000), 10000)
        df.reset_state()
        it = iter(df)
        for _ in range(15000):
            next(it)
        assert len(json.dumps(df.state_dict())) < 64 * 1024

    def test_resuming_at_90_percent_of_a_million_takes_under_a_second(self):
        data = [[i] for i in range(1_000_000)]
        df = DataFromList(data, seed=0)
        df.reset_state()
        it = iter(df)
        for _ in range(900_000):
            next(it)
        state = df.state_dict()
        expected = next(it)
        resumed = DataFromList(data, seed=0)
        resumed.reset_state()
        start = time.perf_counter()
        resumed.load_state_dict(state)
        first = next(iter(resumed))
        assert time.perf_counter() - start < 1.0
        assert first is expected

    def test_refuses_a_state_with_another_parameter(self):
        a, b = BatchData(ints(6), 2), BatchData(ints(6), 3)
        a.reset_state()
        b.reset_state()
        with pytest.raises(ValueError) as err:
            b.load_state_dict(a.state_dict())
        assert str(err.value) == (
            "load_state_dict(): the state is not from this pipeline: at BatchData it was "
            "saved from BatchData(batch_size=2, remainder=False, use_list=False) but this "
            "dataflow is BatchData(batch_size=3, remainder=False, use_list=False)"
        )

    def test_refuses_a_state_of_another_structure(self):
        a, b = MapData(ints(6), add_one), MapData(ints(6, shuffle=False), add_one)
        a.reset_state()
        b.reset_state()
        with pytest.raises(ValueError, match=r"at MapData > DataFromList it was saved from "):
            b.load_state_dict(a.state_dict())
        c = ConcatData([ints(2), ints(2)])
        d = ConcatData([ints(2)])
        c.reset_state()
        d.reset_state()
        with pytest.raises(ValueError, match=r"at ConcatData it has 2 input dataflow\(s\) but"):
            d.load_state_dict(c.state_dict())

    def test_refuses_what_is_not_a_state(self):
        df = ints(3)
        df.reset_state()
        with pytest.raises(ValueError, match="state must be a dict made by state_dict()"):
            df.load_state_dict([1, 2])

    def test_own_dataflow_without_support_names_its_class(self):
        class Mine(DataFlow):
            def __iter__(self):
                yield [1]

        df = BatchData(Mine(), 1)
        df.reset_state()
        with pytest.raises(NotImplementedError, match="^Mine does not support state_dict()"):
            df.state_dict()

    def test_wrapper_that_overrides_iter_without_support_is_refused(self):
        class Twice(ProxyDataFlow):
            def __iter__(self):
                for dp in self.ds:
                    yield dp
                    yield dp

        df = Twice(ints(3))
        df.reset_state()
        with pytest.raises(NotImplementedError, match="^Twice does not support"):
            df.state_dict()

    def test_replaying_wrapper_over_an_unsupported_input_iterates_and_refuses_to_save(self):
        class Mine(DataFlow):
            def __iter__(self):
                yield from ([i] for i in range(5))

        df = LocallyShuffleData(Mine(), 2)
        df.reset_state()
        it = iter(df)
        next(it)
        with pytest.raises(NotImplementedError, match="^Mine does not support"):
            df.state_dict()
        assert len(list(it)) == 4

    def test_a_streaming_mapper_says_it_has_no_position_and_what_has(self):
        with MultiThreadMapData(ints(4), 2, add_one_dp) as df:
            df.reset_state()
            with pytest.raises(NotImplementedError) as err:
                df.state_dict()
        assert str(err.value).startswith(
            "MultiThreadMapData with strict=False has no position to save"
        )

    def test_resumes_in_a_new_process_from_json(self, tmp_path):
        script = textwrap.dedent(
            """
            import json, sys
            from dataflow import BatchData, DataFromList, LocallyShuffleData, MapDataComponent

            def make():
                df = DataFromList([[i] for i in range(40)], seed=3)
                df = LocallyShuffleData(MapDataComponent(df, lambda x: x * 2, 0), 8, seed=4)
                df = BatchData(df, 4)
                df.reset_state()
                return df

            df = make()
            if sys.argv[1] == "save":
                it = iter(df)
                for _ in range(3):
                    next(it)
                json.dump(df.state_dict(), open(sys.argv[2], "w"))
                rest = [b[0].tolist() for b in it] + [b[0].tolist() for b in df]
            else:
                df.load_state_dict(json.load(open(sys.argv[2])))
                rest = [b[0].tolist() for b in df] + [b[0].tolist() for b in df]
            print(json.dumps(rest))
            """
        )
        path = str(tmp_path / "state.json")
        env = dict(os.environ, PYTHONPATH=ROOT)

        def run(mode):
            out = subprocess.run(
                [sys.executable, "-c", script, mode, path],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                check=True,
            )
            return json.loads(out.stdout)

        uninterrupted = run("save")
        assert len(uninterrupted) == 7 + 10
        assert run("load") == uninterrupted


class TestRandomState:
    def rng(self):
        rng = np.random.RandomState(5)
        rng.standard_normal()  # a cached Gaussian draw is part of the state
        return rng

    def test_is_the_key_as_base64_and_restores_the_stream(self):
        rng = self.rng()
        state = json.loads(json.dumps(rng_state(rng)))
        assert set(state) == {"mt19937", "pos", "has_gauss", "gauss"}
        assert len(state["mt19937"]) == 3328  # 624 words of 4 bytes, as base64
        assert len(json.dumps(state)) < 3450  # the list of numbers took about 6,600
        again = np.random.RandomState()
        rng_from_state(again, state)
        assert again.standard_normal(5).tolist() == rng.standard_normal(5).tolist()

    def test_loads_the_list_of_numbers_of_the_first_release(self):
        rng = self.rng()
        _, keys, pos, has_gauss, gauss = rng.get_state()
        old = {"keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "gauss": gauss}
        again = np.random.RandomState()
        rng_from_state(again, json.loads(json.dumps(old)))
        assert again.randint(1000, size=5).tolist() == rng.randint(1000, size=5).tolist()

    @pytest.mark.parametrize(
        "change",
        [
            {"mt19937": "AAAA"},
            {"mt19937": "not base64!"},
            {"mt19937": None},
            {"pos": 625},
            {"pos": "3"},
        ],
    )
    def test_refuses_a_damaged_state(self, change):
        state = {**rng_state(self.rng()), **change}
        with pytest.raises(ValueError, match="a random-generator state is damaged"):
            rng_from_state(np.random.RandomState(), state)

    def test_a_damaged_state_in_a_pipeline_is_refused_on_load(self):
        df = ints(5)
        df.reset_state()
        state = df.state_dict()
        state["state"]["rng"]["mt19937"] = state["state"]["rng"]["mt19937"][:-8]
        resumed = ints(5)
        resumed.reset_state()
        with pytest.raises(ValueError, match="a random-generator state is damaged"):
            resumed.load_state_dict(state)


def add_one_dp(dp):
    return [dp[0] + 1]

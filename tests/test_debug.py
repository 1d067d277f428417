"""Tests of dataflow.debug: describing datapoints, PrintData, and speed measurement."""

from __future__ import annotations

import time

import numpy as np
import pytest

from dataflow import (
    BatchData,
    DataFlow,
    DataFromList,
    MapData,
    MultiProcessMapDataZMQ,
    MultiProcessRunnerZMQ,
    MultiThreadMapData,
    PrintData,
    TestDataSpeed,
    check_dataflow,
    debug,
    describe_datapoint,
    measure_throughput,
    throughput_table,
)
from dataflow.base import was_reset
from dataflow.debug import Throughput
from dataflow.testing import check_resume

TIMEOUT_S = 30


def parallel(n=50):
    """A parallel dataflow over ``[0] .. [n-1]``: it refuses a second reset_state()."""
    return MultiProcessRunnerZMQ(DataFromList([[i] for i in range(n)], shuffle=False), 1)


class Counting(DataFlow):
    """[i, 8 zero bytes] for i in 0..n-1, counting resets, datapoints read and closed passes."""

    def __init__(self, n):
        self.n = n
        self.resets = self.reads = self.closed_passes = 0

    def reset_state(self):
        self.resets += 1

    def __iter__(self):
        try:
            for i in range(self.n):
                self.reads += 1
                yield [i, np.zeros(8, np.uint8)]
        finally:
            self.closed_passes += 1

    def __len__(self):
        return self.n


def rows(table):
    """The body rows of a describe_datapoint() table, each split on runs of spaces."""
    return [line.split() for line in table.splitlines()[2:]]


class TestDescribeDatapoint:
    def test_describes_an_array_by_dtype_shape_and_range(self):
        dp = [np.array([[-1.5, 2.0], [0.25, 3.0]], dtype=np.float32)]
        assert rows(describe_datapoint(dp)) == [
            ["0", "ndarray", "float32", "(2,", "2)", "[-1.5,", "3]"]
        ]

    def test_has_a_header_naming_the_columns(self):
        assert describe_datapoint([1]).splitlines()[0].split() == [
            "key",
            "type",
            "dtype",
            "shape",
            "value",
        ]

    def test_describes_scalars_and_strings_by_value(self):
        dp = [7, 0.5, True, None, np.int64(3), "cat", b"\x00\x01"]
        assert rows(describe_datapoint(dp)) == [
            ["0", "int", "7"],
            ["1", "float", "0.5"],
            ["2", "bool", "True"],
            ["3", "NoneType", "None"],
            ["4", "int64", "int64", "()", "3"],
            ["5", "str", "len", "3", "'cat'"],
            ["6", "bytes", "len", "2", "b'\\x00\\x01'"],
        ]

    def test_shortens_long_values_to_one_line(self):
        (row,) = describe_datapoint(["x" * 100]).splitlines()[2:]
        value = row.split("len 100")[1].strip()
        assert value.startswith("'xxx") and value.endswith("...") and len(value) == 40

    def test_arrays_without_a_numeric_range_show_none(self):
        dp = [np.zeros((0, 3)), np.array(["a", "b"])]
        assert rows(describe_datapoint(dp)) == [
            ["0", "ndarray", "float64", "(0,", "3)"],
            ["1", "ndarray", "<U1", "(2,)"],
        ]

    def test_keys_a_dict_datapoint_by_its_keys(self):
        dp = {"image": np.ones((2, 2), np.uint8), "label": 3}
        assert rows(describe_datapoint(dp)) == [
            ["image", "ndarray", "uint8", "(2,", "2)", "[1,", "1]"],
            ["label", "int", "3"],
        ]

    def test_describes_nested_lists_and_dicts_up_to_max_list_elements(self):
        dp = [[np.zeros(2), 1, 2, 3, 4], {"a": 1, "b": [5]}]
        assert rows(describe_datapoint(dp, max_list=2)) == [
            ["0", "list", "len", "5"],
            ["0[0]", "ndarray", "float64", "(2,)", "[0,", "0]"],
            ["0[1]", "int", "1"],
            ["0[...]", "3", "more"],
            ["1", "dict", "len", "2"],
            ["1['a']", "int", "1"],
            ["1['b']", "list", "len", "1"],
            ["1['b'][0]", "int", "5"],
        ]

    def test_stops_at_max_depth(self):
        dp = [[[[1]]]]
        assert rows(describe_datapoint(dp, max_depth=2)) == [
            ["0", "list", "len", "1"],
            ["0[0]", "list", "len", "1"],
            ["0[0][...]", "1", "more"],
        ]

    def test_shows_every_top_level_component_whatever_max_list(self):
        assert len(rows(describe_datapoint(list(range(10)), max_list=0))) == 10

    def test_describes_a_datapoint_that_is_not_a_list_or_dict_as_one_row(self):
        assert rows(describe_datapoint(np.arange(3, dtype=np.int16))) == [
            ["-", "ndarray", "int16", "(3,)", "[0,", "2]"]
        ]

    def test_describes_array_likes_by_their_dtype_and_shape(self):
        class Tensor:
            dtype = "torch.float16"
            shape = [2, 5]

            def __repr__(self):
                return "tensor([[0., 0.],\n        [0., 0.]])"

        (row,) = rows(describe_datapoint([Tensor()]))
        assert row[:5] == ["0", "Tensor", "torch.float16", "(2,", "5)"]
        assert " ".join(row[5:]) == "tensor([[0., 0.], [0., 0.]])"

    def test_describes_any_other_object_by_its_repr(self):
        class Odd:
            shape = 7  # not a tuple: shown as it is

            def __repr__(self):
                return "<Odd>"

        assert rows(describe_datapoint([Odd()])) == [["0", "Odd", "7", "<Odd>"]]

    @pytest.mark.parametrize(
        "kwargs, error, message",
        [
            ({"max_depth": 0}, ValueError, "max_depth must be a positive int, got 0"),
            ({"max_list": -1}, ValueError, "max_list must be a non-negative int, got -1"),
            ({"max_list": "3"}, TypeError, "max_list must be a non-negative int, got '3'"),
        ],
    )
    def test_rejects_bad_arguments(self, kwargs, error, message):
        with pytest.raises(error) as info:
            describe_datapoint([1], **kwargs)
        assert str(info.value) == message


class TestPrintData:
    @pytest.mark.parametrize(
        "kwargs, error, message",
        [
            ({"num": 0}, ValueError, "num must be a positive int, got 0"),
            ({"num": 1.0}, TypeError, "num must be a positive int, got 1.0"),
            ({"max_depth": 0}, ValueError, "max_depth must be a positive int, got 0"),
            ({"max_list": -1}, ValueError, "max_list must be a non-negative int, got -1"),
            ({"name": 5}, TypeError, "name must be None or a str, got 5"),
        ],
    )
    def test_rejects_bad_arguments(self, kwargs, error, message):
        with pytest.raises(error) as info:
            PrintData(Counting(3), **kwargs)
        assert str(info.value) == message

    def test_keeps_the_dataflow_contract(self, capsys):
        out = check_dataflow(lambda: PrintData(Counting(5), num=2))
        assert [dp[0] for dp in out] == list(range(5))
        assert capsys.readouterr().err.count("PrintData: datapoint") == 2

    def test_resumes_as_its_input_does(self):
        check_resume(lambda: PrintData(DataFromList([[i] for i in range(7)], seed=0), num=2))
        df = PrintData(Counting(3))
        df.reset_state()
        with pytest.raises(NotImplementedError, match="^Counting does not support state_dict"):
            df.state_dict()

    def test_passes_datapoints_through_unchanged(self):
        lst = [[np.zeros(2)], [np.ones(2)]]
        df = PrintData(DataFromList(lst, shuffle=False), num=2)
        df.reset_state()
        assert all(a is b for a, b in zip(df, lst))
        assert len(df) == 2

    def test_prints_tables_of_the_first_num_datapoints_to_stderr(self, capsys):
        df = PrintData(Counting(5), num=2, name="raw")
        df.reset_state()
        list(df)
        captured = capsys.readouterr()
        assert captured.out == ""
        err = captured.err
        assert "PrintData (raw): datapoint 0" in err
        assert "PrintData (raw): datapoint 1" in err
        assert "datapoint 2" not in err
        assert describe_datapoint([0, np.zeros(8, np.uint8)]) in err
        assert "uint8" in err and "(8,)" in err and "[0, 0]" in err

    def test_prints_only_in_the_first_pass_after_reset_state(self, capsys):
        df = PrintData(Counting(3), num=5)
        df.reset_state()
        list(df)
        assert capsys.readouterr().err.count("datapoint") == 3  # the pass had only 3
        list(df)
        assert capsys.readouterr().err == ""
        df.reset_state()
        list(df)
        assert capsys.readouterr().err.count("datapoint") == 3

    @pytest.mark.timeout(TIMEOUT_S)
    @pytest.mark.parametrize("reset_first", [False, True])
    def test_works_over_a_parallel_dataflow_reset_or_not(self, capsys, reset_first):
        with parallel() as ds:
            if reset_first:
                ds.reset_state()
            df = PrintData(ds, name="runner")
            df.reset_state()
            assert [dp[0] for dp in df] == list(range(50))
            assert "PrintData (runner): datapoint 0" in capsys.readouterr().err

    def test_resets_ds_once_and_prints_again_after_each_reset(self, capsys):
        ds = Counting(3)
        df = PrintData(ds)
        for _ in range(2):
            df.reset_state()
            list(df)
            assert "PrintData: datapoint 0" in capsys.readouterr().err
        assert ds.resets == 1

    def test_uses_max_depth_and_max_list(self, capsys):
        df = PrintData(DataFromList([[[1, 2, 3, [4]]]], shuffle=False), max_depth=2, max_list=3)
        df.reset_state()
        list(df)
        err = capsys.readouterr().err
        assert "0[2]" in err and "0[...]" in err and "1 more" in err and "0[3]" not in err


class TestThroughput:
    def test_computes_rates(self):
        t = Throughput("x", datapoints=100, seconds=2.0, nbytes=5_000_000)
        assert t.datapoints_per_s == 50.0
        assert t.mb_per_s == 2.5

    def test_str_is_a_one_line_summary(self):
        t = Throughput("x", datapoints=3000, seconds=1.5, nbytes=0)
        assert str(t) == "x: 3000 datapoints in 1.50 s: 2,000.0 datapoints/s, 0.0 MB/s"


class TestMeasureThroughput:
    def test_times_size_datapoints_after_warmup(self):
        ds = Counting(100)
        result = measure_throughput(ds, 30, warmup=5, name="counting")
        assert ds.reads == 35
        assert result.name == "counting"
        assert result.datapoints == 30
        assert result.nbytes == 30 * 8
        assert result.seconds > 0 and result.datapoints_per_s > 0

    def test_stops_early_when_ds_ends(self):
        result = measure_throughput(Counting(10), 1000, warmup=4)
        assert result.datapoints == 6
        assert result.name == "Counting"

    def test_counts_bytes_of_arrays_in_nested_lists_and_dicts(self):
        dp = {"a": np.zeros(3, np.float32), "b": [np.zeros(2, np.int64), (np.zeros(1, np.uint8),)]}
        result = measure_throughput(DataFromList([dp, dp], shuffle=False), 2)
        assert result.nbytes == 2 * (12 + 16 + 1)

    def test_closes_the_pass_it_started(self):
        ds = Counting(100)
        measure_throughput(ds, 10)
        assert ds.closed_passes == 1

    def test_resets_a_dataflow_that_was_not_reset_and_only_that(self):
        ds = Counting(20)
        measure_throughput(ds, 5)
        measure_throughput(ds, 5)
        assert ds.resets == 1
        measure_throughput(DataFromList([[i] for i in range(9)]), 5)  # a shuffled list needs it

    @pytest.mark.timeout(TIMEOUT_S)
    def test_measures_a_parallel_dataflow_reset_or_not(self):
        with parallel() as df:
            assert measure_throughput(df, 10).datapoints == 10
            assert was_reset(df)
            assert measure_throughput(df, 10).datapoints == 10

    def test_shows_a_progress_bar_on_stderr(self, capsys):
        measure_throughput(Counting(10), 10, name="bar-test")
        captured = capsys.readouterr()
        assert "bar-test" in captured.err and "10/10" in captured.err
        assert captured.out == ""

    def test_fails_clearly_when_nothing_is_left_to_time(self):
        with pytest.raises(RuntimeError) as info:
            measure_throughput(Counting(3), 10, warmup=5)
        assert str(info.value) == (
            "measure_throughput: Counting yielded no datapoint to time: it ended "
            "after the 3 datapoints of warmup=5"
        )

    @pytest.mark.parametrize(
        "kwargs, error, message",
        [
            ({"size": 0}, ValueError, "size must be a positive int, got 0"),
            ({"warmup": -1}, ValueError, "warmup must be a non-negative int, got -1"),
            ({"warmup": None}, TypeError, "warmup must be a non-negative int, got None"),
        ],
    )
    def test_rejects_bad_arguments(self, kwargs, error, message):
        with pytest.raises(error) as info:
            measure_throughput(Counting(3), **kwargs)
        assert str(info.value) == message


class TestThroughputTable:
    def test_has_one_row_per_result_with_formatted_figures(self):
        table = throughput_table(
            [Throughput("fast", 20000, 2.0, 10**9), Throughput("slow", 10, 4.0, 0)]
        ).splitlines()
        assert table[0].split("|")[1:-1] == [
            " dataflow   ",
            "   datapoints ",
            "   seconds ",
            "   datapoints/s ",
            "   MB/s ",
        ]
        assert [cell.strip() for cell in table[2].split("|")[1:-1]] == [
            "fast",
            "20000",
            "2.00",
            "10,000.0",
            "500.0",
        ]
        assert [cell.strip() for cell in table[3].split("|")[1:-1]] == [
            "slow",
            "10",
            "4.00",
            "2.5",
            "0.0",
        ]


class TestTestDataSpeed:
    def test_is_not_collected_by_pytest(self):
        assert TestDataSpeed.__test__ is False

    def test_start_resets_ds_and_returns_a_positive_rate(self):
        ds = Counting(100)
        rate = TestDataSpeed(ds, size=50).start()
        assert rate > 0
        assert ds.resets == 1

    def test_start_does_not_reset_ds_again(self):
        ds = Counting(100)
        df = TestDataSpeed(ds, size=10)
        df.reset_state()  # the tensorpack order: reset, then start()
        df.start()
        df.start()
        assert ds.resets == 1

    def test_start_does_not_reset_a_ds_you_reset(self):
        ds = Counting(100)
        ds.reset_state()
        TestDataSpeed(ds, size=10).start()
        TestDataSpeed(ds, size=10).reset_state()
        assert ds.resets == 1

    @pytest.mark.timeout(TIMEOUT_S)
    @pytest.mark.parametrize("reset_first", [False, True])
    def test_start_measures_a_parallel_dataflow_reset_or_not(self, reset_first):
        # A parallel dataflow refuses a second reset_state(): start() must not call it.
        with parallel() as ds:
            if reset_first:
                ds.reset_state()
            assert TestDataSpeed(ds, size=20).start() > 0
            assert TestDataSpeed(ds, size=20).start() > 0

    @pytest.mark.timeout(TIMEOUT_S)
    def test_reset_then_start_over_a_parallel_mapper_you_reset(self):
        with MultiThreadMapData(Counting(40), num_thread=2, map_func=lambda dp: dp) as ds:
            ds.reset_state()
            df = TestDataSpeed(ds, size=5)
            df.reset_state()  # the tensorpack order
            assert df.start() > 0

    def test_start_honors_size_and_warmup(self):
        ds = Counting(1000)
        TestDataSpeed(ds, size=40, warmup=7).start()
        assert ds.reads == 47

    def test_start_prints_a_summary_to_stderr(self, capsys):
        TestDataSpeed(Counting(10), size=10).start()
        err = capsys.readouterr().err
        assert "TestDataSpeed: 10 datapoints in" in err and "datapoints/s" in err

    def test_iterating_passes_datapoints_through_without_measuring(self, capsys):
        out = check_dataflow(lambda: TestDataSpeed(Counting(5), size=2))
        assert [dp[0] for dp in out] == list(range(5))
        assert capsys.readouterr().err == ""

    def test_resumes_as_its_input_does(self):
        source = [[i] for i in range(7)]
        check_resume(lambda: TestDataSpeed(BatchData(DataFromList(source), 2), size=2))

    @pytest.mark.parametrize(
        "kwargs, error, message",
        [
            ({"size": 0}, ValueError, "size must be a positive int, got 0"),
            ({"warmup": -2}, ValueError, "warmup must be a non-negative int, got -2"),
            ({"bottleneck": 1}, TypeError, "bottleneck must be a bool, got 1"),
        ],
    )
    def test_rejects_bad_arguments(self, kwargs, error, message):
        with pytest.raises(error) as info:
            TestDataSpeed(Counting(3), **kwargs)
        assert str(info.value) == message

    @pytest.mark.timeout(TIMEOUT_S)
    def test_bottleneck_shows_the_slow_stage_while_it_runs_and_after(self, capsys, monkeypatch):
        monkeypatch.setattr(debug, "_BOTTLENECK_EVERY_S", 0.05)

        def slow(dp):
            end = time.perf_counter() + 0.002
            while time.perf_counter() < end:
                pass
            return dp

        ds = Counting(10_000)
        speed = TestDataSpeed(
            MapData(MapData(ds, slow), lambda dp: dp), size=300, warmup=5, bottleneck=True
        )
        assert speed.start() > 0
        assert ds.reads == 305 and ds.resets == 1
        assert speed.report.datapoints == 305
        assert speed.report.bottleneck.stage.name == "MapData(func=slow)"
        err = capsys.readouterr().err
        assert "TestDataSpeed: 300 datapoints in" in err
        # Shown beside the bar while it ran, then printed after the summary.
        assert "dp/s, bottleneck: MapData(func=slow)]" in err
        assert err.rstrip().splitlines()[-3] == "bottleneck: MapData(func=slow)"

    @pytest.mark.timeout(TIMEOUT_S)
    def test_bottleneck_names_a_slow_function_in_mapper_workers(self, capsys):
        def slow(dp):
            end = time.perf_counter() + 0.002
            while time.perf_counter() < end:
                pass
            return dp

        with MultiProcessMapDataZMQ(Counting(100_000), num_proc=2, map_func=slow) as ds:
            speed = TestDataSpeed(ds, size=600, bottleneck=True)
            speed.start()
        assert speed.report.bottleneck.stage.name.endswith("[map_func, in workers]")
        assert "bottleneck: slow [map_func, in workers]" in capsys.readouterr().err


class SetsUp(DataFlow):
    """A source of one datapoint that must be reset, tensorpack style."""

    def reset_state(self):
        self.ready = True

    def get_data(self):
        yield [self.ready]


class Fails(DataFlow):
    def reset_state(self):
        raise OSError("no such file")

    def __iter__(self):
        yield [1]


class Inherits(SetsUp):
    pass


class Extends(SetsUp):
    def reset_state(self):
        super().reset_state()
        self.extended = True


class TestWasReset:
    """The record that the debug helpers use (it lives in dataflow.base)."""

    @pytest.mark.parametrize("make", [SetsUp, Inherits, Extends, lambda: Counting(3)])
    def test_is_false_until_reset_state_returns_for_any_dataflow(self, make):
        df = make()
        assert not was_reset(df)
        df.reset_state()
        assert was_reset(df)
        df.close()
        assert was_reset(df)  # close() leaves it

    def test_a_dataflow_without_reset_state_of_its_own_records_it_too(self):
        class Plain(DataFlow):
            def __iter__(self):
                yield [1]

        df = Plain()
        df.reset_state()
        assert was_reset(df) and not was_reset(Plain())

    def test_a_reset_that_fails_is_not_recorded(self):
        df = Fails()
        with pytest.raises(OSError, match="no such file"):
            df.reset_state()
        assert not was_reset(df)

    def test_resetting_a_wrapper_records_every_dataflow_it_resets(self):
        inner = DataFromList([[1]], shuffle=False)
        outer = BatchData(inner, 1)
        outer.reset_state()
        assert was_reset(outer) and was_reset(inner)

    def test_reset_state_keeps_its_name_and_docstring(self):
        assert SetsUp.reset_state.__name__ == "reset_state"
        assert DataFlow.reset_state.__doc__.startswith("Prepare to iterate")

    @pytest.mark.timeout(TIMEOUT_S)
    def test_records_a_parallel_dataflow(self):
        with parallel() as df:
            assert not was_reset(df)
            df.reset_state()
            assert was_reset(df)

"""Tests of dataflow.transforms: map, select, repeat and fixed-size wrappers."""

from __future__ import annotations

import copy
import queue
from collections import OrderedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflow import (
    DataFlow,
    DataFromGenerator,
    DataFromList,
    DataFromQueue,
    FixedSizeData,
    MapData,
    MapDataComponent,
    ReentrancyError,
    RepeatedData,
    RepeatedDataPoint,
    SelectComponent,
    UnknownLengthError,
    check_dataflow,
)


def numbers(n, shuffle=False, **kwargs):
    """A source of [i, str(i)] for i in range(n)."""
    return DataFromList([[i, str(i)] for i in range(n)], shuffle=shuffle, **kwargs)


def firsts(df):
    return [dp[0] for dp in df]


class Counted(DataFlow):
    """[0] ... [n-1], counting reset_state(), __iter__ and close() calls."""

    def __init__(self, n):
        self.n = n
        self.resets = self.passes = self.closes = 0

    def reset_state(self):
        self.resets += 1

    def __iter__(self):
        self.passes += 1
        return iter([[i] for i in range(self.n)])

    def __len__(self):
        return self.n

    def close(self):
        self.closes += 1


class OldStyle(DataFlow):
    """The tensorpack interface: get_data() and size() only."""

    def get_data(self):
        for i in range(3):
            yield [i]

    def size(self):
        return 3


class TestMapData:
    def test_maps_every_datapoint_in_order(self):
        out = check_dataflow(lambda: MapData(numbers(4), lambda dp: [dp[1], dp[0] * 2]))
        assert out == [["0", 0], ["1", 2], ["2", 4], ["3", 6]]

    def test_none_drops_the_datapoint_and_len_over_counts(self):
        df = MapData(numbers(6), lambda dp: dp if dp[0] % 2 else None)
        df.reset_state()
        assert firsts(df) == [1, 3, 5]
        assert len(df) == 6  # documented: len() is len(ds) even when func drops

    def test_func_may_assign_into_its_argument_without_changing_the_source(self):
        def double_first(dp):
            dp[0] = dp[0] * 2
            return dp

        lst = [[1, "a"], {0: 2, "k": "b"}]
        df = MapData(DataFromList(lst, shuffle=False), double_first)
        df.reset_state()
        assert list(df) == list(df) == [[2, "a"], {0: 4, "k": "b"}]
        assert lst == [[1, "a"], {0: 2, "k": "b"}]

    def test_maps_dict_datapoints(self):
        out = check_dataflow(
            lambda: MapData(DataFromList([{"x": 1}], shuffle=False), lambda d: {"y": d["x"]})
        )
        assert out == [{"y": 1}]

    def test_rejects_a_non_callable_func(self):
        with pytest.raises(TypeError, match=r"^func must be callable, got 3$"):
            MapData(numbers(1), 3)

    def test_rejects_a_list_as_ds(self):
        with pytest.raises(TypeError, match=r"^ds must be a DataFlow, got list"):
            MapData([[1]], lambda dp: dp)

    def test_works_on_an_old_style_source_and_through_get_data(self):
        df = MapData(OldStyle(), lambda dp: [dp[0] + 10])
        df.reset_state()
        assert list(df.get_data()) == [[10], [11], [12]]
        assert df.size() == 3
        check_dataflow(lambda: MapData(OldStyle(), lambda dp: dp))

    def test_function_errors_propagate_unchanged(self):
        def boom(dp):
            raise ZeroDivisionError("boom")

        df = MapData(numbers(1), boom)
        df.reset_state()
        with pytest.raises(ZeroDivisionError, match="^boom$"):
            list(df)


class TestMapDataComponent:
    def test_maps_one_component_of_list_datapoints(self):
        out = check_dataflow(lambda: MapDataComponent(numbers(3), lambda s: s + "!", 1))
        assert out == [[0, "0!"], [1, "1!"], [2, "2!"]]

    def test_index_defaults_to_zero_and_may_be_negative(self):
        df = MapDataComponent(numbers(2), lambda x: -x)
        df.reset_state()
        assert list(df) == [[0, "0"], [-1, "1"]]
        df = MapDataComponent(numbers(2), int, -1)
        df.reset_state()
        assert list(df) == [[0, 0], [1, 1]]

    def test_maps_a_key_of_dict_datapoints(self):
        lst = [{"img": i, "label": "x"} for i in range(3)]
        out = check_dataflow(
            lambda: MapDataComponent(DataFromList(lst, shuffle=False), lambda x: x * 2, "img")
        )
        assert out == [{"img": 0, "label": "x"}, {"img": 2, "label": "x"}, {"img": 4, "label": "x"}]

    def test_tuple_datapoints_come_out_as_lists(self):
        df = MapDataComponent(DataFromGenerator(lambda: [(1, 2)]), str, 1)
        assert list(df) == [[1, "2"]]

    def test_keeps_list_and_dict_subclasses(self):
        df = MapDataComponent(DataFromList([OrderedDict(a=1, b=2)], shuffle=False), str, "a")
        df.reset_state()
        (out,) = list(df)
        assert type(out) is OrderedDict and out == OrderedDict(a="1", b=2)

    def test_none_drops_the_datapoint(self):
        df = MapDataComponent(numbers(5), lambda x: x if x > 2 else None)
        df.reset_state()
        assert firsts(df) == [3, 4]
        assert len(df) == 5  # documented over-count

    @given(
        dps=st.lists(
            st.lists(st.lists(st.integers()), min_size=2, max_size=4)
            | st.fixed_dictionaries({0: st.lists(st.integers()), 1: st.integers(), "b": st.none()}),
            max_size=8,
        ),
        index=st.sampled_from([0, 1]),
    )
    def test_never_changes_the_input_datapoint(self, dps, index):
        before = copy.deepcopy(dps)
        df = MapDataComponent(DataFromList(dps, shuffle=False), lambda x: ("mapped", x), index)
        df.reset_state()
        out = list(df)
        assert dps == before
        for dp, res in zip(dps, out):
            assert res is not dp and type(res) is type(dp)
            assert res[index] == ("mapped", dp[index])
            others = dp.keys() if isinstance(dp, dict) else range(len(dp))
            assert all(res[k] is dp[k] for k in others if k != index)

    def test_missing_index_names_the_wrapper_index_and_size(self):
        df = MapDataComponent(numbers(1), str, 5)
        df.reset_state()
        with pytest.raises(
            IndexError,
            match=r"^MapDataComponent: the datapoint has no component 5; it is a list of 2 "
            r"components$",
        ):
            list(df)

    def test_missing_key_names_the_wrapper_key_and_keys(self):
        df = MapDataComponent(DataFromList([{"a": 1, "b": 2}], shuffle=False), str, "img")
        df.reset_state()
        with pytest.raises(
            KeyError, match=r"MapDataComponent: the datapoint has no key 'img'; its keys are "
        ) as info:
            list(df)
        assert "['a', 'b']" in str(info.value)

    def test_string_index_on_a_list_datapoint_is_a_missing_component(self):
        df = MapDataComponent(numbers(1), str, "img")
        df.reset_state()
        with pytest.raises(IndexError, match=r"no component 'img'; it is a list of 2 components"):
            list(df)

    @pytest.mark.parametrize("dp", [7, "ab"])
    def test_datapoint_that_is_not_a_list_or_dict_names_its_type(self, dp):
        df = MapDataComponent(DataFromGenerator(lambda: [dp]), str, 0)
        with pytest.raises(
            TypeError,
            match=rf"^MapDataComponent needs list or dict datapoints, got {type(dp).__name__}$",
        ):
            list(df)

    def test_function_errors_are_not_mistaken_for_missing_components(self):
        def lookup(x):
            return [][x]

        df = MapDataComponent(numbers(1), lookup, 0)
        df.reset_state()
        with pytest.raises(IndexError, match=r"^list index out of range$"):
            list(df)

    def test_rejects_an_unhashable_index(self):
        with pytest.raises(
            TypeError,
            match=r"^index must be an int \(list datapoints\) or a hashable key \(dict "
            r"datapoints\), got \[0\]$",
        ):
            MapDataComponent(numbers(1), str, [0])

    def test_rejects_a_non_callable_func(self):
        with pytest.raises(TypeError, match=r"^func must be callable, got 'str'$"):
            MapDataComponent(numbers(1), "str", 0)

    def test_is_a_map_data_as_in_tensorpack(self):
        df = MapDataComponent(OldStyle(), lambda x: x + 1)
        assert isinstance(df, MapData)
        assert list(df.get_data()) == [[1], [2], [3]] and df.size() == 3


class TestSelectComponent:
    def test_selects_and_reorders_components(self):
        out = check_dataflow(lambda: SelectComponent(numbers(2), [1, 0, 1]))
        assert out == [["0", 0, "0"], ["1", 1, "1"]]

    def test_selects_keys_of_dict_datapoints_as_a_list(self):
        lst = [{"img": 1, "label": 2, "extra": 3}]
        df = SelectComponent(DataFromList(lst, shuffle=False), ("label", "img"))
        df.reset_state()
        assert list(df) == [[2, 1]]

    def test_len_is_that_of_ds(self):
        df = SelectComponent(OldStyle(), [0])
        assert len(df) == df.size() == 3

    def test_missing_index_names_the_wrapper_index_and_size(self):
        df = SelectComponent(numbers(1), [0, 2])
        df.reset_state()
        with pytest.raises(
            IndexError,
            match=r"^SelectComponent: the datapoint has no component 2; it is a list of 2 "
            r"components$",
        ):
            list(df)

    def test_missing_key_names_the_wrapper_and_key(self):
        df = SelectComponent(DataFromList([{"a": 1}], shuffle=False), ["a", "b"])
        df.reset_state()
        with pytest.raises(KeyError, match=r"SelectComponent: the datapoint has no key 'b'"):
            list(df)

    def test_datapoint_that_is_not_indexable_names_its_type(self):
        df = SelectComponent(DataFromGenerator(lambda: [5]), [0])
        with pytest.raises(
            TypeError, match=r"^SelectComponent needs list or dict datapoints, got int$"
        ):
            list(df)

    @pytest.mark.parametrize("idxs", [[], 0, "ab"])
    def test_rejects_idxs_that_are_not_a_non_empty_list(self, idxs):
        with pytest.raises(
            TypeError, match=r"^idxs must be a non-empty list of component indices or keys, got "
        ):
            SelectComponent(numbers(1), idxs)

    def test_rejects_an_unhashable_index(self):
        with pytest.raises(TypeError, match=r"^idxs\[1\] must be an int .*, got \[1\]$"):
            SelectComponent(numbers(1), [0, [1]])


class TestRepeatedData:
    def test_repeats_the_whole_dataflow(self):
        out = check_dataflow(lambda: RepeatedData(numbers(2), 3))
        assert [dp[0] for dp in out] == [0, 1, 0, 1, 0, 1]

    def test_a_shuffling_source_is_shuffled_anew_each_time(self):
        df = RepeatedData(numbers(20, shuffle=True, seed=0), 3)
        df.reset_state()
        out = firsts(df)
        parts = [out[:20], out[20:40], out[40:]]
        assert all(sorted(p) == list(range(20)) for p in parts)
        assert parts[0] != parts[1] != parts[2]

    def test_minus_one_repeats_forever(self):
        out = check_dataflow(lambda: RepeatedData(numbers(3), -1), infinite=True, max_datapoints=10)
        assert [dp[0] for dp in out] == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]

    def test_forever_has_unknown_length(self):
        df = RepeatedData(numbers(3), -1)
        with pytest.raises(UnknownLengthError, match=r"num=-1 repeats forever and has no length"):
            len(df)
        with pytest.raises(NotImplementedError):
            df.size()

    @pytest.mark.timeout(10)
    def test_forever_over_an_empty_dataflow_raises_instead_of_spinning(self):
        df = RepeatedData(numbers(0), -1)
        df.reset_state()
        with pytest.raises(
            RuntimeError, match=r"^RepeatedData: a whole pass of DataFromList yielded no datapoints"
        ):
            next(iter(df))

    def test_resets_ds_once_and_iterates_it_num_times(self):
        inner = Counted(2)
        df = RepeatedData(inner, 4)
        df.reset_state()
        assert len(list(df)) == 8
        assert (inner.resets, inner.passes) == (1, 4)
        df.close()
        assert inner.closes == 1

    def test_unknown_length_of_ds_stays_unknown(self):
        df = RepeatedData(DataFromGenerator(lambda: [[1]]), 2)
        with pytest.raises(UnknownLengthError):
            len(df)
        out = check_dataflow(lambda: RepeatedData(DataFromGenerator(lambda: [[1]]), 2))
        assert out == [[1], [1]]

    def test_tensorpack_size_over_an_old_style_source(self):
        df = RepeatedData(OldStyle(), 2)
        assert df.size() == 6
        assert [dp[0] for dp in df.get_data()] == [0, 1, 2, 0, 1, 2]

    @pytest.mark.parametrize(
        "num,error", [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError)]
    )
    def test_rejects_a_bad_num(self, num, error):
        with pytest.raises(
            error, match=rf"^num must be a positive int, or -1 to repeat forever, got {num!r}$"
        ):
            RepeatedData(numbers(1), num)

    @given(n=st.integers(0, 8), num=st.integers(1, 5))
    def test_len_equals_the_count_of_one_pass(self, n, num):
        df = RepeatedData(numbers(n), num)
        df.reset_state()
        out = firsts(df)
        assert len(df) == len(out) == n * num
        assert out == list(range(n)) * num


class TestRepeatedDataPoint:
    def test_repeats_each_datapoint_in_a_row(self):
        out = check_dataflow(lambda: RepeatedDataPoint(numbers(3), 2))
        assert [dp[0] for dp in out] == [0, 0, 1, 1, 2, 2]

    def test_repeats_are_the_same_object(self):
        df = RepeatedDataPoint(numbers(1), 3)
        df.reset_state()
        a, b, c = list(df)
        assert a is b is c

    def test_tensorpack_size_over_an_old_style_source(self):
        df = RepeatedDataPoint(OldStyle(), 2)
        assert df.size() == 6
        assert [dp[0] for dp in df.get_data()] == [0, 0, 1, 1, 2, 2]

    @pytest.mark.parametrize("num,error", [(0, ValueError), (2.0, TypeError), ("2", TypeError)])
    def test_rejects_a_bad_num(self, num, error):
        with pytest.raises(error, match=rf"^num must be a positive int, got {num!r}$"):
            RepeatedDataPoint(numbers(1), num)

    @given(n=st.integers(0, 8), num=st.integers(1, 5))
    def test_len_equals_the_count_of_one_pass(self, n, num):
        df = RepeatedDataPoint(numbers(n), num)
        df.reset_state()
        out = firsts(df)
        assert len(df) == len(out) == n * num
        assert out == [i for i in range(n) for _ in range(num)]


class TestFixedSizeData:
    def test_keep_state_continues_where_the_last_pass_stopped(self):
        df = FixedSizeData(numbers(5), 3)
        df.reset_state()
        assert [firsts(df) for _ in range(3)] == [[0, 1, 2], [3, 4, 0], [1, 2, 3]]

    def test_without_keep_state_every_pass_restarts(self):
        df = FixedSizeData(numbers(5), 3, keep_state=False)
        df.reset_state()
        assert [firsts(df) for _ in range(2)] == [[0, 1, 2], [0, 1, 2]]
        df = FixedSizeData(numbers(5), 6, keep_state=False)
        df.reset_state()
        assert [firsts(df) for _ in range(2)] == [[0, 1, 2, 3, 4, 0]] * 2

    @pytest.mark.parametrize("n", [2, 5, 9])
    @pytest.mark.parametrize("keep_state", [True, False])
    def test_contract(self, n, keep_state):
        out = check_dataflow(lambda: FixedSizeData(numbers(n), 5, keep_state=keep_state))
        assert len(out) == 5

    def test_takes_a_fixed_count_from_an_endless_dataflow(self):
        out = check_dataflow(lambda: FixedSizeData(RepeatedData(numbers(3), -1), 4))
        assert [dp[0] for dp in out] == [0, 1, 2, 0]

    @pytest.mark.timeout(10)
    @pytest.mark.parametrize("keep_state", [True, False])
    def test_empty_ds_raises_instead_of_looping_forever(self, keep_state):
        df = FixedSizeData(numbers(0), 3, keep_state=keep_state)
        df.reset_state()
        with pytest.raises(
            RuntimeError,
            match=r"^FixedSizeData: a whole pass of DataFromList yielded no datapoints, so "
            r"repeating it would loop forever",
        ):
            list(df)

    def test_abandoned_pass_keeps_the_position(self):
        df = FixedSizeData(numbers(5), 3)
        df.reset_state()
        it = iter(df)
        assert next(it) == [0, "0"]
        it.close()
        assert firsts(df) == [1, 2, 3]

    def test_a_pass_that_failed_starts_over_on_the_next(self):
        attempts = []

        def flaky():
            attempts.append(1)
            for i in range(4):
                if i == 2 and len(attempts) == 1:
                    raise OSError("disk hiccup")
                yield [i]

        df = FixedSizeData(DataFromGenerator(flaky), 3)
        df.reset_state()
        with pytest.raises(OSError, match="disk hiccup"):
            list(df)
        assert firsts(df) == [0, 1, 2]

    def test_reset_state_starts_from_a_fresh_pass_of_ds(self):
        df = FixedSizeData(numbers(5), 2)
        df.reset_state()
        assert firsts(df) == [0, 1]
        df.reset_state()
        assert firsts(df) == [0, 1]

    @pytest.mark.parametrize("release", ["reset_state", "close"])
    def test_reset_state_and_close_release_the_kept_iterator_of_ds(self, release):
        q = queue.Queue()
        for i in range(4):
            q.put([i])
        source = DataFromQueue(q)
        df = FixedSizeData(source, 2)
        df.reset_state()
        assert firsts(df) == [0, 1]
        with pytest.raises(ReentrancyError):  # the kept pass of source is still open
            next(iter(source))
        getattr(df, release)()
        assert next(iter(source)) == [2]

    def test_iterating_from_two_places_at_once_is_refused(self):
        df = FixedSizeData(numbers(5), 3)
        df.reset_state()
        first = iter(df)
        next(first)
        with pytest.raises(ReentrancyError, match=r"^FixedSizeData is already being iterated"):
            next(iter(df))
        first.close()
        assert firsts(df) == [1, 2, 3]

    def test_close_forwards_and_is_idempotent(self):
        inner = Counted(3)
        df = FixedSizeData(inner, 2)
        df.reset_state()
        firsts(df)
        df.close()
        df.close()
        assert inner.closes == 2
        df.reset_state()
        assert firsts(df) == [0, 1]

    def test_tensorpack_size_over_an_old_style_source(self):
        df = FixedSizeData(OldStyle(), 4)
        df.reset_state()
        assert df.size() == 4
        assert [dp[0] for dp in df.get_data()] == [0, 1, 2, 0]

    @pytest.mark.parametrize(
        "kwargs,error,message",
        [
            ({"size": 0}, ValueError, r"^size must be a positive int, got 0$"),
            ({"size": "3"}, TypeError, r"^size must be a positive int, got '3'$"),
            ({"size": 3, "keep_state": "no"}, TypeError, r"^keep_state must be a bool, got 'no'$"),
        ],
    )
    def test_rejects_bad_arguments(self, kwargs, error, message):
        with pytest.raises(error, match=message):
            FixedSizeData(numbers(1), **kwargs)

    @given(
        n=st.integers(1, 7),
        size=st.integers(1, 12),
        keep_state=st.booleans(),
        num_passes=st.integers(1, 4),
    )
    def test_len_equals_the_count_of_every_pass(self, n, size, keep_state, num_passes):
        df = FixedSizeData(numbers(n), size, keep_state=keep_state)
        df.reset_state()
        passes = [firsts(df) for _ in range(num_passes)]
        assert all(len(p) == len(df) == size for p in passes)
        cycle = list(range(n)) * (size * num_passes // n + 1)
        if keep_state:
            assert sum(passes, []) == cycle[: size * num_passes]
        else:
            assert all(p == cycle[:size] for p in passes)

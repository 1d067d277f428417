"""Tests of dataflow.batch: BatchData, BatchDataByShape and unbatch."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflow import (
    BatchData,
    BatchDataByShape,
    DataFlow,
    DataFromGenerator,
    DataFromList,
    MapData,
    MapDataComponent,
    UnknownLengthError,
    check_dataflow,
    unbatch,
)


class Counting(DataFlow):
    """[0], [1], ..., [n-1], counting the datapoints read; optionally without a length."""

    def __init__(self, n, *, has_len=True):
        self.n = n
        self.has_len = has_len
        self.reads = 0

    def __iter__(self):
        for i in range(self.n):
            self.reads += 1
            yield [i]

    def __len__(self):
        if not self.has_len:
            return super().__len__()
        return self.n


def source(dps):
    return DataFromList(dps, shuffle=False)


def batch_of(*dps, use_list=False):
    """The single batch BatchData makes of *dps*."""
    df = BatchData(DataFromGenerator(lambda: iter(dps)), len(dps), use_list=use_list)
    df.reset_state()
    (batch,) = list(df)
    return batch


def error_of(*dps, use_list=False):
    with pytest.raises(Exception) as info:
        batch_of(*dps, use_list=use_list)
    return info.type, str(info.value)


def same_datapoint(a, b):
    """Equal up to the types batching changes (numpy scalars, arrays, str_)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


# A datapoint with one component of each kind BatchData stacks; floats that
# float32 holds exactly, and strings without a trailing NUL (which numpy would
# strip, so BatchData refuses them), so batching then unbatching gives them back.
list_datapoints = st.lists(
    st.tuples(
        st.integers(-(2**40), 2**40),
        st.floats(width=32, allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.text(max_size=3).filter(lambda text: not text.endswith("\0")),
        st.lists(st.integers(0, 255), min_size=2, max_size=2),
    ).map(lambda t: [t[0], t[1], t[2], t[3], np.array(t[4], dtype=np.uint8)]),
    max_size=40,
)


class TestBatchData:
    @pytest.mark.parametrize(
        "kwargs, error, message",
        [
            ({"batch_size": 0}, ValueError, "batch_size must be a positive int, got 0"),
            ({"batch_size": 2.0}, TypeError, "batch_size must be a positive int, got 2.0"),
            ({"batch_size": True}, TypeError, "batch_size must be a positive int, got True"),
            ({"remainder": 1}, TypeError, "remainder must be a bool, got 1"),
            (
                {"use_list": "yes"},
                TypeError,
                "use_list must be a bool, a list of bools (one per component) or a dict of "
                "bools (by key), got 'yes'",
            ),
            (
                {"use_list": [True, 0]},
                TypeError,
                "use_list must be a bool, a list of bools (one per component) or a dict of "
                "bools (by key), got [True, 0]",
            ),
        ],
    )
    def test_rejects_bad_arguments(self, kwargs, error, message):
        kwargs = {"batch_size": 2, **kwargs}
        with pytest.raises(error) as info:
            BatchData(source([[1]] * 4), **kwargs)
        assert str(info.value) == message

    def test_rejects_a_ds_that_is_not_a_dataflow(self):
        with pytest.raises(TypeError, match="ds must be a DataFlow, got list"):
            BatchData([[1], [2]], 2)

    @pytest.mark.parametrize("remainder", [False, True])
    def test_keeps_the_dataflow_contract(self, remainder):
        dps = [[i, np.full(3, i, dtype=np.float32)] for i in range(10)]
        out = check_dataflow(lambda: BatchData(DataFromList(dps, seed=0), 4, remainder))
        assert [len(b[0]) for b in out] == ([4, 4, 2] if remainder else [4, 4])

    def test_keeps_the_contract_when_the_length_of_ds_is_unknown(self):
        out = check_dataflow(lambda: BatchData(Counting(7, has_len=False), 3))
        assert len(out) == 2

    def test_stacks_consecutive_datapoints_in_order(self):
        df = BatchData(source([[i, [i]] for i in range(6)]), 3)
        df.reset_state()
        assert [(ints.tolist(), lists.tolist()) for ints, lists in df] == [
            ([0, 1, 2], [[0], [1], [2]]),
            ([3, 4, 5], [[3], [4], [5]]),
        ]

    def test_drops_the_incomplete_tail_by_default(self):
        df = BatchData(Counting(7), 3)
        df.reset_state()
        assert [b[0].tolist() for b in df] == [[0, 1, 2], [3, 4, 5]]
        assert len(df) == 2

    def test_yields_the_short_last_batch_with_remainder(self):
        df = BatchData(Counting(7), 3, remainder=True)
        df.reset_state()
        assert [b[0].tolist() for b in df] == [[0, 1, 2], [3, 4, 5], [6]]
        assert len(df) == 3

    def test_remainder_adds_nothing_when_the_batch_size_divides(self):
        df = BatchData(Counting(6), 3, remainder=True)
        df.reset_state()
        assert len(df) == len(list(df)) == 2

    def test_length_is_unknown_when_that_of_ds_is(self):
        with pytest.raises(UnknownLengthError):
            len(BatchData(Counting(6, has_len=False), 3))

    def test_reads_only_one_batch_ahead(self):
        ds = Counting(100)
        df = BatchData(ds, 8)
        df.reset_state()
        it = iter(df)
        next(it)
        assert ds.reads == 8
        next(it)
        assert ds.reads == 16

    def test_reset_state_refuses_a_ds_too_short_for_one_batch(self):
        df = BatchData(Counting(3), 4)
        with pytest.raises(ValueError) as info:
            df.reset_state()
        assert str(info.value) == (
            "BatchData: len(ds) is 3, less than batch_size=4, and remainder=False, so no batch "
            "would ever be yielded; use a smaller batch_size or remainder=True"
        )

    def test_a_short_ds_is_fine_with_remainder_or_an_unknown_length(self):
        for df in (BatchData(Counting(3), 4, True), BatchData(Counting(3, has_len=False), 4)):
            df.reset_state()
            assert len(list(df)) == (1 if df.remainder else 0)

    # ---- dtypes ------------------------------------------------------------

    @pytest.mark.parametrize(
        "values, dtype",
        [
            ([1, 2], np.int32),
            ([-(2**31), 2**31 - 1], np.int32),
            ([1, 2**31], np.int64),
            ([-(2**31) - 1, 0], np.int64),
            ([2**63, 2**64 - 1], np.uint64),
            ([0.5, 1.5], np.float32),
            ([1, 0.5], np.float32),
            ([True, False], np.bool_),
            ([np.float16(1), np.float16(2)], np.float16),
            ([np.int8(1), np.int8(2)], np.int8),
            ([np.zeros(2, np.uint8), np.ones(2, np.uint8)], np.uint8),
            ([np.zeros((2, 2)), np.ones((2, 2))], np.float64),
        ],
    )
    def test_stacks_numbers_and_arrays_with_these_dtypes(self, values, dtype):
        (out,) = batch_of(*([v] for v in values))
        assert out.dtype == dtype
        assert out.shape == (len(values), *np.shape(values[0]))
        assert np.array_equal(out, np.array(values))

    def test_strings_and_bytes_become_numpy_string_arrays(self):
        words, raw = batch_of(["a", b"x"], ["bcd", b"yz"])
        assert words.dtype.kind == "U" and words.tolist() == ["a", "bcd"]
        assert raw.dtype.kind == "S" and raw.tolist() == [b"x", b"yz"]

    def test_other_components_stay_lists(self):
        obj = object()
        out = batch_of([None, {"k": 1}, obj], [None, {"k": 2}, obj])
        assert out == [[None, None], [{"k": 1}, {"k": 2}], [obj, obj]]

    def test_python_lists_and_tuples_are_stacked(self):
        boxes, pairs = batch_of([[1, 2, 3, 4], (0.5, 1.5)], [[5, 6, 7, 8], (2.5, 3.5)])
        assert boxes.dtype == np.int64 and boxes.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
        assert pairs.dtype == np.float64 and pairs.shape == (2, 2)

    @pytest.mark.parametrize("inner", [[None, None], [{"a": 1}], [object()]])
    def test_python_lists_of_objects_are_an_error_not_a_shape_complaint(self, inner):
        assert error_of([inner], [inner]) == (
            ValueError,
            "BatchData: cannot stack component 0 of a batch: the lists hold values that are "
            "not numbers or strings; use use_list=True for this component",
        )
        assert batch_of([inner], [inner], use_list=True) == [[inner, inner]]

    @pytest.mark.parametrize("values", [[b"ab", b"\0\0"], ["a\0", "b"]])
    def test_strings_ending_in_nul_are_an_error_not_silently_stripped(self, values):
        kind, message = error_of(*([v] for v in values))
        assert kind is ValueError
        assert message == (
            f"BatchData: component 0 holds {type(values[0]).__name__} values ending in NUL, "
            "which a numpy string array would silently strip; use use_list=True for this "
            "component"
        )
        assert batch_of(*([v] for v in values), use_list=True) == [values]

    def test_ragged_python_lists_name_the_component(self):
        with pytest.raises(
            ValueError,
            match=r"^BatchData: component 0 has inconsistent shapes within a batch: \(2,\) and "
            r"\(3,\) \(datapoints 0 and 1 of the batch\)",
        ):
            batch_of([[1, 2]], [[1, 2, 3]])

    def test_use_list_keeps_every_component_a_list(self):
        assert batch_of([1, "a"], [2, "b"], use_list=True) == [[1, 2], ["a", "b"]]

    def test_use_list_chooses_per_component(self):
        ints, arrays = batch_of([1, np.zeros(2)], [2, np.zeros(3)], use_list=[False, True])
        assert ints.tolist() == [1, 2]
        assert [a.shape for a in arrays] == [(2,), (3,)]

    def test_use_list_chooses_per_key_for_dict_datapoints(self):
        out = batch_of({"x": 1, "y": 2}, {"x": 3, "y": 4}, use_list={"y": True})
        assert out["x"].tolist() == [1, 3] and out["y"] == [2, 4]

    def test_batches_dict_datapoints_per_key(self):
        out = batch_of({"img": np.zeros(2), "label": 1}, {"label": 2, "img": np.ones(2)})
        assert out["img"].tolist() == [[0, 0], [1, 1]] and out["label"].tolist() == [1, 2]

    def test_accepts_tuple_datapoints(self):
        ints, strs = batch_of((1, "a"), [2, "b"])
        assert ints.tolist() == [1, 2] and strs.tolist() == ["a", "b"]

    # ---- errors --------------------------------------------------------------

    def test_inconsistent_shapes_name_the_component_and_the_shapes(self):
        assert error_of([1, np.zeros(3)], [2, np.zeros(3)], [3, np.zeros(4)]) == (
            ValueError,
            "BatchData: component 1 has inconsistent shapes within a batch: (3,) and (4,) "
            "(datapoints 0 and 2 of the batch); pad/resize them, or use use_list=True for "
            "this component",
        )

    def test_inconsistent_shapes_name_the_key_of_dict_datapoints(self):
        assert error_of({"img": np.zeros((2, 2))}, {"img": np.zeros(2)}) == (
            ValueError,
            "BatchData: component 'img' has inconsistent shapes within a batch: (2, 2) and "
            "(2,) (datapoints 0 and 1 of the batch); pad/resize them, or use use_list=True "
            "for this component",
        )

    def test_an_array_among_numbers_is_a_shape_error(self):
        kind, message = error_of([1], [np.zeros(2)])
        assert kind is ValueError and "component 0 has inconsistent shapes" in message

    @pytest.mark.parametrize(
        "dps, types",
        [
            (([1], ["a"]), "int, str"),
            ((["a"], [1]), "int, str"),
            ((["a"], [b"a"]), "bytes, str"),
            (([1.5], [None]), "NoneType, float"),
        ],
    )
    def test_mixed_value_types_are_an_error(self, dps, types):
        assert error_of(*dps) == (
            TypeError,
            f"BatchData: component 0 cannot be stacked into one array: its values within a "
            f"batch are of types {types}; give them one type, or use use_list=True for this "
            "component",
        )

    @pytest.mark.parametrize("values", [[2**70, 1], [-1, 2**63]])
    def test_integers_beyond_64_bits_are_an_error_not_floats(self, values):
        kind, message = error_of(*([v] for v in values))
        assert kind is OverflowError
        assert message.startswith(
            "BatchData: component 0 holds integers that no 64-bit integer type can hold together"
        )

    def test_a_datapoint_that_is_not_a_list_or_dict_is_named(self):
        assert error_of([1], 2) == (TypeError, "BatchData needs list or dict datapoints, got int")
        df = BatchData(DataFromGenerator(lambda: iter([5, 6])), 2)
        df.reset_state()
        with pytest.raises(TypeError, match="^BatchData needs list or dict datapoints, got int$"):
            list(df)

    def test_a_dict_among_lists_is_named(self):
        assert error_of([1], {"a": 1}) == (
            TypeError,
            "BatchData: the datapoints within a batch must be all lists or all dicts, got a "
            "list and a dict",
        )
        assert error_of({"a": 1}, (1,)) == (
            TypeError,
            "BatchData: the datapoints within a batch must be all lists or all dicts, got a "
            "dict and a tuple",
        )
        assert error_of({"a": 1}, 5) == (
            TypeError,
            "BatchData needs list or dict datapoints, got int",
        )

    def test_different_numbers_of_components_are_an_error(self):
        assert error_of([1, 2], [3, 4], [5]) == (
            ValueError,
            "BatchData: datapoints within a batch have different numbers of components: 2 and 1",
        )

    def test_different_keys_are_an_error(self):
        assert error_of({"a": 1, "b": 2}, {"a": 1, "c": 2}) == (
            ValueError,
            "BatchData: datapoints within a batch have different keys: ['a', 'b'] and ['a', 'c']",
        )

    def test_use_list_that_does_not_fit_the_datapoints_is_an_error(self):
        assert error_of([1, 2], [3, 4], use_list=[True]) == (
            ValueError,
            "BatchData: use_list has 1 entries but the datapoints have 2 components",
        )
        assert error_of([1], [2], use_list={"a": True}) == (
            TypeError,
            "BatchData: use_list is a dict (by key) but the datapoints are lists; give a list "
            "of bools, one per component",
        )
        assert error_of({"a": 1}, {"a": 2}, use_list=[True]) == (
            TypeError,
            "BatchData: use_list is a list (by position) but the datapoints are dicts; give a "
            "dict of bools by key",
        )
        assert error_of({"a": 1}, {"a": 2}, use_list={"b": True}) == (
            ValueError,
            "BatchData: use_list names keys the datapoints do not have: ['b']",
        )

    # ---- laws and compatibility ------------------------------------------

    @settings(max_examples=80, deadline=None)
    @given(dps=list_datapoints, batch_size=st.integers(1, 12), remainder=st.booleans())
    def test_batch_then_unbatch_gives_back_the_datapoints(self, dps, batch_size, remainder):
        df = BatchData(DataFromGenerator(lambda: iter(dps)), batch_size, remainder)
        df.reset_state()
        out = [dp for batch in df for dp in unbatch(batch)]
        kept = len(dps) if remainder else len(dps) // batch_size * batch_size
        assert len(out) == kept
        assert all(same_datapoint(a, b) for a, b in zip(dps, out))

    @settings(max_examples=40, deadline=None)
    @given(dps=list_datapoints, batch_size=st.integers(1, 12), remainder=st.booleans())
    def test_batch_then_unbatch_gives_back_dict_datapoints(self, dps, batch_size, remainder):
        dicts = [dict(zip("abcde", dp)) for dp in dps]
        df = BatchData(DataFromGenerator(lambda: iter(dicts)), batch_size, remainder)
        df.reset_state()
        out = [dp for batch in df for dp in unbatch(batch)]
        assert len(out) == (len(dicts) if remainder else len(dicts) // batch_size * batch_size)
        assert all(same_datapoint(a, b) for a, b in zip(dicts, out))

    @settings(max_examples=80, deadline=None)
    @given(n=st.integers(0, 60), batch_size=st.integers(1, 12), remainder=st.booleans())
    def test_len_equals_the_count_of_one_pass(self, n, batch_size, remainder):
        df = BatchData(Counting(n), batch_size, remainder)
        if n < batch_size and not remainder:
            with pytest.raises(ValueError, match="no batch would ever be yielded"):
                df.reset_state()
            return
        df.reset_state()
        batches = list(df)
        assert len(df) == len(batches)
        assert sum(len(b[0]) for b in batches) == (n if remainder else n - n % batch_size)

    def test_aggregate_batch_is_kept_for_tensorpack_code(self):
        ints, strs = BatchData.aggregate_batch([[1, "a"], [2, "b"]])
        assert ints.dtype == np.int32 and strs.tolist() == ["a", "b"]
        assert BatchData.aggregate_batch([[1], [2]], use_list=True) == [[1, 2]]

    def test_batches_the_benchmark_pipeline(self):
        dps = [[i, np.full(3, i, dtype=np.float32)] for i in range(200)]
        df = MapDataComponent(DataFromList(dps, shuffle=False), lambda a: a * 2, 1)
        df = BatchData(MapData(df, lambda dp: [dp[0] + 1, dp[1]]), 64)
        df.reset_state()
        batches = list(df)
        assert len(batches) == len(df) == 3
        ints, arrays = batches[1]
        assert ints.dtype == np.int32 and arrays.dtype == np.float32
        assert ints.tolist() == list(range(65, 129))
        assert np.array_equal(arrays[:, 0], np.arange(64, 128) * 2)


def big(value, shape=(64, 80), dtype=np.float32):
    """An array large enough for BatchData to copy it into the batch as it arrives."""
    return np.full(shape, value, dtype)


def old_batch(dps, use_list=False):
    """What stacking at the end gives (the reference), or its error."""
    try:
        return BatchData.aggregate_batch(dps, use_list=use_list)
    except Exception as err:
        return type(err), str(err)


class TestBatchDataFillsLargeArrays:
    """Large arrays are copied into the batch as datapoints arrive; the batches
    (and errors) are those of stacking at the end."""

    def check(self, dps, batch_size, use_list=False, remainder=False):
        df = BatchData(
            DataFromGenerator(lambda: iter(dps)), batch_size, remainder=remainder, use_list=use_list
        )
        df.reset_state()
        chunks = [dps[i : i + batch_size] for i in range(0, len(dps), batch_size)]
        if not remainder and len(chunks[-1]) < batch_size:
            chunks.pop()
        expected = []
        for chunk in chunks:
            expected.append(old_batch(chunk, use_list))
            if isinstance(expected[-1], tuple) and isinstance(expected[-1][0], type):
                break  # an error ends the pass
        got = []
        it = iter(df)
        while True:
            try:
                got.append(next(it))
            except StopIteration:
                break
            except Exception as err:
                got.append((type(err), str(err)))
                break
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            if isinstance(e, tuple) and isinstance(e[0], type):
                assert g == e  # the same error
                continue
            items = g.items() if isinstance(g, dict) else enumerate(g)
            for key, value in items:
                assert type(value) is type(e[key]), key
                if isinstance(value, np.ndarray):
                    assert value.dtype == e[key].dtype and value.shape == e[key].shape, key
                    np.testing.assert_array_equal(value, e[key])
                else:
                    assert all(a is b for a, b in zip(value, e[key])), key  # the originals
        return got

    def test_list_datapoints(self):
        dps = [[i, big(i), big(i, (2,)), f"s{i}"] for i in range(10)]
        got = self.check(dps, 4, remainder=True)
        assert got[0][1].shape == (4, 64, 80) and got[0][1].dtype == np.float32
        assert got[2][1].shape == (2, 64, 80)  # the remainder is stacked the usual way

    def test_dict_datapoints_and_views(self):
        img = np.arange(64 * 96 * 3, dtype=np.uint8).reshape(64, 96, 3)
        dps = [{"img": img[:, ::-1] if i % 2 else img[8:, 16:], "y": i} for i in range(6)]
        self.check(dps, 3)  # views of two shapes in one batch: the usual error
        dps = [{"img": img[:, ::-1] if i % 2 else img, "y": i} for i in range(6)]
        got = self.check(dps, 3)
        assert not np.shares_memory(got[0]["img"], img)

    @pytest.mark.parametrize(
        "use_list", [True, [False, True], [True, False], {"a": True}, {"b": True}]
    )
    def test_use_list(self, use_list):
        if isinstance(use_list, dict):
            dps = [{"a": big(i), "b": big(-i)} for i in range(4)]
        else:
            dps = [[big(i), big(-i)] for i in range(4)]
        self.check(dps, 2, use_list=use_list)

    @pytest.mark.parametrize("at", [1, 3])
    def test_a_change_within_a_batch_stacks_it_the_usual_way(self, at):
        def dps(change):
            out = [[i, big(i)] for i in range(8)]
            out[at] = change(out[at])
            return out

        self.check(dps(lambda dp: [dp[0], big(1, dtype=np.float64)]), 4)  # promoted
        self.check(dps(lambda dp: [dp[0], big(1, (64, 81))]), 4)  # shape error
        self.check(dps(lambda dp: [dp[0], [1.0, 2.0]]), 4)  # another type
        self.check(dps(lambda dp: (dp[0], dp[1])), 4)  # a tuple among lists
        self.check(dps(lambda dp: [dp[0]]), 4)  # fewer components
        self.check(dps(lambda dp: {"a": dp[1]}), 4)  # a dict among lists
        self.check(dps(lambda dp: 7), 4)  # not a datapoint

    @pytest.mark.parametrize("large_first", [True, False])
    def test_batches_of_large_and_small_arrays_in_one_pass(self, large_first):
        shapes = [(64, 80), (2,)] if large_first else [(2,), (64, 80)]
        dps = [[big(i, shapes[i // 3 % 2]), i] for i in range(12)]
        got = self.check(dps, 3, remainder=True)
        assert [b[0].shape[1:] for b in got] == [shapes[0], shapes[1]] * 2

    def test_a_batch_does_not_view_its_datapoints(self):
        arrays = [big(i) for i in range(4)]
        df = BatchData(source([[a] for a in arrays]), 4)
        df.reset_state()
        (batch,) = list(df)
        assert not any(np.shares_memory(batch[0], a) for a in arrays)
        arrays[0][...] = 99
        assert batch[0][0, 0, 0] == 0


class TestBatchDataByShape:
    def dps(self, sizes):
        return [[np.full(n, k), k] for k, n in enumerate(sizes)]

    def test_rejects_bad_arguments(self):
        with pytest.raises(ValueError) as info:
            BatchDataByShape(source([[np.zeros(1)]]), 0, 0)
        assert str(info.value) == "batch_size must be a positive int, got 0"
        with pytest.raises(TypeError) as info:
            BatchDataByShape(source([[np.zeros(1)]]), 1, [0])
        assert str(info.value) == (
            "idx must be an int (list datapoints) or a hashable key (dict datapoints), got [0]"
        )

    def test_keeps_the_dataflow_contract(self):
        out = check_dataflow(
            lambda: BatchDataByShape(DataFromList(self.dps([2, 3] * 10), seed=0), 4, 0)
        )
        assert len(out) == 4

    def test_groups_by_shape_and_yields_each_group_as_it_fills(self):
        df = BatchDataByShape(source(self.dps([2, 3, 3, 2, 2, 4, 3])), 2, 0)
        df.reset_state()
        out = [(arrays.shape, ids.tolist()) for arrays, ids in df]
        assert out == [((2, 3), [1, 2]), ((2, 2), [0, 3])]

    def test_drops_incomplete_groups_at_the_end_of_a_pass(self):
        df = BatchDataByShape(source(self.dps([2, 3, 2])), 2, 0)
        df.reset_state()
        # The 3-long datapoint never fills a batch, in this pass or the next.
        assert [ids.tolist() for _, ids in df] == [[0, 2]]
        assert [ids.tolist() for _, ids in df] == [[0, 2]]

    def test_groups_dict_datapoints_by_key(self):
        dps = [{"x": np.zeros(n), "n": n} for n in (1, 2, 1, 2)]
        df = BatchDataByShape(source(dps), 2, "x")
        df.reset_state()
        assert [b["n"].tolist() for b in df] == [[1, 1], [2, 2]]

    def test_length_is_unknown(self):
        with pytest.raises(UnknownLengthError) as info:
            len(BatchDataByShape(source(self.dps([2, 2])), 2, 0))
        assert str(info.value) == (
            "BatchDataByShape does not know how many batches one pass yields: that depends on "
            "how many datapoints of each shape the pass has"
        )

    def test_reset_state_refuses_a_ds_too_short_for_one_batch(self):
        with pytest.raises(ValueError, match="^BatchDataByShape: len.ds. is 1, less than"):
            BatchDataByShape(source(self.dps([2])), 2, 0).reset_state()

    @pytest.mark.parametrize(
        "dp, idx, error, message",
        [
            (
                [[1, 2], 0],
                0,
                TypeError,
                "BatchDataByShape: component 0 must be a numpy array, got list",
            ),
            (
                [np.zeros(2)],
                1,
                KeyError,
                "BatchDataByShape: idx=1 is not a component of the "
                "datapoint (list of 1 components)",
            ),
            (
                {"x": np.zeros(2)},
                "y",
                KeyError,
                "BatchDataByShape: idx='y' is not a component "
                "of the datapoint (dict of 1 components)",
            ),
            (7, 0, TypeError, "BatchDataByShape needs list or dict datapoints, got int"),
        ],
    )
    def test_a_bad_component_is_a_clear_error(self, dp, idx, error, message):
        df = BatchDataByShape(DataFromGenerator(lambda: iter([dp, dp])), 2, idx)
        df.reset_state()
        with pytest.raises(error) as info:
            list(df)
        assert info.value.args[0] == message

    @settings(max_examples=60, deadline=None)
    @given(sizes=st.lists(st.integers(0, 3), max_size=40), batch_size=st.integers(1, 5))
    def test_each_full_group_is_yielded_once_with_one_shape(self, sizes, batch_size):
        df = BatchDataByShape(DataFromGenerator(lambda: iter(self.dps(sizes))), batch_size, 0)
        df.reset_state()
        seen = []
        for arrays, ids in df:
            assert arrays.shape[0] == batch_size
            assert {sizes[k] for k in ids.tolist()} == {arrays.shape[1]}
            seen.extend(ids.tolist())
        assert len(seen) == len(set(seen))
        expected = Counter({n: c // batch_size * batch_size for n, c in Counter(sizes).items()})
        assert +Counter(sizes[k] for k in seen) == +expected


class TestUnbatch:
    def test_splits_a_list_batch_into_list_datapoints(self):
        out = unbatch([np.array([1, 2, 3]), np.zeros((3, 2)), ["a", "b", "c"]])
        assert [[int(i), a.shape, s] for i, a, s in out] == [
            [1, (2,), "a"],
            [2, (2,), "b"],
            [3, (2,), "c"],
        ]

    def test_splits_a_dict_batch_into_dict_datapoints(self):
        assert unbatch({"x": [1, 2], "y": ("a", "b")}) == [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}]

    def test_undoes_batch_data(self):
        dps = [[i, np.full(2, i), str(i)] for i in range(5)]
        assert all(map(same_datapoint, dps, unbatch(BatchData.aggregate_batch(dps))))

    def test_an_empty_batch_has_no_datapoints(self):
        assert unbatch([]) == [] and unbatch({}) == []

    def test_components_of_different_lengths_are_an_error(self):
        with pytest.raises(ValueError) as info:
            unbatch({"x": [1, 2], "y": [1]})
        assert str(info.value) == (
            "unbatch: the components of the batch have different lengths: {'x': 2, 'y': 1}"
        )

    def test_rejects_what_is_not_a_list_or_dict(self):
        with pytest.raises(TypeError) as info:
            unbatch(np.zeros(3))
        assert str(info.value) == "unbatch needs a list or dict batch, got ndarray"

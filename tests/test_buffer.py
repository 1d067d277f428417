"""Tests of dataflow.buffer: LocallyShuffleData and CacheData."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflow import (
    CacheData,
    DataFlow,
    DataFromList,
    LocallyShuffleData,
    ReentrancyError,
    UnknownLengthError,
    check_dataflow,
)


class Counting(DataFlow):
    """0, 1, ..., n-1 in order, counting resets, passes started and datapoints read."""

    def __init__(self, n, *, has_len=True, fail_at=None):
        self.n = n
        self.has_len = has_len
        self.fail_at = fail_at
        self.resets = self.passes = self.reads = 0

    def reset_state(self):
        self.resets += 1

    def __iter__(self):
        self.passes += 1
        for i in range(self.n):
            if i == self.fail_at:
                raise OSError("disk read failed")
            self.reads += 1
            yield [i]

    def __len__(self):
        if not self.has_len:
            return super().__len__()
        return self.n


class Endless(DataFlow):
    def __iter__(self):
        i = 0
        while True:
            yield [i]
            i += 1


def values(df):
    return [dp[0] for dp in df]


def source(n):
    return DataFromList([[i] for i in range(n)], shuffle=False)


class TestLocallyShuffleData:
    @pytest.mark.parametrize(
        "kwargs, error, message",
        [
            ({"buffer_size": 0}, ValueError, "buffer_size must be a positive int, got 0"),
            ({"buffer_size": 2.5}, TypeError, "buffer_size must be a positive int, got 2.5"),
            ({"buffer_size": True}, TypeError, "buffer_size must be a positive int, got True"),
            ({"num_reuse": 0}, ValueError, "num_reuse must be a positive int, got 0"),
            (
                {"shuffle_interval": 0},
                ValueError,
                "shuffle_interval must be None or a positive int, got 0",
            ),
            (
                {"shuffle_interval": "3"},
                TypeError,
                "shuffle_interval must be None or a positive int, got '3'",
            ),
            ({"seed": -1}, ValueError, "seed must be None or a non-negative int, got -1"),
        ],
    )
    def test_rejects_bad_arguments(self, kwargs, error, message):
        kwargs = {"buffer_size": 4, **kwargs}
        with pytest.raises(error) as info:
            LocallyShuffleData(source(3), **kwargs)
        assert str(info.value) == message

    def test_rejects_a_ds_that_is_not_a_dataflow(self):
        with pytest.raises(TypeError, match="ds must be a DataFlow, got list"):
            LocallyShuffleData([[1], [2]], 4)

    @pytest.mark.parametrize("num_reuse", [1, 3])
    def test_keeps_the_dataflow_contract(self, num_reuse):
        out = check_dataflow(lambda: LocallyShuffleData(source(40), 8, num_reuse, seed=0))
        assert len(out) == 40 * num_reuse

    def test_keeps_the_contract_when_the_length_of_ds_is_unknown(self):
        check_dataflow(lambda: LocallyShuffleData(Counting(30, has_len=False), 8, seed=0))

    def test_keeps_the_contract_on_an_endless_ds(self):
        check_dataflow(lambda: LocallyShuffleData(Endless(), 16, seed=0), infinite=True)

    @settings(max_examples=60, deadline=None)
    @given(
        n=st.integers(0, 60),
        buffer_size=st.integers(1, 20),
        num_reuse=st.integers(1, 3),
        seed=st.integers(0, 2**32),
    )
    def test_every_pass_yields_each_datapoint_exactly_num_reuse_times(
        self, n, buffer_size, num_reuse, seed
    ):
        ds = Counting(n)
        df = LocallyShuffleData(ds, buffer_size, num_reuse, seed=seed)
        df.reset_state()
        expected = Counter({i: num_reuse for i in range(n)})
        for passes in (1, 2):
            out = values(df)
            assert Counter(out) == expected
            assert len(out) == len(df) == n * num_reuse
            assert ds.passes == passes and ds.reads == passes * n  # one pass of ds per pass

    def test_shuffles_within_a_pass_and_anew_every_pass(self):
        df = LocallyShuffleData(source(100), 10, seed=0)
        df.reset_state()
        first, second = values(df), values(df)
        assert first != list(range(100))
        assert second != first
        assert sorted(first) == sorted(second) == list(range(100))

    def test_the_same_seed_gives_the_same_passes(self):
        def passes(seed):
            df = LocallyShuffleData(source(50), 8, num_reuse=2, seed=seed)
            df.reset_state()
            return values(df), values(df)

        assert passes(3) == passes(3)
        assert passes(3) != passes(4)

    def test_without_a_seed_each_reset_shuffles_differently(self):
        df = LocallyShuffleData(source(50), 8)
        df.reset_state()
        first = values(df)
        df.reset_state()
        assert values(df) != first

    def test_reset_state_resets_ds_and_creates_the_rng(self):
        ds = Counting(5)
        df = LocallyShuffleData(ds, 2)
        with pytest.raises(RuntimeError, match="before reset_state"):
            df.rng  # noqa: B018
        df.reset_state()
        assert ds.resets == 1
        assert df.rng is not None

    def test_shuffle_interval_has_no_effect(self):
        def first_pass(shuffle_interval):
            df = LocallyShuffleData(source(30), 8, shuffle_interval=shuffle_interval, seed=1)
            df.reset_state()
            return values(df)

        assert first_pass(None) == first_pass(2) == first_pass(1000)

    def test_reads_ds_no_further_ahead_than_the_buffer(self):
        ds = Counting(100)
        df = LocallyShuffleData(ds, 10, seed=0)
        df.reset_state()
        for k, _ in enumerate(df):
            if k < 90:  # before the final drain
                assert ds.reads <= k + 10 + 1

    def test_never_yields_a_datapoint_buffer_size_or_more_positions_early(self):
        df = LocallyShuffleData(source(200), 10, seed=0)
        df.reset_state()
        for _ in range(3):
            assert all(k > i - 10 for k, i in enumerate(values(df)))

    def test_every_buffer_slot_can_come_out_first(self):
        firsts = set()
        for seed in range(200):
            df = LocallyShuffleData(source(30), 5, seed=seed)
            df.reset_state()
            firsts.add(next(iter(df))[0])
        assert firsts == set(range(5))

    def test_a_ds_shorter_than_the_buffer_is_shuffled_whole(self):
        df = LocallyShuffleData(source(8), 100, seed=0)
        df.reset_state()
        out = values(df)
        assert sorted(out) == list(range(8)) and out != list(range(8))

    def test_len_is_unknown_when_the_length_of_ds_is(self):
        df = LocallyShuffleData(Counting(5, has_len=False), 2)
        with pytest.raises(UnknownLengthError):
            len(df)


class TestCacheData:
    @pytest.mark.parametrize(
        "kwargs, error, message",
        [
            ({"shuffle": "yes"}, TypeError, "shuffle must be a bool, got 'yes'"),
            ({"seed": 1.5}, TypeError, "seed must be None or a non-negative int, got 1.5"),
        ],
    )
    def test_rejects_bad_arguments(self, kwargs, error, message):
        with pytest.raises(error) as info:
            CacheData(source(3), **kwargs)
        assert str(info.value) == message

    @pytest.mark.parametrize("shuffle", [False, True])
    def test_keeps_the_dataflow_contract(self, shuffle):
        out = check_dataflow(lambda: CacheData(source(20), shuffle, seed=0))
        assert values(out) == list(range(20))  # the first pass is in the order of ds

    def test_reads_ds_only_once_across_passes(self):
        ds = Counting(10)
        df = CacheData(ds)
        df.reset_state()
        passes = [values(df) for _ in range(4)]
        assert passes == [list(range(10))] * 4
        assert ds.passes == 1 and ds.reads == 10

    def test_replays_the_same_objects(self):
        df = CacheData(source(3))
        df.reset_state()
        assert all(a is b for a, b in zip(list(df), list(df)))

    def test_shuffle_draws_a_new_order_every_pass_after_the_first(self):
        ds = Counting(50)
        df = CacheData(ds, shuffle=True, seed=0)
        df.reset_state()
        first, second, third = values(df), values(df), values(df)
        assert first == list(range(50))
        assert second != first and third != second
        assert sorted(second) == sorted(third) == first
        assert ds.passes == 1

    def test_the_same_seed_gives_the_same_passes(self):
        def passes(seed):
            df = CacheData(source(30), shuffle=True, seed=seed)
            df.reset_state()
            return [values(df) for _ in range(3)]

        assert passes(5) == passes(5)
        assert passes(5) != passes(6)

    def test_an_abandoned_first_pass_is_not_cached(self):
        ds = Counting(10)
        df = CacheData(ds)
        df.reset_state()
        it = iter(df)
        assert [next(it)[0] for _ in range(3)] == [0, 1, 2]
        it.close()
        assert values(df) == list(range(10))  # read again, in full
        assert ds.passes == 2
        assert values(df) == list(range(10))
        assert ds.passes == 2

    def test_a_failed_first_pass_is_not_cached(self):
        ds = Counting(10, fail_at=5)
        df = CacheData(ds)
        df.reset_state()
        with pytest.raises(OSError, match="disk read failed"):
            list(df)
        ds.fail_at = None
        assert values(df) == list(range(10))
        assert values(df) == list(range(10))
        assert ds.passes == 2

    def test_len_is_that_of_ds_until_cached_then_that_of_the_cache(self):
        df = CacheData(Counting(6, has_len=False))
        df.reset_state()
        with pytest.raises(UnknownLengthError):
            len(df)
        list(df)
        assert len(df) == 6

    def test_filling_the_cache_from_two_loops_at_once_is_an_error(self):
        df = CacheData(source(5))
        df.reset_state()
        outer = iter(df)
        next(outer)
        with pytest.raises(ReentrancyError, match="CacheData"):
            next(iter(df))
        assert [dp[0] for dp in outer] == [1, 2, 3, 4]
        # once cached, passes may overlap
        assert [(a[0], b[0]) for a, b in zip(df, df)] == [(i, i) for i in range(5)]

    def test_reset_state_resets_ds_and_keeps_the_cache(self):
        ds = Counting(4)
        df = CacheData(ds)
        df.reset_state()
        list(df)
        df.reset_state()
        assert ds.resets == 2
        assert values(df) == list(range(4))
        assert ds.passes == 1

"""Tests of dataflow.combine: ConcatData, JoinData, RandomChooseData, RandomMixData."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflow import (
    ConcatData,
    DataFlow,
    DataFromGenerator,
    DataFromList,
    JoinData,
    RandomChooseData,
    RandomMixData,
    UnknownLengthError,
    check_dataflow,
)


class Counting(DataFlow):
    """[start], [start+1], ... (n of them); counts resets and closes.

    *has_len* False hides the length; *claimed_len* makes len() lie.
    """

    def __init__(self, n, start=0, *, has_len=True, claimed_len=None, close_error=None):
        self.n, self.start = n, start
        self.has_len, self.claimed_len = has_len, claimed_len
        self.close_error = close_error
        self.resets = self.closes = 0

    def reset_state(self):
        self.resets += 1

    def close(self):
        self.closes += 1
        if self.close_error is not None:
            raise self.close_error

    def __iter__(self):
        for i in range(self.start, self.start + self.n):
            yield [i]

    def __len__(self):
        if not self.has_len:
            return super().__len__()
        return self.n if self.claimed_len is None else self.claimed_len


class Endless(DataFlow):
    def __init__(self, value):
        self.value = value

    def __iter__(self):
        while True:
            yield [self.value]


def values(df):
    return [dp[0] for dp in df]


def ready(df):
    df.reset_state()
    return df


def message_of(error, fn, *args, **kwargs):
    with pytest.raises(error) as info:
        fn(*args, **kwargs)
    return str(info.value)


@pytest.mark.parametrize("cls", [ConcatData, JoinData, RandomChooseData, RandomMixData])
class TestArgumentChecks:
    """The df_lists checks all four share."""

    def test_rejects_a_df_lists_that_is_not_a_list(self, cls):
        assert message_of(TypeError, cls, "abc") == (
            "df_lists must be a non-empty list of DataFlows, got 'abc'"
        )

    def test_rejects_an_empty_df_lists(self, cls):
        assert message_of(ValueError, cls, []) == (
            "df_lists must be a non-empty list of DataFlows, got []"
        )

    def test_rejects_an_element_that_is_not_a_dataflow(self, cls):
        assert message_of(TypeError, cls, [Counting(1), "abc"]) == (
            "df_lists[1] must be a DataFlow, got 'abc'"
        )


class TestConcatData:
    def test_keeps_the_dataflow_contract(self):
        out = check_dataflow(lambda: ConcatData([Counting(3), Counting(0), Counting(2, 10)]))
        assert values(out) == [0, 1, 2, 10, 11]

    def test_yields_each_dataflow_in_turn(self):
        df = ready(ConcatData([Counting(2), Counting(3, 10)]))
        assert values(df) == [0, 1, 10, 11, 12]
        assert len(df) == 5

    def test_length_is_unknown_if_any_is(self):
        df = ConcatData([Counting(2), Counting(3, has_len=False)])
        with pytest.raises(UnknownLengthError):
            len(df)
        check_dataflow(lambda: ConcatData([Counting(2), Counting(3, has_len=False)]))

    def test_reset_state_and_close_reach_each_dataflow_once(self):
        a, b = Counting(2), Counting(3)
        df = ready(ConcatData([a, b, a]))
        assert values(df) == [0, 1, 0, 1, 2, 0, 1]
        df.close()
        assert (a.resets, a.closes, b.resets, b.closes) == (1, 1, 1, 1)

    def test_close_closes_all_even_if_one_raises(self):
        a, b = Counting(1, close_error=OSError("a")), Counting(1)
        df = ready(ConcatData([a, b]))
        with pytest.raises(OSError, match="^a$"):
            df.close()
        assert a.closes == b.closes == 1

    @settings(max_examples=40, deadline=None)
    @given(sizes=st.lists(st.integers(0, 10), min_size=1, max_size=5))
    def test_len_equals_the_count_of_one_pass(self, sizes):
        df = ready(ConcatData([Counting(n) for n in sizes]))
        assert len(df) == len(list(df)) == sum(sizes)


class TestJoinData:
    def test_keeps_the_dataflow_contract(self):
        out = check_dataflow(lambda: JoinData([Counting(4), Counting(4, 10)]))
        assert out == [[i, i + 10] for i in range(4)]

    def test_keeps_the_contract_without_strict(self):
        out = check_dataflow(lambda: JoinData([Counting(4), Counting(2, 10)], strict=False))
        assert out == [[0, 10], [1, 11]]

    def test_concatenates_list_datapoints(self):
        a = DataFromList([[1, 2], [3, 4]], shuffle=False)
        b = DataFromGenerator(lambda: iter([("x",), ("y",)]))
        assert list(ready(JoinData([a, b]))) == [[1, 2, "x"], [3, 4, "y"]]

    def test_merges_dict_datapoints(self):
        a = DataFromList([{"a": 1}, {"a": 2}], shuffle=False)
        b = DataFromList([{"b": 3, "c": 4}, {"b": 5, "c": 6}], shuffle=False)
        assert list(ready(JoinData([a, b]))) == [
            {"a": 1, "b": 3, "c": 4},
            {"a": 2, "b": 5, "c": 6},
        ]

    def test_a_key_in_two_dataflows_is_an_error(self):
        a = DataFromList([{"a": 1, "x": 0}], shuffle=False)
        b = DataFromList([{"b": 3}], shuffle=False)
        c = DataFromList([{"x": 4}], shuffle=False)
        assert message_of(ValueError, list, ready(JoinData([a, b, c]))) == (
            "JoinData: key 'x' is in the datapoints of both df_lists[0] (DataFromList) and "
            "df_lists[2] (DataFromList); rename it in one of them (e.g. with MapData)"
        )

    def test_mixing_list_and_dict_datapoints_is_an_error(self):
        a = DataFromList([[1]], shuffle=False)
        b = DataFromList([{"b": 3}], shuffle=False)
        assert message_of(TypeError, list, ready(JoinData([a, b]))) == (
            "JoinData cannot join list datapoints with dict datapoints; got df_lists[0] "
            "(DataFromList) a list, df_lists[1] (DataFromList) a dict: make them all lists or "
            "all dicts"
        )
        assert "cannot join list datapoints with dict" in message_of(
            TypeError, list, ready(JoinData([b, a]))
        )

    def test_a_datapoint_that_is_not_a_list_or_dict_is_named(self):
        a = DataFromList([[1]], shuffle=False)
        b = DataFromGenerator(lambda: iter([7]), size=1)
        assert message_of(TypeError, list, ready(JoinData([a, b]))) == (
            "JoinData needs list or dict datapoints, got int from df_lists[1] (DataFromGenerator)"
        )

    def test_strict_reset_state_refuses_known_lengths_that_differ(self):
        df = JoinData([Counting(3), Counting(3, has_len=False), Counting(4)])
        assert message_of(ValueError, df.reset_state) == (
            "JoinData: the dataflows have different lengths [3, None, 4] (None: unknown); "
            "join dataflows of equal length, or pass strict=False to stop at the shortest"
        )
        assert message_of(ValueError, len, df).startswith("JoinData: the dataflows have different")

    @pytest.mark.parametrize(
        "sizes, message",
        [
            (
                [3, 2],
                "JoinData: df_lists[1] (Counting) ended after 2 datapoints but df_lists[0] "
                "(Counting) had more",
            ),
            (
                [2, 2, 3],
                "JoinData: df_lists[0] (Counting) ended after 2 datapoints but df_lists[2] "
                "(Counting) had more",
            ),
            (
                [0, 1],
                "JoinData: df_lists[0] (Counting) ended after 0 datapoints but df_lists[1] "
                "(Counting) had more",
            ),
        ],
    )
    def test_strict_pass_fails_when_one_dataflow_ends_first(self, sizes, message):
        df = ready(JoinData([Counting(n, has_len=False) for n in sizes]))
        it = iter(df)
        got = []
        with pytest.raises(RuntimeError) as info:
            for dp in it:
                got.append(dp)
        assert len(got) == min(sizes)
        assert str(info.value) == (
            f"{message}; join dataflows of equal length, or pass strict=False to stop at the "
            "shortest"
        )

    def test_strict_length_is_the_common_known_length(self):
        df = ready(JoinData([Counting(3, has_len=False), Counting(3)]))
        assert len(df) == len(list(df)) == 3
        with pytest.raises(UnknownLengthError) as info:
            len(JoinData([Counting(3, has_len=False)]))
        assert str(info.value) == "JoinData: none of the joined dataflows knows its length"

    def test_without_strict_stops_at_the_shortest(self):
        df = ready(JoinData([Counting(5), Counting(3, 10), Counting(4, 20)], strict=False))
        assert list(df) == [[0, 10, 20], [1, 11, 21], [2, 12, 22]]
        assert len(df) == 3
        with pytest.raises(UnknownLengthError, match="^JoinData with strict=False stops at"):
            len(JoinData([Counting(5), Counting(3, has_len=False)], strict=False))

    def test_rejects_a_non_bool_strict(self):
        assert message_of(TypeError, JoinData, [Counting(1)], strict=None) == (
            "strict must be a bool, got None"
        )

    def test_reset_state_and_close_reach_each_dataflow_once(self):
        a, b = Counting(2), Counting(2, 10)
        df = ready(JoinData([a, b, a]))
        assert list(df) == [[0, 10, 0], [1, 11, 1]]
        df.close()
        assert (a.resets, a.closes, b.resets, b.closes) == (1, 1, 1, 1)

    @settings(max_examples=40, deadline=None)
    @given(sizes=st.lists(st.integers(0, 10), min_size=1, max_size=4))
    def test_len_equals_the_count_of_one_pass_without_strict(self, sizes):
        df = ready(JoinData([Counting(n, 100 * k) for k, n in enumerate(sizes)], strict=False))
        out = list(df)
        assert len(df) == len(out) == min(sizes)
        assert out == [[i + 100 * k for k in range(len(sizes))] for i in range(min(sizes))]


class TestRandomChooseData:
    def test_keeps_the_dataflow_contract_on_endless_dataflows(self):
        out = check_dataflow(
            lambda: RandomChooseData([Endless("a"), Endless("b")], seed=0),
            infinite=True,
            max_datapoints=200,
        )
        assert set(values(out)) == {"a", "b"}

    def test_keeps_the_dataflow_contract_with_one_dataflow(self):
        assert values(check_dataflow(lambda: RandomChooseData([Counting(5)]))) == list(range(5))

    def test_stops_when_the_chosen_dataflow_has_ended(self):
        df = ready(RandomChooseData([Counting(3), Endless("x")], seed=1))
        for _ in range(5):
            out = values(df)
            assert [v for v in out if v != "x"] == [0, 1, 2]  # Counting ended; the pass stopped

    def test_follows_the_probabilities(self):
        df = ready(RandomChooseData([(Endless("a"), 0.8), (Endless("b"), 0.2)], seed=0))
        counts = Counter(dp[0] for _, dp in zip(range(5000), df))
        assert 0.75 < counts["a"] / 5000 < 0.85

    def test_the_same_seed_gives_the_same_choices(self):
        def passes(seed):
            df = ready(RandomChooseData([Counting(20), Counting(20, 100)], seed=seed))
            return values(df), values(df)

        assert passes(4) == passes(4)
        assert passes(4) != passes(5)

    def test_length_is_unknown(self):
        assert message_of(UnknownLengthError, len, RandomChooseData([Counting(3)])) == (
            "RandomChooseData stops when the dataflow it picks has ended, so the length of a "
            "pass is random"
        )

    @pytest.mark.parametrize(
        "probs", [[0.5, 0.6], [1.0, 0.0], [1.5, -0.5], ["1", 0], [True, False], [float("nan"), 1]]
    )
    def test_rejects_bad_probabilities(self, probs):
        pairs = [(Counting(1), p) for p in probs]
        assert message_of(ValueError, RandomChooseData, pairs) == (
            f"probabilities must be positive and sum to 1, got {probs!r}"
        )

    def test_rejects_pairs_that_are_not_pairs(self):
        singles = [(Counting(1),), (Counting(1),)]
        assert message_of(TypeError, RandomChooseData, singles) == (
            f"df_lists must hold only DataFlows or only (DataFlow, probability) pairs, got "
            f"{singles!r}"
        )

    def test_rejects_a_mix_of_dataflows_and_pairs(self):
        with pytest.raises(TypeError, match="^df_lists must hold only DataFlows or only"):
            RandomChooseData([Counting(1), (Counting(1), 1.0)])

    def test_accepts_probabilities_within_rounding_of_one(self):
        pairs = [(Endless(k), p) for k, p in enumerate([1 / 3, 1 / 3, 0.3333334])]
        df = ready(RandomChooseData(pairs, seed=0))
        assert abs(sum(df.probs) - 1) < 1e-12
        assert set(dp[0] for _, dp in zip(range(100), df)) == {0, 1, 2}

    def test_rejects_a_bad_seed(self):
        assert message_of(ValueError, RandomChooseData, [Counting(1)], seed=-1) == (
            "seed must be None or a non-negative int, got -1"
        )


class TestRandomMixData:
    def test_keeps_the_dataflow_contract(self):
        out = check_dataflow(lambda: RandomMixData([Counting(5), Counting(7, 100)], seed=0))
        assert sorted(values(out)) == list(range(5)) + list(range(100, 107))

    @settings(max_examples=60, deadline=None)
    @given(
        sizes=st.lists(st.integers(0, 20), min_size=1, max_size=5),
        seed=st.integers(0, 2**32),
    )
    def test_yields_the_union_exactly_once_keeping_each_order(self, sizes, seed):
        df = ready(RandomMixData([Counting(n, 100 * k) for k, n in enumerate(sizes)], seed=seed))
        for _ in range(2):
            out = values(df)
            assert len(df) == len(out) == sum(sizes)
            expected = [i + 100 * k for k, n in enumerate(sizes) for i in range(n)]
            assert Counter(out) == Counter(expected)
            for k, n in enumerate(sizes):
                assert [v for v in out if v // 100 == k] == list(range(100 * k, 100 * k + n))

    def test_interleaves_in_proportion_to_the_sizes(self):
        df = ready(RandomMixData([Counting(300), Counting(900, 1000)], seed=0))
        first_half = values(df)[:600]
        assert 100 < sum(v < 1000 for v in first_half) < 200  # about 150 expected

    def test_the_same_seed_gives_the_same_order(self):
        def passes(seed):
            df = ready(RandomMixData([Counting(20), Counting(20, 100)], seed=seed))
            return values(df), values(df)

        first = passes(8)
        assert first == passes(8)
        assert first[0] != first[1]  # a new interleaving every pass
        assert first != passes(9)

    def test_requires_known_lengths(self):
        message = message_of(ValueError, RandomMixData, [Counting(2), Counting(2, has_len=False)])
        assert message.startswith(
            "RandomMixData needs the length of every dataflow, but df_lists[1] (Counting) does "
            "not know its length: "
        )

    def test_a_dataflow_shorter_than_its_len_fails_the_pass(self):
        df = ready(RandomMixData([Counting(3), Counting(2, 100, claimed_len=4)], seed=0))
        assert message_of(RuntimeError, list, df) == (
            "RandomMixData: df_lists[1] (Counting) ended after 2 datapoints but its len() is 4; "
            "RandomMixData needs exact lengths"
        )

    def test_a_dataflow_longer_than_its_len_fails_the_pass(self):
        df = ready(RandomMixData([Counting(3), Counting(5, 100, claimed_len=4)], seed=0))
        assert message_of(RuntimeError, list, df) == (
            "RandomMixData: df_lists[1] (Counting) yielded more datapoints than its len() of 4; "
            "RandomMixData needs exact lengths"
        )

    def test_reset_state_and_close_reach_each_dataflow(self):
        a, b = Counting(2), Counting(2)
        df = ready(RandomMixData([a, b]))
        df.close()
        assert (a.resets, a.closes, b.resets, b.closes) == (1, 1, 1, 1)

"""Tests of dataflow.sources: lists, generators, iterables, queues and fake data."""

from __future__ import annotations

import itertools
import pickle
import queue
import threading
from collections import OrderedDict, deque

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflow import (
    DataFromGenerator,
    DataFromIterable,
    DataFromList,
    DataFromQueue,
    FakeData,
    ReentrancyError,
    RepeatedData,
    UnknownLengthError,
    WorkerInfo,
    check_dataflow,
)
from dataflow._worker_state import begin_pass, worker_context


def one_pass(df):
    return [dp[0] for dp in df]


def block(i, num_workers, n):
    """The datapoints ``[k]`` that worker *i* of *num_workers* reads of ``[0] .. [n-1]``."""
    return list(range(i * n // num_workers, (i + 1) * n // num_workers))


def passes_as_workers(make, num_workers, shared_seed=None, num_passes=1):
    """``(len before reset, len after, pass 1, pass 2, ...)`` of a fresh *make()*
    as each worker of *num_workers* with ``sharded=True``."""
    out = []
    for i in range(num_workers):
        with worker_context(WorkerInfo(i, num_workers, sharded=True, shared_seed=shared_seed)):
            df = make()
            before = len(df)
            df.reset_state()
            out.append((before, len(df), *(one_pass(df) for _ in range(num_passes))))
    return out


def assert_reads_blocks(make, n, num_workers):
    """Worker *i* reads ``block(i, num_workers, n)`` in order, ``len()`` counts
    it, and the blocks together are every datapoint once, sizes differing by
    at most one."""
    shards = passes_as_workers(make, num_workers)
    for i, (before, after, got) in enumerate(shards):
        expected = block(i, num_workers, n)
        assert before == after == len(got) == len(expected)
        assert got == expected
    assert sorted(itertools.chain(*(got for _, _, got in shards))) == list(range(n))


def assert_reads_parts(shards, n, num_workers):
    """*shards* (from :func:`passes_as_workers`) are parts of ``range(n)`` as
    large as the blocks, ``len()`` counts them, and together they hold every
    datapoint once, in every pass."""
    for i, (before, after, *passes) in enumerate(shards):
        assert all(before == after == len(got) == len(block(i, num_workers, n)) for got in passes)
    for k in range(len(shards[0]) - 2):
        assert sorted(itertools.chain(*(shard[2 + k] for shard in shards))) == list(range(n))


class TestDataFromList:
    def test_unshuffled_yields_the_list_in_order(self):
        lst = [[i, str(i)] for i in range(5)]
        assert check_dataflow(lambda: DataFromList(lst, shuffle=False)) == lst

    def test_shuffled_keeps_the_contract(self):
        check_dataflow(lambda: DataFromList([[i] for i in range(20)]))

    def test_each_pass_is_a_new_permutation(self):
        df = DataFromList([[i] for i in range(50)], seed=0)
        df.reset_state()
        passes = [one_pass(df) for _ in range(3)]
        assert all(sorted(p) == list(range(50)) for p in passes)
        assert passes[0] != passes[1] != passes[2]

    def test_same_seed_gives_the_same_orders(self):
        lst = [[i] for i in range(30)]
        a, b = DataFromList(lst, seed=5), DataFromList(lst, seed=5)
        a.reset_state()
        b.reset_state()
        assert [one_pass(a) for _ in range(3)] == [one_pass(b) for _ in range(3)]

    def test_different_or_no_seeds_give_different_orders(self):
        dfs = [DataFromList([[i] for i in range(30)], seed=s) for s in (1, 2, None, None)]
        for df in dfs:
            df.reset_state()
        orders = [tuple(one_pass(df)) for df in dfs]
        assert len(set(orders)) == 4

    def test_yields_the_datapoints_themselves(self):
        lst = [[1], {"a": 2}]
        df = DataFromList(lst, shuffle=False)
        df.reset_state()
        assert all(out is dp for out, dp in zip(df, lst))

    def test_unshuffled_pass_is_the_list_iterator_and_an_end_marker(self):
        # C iterators only (no generator per datapoint); the marker tells state_dict()
        # that the pass has ended.
        df = DataFromList([[1], [2]], shuffle=False)
        it = iter(df)
        assert type(it) is itertools.chain
        assert type(df._live[2]) is type(iter([]))

    def test_accepts_a_tuple_of_datapoints_and_dict_subclasses(self):
        lst = ([1], OrderedDict(x=2))
        assert check_dataflow(lambda: DataFromList(lst, shuffle=False)) == list(lst)

    def test_empty_list_is_an_empty_pass(self):
        assert check_dataflow(lambda: DataFromList([])) == []

    def test_shuffling_before_reset_state_is_a_clear_error(self):
        with pytest.raises(RuntimeError, match=r"DataFromList.rng does not exist before reset"):
            iter(DataFromList([[1]]))

    def test_rejects_a_non_sequence(self):
        with pytest.raises(
            TypeError, match=r"^lst must be a list or tuple of datapoints, got dict$"
        ):
            DataFromList({"a": [1]})

    @pytest.mark.parametrize(
        "lst,message",
        [
            ([[0], [1], [2], 3], r"^lst\[3\] must be a list or dict datapoint, got int$"),
            (
                [(0, 1)],
                r"^lst\[0\] must be a list or dict datapoint, got tuple; convert with "
                r"\[list\(dp\) for dp in lst\]$",
            ),
            ([[0], np.zeros(2)], r"^lst\[1\] must be a list or dict datapoint, got ndarray$"),
        ],
    )
    def test_rejects_a_datapoint_that_is_not_a_list_or_dict(self, lst, message):
        with pytest.raises(TypeError, match=message):
            DataFromList(lst)

    def test_rejects_a_non_bool_shuffle(self):
        with pytest.raises(TypeError, match=r"^shuffle must be a bool, got 'yes'$"):
            DataFromList([[1]], shuffle="yes")

    def test_rejects_a_bad_seed(self):
        with pytest.raises(ValueError, match=r"^seed must be None or a non-negative int, got -1$"):
            DataFromList([[1]], seed=-1)

    def test_tensorpack_get_data_and_size(self):
        df = DataFromList([[1], [2]], shuffle=False)
        df.reset_state()
        assert list(df.get_data()) == [[1], [2]]
        assert df.size() == 2

    def test_picklable_before_reset_with_the_same_orders(self):
        df = DataFromList([[i] for i in range(20)], seed=3)
        copy = pickle.loads(pickle.dumps(df))
        df.reset_state()
        copy.reset_state()
        assert one_pass(df) == one_pass(copy)

    @given(n=st.integers(0, 60), shuffle=st.booleans())
    def test_len_equals_a_pass_which_is_a_permutation(self, n, shuffle):
        df = DataFromList([[i] for i in range(n)], shuffle=shuffle)
        df.reset_state()
        out = one_pass(df)
        assert len(df) == len(out) == n
        assert sorted(out) == list(range(n))

    def test_seeded_shuffles_are_numpys_permutations_of_the_seeded_stream(self):
        # Pinned: outside exactly-once workers, pass k is the k-th rng.permutation(n).
        rng = np.random.RandomState(np.random.SeedSequence(4).generate_state(4))
        expected = [rng.permutation(12).tolist() for _ in range(3)]
        df = DataFromList([[i] for i in range(12)], seed=4)
        df.reset_state()
        assert [one_pass(df) for _ in range(3)] == expected
        with worker_context(WorkerInfo(0, 1, sharded=True, shared_seed=9)):
            df.reset_state()
            assert [one_pass(df) for _ in range(3)] == expected

    @given(n=st.integers(0, 40), num_workers=st.integers(1, 6))
    def test_unshuffled_each_worker_reads_its_contiguous_block_when_sharded(self, n, num_workers):
        lst = [[i] for i in range(n)]
        assert_reads_blocks(lambda: DataFromList(lst, shuffle=False), n, num_workers)

    @given(
        n=st.integers(0, 40),
        num_workers=st.integers(1, 6),
        seed=st.one_of(st.none(), st.integers(0, 2**32)),
    )
    def test_shuffled_workers_read_parts_of_one_partition_when_sharded(self, n, num_workers, seed):
        lst = [[i] for i in range(n)]
        shards = passes_as_workers(
            lambda: DataFromList(lst, seed=seed), num_workers, shared_seed=11, num_passes=2
        )
        assert_reads_parts(shards, n, num_workers)

    def test_a_seeded_source_partitions_alike_without_a_shared_seed(self):
        lst = [[i] for i in range(30)]
        shards = passes_as_workers(lambda: DataFromList(lst, seed=3), 3, num_passes=2)
        assert_reads_parts(shards, 30, 3)
        assert any(shard[2] != block(i, 3, 30) for i, shard in enumerate(shards))

    def test_shuffled_parts_of_a_sorted_list_mix_every_class(self):
        # 10 classes of 50, sorted by class: a contiguous half holds only 5 of them.
        lst = [[label] for label in range(10) for _ in range(50)]
        for _, _, got in passes_as_workers(lambda: DataFromList(lst), 2, shared_seed=1):
            assert set(got) == set(range(10))
            assert len(set(got[:32])) > 5  # a batch of 32 made in the worker

    def test_a_shuffled_part_is_the_same_each_pass_in_a_new_order(self):
        lst = [[i] for i in range(40)]
        with worker_context(WorkerInfo(1, 2, sharded=True, shared_seed=2)):
            df = DataFromList(lst, seed=2)
            df.reset_state()
            passes = [one_pass(df) for _ in range(3)]
        assert sorted(passes[0]) == sorted(passes[1]) == sorted(passes[2])
        assert passes[0] != passes[1] != passes[2]

    def test_each_announced_pass_draws_a_new_partition(self):
        lst = [[i] for i in range(40)]
        parts = {0: [], 1: []}
        for i in range(2):
            with worker_context(WorkerInfo(i, 2, sharded=True, shared_seed=5)):
                df = DataFromList(lst)
                df.reset_state()
                for pass_number in (1, 2, 3):
                    begin_pass(pass_number)
                    parts[i].append(one_pass(df))
        for k in range(3):
            assert sorted(parts[0][k] + parts[1][k]) == list(range(40))
        assert len({frozenset(part) for part in parts[0]}) == 3


def squares(n=3):
    for i in range(n):
        yield [i * i]


class TestDataFromGenerator:
    def test_function_is_called_anew_every_pass(self):
        assert check_dataflow(lambda: DataFromGenerator(squares, size=3)) == [[0], [1], [4]]

    def test_without_size_the_length_is_unknown(self):
        df = DataFromGenerator(squares)
        with pytest.raises(UnknownLengthError, match=r"pass size= if you know it"):
            len(df)
        check_dataflow(lambda: DataFromGenerator(squares))

    def test_function_may_return_any_iterable(self):
        assert check_dataflow(lambda: DataFromGenerator(lambda: [[1], [2]])) == [[1], [2]]

    def test_generator_object_works_for_one_pass(self):
        df = DataFromGenerator(squares())
        df.reset_state()
        assert list(df) == [[0], [1], [4]]

    def test_second_pass_over_a_generator_object_is_a_clear_error(self):
        df = DataFromGenerator(squares())
        df.reset_state()
        list(df)
        with pytest.raises(
            RuntimeError,
            match=r"DataFromGenerator was given a generator object, which can be iterated only "
            r"once.*pass a function that returns a new generator",
        ):
            iter(df)

    def test_repeating_a_generator_object_fails_at_the_second_pass(self):
        df = RepeatedData(DataFromGenerator(squares()), 2)
        df.reset_state()
        with pytest.raises(RuntimeError, match=r"iterated only once"):
            list(df)

    def test_function_returning_a_non_iterable_is_a_clear_error(self):
        df = DataFromGenerator(lambda: 5)
        with pytest.raises(
            TypeError, match=r"^DataFromGenerator: gen\(\) must return an iterable .*, got int$"
        ):
            iter(df)

    def test_other_iterables_are_iterated_anew_as_in_tensorpack(self):
        assert check_dataflow(lambda: DataFromGenerator([[1], [2]])) == [[1], [2]]

    def test_rejects_what_is_neither_iterable_nor_callable(self):
        with pytest.raises(
            TypeError, match=r"^gen must be a generator or a function returning an iterable, got 5$"
        ):
            DataFromGenerator(5)

    @pytest.mark.parametrize(
        "size,error",
        [(-1, ValueError), (2.0, TypeError), (True, TypeError)],
    )
    def test_rejects_a_bad_size(self, size, error):
        with pytest.raises(error, match=r"^size must be None or a non-negative int, got "):
            DataFromGenerator(squares, size=size)

    def test_tensorpack_get_data_and_size(self):
        df = DataFromGenerator(squares, size=3)
        assert list(df.get_data()) == [[0], [1], [4]]
        assert df.size() == 3


class NoLen:
    """An iterable collection without __len__."""

    def __iter__(self):
        return iter([[1], [2], [3]])


class Counted:
    """A collection of ``[0] .. [n-1]`` with a length that counts how many
    elements the last pass took from it."""

    def __init__(self, n):
        self.n = n
        self.taken = 0

    def __len__(self):
        return self.n

    def __iter__(self):
        self.taken = 0
        for i in range(self.n):
            self.taken += 1
            yield [i]


class TestDataFromIterable:
    @given(n=st.integers(0, 40), num_workers=st.integers(1, 6))
    def test_each_worker_reads_its_contiguous_block_when_sharded(self, n, num_workers):
        items = [[i] for i in range(n)]
        assert_reads_blocks(lambda: DataFromIterable(items), n, num_workers)

    def test_a_worker_stops_iterating_at_the_end_of_its_block(self):
        items = Counted(10)
        [(_, _, got)] = passes_as_workers(lambda: DataFromIterable(items), 1)
        assert got == list(range(10)) and items.taken == 10
        with worker_context(WorkerInfo(0, 2, sharded=True)):
            df = DataFromIterable(items)
            assert one_pass(df) == [0, 1, 2, 3, 4] and items.taken == 5

    def test_an_iterable_without_len_is_sharded_every_num_workers_th_element(self):
        # Without a length there is no block to compute: worker i takes
        # elements i, i + num_workers, ...; together still each element once.
        shards = []
        for i in range(2):
            with worker_context(WorkerInfo(i, 2, sharded=True)):
                shards.append(one_pass(DataFromIterable(NoLen())))
        assert shards == [[1, 3], [2]]

    def test_collection_is_iterated_anew_every_pass(self):
        assert check_dataflow(lambda: DataFromIterable(deque([[1], [2]]))) == [[1], [2]]

    def test_len_is_the_iterables_len(self):
        items = [[1], [2]]
        df = DataFromIterable(items)
        assert len(df) == df.size() == 2
        items.append([3])
        assert len(df) == 3

    def test_iterable_without_len_has_unknown_length(self):
        df = DataFromIterable(NoLen())
        with pytest.raises(UnknownLengthError, match=r"the iterable \(a NoLen\) has no len\(\)"):
            len(df)
        assert check_dataflow(lambda: DataFromIterable(NoLen())) == [[1], [2], [3]]

    def test_generator_works_for_one_pass_then_is_a_clear_error(self):
        df = DataFromIterable([i] for i in range(3))
        assert list(df) == [[0], [1], [2]]
        with pytest.raises(
            RuntimeError,
            match=r"DataFromIterable was given a generator object, which can be iterated only "
            r"once.*pass a collection that can be iterated again",
        ):
            iter(df)

    def test_rejects_a_non_iterable(self):
        with pytest.raises(TypeError, match=r"^iterable must be an iterable, got 5$"):
            DataFromIterable(5)


class TestDataFromQueue:
    def test_contract_as_an_endless_source(self):
        def make():
            q = queue.Queue()
            for i in range(100):
                q.put([i])
            return DataFromQueue(q)

        assert check_dataflow(make, infinite=True, max_datapoints=10) == [[i] for i in range(10)]

    def test_length_is_unknown(self):
        with pytest.raises(UnknownLengthError):
            len(DataFromQueue(queue.Queue()))

    def test_yields_what_a_producer_thread_puts(self):
        q = queue.Queue(maxsize=2)
        producer = threading.Thread(target=lambda: [q.put({"i": i}) for i in range(6)])
        producer.start()
        df = DataFromQueue(q)
        df.reset_state()
        assert list(itertools.islice(df, 6)) == [{"i": i} for i in range(6)]
        producer.join(5)

    def test_iterating_from_two_places_at_once_is_refused(self):
        q = queue.Queue()
        for i in range(3):
            q.put([i])
        df = DataFromQueue(q)
        df.reset_state()
        first = iter(df)
        assert next(first) == [0]
        with pytest.raises(ReentrancyError, match=r"DataFromQueue is already being iterated"):
            next(iter(df))
        first.close()
        assert next(iter(df)) == [1]

    def test_rejects_an_object_without_get(self):
        with pytest.raises(TypeError, match=r"^queue must be an object with a get\(\) method, got"):
            DataFromQueue([1, 2])


class TestFakeData:
    @pytest.mark.parametrize("n, num_workers", [(8, 3), (5, 2), (3, 4), (0, 2)])
    def test_each_worker_makes_its_blocks_number_of_datapoints(self, n, num_workers):
        shards = passes_as_workers(lambda: FakeData([[1]], size=n, seed=0), num_workers)
        sizes = [len(block(i, num_workers, n)) for i in range(num_workers)]
        assert [(before, after, len(got)) for before, after, got in shards] == [
            (k, k, k) for k in sizes
        ]
        assert sum(sizes) == n

    def test_contract(self):
        out = check_dataflow(lambda: FakeData([[2, 3], [4]], size=5))
        assert [(a.shape, b.shape) for a, b in out] == [((2, 3), (4,))] * 5

    def test_float_components_lie_in_the_domain(self):
        df = FakeData([[1000]], size=3, dtype="float64", domain=(-2, 3), seed=0)
        df.reset_state()
        values = np.concatenate([dp[0] for dp in df])
        assert values.dtype == np.float64
        assert -2 <= values.min() < -1.9 and 2.9 < values.max() < 3

    def test_integer_components_draw_integers_in_low_high(self):
        df = FakeData([[1000]], size=1, dtype="uint8", domain=(250, 256), seed=0)
        df.reset_state()
        (values,) = next(iter(df))
        assert values.dtype == np.uint8
        assert set(values.tolist()) == {250, 251, 252, 253, 254, 255}

    def test_bool_components_take_both_values(self):
        df = FakeData([[100]], size=1, dtype=bool, seed=0)
        df.reset_state()
        (values,) = next(iter(df))
        assert values.dtype == np.bool_ and values.any() and not values.all()

    def test_one_dtype_and_domain_per_component(self):
        df = FakeData(
            [[3], []], size=2, dtype=["float32", np.int16], domain=[(0, 1), (5, 6)], seed=0
        )
        df.reset_state()
        for x, y in df:
            assert x.dtype == np.float32 and y.dtype == np.int16
            assert y.shape == () and int(y) == 5

    def test_seed_reproduces_the_data(self):
        a, b = FakeData([[4]], size=3, seed=9), FakeData([[4]], size=3, seed=9)
        a.reset_state()
        b.reset_state()
        assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b))

    def test_every_datapoint_is_new_when_random(self):
        df = FakeData([[8]], size=3)
        df.reset_state()
        first, second, _ = [dp[0] for dp in df]
        assert not np.array_equal(first, second)

    def test_not_random_repeats_one_datapoint_made_at_reset_state(self):
        df = FakeData([[8], [2]], size=3, random=False, seed=1)
        df.reset_state()
        out = list(df) + list(df)
        assert all(dp[0] is out[0][0] and dp[1] is out[0][1] for dp in out)
        assert len({id(dp) for dp in out}) == len(out)  # a new list every time
        check_dataflow(lambda: FakeData([[2]], size=4, random=False))

    def test_size_zero_is_an_empty_pass(self):
        assert check_dataflow(lambda: FakeData([[1]], size=0)) == []

    def test_iterating_before_reset_state_is_a_clear_error(self):
        with pytest.raises(RuntimeError, match=r"FakeData.rng does not exist before reset_state"):
            iter(FakeData([[1]], random=False))

    def test_tensorpack_size(self):
        assert FakeData([[1]], size=7).size() == 7

    @pytest.mark.parametrize(
        "kwargs,error,message",
        [
            (
                {"shapes": 5},
                TypeError,
                r"^shapes must be a non-empty list of shapes \(one per component\), got 5$",
            ),
            (
                {"shapes": []},
                ValueError,
                r"^shapes must be a non-empty list of shapes \(one per component\), got \[\]$",
            ),
            (
                {"shapes": [[2], [2, -1]]},
                ValueError,
                r"^shapes\[1\] must be a list or tuple of non-negative ints, got \[2, -1\]$",
            ),
            (
                {"shapes": [3]},
                TypeError,
                r"^shapes\[0\] must be a list or tuple of non-negative ints, got 3$",
            ),
            ({"size": -1}, ValueError, r"^size must be a non-negative int, got -1$"),
            ({"size": 1.0}, TypeError, r"^size must be a non-negative int, got 1.0$"),
            ({"random": 1}, TypeError, r"^random must be a bool, got 1$"),
            (
                {"dtype": "flaot32"},
                TypeError,
                r"^dtype must be a numeric dtype \(bool, int, uint or float\), or a list of 2 "
                r"of them, got 'flaot32'$",
            ),
            ({"dtype": ["float32"]}, ValueError, r"^dtype must be .*, got \['float32'\]$"),
            ({"dtype": "U5"}, ValueError, r"^dtype must be .*, got 'U5'$"),
            (
                {"domain": 1},
                ValueError,
                r"^domain must be a \(low, high\) pair of numbers, or a list of 2 such pairs, "
                r"got 1$",
            ),
            (
                {"domain": (1, 0)},
                ValueError,
                r"^domain must be a pair \(low, high\) with low < high, got \(1, 0\)$",
            ),
            (
                {"domain": [(0, 1), (2, 2)]},
                ValueError,
                r"^domain\[1\] must be a pair \(low, high\) with low < high, got \(2, 2\)$",
            ),
            (
                {"dtype": "uint8", "domain": (0, 300)},
                ValueError,
                r"^domain must be a pair of ints with 0 <= low < high <= 256 for the uint8 "
                r"component 0, got \(0, 300\)$",
            ),
            (
                {"dtype": ["float32", "int32"], "domain": (0.5, 2)},
                ValueError,
                r"^domain must be a pair of ints .* for the int32 component 1, got \(0.5, 2\)$",
            ),
            (
                {"dtype": "float16", "domain": (0, 1e6)},
                ValueError,
                r"^domain must be a pair with -65504.0 <= low < high <= 65504.0 for the float16 "
                r"component 0, got \(0, 1000000.0\)$",
            ),
        ],
    )
    def test_rejects_bad_arguments(self, kwargs, error, message):
        kwargs = {"shapes": [[1], [2]], **kwargs}
        with pytest.raises(error, match=message):
            FakeData(**kwargs)

    @given(
        shapes=st.lists(st.lists(st.integers(0, 3), max_size=3), min_size=1, max_size=3),
        size=st.integers(0, 20),
        random=st.booleans(),
    )
    def test_len_equals_a_pass_of_the_given_shapes(self, shapes, size, random):
        df = FakeData(shapes, size=size, random=random)
        df.reset_state()
        out = list(df)
        assert len(out) == len(df) == size
        assert all([c.shape for c in dp] == [tuple(s) for s in shapes] for dp in out)

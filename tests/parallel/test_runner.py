"""Tests of dataflow.parallel.runner: the three runners, their aliases and their errors.

The dataflows the workers run are defined at module level, so that the spawn
and forkserver start methods can pickle them (their children import this
module, which must therefore stay free of side effects).
"""

from __future__ import annotations

import functools
import gc
import itertools
import math
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from _procs import process_alive
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import dataflow
from dataflow import (
    DataFlow,
    DataFromIterable,
    DataFromList,
    FakeData,
    MapData,
    ReentrancyError,
    RNGDataFlow,
    UnknownLengthError,
    check_dataflow,
    get_worker_info,
)
from dataflow.parallel import (
    MultiProcessPrefetchData,
    MultiProcessRunner,
    MultiProcessRunnerZMQ,
    MultiThreadPrefetchData,
    MultiThreadRunner,
    PrefetchData,
    PrefetchDataZMQ,
    WorkerDiedError,
    WorkerError,
)
from dataflow.serialize import MsgpackSerializer, PickleSerializer
from dataflow.testing import live_child_pids, live_threads, wait_for_leftovers

TIMEOUT_S = 30  # every parallel test; a hang fails in this time instead of the global 120 s
SPAWN_TIMEOUT_S = 90  # spawn and forkserver children import numpy and this module first
# A worker killed without a word must be reported within about this long (the
# consumer checks its workers every 0.25 s); generous for a loaded 2-core machine.
DEATH_NOTICE_S = 3.0
# close() with a worker stuck in user code: ask, wait 0.4 s, SIGTERM, wait 0.3 s.
CLOSE_BOUND_S = 3.0


# ---- dataflows the workers run ----------------------------------------------------


class Counting(DataFlow):
    """``[0] .. [n-1]``, the same in every copy: it does not shard itself."""

    def __init__(self, n, delay_s=0.0):
        self.n = n
        self.delay_s = delay_s

    def __len__(self):
        return self.n

    def __iter__(self):
        for i in range(self.n):
            if self.delay_s:
                time.sleep(self.delay_s)
            yield [i]


class Sharded(Counting):
    """``[0] .. [n-1]``, of which each worker reads its ``get_worker_info().shard(n)``."""

    def _indices(self):
        info = get_worker_info()
        return range(self.n) if info is None else info.shard(self.n)

    def __len__(self):
        return len(self._indices())

    def __iter__(self):
        for i in self._indices():
            if self.delay_s:
                time.sleep(self.delay_s)
            yield [i]


class Tagged(DataFlow):
    """``[i, worker index]`` for each *i* of ``DataFromList([[0] .. [n-1]], shuffle=False)``."""

    def __init__(self, n):
        self.ds = DataFromList([[i] for i in range(n)], shuffle=False)

    def __len__(self):
        return len(self.ds)

    def reset_state(self):
        self.ds.reset_state()

    def __iter__(self):
        index = get_worker_info().index
        for dp in self.ds:
            yield [dp[0], index]


class Unsized(DataFlow):
    """``[0] .. [n-1]`` without a length."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        for i in range(self.n):
            yield [i]


class ShardOf(DataFlow):
    """Every *count*-th of ``[0] .. [n-1]`` from *index* on; no length, and no asking."""

    def __init__(self, n, index, count):
        self.n, self.index, self.count = n, index, count

    def __iter__(self):
        for i in range(self.index, self.n, self.count):
            yield [i]


class Items:
    """A collection that can be iterated again but has no length (for DataFromIterable)."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter([[i] for i in range(self.n)])


class Empty(DataFlow):
    """A pass without datapoints, and no length."""

    def __iter__(self):
        return iter(())


class Failing(DataFlow):
    """Yields *good* datapoints, then raises ValueError (only in worker *worker*, if given)."""

    def __init__(self, good=1, worker=None):
        self.good = good
        self.worker = worker

    def __iter__(self):
        for i in range(self.good):
            yield [i]
        info = get_worker_info()
        if self.worker is None or (info is not None and info.index == self.worker):
            raise ValueError(f"bad datapoint {self.good}")
        while True:
            time.sleep(0.01)
            yield [-1]


class Exiting(DataFlow):
    """Yields one datapoint, then ends its process with ``os._exit(code)``."""

    def __init__(self, code):
        self.code = code

    def __iter__(self):
        yield [0]
        os._exit(self.code)


class Sleeping(DataFlow):
    """Yields one datapoint, then sleeps *sleep_s* in one call (cannot be interrupted)."""

    def __init__(self, sleep_s):
        self.sleep_s = sleep_s

    def __iter__(self):
        yield [0]
        time.sleep(self.sleep_s)
        yield [1]


class Ticking(DataFlow):
    """Forever: ``[pid, time.monotonic()]`` every *delay_s*."""

    def __init__(self, delay_s=0.01):
        self.delay_s = delay_s

    def __iter__(self):
        while True:
            time.sleep(self.delay_s)
            yield [os.getpid(), time.monotonic()]


class Draws(RNGDataFlow):
    """*n* datapoints ``[worker index, draw from self.rng, numpy.random, random]``."""

    def __init__(self, n=5):
        self.n = n

    def __len__(self):
        return self.n

    def __iter__(self):
        for _ in range(self.n):
            info = get_worker_info()
            yield [
                -1 if info is None else info.index,
                int(self.rng.randint(1 << 30)),
                int(np.random.randint(1 << 30)),
                random.getrandbits(30),
            ]


def tag_with_worker(dp):
    """``[worker index, *dp]``: which worker made the datapoint."""
    return [get_worker_info().index, *dp]


# ---- helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def multiprocessing_helpers():
    """Start the helper processes of spawn and forkserver (the resource tracker, the fork
    server) before the test takes its snapshot of live children: they serve the whole
    session, they are not workers left behind."""
    from multiprocessing import forkserver, resource_tracker

    resource_tracker.ensure_running()
    forkserver.ensure_running()


def one_pass(df):
    return [dp[0] for dp in df]


def per_worker(df, count, workers=2):
    """The first *count* datapoints of each worker of *df*, whose datapoints are tagged
    with the worker index, as a list (per worker) of lists of tuples."""
    streams = [[] for _ in range(workers)]
    deadline = time.monotonic() + 15.0  # a worker may start late on a loaded machine
    while time.monotonic() < deadline:
        for index, *rest in df:
            if len(streams[index]) < count:
                streams[index].append(tuple(repr(x) for x in rest))
            if all(len(s) >= count for s in streams):
                return streams
    raise AssertionError(f"some worker yielded fewer than {count} datapoints: {streams}")


def no_leftovers(threads_before, children_before, timeout=5.0):
    return wait_for_leftovers(threads_before, children_before, timeout) == []


DTYPES = [
    np.bool_,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
    np.complex64,
    np.complex128,
]


def sample(dtype, shape, seed=0):
    values = np.random.RandomState(seed).uniform(-100, 100, size=shape)
    if np.dtype(dtype).kind == "c":
        values = values * (1 + 1j)
    elif np.dtype(dtype).kind == "u":
        values = np.abs(values)
    return np.asarray(values).astype(dtype)


def assert_same(got, expected, where="dp"):
    """*got* equals *expected* as the msgpack wire promises: same types (tuples as
    lists), arrays with the same dtype, shape and bytes."""
    if isinstance(expected, (list, tuple)):
        assert type(got) is list, f"{where}: {type(got).__name__}"
        assert len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_same(g, e, f"{where}[{i}]")
    elif isinstance(expected, dict):
        assert type(got) is dict and list(got) == list(expected), where
        for key in expected:
            assert_same(got[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (np.ndarray, np.generic)):
        assert type(got) is type(expected), f"{where}: {type(got).__name__}"
        assert got.dtype == expected.dtype and got.shape == expected.shape, where
        assert got.tobytes() == expected.tobytes(), where
    else:
        assert type(got) is type(expected), f"{where}: {type(got).__name__}"
        if isinstance(expected, float) and math.isnan(expected):
            assert math.isnan(got), where
        else:
            assert got == expected, where


def round_trip_zmq(datapoints, **kwargs):
    """*datapoints* after one pass through a one-worker MultiProcessRunnerZMQ."""
    with MultiProcessRunnerZMQ(
        DataFromList(list(datapoints), shuffle=False), num_proc=1, exactly_once=True, **kwargs
    ) as df:
        df.reset_state()
        return list(df)


numeric_dtypes = st.sampled_from([np.dtype(d) for d in DTYPES])
small_arrays = hnp.arrays(
    numeric_dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
)
large_arrays = st.tuples(numeric_dtypes, st.integers(0, 3)).map(
    lambda t: np.arange((1 << 16) // t[0].itemsize + t[1]).astype(t[0])
)
leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | numeric_dtypes.flatmap(lambda d: hnp.arrays(d, ()).map(lambda a: a[()]))
    | small_arrays
    | small_arrays.filter(lambda a: a.ndim >= 1).map(lambda a: a[::-1].T)
    | large_arrays
)
nested = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)
datapoints = st.lists(nested, max_size=4) | st.dictionaries(st.text(max_size=4), nested, max_size=3)


# ---- what every runner does ---------------------------------------------------------


class _RunnerTests:
    """The contract of every runner. Subclasses say how to build theirs with ``make``."""

    name = ""

    def make(self, source, workers=1, **kwargs):
        """A runner of *workers* workers over the dataflows ``source()`` builds."""
        raise NotImplementedError

    # -- what comes out ----------------------------------------------------------------

    @pytest.mark.timeout(TIMEOUT_S)
    def test_one_worker_yields_ds_in_order(self):
        out = check_dataflow(lambda: self.make(functools.partial(Counting, 5)))
        assert out == [[i] for i in range(5)]

    @pytest.mark.timeout(TIMEOUT_S)
    def test_one_worker_keeps_the_order_of_many_small_datapoints(self):
        with self.make(functools.partial(Counting, 600)) as df:
            df.reset_state()
            assert one_pass(df) == list(range(600))
            assert one_pass(df) == list(range(600))

    @pytest.mark.timeout(TIMEOUT_S)
    def test_clone_pass_after_an_abandoned_one_continues_the_stream(self):
        with self.make(functools.partial(Counting, 5)) as df:
            df.reset_state()
            assert next(iter(df)) == [0]
            assert one_pass(df) == [1, 2, 3, 4, 0]

    @pytest.mark.timeout(TIMEOUT_S)
    def test_clones_over_two_workers_yield_len_ds_datapoints_per_pass(self):
        out = check_dataflow(lambda: self.make(functools.partial(Counting, 6), 2), num_passes=3)
        assert len(out) == 6 and all(dp[0] in range(6) for dp in out)

    @pytest.mark.timeout(TIMEOUT_S)
    @pytest.mark.parametrize("workers", [2, 3])
    def test_exactly_once_yields_every_datapoint_once_per_pass(self, workers):
        lst = [[i] for i in range(10)]
        out = check_dataflow(
            lambda: self.make(
                functools.partial(DataFromList, lst, shuffle=False), workers, exactly_once=True
            ),
            num_passes=3,
        )
        assert sorted(out) == lst
        with self.make(functools.partial(DataFromList, lst), workers, exactly_once=True) as df:
            df.reset_state()
            for _ in range(3):
                assert sorted(one_pass(df)) == list(range(10))
                assert next(iter(df)) in lst  # abandoned after one datapoint
                assert sorted(one_pass(df)) == list(range(10))

    @pytest.mark.timeout(TIMEOUT_S)
    def test_exactly_once_pass_after_one_abandoned_midway_is_complete(self):
        # workers are still producing the abandoned pass when the next one starts
        with self.make(functools.partial(Sharded, 40, delay_s=0.003), 2, exactly_once=True) as df:
            df.reset_state()
            for _ in range(3):
                it = iter(df)
                next(it)
                next(it)
                del it
                assert sorted(one_pass(df)) == list(range(40))

    @pytest.mark.timeout(TIMEOUT_S)
    def test_len_is_len_ds_for_clones_and_the_sum_of_shards_exactly_once(self):
        clones = self.make(functools.partial(Counting, 5), 2)
        once = self.make(
            functools.partial(DataFromList, [[i] for i in range(7)]), 2, exactly_once=True
        )
        with clones, once:
            assert len(clones) == 5 and len(once) == 7  # before reset_state too
            clones.reset_state()
            once.reset_state()
            assert len(clones) == 5 and len(once) == 7
            assert len(one_pass(clones)) == 5 and len(one_pass(once)) == 7

    @pytest.mark.timeout(TIMEOUT_S)
    def test_clones_of_a_ds_without_len_are_an_endless_stream(self):
        out = check_dataflow(
            lambda: self.make(functools.partial(Unsized, 4), 2), infinite=True, max_datapoints=30
        )
        assert len(out) == 30 and all(dp[0] in range(4) for dp in out)
        with self.make(functools.partial(Unsized, 4), 2) as df:
            with pytest.raises(UnknownLengthError):
                len(df)
            df.reset_state()
            assert len(list(itertools.islice(df, 25))) == 25

    @pytest.mark.timeout(TIMEOUT_S)
    def test_exactly_once_over_a_sharding_ds_without_len_ends_each_pass(self):
        out = check_dataflow(
            lambda: self.make(lambda: DataFromIterable(Items(9)), 2, exactly_once=True)
        )
        assert sorted(out) == [[i] for i in range(9)]

    @pytest.mark.timeout(TIMEOUT_S)
    def test_empty_ds_gives_empty_passes(self):
        assert check_dataflow(lambda: self.make(functools.partial(DataFromList, []))) == []
        once = check_dataflow(
            lambda: self.make(functools.partial(DataFromList, []), 2, exactly_once=True)
        )
        assert once == []

    @pytest.mark.timeout(TIMEOUT_S)
    def test_dict_datapoints_come_out_as_dicts(self):
        lst = [{"a": i, "b": [i, str(i)]} for i in range(4)]
        out = check_dataflow(lambda: self.make(functools.partial(DataFromList, lst, False)))
        assert out == lst

    # -- sharding ----------------------------------------------------------------------

    @pytest.mark.timeout(TIMEOUT_S)
    def test_exactly_once_refuses_a_ds_that_does_not_shard_at_reset_state(self):
        before = live_threads(), live_child_pids()
        with self.make(functools.partial(Counting, 4), 2, exactly_once=True) as df:
            with pytest.raises(ValueError) as excinfo:
                df.reset_state()
        assert str(excinfo.value).startswith(
            f"{self.name}(exactly_once=True) needs a dataflow whose copies each read only their "
            "own shard, but Counting does not shard itself: its 2 copies would yield 8 "
            "datapoints for 4."
        )
        assert "get_worker_info().shard(n)" in str(excinfo.value)
        assert no_leftovers(*before)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_exactly_once_accepts_a_ds_that_shards_with_get_worker_info(self):
        out = check_dataflow(
            lambda: self.make(functools.partial(Sharded, 9), 2, exactly_once=True), num_passes=3
        )
        assert sorted(out) == [[i] for i in range(9)]

    @pytest.mark.timeout(TIMEOUT_S)
    def test_exactly_once_gives_each_worker_a_contiguous_block_in_order(self):
        out = check_dataflow(lambda: self.make(functools.partial(Tagged, 11), 3, exactly_once=True))
        per_worker = {w: [i for i, index in out if index == w] for w in range(3)}
        assert per_worker == {0: [0, 1, 2], 1: [3, 4, 5, 6], 2: [7, 8, 9, 10]}

    @pytest.mark.timeout(TIMEOUT_S)
    def test_exactly_once_names_the_source_that_does_not_shard_not_its_wrapper(self):
        source = functools.partial(lambda n: MapData(Counting(n), lambda dp: dp), 4)
        with self.make(source, 2, exactly_once=True) as df:
            with pytest.raises(ValueError, match=r"but Counting \(the source of MapData\) does "):
                df.reset_state()

    @pytest.mark.timeout(TIMEOUT_S)
    def test_exactly_once_refuses_in_its_workers_a_ds_of_unknown_length_that_does_not_shard(self):
        # len() cannot tell: the workers find that nothing asked which shard to read,
        # at the first datapoint, before sending any.
        before = live_threads(), live_child_pids()
        with self.make(functools.partial(Unsized, 6), 2, exactly_once=True) as df:
            df.reset_state()
            with pytest.raises(ValueError) as excinfo:
                next(iter(df))
        assert isinstance(excinfo.value, WorkerError)
        assert (
            "exactly_once=True needs a dataflow whose copies each read only their own shard, "
            "but nothing in Unsized asked get_worker_info() which shard to read, so each of "
            "the 2 copies would yield every datapoint."
        ) in str(excinfo.value)
        assert no_leftovers(*before)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_exactly_once_with_one_worker_accepts_any_ds(self):
        out = check_dataflow(lambda: self.make(functools.partial(Counting, 4), exactly_once=True))
        assert out == [[i] for i in range(4)]

    # -- a worker fails ----------------------------------------------------------------

    def failed_worker_error(self):
        """The WorkerError of a worker that raised ValueError after one datapoint, checked."""
        with self.make(functools.partial(Failing, good=1)) as df:
            df.reset_state()
            it = iter(df)
            assert next(it) == [0]
            with pytest.raises(WorkerError) as excinfo:
                next(it)
        err = excinfo.value
        # Both a WorkerError and the worker's own type, so `except ValueError:` catches it.
        assert isinstance(err, WorkerError) and isinstance(err, ValueError)
        assert type(err).__name__ == "WorkerError[ValueError]"
        assert err.exc_type == "ValueError"
        assert err.worker_index == 0
        assert isinstance(err.pid, int)
        assert str(err).startswith(
            f"{self.name} worker 0 (pid {err.pid}) raised ValueError: bad datapoint 1\n\n"
            "Traceback in the worker:\nTraceback (most recent call last):\n"
        )
        assert err.remote_traceback.startswith("Traceback (most recent call last):\n")
        assert "in __iter__" in err.remote_traceback
        assert err.remote_traceback.rstrip().endswith("ValueError: bad datapoint 1")
        assert str(err).endswith(err.remote_traceback.rstrip())
        return err

    @pytest.mark.timeout(TIMEOUT_S)
    def test_worker_exception_is_raised_as_worker_error_with_its_details(self):
        self.failed_worker_error()

    @pytest.mark.timeout(TIMEOUT_S)
    def test_datapoints_yielded_before_an_error_arrive_before_it(self):
        with self.make(functools.partial(Failing, good=50)) as df:
            df.reset_state()
            got = []
            with pytest.raises(WorkerError, match="bad datapoint 50"):
                for dp in df:
                    got.append(dp[0])
        assert got == list(range(50))

    @pytest.mark.timeout(TIMEOUT_S)
    def test_worker_error_names_the_worker_that_failed(self):
        with self.make(functools.partial(Failing, good=1, worker=1), 2) as df:
            df.reset_state()
            with pytest.raises(WorkerError, match=rf"^{self.name} worker 1 \(pid \d+\) raised"):
                one_pass(df)  # an endless stream: only the error ends it

    @pytest.mark.timeout(TIMEOUT_S)
    def test_iterating_after_a_worker_failure_is_a_runtime_error(self):
        with self.make(functools.partial(Failing, good=0)) as df:
            df.reset_state()
            with pytest.raises(WorkerError):
                next(iter(df))
            with pytest.raises(RuntimeError) as excinfo:
                next(iter(df))
        assert type(excinfo.value) is RuntimeError
        assert str(excinfo.value).startswith(
            f"{self.name} stopped after a worker failed ({self.name} worker 0 "
        )
        assert str(excinfo.value).endswith("; build a new one")

    @pytest.mark.timeout(TIMEOUT_S)
    def test_ds_yielding_nothing_in_clone_mode_is_a_worker_error(self):
        with self.make(Empty) as df:
            df.reset_state()
            with pytest.raises(WorkerError) as excinfo:
                next(iter(df))
        assert excinfo.value.exc_type == "RuntimeError"
        assert (
            "raised RuntimeError: Empty yielded no datapoint in a whole pass; a runner repeats "
            "its dataflow forever, so it would wait forever." in str(excinfo.value)
        )

    # -- the consumer's side -----------------------------------------------------------

    @pytest.mark.timeout(TIMEOUT_S)
    def test_consumer_breaking_early_then_close_stops_every_worker(self):
        before = live_threads(), live_child_pids()
        df = self.make(functools.partial(Counting, 100), 2)
        try:
            df.reset_state()
            for dp in df:
                assert dp[0] in range(100)
                break
        finally:
            df.close()
        assert no_leftovers(*before)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_exception_in_the_consumer_loop_then_with_closes(self):
        before = live_threads(), live_child_pids()
        with pytest.raises(KeyError, match="consumer"):
            with self.make(functools.partial(Counting, 100), 2) as df:
                df.reset_state()
                for _ in df:
                    raise KeyError("consumer")
        assert no_leftovers(*before)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_with_block_closes_the_runner(self):
        before = live_threads(), live_child_pids()
        with self.make(functools.partial(Counting, 3), 2) as df:
            df.reset_state()
            assert len(one_pass(df)) == 3
        assert no_leftovers(*before)
        with pytest.raises(RuntimeError) as excinfo:
            next(iter(df))
        assert str(excinfo.value) == f"{self.name} was closed; build a new one to iterate again"

    @pytest.mark.timeout(TIMEOUT_S)
    def test_garbage_collection_stops_the_workers(self):
        before = live_threads(), live_child_pids()
        df = self.make(functools.partial(Counting, 100), 2)
        df.reset_state()
        it = iter(df)
        next(it)
        del it, df
        gc.collect()
        assert no_leftovers(*before)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_close_twice_and_close_before_reset_state_are_harmless(self):
        unused = self.make(functools.partial(Counting, 3))
        unused.close()
        unused.close()
        df = self.make(functools.partial(Counting, 3), 2)
        df.reset_state()
        df.close()
        df.close()

    @pytest.mark.timeout(TIMEOUT_S)
    def test_reset_state_twice_is_a_runtime_error(self):
        with self.make(functools.partial(Counting, 3)) as df:
            df.reset_state()
            with pytest.raises(RuntimeError) as excinfo:
                df.reset_state()
            assert one_pass(df) == [0, 1, 2]  # still usable
        assert str(excinfo.value) == (
            f"{self.name}.reset_state() was called twice; call it once, in the process that "
            "iterates (its workers are already running)"
        )

    @pytest.mark.timeout(TIMEOUT_S)
    def test_reset_state_after_close_is_a_runtime_error(self):
        df = self.make(functools.partial(Counting, 3))
        df.close()
        with pytest.raises(RuntimeError) as excinfo:
            df.reset_state()
        assert str(excinfo.value) == (
            f"{self.name} was closed; build a new one instead of calling reset_state() again"
        )

    @pytest.mark.timeout(TIMEOUT_S)
    def test_iterating_before_reset_state_is_a_runtime_error(self):
        with self.make(functools.partial(Counting, 3)) as df:
            with pytest.raises(RuntimeError) as excinfo:
                next(iter(df))
        assert str(excinfo.value) == (
            f"{self.name} must be reset before iterating: call reset_state() once, in the "
            "process that iterates"
        )

    @pytest.mark.timeout(TIMEOUT_S)
    def test_two_iterations_at_once_raise_reentrancy_error(self):
        with self.make(functools.partial(Counting, 4)) as df:
            df.reset_state()
            first = iter(df)
            assert next(first) == [0]
            with pytest.raises(ReentrancyError, match=f"^{self.name} is already being iterated"):
                next(iter(df))
            assert list(first) == [[1], [2], [3]]  # the first loop is unharmed
            del first

    # -- seeds -------------------------------------------------------------------------

    @pytest.mark.timeout(TIMEOUT_S)
    def test_seed_makes_the_shuffled_passes_reproducible(self):
        lst = [[i] for i in range(30)]

        def passes(seed):
            with self.make(
                functools.partial(DataFromList, lst), exactly_once=True, seed=seed
            ) as df:
                df.reset_state()
                return [one_pass(df) for _ in range(2)]

        first = passes(7)
        assert first == passes(7)
        assert first[0] != first[1]  # a new permutation every pass
        assert sorted(first[0]) == list(range(30))
        assert first != passes(8)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_seed_makes_the_stream_of_each_worker_reproducible(self):
        def source():
            return MapData(
                FakeData([[3]], size=4, dtype="int64", domain=(0, 10**9)), tag_with_worker
            )

        def streams(seed):
            with self.make(source, 2, seed=seed) as df:
                df.reset_state()
                return per_worker(df, 6)

        first = streams(11)
        assert first == streams(11)
        assert first != streams(12)

    @pytest.mark.timeout(TIMEOUT_S)
    @pytest.mark.parametrize("seed", [None, 11])
    def test_clones_draw_different_random_streams(self, seed):
        def source():
            return MapData(
                FakeData([[3]], size=4, dtype="int64", domain=(0, 10**9)), tag_with_worker
            )

        with self.make(source, 2, seed=seed) as df:
            df.reset_state()
            first, second = per_worker(df, 1)
        assert first != second

    @pytest.mark.timeout(TIMEOUT_S)
    def test_clones_of_a_seeded_source_do_not_repeat_its_permutation(self):
        def source():
            return MapData(DataFromList([[i] for i in range(20)], seed=3), tag_with_worker)

        with self.make(source, 2) as df:
            df.reset_state()
            first, second = per_worker(df, 20)
        assert sorted(first) == sorted(second) == sorted((repr(i),) for i in range(20))
        assert first != second


class _ProcessRunnerTests(_RunnerTests):
    """What runners over worker processes do besides: deaths, signals, start methods."""

    #: how ``make`` is spelled in a script of its own, given ``ds``
    script_call = ""
    #: a datapoint component the runner's encoding refuses
    unserializable = None

    @pytest.mark.timeout(TIMEOUT_S)
    def test_worker_error_comes_from_the_worker_process(self):
        err = self.failed_worker_error()
        assert err.pid != os.getpid()

    @pytest.mark.timeout(TIMEOUT_S)
    def test_unserializable_datapoint_is_a_worker_error_naming_its_component(self):
        with self.make(functools.partial(DataFromList, [[0, self.unserializable]])) as df:
            df.reset_state()
            with pytest.raises(WorkerError, match=r"cannot serialize .* at component 1") as info:
                next(iter(df))
        assert info.value.exc_type == "TypeError"

    @pytest.mark.timeout(TIMEOUT_S)
    def test_worker_killed_by_sigkill_is_reported_within_seconds(self):
        with self.make(Ticking, 2) as df:
            df.reset_state()
            it = iter(df)
            pids = set()
            while len(pids) < 2:
                pids.add(next(it)[0])
            victim = min(pids)
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            with pytest.raises(WorkerDiedError) as excinfo:
                for _ in it:
                    pass
            elapsed = time.monotonic() - killed_at
        err = excinfo.value
        assert elapsed < DEATH_NOTICE_S
        assert err.pid == victim and err.exitcode == -signal.SIGKILL
        assert err.worker_index in (0, 1) and err.exc_type == ""
        assert str(err) == (
            f"{self.name} worker {err.worker_index} (pid {victim}) was killed by SIGKILL without "
            "reporting an error; the out-of-memory killer is the usual cause: use fewer "
            "workers, smaller buffers (hwm, buffer_size) or smaller datapoints"
        )

    @pytest.mark.timeout(TIMEOUT_S)
    def test_worker_calling_os_exit_is_reported_with_its_exit_code(self):
        with self.make(functools.partial(Exiting, 3)) as df:
            df.reset_state()
            with pytest.raises(WorkerDiedError) as excinfo:
                one_pass(df)  # an endless stream: only the error ends it
        err = excinfo.value
        assert err.exitcode == 3 and err.worker_index == 0
        assert str(err) == (
            f"{self.name} worker 0 (pid {err.pid}) exited with code 3 without reporting an "
            "error; something in the worker called os._exit() or sys.exit()"
        )
        with pytest.raises(RuntimeError, match="stopped after a worker failed"):
            next(iter(df))

    @pytest.mark.timeout(TIMEOUT_S)
    def test_workers_ignore_sigint(self):
        with self.make(Ticking, 2) as df:
            df.reset_state()
            it = iter(df)
            pid = next(it)[0]
            os.kill(pid, signal.SIGINT)
            sent_at = time.monotonic()
            # a datapoint the worker made well after the signal arrived
            for dp in it:
                if dp[0] == pid and dp[1] > sent_at + 0.2:
                    break
        assert dp[0] == pid

    @pytest.mark.timeout(TIMEOUT_S)
    def test_close_returns_quickly_while_a_worker_is_stuck_in_its_source(self):
        before = live_threads(), live_child_pids()
        df = self.make(functools.partial(Sleeping, 10), 2)
        try:
            df.reset_state()
            assert next(iter(df)) == [0]
            time.sleep(0.1)  # the workers are in time.sleep(10) now
        finally:
            started = time.monotonic()
            df.close()
            elapsed = time.monotonic() - started
        assert elapsed < CLOSE_BOUND_S
        assert no_leftovers(*before, timeout=1.0)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_workers_die_when_the_parent_is_killed(self):
        script = textwrap.dedent(
            f"""
            import os, time
            from dataflow import DataFlow, {self.name}

            class Ticking(DataFlow):
                def __iter__(self):
                    while True:
                        time.sleep(0.01)
                        yield [os.getpid()]

            ds = Ticking()
            df = {self.script_call}
            df.reset_state()
            pids = set()
            for dp in df:
                pids.add(dp[0])
                if len(pids) == 2:
                    break
            print(*pids, flush=True)
            time.sleep(60)
            """
        )
        parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        pids = []
        try:
            pids = [int(p) for p in parent.stdout.readline().split()]
            assert len(pids) == 2 and all(process_alive(p) for p in pids)
            parent.kill()
            parent.wait(10)
            deadline = time.monotonic() + 5.0
            while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not any(process_alive(p) for p in pids)
        finally:
            parent.kill()
            parent.wait(10)
            parent.stdout.close()
            for pid in pids:  # do not leave orphans behind if the test failed
                if process_alive(pid):
                    os.kill(pid, signal.SIGKILL)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_global_random_generators_are_reseeded_in_each_worker(self):
        def streams(seed):
            with self.make(functools.partial(Draws, 5), 2, seed=seed) as df:
                df.reset_state()
                return [[s[1:] for s in stream] for stream in per_worker(df, 1)]

        # fork copies the parent's generators: without reseeding both would draw the same
        (first,), (second,) = streams(None)
        assert first[0] != second[0] and first[1] != second[1]
        seeded = streams(5)
        assert seeded == streams(5)
        assert seeded[0] != seeded[1]

    @pytest.mark.timeout(SPAWN_TIMEOUT_S)
    @pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
    def test_start_method_runs_a_picklable_ds(self, start_method, multiprocessing_helpers):
        lst = [[i] for i in range(6)]
        out = check_dataflow(
            lambda: self.make(
                functools.partial(DataFromList, lst),
                2,
                exactly_once=True,
                start_method=start_method,
            )
        )
        assert sorted(out) == lst

    @pytest.mark.timeout(SPAWN_TIMEOUT_S)
    def test_spawn_reports_a_worker_error(self, multiprocessing_helpers):
        with self.make(functools.partial(Failing, good=1), start_method="spawn") as df:
            df.reset_state()
            with pytest.raises(WorkerError, match="raised ValueError: bad datapoint 1"):
                one_pass(df)  # an endless stream: only the error ends it

    @pytest.mark.timeout(SPAWN_TIMEOUT_S)
    @pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
    def test_lambdas_and_local_functions_work_under_spawn_and_forkserver(
        self, start_method, multiprocessing_helpers
    ):
        offset = 10

        def shift(dp):  # a local function, which plain pickle refuses
            return [dp[0] + offset]

        source = functools.partial(MapData, MapData(Sharded(6), lambda dp: [dp[0] * 2]), shift)
        with self.make(source, 2, start_method=start_method, exactly_once=True) as df:
            df.reset_state()
            assert sorted(dp[0] for dp in df) == [10, 12, 14, 16, 18, 20]

    @pytest.mark.timeout(TIMEOUT_S)
    def test_spawn_with_an_unpicklable_ds_is_a_type_error_about_pickling(
        self, multiprocessing_helpers
    ):
        before = live_threads(), live_child_pids()
        unpicklable = Counting(3)
        unpicklable.lock = threading.Lock()  # made in __init__ instead of reset_state()
        with self.make(lambda: MapData(unpicklable, lambda dp: dp), 2, start_method="spawn") as df:
            with pytest.raises(TypeError) as excinfo:
                df.reset_state()
        assert str(excinfo.value).startswith(
            f"{self.name} with start_method='spawn' must pickle its dataflow and functions to "
            "send them to its workers, which failed: "
        )
        assert "lock" in str(excinfo.value)
        assert str(excinfo.value).endswith(
            "Use start_method='fork', or make them picklable: open files, locks, sockets, "
            "generators and the like must be created in reset_state(), not in __init__"
        )
        assert no_leftovers(*before)
        with pytest.raises(RuntimeError, match="was closed"):
            next(iter(df))


# ---- each runner --------------------------------------------------------------------


class TestMultiProcessRunnerZMQ(_ProcessRunnerTests):
    name = "MultiProcessRunnerZMQ"
    script_call = "MultiProcessRunnerZMQ(ds, num_proc=2)"
    unserializable = {1, 2}

    def make(self, source, workers=1, **kwargs):
        return MultiProcessRunnerZMQ(source(), num_proc=workers, **kwargs)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_round_trips_arrays_of_every_dtype_and_shape(self):
        shapes = [(), (0,), (5,), (2, 0, 4), (2, 3)]
        dp = [sample(dtype, shape) for dtype in DTYPES for shape in shapes]
        dp += [sample(dtype, (4, 6))[::2, ::-3] for dtype in DTYPES]  # not contiguous
        dp += [sample(dtype, (3, 4)).T for dtype in DTYPES]  # Fortran order
        (out,) = round_trip_zmq([dp])
        assert_same(out, dp)

    @pytest.mark.timeout(TIMEOUT_S)
    @pytest.mark.parametrize("dtype", DTYPES)
    def test_large_arrays_arrive_intact_and_writable(self, dtype):
        n = (1 << 16) // np.dtype(dtype).itemsize + 7  # just over the out-of-band size
        big = sample(dtype, (n,), seed=1)
        strided = sample(dtype, (2, n), seed=2)[:, ::-1]
        dp = [big, strided, sample(dtype, (3,)), {"again": big}]
        (out,) = round_trip_zmq([dp, dp])[:1]
        assert_same(out, dp)
        for arr in (out[0], out[1], out[2], out[3]["again"]):
            assert arr.flags.writeable and arr.flags.c_contiguous
            arr[0] = arr[-1]  # really writable

    @pytest.mark.timeout(TIMEOUT_S)
    def test_round_trips_nested_python_values(self):
        dp = [
            None,
            True,
            False,
            0,
            -(2**63),
            2**64 - 1,
            1.5,
            float("inf"),
            "text é",
            "",
            b"\x00bytes",
            [],
            {},
            [1, [2, [3, {"deep": [None, b"x"]}]]],
            {"a": {"b": [1.0, "c"]}, "n": np.arange(3)},
            (1, 2),  # a tuple comes back as a list
            np.float32(2.5),
            np.int64(-7),
            np.bool_(True),
        ]
        (out,) = round_trip_zmq([dp])
        assert_same(out, dp)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_round_trips_dict_datapoints(self):
        dps = [
            {"image": sample(np.uint8, (40, 40, 41)), "label": i, "name": str(i)} for i in range(3)
        ]
        out = round_trip_zmq(dps)
        assert_same(out, dps)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_pickle_serializer_carries_any_picklable_object(self):
        dps = [[{1, 2}, (3, "t"), frozenset([4]), sample(np.float32, (300, 300))]]
        out = round_trip_zmq(dps, serializer=PickleSerializer())
        assert out[0][:3] == dps[0][:3]
        assert type(out[0][1]) is tuple
        np.testing.assert_array_equal(out[0][3], dps[0][3])

    @pytest.mark.timeout(60)
    @settings(
        max_examples=12,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(datapoints, min_size=1, max_size=4))
    def test_wire_round_trip_law(self, dps):
        out = round_trip_zmq(dps)
        assert_same(out, dps)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_a_datapoint_may_be_yielded_again_with_its_large_arrays(self):
        big = sample(np.float64, (10000,))
        out = check_dataflow(
            lambda: self.make(
                functools.partial(DataFromList, [[big], [big]], shuffle=False),
                2,
                exactly_once=True,
            )
        )
        assert len(out) == 2
        for (arr,) in out:
            np.testing.assert_array_equal(arr, big)

    @pytest.mark.timeout(TIMEOUT_S)
    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"num_proc": 0}, ValueError, "num_proc must be a positive int, got 0"),
            ({"num_proc": 1.0}, TypeError, "num_proc must be a positive int, got 1.0"),
            ({"num_proc": True}, TypeError, "num_proc must be a positive int, got True"),
            ({"hwm": 0}, ValueError, "hwm must be a positive int, got 0"),
            ({"hwm": "50"}, TypeError, "hwm must be a positive int, got '50'"),
            ({"exactly_once": 1}, TypeError, "exactly_once must be a bool, got 1"),
            ({"seed": -1}, ValueError, "seed must be None or a non-negative int, got -1"),
            ({"seed": 1.5}, TypeError, "seed must be None or a non-negative int, got 1.5"),
            (
                {"start_method": "thread"},
                ValueError,
                "start_method must be one of 'fork', 'spawn', 'forkserver' or None, got 'thread'",
            ),
            (
                {"serializer": "pickle"},
                TypeError,
                "serializer must be a Serializer (e.g. MsgpackSerializer()) or None, got 'pickle'",
            ),
        ],
    )
    def test_argument_errors(self, kwargs, error, message):
        with pytest.raises(error) as excinfo:
            MultiProcessRunnerZMQ(Counting(3), **kwargs)
        assert type(excinfo.value) is error and str(excinfo.value) == message

    @pytest.mark.timeout(TIMEOUT_S)
    def test_ds_must_be_a_dataflow(self):
        with pytest.raises(TypeError) as excinfo:
            MultiProcessRunnerZMQ([[1], [2]], num_proc=1)
        assert str(excinfo.value) == (
            "ds must be a DataFlow, got list; wrap a list in DataFromList(...) or any other "
            "iterable in DataFromIterable(...)"
        )

    @pytest.mark.timeout(TIMEOUT_S)
    def test_keyword_options_and_defaults(self):
        df = MultiProcessRunnerZMQ(Counting(3))
        assert (df.num_proc, df.hwm) == (1, 50)
        assert MultiProcessRunnerZMQ(Counting(3), 2, 10).hwm == 10
        with pytest.raises(TypeError):
            MultiProcessRunnerZMQ(Counting(3), 2, 10, True)


class TestMultiProcessRunner(_ProcessRunnerTests):
    name = "MultiProcessRunner"
    script_call = "MultiProcessRunner(ds, num_prefetch=4, num_proc=2)"
    unserializable = threading.Lock()

    def make(self, source, workers=1, **kwargs):
        return MultiProcessRunner(source(), num_prefetch=4, num_proc=workers, **kwargs)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_carries_any_picklable_object_by_default(self):
        dp = [{1, 2}, (3, "t"), frozenset([4]), sample(np.float32, (300, 300))]
        with self.make(functools.partial(DataFromList, [dp], shuffle=False)) as df:
            df.reset_state()
            (out,) = list(df)
        assert out[:3] == dp[:3] and type(out[1]) is tuple
        np.testing.assert_array_equal(out[3], dp[3])

    @pytest.mark.timeout(TIMEOUT_S)
    def test_msgpack_serializer_round_trips_arrays(self):
        dp = [sample(dtype, (2, 3)) for dtype in DTYPES] + [{"a": [1, "b", None]}]
        with self.make(
            functools.partial(DataFromList, [dp], shuffle=False), serializer=MsgpackSerializer()
        ) as df:
            df.reset_state()
            (out,) = list(df)
        assert_same(out, dp)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_a_queue_of_one_datapoint_still_delivers_everything(self):
        lst = [[i] for i in range(20)]
        with MultiProcessRunner(DataFromList(lst), 1, 3, exactly_once=True) as df:
            df.reset_state()
            assert sorted(list(df)) == lst

    @pytest.mark.timeout(TIMEOUT_S)
    @pytest.mark.parametrize(
        ("args", "kwargs", "error", "message"),
        [
            ((0, 1), {}, ValueError, "num_prefetch must be a positive int, got 0"),
            ((None, 1), {}, TypeError, "num_prefetch must be a positive int, got None"),
            ((2, 0), {}, ValueError, "num_proc must be a positive int, got 0"),
            ((2, -1), {}, ValueError, "num_proc must be a positive int, got -1"),
            ((2, 1), {"exactly_once": "yes"}, TypeError, "exactly_once must be a bool, got 'yes'"),
            ((2, 1), {"seed": -3}, ValueError, "seed must be None or a non-negative int, got -3"),
            (
                (2, 1),
                {"start_method": "Fork"},
                ValueError,
                "start_method must be one of 'fork', 'spawn', 'forkserver' or None, got 'Fork'",
            ),
            (
                (2, 1),
                {"serializer": PickleSerializer},
                TypeError,
                "serializer must be a Serializer (e.g. MsgpackSerializer()) or None, "
                f"got {PickleSerializer!r}",
            ),
        ],
    )
    def test_argument_errors(self, args, kwargs, error, message):
        with pytest.raises(error) as excinfo:
            MultiProcessRunner(Counting(3), *args, **kwargs)
        assert type(excinfo.value) is error and str(excinfo.value) == message


class TestMultiThreadRunner(_RunnerTests):
    name = "MultiThreadRunner"

    def make(self, source, workers=1, **kwargs):
        return MultiThreadRunner(source, num_prefetch=4, num_thread=workers, **kwargs)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_exactly_once_accepts_a_get_df_that_picks_the_shard_when_it_builds(self):
        # Unknown length: the thread checks that its dataflow asked for its shard, and
        # the asking was done by get_df, before the thread started.
        def get_df():
            info = get_worker_info()
            return Unsized(12) if info is None else ShardOf(12, info.index, info.num_workers)

        out = check_dataflow(lambda: self.make(get_df, 3, exactly_once=True), num_passes=2)
        assert sorted(out) == [[i] for i in range(12)]

    @pytest.mark.timeout(TIMEOUT_S)
    def test_worker_error_has_the_original_exception_as_cause(self):
        err = self.failed_worker_error()
        assert err.pid == os.getpid()
        assert type(err.__cause__) is ValueError
        assert str(err.__cause__) == "bad datapoint 1"

    @pytest.mark.timeout(TIMEOUT_S)
    def test_yields_the_datapoints_themselves(self):
        lst = [[np.zeros(3)], [{"a": object()}]]
        with self.make(functools.partial(DataFromList, lst, shuffle=False)) as df:
            df.reset_state()
            out = list(df)
        assert all(o is dp for o, dp in zip(out, lst))

    @pytest.mark.timeout(TIMEOUT_S)
    def test_get_df_runs_once_per_thread_knowing_its_worker(self):
        seen = []

        def get_df():
            seen.append(get_worker_info())
            return Counting(2)

        with self.make(get_df, 3) as df:
            df.reset_state()
            assert len(one_pass(df)) == 2
        assert sorted(info.index for info in seen[-3:]) == [0, 1, 2]
        assert all(info.num_workers == 3 for info in seen[-3:])

    @pytest.mark.timeout(TIMEOUT_S)
    def test_get_df_returning_the_same_dataflow_twice_is_a_value_error(self):
        shared = Counting(3)
        with self.make(lambda: shared, 2) as df:
            with pytest.raises(ValueError) as excinfo:
                df.reset_state()
        assert str(excinfo.value) == (
            "get_df must return a new dataflow on every call, but it returned the same one "
            "twice; e.g. get_df=lambda: DataFromList(items) instead of lambda: df"
        )

    @pytest.mark.timeout(TIMEOUT_S)
    def test_get_df_returning_something_else_is_a_type_error(self):
        with self.make(lambda: [[1], [2]], 2) as df:
            with pytest.raises(TypeError) as excinfo:
                df.reset_state()
        assert str(excinfo.value) == "get_df must return a DataFlow, got list"

    @pytest.mark.timeout(TIMEOUT_S)
    def test_close_returns_quickly_while_a_thread_is_stuck_in_its_source(self):
        before = live_threads(), live_child_pids()
        df = self.make(functools.partial(Sleeping, 2.0), 2)
        try:
            df.reset_state()
            assert next(iter(df)) == [0]
            time.sleep(0.1)  # the threads are in time.sleep(2) now
        finally:
            started = time.monotonic()
            df.close()
            elapsed = time.monotonic() - started
        assert elapsed < CLOSE_BOUND_S
        assert no_leftovers(*before, timeout=4.0)  # each ends once its sleep does

    @pytest.mark.timeout(TIMEOUT_S)
    def test_threads_of_a_slow_source_stop_at_their_next_datapoint_after_close(self):
        before = live_threads(), live_child_pids()
        df = MultiThreadRunner(functools.partial(Ticking, 0.2), num_prefetch=50, num_thread=2)
        try:
            df.reset_state()
            next(iter(df))
        finally:
            df.close()
        # the threads must not go on filling the queue that nobody reads any more
        assert no_leftovers(*before, timeout=1.0)

    @pytest.mark.timeout(TIMEOUT_S)
    @pytest.mark.parametrize(
        ("args", "kwargs", "error", "message"),
        [
            ((None, 2, 1), {}, TypeError, "get_df must be callable, got None"),
            ((Counting, 0, 1), {}, ValueError, "num_prefetch must be a positive int, got 0"),
            ((Counting, 2, 0), {}, ValueError, "num_thread must be a positive int, got 0"),
            ((Counting, 2, 2.0), {}, TypeError, "num_thread must be a positive int, got 2.0"),
            (
                (Counting, 2, 1),
                {"exactly_once": None},
                TypeError,
                "exactly_once must be a bool, got None",
            ),
            (
                (Counting, 2, 1),
                {"seed": "1"},
                TypeError,
                "seed must be None or a non-negative int, got '1'",
            ),
        ],
    )
    def test_argument_errors(self, args, kwargs, error, message):
        with pytest.raises(error) as excinfo:
            MultiThreadRunner(*args, **kwargs)
        assert type(excinfo.value) is error and str(excinfo.value) == message


# ---- aliases and errors ---------------------------------------------------------------


class TestPrefetchData:
    @pytest.mark.timeout(TIMEOUT_S)
    def test_is_multi_process_runner(self):
        assert PrefetchData is MultiProcessRunner is dataflow.PrefetchData


class TestMultiProcessPrefetchData:
    @pytest.mark.timeout(TIMEOUT_S)
    def test_is_multi_process_runner(self):
        assert MultiProcessPrefetchData is MultiProcessRunner is dataflow.MultiProcessPrefetchData


class TestPrefetchDataZMQ:
    @pytest.mark.timeout(TIMEOUT_S)
    def test_is_multi_process_runner_zmq(self):
        assert PrefetchDataZMQ is MultiProcessRunnerZMQ is dataflow.PrefetchDataZMQ

    @pytest.mark.timeout(TIMEOUT_S)
    def test_tensorpack_call_runs(self):
        # tensorpack: PrefetchDataZMQ(ds, nr_proc) became (ds, num_proc)
        with PrefetchDataZMQ(Counting(3), 1) as df:
            df.reset_state()
            assert one_pass(df) == [0, 1, 2]


class TestMultiThreadPrefetchData:
    @pytest.mark.timeout(TIMEOUT_S)
    def test_is_multi_thread_runner(self):
        assert MultiThreadPrefetchData is MultiThreadRunner is dataflow.MultiThreadPrefetchData


class TestWorkerError:
    @pytest.mark.timeout(TIMEOUT_S)
    def test_is_a_runtime_error_with_its_details(self):
        err = WorkerError(
            "boom", worker_index=2, pid=99, exc_type="KeyError", remote_traceback="tb"
        )
        assert isinstance(err, RuntimeError) and str(err) == "boom"
        assert (err.worker_index, err.pid, err.exc_type, err.remote_traceback) == (
            2,
            99,
            "KeyError",
            "tb",
        )

    @pytest.mark.timeout(TIMEOUT_S)
    def test_pickles_with_its_details(self):
        err = WorkerError(
            "boom", worker_index=2, pid=99, exc_type="KeyError", remote_traceback="tb"
        )
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is WorkerError and str(back) == "boom"
        assert (back.worker_index, back.pid, back.exc_type, back.remote_traceback) == (
            2,
            99,
            "KeyError",
            "tb",
        )

    @pytest.mark.timeout(TIMEOUT_S)
    def test_exception_of_a_non_builtin_type_is_named_with_its_module(self):
        with MultiProcessRunnerZMQ(MapData(Counting(3), raise_source_broken)) as df:
            df.reset_state()
            with pytest.raises(WorkerError) as excinfo:
                next(iter(df))
        name = f"{SourceBroken.__module__}.SourceBroken"
        assert excinfo.value.exc_type == name
        assert f"raised {name}: inner" in str(excinfo.value)

    @pytest.mark.timeout(TIMEOUT_S)
    def test_an_exception_whose_str_fails_is_still_reported(self):
        with MultiProcessRunnerZMQ(MapData(Counting(3), raise_unprintable)) as df:
            df.reset_state()
            with pytest.raises(WorkerError) as excinfo:
                next(iter(df))
        assert excinfo.value.exc_type == f"{Unprintable.__module__}.Unprintable"
        assert "<str() of the" in str(excinfo.value) and "raised RuntimeError>" in str(
            excinfo.value
        )


class SourceBroken(Exception):
    """An exception type of the user's own."""


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str")


def raise_unprintable(dp):
    raise Unprintable()


def raise_source_broken(dp):
    raise SourceBroken("inner")


class TestWorkerDiedError:
    @pytest.mark.timeout(TIMEOUT_S)
    def test_is_a_worker_error_with_an_exit_code(self):
        err = WorkerDiedError("gone", worker_index=1, pid=5, exitcode=-9)
        assert isinstance(err, WorkerError)
        assert (err.worker_index, err.pid, err.exitcode, err.exc_type) == (1, 5, -9, "")

    @pytest.mark.timeout(TIMEOUT_S)
    def test_pickles_with_its_exit_code(self):
        err = WorkerDiedError("gone", worker_index=1, pid=5, exitcode=-9)
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is WorkerDiedError and str(back) == "gone"
        assert (back.worker_index, back.pid, back.exitcode) == (1, 5, -9)

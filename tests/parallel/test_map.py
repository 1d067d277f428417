"""Tests of the parallel mappers: MultiThreadMapData, MultiProcessMapDataZMQ and
MultiProcessMapAndBatchDataZMQ (and their tensorpack aliases)."""

from __future__ import annotations

import collections
import gc
import itertools
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import dataflow
from dataflow import BatchData, DataFlow, DataFromGenerator, DataFromList, MapData
from dataflow.base import ReentrancyError
from dataflow.parallel import (
    MultiProcessMapAndBatchData,
    MultiProcessMapAndBatchDataZMQ,
    MultiProcessMapData,
    MultiProcessMapDataZMQ,
    MultiThreadMapData,
    WorkerDiedError,
    WorkerError,
)
from dataflow.parallel._loops import CHUNK_S
from dataflow.serialize import PickleSerializer
from dataflow.testing import check_dataflow, live_child_pids
from dataflow.worker import get_worker_info

# A worker death must be reported this fast (the library checks every 0.25 s);
# generous, since the machine running the tests may be loaded.
_DEATH_REPORT_S = 5.0


def _source(n):
    return DataFromList([[i] for i in range(n)], shuffle=False)


def _square(dp):
    """Module level, so spawned workers can unpickle it."""
    return [dp[0] ** 2]


def _identity(dp):
    return dp


def _squares(n):
    return [[i**2] for i in range(n)]


def _values(datapoints):
    return [dp[0] for dp in datapoints]


def _drain(df, passes=200):
    """Iterate *df* for up to *passes* passes: without strict, a worker's failure
    may surface only in a later pass, after other workers completed this one."""
    for _ in range(passes):
        for _ in df:
            pass


def _jitter(dp):
    """Square, after a small sleep that differs by datapoint, so finishing order
    differs from source order."""
    time.sleep(0.001 * ((dp[0] * 7) % 5))
    return [dp[0] ** 2]


@pytest.fixture(scope="module")
def resource_tracker():
    """Start multiprocessing's resource tracker before the test's leftover snapshot.

    Spawned workers share their stop event (a semaphore), which registers it
    with the resource tracker, a helper process that Python starts once and
    keeps until exit; it is not a worker the mapper leaves behind. The same
    holds for the fork server of the forkserver start method.
    """
    multiprocessing.resource_tracker.ensure_running()
    multiprocessing.forkserver.ensure_running()


class _Mappers:
    """Behaviour shared by MultiThreadMapData and MultiProcessMapDataZMQ.

    Subclasses define ``make(ds, map_func, num_workers=2, **kwargs)``.
    """

    def make(self, ds, map_func, num_workers=2, **kwargs):
        raise NotImplementedError

    # -- the contract ---------------------------------------------------------------

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("ordered", [False, True])
    def test_keeps_the_dataflow_contract_when_strict(self, ordered):
        first = check_dataflow(
            lambda: self.make(_source(20), _square, strict=True, ordered=ordered)
        )
        assert sorted(_values(first)) == _values(_squares(20))

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("ordered", [False, True])
    def test_keeps_the_dataflow_contract_when_not_strict(self, ordered):
        first = check_dataflow(lambda: self.make(_source(20), _square, ordered=ordered))
        assert len(first) == 20

    @pytest.mark.timeout(60)
    def test_len_is_the_length_of_the_source(self):
        with self.make(_source(13), _square) as df:
            assert len(df) == 13

    # -- strict passes --------------------------------------------------------------

    @pytest.mark.timeout(60)
    def test_strict_pass_yields_every_mapped_datapoint_once(self):
        with self.make(_source(50), _jitter, num_workers=3, strict=True) as df:
            df.reset_state()
            for _ in range(4):
                assert sorted(_values(df)) == _values(_squares(50))

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("taken", [0, 1, 7])
    def test_strict_pass_after_an_abandoned_pass_is_complete(self, taken):
        with self.make(_source(30), _jitter, num_workers=3, strict=True) as df:
            df.reset_state()
            it = iter(df)
            for _ in range(taken):
                next(it)
            it.close()
            assert sorted(_values(df)) == _values(_squares(30))
            for _ in df:  # abandoned with break
                break
            assert sorted(_values(df)) == _values(_squares(30))

    @pytest.mark.timeout(60)
    def test_strict_ordered_passes_are_in_source_order(self):
        with self.make(_source(40), _jitter, num_workers=3, strict=True, ordered=True) as df:
            df.reset_state()
            for _ in range(3):
                assert list(df) == _squares(40)
            it = iter(df)
            assert [next(it) for _ in range(5)] == _squares(5)
            it.close()
            assert list(df) == _squares(40)

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("ordered", [False, True])
    def test_strict_drops_none_results(self, ordered):
        def evens(dp):
            return None if dp[0] % 2 else [dp[0]]

        with self.make(_source(21), evens, strict=True, ordered=ordered) as df:
            df.reset_state()
            for _ in range(2):
                out = _values(df)
                assert (out if ordered else sorted(out)) == list(range(0, 21, 2))

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("buffer_size", [1, 2])
    def test_small_buffer_with_many_workers_loses_nothing(self, buffer_size):
        with self.make(
            _source(500), _square, num_workers=4, strict=True, buffer_size=buffer_size
        ) as df:
            df.reset_state()
            for _ in range(2):
                assert sorted(_values(df)) == _values(_squares(500))

    @pytest.mark.timeout(60)
    def test_large_arrays_arrive_intact_and_writable(self):
        big = [[np.arange(20_000, dtype=np.float64) + i, i] for i in range(8)]  # 160 KB each

        def double(dp):
            assert dp[0].flags.writeable
            dp[0][0] = -1.0  # inputs may be written to (a copy for process workers)
            return [dp[0] * 2, np.full((300, 300), dp[1], np.uint8), dp[1]]

        with self.make(
            DataFromList([[a.copy(), i] for a, i in big], shuffle=False),
            double,
            strict=True,
            ordered=True,
        ) as df:
            df.reset_state()
            out = list(df)
        assert len(out) == 8
        for i, (doubled, square, k) in enumerate(out):
            expected = big[i][0] * 2
            expected[0] = -2.0
            assert k == i
            np.testing.assert_array_equal(doubled, expected)
            assert doubled.dtype == np.float64 and square.dtype == np.uint8
            assert square.shape == (300, 300) and (square == i).all()
            assert doubled.flags.writeable and square.flags.writeable
            doubled[:] = 0.0
            square[:] = 0

    @pytest.mark.timeout(60)
    def test_maps_dict_datapoints(self):
        ds = DataFromList([{"x": i, "v": np.full(3, i)} for i in range(10)], shuffle=False)

        def f(dp):
            return {"x": dp["x"] + 1, "v": dp["v"] * 2, "name": f"n{dp['x']}"}

        with self.make(ds, f, strict=True, ordered=True) as df:
            df.reset_state()
            out = list(df)
        assert [dp["x"] for dp in out] == list(range(1, 11))
        assert [dp["name"] for dp in out] == [f"n{i}" for i in range(10)]
        for i, dp in enumerate(out):
            np.testing.assert_array_equal(dp["v"], np.full(3, 2 * i))

    @pytest.mark.timeout(60)
    def test_keeps_tuple_dict_keys(self):
        ds = DataFromList([{(1, 2): i, "k": i} for i in range(6)], shuffle=False)

        def f(dp):
            return {(dp["k"], "x"): dp[(1, 2)], (1, 2): dp[(1, 2)] * 10}

        with self.make(ds, f, strict=True, ordered=True) as df:
            df.reset_state()
            out = list(df)
        assert out == [{(i, "x"): i, (1, 2): i * 10} for i in range(6)]

    # -- non-strict passes ----------------------------------------------------------

    @pytest.mark.timeout(60)
    def test_non_strict_pass_yields_len_results(self):
        with self.make(_source(17), _jitter, num_workers=3, buffer_size=5) as df:
            df.reset_state()
            for _ in range(4):
                out = _values(df)
                assert len(out) == 17
                assert set(out) <= set(_values(_squares(17)))

    @pytest.mark.timeout(60)
    def test_non_strict_ordered_stream_is_the_repeated_source_in_order(self):
        with self.make(_source(12), _jitter, num_workers=3, buffer_size=7, ordered=True) as df:
            df.reset_state()
            out = []
            for _ in range(3):
                out.extend(df)
            it = iter(df)  # an abandoned pass: the stream continues where it stopped
            out.append(next(it))
            it.close()
            out.extend(df)
        assert out == _squares(12) * 4 + _squares(1)

    @pytest.mark.timeout(60)
    def test_non_strict_with_one_worker_and_one_task_is_in_source_order(self):
        with self.make(_source(9), _jitter, num_workers=1, buffer_size=1) as df:
            df.reset_state()
            out = list(itertools.chain(df, df, df))
        assert out == _squares(9) * 3

    @pytest.mark.timeout(60)
    def test_non_strict_unordered_passes_hold_each_datapoint_about_once_per_pass(self):
        # Over k passes, the results are k * n of the endless stream over the
        # source; only tasks around the passes' ends (at most a few buffers)
        # can be missing or extra, so each value occurs k times, give or take 1.
        n, k = 20, 6
        with self.make(_source(n), _jitter, num_workers=3, buffer_size=3) as df:
            df.reset_state()
            out = list(itertools.chain.from_iterable(df for _ in range(k)))
        counts = collections.Counter(_values(out))
        assert len(out) == n * k
        assert set(counts) == set(_values(_squares(n)))
        assert all(k - 1 <= c <= k + 1 for c in counts.values()), counts

    @pytest.mark.timeout(60)
    def test_non_strict_ordered_drops_none_results_in_every_pass(self):
        def evens(dp):
            return None if dp[0] % 2 else [dp[0]]

        with self.make(_source(10), evens, buffer_size=4, ordered=True) as df:
            df.reset_state()
            for _ in range(3):
                assert _values(df) == [0, 2, 4, 6, 8]

    @pytest.mark.timeout(60)
    def test_non_strict_source_of_unknown_length_streams_forever(self):
        ds = DataFromGenerator(lambda: ([i] for i in range(5)))
        with self.make(ds, _square, ordered=True) as df:
            df.reset_state()
            out = list(itertools.islice(df, 23))
        assert out == (_squares(5) * 5)[:23]

    @pytest.mark.timeout(60)
    def test_non_strict_empty_source_of_unknown_length_raises(self):
        ds = DataFromGenerator(lambda: iter(()))
        with self.make(ds, _square) as df:
            df.reset_state()
            with pytest.raises(
                RuntimeError,
                match="DataFromGenerator yielded no datapoint in a whole pass; with strict=False",
            ):
                next(iter(df))

    @pytest.mark.timeout(60)
    def test_map_func_runs_in_a_worker(self):
        def where(dp):
            info = get_worker_info()
            return [info.index, info.num_workers]

        with self.make(_source(20), where, num_workers=2, strict=True) as df:
            df.reset_state()
            out = list(df)
        assert {n for _, n in out} == {2}
        assert {i for i, _ in out} <= {0, 1}

    # -- unhappy paths --------------------------------------------------------------

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("strict", [False, True])
    def test_exception_in_map_func_raises_worker_error(self, strict):
        def f(dp):
            if dp[0] == 3:
                raise ValueError(f"bad datapoint {dp[0]}")
            return dp

        with self.make(_source(10), f, strict=strict) as df:
            df.reset_state()
            with pytest.raises(WorkerError) as info:
                _drain(df)
        err = info.value
        name = type(df).__name__
        assert not isinstance(err, WorkerDiedError)
        assert err.exc_type == "ValueError"
        assert err.worker_index in (0, 1)
        assert str(err).startswith(
            f"{name} worker {err.worker_index} (pid {err.pid}) raised ValueError: bad datapoint 3"
        )
        assert "\n\nTraceback in the worker:\n" in str(err)
        assert "in f\n" in err.remote_traceback
        assert err.remote_traceback.rstrip().endswith("ValueError: bad datapoint 3")

    @pytest.mark.timeout(60)
    def test_iterating_after_a_worker_failed_raises(self):
        def f(dp):
            raise KeyError("nope")

        with self.make(_source(4), f, strict=True) as df:
            df.reset_state()
            with pytest.raises(WorkerError):
                list(df)
            name = type(df).__name__
            with pytest.raises(
                RuntimeError,
                match=rf"^{name} stopped after a worker failed \({name} worker \d \(pid \d+\) "
                r"raised KeyError: 'nope'\); build a new one$",
            ):
                next(iter(df))

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("strict", [False, True])
    def test_exception_in_the_source_propagates_and_close_cleans_up(self, strict):
        def gen():
            yield [0]
            yield [1]
            raise OSError("disk on fire")

        df = self.make(DataFromGenerator(gen, size=5), _square, strict=strict)
        try:
            df.reset_state()
            with pytest.raises(OSError, match="^disk on fire$"):
                list(df)
        finally:
            df.close()

    @pytest.mark.timeout(60)
    def test_consumer_may_stop_early_and_close(self):
        df = self.make(_source(100), _jitter, num_workers=3)
        df.reset_state()
        try:
            for k, _ in enumerate(df):
                if k == 2:
                    break
        finally:
            df.close()

    @pytest.mark.timeout(60)
    def test_exception_in_the_loop_body_propagates_and_with_cleans_up(self):
        with pytest.raises(ZeroDivisionError), self.make(_source(100), _square) as df:
            df.reset_state()
            for _ in df:
                1 / 0  # noqa: B018

    @pytest.mark.timeout(60)
    def test_close_twice_is_harmless(self):
        df = self.make(_source(5), _square, strict=True)
        df.reset_state()
        assert len(list(df)) == 5
        df.close()
        df.close()

    @pytest.mark.timeout(60)
    def test_garbage_collection_stops_the_workers(self):
        df = self.make(_source(30), _jitter, strict=True)
        df.reset_state()
        it = iter(df)
        next(it)
        del it, df  # the fixture checks that no worker survives
        gc.collect()

    @pytest.mark.timeout(60)
    def test_close_without_reset_state_is_harmless(self):
        df = self.make(_source(5), _square)
        df.close()
        df.close()

    @pytest.mark.timeout(60)
    def test_iterating_after_close_raises(self):
        df = self.make(_source(5), _square)
        df.reset_state()
        df.close()
        with pytest.raises(
            RuntimeError,
            match=f"^{type(df).__name__} was closed; build a new one to iterate again$",
        ):
            next(iter(df))
        with pytest.raises(
            RuntimeError,
            match=f"^{type(df).__name__} was closed; build a new "
            r"one instead of calling reset_state\(\) again$",
        ):
            df.reset_state()

    @pytest.mark.timeout(60)
    def test_reset_state_twice_raises(self):
        with self.make(_source(5), _square) as df:
            df.reset_state()
            name = type(df).__name__
            with pytest.raises(
                RuntimeError,
                match=rf"^{name}\.reset_state\(\) was called twice; "
                "call it once, in the process that iterates",
            ):
                df.reset_state()
            assert len(list(df)) == 5  # still usable

    @pytest.mark.timeout(60)
    def test_iterating_before_reset_state_raises(self):
        with self.make(_source(5), _square) as df:
            with pytest.raises(
                RuntimeError,
                match=f"^{type(df).__name__} must be reset before "
                r"iterating: call reset_state\(\) once",
            ):
                next(iter(df))

    @pytest.mark.timeout(60)
    def test_two_iterations_at_once_raise_reentrancy_error(self):
        with self.make(_source(10), _square, strict=True) as df:
            df.reset_state()
            first = iter(df)
            next(first)
            with pytest.raises(
                ReentrancyError, match=f"^{type(df).__name__} is already being iterated elsewhere"
            ):
                next(iter(df))
            first.close()
            assert len(list(df)) == 10

    @pytest.mark.timeout(60)
    def test_rejects_bad_arguments(self):
        ds = _source(3)
        cases = [
            (dict(num_workers=0), ValueError, "must be a positive int, got 0"),
            (dict(num_workers=1.5), TypeError, "must be a positive int, got 1.5"),
            (dict(map_func=3), TypeError, "map_func must be callable, got 3"),
            (dict(buffer_size=0), ValueError, "buffer_size must be a positive int, got 0"),
            (dict(buffer_size=None), TypeError, "buffer_size must be a positive int, got None"),
            (dict(strict=1), TypeError, "strict must be a bool, got 1"),
            (dict(ordered="yes"), TypeError, "ordered must be a bool, got 'yes'"),
            (dict(seed=-1), ValueError, "seed must be None or a non-negative int, got -1"),
        ]
        for kwargs, kind, message in cases:
            kwargs = {"map_func": _square, **kwargs}
            with pytest.raises(kind) as info:
                self.make(ds, **kwargs)
            assert str(info.value).endswith(message), (kwargs, str(info.value))


class TestMultiThreadMapData(_Mappers):
    def make(self, ds, map_func, num_workers=2, **kwargs):
        return MultiThreadMapData(ds, num_workers, map_func, **kwargs)

    @pytest.mark.timeout(60)
    def test_rejects_a_bad_num_thread(self):
        with pytest.raises(ValueError, match="^num_thread must be a positive int, got 0$"):
            MultiThreadMapData(_source(3), 0, _square)

    @pytest.mark.timeout(60)
    def test_worker_error_has_the_original_exception_as_cause(self):
        raised = []

        def f(dp):
            exc = ValueError("thread boom")
            raised.append(exc)
            raise exc

        with self.make(_source(1), f, num_workers=1, strict=True) as df:
            df.reset_state()
            with pytest.raises(WorkerError) as info:
                list(df)
        assert info.value.__cause__ is raised[0]
        assert info.value.pid == os.getpid()
        assert info.value.worker_index == 0

    @pytest.mark.timeout(60)
    def test_map_func_runs_in_threads_of_this_process(self):
        main = threading.get_ident()

        def f(dp):
            return [os.getpid(), threading.get_ident()]

        with self.make(_source(20), f, num_workers=3, strict=True) as df:
            df.reset_state()
            out = list(df)
        assert {pid for pid, _ in out} == {os.getpid()}
        assert main not in {tid for _, tid in out}

    @pytest.mark.timeout(60)
    def test_results_are_the_objects_map_func_returned(self):
        made = {}

        def f(dp):
            made[dp[0]] = [object()]
            return made[dp[0]]

        with self.make(_source(5), f, strict=True, ordered=True) as df:
            df.reset_state()
            out = list(df)
        assert all(out[i] is made[i] for i in range(5))


class TestMultiProcessMapDataZMQ(_Mappers):
    def make(self, ds, map_func, num_workers=2, **kwargs):
        return MultiProcessMapDataZMQ(ds, num_workers, map_func, **kwargs)

    @pytest.mark.timeout(60)
    def test_rejects_bad_process_arguments(self):
        ds = _source(3)
        with pytest.raises(ValueError, match="^num_proc must be a positive int, got 0$"):
            MultiProcessMapDataZMQ(ds, 0, _square)
        with pytest.raises(
            ValueError,
            match="^start_method must be one of 'fork', 'spawn', "
            "'forkserver' or None, got 'thread'$",
        ):
            MultiProcessMapDataZMQ(ds, 1, _square, start_method="thread")
        with pytest.raises(
            TypeError,
            match=r"^serializer must be a Serializer \(e\.g\. "
            r"MsgpackSerializer\(\)\) or None, got 'pickle'$",
        ):
            MultiProcessMapDataZMQ(ds, 1, _square, serializer="pickle")

    @pytest.mark.timeout(60)
    def test_map_func_runs_in_child_processes(self):
        def f(dp):
            return [os.getpid()]

        with self.make(_source(20), f, strict=True) as df:
            df.reset_state()
            workers = live_child_pids()
            out = _values(df)
        assert set(out) <= workers and os.getpid() not in out

    @pytest.mark.timeout(60)
    def test_unserializable_result_raises_worker_error_naming_where(self):
        def f(dp):
            return [dp[0], {"bad": object()}]

        with self.make(_source(5), f, strict=True) as df:
            df.reset_state()
            with pytest.raises(WorkerError) as info:
                list(df)
        err = info.value
        assert err.exc_type == "TypeError"
        assert (
            "raised TypeError: MultiProcessMapDataZMQ cannot serialize a value of type 'object' "
            "at component 1, key 'bad'"
        ) in str(err)
        assert err.pid in range(1, 1 << 22) and err.pid != os.getpid()

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("num_proc, buffer_size", [(1, 1), (1, 200), (2, 4)])
    def test_quick_map_func_is_not_slowed_by_a_full_task_queue(self, num_proc, buffer_size):
        # Regression: when a task could not be sent, the consumer waited for a
        # result (maybe none in flight) for a whole 0.1 s poll: 20-50 ms a datapoint.
        with self.make(
            _source(400), _square, num_workers=num_proc, strict=True, buffer_size=buffer_size
        ) as df:
            df.reset_state()
            assert len(list(df)) == 400  # the workers are up
            start = time.monotonic()
            assert len(list(df)) == 400
            seconds = time.monotonic() - start
        assert seconds < 5.0  # about 0.05 s; 10 to 20 s with the bug

    @pytest.mark.timeout(60)
    def test_large_input_arrays_leave_no_thread_behind_in_a_fresh_process(self):
        # Regression: tasks sent without copying started pyzmq's garbage-collector
        # thread in the consumer, which outlived close() and failed check_dataflow.
        script = textwrap.dedent(
            """
            import numpy as np
            from dataflow import DataFromList, MultiProcessMapDataZMQ
            from dataflow.testing import check_dataflow

            def first(dp):
                return [float(dp[0][0])]

            check_dataflow(lambda: MultiProcessMapDataZMQ(
                DataFromList([[np.zeros(20_000)] for _ in range(3)]), 2, first, strict=True))
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=50
        )
        assert proc.returncode == 0, proc.stderr

    @pytest.mark.timeout(60)
    def test_unserializable_datapoint_raises_type_error_in_the_consumer(self):
        ds = DataFromList([[1], [2, [3, object()]]], shuffle=False)
        with self.make(ds, _identity, strict=True) as df:
            df.reset_state()
            with pytest.raises(
                TypeError,
                match="^MultiProcessMapDataZMQ cannot serialize a value "
                "of type 'object' at component 1, index 1: ",
            ):
                list(df)

    @pytest.mark.timeout(60)
    def test_pickle_serializer_carries_what_msgpack_cannot(self):
        def f(dp):
            return [{dp[0], -dp[0]}, complex(dp[0], 1)]

        with self.make(
            _source(5), f, strict=True, ordered=True, serializer=PickleSerializer()
        ) as df:
            df.reset_state()
            out = list(df)
        assert out == [[{i, -i}, complex(i, 1)] for i in range(5)]

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("strict", [False, True])
    def test_worker_killed_by_sigkill_raises_worker_died_error(self, strict):
        def f(dp):
            if dp[0] == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(0.01)
            return dp

        with self.make(_source(50), f, strict=strict) as df:
            df.reset_state()
            workers = live_child_pids()
            start = time.monotonic()
            with pytest.raises(WorkerDiedError) as info:
                _drain(df)
            elapsed = time.monotonic() - start
        err = info.value
        assert elapsed < _DEATH_REPORT_S
        assert err.exitcode == -signal.SIGKILL
        assert err.pid in workers
        assert str(err).startswith(
            f"MultiProcessMapDataZMQ worker {err.worker_index} (pid {err.pid}) was killed by "
            "SIGKILL without reporting an error; the out-of-memory killer is the usual cause"
        )

    @pytest.mark.timeout(60)
    def test_worker_calling_os_exit_raises_worker_died_error(self):
        def f(dp):
            if dp[0] == 2:
                os._exit(3)
            return dp

        with self.make(_source(10), f, strict=True) as df:
            df.reset_state()
            start = time.monotonic()
            with pytest.raises(WorkerDiedError) as info:
                list(df)
            elapsed = time.monotonic() - start
            with pytest.raises(RuntimeError, match="stopped after a worker failed"):
                list(df)
        assert elapsed < _DEATH_REPORT_S
        assert info.value.exitcode == 3
        assert str(info.value).startswith(
            f"MultiProcessMapDataZMQ worker {info.value.worker_index} (pid {info.value.pid}) "
            "exited with code 3 without reporting an error"
        )

    @pytest.mark.timeout(60)
    def test_seed_makes_one_worker_reproducible(self):
        def draw(dp):
            return [dp[0], int(np.random.randint(1 << 30))]

        def run():
            with self.make(
                _source(20), draw, num_workers=1, seed=7, ordered=True, strict=True
            ) as df:
                df.reset_state()
                return list(df), list(df)

        first, second = run(), run()
        assert first == second
        assert first[0] != first[1]  # the generator is not reseeded every pass
        assert len({v for _, v in first[0]}) > 1

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("seed", [None, 7])
    def test_workers_draw_different_random_streams(self, seed):
        def draw(dp):
            time.sleep(0.01)
            return [int(np.random.randint(1 << 30)), os.getpid()]

        by_pid = collections.defaultdict(list)  # each worker's draws, in the order drawn
        with self.make(
            _source(20), draw, num_workers=2, seed=seed, strict=True, ordered=True
        ) as df:
            df.reset_state()
            time.sleep(0.3)  # tasks go to the workers connected when they are sent
            for _ in range(50):
                for value, pid in df:
                    by_pid[pid].append(value)
                if len(by_pid) == 2:
                    break
        assert len(by_pid) == 2, "one worker did all the work"
        first, second = by_pid.values()
        assert first[0] != second[0]
        assert not set(first) & set(second)

    @pytest.mark.timeout(60)
    def test_free_worker_takes_the_tasks_while_another_is_busy(self):
        def f(dp):
            time.sleep(1.0 if dp[0] == 0 else 0.002)
            return [os.getpid(), dp[0]]

        with self.make(_source(200), f, strict=True) as df:
            df.reset_state()
            time.sleep(0.5)  # both workers are connected
            out = list(df)
        busy = next(pid for pid, i in out if i == 0)
        assert sum(pid == busy for pid, _ in out) <= 10  # 100 with round-robin

    @pytest.mark.timeout(60)
    def test_spawn_start_method_works_with_a_module_level_function(self, resource_tracker):
        with self.make(_source(10), _square, start_method="spawn", strict=True, ordered=True) as df:
            df.reset_state()
            assert list(df) == _squares(10)

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
    def test_a_lambda_works_under_spawn_and_forkserver(self, start_method, resource_tracker):
        scale = 3
        with self.make(
            _source(5), lambda dp: [dp[0] * scale], start_method=start_method, strict=True
        ) as df:
            df.reset_state()
            assert sorted(dp[0] for dp in df) == [0, 3, 6, 9, 12]

    @pytest.mark.timeout(60)
    def test_spawn_with_an_unpicklable_function_raises_type_error(self, resource_tracker):
        lock = threading.Lock()

        def locked(dp):
            with lock:
                return dp

        df = self.make(_source(3), locked, start_method="spawn")
        with pytest.raises(
            TypeError,
            match="^MultiProcessMapDataZMQ with start_method='spawn' "
            "must pickle its dataflow and functions .*lock",
        ):
            df.reset_state()
        df.close()


def _slow_every_fiftieth(dp):
    if dp[0] % 50 == 0:
        time.sleep(0.02)
    return dp


def _slow(dp):
    time.sleep(CHUNK_S * 1.25)  # longer than a chunk is meant to take
    return dp


class TestTaskChunks:
    """Tasks travel to process workers in chunks sized by how fast the function is."""

    @pytest.fixture
    def chunk_sizes(self, monkeypatch):
        from dataflow.parallel import _tasks

        sizes = []
        flush = _tasks.TaskChannel.flush

        def recording_flush(channel):
            if channel._items:
                sizes.append(len(channel._items) // 2)
            flush(channel)

        monkeypatch.setattr(_tasks.TaskChannel, "flush", recording_flush)
        return sizes

    @pytest.mark.timeout(60)
    def test_a_cheap_function_gets_long_chunks(self, chunk_sizes):
        with MultiProcessMapDataZMQ(_source(5000), 2, _identity, strict=True) as df:
            df.reset_state()
            assert sorted(_values(df)) == list(range(5000))
        assert chunk_sizes[0] == 1  # the first credits ask for one task each
        assert max(chunk_sizes) >= 32 and sum(chunk_sizes) == 5000

    @pytest.mark.timeout(60)
    def test_a_slow_function_gets_one_task_at_a_time(self, chunk_sizes):
        with MultiProcessMapDataZMQ(_source(60), 2, _slow, strict=True) as df:
            df.reset_state()
            assert sorted(_values(df)) == list(range(60))
        assert set(chunk_sizes) == {1}

    @pytest.mark.timeout(60)
    def test_mixed_fast_and_slow_tasks_keep_order_and_count(self):
        with MultiProcessMapDataZMQ(
            _source(1000), 2, _slow_every_fiftieth, strict=True, ordered=True
        ) as df:
            df.reset_state()
            for _ in range(2):
                assert _values(df) == list(range(1000))


class _FirstPassHasAnObject(DataFlow):
    """Five datapoints; in the first pass the third holds an object msgpack cannot pack."""

    def __init__(self):
        self.passes = 0

    def __len__(self):
        return 5

    def __iter__(self):
        self.passes += 1
        for i in range(5):
            yield [object()] if (i == 2 and self.passes == 1) else [i]


_RELEASED = None


def _wait_for_release(dp):
    if dp[0] == 40:
        return [dp[0], _RELEASED.wait(20)]
    return dp


class TestTaskChunksUnhappy:
    @pytest.mark.timeout(60)
    def test_a_task_that_cannot_be_packed_spoils_no_later_pass(self):
        with MultiProcessMapDataZMQ(_FirstPassHasAnObject(), 2, _identity, strict=True) as df:
            df.reset_state()
            with pytest.raises(TypeError, match="cannot serialize"):
                list(df)
            assert sorted(_values(df)) == [0, 1, 2, 3, 4]

    @pytest.mark.timeout(60)
    def test_results_made_before_a_slow_task_arrive_while_it_runs(self):
        global _RELEASED
        _RELEASED = multiprocessing.get_context("fork").Event()
        with MultiProcessMapDataZMQ(_source(60), 1, _wait_for_release, strict=True) as df:
            df.reset_state()
            out = []
            for dp in df:
                out.append(dp)
                if len(out) == 40:  # all that came before the slow task
                    _RELEASED.set()
        assert [dp[0] for dp in out] == list(range(60))
        assert out[40] == [40, True]  # released by the consumer, not by the timeout


class TestMultiProcessMapData:
    @pytest.mark.timeout(60)
    def test_is_multi_process_map_data_zmq(self):
        assert MultiProcessMapData is MultiProcessMapDataZMQ
        assert dataflow.MultiProcessMapData is MultiProcessMapDataZMQ


class TestMultiProcessMapAndBatchDataZMQ:
    @staticmethod
    def make(ds, map_func, batch_size, num_proc=2, **kwargs):
        return MultiProcessMapAndBatchDataZMQ(ds, num_proc, map_func, batch_size, **kwargs)

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("strict", [False, True])
    def test_keeps_the_dataflow_contract(self, strict):
        first = check_dataflow(lambda: self.make(_source(20), _square, 3, strict=strict))
        assert len(first) == 6

    @pytest.mark.timeout(60)
    def test_large_arrays_are_batched_as_they_are_mapped(self):
        ds = DataFromList([[i] for i in range(12)], shuffle=False)

        def f(dp):  # images of 48 KiB; every fifth datapoint dropped
            i = dp[0]
            return None if i % 5 == 4 else [np.full((64, 64, 3), i, np.float32)[:, ::-1], i]

        with self.make(ds, f, 3, strict=True, ordered=True) as df:
            df.reset_state()
            batches = list(df)
        assert [b[1].tolist() for b in batches] == [[0, 1, 2], [3, 5], [6, 7, 8], [10, 11]]
        for images, labels in batches:
            assert images.shape == (len(labels), 64, 64, 3) and images.dtype == np.float32
            assert (images == labels[:, None, None, None]).all()

    def test_the_worker_batch_equals_stacking_at_the_end(self):
        from dataflow._collate import collate as _batch
        from dataflow.parallel.map import _MapAndBatch

        def f(dp):
            return [np.full((64, 80), dp[0], dp[1]), dp[0]]

        same = [[i, np.float32] for i in range(4)]
        mixed = [[0, np.float32], [1, np.float32], [2, np.float64], [3, np.float32]]
        for chunk in (same, mixed):
            got = _MapAndBatch(f, "M")(chunk)
            expected = _batch("M", [f(dp) for dp in chunk], False)
            assert got[0].dtype == expected[0].dtype  # float64 when one is
            np.testing.assert_array_equal(got[0], expected[0])
            np.testing.assert_array_equal(got[1], expected[1])
        ragged = _MapAndBatch(lambda dp: [np.zeros((64, 80 + dp[0]), np.float32)], "M")
        with pytest.raises(ValueError, match="component 0 has inconsistent shapes"):
            ragged([[0], [0], [1]])

    @pytest.mark.timeout(60)
    def test_batches_stack_the_mapped_components(self):
        ds = DataFromList([[i, np.full((2, 3), i, np.float32)] for i in range(8)], shuffle=False)

        def f(dp):
            return [dp[0] * 2, dp[1] + 1, f"s{dp[0]}"]

        with self.make(ds, f, 4, strict=True, ordered=True) as df:
            df.reset_state()
            batches = list(df)
        assert len(batches) == 2
        for k, (ints, arrays, names) in enumerate(batches):
            rows = range(4 * k, 4 * k + 4)
            assert ints.dtype == np.int32 and ints.tolist() == [2 * i for i in rows]
            assert arrays.dtype == np.float32 and arrays.shape == (4, 2, 3)
            np.testing.assert_array_equal(arrays, [np.full((2, 3), i + 1) for i in rows])
            assert names.tolist() == [f"s{i}" for i in rows]
            assert arrays.flags.writeable

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("remainder, expected", [(False, [4, 4]), (True, [4, 4, 2])])
    def test_remainder_keeps_the_last_smaller_batch(self, remainder, expected):
        with self.make(
            _source(10), _square, 4, strict=True, ordered=True, remainder=remainder
        ) as df:
            df.reset_state()
            assert len(df) == len(expected)
            for _ in range(2):
                batches = list(df)
                assert [len(b[0]) for b in batches] == expected
                assert np.concatenate([b[0] for b in batches]).tolist() == [
                    i**2 for i in range(sum(expected))
                ]

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("remainder", [False, True])
    def test_ordered_output_equals_batch_data_of_map_data(self, remainder):
        def f(dp):
            return [dp[0] * 0.5, np.arange(3) * dp[0], [dp[0], dp[0] + 1]]

        reference = BatchData(MapData(_source(23), f), 5, remainder=remainder)
        reference.reset_state()
        expected = list(reference)
        with self.make(
            _source(23), f, 5, num_proc=3, strict=True, ordered=True, remainder=remainder
        ) as df:
            df.reset_state()
            out = list(df)
        assert len(out) == len(expected)
        for got, want in zip(out, expected):
            assert len(got) == len(want) == 3
            for a, b in zip(got, want):
                assert a.dtype == b.dtype and a.shape == b.shape
                np.testing.assert_array_equal(a, b)

    @pytest.mark.timeout(60)
    def test_non_strict_ordered_passes_repeat_the_batches(self):
        with self.make(_source(12), _jitter, 4, num_proc=3, ordered=True) as df:
            df.reset_state()
            for _ in range(3):
                assert [b[0].tolist() for b in df] == [
                    [0, 1, 4, 9],
                    [16, 25, 36, 49],
                    [64, 81, 100, 121],
                ]

    @pytest.mark.timeout(60)
    def test_none_result_makes_its_batch_smaller(self):
        def f(dp):
            return None if dp[0] in (2, 5, 8, 9, 10, 11) else [dp[0]]

        with self.make(_source(12), f, 4, strict=True, ordered=True) as df:
            df.reset_state()
            assert [b[0].tolist() for b in df] == [[0, 1, 3], [4, 6, 7]]  # all of [8..11] dropped

    @pytest.mark.timeout(60)
    def test_unordered_strict_pass_holds_every_datapoint_once(self):
        with self.make(_source(60), _jitter, 4, num_proc=3, strict=True) as df:
            df.reset_state()
            for _ in range(2):
                batches = list(df)
                assert [len(b[0]) for b in batches] == [4] * 15
                values = sorted(np.concatenate([b[0] for b in batches]).tolist())
                assert values == [i**2 for i in range(60)]

    @pytest.mark.timeout(60)
    def test_default_buffer_size_is_two_batches_per_worker(self):
        df = self.make(_source(10), _square, 3, num_proc=2)
        assert df.buffer_size == 12
        df = self.make(_source(10), _square, 3, num_proc=2, buffer_size=7)
        assert df.buffer_size == 7

    @pytest.mark.timeout(60)
    def test_buffer_smaller_than_a_batch_is_rejected(self):
        with pytest.raises(
            ValueError,
            match=r"^buffer_size must be at least batch_size \(4\), "
            "got 3$",
        ):
            self.make(_source(10), _square, 4, buffer_size=3)

    @pytest.mark.timeout(60)
    def test_rejects_bad_arguments(self):
        ds = _source(10)
        with pytest.raises(ValueError, match="^batch_size must be a positive int, got 0$"):
            self.make(ds, _square, 0)
        with pytest.raises(ValueError, match="^num_proc must be a positive int, got 0$"):
            self.make(ds, _square, 2, num_proc=0)
        with pytest.raises(ValueError, match="^buffer_size must be a positive int, got 0$"):
            self.make(ds, _square, 2, buffer_size=0)
        with pytest.raises(TypeError, match="^map_func must be callable, got 3$"):
            self.make(ds, 3, 2)
        with pytest.raises(TypeError, match="^remainder must be a bool, got 1$"):
            self.make(ds, _square, 2, remainder=1)

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize(
        "use_list, as_dicts",
        [
            (True, False),
            ([False, True, False], False),
            ([True, True, False], False),
            ({"b": True}, True),
        ],
    )
    def test_use_list_batches_as_batch_data_does(self, use_list, as_dicts):
        def f(dp):
            value = [dp[0] * 0.5, np.arange(dp[0] % 3 + 1), f"s{dp[0]}"]
            return dict(zip("abc", value)) if as_dicts else value

        reference = BatchData(MapData(_source(9), f), 3, use_list=use_list)
        reference.reset_state()
        expected = list(reference)
        with self.make(_source(9), f, 3, strict=True, ordered=True, use_list=use_list) as df:
            df.reset_state()
            out = list(df)
        assert len(out) == len(expected) == 3
        for got, want in zip(out, expected):
            keys = list(want) if as_dicts else range(len(want))
            for key in keys:
                assert type(got[key]) is type(want[key])
                if isinstance(want[key], list):
                    assert len(got[key]) == len(want[key])
                    for a, b in zip(got[key], want[key]):
                        np.testing.assert_array_equal(a, b)
                else:
                    assert got[key].dtype == want[key].dtype
                    np.testing.assert_array_equal(got[key], want[key])

    @pytest.mark.timeout(60)
    def test_use_list_keeps_large_arrays_a_list(self):
        def f(dp):  # 48 KiB images, which are otherwise copied into the batch as they come
            return [np.full((64, 64, 3), dp[0], np.float32), dp[0]]

        with self.make(_source(4), f, 2, strict=True, ordered=True, use_list=[True, False]) as df:
            df.reset_state()
            batches = list(df)
        assert [type(b[0]) for b in batches] == [list, list]
        assert [[int(a[0, 0, 0]) for a in b[0]] for b in batches] == [[0, 1], [2, 3]]
        assert [b[1].tolist() for b in batches] == [[0, 1], [2, 3]]

    @pytest.mark.timeout(60)
    def test_use_list_that_does_not_fit_the_results_raises_worker_error(self):
        with self.make(_source(4), _square, 2, strict=True, use_list=[True, False]) as df:
            df.reset_state()
            with pytest.raises(
                WorkerError,
                match="MultiProcessMapAndBatchDataZMQ: use_list has 2 entries but the "
                "datapoints have 1 components",
            ):
                list(df)

    @pytest.mark.timeout(60)
    def test_rejects_a_bad_use_list(self):
        for use_list in ("yes", [True, 0]):
            with pytest.raises(
                TypeError,
                match=r"^use_list must be a bool, a list of bools \(one per component\) or a "
                r"dict of bools \(by key\), got ",
            ):
                self.make(_source(10), _square, 2, use_list=use_list)

    @pytest.mark.timeout(60)
    def test_exception_in_map_func_raises_worker_error(self):
        def f(dp):
            if dp[0] == 5:
                raise ValueError("bad five")
            return dp

        with self.make(_source(12), f, 3, strict=True) as df:
            df.reset_state()
            with pytest.raises(
                WorkerError,
                match=r"^MultiProcessMapAndBatchDataZMQ worker \d "
                r"\(pid \d+\) raised ValueError: bad five",
            ):
                list(df)

    @pytest.mark.timeout(60)
    def test_unbatchable_results_raise_worker_error(self):
        def f(dp):
            return [np.zeros(dp[0] + 1)]  # different shapes cannot be stacked

        with self.make(_source(4), f, 2, strict=True) as df:
            df.reset_state()
            with pytest.raises(WorkerError, match="MultiProcessMapAndBatchDataZMQ"):
                list(df)

    @pytest.mark.timeout(60)
    def test_worker_killed_by_sigkill_raises_worker_died_error(self):
        def f(dp):
            if dp[0] == 5:
                os.kill(os.getpid(), signal.SIGKILL)
            return dp

        with self.make(_source(12), f, 3) as df:
            df.reset_state()
            with pytest.raises(WorkerDiedError, match="was killed by SIGKILL"):
                _drain(df)

    @pytest.mark.timeout(60)
    def test_a_pass_that_is_not_strict_looks_at_its_workers_after_its_last_batch(self):
        # The other workers' results can make up for a worker that died during a short
        # pass, with no wait (where workers are looked at) before its end: the pass looks
        # once more at its end, so a death visible by then is reported within the pass.
        with self.make(_source(10), _square, 2) as df:
            df.reset_state()
            got, looks = [], []
            look = df._check_workers

            def counted_look():
                looks.append(len(got))
                look()

            df._check_workers = counted_look
            for batch in df:
                got.append(batch)
        assert len(got) == 5 and looks and looks[-1] == 5

    @pytest.mark.timeout(60)
    def test_spawn_start_method_works(self, resource_tracker):
        with self.make(
            _source(7), _square, 3, start_method="spawn", strict=True, ordered=True, remainder=True
        ) as df:
            df.reset_state()
            assert [b[0].tolist() for b in df] == [[0, 1, 4], [9, 16, 25], [36]]

    @pytest.mark.timeout(60)
    def test_consumer_may_stop_early_and_close(self):
        df = self.make(_source(100), _jitter, 4, num_proc=3)
        df.reset_state()
        try:
            next(iter(df))
        finally:
            df.close()
        df.close()


class TestMultiProcessMapAndBatchData:
    @pytest.mark.timeout(60)
    def test_is_multi_process_map_and_batch_data_zmq(self):
        assert MultiProcessMapAndBatchData is MultiProcessMapAndBatchDataZMQ
        assert dataflow.MultiProcessMapAndBatchData is MultiProcessMapAndBatchDataZMQ

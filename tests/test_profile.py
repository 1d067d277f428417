"""Tests of :func:`dataflow.profile`: the numbers per stage, the verdict on
pipelines with one deliberately slow stage, and a pipeline left as it was."""

from __future__ import annotations

import copy
import itertools
import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from _profile_common import SLOW_S, busy, keep, numbers, slow, stage

from dataflow import (
    BatchData,
    DataFlow,
    DataFromList,
    MapData,
    MapDataComponent,
    MultiProcessMapDataZMQ,
    MultiProcessRunnerZMQ,
    ProxyDataFlow,
    WorkerDiedError,
    profile,
    profiling,
)
from dataflow.base import was_reset

MANY = 100_000  # enough datapoints for any of these runs
TIMEOUT_S = 60


class SlowSource(DataFlow):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        for i in range(self.n):
            busy(SLOW_S)
            yield [i]


class Scale(ProxyDataFlow):
    def __init__(self, ds, factor):
        super().__init__(ds)
        self.factor = factor

    def __iter__(self):
        return ([x * self.factor for x in dp[:1]] for dp in self.ds)


class CountResets(ProxyDataFlow):
    def __init__(self, ds):
        super().__init__(ds)
        self.resets = 0

    def reset_state(self):
        super().reset_state()
        self.resets += 1


class TestVerdict:
    def test_names_a_slow_map_in_the_consumer(self):
        df = BatchData(MapDataComponent(numbers(MANY), slow, index=0), 4)
        report = profile(df, num=50)
        assert report.bottleneck.stage.df is df.ds
        assert report.bottleneck.stage.name == "MapDataComponent(func=slow, index=0)"
        assert report.bottleneck.stage.share > 0.8
        assert "MultiProcessMapDataZMQ(num_proc=" in report.bottleneck.suggestion
        assert "expected about" in report.bottleneck.suggestion

    def test_names_a_slow_source(self):
        df = BatchData(MapData(SlowSource(10_000), keep), 4)
        report = profile(df, num=50)
        assert report.bottleneck.stage.name == "SlowSource(n=10000)"
        assert "it is a source" in report.bottleneck.suggestion
        assert "MultiProcessRunnerZMQ(SlowSource(...)" in report.bottleneck.suggestion

    @pytest.mark.timeout(TIMEOUT_S)
    def test_names_a_slow_stage_after_a_fast_runner(self):
        runner = MultiProcessRunnerZMQ(numbers(MANY), num_proc=1)
        df = MapData(runner, slow)
        try:
            report = profile(df, num=200)
        finally:
            df.close()
        assert report.bottleneck.stage.df is df
        runner_stage = stage(report, "MultiProcessRunnerZMQ")
        assert runner_stage.where == "parallel"
        assert runner_stage.datapoints == 200
        assert runner_stage.share < report.bottleneck.stage.share

    @pytest.mark.timeout(TIMEOUT_S)
    def test_names_a_slow_source_read_by_a_mapper(self):
        df = MultiProcessMapDataZMQ(SlowSource(10_000), 1, keep)
        try:
            report = profile(df, num=100)
        finally:
            df.close()
        assert report.bottleneck.stage.name == "SlowSource(n=10000)"

    @pytest.mark.timeout(TIMEOUT_S)
    def test_a_slow_stage_in_runner_workers_is_named_with_its_workers(self):
        inner = MapDataComponent(numbers(MANY), slow, index=0)
        runner = MultiProcessRunnerZMQ(inner, num_proc=1)
        df = BatchData(runner, 4)
        try:
            report = profile(df, num=100)  # 0.8 s: several statistics from the worker
        finally:
            df.close()
        assert report.bottleneck.stage.df is inner  # the object built in this process
        assert report.bottleneck.stage.where == "worker"
        assert "waits for them" in report.bottleneck.explanation
        assert stage(report, "MultiProcessRunnerZMQ").busy > 0.7


class TestStages:
    def test_counts_times_and_bytes_of_every_stage(self):
        df = BatchData(MapData(numbers(MANY), keep), 10)
        report = profile(df, num=5)
        assert report.datapoints == 5
        assert [s.datapoints for s in report.stages] == [5, 50, 50]
        assert [s.depth for s in report.stages] == [0, 1, 2]
        batch = next(iter(df))
        per_batch = batch[0].nbytes + batch[1].nbytes  # labels stacked as ints, 10 arrays of 16 B
        assert [s.bytes_out for s in report.stages] == [5 * per_batch, 50 * 16, 50 * 16]
        for s in report.stages:
            assert s.where == "consumer"
            assert 0 <= s.share <= 1 and s.seconds >= 0
        assert sum(s.share for s in report.stages) <= 1.0 + 1e-6

    def test_counts_are_exact_when_only_a_sample_is_timed(self):
        df = BatchData(MapData(numbers(20_000), keep), 10)
        report = profile(df, seconds=None)
        assert [s.datapoints for s in report.stages] == [2000, 20_000, 20_000]
        assert report.stages[1].bytes_out == pytest.approx(20_000 * 16, rel=0.01)

    def test_own_time_excludes_the_wait_for_the_input(self):
        df = MapData(MapDataComponent(numbers(MANY), slow, index=0), keep)
        report = profile(df, num=50)
        outer, inner, _ = report.stages
        assert inner.seconds_per_datapoint >= SLOW_S
        assert outer.seconds_per_datapoint < SLOW_S / 4

    def test_a_class_of_ones_own_is_a_stage_under_its_name(self):
        df = Scale(numbers(MANY), 3)
        report = profile(df, num=10)
        assert report.stages[0].name == "Scale(factor=3)"
        assert report.stages[0].datapoints == 10

    def test_a_shared_dataflow_is_one_stage(self):
        from dataflow import JoinData

        src = numbers(100)
        report = profile(JoinData([MapData(src, keep), src]), num=10)
        assert [s.name for s in report.stages].count("DataFromList(n=100, shuffle=False)") == 1
        assert stage(report, "DataFromList").datapoints == 20

    def test_print_draws_the_tree_with_a_bar_per_stage(self):
        df = BatchData(MapDataComponent(numbers(MANY), slow, index=0), 4)
        text = str(profile(df, num=20))
        lines = text.splitlines()
        assert lines[1].startswith("BatchData(batch_size=4")
        assert lines[2].startswith("  MapDataComponent(func=slow, index=0)")
        assert lines[3].startswith("    DataFromList(n=100000")
        assert all("|" in line and "%" in line for line in lines[1:4])
        assert "bottleneck: MapDataComponent(func=slow, index=0)" in text

    def test_to_dict_holds_the_same_numbers_as_json(self):
        report = profile(BatchData(MapData(numbers(MANY), keep), 10), num=5)
        data = json.loads(json.dumps(report.to_dict()))
        assert data["datapoints"] == 5
        assert [s["datapoints"] for s in data["stages"]] == [5, 50, 50]
        assert [s["class"] for s in data["stages"]] == ["BatchData", "MapData", "DataFromList"]
        assert data["stages"][1]["share"] == report.stages[1].share
        assert data["bottleneck"]["stage"] == report.bottleneck.stage.name


class TestLimits:
    def test_num_stops_after_num_datapoints(self):
        assert profile(numbers(MANY), num=7).datapoints == 7

    def test_seconds_stops_after_that_time(self):
        report = profile(SlowSource(10**9), seconds=0.2)
        assert 0.2 <= report.wall_seconds < 2.0
        assert 0 < report.datapoints < 0.2 / SLOW_S + 2

    def test_without_limits_it_runs_one_pass(self):
        assert profile(numbers(30), seconds=None).datapoints == 30

    def test_the_end_of_the_pass_stops_it(self):
        assert profile(numbers(30), seconds=5.0, num=100).datapoints == 30

    @pytest.mark.parametrize(
        "kwargs, error, message",
        [
            ({"seconds": 0}, ValueError, "seconds must be a positive number or None, got 0"),
            ({"seconds": "1"}, ValueError, "seconds must be a positive number or None, got '1'"),
            ({"num": 0}, ValueError, "num must be a positive int or None, got 0"),
            ({"num": 1.5}, TypeError, "num must be a positive int or None, got 1.5"),
        ],
    )
    def test_rejects_bad_limits(self, kwargs, error, message):
        with pytest.raises(error, match=f"^{message}$"):
            profile(numbers(3), **kwargs)

    def test_rejects_what_is_not_a_dataflow(self):
        with pytest.raises(TypeError, match="^df must be a DataFlow, got list$"):
            profile([1, 2])  # type: ignore[arg-type]


class TestPipelineUnchanged:
    def test_classes_and_outputs_are_the_same_after_profile(self):
        def build():
            return BatchData(MapDataComponent(numbers(100), lambda x: x + 1, index=0), 8)

        df, fresh = build(), build()
        nodes = [df, df.ds, df.ds.ds]
        classes = [type(n) for n in nodes]
        profile(df, num=3)
        assert [type(n) for n in nodes] == classes
        assert [type(n).__iter__ for n in nodes] == [c.__iter__ for c in classes]
        fresh.reset_state()
        got, want = list(df), list(fresh)
        assert len(got) == len(want) == 12
        assert all(np.array_equal(a, b) for g, w in zip(got, want) for a, b in zip(g, w))

    @pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
    def test_classes_are_restored_when_a_stage_raises(self, error):
        def fail(dp):
            if dp[0] == 5:
                raise error("stop")
            return dp

        df = MapData(numbers(100), fail)
        with pytest.raises(error):
            profile(df)
        assert type(df) is MapData and type(df.ds) is DataFromList
        assert len(list(MapData(df.ds, keep))) == 100

    def test_a_dataflow_already_reset_is_not_reset_again(self):
        df = CountResets(numbers(10))
        df.reset_state()
        profile(df, num=3)
        assert df.resets == 1

    def test_a_dataflow_not_reset_is_reset_once(self):
        df = CountResets(numbers(10))
        assert not was_reset(df)
        profile(df, num=3)
        assert df.resets == 1 and was_reset(df)

    def test_a_copy_made_while_profiling_runs_untimed(self):
        class Copying(ProxyDataFlow):
            def __iter__(self):
                yield from copy.copy(self.ds)

        df = Copying(MapData(numbers(10), keep))
        report = profile(df, seconds=None)
        assert report.datapoints == 10 and report.stages[1].datapoints == 0

    def test_one_run_at_a_time(self):
        started, release = threading.Event(), threading.Event()

        def wait(dp):
            started.set()
            release.wait(10)
            return dp

        errors = []
        first = threading.Thread(
            target=lambda: profile(MapData(numbers(3), wait), num=1), daemon=True
        )
        first.start()
        assert started.wait(10)
        try:
            profile(MapData(numbers(3), keep), num=1)
        except RuntimeError as err:
            errors.append(str(err))
        finally:
            release.set()
            first.join(10)
        assert errors and "already running" in errors[0]
        assert profile(MapData(numbers(3), keep), num=1).datapoints == 1  # free again

    def test_an_iterator_kept_past_the_run_runs_untimed(self):
        df = MapData(numbers(10), keep)
        df.reset_state()
        report = profile(df, num=3)
        assert list(df) and report.stages[0].datapoints == 3


class Mapped(DataFlow):
    """A source whose iterator is a C ``map`` of a slow Python function."""

    def __init__(self, n):
        self.n = n

    def _make(self, i):
        busy(SLOW_S)
        return [i]

    def __iter__(self):
        return map(self._make, range(self.n))


class Slow:
    """A class whose construction takes SLOW_S (Python code a C ``map`` calls)."""

    def __init__(self, i):
        busy(SLOW_S)
        self.i = i


class MappedClass(DataFlow):
    """A source whose iterator is a C ``map`` of a slow Python class."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return map(Slow, range(self.n))


class ZippedSource(DataFlow):
    """A source that zips a generator with a shorter range, counting what it drew."""

    def __init__(self, n):
        self.n = n
        self.drawn = 0

    def _draw(self):
        while True:
            self.drawn += 1
            yield self.drawn

    def __iter__(self):
        return zip(self._draw(), range(self.n))


class FreshIterators(ProxyDataFlow):
    """A stage that makes a new iterator of its input for every datapoint."""

    def __iter__(self):
        for _ in range(len(self.ds) * 50):
            yield next(iter(self.ds))


def die_at_5000(dp):
    if dp[0] == 5000:
        os._exit(3)
    return dp


class DiesAfter(DataFlow):
    """A source whose worker process dies after *n* datapoints."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        for i in itertools.count():
            if i == self.n:
                os._exit(3)
            yield [i]


class Chained(DataFlow):
    """A source whose iterator chains a slow generator to an end."""

    def __init__(self, n):
        self.n = n

    def _gen(self):
        for i in range(self.n):
            busy(SLOW_S)
            yield [i]

    def __iter__(self):
        return itertools.chain(self._gen(), [])


class Closing(ProxyDataFlow):
    """A stage that records whether its generator was closed."""

    closed = 0

    def __iter__(self):
        try:
            yield from self.ds
        finally:
            Closing.closed += 1


@pytest.fixture
def sampled_soon(monkeypatch):
    """Hand over from clocking to sampling after the first datapoint."""
    monkeypatch.setattr(profiling, "_CLOCKED_S", 0.0)
    monkeypatch.setattr(profiling, "_CLOCKED_DATAPOINTS", 1)
    monkeypatch.setattr(profiling, "_CLOCKED_MAX_S", 0.0)


@pytest.mark.usefixtures("sampled_soon")
class TestSampled:
    """After the hand-over: counted in C, own times from samples of the stack."""

    def test_counts_stay_exact_and_the_report_says_it_sampled(self):
        df = BatchData(MapData(numbers(200_000), keep), 10)
        report = profile(df, seconds=None)
        assert [s.datapoints for s in report.stages] == [20_000, 200_000, 200_000]
        assert report.clocked_seconds < report.wall_seconds / 2
        assert report.samples > 0
        assert f"then {report.samples:,} samples of the stacks" in str(report).splitlines()[0]
        assert report.to_dict()["samples"] == report.samples
        assert report.stages[1].bytes_out == 200_000 * 16  # clocked datapoint, scaled

    def test_names_a_slow_stage_in_the_middle(self):
        df = MapData(MapDataComponent(numbers(MANY), slow, index=0), keep)
        report = profile(df, num=150)  # 0.3 s
        outer, inner, _ = report.stages
        assert report.samples >= 10
        assert report.bottleneck.stage is inner
        assert inner.share > 0.7 and outer.share < 0.2
        # about SLOW_S, or more where other processes take the CPUs meanwhile
        assert 0.7 * SLOW_S < inner.seconds_per_datapoint < 2 * SLOW_S

    @pytest.mark.parametrize("source", [Mapped, MappedClass, Chained])
    def test_names_a_slow_source_whatever_its_iterator(self, source):
        df = MapData(source(10_000), keep)
        report = profile(df, num=150)
        assert report.bottleneck.stage.df is df.ds
        assert report.stages[0].share < 0.2
        assert [s.datapoints for s in report.stages] == [150, 150]

    def test_stages_left_mid_pass_are_closed_when_it_returns(self):
        Closing.closed = 0
        df = Closing(MapData(Closing(numbers(MANY)), keep))
        profile(df, num=500)
        assert Closing.closed == 2

    def test_a_stage_that_raises_leaves_the_classes_and_the_signal(self):
        def fail(dp):
            if dp[0] == 5000:
                raise ValueError("stop")
            return dp

        handler, timer = signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)
        df = MapData(numbers(MANY), fail)
        with pytest.raises(ValueError, match="stop"):
            profile(df)
        assert type(df) is MapData and type(df.ds) is DataFromList
        assert signal.getsignal(signal.SIGALRM) is handler
        left = signal.getitimer(signal.ITIMER_REAL)
        assert left[1] == timer[1] and (left[0] > 0) == (timer[0] > 0)

    def test_a_source_that_ended_is_not_asked_again(self, monkeypatch):
        monkeypatch.setattr(profiling, "_CLOCKED_DATAPOINTS", 10**6)  # ends while clocked
        df = ZippedSource(20)
        assert profile(df, seconds=None).datapoints == 20
        assert df.drawn == 21  # zip draws once more than it has pairs, and not again after

    def test_iterators_made_per_datapoint_are_added_up_as_they_end(self):
        df = FreshIterators(MapData(numbers(20), keep))
        counters = []
        instrument = profiling.instrument

        def keep_counters(nodes, run, swapped):
            counters.append(run.counters)
            return instrument(nodes, run, swapped)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(profiling, "instrument", keep_counters)
            report = profile(df, seconds=None)
        assert report.datapoints == 1000
        assert stage(report, "MapData").datapoints == 1000
        assert all(len(c.tallies) == 0 for c in counters[0].values())

    @pytest.mark.timeout(TIMEOUT_S)
    @pytest.mark.parametrize("parallel", ["runner", "mapper"])
    def test_a_worker_that_dies_is_named_as_soon_as_without_profile(self, parallel):
        if parallel == "runner":
            df = MapData(MultiProcessRunnerZMQ(DiesAfter(5_000), num_proc=1), keep)
        else:
            df = MultiProcessMapDataZMQ(numbers(MANY), 1, die_at_5000)
        start = time.perf_counter()
        try:
            with pytest.raises(WorkerDiedError):
                profile(df, seconds=30)
        finally:
            df.close()
        assert time.perf_counter() - start < 10

    def test_work_between_short_waits_is_the_work_of_its_stage(self):
        # The worker makes a datapoint in 2 SLOW_S, the consumer's map takes SLOW_S of
        # it: the consumer waits about half the time, in many short waits.
        def twice_slow(dp):
            busy(2 * SLOW_S)
            return dp

        runner = MultiProcessRunnerZMQ(MapData(numbers(MANY), twice_slow), num_proc=1)
        df = MapData(runner, slow)
        try:
            report = profile(df, num=200)
        finally:
            df.close()
        parallel = stage(report, "MultiProcessRunnerZMQ")
        assert 0.3 < report.stages[0].share < 0.7
        assert 0.3 < parallel.share < 0.7

    def test_a_wait_for_workers_is_the_wait_of_the_parallel_stage(self):
        df = MapData(MultiProcessMapDataZMQ(numbers(MANY), 1, slow), keep)
        try:
            report = profile(df, num=150)
        finally:
            df.close()
        parallel = stage(report, "MultiProcessMapDataZMQ")
        assert report.samples > 20
        assert parallel.share > 0.8 and report.stages[0].share < 0.1

    def test_outside_the_main_thread_it_clocks_all_along(self):
        reports = []
        df = MapData(MapDataComponent(numbers(MANY), slow, index=0), keep)
        thread = threading.Thread(target=lambda: reports.append(profile(df, num=100)))
        thread.start()
        thread.join(TIMEOUT_S)
        (report,) = reports
        assert report.samples == 0 and report.clocked_seconds == report.wall_seconds
        assert report.bottleneck.stage is report.stages[1]


@pytest.fixture
def own_alarm():
    """Give SIGALRM to the test, and the test runner's handler and timer back after."""
    handler = signal.getsignal(signal.SIGALRM)
    timer = signal.setitimer(signal.ITIMER_REAL, 0)
    calls = []
    signal.signal(signal.SIGALRM, lambda signum, frame: calls.append(time.perf_counter()))
    try:
        yield calls
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, handler)
        if timer[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, *timer)


@pytest.mark.usefixtures("sampled_soon")
class TestTheSignalItSamplesWith:
    def test_a_timer_set_before_keeps_its_handler_and_time(self, own_alarm):
        handler = signal.getsignal(signal.SIGALRM)
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        report = profile(MapData(MapDataComponent(numbers(MANY), slow, index=0), keep), num=100)
        assert report.samples > 0
        assert signal.getsignal(signal.SIGALRM) is handler
        assert 25.0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 30.0
        assert own_alarm == []

    def test_a_timer_due_while_it_samples_fires_on_time(self, own_alarm):
        df = MapData(MapDataComponent(numbers(MANY), slow, index=0), keep)
        start = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        report = profile(df, num=300)  # 0.6 s
        end = time.perf_counter()
        assert len(own_alarm) == 1
        # when it was due, give or take a pause of the process: not when profile ended
        assert own_alarm[0] - start >= 0.1 and own_alarm[0] < end - 0.2
        assert report.datapoints == 300 and report.samples > 0
        assert report.bottleneck.stage is report.stages[1]

    def test_a_signal_of_its_timer_at_once_reaches_its_own_handler(self, own_alarm):
        from dataflow._sampler import StackSampler
        from dataflow._timing import Run

        real = signal.setitimer

        def setitimer(which, seconds, interval=0.0):
            old = real(which, 0)  # armed, it fires at once
            if seconds > 0:
                signal.raise_signal(signal.SIGALRM)
            return old

        run = Run()
        sampler = StackSampler(run, 0.002)
        signal.setitimer = setitimer
        try:
            assert sampler.start()
            sampler.stop()
        finally:
            signal.setitimer = real
        assert run.samples == 1
        assert own_alarm == []

    def test_without_a_timer_set_before_none_is_left_set(self, own_alarm):
        profile(MapData(numbers(MANY), slow), num=50)
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        assert own_alarm == []

    def test_a_handler_set_from_c_is_left_alone(self, monkeypatch, own_alarm):
        monkeypatch.setattr(signal, "getsignal", lambda signum: None)
        report = profile(MapData(numbers(MANY), slow), num=100)
        assert report.samples == 0 and report.clocked_seconds == report.wall_seconds

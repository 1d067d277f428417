"""Tests of :func:`dataflow.profile` inside workers: statistics of the stages that
run in worker processes and threads travel back, and the verdict names the
slow stage wherever it runs."""

from __future__ import annotations

import json
import time

import pytest
from _profile_common import SLOW_S, busy, keep, numbers, slow, stage

from dataflow import (
    BatchData,
    DataFlow,
    MapData,
    MapDataComponent,
    MultiProcessMapDataZMQ,
    MultiProcessRunner,
    MultiProcessRunnerZMQ,
    MultiThreadMapData,
    MultiThreadRunner,
    WorkerError,
    _profile_verdict,
    _profile_workers,
    profile,
)
from dataflow._profile_workers import requested
from dataflow.profiling import ProfileReport

pytestmark = pytest.mark.timeout(90)

MANY = 1_000_000  # more datapoints than any run takes
RUN_S = 1.5  # long enough for several statistics from every worker


class SlowDecoder(DataFlow):
    """A user's own source: slow, endless."""

    def __iter__(self):
        i = 0
        while True:
            busy(SLOW_S)
            yield [i]
            i += 1


@pytest.fixture(scope="module")
def resource_tracker():
    """Start multiprocessing's resource tracker before the test takes its snapshot of
    live children: it serves the whole session, it is no worker left behind."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


def run(df: DataFlow, **limits) -> ProfileReport:
    try:
        return profile(df, **(limits or {"seconds": RUN_S}))
    finally:
        df.close()


class TestVerdictInWorkers:
    @pytest.mark.parametrize("start_method", ["fork", "spawn"])
    def test_a_slow_source_in_runner_workers(self, start_method, resource_tracker):
        source = SlowDecoder()
        runner = MultiProcessRunnerZMQ(MapData(source, keep), 2, start_method=start_method)
        report = run(BatchData(runner, 4), seconds=RUN_S if start_method == "fork" else 3.0)
        found = stage(report, "SlowDecoder")
        assert report.bottleneck.stage is found and found.df is source
        assert found.where == "worker" and found.datapoints > 20
        assert found.seconds_per_datapoint >= SLOW_S
        assert found.share > 5 * stage(report, "MapData").share
        parallel = stage(report, "MultiProcessRunnerZMQ")
        assert parallel.workers == 2 and parallel.busy > 0.7
        assert 0 <= parallel.ready <= 1 and parallel.cpus > 0

    def test_a_slow_function_in_mapper_workers(self):
        mapper = MultiProcessMapDataZMQ(numbers(MANY), 2, slow)
        report = run(mapper)
        verdict = report.bottleneck
        assert verdict.stage.df is mapper and verdict.stage.where == "worker"
        assert verdict.stage.name == "slow [map_func, in workers]"
        assert verdict.stage.seconds_per_datapoint >= SLOW_S
        assert stage(report, "MultiProcessMapDataZMQ").busy > 0.7
        assert "slow [map_func, in workers]" in verdict.explanation

    def test_a_slow_input_of_a_mapper_is_named_in_the_consumer(self):
        mapper = MultiProcessMapDataZMQ(MapDataComponent(numbers(MANY), slow, index=0), 2, keep)
        report = run(mapper)
        assert report.bottleneck.stage.name.startswith("MapDataComponent(func=slow")
        assert report.bottleneck.stage.where == "consumer"
        # Its workers wait for tasks most of the time.
        assert stage(report, "MultiProcessMapDataZMQ").busy < 0.7

    def test_a_slow_stage_after_a_fast_runner(self):
        df = MapData(MultiProcessRunnerZMQ(MapData(numbers(MANY), keep), 2), slow)
        report = run(df)
        assert report.bottleneck.stage.df is df
        runner = stage(report, "MultiProcessRunnerZMQ")
        # The consumer mostly finds datapoints waiting; the workers wait for room to send.
        assert runner.ready > 0.3 and runner.busy < 0.7, runner.note

    def test_the_queue_runner_sends_statistics_too(self):
        inner = MapData(SlowDecoder(), keep)
        report = run(MultiProcessRunner(inner, 50, 2))
        assert report.bottleneck.stage.name == "SlowDecoder()"
        assert stage(report, "MultiProcessRunner").workers == 2

    def test_python_in_threads_is_held_back_by_the_gil(self):
        source = SlowDecoder()
        sources = iter([source, SlowDecoder()])
        runner = MultiThreadRunner(lambda: MapData(next(sources), keep), 4, 2)
        report = run(runner)
        verdict = report.bottleneck
        assert verdict.stage.df is source  # the first thread's dataflow is drawn
        assert "GIL" in verdict.explanation
        assert "MultiProcessRunnerZMQ(..., num_proc=2)" in verdict.suggestion
        assert stage(report, "MultiThreadRunner").cpus < 1.3

    def test_threads_that_wait_on_io_are_told_to_be_more(self):
        def read(dp):
            time.sleep(0.005)  # a file, a network: no CPU
            return dp

        report = run(MultiThreadMapData(numbers(MANY), 4, read))
        # Other processes may have kept this machine's CPUs busy: judge both cases.
        quiet = _profile_verdict.verdict(report.stages, 0.2)
        assert quiet.stage.name == "read [map_func, in workers]"
        assert "wait on something else" in quiet.explanation
        assert "num_thread=8" in quiet.suggestion and "GIL" not in quiet.explanation
        full = _profile_verdict.verdict(report.stages, 0.95)
        assert full.stage.name == "read [map_func, in workers]"
        assert "while this machine's CPUs are all busy" in full.explanation
        assert "GIL" not in full.explanation
        assert full.suggestion.startswith("first find what else runs on this machine")
        assert "num_thread=8" in full.suggestion

    def test_python_in_mapper_threads_is_held_back_by_the_gil(self):
        mapper = MultiThreadMapData(numbers(MANY), 2, slow)
        report = run(mapper)
        assert report.bottleneck.stage.name == "slow [map_func, in workers]"
        assert "MultiProcessMapDataZMQ(..., num_proc=2)" in report.bottleneck.suggestion


class TestWorkerStatistics:
    def test_counts_add_up_over_the_workers(self):
        # A pass of 400 datapoints over 2 exactly-once workers, all of it timed.
        inner = MapData(numbers(400), slow)
        runner = MultiProcessRunnerZMQ(inner, 2, exactly_once=True)
        report = run(runner, seconds=None)
        assert report.datapoints == 400
        row = stage(report, "MapData")
        # The last statistics leave each worker when it ends its pass or less
        # than STATS_S before: most of the pass is in them.
        assert 300 <= row.datapoints <= 400
        assert row.bytes_out == row.datapoints * 16

    def test_the_report_says_when_workers_started_before_profile(self):
        runner = MultiProcessRunnerZMQ(MapData(SlowDecoder(), keep), 1)
        runner.reset_state()
        report = run(runner, seconds=0.5)
        parallel = stage(report, "MultiProcessRunnerZMQ")
        assert "started before profile()" in parallel.note and parallel.busy is None
        assert not stage(report, "SlowDecoder").measured
        assert report.bottleneck.stage is parallel
        assert "not timed" in report.bottleneck.suggestion

    def test_to_dict_has_the_worker_numbers(self):
        report = run(MultiProcessMapDataZMQ(numbers(MANY), 2, slow))
        data = json.loads(json.dumps(report.to_dict()))
        (parallel,) = [s for s in data["stages"] if s["where"] == "parallel"]
        assert parallel["workers"] == 2 and parallel["busy"] > 0.7
        assert set(parallel) >= {"busy", "ready", "cpus"}

    def test_a_worker_error_while_profiling_reaches_the_caller(self):
        def fail(dp):
            if dp[0] == 20:
                raise ValueError("bad record 20")
            return dp

        mapper = MultiProcessMapDataZMQ(numbers(MANY), 2, fail)
        with pytest.raises(WorkerError, match="bad record 20"):
            run(mapper)

    def test_workers_stop_timing_when_profile_returns(self):
        # Long passes: the workers are in the middle of one when profile() returns.
        inner = MapData(numbers(MANY), keep)
        runner = MultiProcessRunnerZMQ(inner, 2)
        threads = MultiThreadRunner(lambda: MapData(numbers(100_000), keep), 4, 2)
        for df in (runner, threads):
            try:
                profile(df, seconds=0.5)
                assert not df._profiled
                it = iter(df)
                for _ in range(2000):
                    next(it)
                time.sleep(0.3)  # a worker process looks every 10 ms
                first = df.worker_statistics()
                for _ in range(5000):
                    next(it)
                second = df.worker_statistics()
                it.close()
            finally:
                df.close()
            assert first and [r["stages"] for r in second] == [r["stages"] for r in first]
        assert type(threads.ds) is MapData and type(inner) is MapData

    def test_a_short_run_has_the_last_numbers_of_the_workers(self):
        mapper = MultiProcessMapDataZMQ(numbers(MANY), 2, slow)
        report = run(mapper, num=30)  # 30 ms: before a worker writes on its own
        row = stage(report, "slow [map_func")
        # And the tasks in flight, which the workers went on with.
        assert 30 <= row.datapoints <= 30 + mapper.buffer_size
        assert stage(report, "MultiProcessMapDataZMQ").busy is not None

    def test_seconds_bounds_the_run_when_datapoints_come_in_bursts(self):
        runner = MultiProcessRunnerZMQ(MapData(numbers(MANY), slow), 2)
        report = run(BatchData(runner, 2), seconds=1.0)
        assert report.wall_seconds < 1.5

    def test_a_runner_in_runner_workers_is_not_timed(self):
        def where(dp):
            return [dp[0], _profile_workers.current() is not None, _profile_workers.requested()]

        inner = MultiProcessRunnerZMQ(MapData(numbers(MANY), where), 1)
        outer = MultiProcessRunnerZMQ(MapData(inner, keep), 1)
        try:
            profile(outer, num=50)
            dp = next(iter(outer))
        finally:
            outer.close()
        assert dp[1:] == [False, False]

    def test_a_pipeline_not_profiled_starts_its_workers_as_always(self):
        runner = MultiProcessRunnerZMQ(MapData(numbers(MANY), keep), 2)
        runner.reset_state()
        try:
            it = iter(runner)
            for _ in range(100):
                next(it)
            it.close()
            assert not runner._profiled and runner.worker_statistics() == []
        finally:
            runner.close()
        assert not requested()


class TestStatsBoard:
    """The shared-memory rows the worker processes write their numbers to."""

    snapshot = {"wall": 2.5, "waiting": 0.5, "cpu": None, "stages": [[10, 0.25, 4096], None]}

    def test_a_row_reads_back_as_written_and_rows_not_written_are_left_out(self):
        board = _profile_workers.StatsBoard(3, 2)
        board.write(1, self.snapshot)
        assert board.read() == [
            {"wall": 2.5, "waiting": 0.5, "cpu": None, "stages": [[10, 0.25, 4096], None]}
        ]

    def test_a_row_seen_in_part_is_not_read(self):
        board = _profile_workers.StatsBoard(2, 2)
        board.write(0, self.snapshot)
        board.write(1, self.snapshot)
        # A processor that reorders stores may show a row's new sequence number before
        # its new cells: one cell is still the old one, so the checksum does not match.
        board.cells[1 * board.stride + 1] = 7.0
        assert [r["wall"] for r in board.read()] == [2.5]  # worker 1's row is left out
        board.write(1, dict(self.snapshot, wall=3.0))
        assert [r["wall"] for r in board.read()] == [2.5, 3.0]

    def test_a_row_whose_writer_died_mid_write_is_not_read(self):
        board = _profile_workers.StatsBoard(1, 2)
        board.write(0, self.snapshot)
        board.cells[0] += 1  # odd: being written, and never finished
        assert board.read() == []

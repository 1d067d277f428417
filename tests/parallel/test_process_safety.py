"""Process safety of the parallel dataflows, under fault injection.

* ``close()`` from another thread stops the workers and makes the iterating
  thread raise :class:`DataFlowTerminated` (no crash inside ZeroMQ, nothing
  left running); iterating after ``close()`` says the dataflow was closed.
* Workers end with the training process however they were started
  (forkserver, or a ``reset_state()`` in a thread that has ended).
* Ctrl-C while spawned workers start up prints no traceback from a worker.

The races are run in fresh interpreters, many times over, so that a crash
inside a C library fails the test instead of killing the test run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from _procs import survivors

from dataflow import DataFlow, DataFlowTerminated, DataFromList
from dataflow.parallel import (
    MultiProcessMapAndBatchDataZMQ,
    MultiProcessMapDataZMQ,
    MultiProcessRunner,
    MultiProcessRunnerZMQ,
    MultiThreadMapData,
    MultiThreadRunner,
)

# Generous bounds: the machine running the tests may be loaded.
_SCRIPT_S = 120.0  # a whole script of repetitions
_GONE_S = 5.0  # how long workers may outlive the process that started them
_START_S = 60.0  # how long a script may take to start its workers (imports, spawn)


# Set after each test, so that worker threads stuck in user code (which nothing can
# stop) get out; worker processes are stopped by the dataflows themselves.
_RELEASE = threading.Event()


@pytest.fixture(autouse=True)
def release_stuck_threads():
    _RELEASE.clear()
    yield
    _RELEASE.set()


class Stalling(DataFlow):
    """``[0]``, ``[1]``, then blocks (a dead NFS mount, a deadlock) until the test ends."""

    def __iter__(self):
        yield [0]
        yield [1]
        while not _RELEASE.is_set():
            time.sleep(0.01)


def _stalling_map(dp):
    while dp[0] >= 2 and not _RELEASE.is_set():
        time.sleep(0.01)
    return dp


# Each factory builds a parallel dataflow whose third datapoint never comes.
_FACTORIES = {
    "MultiProcessRunnerZMQ": lambda: MultiProcessRunnerZMQ(Stalling(), num_proc=2),
    "MultiProcessRunner": lambda: MultiProcessRunner(Stalling(), num_prefetch=4, num_proc=2),
    "MultiThreadRunner": lambda: MultiThreadRunner(lambda: Stalling(), 4, 2),
    "MultiProcessMapDataZMQ": lambda: MultiProcessMapDataZMQ(
        DataFromList([[i] for i in range(10)], shuffle=False), 2, _stalling_map, ordered=True
    ),
    "MultiProcessMapAndBatchDataZMQ": lambda: MultiProcessMapAndBatchDataZMQ(
        DataFromList([[i] for i in range(10)], shuffle=False), 2, _stalling_map, 1
    ),
    "MultiThreadMapData": lambda: MultiThreadMapData(
        DataFromList([[i] for i in range(10)], shuffle=False), 2, _stalling_map, ordered=True
    ),
}
_PROCESS_KINDS = [k for k in _FACTORIES if "Thread" not in k]


def _run_script(body: str, *args: str, timeout: float = _SCRIPT_S) -> subprocess.CompletedProcess:
    source = textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-u", "-c", source, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _survivors(pids, timeout: float = _GONE_S):
    return survivors(pids, timeout)


def _kill_all(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ---- close() from another thread ---------------------------------------------------------


class TestCloseFromAnotherThread:
    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("kind", list(_FACTORIES))
    def test_the_iterating_thread_raises_dataflow_terminated(self, kind):
        df = _FACTORIES[kind]()
        df.reset_state()
        it = iter(df)
        next(it)
        threading.Timer(0.3, df.close).start()
        start = time.monotonic()
        with pytest.raises(DataFlowTerminated, match=f"^{kind} was closed while"):
            for _ in it:  # waits for a stalled worker until the watchdog closes df
                pass
        assert time.monotonic() - start < 10
        df.close()

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("kind", list(_FACTORIES))
    def test_iterating_after_close_says_it_was_closed(self, kind):
        df = _FACTORIES[kind]()
        df.reset_state()
        it = iter(df)
        next(it)
        df.close()
        with pytest.raises(DataFlowTerminated, match=f"^{kind} was closed while .*Build a new one"):
            next(it)
        with pytest.raises(RuntimeError, match=f"^{kind} was closed; build a new one"):
            next(iter(df))

    @pytest.mark.timeout(_SCRIPT_S + 30)
    @pytest.mark.parametrize(
        "kind", ["MultiProcessRunnerZMQ", "MultiProcessMapDataZMQ", "MultiThreadMapData"]
    )
    def test_never_crashes_the_process_over_many_runs(self, kind):
        # A crash inside libzmq (an assertion, a segfault) kills the script, not pytest.
        result = _run_script(
            """
            import sys, threading, time
            from dataflow import DataFlowTerminated
            from dataflow.testing import live_child_pids
            sys.path.insert(0, sys.argv[2])
            from test_process_safety import _FACTORIES

            for attempt in range(12):
                df = _FACTORIES[sys.argv[1]]()
                df.reset_state()
                it = iter(df)
                next(it)
                threading.Timer(0.02 * (attempt % 6), df.close).start()
                try:
                    for _ in it:
                        pass
                except DataFlowTerminated:
                    pass
                else:
                    sys.exit("no DataFlowTerminated")
                deadline = time.monotonic() + 5
                while live_child_pids() and time.monotonic() < deadline:
                    time.sleep(0.05)
                if live_child_pids():
                    sys.exit(f"left behind: {live_child_pids()}")
            print("OK")
            """,
            kind,
            os.path.dirname(__file__),
        )
        assert result.returncode == 0 and result.stdout.strip() == "OK", result.stderr[-3000:]


# ---- workers end with the training process ----------------------------------------------

_ORPHAN_SCRIPT = """
import sys, threading, time
from dataflow import DataFlow, DataFromList
from dataflow.parallel import MultiProcessMapDataZMQ, MultiProcessRunnerZMQ
from dataflow.testing import live_child_pids


class Stuck(DataFlow):
    def __iter__(self):
        yield [0]
        while True:
            time.sleep(0.01)  # stuck, never sending again


def stuck(dp):
    while True:
        time.sleep(0.01)


def build():
    method = sys.argv[2] if sys.argv[2] != "default" else None
    if sys.argv[1] == "runner":
        return MultiProcessRunnerZMQ(Stuck(), num_proc=2, start_method=method)
    return MultiProcessMapDataZMQ(DataFromList([[0]] * 10), 2, stuck, start_method=method)


if __name__ == "__main__":
    df = build()
    if sys.argv[3] == "thread":
        t = threading.Thread(target=df.reset_state)
        t.start()
        t.join()
    else:
        df.reset_state()
    print("PIDS", *sorted(live_child_pids()), flush=True)
    time.sleep(600)
"""


class TestNoOrphans:
    @pytest.mark.timeout(_START_S + 30)
    @pytest.mark.parametrize("kind", ["runner", "mapper"])
    @pytest.mark.parametrize(
        "method, where",
        [("forkserver", "main"), ("default", "thread"), ("spawn", "thread")],
    )
    def test_workers_end_when_the_training_process_is_killed(self, kind, method, where, tmp_path):
        script = tmp_path / "train.py"
        script.write_text(_ORPHAN_SCRIPT)
        proc = subprocess.Popen(
            [sys.executable, "-u", str(script), kind, method, where],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        children = []
        try:
            line = proc.stdout.readline()
            assert line.startswith("PIDS"), (line, proc.stderr.read() if proc.poll() else "")
            children = [int(pid) for pid in line.split()[1:]]
            assert len(children) >= 2
            time.sleep(0.3)  # the workers are busy in their stuck loops
            proc.kill()  # the out-of-memory killer
            proc.wait(10)
            # Workers, and for forkserver the fork server and resource tracker too.
            assert _survivors(children) == []
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
            _kill_all(children)


# ---- Ctrl-C while spawned workers start -----------------------------------------------------

_CTRL_C_SCRIPT = """
import sys, time
from dataflow import DataFromList
from dataflow.parallel import MultiProcessRunnerZMQ

if __name__ == "__main__":
    df = MultiProcessRunnerZMQ(DataFromList([[0]] * 4), num_proc=2, start_method="spawn")
    try:
        print("START", flush=True)  # a Ctrl-C may come before print returns
        df.reset_state()
        time.sleep(30)
    except KeyboardInterrupt:
        df.close()
        print("INTERRUPTED", flush=True)
"""


class TestCtrlCUnderSpawn:
    @pytest.mark.timeout(_START_S * 2)
    def test_workers_starting_up_print_no_traceback(self, tmp_path):
        script = tmp_path / "train.py"
        script.write_text(_CTRL_C_SCRIPT)
        # A Ctrl-C just before the workers start, while the first start, and later.
        for delay in (0.0, 0.0, 0.01, 0.01, 0.02, 0.02, 0.05, 0.1, 0.2, 0.4):
            proc = subprocess.Popen(
                [sys.executable, "-u", str(script)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            try:
                assert proc.stdout.readline() == "START\n"
                time.sleep(delay)  # the workers are importing their modules now
                os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole group
                out, err = proc.communicate(timeout=_START_S)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.communicate()
            assert "Traceback" not in err, (delay, err)
            assert out.strip().endswith("INTERRUPTED"), (delay, out, err)


# ---- a stuck worker explains itself ----------------------------------------------------------


def stuck_on_a_dead_mount():
    """Where the workers of the timeout tests wait: the name their stacks must show."""
    while not _RELEASE.is_set():
        time.sleep(0.01)


class StuckSource(DataFlow):
    def __iter__(self):
        yield [0]
        stuck_on_a_dead_mount()


def _stuck_map(dp):
    if dp[0] >= 1:
        stuck_on_a_dead_mount()
    return dp


_STUCK = {
    "MultiProcessRunnerZMQ": lambda **kw: MultiProcessRunnerZMQ(StuckSource(), num_proc=2, **kw),
    "MultiProcessRunner": lambda **kw: MultiProcessRunner(StuckSource(), 4, 2, **kw),
    "MultiThreadRunner": lambda **kw: MultiThreadRunner(lambda: StuckSource(), 4, 2, **kw),
    "MultiProcessMapDataZMQ": lambda **kw: MultiProcessMapDataZMQ(
        DataFromList([[i] for i in range(10)], shuffle=False), 2, _stuck_map, ordered=True, **kw
    ),
    "MultiProcessMapAndBatchDataZMQ": lambda **kw: MultiProcessMapAndBatchDataZMQ(
        DataFromList([[i] for i in range(10)], shuffle=False), 2, _stuck_map, 1, ordered=True, **kw
    ),
    "MultiThreadMapData": lambda **kw: MultiThreadMapData(
        DataFromList([[i] for i in range(10)], shuffle=False), 2, _stuck_map, ordered=True, **kw
    ),
}


class TestTimeout:
    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("kind", list(_STUCK))
    def test_raises_timeout_error_with_each_workers_stack(self, kind):
        df = _STUCK[kind](timeout=1.0)
        df.reset_state()
        start = time.monotonic()
        with pytest.raises(TimeoutError) as excinfo:
            for _ in df:
                pass
        waited = time.monotonic() - start
        message = str(excinfo.value)
        assert message.startswith(f"{kind} received no datapoint for "), message
        assert "(timeout=1); its workers are stopped. Where each worker was:" in message
        for index in range(2):
            assert f"worker {index}" in message
        # At least one worker's stack shows where it is stuck, by function name.
        assert "stuck_on_a_dead_mount" in message, message
        assert 1.0 <= waited < 15
        with pytest.raises(RuntimeError, match="stopped after a worker failed"):
            next(iter(df))
        df.close()

    @pytest.mark.timeout(60)
    def test_time_spent_by_the_caller_between_datapoints_does_not_count(self):
        source = DataFromList([[i] for i in range(4)], shuffle=False)
        with MultiProcessRunnerZMQ(source, num_proc=1, timeout=0.5) as df:
            df.reset_state()
            out = []
            for dp in df:
                time.sleep(0.8)  # a slow training step
                out.append(dp[0])
        assert out == [0, 1, 2, 3]

    @pytest.mark.parametrize("value", [0, -1.0, float("nan")])
    def test_refuses_a_timeout_that_is_not_positive(self, value):
        with pytest.raises(ValueError, match=r"^timeout must be None or a positive number"):
            MultiProcessRunnerZMQ(DataFromList([[0]]), num_proc=1, timeout=value)

    @pytest.mark.parametrize("value", ["1", True])
    def test_refuses_a_timeout_that_is_not_a_number(self, value):
        with pytest.raises(TypeError, match=r"^timeout must be None or a positive number"):
            MultiThreadMapData(DataFromList([[0]]), 1, lambda dp: dp, timeout=value)


class TestStallWarning:
    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("kind", ["MultiProcessRunnerZMQ", "MultiThreadMapData"])
    def test_warns_once_per_stall_with_each_workers_stack(self, kind, monkeypatch):
        from dataflow.parallel import _consumer as _base

        monkeypatch.setattr(_base, "_STALL_WARNING_S", 0.5)
        df = _STUCK[kind]()
        df.reset_state()
        it = iter(df)
        next(it)
        with pytest.warns(_base.StallWarning) as record:
            threading.Timer(2.0, df.close).start()  # ends the stall after several polls
            with pytest.raises(DataFlowTerminated):
                for _ in it:
                    pass
        stalls = [w for w in record if issubclass(w.category, _base.StallWarning)]
        assert len(stalls) == 1  # once per stall, not once per poll
        message = str(stalls[0].message)
        assert message.startswith(f"{kind} has received no datapoint for ")
        assert "pass timeout= to raise instead" in message
        assert "stuck_on_a_dead_mount" in message


# ---- a worker's error keeps its type ---------------------------------------------------------


class DiskFull(OSError):
    """An exception class of the user's own."""


def _raise_in_map(kind):
    def fail(dp):
        if kind == "missing":
            with open("/nonexistent/dir/file.jpg"):
                pass
        if kind == "key":
            return {}["label"]
        if kind == "own":
            raise DiskFull("no space left on /data")
        if kind == "exit":
            raise SystemExit(3)
        if kind == "stop":
            raise StopIteration
        return dp

    return fail


_MAPPERS = {
    "MultiProcessMapDataZMQ": lambda f: MultiProcessMapDataZMQ(DataFromList([[0]]), 1, f),
    "MultiThreadMapData": lambda f: MultiThreadMapData(DataFromList([[0]]), 1, f),
}


class TestWorkerErrorTypes:
    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("mapper", list(_MAPPERS))
    @pytest.mark.parametrize(
        "kind, original", [("missing", FileNotFoundError), ("key", KeyError), ("own", DiskFull)]
    )
    def test_the_original_type_catches_it(self, mapper, kind, original):
        from dataflow.parallel import WorkerError

        with _MAPPERS[mapper](_raise_in_map(kind)) as df:
            df.reset_state()
            with pytest.raises(original) as excinfo:
                next(iter(df))
        err = excinfo.value
        assert isinstance(err, WorkerError)
        assert err.worker_index == 0 and isinstance(err.pid, int)
        assert str(err).startswith(f"{mapper} worker 0 (pid {err.pid}) raised ")
        assert original.__name__ in err.remote_traceback

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("kind", ["exit", "stop"])
    def test_system_exit_and_stop_iteration_stay_plain_worker_errors(self, kind):
        from dataflow.parallel import WorkerError

        with _MAPPERS["MultiProcessMapDataZMQ"](_raise_in_map(kind)) as df:
            df.reset_state()
            with pytest.raises(WorkerError) as excinfo:
                next(iter(df))
        assert type(excinfo.value) is WorkerError  # ending the consumer would hide the error

    def test_a_typed_error_pickles(self):
        import pickle

        from dataflow.parallel import WorkerError
        from dataflow.parallel._errors import worker_error

        err = worker_error("X", 1, 42, ("FileNotFoundError", "gone", "tb"))
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err)
        assert isinstance(back, FileNotFoundError) and isinstance(back, WorkerError)
        assert (back.worker_index, back.pid, str(back)) == (1, 42, str(err))

    def test_an_unknown_type_gives_a_plain_worker_error(self):
        from dataflow.parallel import WorkerError
        from dataflow.parallel._errors import worker_error

        for name in ("NoSuchError", "not_imported_module.Error", "tests.Local.<locals>.E"):
            err = worker_error("X", 0, 1, (name, "m", ""))
            assert type(err) is WorkerError


# ---- no fork while the library's own threads run --------------------------------------------


def _os_threads() -> int:
    """The number of threads of this process, as the kernel counts them."""
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
class TestForkWithoutThreads:
    @pytest.mark.timeout(60)
    def test_nested_parallel_dataflows_fork_while_no_thread_of_theirs_runs(self, monkeypatch):
        # Python 3.12+ warns (and may deadlock the child) when a process with other
        # threads forks. A mapper over a runner forks twice in this process: its own
        # workers, then (resetting its source) the runner's.
        baseline = _os_threads()
        counts = []
        real_fork = os.fork

        def fork():
            counts.append(_os_threads())  # ZeroMQ's I/O threads count too
            return real_fork()

        monkeypatch.setattr(os, "fork", fork)
        source = MultiProcessRunnerZMQ(
            DataFromList([[i] for i in range(8)], shuffle=False), 2, exactly_once=True
        )
        with MultiProcessMapDataZMQ(source, 2, lambda dp: dp, strict=True) as df:
            df.reset_state()
            assert sorted(dp[0] for dp in df) == list(range(8))
        assert len(counts) == 4
        assert max(counts) <= baseline, (counts, baseline)  # no thread of ours at any fork


class _HoldsTheProgressLock(DataFlow):
    """Takes the lock of a kind of tqdm bar (as a bar does while it prints) and keeps it."""

    def __init__(self, bar_class):
        self.bar_class = bar_class

    def __iter__(self):
        self.bar_class.get_lock().acquire()
        yield [0]
        while True:
            time.sleep(0.05)


def _bar_classes():
    import tqdm

    from dataflow._progress import ProgressBar

    class MyBar(tqdm.tqdm):  # a subclass of the user's, with a lock of its own
        pass

    return {"tqdm": tqdm.tqdm, "library": ProgressBar, "subclass": MyBar}


class TestProgressBarsOfKilledWorkers:
    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("kind", ["tqdm", "library", "subclass"])
    def test_a_worker_killed_holding_the_progress_lock_leaves_the_parents_bars_working(
        self, monkeypatch, kind
    ):
        import io

        import tqdm

        monkeypatch.setattr(tqdm.tqdm, "monitor_interval", 0)  # no monitor thread
        bar_class = _bar_classes()[kind]
        # The lock that tqdm gives the first class to ask for one, before the fork.
        monkeypatch.setattr(bar_class, "_lock", tqdm.std.TqdmDefaultWriteLock(), raising=False)

        with bar_class(total=1, file=io.StringIO()):
            pass  # the parent's lock exists before the fork, as in a script with bars
        df = MultiProcessRunnerZMQ(_HoldsTheProgressLock(bar_class), 1)
        df.reset_state()
        try:
            assert next(iter(df)) == [0]  # the worker holds its lock now
            os.kill(df._workers.pid(0), signal.SIGKILL)
        finally:
            df.close()
        done = threading.Event()

        def bar():
            with bar_class(total=1, file=io.StringIO()):
                pass
            done.set()

        thread = threading.Thread(target=bar, daemon=True)
        thread.start()
        assert done.wait(10), "a progress bar of the parent waits for a dead worker's lock"
        thread.join(5)

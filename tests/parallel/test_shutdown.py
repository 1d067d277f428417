"""No orphans: the worker processes of MultiProcessRunnerZMQ and
MultiProcessMapDataZMQ end with the program that started them, however it ends.

Each test runs a small script in a fresh interpreter that prints its workers'
pids, ends it (normally, Ctrl-C, SIGKILL, an uncaught exception), and checks
that every worker is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from _procs import process_alive, survivors

from dataflow import DataFromGenerator, DataFromList
from dataflow.parallel import MultiProcessMapDataZMQ, MultiProcessRunnerZMQ

# Generous bounds: the machine running the tests may be loaded.
# How long a script may take to exit once its last statement ran (or its exception was raised).
_EXIT_S = 5.0
# How long workers may outlive their dead parent.
_GONE_S = 5.0
# How long a script may take to start its workers (imports and fork).
_START_S = 30.0
# close() while workers are busy in a 10 s call must return faster than this.
_CLOSE_S = 1.5

_PREAMBLE = """
import sys
import time

from dataflow import DataFromGenerator, DataFromList
from dataflow.parallel import MultiProcessMapDataZMQ, MultiProcessRunnerZMQ
from dataflow.testing import live_child_pids

KIND = sys.argv[1]
DELAY = float(sys.argv[2])  # how long a worker takes per datapoint


def slow_source():
    i = 0
    while True:
        time.sleep(DELAY)
        yield [i]
        i += 1


def slow_map(dp):
    time.sleep(DELAY)
    return [dp[0] * 2]


if KIND == "runner":
    df = MultiProcessRunnerZMQ(DataFromGenerator(slow_source), num_proc=2)
else:
    df = MultiProcessMapDataZMQ(DataFromList([[i] for i in range(1000)]), 2, slow_map)
df.reset_state()
print("PIDS", *sorted(live_child_pids()), flush=True)
"""

KINDS = ["runner", "mapper"]


class _Script:
    """A script run in a fresh interpreter in a session of its own, its stdout read by line."""

    def __init__(self, body: str, kind: str, delay: float) -> None:
        source = _PREAMBLE + textwrap.dedent(body)
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", source, kind, str(delay)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl-C goes to its process group only
        )
        self.workers = [int(pid) for pid in self.expect("PIDS").split()[1:]]
        assert len(self.workers) == 2, self.workers

    def expect(self, word: str) -> str:
        """The next line of output, which must start with *word*."""
        line = self.proc.stdout.readline()
        if not line.startswith(word):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=_EXIT_S)
            raise AssertionError(f"expected {word!r}, got {line!r}; stderr:\n{err}")
        return line

    def wait(self) -> tuple:
        """``(returncode, stderr, seconds it took to exit)``."""
        start = time.monotonic()
        try:
            _, err = self.proc.communicate(timeout=_EXIT_S + 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise AssertionError("the script did not exit") from None
        return self.proc.returncode, err, time.monotonic() - start

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()
        for pid in self.workers:  # do not leave workers behind when a test fails
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid: int) -> bool:
    return process_alive(pid)


def _survivors(pids, timeout: float = _GONE_S):
    return survivors(pids, timeout)


@pytest.fixture
def script():
    started = []

    def run(body: str, kind: str, delay: float = 0.01) -> _Script:
        started.append(_Script(body, kind, delay))
        return started[-1]

    yield run
    for s in started:
        s.kill()


pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux only"
)


class TestMultiProcessRunnerZMQAndMultiProcessMapDataZMQ:
    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("kind", KINDS)
    def test_script_that_ends_without_close_exits_promptly_and_leaves_no_worker(self, script, kind):
        s = script(
            """
            it = iter(df)
            print("GOT", [next(it) for _ in range(3)], flush=True)
            print("DONE", flush=True)
            """,
            kind,
        )
        s.expect("GOT")
        s.expect("DONE")
        returncode, err, seconds = s.wait()
        assert returncode == 0, err
        assert seconds < _EXIT_S
        assert "Traceback" not in err and "Exception ignored" not in err, err
        assert _survivors(s.workers) == []

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("kind", KINDS)
    def test_ctrl_c_interrupts_once_and_leaves_no_worker(self, script, kind):
        s = script(
            """
            print("ITERATING", flush=True)
            while True:
                for dp in df:
                    pass
            """,
            kind,
        )
        s.expect("ITERATING")
        time.sleep(0.5)
        assert all(_alive(pid) for pid in s.workers)
        os.killpg(s.proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole group
        returncode, err, seconds = s.wait()
        assert returncode == -signal.SIGINT, err  # Python ends by SIGINT after cleanup
        assert seconds < _EXIT_S
        assert err.count("KeyboardInterrupt") == 1, err
        assert err.rstrip().endswith("\nKeyboardInterrupt"), err
        assert "Exception ignored" not in err, err
        assert _survivors(s.workers) == []

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("kind", KINDS)
    def test_ctrl_c_while_waiting_for_data_shows_one_traceback(self, script, kind):
        s = script(
            """
            print("ITERATING", flush=True)
            for dp in df:  # the workers are slow: the consumer waits in zmq_poll
                pass
            """,
            kind,
            delay=2.0,
        )
        s.expect("ITERATING")
        time.sleep(1.5)
        os.killpg(s.proc.pid, signal.SIGINT)
        # Regression: the wait for data ran in an 'except zmq.Again:' block, so
        # the zmq.Again traceback came first, "During handling of the above ...".
        _, err, _ = s.wait()
        assert err.count("KeyboardInterrupt") == 1, err
        assert "zmq.error.Again" not in err, err
        assert err.count("Traceback") == 1, err

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("kind", KINDS)
    def test_workers_die_with_a_killed_parent(self, script, kind):
        s = script(
            """
            print("ITERATING", flush=True)
            while True:
                for dp in df:
                    pass
            """,
            kind,
        )
        s.expect("ITERATING")
        time.sleep(0.5)
        assert all(_alive(pid) for pid in s.workers)
        os.kill(s.proc.pid, signal.SIGKILL)
        s.proc.wait(timeout=_EXIT_S)
        assert _survivors(s.workers) == []

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("kind", KINDS)
    def test_uncaught_exception_in_the_loop_exits_with_its_traceback_and_no_worker(
        self, script, kind
    ):
        s = script(
            """
            for dp in df:
                print("RAISING", flush=True)
                raise ValueError("the consumer broke")
            """,
            kind,
        )
        s.expect("RAISING")
        returncode, err, seconds = s.wait()
        assert returncode == 1, err
        assert seconds < _EXIT_S
        assert err.count("Traceback") == 1, err
        assert err.rstrip().endswith("ValueError: the consumer broke"), err
        assert "Exception ignored" not in err, err
        assert _survivors(s.workers) == []


def _sleep_after_first(dp):
    if dp[0] > 0:
        time.sleep(10)
    return dp


def _first_then_sleep():
    yield [0]
    time.sleep(10)
    yield [1]


class TestCloseSpeed:
    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("kind", KINDS)
    def test_close_returns_promptly_while_workers_are_busy(self, kind):
        if kind == "runner":
            df = MultiProcessRunnerZMQ(DataFromGenerator(_first_then_sleep), num_proc=2)
        else:
            df = MultiProcessMapDataZMQ(
                DataFromList([[i] for i in range(10)], shuffle=False), 2, _sleep_after_first
            )
        try:
            df.reset_state()
            it = iter(df)
            assert next(it) == [0]
            time.sleep(0.5)  # let the workers get into their 10 s sleep
        finally:
            start = time.monotonic()
            df.close()
            seconds = time.monotonic() - start
        it.close()
        assert seconds < _CLOSE_S

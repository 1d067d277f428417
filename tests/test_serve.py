"""Tests of the command-line tools of dataflow.remote: ``python -m dataflow.serve`` and
``python -m dataflow.receive``, run as subprocesses with timeouts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from dataflow import DataFromList, RemoteDataZMQ, send_dataflow_zmq
from dataflow.remote import PeerWarning

pytestmark = pytest.mark.timeout(120)

WAIT_S = 30


def tcp_address():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def pipeline(tmp_path):
    path = tmp_path / "pipeline.py"
    path.write_text(
        textwrap.dedent(
            """
            import time
            import numpy as np
            import dataflow as D

            def build():
                return D.DataFromList([[i, np.full(4, i)] for i in range(50)], shuffle=False)

            class Slowly(D.DataFlow):
                def __iter__(self):
                    i = 0
                    while True:
                        time.sleep(0.01)
                        yield [i]
                        i += 1

            def forever():
                return Slowly()

            def broken():
                raise RuntimeError("the data disk is gone")

            class Failing(D.DataFlow):
                def __iter__(self):
                    yield [1]
                    raise ValueError("bad record 7")

            def failing():
                return Failing()

            NOT_A_FUNCTION = 3

            def not_a_dataflow():
                return [1, 2]
            """
        )
    )
    return str(path)


def serve(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "dataflow.serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finish(proc, timeout=WAIT_S):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise
    return proc.returncode, out, err


class TestServe:
    def test_serves_the_pipeline_a_function_builds_pass_after_pass(self, pipeline):
        addr = tcp_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            proc = serve(f"{pipeline}:build", "--addr", addr, "--passes", "2", "--hwm", "5")
            try:
                passes = [[dp[0] for dp in df], [dp[0] for dp in df]]
            finally:
                code, _, err = finish(proc)
        assert passes == [list(range(50))] * 2
        assert code == 0, err

    def test_ctrl_c_ends_it_cleanly_with_exit_code_0(self, pipeline):
        addr = tcp_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            proc = serve(f"{pipeline}:forever", "--addr", addr)
            try:
                received = []
                with pytest.warns(PeerWarning, match="was interrupted after"):
                    for dp in df:
                        received.append(dp[0])
                        if len(received) == 20:
                            proc.send_signal(signal.SIGINT)
            finally:
                code, _, err = finish(proc)
        assert code == 0, err
        assert "interrupted after 0 complete pass(es)" in err
        assert received == list(range(len(received)))

    @pytest.mark.parametrize(
        "spec, message",
        [
            ("{path}:nothere", "'{path}' has no function 'nothere'"),
            ("{path}:NOT_A_FUNCTION", "'{path}' has no function 'NOT_A_FUNCTION'"),
            ("{path}", "the pipeline must be FILE.py:FUNCTION, got '{path}'"),
            ("/no/such/file.py:build", "'/no/such/file.py' is not a file"),
            ("{path}:broken", "broken() in '{path}' raised RuntimeError: the data disk is gone"),
            ("{path}:not_a_dataflow", "not_a_dataflow() in '{path}' returned list, not a DataFlow"),
            ("{path}:bad-name", "'bad-name' in '{path}:bad-name' is not a Python function name"),
        ],
    )
    def test_a_pipeline_that_cannot_be_loaded_is_a_one_line_error(self, pipeline, spec, message):
        proc = serve(spec.format(path=pipeline), "--addr", tcp_address())
        code, out, err = finish(proc)
        assert code == 2
        assert err == f"python -m dataflow.serve: {message.format(path=pipeline)}\n"
        assert out == ""

    @pytest.mark.parametrize(
        "args, message",
        [
            (["--addr", "nowhere"], "--addr must be a ZeroMQ endpoint string"),
            (["--addr", "tcp://127.0.0.1:1", "--passes", "-1"], "--passes must be >= 0, got -1"),
            (
                ["--addr", "tcp://127.0.0.1:1", "--curve-secret", "x"],
                "--curve-secret and --curve-server go together",
            ),
        ],
    )
    def test_bad_options_are_a_one_line_error(self, pipeline, args, message):
        code, _, err = finish(serve(f"{pipeline}:build", *args))
        assert code == 2
        assert err.startswith(f"python -m dataflow.serve: {message}") and err.count("\n") == 1

    def test_a_pipeline_that_raises_is_reported_to_the_receiver_and_exits_1(self, pipeline):
        addr = tcp_address()
        with RemoteDataZMQ(addr, timeout=WAIT_S) as df:
            df.reset_state()
            proc = serve(f"{pipeline}:failing", "--addr", addr)
            try:
                with pytest.warns(PeerWarning, match="raised ValueError: bad record 7"):
                    assert list(df) == [[1]]
            finally:
                code, _, err = finish(proc)
        assert code == 1
        assert "ValueError: bad record 7" in err


def receive(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "dataflow.receive", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class TestReceive:
    def test_prints_a_row_each_second_and_a_summary(self):
        addr = tcp_address()
        proc = receive(addr, "--seconds", "5")  # room for a slow start on a busy machine
        try:
            time.sleep(0.5)
            count = send_dataflow_zmq(
                DataFromList([[i] for i in range(500)], shuffle=False), addr, linger=WAIT_S
            )
        finally:
            code, out, err = finish(proc)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].split() == [
            "time",
            "s",
            "dp/s",
            "MB/s",
            "live",
            "dropped",
            "senders",
            "(datapoints)",
        ]
        rows = lines[1:-1]
        assert 2 <= len(rows) <= 7
        assert f"{os.uname().nodename}:{os.getpid()} 500 (finished)" in rows[-1]
        assert lines[-1].startswith(f"python -m dataflow.receive: {count} datapoints (")
        assert "0 messages dropped, 0 connections refused" in lines[-1]

    def test_ctrl_c_ends_it_with_a_summary_and_exit_code_0(self):
        proc = receive(tcp_address())
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        code, out, err = finish(proc)
        assert code == 0, err
        assert out.splitlines()[-1].startswith("python -m dataflow.receive: 0 datapoints")

    def test_bad_options_are_a_one_line_error(self):
        code, _, err = finish(receive(tcp_address(), "--seconds", "0"))
        assert (code, err) == (
            2,
            "python -m dataflow.receive: --seconds must be positive, got 0.0\n",
        )
        code, _, err = finish(receive("nowhere"))
        assert code == 2 and err.startswith("python -m dataflow.receive: addr1 must be")

"""The benchmark scripts run (on tiny sizes): they measure nothing here, but a
change that breaks one is found by the test suite, not by the next person who
needs the numbers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "args, title",
    [
        (["bench_chain", "--size", "3000", "--repeats", "1"], "In-process chain"),
        (["bench_formats", "--size", "300", "--repeats", "1"], "read sequential"),
        (["bench_parallel", "--repeats", "1", "--only", "small", "startup"], "Parallel dataflows"),
        (["bench_images", "--repeats", "1", "--batches", "2", "--no-breakdown"], "images/s"),
        (["bench_shuffle", "--size", "640", "--epochs", "1"], "distinct classes per batch"),
        (["bench_remote", "--repeats", "1", "--count", "2000"], "send_dataflow_zmq"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else None,
)
def test_benchmark_runs(args, title):
    run = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{args[0]}", *args[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert title in run.stdout, run.stdout[-3000:]
    assert "dataflow" in run.stdout

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
        (
            ["bench_parallel", "--repeats", "1", "--only", "map-batch", "--seconds", "0.2"],
            "Against other loaders",
        ),
        (["bench_images", "--repeats", "1", "--batches", "2", "--no-breakdown"], "images/s"),
        (["bench_shuffle", "--size", "640", "--epochs", "1"], "distinct classes per batch"),
        (["bench_remote", "--repeats", "1", "--count", "2000"], "send_dataflow_zmq"),
        (["bench_resume", "--repeats", "1", "--quick", "--against", "."], "Resume at 90%"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else None,
)
def test_benchmark_runs(args, title):
    run = run_benchmark(args)
    assert title in run.stdout, run.stdout[-3000:]
    assert "dataflow" in run.stdout


def run_benchmark(args, env=None):
    run = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{args[0]}", *args[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def test_peers_run_beside_dataflow_when_importable():
    pytest.importorskip("torch")
    run = run_benchmark(
        ["bench_parallel", "--repeats", "1", "--only", "map-batch", "--seconds", "0.2"]
    )
    assert "| torch DataLoader" in run.stdout, run.stdout[-3000:]
    assert "dataflow MultiProcessMapAndBatchDataZMQ" in run.stdout


def test_missing_peers_are_skipped_with_a_note(tmp_path):
    for name in ("torch", "grain"):  # packages that fail to import, ahead on the path
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('{name} hidden')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]))
    run = run_benchmark(
        ["bench_parallel", "--repeats", "1", "--only", "map-batch", "--seconds", "0.2"], env
    )
    assert "torch is not importable (ImportError: torch hidden)" in run.stdout
    assert "grain is not importable (ImportError: grain hidden)" in run.stdout
    assert "| torch DataLoader" not in run.stdout
    assert "dataflow MultiProcessMapAndBatchDataZMQ" in run.stdout


def test_help_lists_every_benchmark():
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ("chain", "formats", "images", "parallel", "remote", "shuffle"):
        assert f"  {name} " in run.stdout, run.stdout

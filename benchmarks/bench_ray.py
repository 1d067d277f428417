"""RayRunner against MultiProcessRunnerZMQ on this machine: 2 workers, exactly-once passes.

Both runners run the same sharded source (each worker yields its shard of a
pass: a fresh copy of the arrays of one pre-built datapoint each time, as a
real pipeline makes new arrays) with ``exactly_once=True`` and 2 workers.
Each runner is started once and warmed up; then timed windows alternate
between the two (A, B, A, B, ...), and figures are medians over the windows.
RayRunner uses a local Ray started for the run (an object store of 1 GiB).

* **small**: ``[float32 (28, 28), int]``, datapoints/s.
* **large**: one ``uint8 (32, 224, 224, 3)`` array (4.8 MB) per datapoint,
  MB/s; target: RayRunner at least half of MultiProcessRunnerZMQ's rate.
* **large** also runs ``MultiProcessRunnerZMQ(shm=False)`` (arrays as ZeroMQ
  frames, without the shared-memory arena), for comparison.
* **start-up**: seconds from ``reset_state()`` to the first datapoint of a new
  runner (a Ray actor is a new process that imports Ray and the library).

The ratio column is each median divided by MultiProcessRunnerZMQ's.
Skipped, with a note, when Ray is not installed (``pip install 'dataflow-ml[ray]'``).

Run: ``python -m benchmarks.bench_ray [--repeats R] [--seconds S]``
"""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

import dataflow
from benchmarks._common import interleaved_runs, print_table

NUM_WORKERS = 2
LARGE_TARGET = 0.5  # x MultiProcessRunnerZMQ
MB = 1e6
PASS_LENGTH = {"small": 20_000, "large": 200}


class ShardedRepeat(dataflow.DataFlow):
    """Yields a copy of *dp* for each index of this worker's shard of ``range(length)``."""

    def __init__(self, dp: Any, length: int) -> None:
        self.dp, self.length = dp, length

    def __len__(self) -> int:
        info = dataflow.get_worker_info()
        return len(info.shard(self.length)) if info else self.length

    def __iter__(self) -> Iterator[Any]:
        info = dataflow.get_worker_info()
        for _ in info.shard(self.length) if info else range(self.length):
            yield [c.copy() if isinstance(c, np.ndarray) else c for c in self.dp]


def datapoint(kind: str) -> List[Any]:
    if kind == "small":
        return [np.random.RandomState(0).rand(28, 28).astype("float32"), 7]
    return [np.random.RandomState(0).randint(0, 255, (32, 224, 224, 3), dtype=np.uint8), 7]


def runners() -> Dict[str, Callable[[Any], Any]]:
    from dataflow.ray import RayRunner

    makes = {
        "MultiProcessRunnerZMQ": lambda ds: dataflow.MultiProcessRunnerZMQ(
            ds, NUM_WORKERS, exactly_once=True
        ),
    }
    if "shm" in inspect.signature(dataflow.MultiProcessRunnerZMQ).parameters:
        # Large arrays as ZeroMQ frames, as before the shared-memory arena.
        makes["MultiProcessRunnerZMQ(shm=False)"] = lambda ds: dataflow.MultiProcessRunnerZMQ(
            ds, NUM_WORKERS, exactly_once=True, shm=False
        )
    makes["RayRunner"] = lambda ds: RayRunner(ds, NUM_WORKERS)
    return makes


def stream(df: Any) -> Iterator[Any]:
    while True:
        yield from df


def started(make: Callable[[Any], Any], kind: str) -> Any:
    df = make(ShardedRepeat(datapoint(kind), PASS_LENGTH[kind]))
    df.reset_state()
    return df


def rate_over(it: Iterator[Any], seconds: float) -> float:
    """Datapoints/s of *it* over about *seconds*."""
    count, start = 0, time.perf_counter()
    end = start + seconds
    while True:
        next(it)
        count += 1
        if count % 4 == 0 and time.perf_counter() >= end:
            return count / (time.perf_counter() - start)


def first_datapoint_s(make: Callable[[Any], Any]) -> float:
    df = make(ShardedRepeat(datapoint("small"), 100))
    try:
        start = time.perf_counter()
        df.reset_state()
        next(iter(df))
        return time.perf_counter() - start
    finally:
        df.close()


def put_probe() -> str:
    """How long writing one large array into Ray's object store takes inside an
    actor, beside a plain copy of it: what bounds RayRunner's rate for large arrays."""
    import ray

    def probe() -> Dict[str, float]:
        a = datapoint("large")[0]
        out = np.empty_like(a)
        start = time.perf_counter()
        for _ in range(20):
            np.copyto(out, a)
        copy = (time.perf_counter() - start) / 20
        start = time.perf_counter()
        for _ in range(20):
            ref = ray.put(a)
            del ref
        return {"copy": copy, "put": (time.perf_counter() - start) / 20}

    times = ray.get(ray.remote(probe).remote(), timeout=120)
    return (
        f"note: in a Ray worker on this machine, ray.put() of one uint8 (32, 224, 224, 3) "
        f"array takes {times['put'] * 1000:.1f} ms ({4.816896 / times['put']:,.0f} "
        f"MB/s), a copy of it with np.copyto {times['copy'] * 1000:.2f} ms: the object "
        "store's write bounds RayRunner's rate for large arrays"
    )


def main(argv: Optional[Sequence[str]] = None) -> Optional[Dict[str, Any]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per trial")
    args = parser.parse_args(argv)
    try:
        import ray
    except ImportError:
        print("note: ray is not installed (pip install 'dataflow-ml[ray]'); skipping bench_ray")
        return None
    import cloudpickle

    # The actors cannot import this module (benchmarks/ is not installed): send its
    # classes by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # socket paths must be short
    ray.init(
        num_cpus=NUM_WORKERS,
        include_dashboard=False,
        _temp_dir=temp_dir,
        object_store_memory=1 << 30,
        log_to_driver=False,
    )
    try:
        return _measure(args)
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _measure(args: Any) -> Dict[str, Any]:
    makes = runners()
    results: Dict[str, Dict[str, List[float]]] = {}
    for kind in ("small", "large"):
        # The arena carries large arrays only: small runs the default ZeroMQ runner.
        names = [n for n in makes if kind == "large" or "shm" not in n]
        dfs = {name: started(makes[name], kind) for name in names}
        try:
            streams = {name: stream(df) for name, df in dfs.items()}
            for it in streams.values():  # warm-up: every worker started and running
                rate_over(it, args.seconds)
            candidates = {
                name: (lambda it=it: rate_over(it, args.seconds)) for name, it in streams.items()
            }
            results[kind] = interleaved_runs(candidates, args.repeats)
        finally:
            for df in dfs.values():
                df.close()
    results["startup"] = interleaved_runs(
        {
            name: (lambda make=make: first_datapoint_s(make))
            for name, make in makes.items()
            if "shm" not in name
        },
        args.repeats,
    )
    rows = []
    scale = {"small": (1.0, "dp/s"), "large": (4.816896, "MB/s"), "startup": (1.0, "s")}
    for kind, runs in results.items():
        factor, unit = scale[kind]
        zmq = statistics.median(runs["MultiProcessRunnerZMQ"]) * factor
        for name, values in runs.items():
            median = statistics.median(values) * factor
            ratio = median / zmq
            target = ""
            if kind == "large" and name == "RayRunner":
                met = "yes" if ratio >= LARGE_TARGET else "NO"
                target = f">= {LARGE_TARGET:g}x: {met}"
            low, high = min(values) * factor, max(values) * factor
            rows.append(
                [
                    kind,
                    name,
                    f"{median:,.2f} {unit}" if unit == "s" else f"{median:,.0f} {unit}",
                    f"{low:,.2f} - {high:,.2f}" if unit == "s" else f"{low:,.0f} - {high:,.0f}",
                    "(reference)" if name == "MultiProcessRunnerZMQ" else f"{ratio:.2f}x",
                    target,
                ]
            )
    note = put_probe()
    print_table(
        f"RayRunner vs MultiProcessRunnerZMQ, {NUM_WORKERS} workers, exactly-once, "
        f"median of {args.repeats} interleaved trials",
        rows,
        ["benchmark", "runner", "median", "min - max", "this / ZMQ", "target"],
    )
    print(note)
    return results


if __name__ == "__main__":
    main()

"""Parallel dataflows (runners and mappers), side by side with tensorpack 0.11 in the same run.

Each library runs the same work on a cheap source of its own ``DataFlow``
class that yields the same pre-built datapoint again and again; trials
alternate between the libraries, each on a new dataflow, and figures are
medians. Rates are steady-state: start-up and a warm-up are left out.

* **small**: ``[float32 (28, 28), int]`` through ``MultiProcessRunnerZMQ(num_proc=2)``,
  datapoints/s; target at least 3x tensorpack.
* **large**: one ``uint8 (32, 224, 224, 3)`` array per datapoint, same runner, MB/s;
  target at least 2x tensorpack.
* **start-up / close**: seconds from ``reset_state()`` to the first datapoint
  (target < 0.2 s) and of ``close()`` with its workers blocked on a full
  queue (target < 1 s). tensorpack has no ``close()``; its clean-up in
  ``__del__`` is shown instead.
* **CPU-bound map**: a pure-Python function of about 1 ms (its loop count is
  calibrated at start) through ``MultiProcessMapDataZMQ(num_proc=2,
  strict=True)``; target at least 1.85x a serial ``MapData`` in one process.
* **sleep-bound map**: ``time.sleep(0.005)`` through ``MultiThreadMapData(num_thread=16)``;
  target at least 98% of the 3,200 datapoints/s that 16 threads allow.

The mappers are skipped, with a note, when ``dataflow`` does not export them;
tensorpack's figures are left out when it cannot be imported.

Run: ``python -m benchmarks.bench_parallel [--repeats R] [--only NAME ...]``
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import logging
import os
import statistics
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

import dataflow
from benchmarks._common import interleaved_medians, print_table

NUM_PROC = 2
NUM_THREAD = 16
SLEEP_S = 0.005
CPU_TASK_S = 0.001
MB = 1e6

SMALL_TARGET = 3.0  # x tensorpack
LARGE_TARGET = 2.0  # x tensorpack
FIRST_TARGET_S = 0.2
CLOSE_TARGET_S = 1.0
CPU_MAP_TARGET = 1.85  # x serial MapData
SLEEP_MAP_TARGET = 0.98  # of NUM_THREAD / SLEEP_S

BENCHMARKS = ("small", "large", "startup", "cpu-map", "sleep-map")


# ---- the two libraries ---------------------------------------------------------------


def import_tensorpack() -> Optional[Any]:
    """``tensorpack.dataflow`` (quietly), or ``None`` when it cannot be imported."""
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            import tensorpack.dataflow as tp
    except Exception as err:  # tensorpack is optional and may be broken in many ways
        reason = f"{type(err).__name__}: {err}"
        print(f"note: tensorpack.dataflow is not importable ({reason}); showing ours only")
        return None
    # Its one-time warnings (fork, prctl) and info lines would clutter the output.
    logging.getLogger("tensorpack").setLevel(logging.ERROR)
    return tp


class Library:
    """One library's names, and how to stop one of its parallel dataflows."""

    def __init__(self, name: str, module: Any) -> None:
        self.name, self.module = name, module

    def has(self, attr: str) -> bool:
        return hasattr(self.module, attr)

    def source(self, dp: Any, length: int) -> Any:
        """A dataflow of this library yielding *dp* *length* times a pass."""
        return repeating_source(self.module.DataFlow, dp, length)

    def close(self, df: Any) -> None:
        if self.name == "dataflow":
            df.close()
            return
        # tensorpack stops its workers only in __del__ (and prints that it did);
        # call it now, once, so that the next trial starts with no workers left.
        with contextlib.redirect_stdout(io.StringIO()):
            df.__del__()
        if hasattr(df, "_reset_done"):
            df._reset_done = False  # its later __del__ (gc, atexit) then does nothing
        if hasattr(df, "_threads"):
            df._threads = []


def libraries(tp: Optional[Any]) -> List[Library]:
    libs = [Library("dataflow", dataflow)]
    if tp is not None:
        libs.append(Library("tensorpack", tp))
    return libs


def repeating_source(base: type, dp: Any, length: int) -> Any:
    class RepeatingSource(base):  # type: ignore[valid-type,misc]
        def __len__(self) -> int:
            return length

        def __iter__(self) -> Iterator[Any]:
            for _ in range(length):
                yield dp

    return RepeatingSource()


# ---- measuring -----------------------------------------------------------------------


def stream(df: Any) -> Iterator[Any]:
    """*df*'s datapoints, pass after pass, forever."""
    while True:
        count = 0
        for dp in df:
            yield dp
            count += 1
        if count == 0:
            raise RuntimeError(f"{type(df).__name__} yielded an empty pass")


def steady_rate(df: Any, warmup: int, count: int) -> float:
    """Datapoints/s of a reset *df* over *count* datapoints after *warmup* untimed ones."""
    it = stream(df)
    try:
        for _ in range(warmup):
            next(it)
        start = time.perf_counter()
        for _ in range(count):
            next(it)
        return count / (time.perf_counter() - start)
    finally:
        it.close()


def trial(lib: Library, build: Callable[[], Any], warmup: int, count: int) -> Callable[[], float]:
    """A candidate: build a new dataflow, reset it, measure its steady rate, stop it."""

    def run() -> float:
        df = build()
        df.reset_state()
        try:
            return steady_rate(df, warmup, count)
        finally:
            lib.close(df)

    return run


# ---- the benchmarks ------------------------------------------------------------------


def small_datapoint() -> List[Any]:
    return [np.random.RandomState(0).rand(28, 28).astype("float32"), 7]


def large_datapoint() -> List[Any]:
    return [np.random.RandomState(0).randint(0, 256, (32, 224, 224, 3), dtype=np.uint8)]


def runner_rates(libs: List[Library], dp: Any, warmup: int, count: int, repeats: int) -> Dict:
    candidates = {
        lib.name: trial(
            lib,
            functools.partial(lambda lib: lib.module.MultiProcessRunnerZMQ(
                lib.source(dp, 1000), num_proc=NUM_PROC), lib),
            warmup,
            count,
        )
        for lib in libs
    }
    return interleaved_medians(candidates, repeats)


def startup_times(libs: List[Library], repeats: int) -> Dict[str, Dict[str, float]]:
    """Median seconds to the first datapoint, and to close with workers blocked on a full queue."""
    dp = small_datapoint()
    first: Dict[str, List[float]] = {lib.name: [] for lib in libs}
    close: Dict[str, List[float]] = {lib.name: [] for lib in libs}
    for _ in range(repeats):
        for lib in libs:
            df = lib.module.MultiProcessRunnerZMQ(lib.source(dp, 1000), num_proc=NUM_PROC)
            start = time.perf_counter()
            df.reset_state()
            it = stream(df)
            next(it)
            first[lib.name].append(time.perf_counter() - start)
            for _ in range(1000):
                next(it)
            it.close()
            time.sleep(0.2)  # the workers fill the queue and block
            start = time.perf_counter()
            lib.close(df)
            close[lib.name].append(time.perf_counter() - start)
    return {
        "first": {name: statistics.median(t) for name, t in first.items()},
        "close": {name: statistics.median(t) for name, t in close.items()},
    }


def spin(loops: int) -> int:
    """Pure-Python work that holds the GIL."""
    total = 0
    for i in range(loops):
        total += i
    return total


def calibrate_loops(seconds: float) -> int:
    """How many loops of :func:`spin` take about *seconds* here."""
    probe = 50_000
    spin(probe)
    times = []
    for _ in range(7):
        start = time.perf_counter()
        spin(probe)
        times.append(time.perf_counter() - start)
    return max(1, int(probe * seconds / statistics.median(times)))


def cpu_task(loops: int, dp: Any) -> Any:
    spin(loops)
    return dp


def sleep_task(dp: Any) -> Any:
    time.sleep(SLEEP_S)
    return dp


def index_source(lib: Library, size: int) -> Any:
    return lib.module.DataFromList([[i] for i in range(size)], shuffle=False)


def cpu_map_rates(libs: List[Library], loops: int, repeats: int) -> Dict[str, float]:
    func = functools.partial(cpu_task, loops)
    size = 1000
    candidates: Dict[str, Callable[[], float]] = {}
    for lib in libs:
        candidates[f"{lib.name} serial"] = trial(
            lib, functools.partial(lambda lib: lib.module.MapData(index_source(lib, size), func),
                                   lib), 20, 1000
        )
        candidates[f"{lib.name} parallel"] = trial(
            lib,
            functools.partial(
                lambda lib: lib.module.MultiProcessMapDataZMQ(
                    index_source(lib, size), NUM_PROC, func, strict=True
                ),
                lib,
            ),
            200,
            2000,
        )
    return interleaved_medians(candidates, repeats)


def sleep_map_rates(libs: List[Library], repeats: int) -> Dict[str, float]:
    limit = NUM_THREAD / SLEEP_S
    candidates = {
        lib.name: trial(
            lib,
            functools.partial(
                lambda lib: lib.module.MultiThreadMapData(
                    index_source(lib, 1000), NUM_THREAD, sleep_task
                ),
                lib,
            ),
            int(limit / 10),
            int(limit * 2),
        )
        for lib in libs
    }
    return interleaved_medians(candidates, repeats)


def measured_sleep() -> float:
    """The median time ``time.sleep(SLEEP_S)`` really takes here."""
    times = []
    for _ in range(50):
        start = time.perf_counter()
        time.sleep(SLEEP_S)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---- the table -----------------------------------------------------------------------


def verdict(ok: bool, achieved: str) -> str:
    return f"{'met' if ok else 'MISSED'} ({achieved})"


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS),
        help="run only these benchmarks",
    )
    args = parser.parse_args(argv)

    tp = import_tensorpack()
    libs = libraries(tp)
    have_tp = tp is not None
    rows: List[List[Any]] = []
    results: Dict[str, Any] = {}

    def add_row(name: str, fig: Dict[str, float], better: str, target: str,
                ok: Optional[bool], achieved: str) -> None:
        ours, theirs = fig.get("dataflow"), fig.get("tensorpack")
        if theirs is None:
            ratio = "-"
        else:
            ratio = f"{(ours / theirs) if better == 'higher' else (theirs / ours):.2f}x"
        rows.append([name, ours, "-" if theirs is None else theirs, ratio, target,
                     "n/a (no tensorpack)" if ok is None else verdict(ok, achieved)])

    def vs_tp(fig: Dict[str, float], target: float) -> tuple:
        if "tensorpack" not in fig:
            return None, ""
        ratio = fig["dataflow"] / fig["tensorpack"]
        return ratio >= target, f"{ratio:.2f}x"

    if "small" in args.only:
        fig = runner_rates(libs, small_datapoint(), 5_000, 100_000, args.repeats)
        results["small"] = fig
        add_row(f"small dp [f32 (28,28), int], runner num_proc={NUM_PROC} (dp/s)", fig,
                "higher", f">= {SMALL_TARGET:g}x tensorpack", *vs_tp(fig, SMALL_TARGET))

    if "large" in args.only:
        dp = large_datapoint()
        size_mb = dp[0].nbytes / MB
        fig = runner_rates(libs, dp, 10, 150, args.repeats)
        fig = {name: rate * size_mb for name, rate in fig.items()}
        results["large"] = fig
        add_row(f"large dp uint8 (32,224,224,3), runner num_proc={NUM_PROC} (MB/s)", fig,
                "higher", f">= {LARGE_TARGET:g}x tensorpack", *vs_tp(fig, LARGE_TARGET))
        del dp

    if "startup" in args.only:
        times = startup_times(libs, args.repeats)
        results["startup"] = times
        first, close = times["first"], times["close"]
        add_row("reset_state() to first dp (s)", first, "lower", f"< {FIRST_TARGET_S:g} s",
                first["dataflow"] < FIRST_TARGET_S, f"{first['dataflow']:.3f} s")
        add_row("close(), workers blocked (s; tensorpack: __del__)", close, "lower",
                f"< {CLOSE_TARGET_S:g} s", close["dataflow"] < CLOSE_TARGET_S,
                f"{close['dataflow']:.3f} s")

    notes: List[str] = []
    if "cpu-map" in args.only:
        if not hasattr(dataflow, "MultiProcessMapDataZMQ"):
            notes.append("CPU-bound map skipped: dataflow has no MultiProcessMapDataZMQ yet")
        else:
            loops = calibrate_loops(CPU_TASK_S)
            task_s = min(timed_once(lambda: spin(loops)) for _ in range(5))
            fig = cpu_map_rates(libs, loops, args.repeats)
            results["cpu-map"] = fig
            serial = {lib.name: fig[f"{lib.name} serial"] for lib in libs}
            parallel = {lib.name: fig[f"{lib.name} parallel"] for lib in libs}
            add_row(f"CPU map {task_s * 1e3:.2f} ms/dp, serial MapData (dp/s)", serial,
                    "higher", "(baseline)", True, "reference")
            speedup = parallel["dataflow"] / serial["dataflow"]
            add_row(
                f"CPU map, MultiProcessMapDataZMQ num_proc={NUM_PROC} strict (dp/s)",
                parallel, "higher", f">= {CPU_MAP_TARGET:g}x serial MapData",
                speedup >= CPU_MAP_TARGET, f"{speedup:.2f}x serial",
            )
            if have_tp:
                notes.append(
                    "tensorpack's MultiProcessMapDataZMQ reaches "
                    f"{parallel['tensorpack'] / serial['tensorpack']:.2f}x its serial MapData"
                )

    if "sleep-map" in args.only:
        if not hasattr(dataflow, "MultiThreadMapData"):
            notes.append("sleep-bound map skipped: dataflow has no MultiThreadMapData yet")
        else:
            limit = NUM_THREAD / SLEEP_S
            fig = sleep_map_rates(libs, args.repeats)
            results["sleep-map"] = fig
            share = fig["dataflow"] / limit
            add_row(
                f"sleep {SLEEP_S * 1e3:g} ms map, MultiThreadMapData {NUM_THREAD} threads (dp/s)",
                fig, "higher", f">= {SLEEP_MAP_TARGET:.0%} of {limit:,.0f}/s",
                share >= SLEEP_MAP_TARGET, f"{share:.1%}",
            )
            slept = measured_sleep()
            notes.append(
                f"time.sleep({SLEEP_S}) really takes {slept * 1e3:.3f} ms here (median), so "
                f"{NUM_THREAD} threads can do at most {NUM_THREAD / slept:,.0f}/s"
            )

    print_table(
        f"Parallel dataflows, {os.cpu_count()} CPUs, median of {args.repeats}"
        + ("" if have_tp else " (tensorpack not importable: ours only)"),
        rows,
        ["benchmark", "dataflow", "tensorpack", "speed-up vs tensorpack", "target", "met?"],
    )
    for note in notes:
        print(f"\nnote: {note}")
    return results


def timed_once(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()

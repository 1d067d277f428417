"""Parallel dataflows against tensorpack 0.11, the PyTorch DataLoader and grain, in one run.

Each library runs the same work on a cheap source of its own ``DataFlow``
class that yields the same pre-built datapoint again and again; trials
alternate between the libraries, each on a new dataflow, and figures are
medians. Rates are steady-state: start-up and a warm-up are left out.

* **small**: ``[float32 (28, 28), int]`` through ``MultiProcessRunnerZMQ(num_proc=2)``,
  datapoints/s; target at least 3x tensorpack.
* **map-batch**: a map that makes ``[float32 (28, 28), int]`` from an index (one
  numpy op), batches of 32, 2 worker processes, datapoints/s:
  ``MultiProcessMapAndBatchDataZMQ`` and ``MultiProcessRunnerZMQ(BatchData(MapData))``
  of both libraries, the PyTorch DataLoader (map-style ``Dataset``, default
  collate) and grain (``MapDataset ... .batch(32)`` with ``mp_prefetch``).
* **large**: one ``uint8 (32, 224, 224, 3)`` array per datapoint, same runner, MB/s;
  target at least 4x tensorpack and 8 GB/s (the arrays travel through shared
  memory). The PyTorch DataLoader runs too
  (``batch_size=None``: its workers move each array to shared memory).
* **identity map**: a function that returns its datapoint through
  ``MultiProcessMapDataZMQ(num_proc=2)``, datapoints/s: what a task
  costs on its way; target at least 1.5x tensorpack.
* **start-up / close**: seconds from ``reset_state()`` to the first datapoint
  (target < 0.2 s) and of ``close()`` with its workers blocked on a full
  queue (target < 1 s). tensorpack has no ``close()``; its clean-up in
  ``__del__`` is shown instead.
* **CPU-bound map**: a pure-Python function of about 1 ms (its loop count is
  calibrated at start) through ``MultiProcessMapDataZMQ(num_proc=2,
  strict=True)``; target at least 1.85x a serial ``MapData`` in one process.
  Two plain processes running the same function without any dataflow show
  the ceiling the machine allows at the time; target at least 95% of it.
* **sleep-bound map**: ``time.sleep(0.005)`` through ``MultiThreadMapData(num_thread=16)``;
  target at least 98% of the 3,200 datapoints/s that 16 threads allow (a
  note gives what ``time.sleep`` really allows here: it oversleeps a little).

The mappers are skipped, with a note, when ``dataflow`` does not export them;
tensorpack's, PyTorch's and grain's figures are left out, with a note, when
the package cannot be imported (none is a dependency; see
``benchmarks/_peers.py`` for how each peer is set up). A second table lists
every loader of the map-batch and large benchmarks with its median, the
range over the repeats, and dataflow's median divided by its own. The last note
says how much CPU other processes took during the run: on a shared 2-CPU
machine they make the figures noisy.

Run: ``python -m benchmarks.bench_parallel [--repeats R] [--only NAME ...] [--seconds S]``
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
from benchmarks import _peers
from benchmarks._common import PeerTable, interleaved_runs, print_table

NUM_PROC = 2
NUM_THREAD = 16
SLEEP_S = 0.005
CPU_TASK_S = 0.001
MB = 1e6

SMALL_TARGET = 3.0  # x tensorpack
LARGE_TARGET = 4.0  # x tensorpack (and LARGE_GBPS)
LARGE_GBPS = 8.0
FIRST_TARGET_S = 0.2
CLOSE_TARGET_S = 1.0
CPU_MAP_TARGET = 1.85  # x serial MapData
CPU_MAP_BARE_TARGET = 0.95  # of bare processes
IDENTITY_MAP_TARGET = 1.5  # x tensorpack
SLEEP_MAP_TARGET = 0.98  # of NUM_THREAD / SLEEP_S

MAP_BATCH = 32
MAP_BATCH_SOURCE = 10_000
MAP_BATCH_SECONDS = 2.0

BENCHMARKS = ("small", "map-batch", "large", "identity-map", "startup", "cpu-map", "sleep-map")


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

    def source(self, dp: Any, length: int) -> Any:
        """A dataflow of this library yielding *dp* *length* times a pass."""
        return repeating_source(self.module.DataFlow, dp, length)

    def close(self, df: Any) -> None:
        if self.name != "tensorpack":  # ours, or a peer's loader in a LoaderAdapter
            df.close()
            return
        # tensorpack stops its workers only in __del__ (and prints that it did);
        # call it now, once, so that the next trial starts with no workers left.
        if not hasattr(df, "__del__"):
            return  # not a parallel dataflow: nothing to stop
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


def steady_rate(
    df: Any, warmup: int, count: int, consumer_cpu: Optional[List[float]] = None
) -> float:
    """Datapoints/s of a reset *df* over *count* datapoints after *warmup* untimed ones;
    the consumer's CPU seconds per datapoint meanwhile are appended to *consumer_cpu*."""
    it = stream(df)
    try:
        for _ in range(warmup):
            next(it)
        cpu, start = time.process_time(), time.perf_counter()
        for _ in range(count):
            next(it)
        seconds = time.perf_counter() - start
        if consumer_cpu is not None:
            consumer_cpu.append((time.process_time() - cpu) / count)
        return count / seconds
    finally:
        it.close()


def rate_over(df: Any, warmup: int, seconds: float) -> float:
    """Datapoints/s of a reset *df* over about *seconds* after *warmup* untimed ones (for
    candidates whose speeds differ too much for one count to suit them all)."""
    it = stream(df)
    try:
        for _ in range(warmup):
            next(it)
        count, start = 0, time.perf_counter()
        end = now = start + seconds
        while True:
            next(it)
            count += 1
            if count % 8 == 0:
                now = time.perf_counter()
                if now >= end:
                    return count / (now - start)
    finally:
        it.close()


def trial(
    lib: Library,
    build: Callable[[], Any],
    warmup: int,
    count: int,
    consumer_cpu: Optional[List[float]] = None,
) -> Callable[[], float]:
    """A candidate: build a new dataflow, reset it, measure its steady rate, stop it."""

    def run() -> float:
        df = build()
        df.reset_state()
        try:
            return steady_rate(df, warmup, count, consumer_cpu)
        finally:
            lib.close(df)

    return run


# ---- the benchmarks ------------------------------------------------------------------


def small_datapoint() -> List[Any]:
    return [np.random.RandomState(0).rand(28, 28).astype("float32"), 7]


def large_datapoint() -> List[Any]:
    return [np.random.RandomState(0).randint(0, 256, (32, 224, 224, 3), dtype=np.uint8)]


def runner_builder(lib: Library, dp: Any) -> Callable[[], Any]:
    return lambda: lib.module.MultiProcessRunnerZMQ(lib.source(dp, 1000), num_proc=NUM_PROC)


def runner_runs(
    libs: List[Library],
    dp: Any,
    warmup: int,
    count: int,
    repeats: int,
    peers: Optional[Dict[str, Callable[[], Any]]] = None,
) -> Dict[str, List[float]]:
    """Each library's rates (datapoints/s) of ``MultiProcessRunnerZMQ`` over a source
    repeating *dp*, and of the *peers* (name -> builder of a loader doing the same)."""
    candidates = {lib.name: trial(lib, runner_builder(lib, dp), warmup, count) for lib in libs}
    for name, build in (peers or {}).items():
        candidates[name] = trial(Library(name, None), build, warmup, count)
    return interleaved_runs(candidates, repeats)


def medians(runs: Dict[str, List[float]]) -> Dict[str, float]:
    return {name: statistics.median(r) for name, r in runs.items()}


def map_batch_runs(
    libs: List[Library],
    torch: Optional[Any],
    grain: Optional[Any],
    repeats: int,
    seconds: float = MAP_BATCH_SECONDS,
) -> Dict[str, List[float]]:
    """Datapoints/s of a map and batch in 2 worker processes, each loader *seconds* a trial."""

    def timed(lib: Library, build: Callable[[], Any]) -> Callable[[], float]:
        def run() -> float:
            df = build()
            df.reset_state()
            try:
                return rate_over(df, 50, seconds) * MAP_BATCH
            finally:
                lib.close(df)

        return run

    def map_and_batch(lib: Library) -> Callable[[], Any]:
        # tensorpack 0.11 fails on its own default buffer_size=None: pass the
        # batch_size * 10 its docstring gives as the default.
        extra = {"buffer_size": MAP_BATCH * 10} if lib.name == "tensorpack" else {}
        return lambda: lib.module.MultiProcessMapAndBatchDataZMQ(
            index_source(lib, MAP_BATCH_SOURCE), NUM_PROC, _peers.small_map, MAP_BATCH, **extra
        )

    def runner(lib: Library) -> Callable[[], Any]:
        def build() -> Any:
            m = lib.module
            df = m.MapData(index_source(lib, MAP_BATCH_SOURCE), _peers.small_map)
            return m.MultiProcessRunnerZMQ(m.BatchData(df, MAP_BATCH), num_proc=NUM_PROC)

        return build

    candidates: Dict[str, Callable[[], float]] = {}
    for lib in libs:
        candidates[f"{lib.name} MultiProcessMapAndBatchDataZMQ"] = timed(lib, map_and_batch(lib))
        candidates[f"{lib.name} MultiProcessRunnerZMQ(BatchData(MapData))"] = timed(
            lib, runner(lib)
        )
    if torch is not None:
        peer = Library(_peers.TORCH_NAME, None)
        candidates[peer.name] = timed(
            peer, lambda: _peers.torch_small_batches(torch, MAP_BATCH_SOURCE, MAP_BATCH)
        )
    if grain is not None:
        peer = Library(_peers.GRAIN_NAME, None)
        candidates[f"{peer.name} mp_prefetch"] = timed(
            peer, lambda: _peers.grain_small_batches(grain, MAP_BATCH_SOURCE, MAP_BATCH)
        )
    return interleaved_runs(candidates, repeats)


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
    """How many loops of :func:`spin` take about *seconds* here (on an idle CPU: the
    fastest of several probes, as other processes can only slow a probe down)."""
    probe = 50_000
    spin(probe)
    times = []
    for _ in range(15):
        start = time.perf_counter()
        spin(probe)
        times.append(time.perf_counter() - start)
    return max(1, int(probe * seconds / min(times)))


def cpu_task(loops: int, dp: Any) -> Any:
    spin(loops)
    return dp


def identity(dp: Any) -> Any:
    return dp


def identity_map_rates(libs: List[Library], repeats: int) -> Dict[str, float]:
    """MultiProcessMapDataZMQ with a function that returns its input: the cost per task."""

    def build(lib: Library) -> Callable[[], Any]:
        # Not strict: tensorpack's strict mode stalls with a function this fast.
        return lambda: lib.module.MultiProcessMapDataZMQ(
            index_source(lib, 20_000), NUM_PROC, identity
        )

    candidates = {lib.name: trial(lib, build(lib), 2_000, 60_000) for lib in libs}
    return medians(interleaved_runs(candidates, repeats))


def sleep_task(dp: Any) -> Any:
    time.sleep(SLEEP_S)
    return dp


def index_source(lib: Library, size: int) -> Any:
    return lib.module.DataFromList([[i] for i in range(size)], shuffle=False)


def serial_map_builder(lib: Library, func: Callable[[Any], Any]) -> Callable[[], Any]:
    return lambda: lib.module.MapData(index_source(lib, 1000), func)


def process_map_builder(lib: Library, func: Callable[[Any], Any]) -> Callable[[], Any]:
    return lambda: lib.module.MultiProcessMapDataZMQ(
        index_source(lib, 1000), NUM_PROC, func, strict=True
    )


def thread_map_builder(lib: Library, func: Callable[[Any], Any]) -> Callable[[], Any]:
    return lambda: lib.module.MultiThreadMapData(index_source(lib, 1000), NUM_THREAD, func)


def spin_many(loops: int, count: int) -> None:
    for _ in range(count):
        spin(loops)


def bare_processes(loops: int, count: int) -> Callable[[], float]:
    """A candidate: *count* tasks split over NUM_PROC plain processes, no dataflow and no
    transfer; the rate (fork included) is what this machine allows right now."""
    import multiprocessing

    def run() -> float:
        ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        procs = [
            ctx.Process(target=spin_many, args=(loops, count // NUM_PROC)) for _ in range(NUM_PROC)
        ]
        start = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        return count // NUM_PROC * NUM_PROC / (time.perf_counter() - start)

    return run


def cpu_map_rates(
    libs: List[Library], loops: int, repeats: int, consumer_cpu: Dict[str, List[float]]
) -> Dict[str, float]:
    """Serial MapData, MultiProcessMapDataZMQ and bare processes, ~1 s a trial each; the
    mappers' consumer CPU seconds per datapoint go to *consumer_cpu*."""
    func = functools.partial(cpu_task, loops)
    candidates: Dict[str, Callable[[], float]] = {"bare": bare_processes(loops, 2000)}
    for lib in libs:
        candidates[f"{lib.name} serial"] = trial(lib, serial_map_builder(lib, func), 20, 1000)
        candidates[f"{lib.name} parallel"] = trial(
            lib,
            process_map_builder(lib, func),
            200,
            2000,
            consumer_cpu.setdefault(lib.name, []),
        )
    return medians(interleaved_runs(candidates, repeats))


def sleep_map_rates(libs: List[Library], repeats: int) -> Dict[str, float]:
    """MultiThreadMapData, ~2 s a trial."""
    limit = NUM_THREAD / SLEEP_S
    candidates = {
        lib.name: trial(lib, thread_map_builder(lib, sleep_task), int(limit / 10), int(limit * 2))
        for lib in libs
    }
    return medians(interleaved_runs(candidates, repeats))


def measured_sleep() -> float:
    """The median time ``time.sleep(SLEEP_S)`` really takes here."""
    times = []
    for _ in range(50):
        start = time.perf_counter()
        time.sleep(SLEEP_S)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class CpuWatch:
    """How much CPU other processes used while a benchmark ran (a noisy machine makes
    noisy figures): whole-machine busy time from /proc/stat, less our own process and
    the children it waited for."""

    def __init__(self) -> None:
        self.start_machine, self.start_own = self._machine(), self._own()
        self.start_wall = time.perf_counter()

    @staticmethod
    def _machine() -> Optional[float]:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        user, nice, system, _, _, irq, softirq = (fields + [0] * 7)[:7]
        return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def others_share(self) -> Optional[float]:
        """The share of all CPUs that other processes used since this watch started."""
        machine = self._machine()
        if machine is None or self.start_machine is None:
            return None
        wall = time.perf_counter() - self.start_wall
        others = (machine - self.start_machine) - (self._own() - self.start_own)
        return max(0.0, others) / (wall * (os.cpu_count() or 1))


def noise_note(watch: CpuWatch) -> Optional[str]:
    share = watch.others_share()
    if share is None:
        return None
    warning = "; figures are unreliable" if share > 0.05 else ""
    return f"other processes used {share:.0%} of the CPUs during this run{warning}"


# ---- the table -----------------------------------------------------------------------


class Table:
    """Rows of: benchmark, our figure, tensorpack's, speed-up, target, whether it is met."""

    HEADERS = ["benchmark", "dataflow", "tensorpack", "speed-up vs tensorpack", "target", "met?"]

    def __init__(self) -> None:
        self.rows: List[List[Any]] = []

    def add(
        self,
        name: str,
        unit: str,
        fig: Dict[str, float],
        higher_is_better: bool,
        target: str,
        status: str,
    ) -> None:
        ours, theirs = fig["dataflow"], fig.get("tensorpack")
        speedup = "-"
        if theirs is not None:
            speedup = f"{(ours / theirs) if higher_is_better else (theirs / ours):.2f}x"
        self.rows.append(
            [
                name,
                number(ours, unit),
                "-" if theirs is None else number(theirs, unit),
                speedup,
                target,
                status,
            ]
        )


def number(value: float, unit: str) -> str:
    """*value* with its unit: seconds with 3 decimals, rates with thousands separators."""
    return f"{value:,.3f} {unit}" if unit == "s" else f"{value:,.0f} {unit}"


def status(ok: Optional[bool], achieved: str) -> str:
    if ok is None:
        return "n/a (no tensorpack)"
    return f"{'met' if ok else 'MISSED'} ({achieved})"


def versus_tensorpack(fig: Dict[str, float], target: float) -> str:
    if "tensorpack" not in fig:
        return status(None, "")
    ratio = fig["dataflow"] / fig["tensorpack"]
    return status(ratio >= target, f"{ratio:.2f}x")


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=BENCHMARKS,
        default=list(BENCHMARKS),
        help="run only these benchmarks (default: all)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=MAP_BATCH_SECONDS,
        help="timed seconds of each map-batch trial",
    )
    args = parser.parse_args(argv)

    watch = CpuWatch()
    tp = import_tensorpack()
    libs = libraries(tp)
    torch = grain = None
    if {"map-batch", "large"} & set(args.only):
        torch = _peers.import_torch()
    if "map-batch" in args.only:
        grain = _peers.import_grain()
    peer_table = PeerTable()
    table = Table()
    notes: List[str] = []
    results: Dict[str, Any] = {}

    if "small" in args.only:
        runs = runner_runs(libs, small_datapoint(), 5_000, 100_000, args.repeats)
        fig = results["small"] = medians(runs)
        table.add(
            f"small dp [f32 (28,28), int], MultiProcessRunnerZMQ num_proc={NUM_PROC}",
            "dp/s",
            fig,
            True,
            f">= {SMALL_TARGET:g}x tensorpack",
            versus_tensorpack(fig, SMALL_TARGET),
        )

    if "map-batch" in args.only:
        runs = map_batch_runs(libs, torch, grain, args.repeats, args.seconds)
        results["map-batch"] = medians(runs)
        peer_table.add(
            f"map to [f32 (28,28), int] + batch {MAP_BATCH}, {NUM_PROC} worker processes",
            "dp/s",
            runs,
            "dataflow MultiProcessMapAndBatchDataZMQ",
        )

    if "large" in args.only:
        dp = large_datapoint()
        size_mb = dp[0].nbytes / MB
        peers = {}
        if torch is not None:
            peers[_peers.TORCH_NAME] = lambda: _peers.torch_large_arrays(torch, dp[0], 1000)
        runs = runner_runs(libs, dp, 10, 150, args.repeats, peers)
        runs = {name: [rate * size_mb for rate in r] for name, r in runs.items()}
        fig = results["large"] = medians(runs)
        peer_table.add(
            f"uint8 (32,224,224,3) arrays from {NUM_PROC} worker processes "
            "(MultiProcessRunnerZMQ; DataLoader batch_size=None)",
            "MB/s",
            runs,
            "dataflow",
        )
        table.add(
            f"large dp uint8 (32,224,224,3), MultiProcessRunnerZMQ num_proc={NUM_PROC}",
            "MB/s",
            fig,
            True,
            f">= {LARGE_TARGET:g}x tensorpack",
            versus_tensorpack(fig, LARGE_TARGET),
        )
        del dp

    if "identity-map" in args.only:
        fig = results["identity-map"] = identity_map_rates(libs, args.repeats)
        table.add(
            f"identity map, MultiProcessMapDataZMQ num_proc={NUM_PROC}",
            "dp/s",
            fig,
            True,
            f">= {IDENTITY_MAP_TARGET:g}x tensorpack",
            versus_tensorpack(fig, IDENTITY_MAP_TARGET),
        )

    if "startup" in args.only:
        times = results["startup"] = startup_times(libs, args.repeats)
        first, close = times["first"], times["close"]
        table.add(
            "reset_state() to first dp",
            "s",
            first,
            False,
            f"< {FIRST_TARGET_S:g} s",
            status(first["dataflow"] < FIRST_TARGET_S, f"{first['dataflow']:.3f} s"),
        )
        table.add(
            "close(), workers blocked on a full queue (tensorpack: __del__)",
            "s",
            close,
            False,
            f"< {CLOSE_TARGET_S:g} s",
            status(close["dataflow"] < CLOSE_TARGET_S, f"{close['dataflow']:.3f} s"),
        )

    if "cpu-map" in args.only:
        if not hasattr(dataflow, "MultiProcessMapDataZMQ"):
            notes.append("CPU-bound map skipped: dataflow does not export MultiProcessMapDataZMQ")
        else:
            loops = calibrate_loops(CPU_TASK_S)
            consumer_cpu: Dict[str, List[float]] = {}
            fig = results["cpu-map"] = cpu_map_rates(libs, loops, args.repeats, consumer_cpu)
            serial = {lib.name: fig[f"{lib.name} serial"] for lib in libs}
            parallel = {lib.name: fig[f"{lib.name} parallel"] for lib in libs}
            table.add(
                f"CPU map ~{CPU_TASK_S * 1e3:g} ms/dp ({loops:,} loops), serial MapData",
                "dp/s",
                serial,
                True,
                "-",
                f"(baseline: {1e3 / serial['dataflow']:.2f} ms/dp)",
            )
            speedup = parallel["dataflow"] / serial["dataflow"]
            table.add(
                f"CPU map, MultiProcessMapDataZMQ num_proc={NUM_PROC} strict",
                "dp/s",
                parallel,
                True,
                f">= {CPU_MAP_TARGET:g}x serial MapData",
                status(
                    speedup >= CPU_MAP_TARGET,
                    f"{speedup:.2f}x serial, {parallel['dataflow'] / fig['bare']:.0%} of ceiling",
                ),
            )
            of_bare = parallel["dataflow"] / fig["bare"]
            table.add(
                f"CPU map, {NUM_PROC} bare processes, no dataflow: the ceiling",
                "dp/s",
                {"dataflow": fig["bare"]},
                True,
                f"mapper >= {CPU_MAP_BARE_TARGET:.0%} of it",
                status(of_bare >= CPU_MAP_BARE_TARGET, f"{of_bare:.0%}"),
            )
            if "tensorpack" in parallel:
                notes.append(
                    "tensorpack's MultiProcessMapDataZMQ reaches "
                    f"{parallel['tensorpack'] / serial['tensorpack']:.2f}x its serial MapData"
                )
            notes.append(
                "MultiProcessMapDataZMQ's consumer (the iterating process) used "
                + ", ".join(
                    f"{statistics.median(t) * 1e6:.0f} us CPU per datapoint ({name})"
                    for name, t in consumer_cpu.items()
                )
                + f"; the {NUM_PROC} CPUs are shared with the workers"
            )

    if "sleep-map" in args.only:
        if not hasattr(dataflow, "MultiThreadMapData"):
            notes.append("sleep-bound map skipped: dataflow does not export MultiThreadMapData")
        else:
            limit = NUM_THREAD / SLEEP_S
            slept = measured_sleep()
            fig = results["sleep-map"] = sleep_map_rates(libs, args.repeats)
            share = fig["dataflow"] / limit
            table.add(
                f"sleep {SLEEP_S * 1e3:g} ms map, MultiThreadMapData {NUM_THREAD} threads",
                "dp/s",
                fig,
                True,
                f">= {SLEEP_MAP_TARGET:.0%} of {limit:,.0f}/s",
                status(share >= SLEEP_MAP_TARGET, f"{share:.1%}"),
            )
            real_limit = NUM_THREAD / slept
            notes.append(
                f"time.sleep({SLEEP_S}) really takes {slept * 1e3:.3f} ms here (median of 50), "
                f"so {NUM_THREAD} threads can do at most {real_limit:,.0f}/s; MultiThreadMapData "
                f"reaches {fig['dataflow'] / real_limit:.1%} of that"
                + (
                    f" (tensorpack {fig['tensorpack'] / real_limit:.1%})"
                    if "tensorpack" in fig
                    else ""
                )
            )

    print_table(
        f"Parallel dataflows, {os.cpu_count()} CPUs, median of {args.repeats}"
        + ("" if tp is not None else " (tensorpack not importable: ours only)"),
        table.rows,
        Table.HEADERS,
    )
    peer_table.print(
        f"Against other loaders, {os.cpu_count()} CPUs, {args.repeats} interleaved repeats"
    )
    notes.append(noise_note(watch) or "")
    for note in filter(None, notes):
        print(f"\nnote: {note}")
    return results


if __name__ == "__main__":
    main()

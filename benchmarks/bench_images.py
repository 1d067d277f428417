"""An image pipeline against tensorpack 0.11, the PyTorch DataLoader and grain, in one run.

256 random-content 256x256 JPEGs (smooth colour blobs plus noise, about 30 KB
each, written with OpenCV to a temporary directory) go through the same
pipeline built from each library's own classes::

    DataFromList([[path], ...], shuffle=True)
    -> MapDataComponent(cv2.imread(path, cv2.IMREAD_COLOR))
    -> AugmentImageComponent([imgaug.RandomCrop(224), imgaug.Flip(horiz=True)])
    -> BatchData(32)                                 # uint8 (32, 224, 224, 3)
    -> MultiProcessRunnerZMQ(num_proc=2)

and the consumer receives the batches. Figures are steady-state images/s
(start-up and a warm-up left out), medians of interleaved trials on new
runners; the target is at least 2x tensorpack.

Both libraries decode with the same ``cv2.imread`` call, and with every CPU
busy the images/s ratio follows the ratio of CPU time per batch. So the
ratio cannot exceed tensorpack's CPU time per batch divided by the decoding
alone: the last note prints that ceiling, which a loader would reach only if
cropping, mirroring, batching, the transport and the loop cost nothing.

The PyTorch DataLoader and grain, when importable, run the same work in
the same trials: a map-style ``Dataset`` whose item is one file decoded with
``cv2.imread``, cut to a random 224x224 window and mirrored with probability
0.5, in a ``DataLoader(batch_size=32, shuffle=True, num_workers=2)`` with the
default collate; and ``grain.MapDataset.source(files).shuffle().random_map(...)
.batch(32)`` read by ``mp_prefetch`` with 2 workers (``benchmarks/_peers.py``),
with grain's default ``ReadOptions`` (16 threads in each worker) and with 2.
A second table gives every loader's median, the range over the repeats and
dataflow's median divided by its own.

Two more tables show where the time goes (``--no-breakdown`` skips them):
per library, the pipeline's cost in one process (a worker's work), the CPU
time the consumer, its workers and the whole machine spent per batch during
the timed runs, and the same for the runner alone carrying a pre-built
batch; then what single steps cost (decoding, which both libraries share;
the copies behind AugmentImageComponent, Flip and BatchData, which differ;
tensorpack's pickling). The machine has two CPUs and the
pipeline keeps both busy, so the images/s ratio follows the ratio of CPU
time per batch. Other processes on the machine make the figures noisy; the
last line says how much CPU they took.

Run: ``python -m benchmarks.bench_images [--repeats R] [--batches N] [--no-breakdown]``
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from benchmarks import _peers
from benchmarks._common import PeerTable, interleaved_medians, interleaved_runs, print_table
from benchmarks.bench_parallel import (
    CpuWatch,
    Library,
    import_tensorpack,
    libraries,
    noise_note,
    stream,
)

NUM_FILES = 256
IMAGE_SIZE = 256
CROP = 224
BATCH = 32
NUM_PROC = 2
TARGET = 2.0


def write_jpegs(directory: str, count: int) -> List[str]:
    """*count* random-content JPEGs of IMAGE_SIZE squared: smooth colour blobs plus noise."""
    import cv2

    rng = np.random.RandomState(0)
    paths = []
    for i in range(count):
        blobs = rng.randint(0, 256, (16, 16, 3), dtype=np.uint8)
        img = cv2.resize(blobs, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_CUBIC)
        img = np.clip(img + rng.randint(-20, 21, img.shape), 0, 255).astype(np.uint8)
        path = os.path.join(directory, f"{i:04d}.jpg")
        if not cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90]):
            raise OSError(f"cannot write {path}")
        paths.append(path)
    return paths


def decode(path: str) -> np.ndarray:
    import cv2

    return cv2.imread(path, cv2.IMREAD_COLOR)


def pipeline(lib: Library, files: List[str]) -> Any:
    """The batches of the pipeline, in one process (not yet reset)."""
    m = lib.module
    df = m.DataFromList([[f] for f in files], shuffle=True)
    df = m.MapDataComponent(df, decode, 0)
    df = m.AugmentImageComponent(df, [m.imgaug.RandomCrop(CROP), m.imgaug.Flip(horiz=True)])
    return m.BatchData(df, BATCH)


def parallel_pipeline(lib: Library, files: List[str]) -> Callable[[], Any]:
    return lambda: lib.module.MultiProcessRunnerZMQ(pipeline(lib, files), num_proc=NUM_PROC)


def check_batches(libs: List[Library], files: List[str]) -> None:
    for lib in libs:
        df = pipeline(lib, files)
        df.reset_state()
        batch = next(iter(df))
        assert len(batch) == 1 and batch[0].shape == (BATCH, CROP, CROP, 3), batch[0].shape
        assert batch[0].dtype == np.uint8, (lib.name, batch[0].dtype)


# ---- where the time goes --------------------------------------------------------------


def cpu_ticks() -> Optional[List[int]]:
    """Machine-wide (busy, idle, steal) clock ticks from /proc/stat (Linux), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return [user + nice + system + irq + softirq, idle + iowait, steal]


def own_ticks() -> Optional[int]:
    """CPU clock ticks (user + system) of this process and its live children (Linux), or None."""
    me = os.getpid()
    total = 0
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # it ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if pid == me or int(fields[1]) == me:  # fields[1]: the parent's pid
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


class Usage:
    """What the trials of each candidate measured besides their rate: lists of figures."""

    def __init__(self) -> None:
        self.figures: Dict[str, Dict[str, List[float]]] = {}

    def add(self, candidate: str, **figures: float) -> None:
        entry = self.figures.setdefault(candidate, {})
        for key, value in figures.items():
            entry.setdefault(key, []).append(value)

    def median(self, candidate: str, key: str) -> Optional[float]:
        values = self.figures.get(candidate, {}).get(key)
        return statistics.median(values) if values else None


def measured_trial(
    lib: Library, build: Callable[[], Any], warmup: int, count: int, usage: Usage, candidate: str
) -> Callable[[], float]:
    """A candidate: a new runner; batches/s over *count* batches after *warmup*, and
    the CPU time the consumer and the whole machine spent per batch meanwhile."""

    def run() -> float:
        df = build()
        df.reset_state()
        it = stream(df)
        try:
            for _ in range(warmup):
                next(it)
            ticks0, own0 = cpu_ticks(), own_ticks()
            cpu0, start = time.process_time(), time.perf_counter()
            for _ in range(count):
                next(it)
            seconds = time.perf_counter() - start
            consumer = time.process_time() - cpu0
            ticks1, own1 = cpu_ticks(), own_ticks()
        finally:
            it.close()
            lib.close(df)
        usage.add(candidate, wall_ms=seconds / count * 1e3, consumer_ms=consumer / count * 1e3)
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        if own0 is not None and own1 is not None:
            usage.add(candidate, own_ms=(own1 - own0) / hz / count * 1e3)
        if ticks0 is not None and ticks1 is not None:
            busy, idle, steal = (b - a for a, b in zip(ticks0, ticks1))
            total = max(1, busy + idle + steal)
            usage.add(
                candidate,
                machine_ms=busy / hz / count * 1e3,
                busy=busy / total,
                steal=steal / total,
            )
        return count / seconds

    return run


def per_call(fn: Callable[[], Any], repeats: int = 15) -> float:
    """Median milliseconds of one call of *fn* (after one untimed call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def in_process(libs: List[Library], files: List[str], repeats: int, usage: Usage) -> None:
    """ms per batch of the pipeline in this one process (a worker's work, less sending),
    interleaved; into *usage*."""

    def measure(lib: Library) -> Callable[[], float]:
        def run() -> float:
            df = pipeline(lib, files)
            df.reset_state()
            it = stream(df)
            try:
                next(it)
                ms = per_call(lambda: next(it), 16)
            finally:
                it.close()
            usage.add(f"{lib.name} in-process", ms=ms)
            return ms

        return run

    interleaved_medians({lib.name: measure(lib) for lib in libs}, repeats)


def transport_only(libs: List[Library], repeats: int, usage: Usage) -> None:
    """Runners whose workers send one pre-built batch again and again (into *usage*)."""
    batch = [np.random.RandomState(1).randint(0, 256, (BATCH, CROP, CROP, 3), dtype=np.uint8)]

    def build(lib: Library) -> Callable[[], Any]:
        return lambda: lib.module.MultiProcessRunnerZMQ(lib.source(batch, 100), num_proc=NUM_PROC)

    candidates = {
        lib.name: measured_trial(lib, build(lib), 10, 150, usage, f"{lib.name} transport")
        for lib in libs
    }
    interleaved_medians(candidates, repeats)


def breakdown(libs: List[Library], usage: Usage) -> List[List[Any]]:
    """Rows of: what, then one figure per library (ms per batch of 32 unless told)."""

    def row(what: str, figure: Callable[[Library], Optional[float]]) -> List[Any]:
        values = [figure(lib) for lib in libs]
        return [what, *("-" if v is None else f"{v:,.2f}" for v in values)]

    def used(suffix: str, key: str) -> Callable[[Library], Optional[float]]:
        return lambda lib: usage.median(f"{lib.name}{suffix}", key)

    rows = [
        row("pipeline in one process (a worker's work, less sending)", used(" in-process", "ms")),
        row("2 workers: wall time per batch", used("", "wall_ms")),
        row("2 workers: consumer CPU", used("", "consumer_ms")),
        row("2 workers: CPU of the consumer and its workers", used("", "own_ms")),
        row("2 workers: whole-machine CPU (with other processes)", used("", "machine_ms")),
        row("runner alone (pre-built batch): wall time per batch", used(" transport", "wall_ms")),
        row("runner alone: consumer CPU", used(" transport", "consumer_ms")),
        row("runner alone: CPU of the consumer and its workers", used(" transport", "own_ms")),
        row(
            "runner alone: whole-machine CPU (with other processes)",
            used(" transport", "machine_ms"),
        ),
    ]
    for suffix, what in (("", "2 workers"), (" transport", "runner alone")):
        cells: List[Any] = [f"{what}: machine busy / stolen by the hypervisor"]
        for lib in libs:
            busy, steal = used(suffix, "busy")(lib), used(suffix, "steal")(lib)
            cells.append("-" if busy is None or steal is None else f"{busy:.0%} / {steal:.0%}")
        rows.append(cells)
    return rows


def shared_costs(files: List[str], tp_available: bool) -> List[List[Any]]:
    """ms per batch of single steps (numpy, OpenCV, pickle), on images in cache."""
    import cv2

    images = [decode(f) for f in files[:BATCH]]
    crops = [im[10 : 10 + CROP, 20 : 20 + CROP] for im in images]
    # Flip's default probability is 0.5: about half the images of a batch are flipped.
    half_flipped = [c[:, ::-1] if i % 2 else c for i, c in enumerate(crops)]
    batch = [np.stack(crops)]
    rows = [
        ["cv2.imread x32", per_call(lambda: [decode(f) for f in files[:BATCH]])],
        [
            "copy of 32 decoded images (tensorpack's AugmentImageComponent copy=True)",
            per_call(lambda: [im.copy() for im in images]),
        ],
        [
            "copy of 16 crop views (ours with copy=True: the unflipped crops view the input)",
            per_call(lambda: [c.copy() for c in crops[:16]]),
        ],
        [
            "np.stack of 32 crop views (tensorpack's BatchData, had nothing been flipped)",
            per_call(lambda: np.stack(crops)),
        ],
        [
            "np.stack of 32 crop views, 16 flipped by img[:, ::-1] (as Flip returns them)",
            per_call(lambda: np.stack(half_flipped)),
        ],
        [
            "the same, flipped with cv2.flip instead (same values, contiguous)",
            per_call(
                lambda: np.stack([cv2.flip(c, 1) if i % 2 else c for i, c in enumerate(crops)])
            ),
        ],
    ]
    if tp_available:  # tensorpack's runner pickles in the worker and unpickles in the consumer
        payload = pickle.dumps(batch, -1)
        rows += [
            [
                "pickle.dumps of a batch (tensorpack's worker)",
                per_call(lambda: pickle.dumps(batch, -1)),
            ],
            [
                "pickle.loads of a batch (tensorpack's consumer)",
                per_call(lambda: pickle.loads(payload)),
            ],
        ]
    return rows


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batches", type=int, default=80, help="timed batches a trial")
    parser.add_argument(
        "--no-breakdown", action="store_true", help="print the comparison only, not where time goes"
    )
    args = parser.parse_args(argv)

    watch = CpuWatch()
    tp = import_tensorpack()
    libs = libraries(tp)
    torch, grain = _peers.import_torch(), _peers.import_grain()
    usage = Usage()
    shared: List[List[Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_images-") as workdir:
        files = write_jpegs(workdir, NUM_FILES)
        check_batches(libs, files)
        candidates = {
            lib.name: measured_trial(
                lib, parallel_pipeline(lib, files), 4, args.batches, usage, lib.name
            )
            for lib in libs
        }
        peers: Dict[str, Callable[[], Any]] = {}
        if torch is not None:
            peers[_peers.TORCH_NAME] = lambda: _peers.torch_images(torch, files, CROP, BATCH)
        if grain is not None:
            # grain's default ReadOptions run 16 threads in each worker, which
            # oversubscribe 2 CPUs with OpenCV work: show it with 2 threads too.
            peers[f"{_peers.GRAIN_NAME} mp_prefetch"] = lambda: _peers.grain_images(
                grain, files, CROP, BATCH
            )
            peers[f"{_peers.GRAIN_NAME} mp_prefetch, ReadOptions(num_threads=2)"] = lambda: (
                _peers.grain_images(grain, files, CROP, BATCH, read_threads=2)
            )
        for name, build in peers.items():
            candidates[name] = measured_trial(
                Library(name, None), build, 4, args.batches, usage, name
            )
        runs = {
            name: [batches * BATCH for batches in r]
            for name, r in interleaved_runs(candidates, args.repeats).items()
        }
        rates = {name: statistics.median(r) for name, r in runs.items()}
        if not args.no_breakdown:
            transport_only(libs, args.repeats, usage)
            in_process(libs, files, args.repeats, usage)
            rows = breakdown(libs, usage)
            shared = shared_costs(files, tp is not None)

    row: List[Any] = ["images/s", rates["dataflow"]]
    headers = ["imread, RandomCrop(224), Flip, BatchData(32), 2 procs", "dataflow"]
    if "tensorpack" in rates:
        ratio = rates["dataflow"] / rates["tensorpack"]
        verdict = "met" if ratio >= TARGET else "MISSED"
        row += [rates["tensorpack"], f"{ratio:.2f}x", f">= {TARGET:g}x tensorpack", verdict]
        headers += ["tensorpack", "ratio", "target", "met?"]
    print_table(
        f"Image pipeline, {NUM_FILES} JPEGs {IMAGE_SIZE}x{IMAGE_SIZE}, {args.batches} batches "
        f"a trial, {os.cpu_count()} CPUs, median of {args.repeats}",
        [row],
        headers,
    )
    peer_table = PeerTable()
    peer_table.add(
        f"imread, RandomCrop({CROP}), Flip, batch {BATCH}, {NUM_PROC} worker processes",
        "images/s",
        runs,
        "dataflow",
    )
    peer_table.print(
        f"Against other loaders, {os.cpu_count()} CPUs, {args.repeats} interleaved repeats"
    )
    if not args.no_breakdown:
        print_table(
            "Where a batch's time goes (ms per batch of 32, medians)",
            rows,
            ["measure", *(lib.name for lib in libs)],
        )
        print_table(
            "Single steps (ms per batch of 32, one process, in cache)", shared, ["step", "ms"]
        )
    ours_cpu, their_cpu = usage.median("dataflow", "own_ms"), usage.median("tensorpack", "own_ms")
    if ours_cpu and their_cpu:
        print(
            f"\nnote: per batch, tensorpack's processes spent {their_cpu / ours_cpu:.2f}x the CPU "
            f"time of ours ({their_cpu:.1f} ms against {ours_cpu:.1f} ms); with every CPU busy, "
            "that ratio bounds the images/s ratio"
        )
    cpu = {name: usage.median(name, "own_ms") for name in runs}
    if ours_cpu and all(cpu.values()):
        print(
            "\nnote: CPU time per batch of the loop and its workers together (ms, median; "
            "steadier than images/s on a busy machine): "
            + ", ".join(
                f"{name} {ms:.1f} ({ms / ours_cpu:.2f}x dataflow's)" for name, ms in cpu.items()
            )
        )
    decoding = shared[0][1] if shared else None
    if their_cpu and decoding:
        print(
            f"\nnote: decoding alone (cv2.imread x{BATCH}, one process) took {decoding:.1f} ms; "
            f"a loader that spent nothing else would spend {their_cpu / decoding:.2f}x less CPU "
            "per batch than tensorpack: the ceiling of the images/s ratio with this decoder"
        )
    note = noise_note(watch)
    if note:
        print(f"\nnote: {note}")
    return rates


if __name__ == "__main__":
    main()

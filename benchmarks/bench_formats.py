"""LMDB write and read speed, side by side with tensorpack 0.11 in the same run.

Each library writes the same datapoints ``[uint8 array (32, 32, 3), int]``
with its ``LMDBSerializer.save`` (progress bar on, sent to a null stream) and
reads its own database back with ``LMDBSerializer.load``, sequentially and
shuffled. The candidates run interleaved and repeated; figures are medians.
Targets: writing at least 1.6x and sequential reading at least 1.5x
tensorpack's datapoints/s. tensorpack writes with its default serializer,
pickle, unless ``--tensorpack-serializer msgpack`` is given.

Run: ``python -m benchmarks.bench_formats [--size N] [--repeats R]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import logging
import os
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from benchmarks._common import interleaved_rates, print_table
from dataflow import DataFromList, LMDBSerializer

TARGETS = {"write": 1.6, "read sequential": 1.5}


def make_data(size: int) -> List[List[Any]]:
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, size=(size, 32, 32, 3), dtype=np.uint8)
    return [[images[i], i] for i in range(size)]


def import_tensorpack(serializer: str) -> Optional[Any]:
    """``tensorpack.dataflow``, or ``None`` when it cannot be imported."""
    os.environ["TENSORPACK_SERIALIZE"] = serializer  # read once, at import
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            import tensorpack.dataflow as tp
    except Exception as err:  # tensorpack is optional and may be broken in many ways
        reason = f"{type(err).__name__}: {err}"
        print(f"note: tensorpack.dataflow is not importable ({reason}); showing ours only")
        return None
    logging.getLogger("tensorpack").setLevel(logging.WARNING)
    return tp


def quietly(fn: Callable[[], int]) -> Callable[[], int]:
    """*fn* with stderr (progress bars) sent to a null stream."""

    def run() -> int:
        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
            return fn()

    return run


def consume(df: Any) -> int:
    n = 0
    for _ in df:
        n += 1
    return n


class Library:
    """One library's write and read candidates, over files in *workdir*."""

    def __init__(self, name: str, module: Any, data: List[List[Any]], workdir: str) -> None:
        self.name, self.module, self.data, self.workdir = name, module, data, workdir
        self._runs = itertools.count()
        self._written: List[str] = []

    def fresh_path(self) -> str:
        return os.path.join(self.workdir, f"{self.name}-{next(self._runs)}.lmdb")

    def write_to(self, path: str) -> Callable[[], int]:
        def run() -> int:
            self.module.LMDBSerializer.save(self.module.DataFromList(self.data, False), path)
            return len(self.data)

        return run

    def write(self) -> int:
        """Write a new database; its files are deleted by :meth:`clean`, untimed."""
        path = self.fresh_path()
        self._written.append(path)
        return self.write_to(path)()

    def clean(self) -> None:
        for path in self._written:
            for leftover in (path, path + "-lock"):  # tensorpack also makes a lock file
                if os.path.exists(leftover):
                    os.remove(leftover)
        self._written = []

    def reader(self, shuffle: bool) -> Callable[[], int]:
        # A database of its own: tensorpack cannot open one file twice in a process.
        path = self.fresh_path()
        quietly(self.write_to(path))()
        df = self.module.LMDBSerializer.load(path, shuffle=shuffle)
        df.reset_state()
        return lambda: consume(df)


class _Ours:
    """dataflow's names, as the ``module`` of a :class:`Library`."""

    LMDBSerializer = LMDBSerializer
    DataFromList = DataFromList


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tensorpack-serializer", choices=["pickle", "msgpack"], default="pickle")
    args = parser.parse_args(argv)

    data = make_data(args.size)
    tp = import_tensorpack(args.tensorpack_serializer)
    results: Dict[str, Dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_formats-") as workdir:
        libraries = [Library("dataflow", _Ours, data, workdir)]
        if tp is not None:
            libraries.append(Library("tensorpack", tp, data, workdir))
        operations = {
            "write": lambda lib: lib.write,
            "read sequential": lambda lib: lib.reader(shuffle=False),
            "read shuffled": lambda lib: lib.reader(shuffle=True),
        }

        def settle() -> None:
            """Delete the databases written so far and flush the disk, untimed, so
            that each trial starts with no writes of earlier trials pending."""
            for lib in libraries:
                lib.clean()
            os.sync()

        for operation, candidate in operations.items():
            candidates = {lib.name: quietly(candidate(lib)) for lib in libraries}
            results[operation] = interleaved_rates(candidates, args.repeats, settle)
            for lib in libraries:
                lib.clean()

    headers = ["operation", "dataflow dp/s"]
    if tp is not None:
        headers += ["tensorpack dp/s", "ratio", "target"]
    rows = []
    for operation, rates in results.items():
        row: List[Any] = [operation, rates["dataflow"]]
        if tp is not None:
            ratio = rates["dataflow"] / rates["tensorpack"]
            target = TARGETS.get(operation)
            verdict = (
                "-" if target is None else f">= {target}x: {'met' if ratio >= target else 'MISSED'}"
            )
            row += [rates["tensorpack"], f"{ratio:.2f}x", verdict]
        rows.append(row)
    versus = f", tensorpack with {args.tensorpack_serializer}" if tp is not None else ""
    print_table(
        f"LMDBSerializer, {args.size:,} datapoints [uint8 (32, 32, 3), int], "
        f"median of {args.repeats}{versus}",
        rows,
        headers,
    )
    return results


if __name__ == "__main__":
    main()

"""How well exactly-once runners shuffle: distinct classes per batch made inside the workers.

A dataset listed class after class (10 classes of equal size, sorted by
label, as directory listings often are) is read through
``DataFromList(shuffle=True)`` and ``BatchData(32)``, the batches made
inside the workers as the docs recommend, and every batch is scored by how
many distinct classes it holds. The rows:

* **single process**: ``BatchData(DataFromList(lst), 32)`` iterated directly:
  the shuffle to match.
* **clones, 2 workers**: ``MultiProcessRunnerZMQ(..., 2)`` without
  ``exactly_once``; each worker shuffles all of the list.
* **exactly-once, 2 workers, contiguous blocks**: what exactly-once runners
  did before: worker *i* read the *i*-th contiguous half of the list and
  shuffled only within it, so its batches held at most 5 classes (emulated
  here by a source that does exactly that).
* **exactly-once, 2 workers, DataFromList**: what they do now: each worker
  reads its part of a random partition of the whole list.

Each row also checks that every datapoint came once per epoch (not for
clones, which repeat and miss some), and gives the median milliseconds
per epoch. A batch of 32 drawn at random from 10 equal classes holds about
``10 * (1 - 0.9 ** 32)`` = 9.66 distinct classes.

Run: ``python -m benchmarks.bench_shuffle [--size N] [--epochs E]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

import dataflow
from benchmarks._common import print_table
from dataflow import BatchData, DataFlow, DataFromList, MultiProcessRunnerZMQ, RNGDataFlow
from dataflow.worker import shard_range

NUM_CLASSES = 10
BATCH_SIZE = 32
NUM_WORKERS = 2


class BlockShuffledList(RNGDataFlow):
    """``DataFromList(lst, shuffle=True)`` as exactly-once workers read it before: worker
    *i* reads the contiguous block ``WorkerInfo.shard(n)`` and shuffles only within it."""

    def __init__(self, lst: List[List[int]]) -> None:
        self.lst = lst

    def __len__(self) -> int:
        return len(shard_range(len(self.lst)))

    def __iter__(self) -> Iterator[List[int]]:
        block = np.asarray(shard_range(len(self.lst)))
        return map(self.lst.__getitem__, self.rng.permutation(block).tolist())


def sorted_dataset(size: int) -> List[List[int]]:
    """``[label, serial]`` for *size* datapoints, sorted by label, classes of equal size."""
    return [[serial * NUM_CLASSES // size, serial] for serial in range(size)]


def score(make: Callable[[], DataFlow], size: int, epochs: int, exact: bool) -> List[Any]:
    """Distinct classes per batch (mean, median, min) over *epochs* epochs, whether each
    epoch held every datapoint once, and the median milliseconds per epoch."""
    distinct: List[int] = []
    seconds: List[float] = []
    once = True
    with make() as df:
        df.reset_state()
        for _ in range(epochs):
            start = time.perf_counter()
            batches = list(df)
            seconds.append(time.perf_counter() - start)
            distinct.extend(len(set(labels.tolist())) for labels, _ in batches)
            serials = sorted(int(s) for _, batch in batches for s in batch)
            once = once and serials == list(range(size // BATCH_SIZE * BATCH_SIZE))
    return [
        statistics.mean(distinct),
        statistics.median(distinct),
        min(distinct),
        ("yes" if once else "no") if exact else "-",
        statistics.median(seconds) * 1000,
    ]


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_480)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args(argv)
    lst = sorted_dataset(args.size)

    def batches(source: DataFlow) -> DataFlow:
        return BatchData(source, BATCH_SIZE)

    def runner(source: DataFlow, exactly_once: bool) -> DataFlow:
        return MultiProcessRunnerZMQ(batches(source), NUM_WORKERS, exactly_once=exactly_once)

    # name: (the pipeline, whether an epoch holds each datapoint once)
    candidates: Dict[str, Tuple[Callable[[], DataFlow], bool]] = {
        "single process, DataFromList": (lambda: batches(DataFromList(lst)), True),
        f"clones, {NUM_WORKERS} workers, DataFromList": (
            lambda: runner(DataFromList(lst), False),
            False,
        ),
        f"exactly-once, {NUM_WORKERS} workers, contiguous blocks (before)": (
            lambda: runner(BlockShuffledList(lst), True),
            True,
        ),
        f"exactly-once, {NUM_WORKERS} workers, DataFromList (now)": (
            lambda: runner(DataFromList(lst), True),
            True,
        ),
    }
    rows = [
        [name, *score(make, args.size, args.epochs, exact)]
        for name, (make, exact) in candidates.items()
    ]
    print_table(
        f"Shuffling: distinct classes per batch of {BATCH_SIZE} made inside the workers, "
        f"{args.size:,} datapoints sorted into {NUM_CLASSES} classes, {args.epochs} epochs",
        rows,
        ["pipeline", "mean", "median", "min", "each once per epoch", "ms per epoch"],
    )
    expected = NUM_CLASSES * (1 - (1 - 1 / NUM_CLASSES) ** BATCH_SIZE)
    print(
        f"\nA random batch of {BATCH_SIZE} from {NUM_CLASSES} equal classes holds about "
        f"{expected:.2f} distinct classes (dataflow {dataflow.__version__})."
    )
    return {name: float(row[1]) for name, row in zip(candidates, rows)}  # the means


if __name__ == "__main__":
    main()

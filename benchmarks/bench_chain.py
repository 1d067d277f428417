"""In-process chain speed against a hand-written generator doing the same work.

The chain ``DataFromList -> MapDataComponent -> MapData -> BatchData(64)`` over
200k datapoints ``[int, float32 array (3,)]`` is compared, interleaved and
repeated, with a plain generator that applies the same two functions and
stacks the same batches. The goal is at least 80% of the generator's speed.
With ``--profiled``, a third row runs the chain under ``dataflow.profile``
(every stage counted and timed: clocked for the first 5 ms, then
sampled), whose goal is to lose less than 10% against the chain.

Run: ``python -m benchmarks.bench_chain [--size N] [--repeats R] [--profiled]``
"""

from __future__ import annotations

import argparse
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from benchmarks._common import interleaved_rates, print_table
from dataflow import BatchData, DataFromList, MapData, MapDataComponent, profile

BATCH_SIZE = 64
TARGET_RATIO = 0.80


def add_one(x: int) -> int:
    return x + 1


def relabel(dp: List) -> List:
    return [dp[0] % 10, dp[1]]


def make_data(size: int) -> List[List]:
    rng = np.random.RandomState(0)
    vectors = rng.rand(size, 3).astype("float32")
    return [[i, vectors[i]] for i in range(size)]


def handwritten(data: Sequence[List]):
    """The reference: the same work as the chain, written as one generator."""
    labels, vectors = [], []
    for dp in data:
        dp = [add_one(dp[0]), dp[1]]  # MapDataComponent copies before it changes
        dp = relabel(dp)
        labels.append(dp[0])
        vectors.append(dp[1])
        if len(labels) == BATCH_SIZE:
            yield [np.asarray(labels, dtype="int32"), np.stack(vectors)]
            labels, vectors = [], []


def make_chain(data: List[List]) -> BatchData:
    df = DataFromList(data, shuffle=False)
    df = MapDataComponent(df, add_one, 0)
    df = MapData(df, relabel)
    df = BatchData(df, BATCH_SIZE)
    df.reset_state()
    return df


def consume(iterable) -> int:
    """Iterate to the end; return the number of input datapoints seen."""
    n = 0
    for batch in iterable:
        n += len(batch[0])
    return n


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--profiled", action="store_true", help="also run the chain under dataflow.profile"
    )
    args = parser.parse_args(argv)

    data = make_data(args.size)
    chain = make_chain(data)
    check = [next(iter(chain)), next(handwritten(data))]
    assert all(np.array_equal(a, b) for a, b in zip(*check)), "chain and reference disagree"

    candidates: Dict[str, Callable[[], int]] = {
        "hand-written generator": lambda: consume(handwritten(data)),
        "dataflow chain": lambda: consume(chain),
    }
    if args.profiled:
        candidates["dataflow chain, profiled"] = lambda: (
            profile(chain, seconds=None).datapoints * BATCH_SIZE
        )
    rates = interleaved_rates(candidates, args.repeats)
    ref = rates["hand-written generator"]
    rows = [[name, rate, rate / ref] for name, rate in rates.items()]
    ratio = rates["dataflow chain"] / ref
    print_table(
        f"In-process chain, {args.size:,} datapoints, batch {BATCH_SIZE}, "
        f"median of {args.repeats} (target: chain >= {TARGET_RATIO:.0%} of reference)",
        rows,
        ["pipeline", "datapoints/s", "ratio to reference"],
    )
    print(
        f"\nchain / reference = {ratio:.1%} ({'meets' if ratio >= TARGET_RATIO else 'misses'} "
        f"the {TARGET_RATIO:.0%} target)"
    )
    if args.profiled:
        cost = 1 - rates["dataflow chain, profiled"] / rates["dataflow chain"]
        print(f"profiled chain loses {cost:.1%} against the chain (target: < 10%)")
    return {"ratio": ratio, **rates}


if __name__ == "__main__":
    main()

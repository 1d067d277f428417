"""Shared timing helpers for the benchmarks: repeated, interleaved, medians.

Machines are shared and noisy, so every figure is the median of several
repeats, and a benchmark interleaves the candidates (A, B, A, B, ...) so that
a slow moment on the machine hurts both sides alike.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from tabulate import tabulate


def timed(fn: Callable[[], int]) -> Tuple[float, int]:
    """Run *fn* once; return (seconds, the count it returned)."""
    start = time.perf_counter()
    count = fn()
    return time.perf_counter() - start, count


def interleaved_rates(
    candidates: Dict[str, Callable[[], int]],
    repeats: int,
    before_each: Optional[Callable[[], None]] = None,
) -> Dict[str, float]:
    """Median items/s of each candidate; each callable returns how many items it processed.

    *before_each*, if given, runs untimed before every timed call (e.g. to
    delete earlier output and flush it to disk, so that no trial pays for the
    previous one's writes).
    """
    rates: Dict[str, List[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            if before_each is not None:
                before_each()
            seconds, count = timed(fn)
            rates[name].append(count / seconds)
    return {name: statistics.median(r) for name, r in rates.items()}


def interleaved_medians(
    candidates: Dict[str, Callable[[], float]], repeats: int
) -> Dict[str, float]:
    """Median of what each candidate returns (a figure it measured itself, e.g. a
    steady-state rate that leaves out start-up), over interleaved repeats."""
    figures: Dict[str, List[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            figures[name].append(fn())
    return {name: statistics.median(f) for name, f in figures.items()}


def print_table(title: str, rows: Sequence[Sequence[object]], headers: Sequence[str]) -> None:
    print(f"\n## {title}\n")
    print(tabulate(rows, headers=headers, tablefmt="github", floatfmt=",.2f"))

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


def interleaved_runs(
    candidates: Dict[str, Callable[[], float]], repeats: int
) -> Dict[str, List[float]]:
    """Every figure each candidate returns (one a repeat), over interleaved repeats."""
    figures: Dict[str, List[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            figures[name].append(fn())
    return figures


def interleaved_medians(
    candidates: Dict[str, Callable[[], float]], repeats: int
) -> Dict[str, float]:
    """Median of what each candidate returns (a figure it measured itself, e.g. a
    steady-state rate that leaves out start-up), over interleaved repeats."""
    runs = interleaved_runs(candidates, repeats)
    return {name: statistics.median(f) for name, f in runs.items()}


class PeerTable:
    """One row per loader and benchmark: median, range over the repeats, and the
    ratio of the reference loader's median (dataflow's) to this one's."""

    HEADERS = ["benchmark", "loader", "median", "min - max", "dataflow / this"]

    def __init__(self) -> None:
        self.rows: List[List[str]] = []

    def add(self, benchmark: str, unit: str, runs: Dict[str, List[float]], reference: str) -> None:
        """*runs*: each loader's figures (higher is better), *reference* among them."""
        ref = statistics.median(runs[reference])
        for name, values in runs.items():
            median = statistics.median(values)
            ratio = "(reference)" if name == reference else f"{ref / median:.2f}x"
            self.rows.append(
                [
                    benchmark,
                    name,
                    f"{median:,.0f} {unit}",
                    f"{min(values):,.0f} - {max(values):,.0f}",
                    ratio,
                ]
            )
            benchmark = ""  # once per group

    def print(self, title: str) -> None:
        if self.rows:
            print(f"\n## {title}\n")
            print(tabulate(self.rows, headers=self.HEADERS, tablefmt="github"))


def print_table(title: str, rows: Sequence[Sequence[object]], headers: Sequence[str]) -> None:
    print(f"\n## {title}\n")
    print(tabulate(rows, headers=headers, tablefmt="github", floatfmt=",.2f"))

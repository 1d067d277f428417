"""send_dataflow_zmq to RemoteDataZMQ across processes: throughput, and the wait behind a stall.

The sender runs in a forked process, as it would on another machine, and the
receiver binds a loopback TCP port; figures are medians of interleaved trials.

* **small**: ``[float32 (28, 28), int]`` datapoints, datapoints/s.
* **tiny**: ``[int]`` datapoints (batching matters most here), datapoints/s.
* **stall**: a source yields 5 datapoints at once and then blocks for
  ``STALL_S``; the table gives the longest a datapoint of those 5 waited
  between being made and being received (target: a few ms, the batching
  delay; a sender that batches until the next datapoint gives ``STALL_S``).

**--against PATH** also measures the rates of another checkout of the library
(e.g. a git worktree of an earlier commit), each trial in a fresh process with
that checkout on ``PYTHONPATH``, interleaved with the same trial of this
checkout, and gives the ratio of the medians (this / other): what the
liveness protocol (hello, heartbeats, end of pass) and the guarded decoding
of untrusted messages cost.

Run: ``python -m benchmarks.bench_remote [--repeats R] [--count N] [--against PATH]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

import dataflow
from benchmarks._common import interleaved_medians, print_table

STALL_S = 0.5
STALL_QUICK = 5
STALL_TARGET_S = 0.02


def free_tcp_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


class Repeating(dataflow.DataFlow):
    """*dp*, *count* times."""

    def __init__(self, dp: Any, count: int) -> None:
        self.dp, self.count = dp, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Any]:
        dp = self.dp
        for _ in range(self.count):
            yield dp


class QuickThenStalled(dataflow.DataFlow):
    """``[time made]`` STALL_QUICK times at once, then a stall of STALL_S, then the end."""

    def __iter__(self) -> Iterator[Any]:
        for _ in range(STALL_QUICK):
            yield [time.monotonic()]
        time.sleep(STALL_S)


def _send(df: Any, addr: str) -> None:
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):  # the progress bar
        dataflow.send_dataflow_zmq(df, addr)


def transfer(df: Any, count: int, on_each: Optional[Callable[[Any], None]] = None) -> float:
    """Send *df* (*count* datapoints) from a forked process; the datapoints/s received,
    timed from the first datapoint (process start-up left out)."""
    addr = free_tcp_address()
    with dataflow.RemoteDataZMQ(addr, timeout=60) as receiver:
        receiver.reset_state()
        proc = multiprocessing.get_context("fork").Process(target=_send, args=(df, addr))
        proc.start()
        try:
            it = iter(receiver)
            first = next(it)
            if on_each is not None:
                on_each(first)
            start = time.perf_counter()
            for _ in range(count - 1):
                dp = next(it)
                if on_each is not None:
                    on_each(dp)
            seconds = time.perf_counter() - start
            it.close()
        finally:
            proc.join(60)
    return (count - 1) / seconds


def rate_trial(dp: Any, count: int) -> Callable[[], float]:
    return lambda: transfer(Repeating(dp, count), count)


def stall_wait() -> float:
    """The longest wait of the datapoints made just before the stall, in seconds."""
    waits: List[float] = []
    transfer(QuickThenStalled(), STALL_QUICK, lambda dp: waits.append(time.monotonic() - dp[0]))
    return max(waits)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One trial in a fresh interpreter, the library found on PYTHONPATH: a forked sender,
# a receiver on loopback TCP; prints the datapoints/s from the first datapoint on.
_TRIAL = r"""
import contextlib, io, multiprocessing, socket, sys, time
import numpy as np
import dataflow as D

kind, count = sys.argv[1], int(sys.argv[2])
dp = [np.random.RandomState(0).rand(28, 28).astype("float32"), 7] if kind == "small" else [7]

class Repeating(D.DataFlow):
    def __len__(self):
        return count
    def __iter__(self):
        for _ in range(count):
            yield dp

def send(addr):
    with contextlib.redirect_stderr(io.StringIO()):
        D.send_dataflow_zmq(Repeating(), addr)

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    addr = "tcp://127.0.0.1:%d" % s.getsockname()[1]
with D.RemoteDataZMQ(addr, timeout=60) as receiver:
    receiver.reset_state()
    proc = multiprocessing.get_context("fork").Process(target=send, args=(addr,))
    proc.start()
    it = iter(receiver)
    next(it)
    start = time.perf_counter()
    for _ in range(count - 1):
        next(it)
    seconds = time.perf_counter() - start
    it.close()
    proc.join(60)
print((count - 1) / seconds)
"""


def _trial(tree: str, kind: str, count: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _TRIAL, kind, str(count)],
        env=dict(os.environ, PYTHONPATH=tree),
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return float(out.stdout.strip().splitlines()[-1])


def against_table(other: str, counts: Dict[str, int], repeats: int) -> List[List[str]]:
    """Rows of this checkout's and *other*'s rates, trial by trial interleaved."""
    trees = {"this": ROOT, "other": os.path.abspath(other)}
    rows = []
    for kind, count in counts.items():
        rates: Dict[str, List[float]] = {name: [] for name in trees}
        for _ in range(repeats):
            for name, tree in trees.items():
                rates[name].append(_trial(tree, kind, count))
        medians = {name: statistics.median(r) for name, r in rates.items()}
        rows.append(
            [
                kind,
                f"{medians['this']:,.0f} ({min(rates['this']):,.0f}-{max(rates['this']):,.0f})",
                f"{medians['other']:,.0f} ({min(rates['other']):,.0f}-{max(rates['other']):,.0f})",
                f"{medians['this'] / medians['other']:.3f}",
            ]
        )
    return rows


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--count", type=int, default=200_000, help="datapoints per trial")
    parser.add_argument("--against", help="another checkout of the library to compare with")
    args = parser.parse_args(argv)
    if args.against:
        counts = {"small": args.count // 4, "tiny": args.count}
        rows = against_table(args.against, counts, args.repeats)
        print_table(
            f"send_dataflow_zmq -> RemoteDataZMQ, this checkout against {args.against} "
            f"(datapoints/s, median (range) of {args.repeats}, each trial a fresh process)",
            rows,
            ["datapoints", "this checkout", "--against", "ratio"],
        )
    small = [np.random.RandomState(0).rand(28, 28).astype("float32"), 7]
    rates = interleaved_medians(
        {"small": rate_trial(small, args.count // 4), "tiny": rate_trial([7], args.count)},
        args.repeats,
    )
    stall = statistics.median(stall_wait() for _ in range(args.repeats))
    rows = [
        ["small: [float32 (28, 28), int]", f"{rates['small']:,.0f} dp/s", "-"],
        ["tiny: [int]", f"{rates['tiny']:,.0f} dp/s", "-"],
        [
            f"stall: longest wait of {STALL_QUICK} datapoints before a {STALL_S:g} s stall",
            f"{stall * 1000:,.1f} ms",
            f"< {STALL_TARGET_S * 1000:g} ms: {'yes' if stall < STALL_TARGET_S else 'NO'}",
        ],
    ]
    print_table(
        f"send_dataflow_zmq -> RemoteDataZMQ (forked sender, loopback TCP), median of "
        f"{args.repeats}",
        rows,
        ["benchmark", "dataflow", "target"],
    )
    return {"rates": rates, "stall": stall}


if __name__ == "__main__":
    main()

"""What exact resume costs exactly-once runners: throughput, resume latency, state size.

**Tracking.** An exactly-once runner's workers send the state of their
dataflow behind their datapoints (every 256 datapoints or every second) and
the consumer counts what it hands out; a strict mapper saves its input's
state every 128 tasks and counts the results it hands out; so that
``state_dict()`` works at any moment. The throughput table runs the same
pipelines with this checkout and, with ``--against PATH``, with another
checkout of the library (e.g. a git worktree of a commit before the
tracking), each trial in a fresh process, the two interleaved, medians over
the repeats.

**Resume.** A runner over a 1,000,000-datapoint ``DataFromList`` is stopped
at 90% of its pass; a new runner loads the state: the time from
``load_state_dict()`` to the first datapoint (workers reset beforehand), and
the size of the state as JSON.

Run: ``python -m benchmarks.bench_resume [--against PATH] [--repeats N]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from ._common import print_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One trial, run in a fresh interpreter with the library found on PYTHONPATH.
_TRIAL = r"""
import sys, time
import numpy as np
import dataflow as D

kind, n = sys.argv[1], int(sys.argv[2])
if kind == "small":
    df = D.DataFromList([[i] for i in range(n)], shuffle=True, seed=1)
else:
    image = np.zeros((28, 28), np.float32)
    df = D.BatchData(D.MapData(D.DataFromList([[i] for i in range(n)], shuffle=True, seed=1),
                               lambda dp: [image + dp[0], dp[0]]), 32)
if kind == "mapper":
    df = D.DataFromList([[i] for i in range(n)], shuffle=True, seed=1)
    runner = D.MultiProcessMapDataZMQ(df, 2, lambda dp: dp, strict=True)
else:
    runner = D.MultiProcessRunnerZMQ(df, 2, exactly_once=True, seed=0)
runner.reset_state()
for _ in runner:  # a warm-up pass
    pass
start = time.perf_counter()
count = sum(1 for _ in runner)
print(count / (time.perf_counter() - start))
runner.close()
"""


def _trial(tree: str, kind: str, n: int) -> float:
    env = dict(os.environ, PYTHONPATH=tree)
    out = subprocess.run(
        [sys.executable, "-c", _TRIAL, kind, str(n)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return float(out.stdout.strip().splitlines()[-1])


def tracking_table(trees: Dict[str, str], sizes: Dict[str, int], repeats: int) -> List[List[Any]]:
    rows = []
    for kind, n in sizes.items():
        rates: Dict[str, List[float]] = {name: [] for name in trees}
        for _ in range(repeats):
            for name, tree in trees.items():
                rates[name].append(_trial(tree, kind, n))
        medians = {name: statistics.median(r) for name, r in rates.items()}
        row: List[Any] = [kind]
        for name in trees:
            row += [f"{medians[name]:,.0f}", f"{min(rates[name]):,.0f}-{max(rates[name]):,.0f}"]
        if len(trees) == 2:
            this, other = medians["dataflow (this checkout)"], medians["dataflow (--against)"]
            row.append(f"{this / other:.3f}")
        rows.append(row)
    return rows


def resume_latency(n: int, repeats: int) -> Dict[str, float]:
    import dataflow as D

    def make() -> Any:
        source = D.DataFromList([[i] for i in range(n)], shuffle=True, seed=1)
        return D.MultiProcessRunnerZMQ(source, 2, exactly_once=True, seed=0)

    with make() as runner:
        runner.reset_state()
        it = iter(runner)
        for _ in range(int(n * 0.9)):
            next(it)
        start = time.perf_counter()
        state = runner.state_dict()
        save_s = time.perf_counter() - start
        text = json.dumps(state)
    latencies = []
    for _ in range(repeats):
        with make() as resumed:
            resumed.reset_state()
            start = time.perf_counter()
            resumed.load_state_dict(json.loads(text))
            next(iter(resumed))
            latencies.append(time.perf_counter() - start)
    return {
        "first datapoint after load (s)": statistics.median(latencies),
        "state_dict() (s)": save_s,
        "state as JSON (KB)": len(text) / 1000,
    }


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="another checkout of the library to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the tests)")
    args = parser.parse_args(argv)
    trees = {"dataflow (this checkout)": ROOT}
    if args.against:
        trees["dataflow (--against)"] = os.path.abspath(args.against)
    sizes = {"small": 200_000, "batches": 40_000, "mapper": 40_000}
    if args.quick:
        sizes = {"small": 2_000, "batches": 640, "mapper": 500}
    headers = ["pipeline"]
    for name in trees:
        headers += [f"{name} dp/s (median)", "range"]
    if len(trees) == 2:
        headers.append("ratio")
    rows = tracking_table(trees, sizes, args.repeats)
    print_table(
        "2 worker processes, datapoints/s: exactly-once MultiProcessRunnerZMQ (small: [int]; "
        "batches: 32 x float32 (28, 28) per datapoint); mapper: MultiProcessMapDataZMQ("
        "strict=True) of the identity over [int]",
        rows,
        headers,
    )
    latency = resume_latency(20_000 if args.quick else 1_000_000, args.repeats)
    print_table(
        "Resume at 90% of the pass, 2 workers",
        [[k, f"{v:.3f}"] for k, v in latency.items()],
        ["", "value"],
    )
    return {"tracking": rows, "resume": latency}


if __name__ == "__main__":
    main()

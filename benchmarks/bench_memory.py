"""Memory of a consumer and its forked workers iterating millions of small Python datapoints.

A list of 2,000,000 datapoints ``[file name, label]`` feeds
``MultiProcessRunnerZMQ(DataFromList(lst), 4)``, and the consumer reads it
for 60 s while the total PSS (proportional set size: each shared page
counted once, split among the processes that share it) of the consumer and
its workers is sampled every 2 s from ``/proc/<pid>/smaps_rollup``. The
figure is the total as a multiple of one process holding the list (the
process's own PSS just after building it). Three candidates, each in a
process of its own, one after the other:

* dataflow as it is by default: ``DataFromList`` packs a long list into a
  compact store just before the runner forks its workers;
* dataflow with ``compact=False``, which holds the Python list as before;
* tensorpack 0.11's ``DataFromList`` and ``MultiProcessRunnerZMQ``, run by
  ``--tensorpack-python`` (default ``/work/venv-tp/bin/python``, a venv with
  tensorpack), or skipped with a note when that cannot import it.

A second table (``--part speed``) times what the store costs per datapoint
in one process: the source alone, and the chain of ``bench_chain``
(``DataFromList -> MapDataComponent -> MapData -> BatchData``) with and
without the store, interleaved and repeated, beside that benchmark's
hand-written generator.

Run: ``python -m benchmarks.bench_memory [--items N] [--workers W] [--seconds S]
[--part memory|speed|all]``
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TENSORPACK_PYTHON = "/work/venv-tp/bin/python"
TARGET = 1.5
_RESULT = "bench_memory result: "

CANDIDATES = {
    "dataflow (default)": ("dataflow", None),
    "dataflow, compact=False (before)": ("dataflow", False),
    "tensorpack 0.11": ("tensorpack", None),
}


def make_items(n: int) -> List[List[Any]]:
    """*n* small datapoints: a file name (about 40 characters) and an int label."""
    return [[f"/data/train/n{i % 1000:08d}/img_{i:08d}.JPEG", i % 1000] for i in range(n)]


# ---- reading /proc ---------------------------------------------------------------


def rollup(pid: int) -> Dict[str, int]:
    """The fields of ``/proc/<pid>/smaps_rollup`` in bytes (empty if the process is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return out


def children(pid: int) -> List[int]:
    """The pids of the children of *pid* (every thread's list)."""
    pids: List[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return pids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as f:
                pids += [int(p) for p in f.read().split()]
        except FileNotFoundError:
            continue
    return sorted(set(pids))


def total_pss(pid: int) -> Dict[str, int]:
    """Total PSS of *pid* and its children, and the workers' Private_Dirty."""
    kids = children(pid)
    workers = [rollup(k) for k in kids]
    return {
        "pss": rollup(pid).get("Pss", 0) + sum(w.get("Pss", 0) for w in workers),
        "workers": len(kids),
        "worker_private": sum(w.get("Private_Dirty", 0) for w in workers),
    }


# ---- one candidate, in a process of its own ---------------------------------------


def make_runner(kind: str, compact: Optional[bool], lst: List[Any], workers: int) -> Any:
    if kind == "tensorpack":
        import logging

        import tensorpack.dataflow as tp

        logging.getLogger("tensorpack").setLevel(logging.WARNING)
        return tp.MultiProcessRunnerZMQ(tp.DataFromList(lst), workers)
    from dataflow import DataFromList, MultiProcessRunnerZMQ

    return MultiProcessRunnerZMQ(DataFromList(lst, compact=compact), workers)


def run_child(args: argparse.Namespace) -> None:
    """Build the list, start the runner, read it for ``args.seconds``; print a JSON line."""
    kind, compact = CANDIDATES[args.child]
    if kind == "tensorpack":
        import tensorpack.dataflow  # noqa: F401  (imported before the baseline, as dataflow is)
    else:
        import dataflow  # noqa: F401
    lst = make_items(args.items)
    gc.collect()
    baseline = rollup(os.getpid())["Pss"]
    started = time.perf_counter()
    df = make_runner(kind, compact, lst, args.workers)
    built = time.perf_counter() - started
    del lst  # the caller's reference: whatever the source keeps, it keeps
    gc.collect()
    resetting = time.perf_counter()
    df.reset_state()  # by default, DataFromList packs its list here, before the fork
    built += time.perf_counter() - resetting
    samples = []
    count = 0
    start = time.monotonic()
    next_sample = start + args.interval
    done = False
    while not done:  # pass after pass (a pass of tensorpack's runner never ends)
        for _ in df:
            count += 1
            if count % 1024 == 0:
                now = time.monotonic()
                if now >= next_sample:
                    samples.append(total_pss(os.getpid()))
                    next_sample += args.interval
                if now - start >= args.seconds:
                    done = True
                    break
    elapsed = time.monotonic() - start
    samples.append(total_pss(os.getpid()))
    result = {
        "baseline": baseline,
        "peak": max(s["pss"] for s in samples),
        "final": samples[-1]["pss"],
        "worker_private": samples[-1]["worker_private"],
        "workers": samples[-1]["workers"],
        "rate": count / elapsed,
        "build": built,
    }
    close = getattr(df, "close", None)
    if close is not None:
        close()
    print(_RESULT + json.dumps(result), flush=True)


def measure(name: str, args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    """Run candidate *name* in a new process; its result, or ``None`` with a note."""
    kind = CANDIDATES[name][0]
    python = args.tensorpack_python if kind == "tensorpack" else sys.executable
    if not os.path.exists(python):
        print(f"note: {python} does not exist; the {name} row is skipped")
        return None
    command = [python, "-m", "benchmarks.bench_memory", "--child", name]
    command += ["--items", str(args.items), "--workers", str(args.workers)]
    command += ["--seconds", str(args.seconds), "--interval", str(args.interval)]
    env = dict(os.environ, PYTHONPATH=ROOT)
    try:
        run = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=args.seconds + 600,
            env=env,
        )
    except subprocess.TimeoutExpired:
        print(f"note: the {name} run did not finish in time; its row is skipped")
        return None
    lines = [line for line in run.stdout.splitlines() if line.startswith(_RESULT)]
    if run.returncode != 0 or not lines:
        why = (run.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"note: the {name} run failed ({why}); its row is skipped")
        return None
    result: Dict[str, Any] = json.loads(lines[-1][len(_RESULT) :])
    return result


def memory_table(args: argparse.Namespace) -> Dict[str, Dict[str, Any]]:
    from benchmarks._common import print_table

    results = {}
    for name in CANDIDATES:
        if name.startswith("tensorpack") and args.no_tensorpack:
            continue
        result = measure(name, args)
        if result is not None:
            results[name] = result
    mib = 1 << 20
    rows = []
    for name, r in results.items():
        base = r["baseline"]
        rows.append(
            [
                name,
                base / mib,
                r["peak"] / mib,
                r["final"] / mib,
                f"{r['peak'] / base:.2f}x",
                f"{r['final'] / base:.2f}x",
                r["worker_private"] / mib / max(r["workers"], 1),
                r["build"],
                r["rate"],
            ]
        )
    print_table(
        f"Total PSS of the consumer and {args.workers} forked workers reading "
        f"{args.items:,} datapoints [str, int] for {args.seconds:g} s "
        f"(target: final <= {TARGET}x one process holding the list)",
        rows,
        [
            "loader",
            "one process, MiB",
            "peak, MiB",
            "final, MiB",
            "peak / one",
            "final / one",
            "private per worker, MiB",
            "start-up, s",
            "datapoints/s",
        ],
    )
    mine = results.get("dataflow (default)")
    if mine is not None:
        ratio = mine["final"] / mine["baseline"]
        verdict = "meets" if ratio <= TARGET else "misses"
        print(f"\ndataflow: final total PSS = {ratio:.2f}x one process ({verdict} the {TARGET}x)")
    return results


# ---- speed of the store in one process ----------------------------------------------


def speed_table(args: argparse.Namespace) -> Dict[str, float]:
    from benchmarks import bench_chain
    from benchmarks._common import interleaved_rates, print_table
    from dataflow import BatchData, DataFromList, MapData, MapDataComponent

    items = make_items(args.speed_items)
    chain_data = bench_chain.make_data(args.speed_items)

    def source(compact: bool, shuffle: bool) -> Callable[[], int]:
        df = DataFromList(items, shuffle=shuffle, compact=compact)
        df.reset_state()
        return lambda: sum(1 for _ in df)

    def chain(compact: Optional[bool]) -> Callable[[], int]:
        df = DataFromList(chain_data, shuffle=False, compact=compact)
        df = MapDataComponent(df, bench_chain.add_one, 0)
        df = BatchData(MapData(df, bench_chain.relabel), bench_chain.BATCH_SIZE)
        df.reset_state()
        return lambda: bench_chain.consume(df)

    candidates: Dict[str, Callable[[], int]] = {}
    for shuffle in (False, True):
        for compact in (False, True):
            candidates[f"DataFromList [str, int], shuffle={shuffle}, compact={compact}"] = source(
                compact, shuffle
            )
    candidates["chain: hand-written generator"] = lambda: bench_chain.consume(
        bench_chain.handwritten(chain_data)
    )
    for option in (None, False, True):
        candidates[f"chain: dataflow, compact={option}"] = chain(option)
    rates = interleaved_rates(candidates, args.repeats)
    rows = []
    for name, rate in rates.items():
        if name.startswith("chain"):
            ref = rates["chain: hand-written generator"]
        else:
            ref = rates[name.replace("compact=True", "compact=False")]
        rows.append([name, rate, 1e9 / rate, f"{rate / ref:.2f}"])
    print_table(
        f"Cost of the store in one process, {args.speed_items:,} datapoints, "
        f"median of {args.repeats} (ratio: to compact=False; a chain's to the generator)",
        rows,
        ["pipeline", "datapoints/s", "ns per datapoint", "ratio"],
    )
    return rates


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=2_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--part", choices=["memory", "speed", "all"], default="all")
    parser.add_argument("--speed-items", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tensorpack-python", default=TENSORPACK_PYTHON)
    parser.add_argument("--no-tensorpack", action="store_true", help="skip the tensorpack row")
    parser.add_argument("--child", choices=list(CANDIDATES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        run_child(args)
        return {}
    out: Dict[str, Any] = {}
    if args.part in ("memory", "all"):
        out["memory"] = memory_table(args)
    if args.part in ("speed", "all"):
        out["speed"] = speed_table(args)
    return out


if __name__ == "__main__":
    main()

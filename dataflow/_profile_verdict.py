"""The verdict of :func:`dataflow.profile`: which stage limits the pipeline, and
what to do about it (:class:`Bottleneck`), from the numbers of the report.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ._timing import FUNC_ROW, walk
from .graph import _parallelism, _workers

if TYPE_CHECKING:
    from .profiling import Stage

__all__ = ["Bottleneck", "machine_cpu_times", "verdict", "worker_rows"]


class Bottleneck:
    """The verdict: the *stage* that limits throughput, why, and what to do.

    ``str()`` is the explanation and the suggestion on two lines.

    Attributes:
        stage: the :class:`Stage`.
        explanation: one line: what share of the wall time it takes.
        suggestion: one line: what to change, with the expected speed-up.
        speedup: that expected speed-up (``None`` when none can be promised).
    """

    def __init__(
        self, stage: Stage, explanation: str, suggestion: str, speedup: Optional[float]
    ) -> None:
        self.stage = stage
        self.explanation = explanation
        self.suggestion = suggestion
        self.speedup = speedup

    def __str__(self) -> str:
        return f"{self.explanation}\n{self.suggestion}"

    def __repr__(self) -> str:
        return f"Bottleneck({self.stage.name})"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "stage": self.stage.name,
            "explanation": self.explanation,
            "suggestion": self.suggestion,
            "speedup": self.speedup,
        }


def _workers_for(share: float, cpus: int) -> Tuple[int, float]:
    """How many workers make a stage with *share* stop limiting, and the speed-up.

    Moved to *k* workers, the stage takes ``share / k`` of today's time per
    datapoint while the rest (``1 - share``) still runs in the consumer, at
    the same time: the pipeline runs at ``1 / max(1 - share, share / k)``.
    """
    k_needed = math.ceil(share / max(1.0 - share, 1e-9))
    k = max(2, min(k_needed, max(1, cpus - 1)))
    return k, 1.0 / max(1.0 - share, share / k)


def verdict(stages: List[Stage], machine_busy: Optional[float] = None) -> Optional[Bottleneck]:
    """The bottleneck of a profiled pipeline; *machine_busy* is the share of the
    machine's CPU time that was busy during the run (``None``: unknown)."""
    timed = [s for s in stages if s.share is not None and s.where != "worker"]
    if not timed:
        return None
    top = max(timed, key=lambda s: s.share or 0.0)
    if top.where == "parallel":
        return _parallel_verdict(top, stages, machine_busy)
    return _consumer_verdict(top)


def _consumer_verdict(top: Stage) -> Bottleneck:
    """*top*, which runs in this process, takes the largest share of the time."""
    share = top.share or 0.0
    cpus = os.cpu_count() or 1
    cls = type(top.df).__name__
    explanation = f"{top.name} takes {share:.0%} of one process"
    if share < 0.5 and cpus > 1:
        return Bottleneck(
            top,
            explanation + "; no stage dominates",
            "the time is spread over the stages: parallelize the whole pipeline "
            f"with MultiProcessRunnerZMQ(ds, num_proc={max(2, min(4, cpus - 1))}) (with "
            "exactly_once=True unless its workers' copies draw different random data)",
            None,
        )
    if cpus <= 1:
        return Bottleneck(
            top, explanation, "this machine has one CPU: make this stage cheaper", None
        )
    k, speedup = _workers_for(share, cpus)
    expected = f"expected about {speedup:.1f}x"
    if not top.df.parents:
        suggestion = (
            f"it is a source: read it in parallel, MultiProcessRunnerZMQ({cls}(...), "
            f"num_proc={k}, exactly_once=True) over shards of it ({expected}), or store "
            "the data in a faster format (see docs/formats.md)"
        )
    elif hasattr(top.df, "func") and hasattr(top.df, "ds"):
        suggestion = f"run it in MultiProcessMapDataZMQ(num_proc={k}); {expected}"
    else:
        suggestion = (
            f"run it and what feeds it in workers: MultiProcessRunnerZMQ({cls}(...), "
            f"num_proc={k}); {expected}"
        )
    return Bottleneck(top, explanation, suggestion, round(speedup, 2))


# Workers busier than this limit the pipeline they feed.
_BUSY = 0.7
# Worker threads that use fewer CPUs than this together are held back by the GIL,
# or, below _IO_THREAD_CPUS, wait on I/O (or a sleep, or a lock).
_GIL_CPUS = 1.3
_IO_THREAD_CPUS = 0.5
# The machine's CPUs are taken when this share of their time was busy.
_MACHINE_BUSY = 0.9


def _parallel_verdict(par: Stage, stages: List[Stage], machine_busy: Optional[float]) -> Bottleneck:
    """The consumer spends the largest share of its time waiting for *par*'s workers."""
    wait = par.share or 0.0
    count = par.df.num_proc if hasattr(par.df, "num_proc") else getattr(par.df, "num_thread", None)
    kind = "process" if hasattr(par.df, "num_proc") else "thread"
    option = "num_proc" if kind == "process" else "num_thread"
    cls = type(par.df).__name__
    workers = _workers(count, kind)
    waits = f"the consumer waits for the workers of {par.name} {wait:.0%} of the time"
    if par.busy is None:
        return Bottleneck(
            par,
            waits,
            f"its workers were not timed ({par.note or 'no statistics'}); give it more "
            f"workers or make what runs in them cheaper",
            None,
        )
    inner = [s for _, s in worker_rows(par, stages) if s.share is not None]
    slow = max(inner, key=lambda s: s.share or 0.0) if inner else par
    of_theirs = f"; {slow.name} is {slow.share:.0%} of their time" if slow is not par else ""
    n, cpus = count or 1, os.cpu_count() or 1
    machine_full = machine_busy is not None and machine_busy >= _MACHINE_BUSY
    used = par.cpus
    if used is not None and par.busy >= _BUSY:
        idle_cpu = used < (_IO_THREAD_CPUS if kind == "thread" else 0.5 * min(n, cpus))
        more = "threads" if kind == "thread" else "workers (more than CPUs is fine here)"
        if idle_cpu and machine_full:  # other processes take the CPUs, or they wait
            return Bottleneck(
                slow,
                f"{waits}; its {workers} are busy {par.busy:.0%} of the time but use only "
                f"{used:.1f} CPUs together, while this machine's CPUs are all busy: other "
                "processes take the CPUs, or the workers wait on something else (I/O, a "
                f"sleep, a lock){of_theirs}",
                "first find what else runs on this machine; if the workers wait on I/O, "
                f"give {cls} more {more}: {option}={2 * n}",
                None,
            )
        if idle_cpu:  # busy, yet hardly on a CPU: they wait on I/O, a sleep, a lock
            speedup = min(2.0, 1.0 / max(1.0 - wait, 1e-9))
            return Bottleneck(
                slow,
                f"{waits}; its {workers} are busy {par.busy:.0%} of the time but use only "
                f"{used:.1f} CPUs together: they wait on something else (I/O, a sleep, a "
                f"lock){of_theirs}",
                f"give {cls} more {more}: {option}={2 * n}; expected up to {speedup:.1f}x, "
                "as long as what they wait on keeps up",
                round(speedup, 2),
            )
    if kind == "thread" and used is not None and used < _GIL_CPUS and n > 1:
        process_class = (
            "MultiProcessMapDataZMQ" if FUNC_ROW in slow.name else "MultiProcessRunnerZMQ"
        )
        return Bottleneck(
            slow,
            f"{waits}; its {workers} use {used:.1f} CPUs together: they run Python code, "
            f"which Python's GIL runs one thread at a time{of_theirs}",
            f"run the work in processes instead of threads: {process_class}(..., num_proc="
            f"{count}) (threads help only code that waits or releases the GIL: I/O, "
            "decoders in C)",
            None,
        )
    if par.busy < _BUSY or not inner:
        return Bottleneck(
            par,
            f"{waits}, but they are busy only {par.busy:.0%} of theirs",
            "the time goes to moving datapoints from the workers to the consumer: batch "
            "small datapoints in the workers (BatchData before the runner), and keep large "
            "arrays in shared memory (shm=True)",
            None,
        )
    explanation = (
        f"{slow.name} takes {slow.share:.0%} of the time of the {workers} of {cls} (busy "
        f"{par.busy:.0%}), and the consumer waits for them {wait:.0%} of the time"
    )
    if count is not None and kind == "process" and count < cpus:
        # More workers help until the consumer's own work is all the time it has.
        speedup = min(cpus / count, 1.0 / max(1.0 - wait, 1e-9))
        return Bottleneck(
            slow,
            explanation,
            f"give {cls} more workers: {option}={cpus} ({cpus} CPUs); expected about "
            f"{speedup:.1f}x, or make {slow.name} cheaper",
            round(speedup, 2),
        )
    starved = kind == "process" and used is not None and used < 0.7 * n and machine_full
    if starved:
        explanation += (
            f"; they got only {used:.1f} CPUs between them: other processes take the rest"
        )
    return Bottleneck(
        slow,
        explanation,
        f"its {workers} keep the CPUs busy: make {slow.name} cheaper (it is "
        f"{slow.share:.0%} of their work), or use more CPUs (another machine: see "
        "docs/multi-machine.md)"
        + ("; first find what else runs on this machine" if starved else ""),
        None,
    )


def machine_cpu_times() -> Optional[Tuple[float, float]]:
    """The CPU time this machine has spent busy and in all, in clock ticks
    (Linux's ``/proc/stat``), or ``None`` where that cannot be read."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 5:
        return None
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def worker_rows(par: Stage, stages: List[Stage]) -> List[Tuple[int, Stage]]:
    """The stages that run in the workers of parallel stage *par*, each with its
    index in the statistics its workers send (the order of their walk)."""
    df = par.df
    if not (df.parents and _parallelism(df)[0]):  # type: ignore[index]
        return [(0, s) for s in stages if s.df is df and s.name.endswith(FUNC_ROW)]
    by_id = {id(s.df): s for s in stages if s.where == "worker" and not s.name.endswith(FUNC_ROW)}
    pairs = []
    for i, node in enumerate(walk(df.parents[0])):  # as the workers walk their copy
        stage = by_id.get(id(node.df))
        if stage is not None and node.name is None:
            pairs.append((i, stage))
    return pairs

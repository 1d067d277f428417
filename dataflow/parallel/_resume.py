"""How an exactly-once runner saves and resumes its position: each worker's part of the pass.

A worker sends, behind its datapoints, ``MARK`` messages with the state of
its dataflow (after its first datapoint of a pass, then every few hundred
datapoints or every second: see ``_loops._Marks``), and its last state with
the end of its part. The consumer hands a worker's first datapoints of a
pass out only once the first mark is there, and keeps a :class:`Part` per
worker: how many of its datapoints were handed out, and its last mark. The
runner's state is the pass number, the seed that partitions the shards, and
every part; a resumed worker loads its mark, reproduces and drops the few
datapoints handed out after it, and goes on. What was in flight (produced,
not handed out) is produced again: each datapoint once in the pass.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from .._state import ResumeNotSupportedError

__all__ = ["SNAPSHOT_TASKS", "MapperPass", "Part", "loaded_state", "saved_state"]


class Part:
    """One worker's part of an exactly-once pass, as the consumer sees it.

    *handed*: how many of the worker's datapoints of the pass were handed out;
    *state*: the worker's dataflow's state after *count* of them (its last
    mark), or, before the first mark, its state after the previous pass. A
    resumed worker loads *state*, reproduces and drops ``handed - count``
    datapoints, and goes on; or, if its part had *ended*, loads the state
    after it and ends again.
    """

    def __init__(
        self, state: Any, count: int, handed: int, known: bool, load: bool, ended: bool = False
    ) -> None:
        self.state, self.count, self.handed, self.ended = state, count, handed, ended
        self.known = known  # whether *state* is the worker's state indeed
        self.load = load  # whether the worker must load it (a resumed pass)
        self.marked = False  # a mark of this pass arrived
        self.problem: Optional[str] = None  # why there is no good state to resume from
        self.reason: Optional[str] = None  # the last reason the worker gave

    @classmethod
    def starting(cls, state: Any, known: bool, load: bool = False) -> Part:
        """A part of a new pass; *state*: the worker's, from the end of the last pass."""
        return cls(state, 0, 0, known, load)

    @classmethod
    def resumed(cls, saved: Dict[str, Any]) -> Part:
        count, skip = int(saved["count"]), int(saved["skip"])
        return cls(saved["state"], count, count + skip, True, True, bool(saved["ended"]))

    def command(self) -> Optional[Dict[str, Any]]:
        """What the worker loads before its part (``None``: it goes on as it is)."""
        return self.saved_state() if self.load else None

    def saved_state(self) -> Dict[str, Any]:
        return {
            "state": self.state,
            "count": self.count,
            "skip": self.handed - self.count,
            "ended": self.ended,
        }

    def mark(self, payload: List[Any]) -> None:
        count, state, problem = payload
        self.marked = True  # a mark, or the reason there is none: hand out what waits
        self.reason = problem or self.reason
        if problem is None:
            self.state, self.count, self.known = state, count, True
            self.problem = None
        elif self.state is None or not self.known:
            self.problem = problem  # nothing good to resume from until the next mark

    def end(self, payload: List[Any]) -> None:
        # The state once the pass ran out: a resumed worker loads it and starts the next.
        self.count = payload[0]
        self.state = payload[1] if len(payload) > 1 else None
        self.known = self.ended = True
        if self.state is None:  # the worker could not take its state (it said why)
            self.problem = self.reason or "its dataflow could not save its state"

    def saved(self, index: int, name: str) -> Dict[str, Any]:
        if not self.known:
            raise ResumeNotSupportedError(
                f"{name}: the previous pass was abandoned, and worker {index} has handed out "
                "no datapoint of this pass yet, so where its part starts is not known here. "
                "Save the state during a pass, or after the first datapoints of the next"
            )
        return self.saved_state()


def saved_state(runner: Any, parts: List[Part], in_pass: bool) -> Dict[str, Any]:
    """The own state of *runner* (``own_state_dict``) with these *parts*."""
    name = runner._name
    if not runner.exactly_once:
        raise ResumeNotSupportedError(
            f"{name} in clone mode has no position to save: its workers repeat their copies "
            "of the dataflow forever and the merged order depends on timing. Pass "
            "exactly_once=True (each worker reads its own shard, one pass yields every "
            "datapoint once), which can save and resume its position"
        )
    saved = {"epoch": runner._epoch, "shared_seed": runner._shared_seed}
    if not parts:
        return {**saved, "in_pass": False, "workers": None}
    for index, part in enumerate(parts):
        if part.problem is not None:
            raise ResumeNotSupportedError(
                f"{name}: worker {index} could not save the state of its dataflow "
                f"({part.problem}); every dataflow inside a runner must support "
                "state_dict() for the runner to save its position"
            )
    if not in_pass:
        return {**saved, "in_pass": False, "workers": [part.state for part in parts]}
    workers = [part.saved(index, name) for index, part in enumerate(parts)]
    return {**saved, "in_pass": True, "workers": workers}


def loaded_state(runner: Any, state: Dict[str, Any]) -> Tuple[int, int, Dict[str, Any]]:
    """``(pass number, shared seed, what to resume)`` of a state for *runner*."""
    workers = state.get("workers")
    count = runner._num_workers
    if workers is not None and len(workers) != count:
        raise ValueError(
            f"load_state_dict(): the state was saved from {runner._name} with "
            f"{len(workers)} workers, and this one has {count}: each worker resumes its "
            "own shard, so the number of workers must be the same"
        )
    # The seed that partitions the shards (fresh entropy of the saved run, without
    # seed=): the resumed workers must draw the same parts.
    resume = dict(state, workers=workers or [None] * count)
    return int(state["epoch"]), int(state["shared_seed"]), resume


# -- mappers ---------------------------------------------------------------------------

#: A strict mapper saves its input's state every this many tasks (and at the start
#: of each pass): a resumed pass reads at most about this many tasks again, unsent.
SNAPSHOT_TASKS = 128


class MapperPass:
    """A strict mapper's pass: its input's state now and then, and which tasks'
    results were handed out (a task is a datapoint of the input, or a chunk of
    them for a mapper that batches).

    Task *r* of the pass is the *r*-th read from the input (from 0). The
    results come back in any order, so the handed-out tasks are all those
    below *low* and the set *done* above it. A snapshot ``(n, state)`` is
    the input's state after *n* tasks were read; the state of the pass is
    the last snapshot at or below *low*, and the tasks after it whose
    results were handed out, which a resumed pass reads again without
    sending them.
    """

    def __init__(self, source: Any, start_seq: int, saved: Optional[Dict[str, Any]]) -> None:
        self.source = source  # the input dataflow (its state_dict())
        self.problem: Optional[str] = None
        self.snapshots: List[Tuple[int, Any]] = []
        if saved is None:
            self.read = self.low = 0
            self.done: set = set()
            self.take_snapshot()
        else:
            self.read, self.low = int(saved["n"]), int(saved["low"])
            self.done = {int(r) for r in saved["done"]}
            self.snapshots.append((self.read, saved["source"]))
        self.start = start_seq - self.read  # the sequence number of task 0
        self.skip = set(range(self.read, self.low)) | self.done

    def take_snapshot(self) -> None:
        try:
            self.snapshots.append((self.read, self.source.state_dict()))
        except Exception as err:  # skipped: the earlier snapshots stay good
            self.problem = f"{type(self.source).__name__}: {type(err).__name__}: {err}"

    def next_task(self) -> bool:
        """Count a task read from the input; whether to send it (false: its result
        was handed out before the state this pass resumed from was saved)."""
        r = self.read
        self.read += 1
        if self.read % SNAPSHOT_TASKS == 1:
            self.take_snapshot()
        return r not in self.skip

    def handed(self, seq: int) -> None:
        """The result of task number *seq* was handed out (or dropped, if ``None``)."""
        self.done.add(seq - self.start)
        while self.low in self.done:
            self.done.discard(self.low)
            self.low += 1
        snapshots = self.snapshots
        while len(snapshots) > 1 and snapshots[1][0] <= self.low:
            del snapshots[0]

    def saved(self, name: str) -> Dict[str, Any]:
        if not self.snapshots:  # not even at the start of the pass
            raise ResumeNotSupportedError(
                f"{name} could not save the state of its input ({self.problem}); the input "
                "of a mapper must support state_dict() for the mapper to save its position"
            )
        n, state = self.snapshots[0]
        return {
            "in_pass": True,
            "source": state,
            "n": n,
            "low": self.low,
            "done": sorted(self.done),
        }

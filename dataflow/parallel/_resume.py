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

__all__ = ["Part", "loaded_state", "saved_state"]


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
        self.problem: Optional[str] = None

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
        if problem is not None:
            self.problem = problem
        self.state, self.count, self.known = state, count, True
        self.marked = True

    def end(self, payload: List[Any]) -> None:
        # The state once the pass ran out: a resumed worker loads it and starts the next.
        self.count = payload[0]
        self.state = payload[1] if len(payload) > 1 else None
        self.known = self.ended = True

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

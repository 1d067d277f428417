"""Saving and restoring the position of a pipeline: the machinery behind
``DataFlow.state_dict()`` and ``DataFlow.load_state_dict()``.

The state of a dataflow is a JSON-compatible dict, one per dataflow of the
pipeline, nested like the pipeline itself::

    {"dataflow": "BatchData(batch_size=64)",   # the class and key parameters
     "state": ...,                             # its own part (own_state_dict())
     "parents": [<the state of each parent>]}

A dataflow's own part holds positions, counters and random-generator states,
never datapoints. Loading checks that the ``"dataflow"`` entries and the
number of parents agree everywhere, loads the parents first and then the
dataflow's own part, so that a dataflow that replays from the start of its
pass may load its parents again with the states it recorded then.
"""

from __future__ import annotations

import base64
import binascii
import itertools
from typing import Any, Dict, Iterable, Iterator, List, Optional

import numpy as np

from ._repr import call_repr

__all__ = [
    "PassRecord",
    "ResumeNotSupportedError",
    "load_state",
    "replaying",
    "rng_from_state",
    "rng_state",
    "save_state",
]


class ResumeNotSupportedError(NotImplementedError):
    """Raised by ``state_dict()`` of a dataflow whose position cannot be saved."""


def _describe(df: Any) -> str:
    return call_repr(type(df).__name__, df._repr_args().items())


def _defining_index(mro: tuple, names: Iterable[str]) -> int:
    for k, klass in enumerate(mro):
        if any(name in klass.__dict__ for name in names):
            return k
    return len(mro)


# The modules (and packages) whose dataflows save their position (or say why not).
_COVERED = frozenset(
    [
        "dataflow.base",
        "dataflow.sources",
        "dataflow._random_access",
        "dataflow.transforms",
        "dataflow.batch",
        "dataflow.combine",
        "dataflow.buffer",
        "dataflow.debug",
        "dataflow.formats",
        "dataflow.dataset",
        "dataflow.image",
    ]
)


def _covered(module: str) -> bool:
    return module in _COVERED or module.rpartition(".")[0] in _COVERED


def _check_supported(df: Any) -> None:
    cls = type(df)
    if cls.__module__.startswith("dataflow.remote"):
        raise ResumeNotSupportedError(
            f"{cls.__name__} receives datapoints from other processes or machines, which "
            "cannot resume where it stood: only pipelines that run in this process and its "
            "runners can save their position for now"
        )
    module = cls.__module__
    if module.startswith("dataflow.parallel"):
        return  # each runner and mapper says for itself (its own_state_dict)
    if module.startswith("dataflow.") and not _covered(module):
        raise ResumeNotSupportedError(
            f"{cls.__name__} ({module}) does not support state_dict() yet: for now only the "
            "dataflows of " + ", ".join(sorted(_COVERED)) + " can save their position"
        )
    mro = cls.__mro__
    # The class that defines how to iterate must also say how to save the position.
    if _defining_index(mro, ("__iter__", "get_data")) < _defining_index(mro, ("own_state_dict",)):
        raise ResumeNotSupportedError(
            f"{cls.__name__} does not support state_dict(): it defines its own __iter__ but "
            "not own_state_dict() and load_own_state_dict(); define both to make it "
            "resumable (docs/checkpointing.md, 'Your own dataflows', shows a source that "
            "reads by index), or build it from DataFromList/DataFromIterable"
        )


def save_state(df: Any) -> Dict[str, Any]:
    """The nested state of *df* and its parents (see the module docstring)."""
    _check_supported(df)
    own = df.own_state_dict()
    return {
        "dataflow": _describe(df),
        "state": own,
        "parents": [save_state(p) for p in _state_parents(df)],
    }


def _state_parents(df: Any) -> Any:
    """The parents whose states nest in *df*'s: none for a runner, whose own part
    holds its workers' states (the parents in this process never iterate)."""
    return () if getattr(df, "_STATE_HOLDS_PARENTS", False) else df.parents


def load_state(df: Any, state: Any, where: str = "") -> None:
    """Load *state*, made by :func:`save_state`, into *df* and its parents."""
    where = f"{where} > {type(df).__name__}" if where else type(df).__name__
    _check_supported(df)
    if not isinstance(state, dict) or not {"dataflow", "state", "parents"} <= set(state):
        raise ValueError(
            f"load_state_dict() of {where}: state must be a dict made by state_dict(), "
            f"with keys 'dataflow', 'state' and 'parents', got {type(state).__name__}"
        )
    mine = _describe(df)
    if state["dataflow"] != mine:
        raise ValueError(
            f"load_state_dict(): the state is not from this pipeline: at {where} it was "
            f"saved from {state['dataflow']} but this dataflow is {mine}"
        )
    parents = _state_parents(df)
    if len(state["parents"]) != len(parents):
        raise ValueError(
            f"load_state_dict(): the state is not from this pipeline: at {where} it has "
            f"{len(state['parents'])} input dataflow(s) but this dataflow has {len(parents)}"
        )
    for parent, sub in zip(parents, state["parents"]):
        load_state(parent, sub, where)
    df.load_own_state_dict(state["state"])


_MT_WORDS = 624  # the words of an MT19937 key


def rng_state(rng: Any) -> Optional[Dict[str, Any]]:
    """The state of a ``numpy.random.RandomState`` (or the tuple ``get_state()``
    returned) as JSON-compatible data; ``None`` for ``None``.

    The 624 words of the MT19937 key are stored as the base64 text of their
    little-endian bytes (3,328 characters; as a JSON list of numbers they
    took about twice as much).
    """
    if rng is None:
        return None
    name, keys, pos, has_gauss, gauss = rng if isinstance(rng, tuple) else rng.get_state()
    words = np.asarray(keys, dtype="<u4")
    return {
        "mt19937": base64.b64encode(words.tobytes()).decode("ascii"),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def _mt_key(state: Any) -> np.ndarray:
    """The MT19937 key of a state made by :func:`rng_state` (or by the first
    release, which stored the key as a list of numbers under ``"keys"``)."""
    try:
        if "mt19937" in state:
            raw = base64.b64decode(state["mt19937"].encode("ascii"), validate=True)
            if len(raw) != _MT_WORDS * 4:
                raise ValueError(f"{len(raw)} bytes of key, not {_MT_WORDS * 4}")
            keys = np.frombuffer(raw, dtype="<u4").astype(np.uint32)
        else:
            keys = np.asarray(state["keys"], dtype=np.uint32)
            if keys.shape != (_MT_WORDS,):
                raise ValueError(f"a key of shape {keys.shape}, not ({_MT_WORDS},)")
        pos = state["pos"]
        if type(pos) is not int or not 0 <= pos <= _MT_WORDS:
            raise ValueError(f"position {pos!r}")
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as err:
        raise ValueError(
            f"load_state_dict(): a random-generator state is damaged or was not made by "
            f"state_dict() ({type(err).__name__}: {err})"
        ) from None
    return keys


def rng_from_state(rng: Any, state: Optional[Dict[str, Any]]) -> None:
    """Set the ``RandomState`` *rng* to *state*, made by :func:`rng_state`."""
    if state is None:
        return
    keys = _mt_key(state)
    rng.set_state(("MT19937", keys, state["pos"], state["has_gauss"], state["gauss"]))


class PassRecord:
    """What a dataflow that resumes by replaying remembers of its current pass:
    its parents' states and its random state when the pass began, and how many
    datapoints the pass has yielded."""

    __slots__ = ("count", "done", "parents", "rng")

    def __init__(self, parents: Optional[List[Dict[str, Any]]], rng: Any) -> None:
        self.parents, self.rng = parents, rng
        self.count = 0
        self.done = False


def start_pass(df: Any) -> PassRecord:
    """A record of the pass *df* starts now (its parents' states and its RNG)."""
    rng = df.__dict__.get("_rng")
    try:
        parents: Optional[List[Dict[str, Any]]] = [save_state(p) for p in df.parents]
    except ResumeNotSupportedError:
        parents = None  # iterating works; state_dict() will raise the error
    return PassRecord(parents, None if rng is None else rng.get_state())


def replaying(df: Any, make_pass: Any) -> Iterator[Any]:
    """One pass of *df*: ``make_pass()``, counted in ``df._pass_record``, after
    skipping the datapoints that a loaded state says were already yielded."""
    skip = 0
    pending = df.__dict__.pop("_pending_skip", None)
    if pending is not None:
        skip = pending
        record = df.__dict__.pop("_pending_record")
    else:
        record = start_pass(df)
    df._pass_record = record
    it = iter(make_pass())
    skip_items(it, skip)
    record.count = skip
    return _counting(it, record)


def _counting(it: Iterator[Any], record: PassRecord) -> Iterator[Any]:
    for dp in it:
        record.count += 1
        yield dp
    record.done = True


def replay_state(df: Any) -> Dict[str, Any]:
    """The own state of a dataflow that resumes by replaying its current pass."""
    if "_pending_skip" in df.__dict__:
        record: PassRecord = df._pending_record
        count = df._pending_skip
        pending = {"parents": record.parents, "rng": rng_state(record.rng), "count": count}
        return {"pass": pending, "rng": None}
    record = df.__dict__.get("_pass_record")
    rng = df.__dict__.get("_rng")
    if record is None or record.done:
        return {"pass": None, "rng": rng_state(rng)}
    if record.parents is None:
        record.parents = [save_state(p) for p in df.parents]  # raises the clear error
    return {
        "pass": {"parents": record.parents, "rng": rng_state(record.rng), "count": record.count},
        "rng": None,
    }


def load_replay_state(df: Any, state: Dict[str, Any]) -> None:
    """Load what :func:`replay_state` returned: the next pass replays to the position."""
    df.__dict__.pop("_pass_record", None)
    current = state["pass"]
    rng = df.__dict__.get("_rng")
    if current is None:
        if rng is not None:
            rng_from_state(rng, state["rng"])
        df.__dict__.pop("_pending_skip", None)
        for parent in df.parents:  # the next pass begins with a new iter() of each
            abandon(parent)
        return
    for parent, sub in zip(df.parents, current["parents"]):
        load_state(parent, sub)
        abandon(parent)  # the pass began with a new iter() of each input
    if rng is not None:
        rng_from_state(rng, current["rng"])
    record = PassRecord(current["parents"], rng.get_state() if rng is not None else None)
    df._pending_record = record
    df._pending_skip = int(current["count"])


class EndMarker:
    """An empty iterator that records that it was reached: chained after the
    datapoints of a pass, it tells that the consumer asked past the last one."""

    __slots__ = ("done",)
    _plain_iterator = True  # no stage's code runs in it (see dataflow._timing)

    def __init__(self) -> None:
        self.done = False

    def __iter__(self) -> EndMarker:
        return self

    def __next__(self) -> Any:
        self.done = True
        raise StopIteration


def skip_items(it: Iterator[Any], n: int) -> None:
    """Advance *it* by *n* items (fewer if it ends)."""
    if n:
        next(itertools.islice(it, n, n), None)


def abandon(df: Any) -> None:
    """Make *df* stand as if its pass in progress had been abandoned, which is
    where a loaded state leaves the input of a dataflow that starts a new pass
    of it next (the original run called ``iter()`` on it anew)."""
    df._abandon_pass()


def abandon_by_iterating(df: Any) -> None:
    """For a dataflow whose ``iter()`` consumes a loaded position at once (a
    source, or one that replays): take that iterator and drop it."""
    it = iter(df)
    close = getattr(it, "close", None)
    if close is not None:
        close()

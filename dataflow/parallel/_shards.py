"""Whether the copies of a dataflow that exactly-once workers run each read only their shard.

Two checks, with one message. Before the workers start, the consumer
compares ``len()`` of the dataflow with its length as each worker would
see it (:func:`copies_everything`): equal lengths mean copies, not shards.
When ``len()`` is unknown, each worker checks instead, at the first
datapoint of a pass (:func:`check_reads_own_shard`): a dataflow none of
whose code asked :func:`dataflow.worker.get_worker_info` (or drew a shard
order) cannot have read only its shard.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator, List, Optional

from .._worker_state import current_state
from ..base import DataFlow, pipeline_of

__all__ = [
    "check_reads_own_shard",
    "copies_everything",
    "first_checked",
    "not_sharded",
    "sources_of",
]

_HINT = (
    "DataFromList, DataFromIterable, FakeData, the storage-format readers and the dataset "
    "readers shard, DataFromGenerator does not; a source of your own can read "
    "get_worker_info().shard(n) of its n items"
)


def copies_everything(total: int, shards: List[int]) -> bool:
    """Whether shards of these lengths are whole copies rather than parts (a dataflow
    that ignores sharding). Wrappers such as BatchData(remainder=True) may make the
    shards add up to a little more than *total*, but never each equal to it."""
    return total > 1 and all(n == total for n in shards)


def sources_of(ds: DataFlow) -> List[DataFlow]:
    """The dataflows *ds*'s pipeline starts from (those without inputs), each once, in order."""
    return [node for node, parents in pipeline_of(ds) if not parents]


def _culprit(ds: DataFlow, reads_everything: Callable[[DataFlow], Optional[bool]]) -> str:
    """*ds*'s name, or, when it wraps sources some of which read everything in
    every copy (``reads_everything``: ``True``, ``False`` or ``None`` for
    unknown), the names of those sources."""
    sources = [s for s in sources_of(ds) if s is not ds]
    guilty = [type(s).__name__ for s in sources if reads_everything(s)]
    if not guilty:
        return type(ds).__name__
    names = ", ".join(dict.fromkeys(guilty))
    return f"{names} (the source of {type(ds).__name__})"


def not_sharded(
    name: str,
    ds: DataFlow,
    n: int,
    shards: int,
    total: int,
    reads_everything: Callable[[DataFlow], Optional[bool]],
) -> str:
    """The message of a refused dataflow whose *n* copies would yield *shards*
    datapoints for *total*."""
    return (
        f"{name}(exactly_once=True) needs a dataflow whose copies each read only their own "
        f"shard, but {_culprit(ds, reads_everything)} does not shard itself: its {n} copies "
        f"would yield {shards} datapoints for {total}. {_HINT}"
    )


def check_reads_own_shard(ds: DataFlow) -> None:
    """In an exactly-once worker, at the first datapoint of a pass: raise
    ``ValueError`` if nothing in *ds* asked which shard to read."""
    state = current_state()
    if state is None or state.asked or not state.info.sharded:
        return
    count = state.info.part[1]
    if count == 1:
        return
    names = [type(s).__name__ for s in sources_of(ds) if s is not ds]
    where = type(ds).__name__
    if names:
        where += f" (whose source is {', '.join(dict.fromkeys(names))})"
    raise ValueError(
        "exactly_once=True needs a dataflow whose copies each read only their own shard, but "
        f"nothing in {where} asked get_worker_info() "
        f"which shard to read, so each of the {count} copies would yield every datapoint. {_HINT}"
    )


def first_checked(ds: DataFlow, it: Iterator[Any]) -> Iterator[Any]:
    """*it*, a pass of *ds* in an exactly-once worker, once its first datapoint
    has shown that *ds* read its own shard (:func:`check_reads_own_shard`)."""
    for first in it:
        check_reads_own_shard(ds)
        return itertools.chain((first,), it)
    return it

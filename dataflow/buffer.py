"""Buffering wrappers: shuffle within a buffer, cache a whole pass in memory."""

from __future__ import annotations

import itertools
import operator
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from ._checks import check_bool as _check_bool
from ._checks import check_int as _check_int
from ._state import (
    EndMarker,
    PassRecord,
    abandon,
    load_replay_state,
    load_state,
    replay_state,
    replaying,
    rng_from_state,
    rng_state,
    skip_items,
)
from .base import DataFlow, DataFlowReentrantGuard, Datapoint, ProxyDataFlow, RNGDataFlow

__all__ = ["CacheData", "LocallyShuffleData"]

# LocallyShuffleData draws its random buffer slots from self.rng this many at a
# time: one numpy call per block instead of one per datapoint.
_SLOT_BLOCK = 1024


class _RandomProxyDataFlow(RNGDataFlow, ProxyDataFlow):
    """A wrapper with its own ``self.rng``.

    RNGDataFlow comes first in the bases so that ``reset_state()`` is
    cooperative: RNGDataFlow's calls ``super().reset_state()``, which is
    ProxyDataFlow's (it resets ``ds``), and then creates ``self.rng``.
    """

    def __init__(self, ds: DataFlow, seed: Optional[int]) -> None:
        super().__init__(ds)
        self.set_seed(seed)


def _random_slots(rng: np.random.RandomState, num_slots: int) -> Iterator[int]:
    """An endless iterator of random ints in ``[0, num_slots)``, drawn in blocks."""
    # iter(f, None) calls f until it returns None, which a list never is.
    blocks = iter(lambda: rng.randint(num_slots, size=_SLOT_BLOCK).tolist(), None)
    return itertools.chain.from_iterable(blocks)


class LocallyShuffleData(_RandomProxyDataFlow):
    """Yield the datapoints of *ds* shuffled within a buffer of *buffer_size* datapoints.

    For sources too large to shuffle globally, such as a sequential read of
    one big LMDB file. A pass reads exactly one pass of *ds* and yields each
    of its datapoints exactly *num_reuse* times, so epochs stay exact:
    ``len()`` is ``len(ds) * num_reuse`` (unknown when ``len(ds)`` is).

    How it shuffles: the first *buffer_size* datapoints fill the buffer. Then,
    for each further datapoint of *ds*, a uniformly random slot of the buffer
    is yielded and replaced by the new datapoint. When *ds* ends, the buffer
    is drained in random order. A datapoint waits in the buffer for a
    geometrically distributed number of steps with mean *buffer_size*, so it
    usually lands within a few times *buffer_size* positions of where *ds* put
    it, and never more than *buffer_size* positions earlier. The random numbers
    come from ``self.rng``, so a *seed* makes every pass reproducible (given a
    reproducible *ds*). Work per datapoint is O(1); memory held is
    *buffer_size* datapoints during a pass, nothing between passes.

    Args:
        ds: the dataflow to shuffle.
        buffer_size: the number of datapoints held, >= 1. Larger shuffles
            better and holds more memory.
        num_reuse: how many times each datapoint of *ds* is yielded in one
            pass, >= 1; default 1. The copies enter the buffer together and
            leave it at random times.
        shuffle_interval: accepted so that tensorpack code runs unchanged, and
            has no effect. tensorpack's buffer was a queue that it reshuffled
            every *shuffle_interval* datapoints; this buffer draws a random
            slot for every datapoint, so there is no periodic reshuffle to
            schedule. ``None`` or a positive int.
        seed: seeds ``self.rng`` at every ``reset_state()``; ``None`` (the
            default) draws fresh entropy, so every process shuffles differently.

    Example:
        >>> ds = DataFromList([[i] for i in range(10)], shuffle=False)
        >>> df = LocallyShuffleData(ds, buffer_size=4, seed=0)
        >>> df.reset_state()
        >>> [dp[0] for dp in df]
        [0, 2, 1, 5, 7, 4, 9, 3, 6, 8]
        >>> df = LocallyShuffleData(ds, buffer_size=4, num_reuse=2, seed=0)
        >>> df.reset_state()
        >>> len(df), sorted(dp[0] for dp in df) == sorted(2 * list(range(10)))
        (20, True)

    Note:
        With ``num_reuse > 1`` the copies of a datapoint are the same object,
        so a wrapper that changes a datapoint in place changes its copies still
        in the buffer. Unlike tensorpack's, a pass ends when *ds* ends instead
        of running forever, and datapoints of different passes never mix.
    """

    def __init__(
        self,
        ds: DataFlow,
        buffer_size: int,
        num_reuse: int = 1,
        shuffle_interval: Optional[int] = None,
        *,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__(ds, seed)
        self.buffer_size = _check_int("buffer_size", buffer_size, 1, "a positive int")
        self.num_reuse = _check_int("num_reuse", num_reuse, 1, "a positive int")
        if shuffle_interval is not None:
            _check_int("shuffle_interval", shuffle_interval, 1, "None or a positive int")

    def __len__(self) -> int:
        return len(self.ds) * self.num_reuse

    def __iter__(self) -> Iterator[Datapoint]:
        return replaying(self, self._one_pass)

    def own_state_dict(self) -> Dict[str, Any]:
        """The state of *ds* and the random state when the pass began, and how many
        datapoints it yielded (a few kilobytes, whatever the buffer size): the
        buffer is not saved, so a resumed pass reads *ds* again from the start
        of the pass and replays the shuffle to the position."""
        return replay_state(self)

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        load_replay_state(self, state)

    _abandon_pass = DataFlow._abandon_pass  # iter() replays at once

    def _one_pass(self) -> Iterator[Datapoint]:
        if self.num_reuse == 1:
            stream = iter(self.ds)
        else:
            stream = itertools.chain.from_iterable(
                map(itertools.repeat, self.ds, itertools.repeat(self.num_reuse))
            )
        buffer = list(itertools.islice(stream, self.buffer_size))
        # zip() asks the stream first, so no slot is drawn once the stream has ended.
        for dp, slot in zip(stream, _random_slots(self.rng, len(buffer))):
            yield buffer[slot]
            buffer[slot] = dp
        yield from map(buffer.__getitem__, self.rng.permutation(len(buffer)).tolist())


class CacheData(_RandomProxyDataFlow):
    """Yield the datapoints of *ds*, reading *ds* only once and replaying them from memory.

    The first complete pass reads *ds*, yields its datapoints in the order of
    *ds*, and keeps them all. Later passes yield the kept datapoints (the same
    objects) without touching *ds*: in the same order, or with *shuffle* in a
    new random order every pass, drawn from ``self.rng``. A first pass that is
    abandoned (``break``) or fails keeps nothing, and the next pass reads *ds*
    again. ``len()`` is the number of cached datapoints once the cache is
    complete, and ``len(ds)`` before. Memory held: the whole dataset, for as
    long as this object lives (``reset_state()`` and ``close()`` keep it).

    Args:
        ds: the dataflow to read once; it must fit in memory.
        shuffle: yield the cached datapoints in a new random order at every
            pass after the first; default False.
        seed: seeds ``self.rng`` at every ``reset_state()``; ``None`` (the
            default) draws fresh entropy.

    Example:
        >>> ds = DataFromList([[i] for i in range(5)], shuffle=True, seed=0)
        >>> df = CacheData(ds)
        >>> df.reset_state()
        >>> first = list(df)  # read from ds, which shuffles anew every pass
        >>> list(df) == first  # replayed from the cache: ds was not read again
        True

    Note:
        The first pass yields the datapoints in the order of *ds* even with
        ``shuffle=True``: they cannot be shuffled before they were all read.
        Cached datapoints are yielded again and again as the same objects, so
        a wrapper that changes datapoints in place changes the cache. Two
        loops cannot fill the cache at the same time: the second raises
        :class:`~dataflow.ReentrancyError`.
    """

    def __init__(self, ds: DataFlow, shuffle: bool = False, *, seed: Optional[int] = None) -> None:
        super().__init__(ds, seed)
        self.shuffle = _check_bool("shuffle", shuffle)
        self._cache: Optional[List[Datapoint]] = None
        self._guard = DataFlowReentrantGuard("CacheData (filling its cache)")

    def __len__(self) -> int:
        if self._cache is not None:
            return len(self._cache)
        return len(self.ds)

    _filled_from: Optional[List[Dict[str, Any]]] = None  # states of ds when the fill began
    # The current pass from the cache, as in DataFromList: (random state before
    # its order was drawn, its length, the iterator giving the position, its end).
    _live: Optional[Tuple[Any, int, Iterator[Any], EndMarker]] = None
    _pending: Optional[int] = None  # a loaded position in a pass from the cache

    def __iter__(self) -> Iterator[Datapoint]:
        cache = self._cache
        if cache is None:
            return replaying(self, self._read_and_cache)
        pending, self._pending = self._pending, None
        pass_rng = None
        if self.shuffle:
            pass_rng = self.rng.get_state()
            inner: Iterator[Any] = iter(self.rng.permutation(len(cache)).tolist())
        else:
            inner = iter(cache)
        skip_items(inner, pending or 0)
        marker = EndMarker()
        self._live = (pass_rng, len(cache), inner, marker)
        return itertools.chain(map(cache.__getitem__, inner) if self.shuffle else inner, marker)

    def own_state_dict(self) -> Dict[str, Any]:
        """While the cache fills: replayed as ``LocallyShuffleData`` is. Once it
        is full: the states of *ds* when the fill began (a resumed pipeline
        reads *ds* once more from there to fill its cache), and the position in
        the current pass, as ``DataFromList`` saves it."""
        if self._cache is None:
            return {"fill": replay_state(self), "filled_from": None, "rng": None, "pos": None}
        live, rng = self._live, None
        if self._pending is not None:
            pos, rng = self._pending, self.rng.get_state()
        elif live is None or live[3].done:
            pos, rng = None, self.rng.get_state()
        else:
            pos, rng = live[1] - operator.length_hint(live[2]), live[0]
        return {
            "fill": None,
            "filled_from": self._filled_from,
            "rng": rng_state(rng) if self.shuffle else None,
            "pos": pos,
        }

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        self._live, self._pending, self._cache = None, None, None
        if state["fill"] is not None:
            load_replay_state(self, state["fill"])
            return
        for parent, sub in zip(self.parents, state["filled_from"]):
            load_state(parent, sub)
            abandon(parent)
        self._pass_record = PassRecord(state["filled_from"], None)
        for _ in self._read_and_cache():
            pass
        if self.shuffle:
            rng_from_state(self.rng, state["rng"])
        self._pending = state["pos"]

    _abandon_pass = DataFlow._abandon_pass  # iter() seeks or replays at once

    def _read_and_cache(self) -> Iterator[Datapoint]:
        with self._guard:
            filled_from = self._pass_record.parents
            cache = []
            for dp in self.ds:
                cache.append(dp)
                yield dp
            self._cache = cache
            self._filled_from = filled_from

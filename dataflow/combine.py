"""Combining: one dataflow made of several (concatenated, joined, chosen from or mixed)."""

from __future__ import annotations

import contextlib
import itertools
import math
import numbers
from typing import Any, Dict, Generator, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ._checks import check_bool as _check_bool
from ._state import abandon, load_replay_state, replay_state, replaying
from .base import DataFlow, Datapoint, RNGDataFlow, UnknownLengthError, init_args

__all__ = ["ConcatData", "JoinData", "RandomChooseData", "RandomMixData"]

#: How many random choices are drawn at once (drawing one at a time is slow).
_CHOICE_CHUNK = 1024

_END = object()


def _check_dataflows(df_lists: Any) -> List[DataFlow]:
    constraint = "a non-empty list of DataFlows"
    if not isinstance(df_lists, (list, tuple)):
        raise TypeError(f"df_lists must be {constraint}, got {df_lists!r}")
    if not df_lists:
        raise ValueError(f"df_lists must be {constraint}, got {df_lists!r}")
    for k, df in enumerate(df_lists):
        if not isinstance(df, DataFlow):
            raise TypeError(f"df_lists[{k}] must be a DataFlow, got {df!r}")
    return list(df_lists)


def _name(df_lists: Sequence[DataFlow], k: int) -> str:
    return f"df_lists[{k}] ({type(df_lists[k]).__name__})"


class _Combined(DataFlow):
    """The part shared by dataflows made of several: reset and close each of them once."""

    def __init__(self, df_lists: Sequence[DataFlow]) -> None:
        self.df_lists = _check_dataflows(df_lists)

    def _distinct(self) -> List[DataFlow]:
        """``df_lists`` without repeats: a dataflow given twice is reset and closed once."""
        return list({id(df): df for df in self.df_lists}.values())

    def reset_state(self) -> None:
        super().reset_state()
        for df in self._distinct():
            df.reset_state()

    def close(self) -> None:
        with contextlib.ExitStack() as stack:  # closes all even if one close() raises
            for df in self._distinct():
                stack.callback(df.close)


class ConcatData(_Combined):
    """Yield all datapoints of the first dataflow, then all of the second, and so on.

    Datapoints pass through unchanged, in the order of each dataflow.
    ``len()`` is the sum of the lengths, unknown if any is unknown.
    ``reset_state()`` and ``close()`` reach every dataflow (once, even if it
    is listed twice). Holds nothing.

    Args:
        df_lists: a non-empty list of dataflows.

    Example:
        >>> a = DataFromList([[1], [2]], shuffle=False)
        >>> b = DataFromList([[3]], shuffle=False)
        >>> df = ConcatData([a, b])
        >>> df.reset_state()
        >>> list(df), len(df)
        ([[1], [2], [3]], 3)
    """

    def __len__(self) -> int:
        return sum(len(df) for df in self.df_lists)

    _k: Optional[int] = None  # the dataflow being read; None between passes
    _pending: Optional[int] = None  # the dataflow to continue, from a loaded state

    def __iter__(self) -> Iterator[Datapoint]:
        start, self._pending = self._pending, None
        self._k = None
        return self._concat(start or 0)

    def _concat(self, start: int) -> Iterator[Datapoint]:
        for k in range(start, len(self.df_lists)):
            self._k = k
            yield from self.df_lists[k]
        self._k = None

    def own_state_dict(self) -> Dict[str, Any]:
        """``{"k": k}``: ``df_lists[k]`` is being read (``None`` between passes);
        where in it, its state says."""
        return {"k": self._pending if self._pending is not None else self._k}

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        self._k, self._pending = None, state["k"]
        for k, df in enumerate(self.df_lists):
            if k != self._pending:  # read again from a new pass, or already done
                abandon(df)

    def _abandon_pass(self) -> None:
        self._pending = None
        for df in self.df_lists:
            abandon(df)


class _Ended(Exception):
    """Raised by the iterator of ``df_lists[index]`` inside JoinData when it has ended."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


def _raise_at_end(index: int) -> Iterator[Any]:
    """An iterator that raises ``_Ended(index)`` when asked for its first item.

    Chained after a dataflow, it tells which dataflow ended without any
    per-datapoint work.
    """
    raise _Ended(index)
    yield  # unreachable; makes this function a generator


class JoinData(_Combined):
    """Yield one datapoint made of the *k*-th datapoints of all dataflows, for each *k*.

    List datapoints are concatenated: ``[a1, a2]`` and ``[b1]`` give ``[a1,
    a2, b1]``. Dict datapoints are merged: ``{"a": 1}`` and ``{"b": 2}`` give
    ``{"a": 1, "b": 2}``; a key present in two of them is an error, and so is
    mixing list and dict datapoints. ``len()`` is the common length of the
    dataflows (with *strict*; unknown when none knows its length), or the
    shortest length (without; unknown if any is unknown). Holds nothing.

    Args:
        df_lists: a non-empty list of dataflows. A dataflow listed twice is
            iterated twice at the same time, which only re-entrant dataflows
            allow.
        strict: all dataflows must yield the same number of datapoints
            (default). ``reset_state()`` raises ``ValueError`` when the known
            lengths differ, and a pass raises ``RuntimeError`` as soon as one
            dataflow ends before the others. With ``strict=False`` a pass stops
            silently at the end of the shortest dataflow, as tensorpack did.

    Example:
        >>> a = DataFromList([[1, 2], [3, 4]], shuffle=False)
        >>> b = DataFromList([["x"], ["y"]], shuffle=False)
        >>> df = JoinData([a, b])
        >>> df.reset_state()
        >>> list(df)
        [[1, 2, 'x'], [3, 4, 'y']]

    Note:
        tensorpack's ``JoinData`` only logged a message for dataflows of
        different lengths and then silently dropped the tail of the longer
        ones. Here that is an error unless you pass ``strict=False``.
    """

    def __init__(self, df_lists: Sequence[DataFlow], *, strict: bool = True) -> None:
        super().__init__(df_lists)
        self.strict = _check_bool("strict", strict)

    def _lengths(self) -> List[Optional[int]]:
        lengths: List[Optional[int]] = []
        for df in self.df_lists:
            try:
                lengths.append(len(df))
            except UnknownLengthError:
                lengths.append(None)
        return lengths

    def _common_length(self) -> Optional[int]:
        """The length all dataflows that know theirs agree on; ``ValueError`` if they differ."""
        lengths = self._lengths()
        known = {n for n in lengths if n is not None}
        if len(known) > 1:
            raise ValueError(
                f"JoinData: the dataflows have different lengths {lengths} (None: unknown); "
                "join dataflows of equal length, or pass strict=False to stop at the shortest"
            )
        return known.pop() if known else None

    def reset_state(self) -> None:
        """Reset every dataflow; with *strict*, check that their known lengths agree."""
        super().reset_state()
        if self.strict:
            self._common_length()

    def __len__(self) -> int:
        if self.strict:
            n = self._common_length()
            if n is None:
                raise UnknownLengthError("JoinData: none of the joined dataflows knows its length")
            return n
        lengths = self._lengths()
        known = [n for n in lengths if n is not None]
        if len(known) < len(lengths):
            raise UnknownLengthError(
                "JoinData with strict=False stops at the shortest dataflow, and the length of "
                f"some is unknown: {lengths} (None: unknown)"
            )
        return min(known)

    _in_pass = False
    _pending = False  # a loaded state was in a pass: continue the inputs

    def own_state_dict(self) -> Dict[str, Any]:
        """``{"in_pass": bool}``: whether a pass is in progress; where each input
        stands, its state says (each gave one datapoint per output)."""
        return {"in_pass": self._pending or self._in_pass}

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        self._in_pass, self._pending = False, bool(state["in_pass"])
        if not self._pending:  # with strict=False, some inputs were left mid-pass
            self._abandon_pass()

    def _abandon_pass(self) -> None:
        self._pending = False
        for df in self.df_lists:
            abandon(df)

    def __iter__(self) -> Iterator[Datapoint]:
        self._in_pass = self._pending
        self._pending = False
        return self._join()

    def _join(self) -> Iterator[Datapoint]:
        self._in_pass = True
        iters: List[Iterator[Any]] = [
            itertools.chain(df, _raise_at_end(k)) for k, df in enumerate(self.df_lists)
        ]
        is_list = itertools.repeat((list, tuple))
        count = -1
        try:
            for count, dps in enumerate(zip(*iters)):  # noqa: B007 (read after the loop)
                if all(map(isinstance, dps, is_list)):
                    yield list(itertools.chain.from_iterable(dps))
                else:
                    yield self._merge(dps)
        except _Ended as end:
            if self.strict:
                self._check_all_ended(iters, end.index, count + 1)
        self._in_pass = False

    def _merge(self, dps: Tuple[Any, ...]) -> Dict[Any, Any]:
        merged: Dict[Any, Any] = {}
        for dp in dps:
            if not isinstance(dp, dict):
                raise self._type_error(dps)
            merged.update(dp)
        if len(merged) != sum(map(len, dps)):
            owner: Dict[Any, int] = {}
            for k, dp in enumerate(dps):
                for key in dp:
                    if key in owner:
                        raise ValueError(
                            f"JoinData: key {key!r} is in the datapoints of both "
                            f"{_name(self.df_lists, owner[key])} and {_name(self.df_lists, k)}; "
                            "rename it in one of them (e.g. with MapData)"
                        )
                    owner[key] = k
        return merged

    def _type_error(self, dps: Tuple[Any, ...]) -> TypeError:
        for k, dp in enumerate(dps):
            if not isinstance(dp, (list, tuple, dict)):
                return TypeError(
                    f"JoinData needs list or dict datapoints, got {type(dp).__name__} from "
                    f"{_name(self.df_lists, k)}"
                )
        kinds = ", ".join(
            f"{_name(self.df_lists, k)} a {type(dp).__name__}" for k, dp in enumerate(dps)
        )
        return TypeError(
            f"JoinData cannot join list datapoints with dict datapoints; got {kinds}: make "
            "them all lists or all dicts"
        )

    def _check_all_ended(self, iters: List[Iterator[Any]], ended: int, count: int) -> None:
        """After ``df_lists[ended]`` ended with *count* datapoints, check the others did too."""
        longer = 0  # zip had already taken one more datapoint from df_lists[:ended]
        if ended == 0:
            for k in range(1, len(iters)):
                try:
                    next(iters[k])
                except _Ended:
                    continue
                longer = k
                break
            else:
                return
        raise RuntimeError(
            f"JoinData: {_name(self.df_lists, ended)} ended after {count} datapoints but "
            f"{_name(self.df_lists, longer)} had more; join dataflows of equal length, or pass "
            "strict=False to stop at the shortest"
        )


def _interleave(
    iters: List[Iterator[Datapoint]], choices: Iterable[int]
) -> Generator[Datapoint, None, Optional[Tuple[int, int]]]:
    """Yield ``next(iters[k])`` for each *k* of *choices*.

    Returns ``None`` when *choices* ran out, or ``(position, k)`` when
    ``iters[k]`` had ended at that position of *choices*.
    """
    for position, k in enumerate(choices):
        try:
            dp = next(iters[k])
        except StopIteration:
            return position, k
        yield dp
    return None


def _check_choices(df_lists: Any) -> Tuple[List[DataFlow], Optional[List[float]]]:
    """Split RandomChooseData's *df_lists* into dataflows and probabilities (None: uniform)."""
    if not isinstance(df_lists, (list, tuple)) or not any(
        isinstance(x, (list, tuple)) for x in df_lists
    ):
        return _check_dataflows(df_lists), None
    if not all(isinstance(x, (list, tuple)) and len(x) == 2 for x in df_lists):
        raise TypeError(
            "df_lists must hold only DataFlows or only (DataFlow, probability) pairs, "
            f"got {df_lists!r}"
        )
    dfs = _check_dataflows([x[0] for x in df_lists])
    probs = [x[1] for x in df_lists]
    if not all(
        isinstance(p, numbers.Real) and not isinstance(p, bool) and float(p) > 0 for p in probs
    ) or not math.isclose(sum(probs), 1.0, rel_tol=0.0, abs_tol=1e-6):
        raise ValueError(f"probabilities must be positive and sum to 1, got {probs!r}")
    total = float(sum(probs))
    return dfs, [p / total for p in probs]  # exactly 1, as numpy wants


class RandomChooseData(_Combined, RNGDataFlow):
    """Yield datapoints each taken from a dataflow chosen at random, until a chosen one ends.

    Every datapoint comes from one of the dataflows, picked independently with
    the given probabilities (uniformly by default), and passes through
    unchanged. A pass stops as soon as the picked dataflow has no datapoint
    left, so the other dataflows are usually not used up, and ``len()`` is
    unknown. The choices come from ``self.rng``: with a *seed* they are the
    same in every run (the dataflows' own randomness is their own). Holds
    only a chunk of upcoming choices.

    Args:
        df_lists: a non-empty list of dataflows, or of ``(dataflow,
            probability)`` pairs with positive probabilities that sum to 1.
        seed: seeds ``self.rng`` at every ``reset_state()``; ``None`` (the
            default) draws fresh entropy.

    Example:
        >>> a = DataFromList([["a"]] * 100, shuffle=False)
        >>> b = DataFromList([["b"]] * 100, shuffle=False)
        >>> df = RandomChooseData([(a, 0.9), (b, 0.1)], seed=0)
        >>> df.reset_state()
        >>> letters = [dp[0] for dp in df]
        >>> letters.count("a") > letters.count("b")
        True
    """

    def __init__(self, df_lists: Sequence[Any], *, seed: Optional[int] = None) -> None:
        dfs, self.probs = _check_choices(df_lists)
        super().__init__(dfs)
        self.set_seed(seed)

    def _repr_args(self) -> Dict[str, Any]:
        probs = {} if self.probs is None else {"probs": self.probs}
        return {**probs, **init_args(self)}

    def __len__(self) -> int:
        raise UnknownLengthError(
            "RandomChooseData stops when the dataflow it picks has ended, so the length of a "
            "pass is random"
        )

    def __iter__(self) -> Iterator[Datapoint]:
        return replaying(self, self._one_pass)

    def own_state_dict(self) -> Dict[str, Any]:
        """The inputs' states and the random state when the pass began, and how
        many datapoints it yielded: a resumed pass replays from there."""
        return replay_state(self)

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        load_replay_state(self, state)

    def _one_pass(self) -> Iterator[Datapoint]:
        n, probs, rng = len(self.df_lists), self.probs, self.rng

        def draw() -> List[int]:
            return rng.choice(n, size=_CHOICE_CHUNK, p=probs).tolist()

        choices = itertools.chain.from_iterable(iter(draw, None))
        return _interleave([iter(df) for df in self.df_lists], choices)


class RandomMixData(_Combined, RNGDataFlow):
    """Yield every datapoint of every dataflow exactly once per pass, interleaved at random.

    A pass takes ``len(df)`` datapoints from each dataflow ``df``, in its own
    order, and interleaves them in a random order drawn uniformly from all
    interleavings, so each dataflow is spread over the pass in proportion to
    its size. ``len()`` is the sum of the lengths, which must all be known
    and exact. The order comes from ``self.rng``: with a *seed* it is the same
    in every run. Holds the order of one pass (one byte per datapoint for up
    to 256 dataflows).

    Args:
        df_lists: a non-empty list of dataflows that know their length.
        seed: seeds ``self.rng`` at every ``reset_state()``; ``None`` (the
            default) draws fresh entropy.

    Example:
        >>> a = DataFromList([[i] for i in range(3)], shuffle=False)
        >>> b = DataFromList([[i] for i in range(10, 12)], shuffle=False)
        >>> df = RandomMixData([a, b], seed=0)
        >>> df.reset_state()
        >>> out = [dp[0] for dp in df]
        >>> sorted(out), len(df)
        ([0, 1, 2, 10, 11], 5)
        >>> [x for x in out if x < 10]  # each dataflow keeps its own order
        [0, 1, 2]

    Note:
        A dataflow that yields fewer or more datapoints than its ``len()``
        says makes the pass raise ``RuntimeError``: a pass could not be
        exactly once otherwise.
    """

    def __init__(self, df_lists: Sequence[DataFlow], *, seed: Optional[int] = None) -> None:
        super().__init__(df_lists)
        self._sizes()
        self.set_seed(seed)

    def _sizes(self) -> List[int]:
        sizes = []
        for k, df in enumerate(self.df_lists):
            try:
                sizes.append(len(df))
            except UnknownLengthError as err:
                raise ValueError(
                    f"RandomMixData needs the length of every dataflow, but "
                    f"{_name(self.df_lists, k)} does not know its length: {err}"
                ) from err
        return sizes

    def __len__(self) -> int:
        return sum(self._sizes())

    def __iter__(self) -> Iterator[Datapoint]:
        return replaying(self, self._one_pass)

    def own_state_dict(self) -> Dict[str, Any]:
        """The inputs' states and the random state when the pass began, and how
        many datapoints it yielded: a resumed pass replays from there."""
        return replay_state(self)

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        load_replay_state(self, state)

    def _one_pass(self) -> Iterator[Datapoint]:
        sizes = self._sizes()
        order = np.repeat(np.arange(len(sizes), dtype=np.min_scalar_type(len(sizes) - 1)), sizes)
        self.rng.shuffle(order)
        chunks = (
            order[i : i + _CHOICE_CHUNK].tolist() for i in range(0, len(order), _CHOICE_CHUNK)
        )
        iters = [iter(df) for df in self.df_lists]
        ended = yield from _interleave(iters, itertools.chain.from_iterable(chunks))
        if ended is not None:
            position, k = ended
            count = int(np.count_nonzero(order[:position] == k))
            raise RuntimeError(
                f"RandomMixData: {_name(self.df_lists, k)} ended after {count} datapoints but "
                f"its len() is {sizes[k]}; RandomMixData needs exact lengths"
            )
        for k, it in enumerate(iters):
            if next(it, _END) is not _END:
                raise RuntimeError(
                    f"RandomMixData: {_name(self.df_lists, k)} yielded more datapoints than its "
                    f"len() of {sizes[k]}; RandomMixData needs exact lengths"
                )

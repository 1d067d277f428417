"""Transforms: wrappers that map, select, repeat or resize the datapoints of a dataflow."""

from __future__ import annotations

import copy
import itertools
from typing import (
    Any,
    Callable,
    Dict,
    Generator,
    Hashable,
    Iterator,
    List,
    Optional,
    Sequence,
    Union,
)

from ._checks import check_bool as _check_bool
from ._checks import check_callable as _check_callable
from ._checks import check_int as _check_int
from ._checks import check_key as _check_key
from ._checks import is_int as _is_int
from ._state import abandon, load_replay_state, replay_state, replaying
from .base import (
    DataFlow,
    DataFlowReentrantGuard,
    Datapoint,
    ProxyDataFlow,
    UnknownLengthError,
    init_args,
)

__all__ = [
    "FixedSizeData",
    "MapData",
    "MapDataComponent",
    "RepeatedData",
    "RepeatedDataPoint",
    "SelectComponent",
]


def _missing_component(owner: str, dp: Any, index: Any) -> Exception:
    """The error for ``dp[index]`` failing inside *owner*: what was asked, what *dp* is."""
    if isinstance(dp, dict):
        return KeyError(f"{owner}: the datapoint has no key {index!r}; its keys are {list(dp)!r}")
    if isinstance(dp, (list, tuple)):
        return IndexError(
            f"{owner}: the datapoint has no component {index!r}; it is a "
            f"{type(dp).__name__} of {len(dp)} components"
        )
    return _not_list_or_dict(owner, dp)


def _not_list_or_dict(owner: str, dp: Any) -> TypeError:
    return TypeError(f"{owner} needs list or dict datapoints, got {type(dp).__name__}")


def _assignable_copy(owner: str, dp: Any) -> Any:
    """A shallow copy of *dp* whose components can be assigned (a tuple becomes a list)."""
    if isinstance(dp, tuple):
        return list(dp)
    if isinstance(dp, (list, dict)):
        return copy.copy(dp)  # keeps the subclass, e.g. an OrderedDict
    raise _not_list_or_dict(owner, dp)


_END = object()


def _cycle(ds: DataFlow, owner: str, resumed: bool = False) -> Generator[Datapoint, None, None]:
    """The datapoints of *ds*, pass after pass, forever; an empty pass is an error
    (except the first one when *resumed*: the rest of a pass that was at its end)."""
    while True:
        it = iter(ds)
        first = next(it, _END)
        if first is _END and resumed:
            resumed = False
            continue
        resumed = False
        if first is _END:
            raise RuntimeError(
                f"{owner}: a whole pass of {type(ds).__name__} yielded no datapoints, so "
                "repeating it would loop forever without yielding anything"
            )
        yield first  # type: ignore[misc]
        yield from it


class MapData(ProxyDataFlow):
    """Yield ``func(dp)`` for every datapoint ``dp`` of *ds*, dropping those where it is ``None``.

    *func* receives a shallow copy of each datapoint (a new list or dict
    holding the same components, as in tensorpack), so it may assign
    ``dp[k] = ...`` and return ``dp`` without changing the datapoints of
    *ds*. The order of *ds* is kept; the work runs in the iterating thread.
    ``len()`` is ``len(ds)``, even when *func* drops datapoints.

    Args:
        ds: the dataflow to map.
        func: takes a datapoint and returns a new datapoint, or ``None`` to
            drop it.

    Example:
        >>> df = DataFromList([[1, 2], [3, 4], [5, 6]], shuffle=False)
        >>> df = MapData(df, lambda dp: [dp[0] + dp[1]] if dp[0] != 3 else None)
        >>> df.reset_state()
        >>> list(df)
        [[3], [11]]

    Note:
        When *func* drops datapoints, ``len()`` still says ``len(ds)`` and so
        over-counts (3 in the example above, where a pass yields 2). Wrap the
        result in ``FixedSizeData`` if a consumer needs an exact length.

        The copy is shallow: the components are still those of *ds*. A
        *func* that changes an array in place (``dp[0] += 1``) changes the
        data that a source such as ``DataFromList`` yields again next pass,
        so the next pass sees the value already incremented. Compute a new
        array instead (``dp[0] = dp[0] + 1``).
    """

    def __init__(self, ds: DataFlow, func: Callable[[Datapoint], Optional[Datapoint]]) -> None:
        super().__init__(ds)
        self.func = _check_callable("func", func)

    # Yields as it reads, one output per input at most: the input's state is the position.
    own_state_dict = ProxyDataFlow.own_state_dict
    load_own_state_dict = ProxyDataFlow.load_own_state_dict

    def __iter__(self) -> Iterator[Datapoint]:
        func, copy_ = self.func, copy.copy
        for dp in self.ds:
            dp = func(dp[:] if type(dp) is list else copy_(dp))
            if dp is not None:
                yield dp


class MapDataComponent(MapData):
    """Yield the datapoints of *ds* with component *index* replaced by ``func(dp[index])``.

    Works on list datapoints (*index* is a position) and dict datapoints
    (*index* is a key); a tuple datapoint comes out as a list. The input
    datapoint is never changed: each output is a new list or dict holding
    the new component and the same other components. When *func* returns
    ``None`` the datapoint is dropped. The order of *ds* is kept; ``len()``
    is ``len(ds)``.

    Args:
        ds: the dataflow to map; its datapoints must be lists or dicts.
        func: takes one component and returns its new value, or ``None`` to
            drop the datapoint. It must not change its argument in place.
        index: the position (for list datapoints) or key (for dict
            datapoints) of the component; default 0.

    Example:
        >>> df = DataFromList([[1, "a"], [2, "b"]], shuffle=False)
        >>> df = MapDataComponent(df, lambda x: x * 10, 0)
        >>> df.reset_state()
        >>> list(df)
        [[10, 'a'], [20, 'b']]
        >>> df = MapDataComponent(DataFromList([{"x": 1}], shuffle=False), str, "x")
        >>> df.reset_state()
        >>> list(df)
        [{'x': '1'}]

    Note:
        When *func* drops datapoints, ``len()`` still says ``len(ds)`` and so
        over-counts.
    """

    def __init__(
        self, ds: DataFlow, func: Callable[[Any], Any], index: Union[int, Hashable] = 0
    ) -> None:
        super().__init__(ds, func)
        self.index: Any = _check_key("index", index)

    # Yields as it reads, one output per input at most: the input's state is the position.
    own_state_dict = ProxyDataFlow.own_state_dict
    load_own_state_dict = ProxyDataFlow.load_own_state_dict

    def __iter__(self) -> Iterator[Datapoint]:
        func, index = self.func, self.index
        for dp in self.ds:
            try:
                value = dp[index]
            except (LookupError, TypeError):
                raise _missing_component("MapDataComponent", dp, index) from None
            value = func(value)
            if value is None:
                continue
            if type(dp) is list:
                dp = dp[:]
            elif type(dp) is dict:
                dp = dp.copy()
            else:
                dp = _assignable_copy("MapDataComponent", dp)
            dp[index] = value
            yield dp


class SelectComponent(ProxyDataFlow):
    """Yield ``[dp[i] for i in idxs]`` for every datapoint ``dp`` of *ds*.

    Keeps, drops and reorders components; an index may appear more than
    once. With dict datapoints, *idxs* are keys and the output is a list of
    their values. ``len()`` is ``len(ds)``; the order of *ds* is kept.

    Args:
        ds: the dataflow to select from.
        idxs: a non-empty list of positions (list datapoints) or keys (dict
            datapoints).

    Example:
        >>> df = SelectComponent(DataFromList([[1, 2, 3]], shuffle=False), [2, 0])
        >>> df.reset_state()
        >>> list(df)
        [[3, 1]]
        >>> df = SelectComponent(DataFromList([{"img": 7, "label": 1}], shuffle=False), ["label"])
        >>> df.reset_state()
        >>> list(df)
        [[1]]
    """

    def __init__(self, ds: DataFlow, idxs: Sequence[Hashable]) -> None:
        super().__init__(ds)
        if not isinstance(idxs, (list, tuple)) or not idxs:
            raise TypeError(
                f"idxs must be a non-empty list of component indices or keys, got {idxs!r}"
            )
        self.idxs: List[Any] = [_check_key(f"idxs[{k}]", i) for k, i in enumerate(idxs)]

    # Yields as it reads, one output per input at most: the input's state is the position.
    own_state_dict = ProxyDataFlow.own_state_dict
    load_own_state_dict = ProxyDataFlow.load_own_state_dict

    def __iter__(self) -> Iterator[Datapoint]:
        idxs = self.idxs
        for dp in self.ds:
            try:
                selected = [dp[i] for i in idxs]
            except (LookupError, TypeError):
                raise self._missing(dp) from None
            yield selected

    def _missing(self, dp: Any) -> Exception:
        for i in self.idxs:
            try:
                dp[i]
            except (LookupError, TypeError):
                return _missing_component("SelectComponent", dp, i)
        raise AssertionError("unreachable: every index was found")  # pragma: no cover


class RepeatedData(ProxyDataFlow):
    """Yield all of *ds*, *num* times over (or forever), as one pass.

    One pass of this dataflow is *num* passes of *ds*, back to back:
    ``dp1 ... dpn, dp1 ... dpn, ...``; a shuffling source shuffles each of
    them anew. ``len()`` is ``num * len(ds)``, or unknown with ``num=-1``.
    ``reset_state()`` resets *ds* once. Holds nothing.

    Args:
        ds: the dataflow to repeat.
        num: how many passes of *ds* make one pass, >= 1; ``-1`` repeats forever.

    Example:
        >>> df = RepeatedData(DataFromList([[1], [2]], shuffle=False), 3)
        >>> df.reset_state()
        >>> [dp[0] for dp in df], len(df)
        ([1, 2, 1, 2, 1, 2], 6)

    Note:
        With ``num=-1`` a pass of *ds* that yields nothing raises a
        ``RuntimeError`` rather than spinning forever.
    """

    def __init__(self, ds: DataFlow, num: int) -> None:
        super().__init__(ds)
        if not (_is_int(num) and num == -1):  # -1: forever
            num = _check_int("num", num, 1, "a positive int, or -1 to repeat forever")
        self.num = int(num)

    def __len__(self) -> int:
        if self.num == -1:
            raise UnknownLengthError("RepeatedData with num=-1 repeats forever and has no length")
        return len(self.ds) * self.num

    _rep: Optional[int] = None  # the repetition in progress; None between passes
    _pending: Optional[int] = None  # the repetition to continue, from a loaded state

    def __iter__(self) -> Iterator[Datapoint]:
        start, self._pending = self._pending, None
        self._rep = None
        if self.num == -1:
            return self._forever(start is not None)
        return self._repeat(start or 0)

    def _forever(self, resumed: bool) -> Iterator[Datapoint]:
        self._rep = 0
        yield from _cycle(self.ds, "RepeatedData", resumed)

    def _repeat(self, start: int) -> Iterator[Datapoint]:
        for rep in range(start, self.num):
            self._rep = rep
            yield from self.ds
        self._rep = None

    def own_state_dict(self) -> Dict[str, Any]:
        """``{"rep": r}``: repetition *r* (from 0) is in progress, ``None`` between
        passes; where in it, the state of *ds* says."""
        return {"rep": self._pending if self._pending is not None else self._rep}

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        self._rep = None
        self._pending = state["rep"]
        if self._pending is None:  # the next pass starts ds afresh
            abandon(self.ds)

    def _abandon_pass(self) -> None:
        self._pending = None
        abandon(self.ds)


class RepeatedDataPoint(ProxyDataFlow):
    """Yield each datapoint of *ds* *num* times in a row: ``dp1, dp1, ..., dp2, dp2, ...``.

    The repeats are the same object, not copies (the built-in wrappers never
    change their input in place). ``len()`` is ``num * len(ds)``.

    Args:
        ds: the dataflow whose datapoints to repeat.
        num: how many times each datapoint is yielded, >= 1.

    Example:
        >>> df = RepeatedDataPoint(DataFromList([[1], [2]], shuffle=False), 2)
        >>> df.reset_state()
        >>> [dp[0] for dp in df], len(df)
        ([1, 1, 2, 2], 4)
    """

    def __init__(self, ds: DataFlow, num: int) -> None:
        super().__init__(ds)
        self.num = _check_int("num", num, 1, "a positive int")

    def __len__(self) -> int:
        return len(self.ds) * self.num

    def __iter__(self) -> Iterator[Datapoint]:
        return replaying(self, self._one_pass)

    def _one_pass(self) -> Iterator[Datapoint]:
        # map(repeat, ds, [num, num, ...]) gives repeat(dp, num) for each dp.
        return itertools.chain.from_iterable(
            map(itertools.repeat, self.ds, itertools.repeat(self.num))
        )

    def own_state_dict(self) -> Dict[str, Any]:
        """The state of *ds* when the pass began and how many datapoints it yielded:
        a resumed pass reads *ds* again from there (a replay)."""
        return replay_state(self)

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        load_replay_state(self, state)

    _abandon_pass = DataFlow._abandon_pass  # iter() replays at once


class FixedSizeData(ProxyDataFlow):
    """Yield exactly *size* datapoints per pass, restarting *ds* whenever it ends.

    With *keep_state* (the default) a pass continues where the previous one
    stopped, so successive passes walk through *ds* without skipping or
    repeating anything: with *ds* yielding ``1 2 3 4 5`` and ``size=3`` the
    passes are ``1 2 3``, ``4 5 1``, ``2 3 4``... Without it, every pass
    starts *ds* afresh (``1 2 3`` each time). Either way *ds* may be shorter
    than *size*, longer, or infinite. ``len()`` is exactly *size*.
    ``reset_state()`` starts over from a fresh pass of *ds*. Iterating from
    two places at once raises :class:`~dataflow.ReentrancyError`.

    Args:
        ds: the dataflow to take datapoints from.
        size: the number of datapoints in one pass, >= 1.
        keep_state: continue the previous pass of *ds* (default) or restart it
            at every pass.

    Example:
        >>> ds = DataFromList([[i] for i in range(1, 6)], shuffle=False)
        >>> df = FixedSizeData(ds, 3)
        >>> df.reset_state()
        >>> [[dp[0] for dp in df] for _ in range(3)]
        [[1, 2, 3], [4, 5, 1], [2, 3, 4]]

    Note:
        If a pass of *ds* yields nothing at all, iterating raises a
        ``RuntimeError`` instead of waiting forever.
    """

    def __init__(self, ds: DataFlow, size: int, keep_state: bool = True) -> None:
        super().__init__(ds)
        self._size = _check_int("size", size, 1, "a positive int")
        self._keep = _check_bool("keep_state", keep_state)
        self._itr: Optional[Generator[Datapoint, None, None]] = None
        self._guard = DataFlowReentrantGuard("FixedSizeData")
        self._resumed = False

    def _repr_args(self) -> Dict[str, Any]:
        return init_args(self, keep_state=self._keep)

    def reset_state(self) -> None:
        self._drop_kept_iterator()
        super().reset_state()

    def __len__(self) -> int:
        return self._size

    _left: Optional[int] = None  # datapoints left in the pass in progress; None between passes
    _pending: Optional[int] = None  # datapoints left, from a loaded state

    def own_state_dict(self) -> Dict[str, Any]:
        """``{"left": k}``: *k* datapoints are left in the pass in progress
        (``None`` between passes); where *ds* stands, its state says."""
        return {"left": self._pending if self._pending is not None else self._left}

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        self._drop_kept_iterator()
        self._left, self._pending = None, state["left"]
        self._resumed = True
        if not self._keep and self._pending is None:
            abandon(self.ds)  # the next pass starts ds afresh

    def _abandon_pass(self) -> None:
        self._pending = None
        if not self._keep:
            abandon(self.ds)

    def _counted(self, itr: Iterator[Datapoint]) -> Iterator[Datapoint]:
        left, self._pending = self._pending, None
        self._left = self._size if left is None else left
        for dp in itertools.islice(itr, self._left):
            self._left -= 1
            yield dp
        self._left = None

    def __iter__(self) -> Iterator[Datapoint]:
        if self._pending is None:
            self._left = None  # until the new pass yields
        return self._one_pass()

    def _one_pass(self) -> Iterator[Datapoint]:
        resumed, self._resumed = self._resumed, False
        with self._guard:
            if not self._keep:
                if self._pending is None:
                    resumed = False
                itr = _cycle(self.ds, "FixedSizeData", resumed)
                try:
                    yield from self._counted(itr)
                finally:
                    itr.close()
                    abandon(self.ds)  # a loaded position the pass did not reach
                return
            if self._itr is None:
                self._itr = _cycle(self.ds, "FixedSizeData", resumed)
            try:
                yield from self._counted(self._itr)
            except GeneratorExit:  # the consumer stopped early: keep the position
                raise
            except BaseException:  # the kept iterator died with the error: start over
                self._itr = None
                raise

    def close(self) -> None:
        self._drop_kept_iterator()
        super().close()

    def _drop_kept_iterator(self) -> None:
        itr, self._itr = self._itr, None
        if itr is not None:
            itr.close()

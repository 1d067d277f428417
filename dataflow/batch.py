"""Batching: stack consecutive datapoints into one datapoint per batch, and split them back."""

from __future__ import annotations

import itertools
from typing import Any, Dict, Hashable, Iterator, List, Optional

from ._checks import check_bool as _check_bool
from ._checks import check_int as _check_int
from ._checks import check_key as _check_key
from ._collate import UseList, batches, check_use_list, collate, not_a_datapoint
from ._state import EndMarker, load_replay_state, replay_state, replaying
from .base import DataFlow, Datapoint, ProxyDataFlow, UnknownLengthError

__all__ = ["BatchData", "BatchDataByShape", "unbatch"]

# ---- dataflows -------------------------------------------------------------


class BatchData(ProxyDataFlow):
    """Yield batches: every *batch_size* consecutive datapoints of *ds* stacked into one.

    Each batch has the structure of the datapoints: component *k* (or key
    *k*) of a batch holds component *k* of the *batch_size* datapoints, in
    order, stacked into one array with a new first axis:

    * numpy arrays and numpy scalars: ``np.stack``, keeping their dtype;
    * Python ints: ``int32`` when every value of the batch fits, else ``int64``;
      Python floats (or ints mixed with floats): ``float32``; Python bools: ``bool``;
    * Python lists and tuples (e.g. a box ``[x, y, w, h]``): ``np.array`` of
      the values, with numpy's default dtype; all must have the same shape
      and hold only numbers or strings;
    * ``str`` / ``bytes``: a numpy string array (an error if a value ends in
      NUL, which numpy would strip);
    * anything else (``None``, dicts, other objects): a list of the values.

    With *use_list*, the chosen components are lists of the values instead.
    ``len()`` is exactly ``len(ds) // batch_size``, plus one with *remainder*
    when ``len(ds)`` is not a multiple of *batch_size*; unknown when
    ``len(ds)`` is. The order of *ds* is kept. Holds one batch in memory.
    :func:`unbatch` splits a batch back into its datapoints. Arrays of 16 KiB
    or more (images) are copied into the batch as each datapoint arrives,
    while its data is still in the CPU's cache, rather than all at the end;
    the batch is the same.

    Args:
        ds: the dataflow to batch; its datapoints must be all lists (or
            tuples) with the same number of components, or all dicts with the
            same keys.
        batch_size: the number of datapoints in a batch, >= 1.
        remainder: also yield the last, shorter batch of a pass when
            ``len(ds)`` is not a multiple of *batch_size*; by default the
            leftover datapoints are dropped.
        use_list: ``True`` keeps every component a list of values; a list of
            bools (list datapoints) or a dict of bools by key (dict datapoints)
            chooses per component. Default ``False``: stack everything that
            can be stacked.

    Example:
        >>> df = DataFromList([[i, np.full(2, i)] for i in range(5)], shuffle=False)
        >>> df = BatchData(df, 2, remainder=True)
        >>> df.reset_state()
        >>> len(df)
        3
        >>> for ints, arrays in df:
        ...     print(ints, ints.dtype, arrays.shape)
        [0 1] int32 (2, 2)
        [2 3] int32 (2, 2)
        [4] int32 (1, 2)

    Note:
        Arrays (or nested lists) of different shapes within a batch are an
        error, not a silent object array: pad or resize them, group them with
        :class:`BatchDataByShape`, or keep that component a list with
        *use_list*. Nested lists of numbers keep numpy's default dtypes
        (``int64``, ``float64``); only top-level Python scalars become
        ``int32`` / ``float32``.
    """

    def __init__(
        self, ds: DataFlow, batch_size: int, remainder: bool = False, use_list: UseList = False
    ) -> None:
        super().__init__(ds)
        self.batch_size = _check_int("batch_size", batch_size, 1, "a positive int")
        self.remainder = _check_bool("remainder", remainder)
        self.use_list = check_use_list(use_list)

    def reset_state(self) -> None:
        """Reset *ds*; raise ``ValueError`` if a pass could never fill one batch."""
        super().reset_state()
        try:
            n = len(self.ds)
        except UnknownLengthError:
            return
        if n < self.batch_size and not self.remainder:
            raise ValueError(
                f"{type(self).__name__}: len(ds) is {n}, less than batch_size={self.batch_size}, "
                "and remainder=False, so no batch would ever be yielded; use a smaller "
                "batch_size or remainder=True"
            )

    def __len__(self) -> int:
        n, rest = divmod(len(self.ds), self.batch_size)
        return n + (1 if self.remainder and rest else 0)

    _end: Optional[EndMarker] = None  # reached when the pass of ds has ended
    _pending_tail = False  # a loaded state was taken after the last batch of a pass

    def __iter__(self) -> Iterator[Datapoint]:
        if self._pending_tail:
            self._pending_tail = False
            return iter(())
        end = self._end = EndMarker()
        out = self._out = EndMarker()  # reached when the caller asked past the last batch
        return itertools.chain(
            batches(
                type(self).__name__,
                itertools.chain(self.ds, end),
                self.batch_size,
                self.use_list,
                self.remainder,
            ),
            out,
        )

    _out: Optional[EndMarker] = None

    def own_state_dict(self) -> Dict[str, Any]:
        """``{"tail": bool}``: whether *ds* had ended when the last batch was yielded
        (the shorter last batch of *remainder*), so that only the end of the pass
        is left. Otherwise a batch is yielded as soon as its last datapoint was
        read and nothing is read ahead, so the state of *ds* is the position.
        Once the caller asked past the last batch, the pass is over: no tail."""
        end, out = self._end, self._out
        ended_here = end is not None and end.done and not (out is not None and out.done)
        return {"tail": self._pending_tail or ended_here}

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        self._end, self._out, self._pending_tail = None, None, bool(state["tail"])

    def _abandon_pass(self) -> None:
        self._pending_tail = False
        super()._abandon_pass()

    @staticmethod
    def aggregate_batch(data_holder: List[Datapoint], use_list: UseList = False) -> Datapoint:
        """Batch the datapoints of *data_holder* as ``BatchData`` does (tensorpack's helper)."""
        return collate("BatchData", list(data_holder), check_use_list(use_list))


class BatchDataByShape(BatchData):
    """Yield batches of *batch_size* datapoints whose component *idx* has the same shape.

    Datapoints are grouped by ``dp[idx].shape``; a group is batched (as in
    :class:`BatchData`) and yielded as soon as it holds *batch_size*
    datapoints, so batches come in the order they fill up. Groups still
    incomplete when a pass of *ds* ends are dropped, so a rare shape may never
    appear in any batch. Holds up to one partial batch per distinct shape.
    ``len()`` is unknown: how many batches a pass yields depends on how the
    shapes of that pass fall into groups, which only the pass itself reveals.

    Args:
        ds: the dataflow to batch; ``dp[idx]`` must be a numpy array, the
            other components must stack as in :class:`BatchData`.
        batch_size: the number of datapoints in a batch, >= 1.
        idx: the position (list datapoints) or key (dict datapoints) of the
            component whose shape groups the datapoints.

    Example:
        >>> dps = [[np.zeros(n), n] for n in (2, 3, 2, 3, 3, 2)]
        >>> df = BatchDataByShape(DataFromList(dps, shuffle=False), 2, idx=0)
        >>> df.reset_state()
        >>> [(arrays.shape, ns.tolist()) for arrays, ns in df]
        [((2, 2), [2, 2]), ((2, 3), [3, 3])]
    """

    def __init__(self, ds: DataFlow, batch_size: int, idx: Hashable) -> None:
        super().__init__(ds, batch_size)
        self.idx: Any = _check_key("idx", idx)

    def __len__(self) -> int:
        raise UnknownLengthError(
            "BatchDataByShape does not know how many batches one pass yields: that depends on "
            "how many datapoints of each shape the pass has"
        )

    def __iter__(self) -> Iterator[Datapoint]:
        return replaying(self, self._one_pass)

    def own_state_dict(self) -> Dict[str, Any]:
        """The state of *ds* when the pass began and how many batches it yielded:
        the datapoints waiting in groups are not saved, so a resumed pass reads
        *ds* again from the start of the pass (a replay)."""
        return replay_state(self)

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        load_replay_state(self, state)

    _abandon_pass = DataFlow._abandon_pass  # iter() replays at once

    def _one_pass(self) -> Iterator[Datapoint]:
        batch_size, idx = self.batch_size, self.idx
        groups: Dict[Any, List[Datapoint]] = {}
        for dp in self.ds:
            try:
                shape = dp[idx].shape
            except (AttributeError, LookupError, TypeError):
                raise self._bad_component(dp) from None
            group = groups.setdefault(shape, [])
            group.append(dp)
            if len(group) == batch_size:
                del groups[shape]
                yield collate("BatchDataByShape", group, False)

    def _bad_component(self, dp: Any) -> Exception:
        if not isinstance(dp, (list, tuple, dict)):
            return not_a_datapoint("BatchDataByShape", dp)
        try:
            value = dp[self.idx]
        except (LookupError, TypeError):
            return KeyError(
                f"BatchDataByShape: idx={self.idx!r} is not a component of the datapoint "
                f"({type(dp).__name__} of {len(dp)} components)"
            )
        return TypeError(
            f"BatchDataByShape: component {self.idx!r} must be a numpy array, "
            f"got {type(value).__name__}"
        )


def unbatch(batch: Datapoint) -> List[Datapoint]:
    """Split one batch of :class:`BatchData` back into the datapoints it was made of.

    Datapoint *i* holds element *i* of every component: a numpy scalar or a
    view into the batch's arrays, or the value itself for a list component.
    So ``unbatch`` undoes ``BatchData`` up to types (``np.int32(3) == 3``).

    Args:
        batch: a list of components, or a dict of them, all of the same length.

    Returns:
        A list of datapoints: lists for a list batch, dicts for a dict batch.

    Example:
        >>> unbatch([[1, 2], ["a", "b"]])
        [[1, 'a'], [2, 'b']]
        >>> batch = BatchData.aggregate_batch([{"x": 1.5, "y": "a"}, {"x": 2.5, "y": "b"}])
        >>> batch["x"].dtype, unbatch(batch) == [{"x": 1.5, "y": "a"}, {"x": 2.5, "y": "b"}]
        (dtype('float32'), True)

    Note:
        To turn a dataflow of batches back into one of datapoints, flatten it:
        ``DataFromGenerator(lambda: (dp for b in df for dp in unbatch(b)))``.
    """
    if isinstance(batch, dict):
        keys, components = list(batch), list(batch.values())
    elif isinstance(batch, (list, tuple)):
        keys, components = list(range(len(batch))), list(batch)
    else:
        raise TypeError(f"unbatch needs a list or dict batch, got {type(batch).__name__}")
    sizes = [len(c) for c in components]
    if len(set(sizes)) > 1:
        raise ValueError(
            f"unbatch: the components of the batch have different lengths: {dict(zip(keys, sizes))}"
        )
    rows = zip(*components)
    if isinstance(batch, dict):
        return [dict(zip(keys, row)) for row in rows]
    return [list(row) for row in rows]

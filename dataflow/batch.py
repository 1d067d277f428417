"""Batching: stack consecutive datapoints into one datapoint per batch, and split them back."""

from __future__ import annotations

import itertools
from typing import Any, Dict, Hashable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._checks import check_bool as _check_bool
from ._checks import check_int as _check_int
from ._checks import check_key as _check_key
from .base import DataFlow, Datapoint, ProxyDataFlow, UnknownLengthError

__all__ = ["BatchData", "BatchDataByShape", "unbatch"]

#: ``use_list``: one bool for every component, a list of bools (one per
#: component of list datapoints) or a dict of bools (by key of dict datapoints).
UseList = Union[bool, Sequence[bool], Dict[Hashable, bool]]

_INT32_MIN, _INT32_MAX = int(np.iinfo(np.int32).min), int(np.iinfo(np.int32).max)
_PY_NUMBERS = (bool, int, float)
_LIST_TYPES = {list}  # the only type of the common case, checked as a set per batch
# BatchData copies arrays at least this large into the batch as each datapoint
# arrives, while its data is still in the CPU's cache, instead of stacking them
# all at the end (which reads them back from memory). Smaller arrays are stacked.
_FILL_BYTES = 1 << 14


# ---- one component ---------------------------------------------------------


def _shape_of(value: Any) -> str:
    try:
        return str(np.shape(value))
    except ValueError:  # a ragged nested list
        return f"a ragged {type(value).__name__}"


def _shape_error(owner: str, key: Any, values: Sequence[Any], err: Exception) -> Exception:
    shapes = [_shape_of(v) for v in values]
    other = next((k for k, s in enumerate(shapes) if s != shapes[0]), None)
    if other is None:  # numpy failed for another reason than shapes
        return ValueError(f"{owner}: cannot stack component {key!r} of a batch: {err}")
    return ValueError(
        f"{owner}: component {key!r} has inconsistent shapes within a batch: {shapes[0]} and "
        f"{shapes[other]} (datapoints 0 and {other} of the batch); pad/resize them, or use "
        "use_list=True for this component"
    )


def _mixed_types_error(owner: str, key: Any, values: Sequence[Any]) -> Exception:
    names = ", ".join(sorted({type(v).__name__ for v in values}))
    return TypeError(
        f"{owner}: component {key!r} cannot be stacked into one array: its values within a "
        f"batch are of types {names}; give them one type, or use use_list=True for this component"
    )


def _stack_numbers(owner: str, key: Any, values: Sequence[Any]) -> np.ndarray:
    """Python bools, ints and floats: bool, int32 (int64 when a value needs it), float32."""
    arr = np.array(values)
    kind = arr.dtype.kind
    if kind == "i":
        if arr.itemsize > 4 and min(values) >= _INT32_MIN and max(values) <= _INT32_MAX:
            return arr.astype(np.int32)
        return arr
    if kind in "bu":
        return arr
    # numpy also makes floats of ints that no one integer type holds: refuse that.
    if kind == "f" and any(isinstance(v, float) for v in values):
        return arr.astype(np.float32)
    if all(isinstance(v, int) for v in values):
        raise OverflowError(
            f"{owner}: component {key!r} holds integers that no 64-bit integer type can hold "
            f"together ({min(values)} to {max(values)}); use use_list=True for this component"
        )
    raise _mixed_types_error(owner, key, values)


def _stack(owner: str, key: Any, values: Sequence[Any]) -> Any:
    """Component *key* of a batch, from its *values* (one per datapoint)."""
    first = values[0]
    kind = type(first)
    try:
        if kind is np.ndarray or isinstance(first, (np.ndarray, np.generic)):
            out = np.array(values)  # np.stack, but faster for small arrays
            if out.shape[1:] != first.shape:  # numpy < 1.24 makes ragged object arrays
                raise ValueError("inconsistent shapes")
            return out
        if kind in _PY_NUMBERS or isinstance(first, (int, float)):
            return _stack_numbers(owner, key, values)
        if kind is list or kind is tuple:  # e.g. boxes [x, y, w, h]: stacked
            out = np.array(values)
            if out.dtype == object:  # ragged (numpy < 1.24), or holding None, dicts...
                raise ValueError(
                    "the lists hold values that are not numbers or strings; use "
                    "use_list=True for this component"
                )
            return out
    except ValueError as err:
        raise _shape_error(owner, key, values, err) from None
    if kind is str or kind is bytes:
        if set(map(type, values)) != {kind}:  # numpy would turn other values into strings
            raise _mixed_types_error(owner, key, values)
        nul = "\0" if kind is str else b"\0"
        if any(v.endswith(nul) for v in values):
            raise ValueError(
                f"{owner}: component {key!r} holds {kind.__name__} values ending in NUL, which "
                "a numpy string array would silently strip; use use_list=True for this component"
            )
        return np.array(values)
    return list(values)


# ---- one batch -------------------------------------------------------------


def _keys(keys: Any) -> str:
    return "[" + ", ".join(sorted(map(repr, keys))) + "]"


def _not_a_datapoint(owner: str, dp: Any) -> TypeError:
    return TypeError(f"{owner} needs list or dict datapoints, got {type(dp).__name__}")


def _bad_datapoint(owner: str, first: Any, dp: Any) -> TypeError:
    """The error for *dp* in a batch that starts with *first*: not a datapoint, or of the
    other kind (list vs dict)."""
    if not isinstance(dp, (list, tuple, dict)):
        return _not_a_datapoint(owner, dp)
    return TypeError(
        f"{owner}: the datapoints within a batch must be all lists or all dicts, got a "
        f"{type(first).__name__} and a {type(dp).__name__}"
    )


def _batch_lists(
    owner: str, holder: List[Any], use_list: UseList, filled: Dict[Any, np.ndarray]
) -> List[Any]:
    n = len(holder[0])
    if set(map(type, holder)) != _LIST_TYPES:
        bad = next((dp for dp in holder if not isinstance(dp, (list, tuple))), None)
        if bad is not None:
            raise _bad_datapoint(owner, holder[0], bad)
    if set(map(len, holder)) != {n}:
        other = next(len(dp) for dp in holder if len(dp) != n)
        raise ValueError(
            f"{owner}: datapoints within a batch have different numbers of components: "
            f"{n} and {other}"
        )
    if isinstance(use_list, bool):
        flags: Sequence[bool] = (use_list,) * n
    elif isinstance(use_list, dict):
        raise TypeError(
            f"{owner}: use_list is a dict (by key) but the datapoints are lists; give a list "
            "of bools, one per component"
        )
    elif len(use_list) != n:
        raise ValueError(
            f"{owner}: use_list has {len(use_list)} entries but the datapoints have {n} components"
        )
    else:
        flags = use_list
    return [
        list(values) if as_list else filled[k] if k in filled else _stack(owner, k, values)
        for k, (values, as_list) in enumerate(zip(zip(*holder), flags))
    ]


def _batch_dicts(
    owner: str, holder: List[Any], use_list: UseList, filled: Dict[Any, np.ndarray]
) -> Dict[Any, Any]:
    keys = holder[0].keys()
    for dp in holder:
        if not isinstance(dp, dict):
            raise _bad_datapoint(owner, holder[0], dp)
        if dp.keys() != keys:
            raise ValueError(
                f"{owner}: datapoints within a batch have different keys: "
                f"{_keys(keys)} and {_keys(dp.keys())}"
            )
    if isinstance(use_list, bool):
        flags: Dict[Any, bool] = dict.fromkeys(keys, use_list)
    elif not isinstance(use_list, dict):
        raise TypeError(
            f"{owner}: use_list is a list (by position) but the datapoints are dicts; give a "
            "dict of bools by key"
        )
    elif use_list.keys() - keys:
        raise ValueError(
            f"{owner}: use_list names keys the datapoints do not have: "
            f"{_keys(use_list.keys() - keys)}"
        )
    else:
        flags = use_list
    return {
        key: [dp[key] for dp in holder]
        if flags.get(key, False)
        else filled[key]
        if key in filled
        else _stack(owner, key, [dp[key] for dp in holder])
        for key in keys
    }


def _batch(
    owner: str,
    holder: List[Any],
    use_list: UseList,
    filled: Optional[Dict[Any, np.ndarray]] = None,
) -> Datapoint:
    """One batched datapoint from the non-empty list *holder* of datapoints.

    *filled*: components already stacked by a :class:`_Filler` (by key).
    """
    first = holder[0]
    if isinstance(first, (list, tuple)):
        return _batch_lists(owner, holder, use_list, filled or {})
    if isinstance(first, dict):
        return _batch_dicts(owner, holder, use_list, filled or {})
    raise _not_a_datapoint(owner, first)


def _listed(use_list: UseList, key: Any) -> bool:
    """Whether *use_list* keeps component *key* a list."""
    if isinstance(use_list, bool):
        return use_list
    if isinstance(use_list, dict):
        return bool(use_list.get(key, False))
    return bool(use_list[key])


class _Filler:
    """Stacks the large array components of a batch as its datapoints arrive.

    For each component of the first datapoint that is a numpy array of at
    least ``_FILL_BYTES`` (and not kept a list by *use_list*), it allocates
    the batch's array and copies each datapoint's array into its row at once.
    Anything unusual (a datapoint of another structure, an array of another
    shape or dtype) stops the filling for the batch; :func:`_batch` then
    stacks it the usual way, with the usual errors, so results never differ.
    """

    def __init__(self, batch_size: int, use_list: UseList) -> None:
        self.batch_size = batch_size
        self.use_list = use_list
        self.arrays: Dict[Any, np.ndarray] = {}
        self._structure: Tuple[Any, int, Any] = (None, 0, None)

    def start(self, dp: Any) -> bool:
        """Begin a batch with its first datapoint *dp*; whether it has arrays to fill."""
        arrays: Dict[Any, np.ndarray] = {}
        self.arrays = arrays
        kind, use_list = type(dp), self.use_list
        if use_list is True:
            return False
        if kind is list or kind is tuple:
            if isinstance(use_list, dict) or (use_list is not False and len(use_list) != len(dp)):
                return False  # a use_list that does not fit: _batch says so
            items: Any = enumerate(dp)
        elif kind is dict:
            if not isinstance(use_list, (bool, dict)):
                return False
            items = dp.items()
        else:
            return False  # not a datapoint: _batch says so
        for key, value in items:
            if (
                type(value) is np.ndarray
                and value.nbytes >= _FILL_BYTES
                and value.dtype.kind != "O"
                and (use_list is False or not _listed(use_list, key))
            ):
                out = np.empty((self.batch_size,) + value.shape, value.dtype)
                out[0] = value
                arrays[key] = out
        if arrays:
            self._structure = (kind, len(dp), dp.keys() if kind is dict else None)
        return bool(arrays)

    def add(self, dp: Any, i: int) -> None:
        """Copy the large arrays of *dp*, datapoint *i* of the batch, into the batch (or
        stop filling)."""
        arrays = self.arrays
        if not arrays:
            return
        kind, n, keys = self._structure
        if type(dp) is not kind or len(dp) != n or (keys is not None and dp.keys() != keys):
            self.arrays = {}
            return
        for key, out in arrays.items():
            value = dp[key]
            if (
                type(value) is not np.ndarray
                or value.shape != out.shape[1:]
                or (value.dtype != out.dtype)
            ):
                self.arrays = {}
                return
            out[i] = value

    def take(self) -> Dict[Any, np.ndarray]:
        """The arrays of a full batch (a shorter one is stacked the usual way instead)."""
        arrays, self.arrays = self.arrays, {}
        return arrays


def _check_use_list(use_list: Any) -> UseList:
    if isinstance(use_list, (bool, np.bool_)):
        return bool(use_list)
    if isinstance(use_list, (list, tuple)) and all(isinstance(f, bool) for f in use_list):
        return list(use_list)
    if isinstance(use_list, dict) and all(isinstance(f, bool) for f in use_list.values()):
        return dict(use_list)
    raise TypeError(
        "use_list must be a bool, a list of bools (one per component) or a dict of bools "
        f"(by key), got {use_list!r}"
    )


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
        self.use_list = _check_use_list(use_list)

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

    def __iter__(self) -> Iterator[Datapoint]:
        owner, batch_size, use_list = type(self).__name__, self.batch_size, self.use_list
        it = iter(self.ds)
        holder = list(itertools.islice(it, 1))
        if not holder:
            return
        # Whether to copy large arrays into each batch as they arrive is decided by
        # the first datapoint of the pass; without any, batches are collected at C
        # speed and stacked at the end.
        filler = _Filler(batch_size, use_list)
        if not filler.start(holder[0]):
            holder.extend(itertools.islice(it, batch_size - 1))
            while len(holder) == batch_size:
                yield _batch(owner, holder, use_list)
                holder = list(itertools.islice(it, batch_size))
            if holder and self.remainder:
                yield _batch(owner, holder, use_list)
            return
        while True:
            for dp in itertools.islice(it, batch_size - 1):
                filler.add(dp, len(holder))
                holder.append(dp)
            if len(holder) < batch_size:
                if self.remainder:
                    yield _batch(owner, holder, use_list)
                return
            batch = _batch(owner, holder, use_list, filler.take())
            del holder  # the batch alone holds the datapoints' arrays now
            yield batch
            holder = list(itertools.islice(it, 1))
            if not holder:
                return
            filler.start(holder[0])

    @staticmethod
    def aggregate_batch(data_holder: List[Datapoint], use_list: UseList = False) -> Datapoint:
        """Batch the datapoints of *data_holder* as ``BatchData`` does (tensorpack's helper)."""
        return _batch("BatchData", list(data_holder), _check_use_list(use_list))


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
                yield _batch("BatchDataByShape", group, False)

    def _bad_component(self, dp: Any) -> Exception:
        if not isinstance(dp, (list, tuple, dict)):
            return _not_a_datapoint("BatchDataByShape", dp)
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

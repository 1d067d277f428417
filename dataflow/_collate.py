"""The one collation kernel: stack datapoints into a batch, component by component.

:class:`BatchData`, :class:`BatchDataByShape` and the workers of
:class:`MultiProcessMapAndBatchDataZMQ` all batch through here, so their
batches, dtypes and error messages are the same:

* :func:`collate` -- one batch from a list of datapoints (the stacking
  rules are documented in :class:`BatchData`);
* :class:`Filler` -- copies the large arrays of a batch into place as its
  datapoints arrive, while they are still in the CPU's cache;
* :func:`batches` -- the batches of a stream of datapoints: chunking,
  filling and the remainder;
* :func:`map_and_collate` -- one batch of the results of a function on a
  chunk of datapoints, filled as each result is made;
* :func:`check_use_list` -- the ``use_list`` argument, checked.

Every error names its *owner* (the dataflow's class name).
"""

from __future__ import annotations

import itertools
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Hashable,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np

if TYPE_CHECKING:  # for the annotations only: the kernel does not depend on the dataflows
    from .base import Datapoint

__all__ = [
    "Filler",
    "UseList",
    "batches",
    "check_use_list",
    "collate",
    "map_and_collate",
    "new_array",
    "not_a_datapoint",
    "set_array_maker",
]

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
            if _ARRAY_MAKER is not None and kind is np.ndarray:
                made = _stack_made(values, first)
                if made is not None:
                    return made
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


def not_a_datapoint(owner: str, dp: Any) -> TypeError:
    return TypeError(f"{owner} needs list or dict datapoints, got {type(dp).__name__}")


def _bad_datapoint(owner: str, first: Any, dp: Any) -> TypeError:
    """The error for *dp* in a batch that starts with *first*: not a datapoint, or of the
    other kind (list vs dict)."""
    if not isinstance(dp, (list, tuple, dict)):
        return not_a_datapoint(owner, dp)
    return TypeError(
        f"{owner}: the datapoints within a batch must be all lists or all dicts, got a "
        f"{type(first).__name__} and a {type(dp).__name__}"
    )


def _collate_lists(
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


def _collate_dicts(
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


def collate(
    owner: str,
    holder: List[Any],
    use_list: UseList,
    filled: Optional[Dict[Any, np.ndarray]] = None,
) -> Datapoint:
    """One batched datapoint from the non-empty list *holder* of datapoints.

    *filled*: components already stacked by a :class:`Filler` (by key).
    """
    first = holder[0]
    if isinstance(first, (list, tuple)):
        return _collate_lists(owner, holder, use_list, filled or {})
    if isinstance(first, dict):
        return _collate_dicts(owner, holder, use_list, filled or {})
    raise not_a_datapoint(owner, first)


def _listed(use_list: UseList, key: Any) -> bool:
    """Whether *use_list* keeps component *key* a list."""
    if isinstance(use_list, bool):
        return use_list
    if isinstance(use_list, dict):
        return bool(use_list.get(key, False))
    return bool(use_list[key])


# Makes the arrays that batches are filled into: in a worker process with a shared-
# memory arena, there (the batch is then sent without a copy); else None.
_ARRAY_MAKER: Optional[Callable[[Tuple[int, ...], np.dtype], Optional[np.ndarray]]] = None


def set_array_maker(
    maker: Optional[Callable[[Tuple[int, ...], np.dtype], Optional[np.ndarray]]],
) -> None:
    """Make the batches' large arrays with ``maker(shape, dtype)`` from now on (in
    this process), unless it returns ``None``; ``None``: with ``np.empty``."""
    global _ARRAY_MAKER
    _ARRAY_MAKER = maker


def new_array(shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised array for a batch (see :func:`set_array_maker`)."""
    maker = _ARRAY_MAKER
    if maker is not None:
        out = maker(shape, dtype)
        if out is not None:
            return out
    return np.empty(shape, dtype)


def _stack_made(values: Sequence[Any], first: np.ndarray) -> Optional[np.ndarray]:
    """*values* stacked into an array of the array maker, when they are all arrays of
    one shape and dtype (so the result equals ``np.array(values)``); else ``None``."""
    shape, dtype = first.shape, first.dtype
    if dtype.hasobject:
        return None
    for v in values:
        if type(v) is not np.ndarray or v.shape != shape or v.dtype != dtype:
            return None
    out = new_array((len(values),) + shape, dtype)
    for i, v in enumerate(values):
        out[i] = v
    return out


class Filler:
    """Stacks the large array components of a batch as its datapoints arrive.

    For each component of the first datapoint that is a numpy array of at
    least ``_FILL_BYTES`` (and not kept a list by *use_list*), it allocates
    the batch's array and copies each datapoint's array into its row at once.
    Anything unusual (a datapoint of another structure, an array of another
    shape or dtype) stops the filling for the batch; :func:`collate` then
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
                return False  # a use_list that does not fit: collate says so
            items: Any = enumerate(dp)
        elif kind is dict:
            if not isinstance(use_list, (bool, dict)):
                return False
            items = dp.items()
        else:
            return False  # not a datapoint: collate says so
        for key, value in items:
            if (
                type(value) is np.ndarray
                and value.nbytes >= _FILL_BYTES
                and value.dtype.kind != "O"
                and (use_list is False or not _listed(use_list, key))
            ):
                out = new_array((self.batch_size,) + value.shape, value.dtype)
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


def check_use_list(use_list: Any) -> UseList:
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


# ---- streams of datapoints -------------------------------------------------


def batches(
    owner: str, ds: Iterable[Any], batch_size: int, use_list: UseList, remainder: bool
) -> Iterator[Datapoint]:
    """The batches of every *batch_size* consecutive datapoints of one pass of *ds*,
    and with *remainder* the shorter last one."""
    it = iter(ds)
    holder = list(itertools.islice(it, 1))
    if not holder:
        return
    # Whether to copy large arrays into each batch as they arrive is decided by
    # the first datapoint of the pass; without any, batches are collected at C
    # speed and stacked at the end.
    filler = Filler(batch_size, use_list)
    if not filler.start(holder[0]):
        holder.extend(itertools.islice(it, batch_size - 1))
        while len(holder) == batch_size:
            yield collate(owner, holder, use_list)
            holder = list(itertools.islice(it, batch_size))
        if holder and remainder:
            yield collate(owner, holder, use_list)
        return
    while True:
        for dp in itertools.islice(it, batch_size - 1):
            filler.add(dp, len(holder))
            holder.append(dp)
        if len(holder) < batch_size:
            if remainder:
                yield collate(owner, holder, use_list)
            return
        batch = collate(owner, holder, use_list, filler.take())
        del holder  # the batch alone holds the datapoints' arrays now
        yield batch
        holder = list(itertools.islice(it, 1))
        if not holder:
            return
        filler.start(holder[0])


def map_and_collate(
    owner: str, map_func: Callable[[Any], Any], chunk: List[Any], use_list: UseList
) -> Any:
    """One batch of ``map_func(dp)`` for the datapoints *dp* of *chunk*, dropping
    ``None`` results; ``None`` when every result is ``None``."""
    # Large arrays are copied into the batch as each result is made (see batches).
    filler = Filler(len(chunk), use_list)
    fill = False
    mapped: List[Any] = []
    for dp in chunk:
        result = map_func(dp)
        if result is None:
            continue
        if not mapped:
            fill = filler.start(result)
        elif fill:
            filler.add(result, len(mapped))
        mapped.append(result)
    if not mapped:
        return None
    # A batch that lost datapoints to None results is stacked the usual way.
    filled = filler.take() if fill and len(mapped) == len(chunk) else None
    return collate(owner, mapped, use_list, filled)

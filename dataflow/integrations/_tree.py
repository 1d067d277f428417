"""Walk a datapoint: its lists, tuples and dicts, and what they hold."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = ["is_numeric_array", "map_leaves"]


def map_leaves(dp: Any, fn: Callable[[Any], Any]) -> Any:
    """*dp* with ``fn(x)`` in place of every *x* that is not a list, tuple or dict
    (those are rebuilt, same type, same keys)."""
    if isinstance(dp, list):
        return [map_leaves(x, fn) for x in dp]
    if isinstance(dp, tuple):
        return tuple(map_leaves(x, fn) for x in dp)
    if isinstance(dp, dict):
        return {k: map_leaves(v, fn) for k, v in dp.items()}
    return fn(dp)


def is_numeric_array(x: Any) -> bool:
    """Whether *x* is a numpy array or scalar of a dtype the frameworks have tensors
    for (not strings, objects, dates)."""
    return isinstance(x, (np.ndarray, np.generic)) and np.asarray(x).dtype.kind not in "OUSVMm"

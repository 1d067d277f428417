"""Argument checks shared by every module, with the house error form
``"<name> must be <constraint>, got <value!r>"``."""

from __future__ import annotations

from typing import Any, Callable, Hashable, Optional

import numpy as np


def is_int(value: Any) -> bool:
    """True for Python and numpy integers, but not for bools."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value: Any, minimum: int, constraint: str) -> int:
    """*value* as an int, or the error "<name> must be <constraint>, got <value!r>"."""
    if not is_int(value):
        raise TypeError(f"{name} must be {constraint}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be {constraint}, got {value!r}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """*value* as a bool, or a TypeError for anything that is not a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def check_seed(seed: Any) -> Optional[int]:
    """``None`` or a non-negative int, as the seed of a random generator: a
    TypeError for another type, a ValueError for a negative int."""
    if seed is None:
        return None
    if not is_int(seed):
        raise TypeError(f"seed must be None or a non-negative int, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be None or a non-negative int, got {seed!r}")
    return int(seed)


def check_key(name: str, value: Any) -> Hashable:
    """*value* if it can index a component (an int, or a hashable dict key), else a TypeError."""
    try:
        hash(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an int (list datapoints) or a hashable key (dict datapoints), "
            f"got {value!r}"
        ) from None
    return value


def check_callable(name: str, value: Any) -> Callable[..., Any]:
    """*value* itself if it can be called, else a TypeError."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {value!r}")
    return value


def check_timeout(name: str, value: Any) -> Optional[float]:
    """``None`` or a positive number of seconds (``inf`` means ``None``): a TypeError for
    another type, a ValueError for zero, a negative number or NaN."""
    if value is None:
        return None
    constraint = "None or a positive number of seconds"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be {constraint}, got {value!r}")
    if not value > 0:  # also NaN
        raise ValueError(f"{name} must be {constraint}, got {value!r}")
    return None if value == float("inf") else float(value)


def check_serializer(serializer: Any) -> Any:
    """*serializer* if it is a Serializer or None, else the TypeError saying so."""
    from .serialize import Serializer

    if serializer is not None and not isinstance(serializer, Serializer):
        raise TypeError(
            "serializer must be a Serializer (e.g. MsgpackSerializer()) or None, "
            f"got {serializer!r}"
        )
    return serializer

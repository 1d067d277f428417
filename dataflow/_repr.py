"""Short, one-line renderings of parameter values, for the ``repr`` of dataflows.

A dataflow's ``repr`` shows its key parameters, not its data: a list or an
array is summarized by its length or shape, a function by its name, a long
string (usually a path) by its end. Every rendering is one line and bounded
in length, whatever the value, and never raises.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Iterable, Tuple

import numpy as np

__all__ = ["call_repr", "short_repr"]

#: Longest rendering of a string before its middle is cut (paths keep their end).
_MAX_STR = 48
#: Longest rendering of a whole list, tuple or dict before it is summarized.
_MAX_CONTAINER = 40
#: Most items a list, tuple or dict may have to be shown item by item.
_MAX_ITEMS = 6
#: Longest custom ``repr`` of an object shown as it is.
_MAX_OBJECT = 40

_SCALARS = (bool, int, float, complex, type(None), type(Ellipsis), range)
# Values shown by their content, never by their type name alone.
_PLAIN = (*_SCALARS, np.generic, np.ndarray, str, bytes, list, tuple, dict, os.PathLike)


def short_repr(value: Any, _depth: int = 0) -> str:
    """A one-line rendering of *value*: scalars as ``repr``, containers and
    arrays summarized, functions by name, other objects by a short ``repr`` or
    their type.

    Example:
        >>> short_repr([[0, 1], [2, 3]])
        '[[0, 1], [2, 3]]'
        >>> short_repr(list(range(1000)))
        '<list of 1000>'
        >>> short_repr(np.zeros((1000, 28, 28), np.float32))
        '<ndarray (1000, 28, 28) float32>'
        >>> short_repr(len), short_repr(lambda x: x)
        ('len', '<lambda>')
    """
    try:
        return _render(value, _depth)
    except Exception:  # a value whose own methods fail must not break a repr
        return f"<{type(value).__name__}>"


def _render(value: Any, depth: int) -> str:
    if isinstance(value, _SCALARS):
        return repr(value)
    if isinstance(value, np.generic):
        return repr(value.item())
    if isinstance(value, (str, os.PathLike)):
        return _string(os.fspath(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        size = value.nbytes if isinstance(value, memoryview) else len(value)
        return repr(bytes(value)) if size <= 16 else f"<{type(value).__name__} of {size}>"
    if isinstance(value, np.ndarray):
        return f"<ndarray {value.shape} {value.dtype}>"
    if isinstance(value, np.dtype):
        return repr(value.name)
    if isinstance(value, type):
        return value.__qualname__
    if isinstance(value, functools.partial):
        return f"partial({_render(value.func, depth)})"
    if isinstance(value, (list, tuple)):
        return _container(value, depth, "[]" if isinstance(value, list) else "()", _items(value))
    if isinstance(value, dict):
        return _container(value, depth, "{}", _pairs(value))
    return _object(value)


def _string(text: str) -> str:
    if len(text) <= _MAX_STR:
        return repr(text)
    return repr("..." + text[3 - _MAX_STR :])


def _items(seq: Any) -> Iterable[Tuple[str, Any]]:
    return (("", x) for x in seq)


def _pairs(mapping: Any) -> Iterable[Tuple[str, Any]]:
    return ((f"{short_repr(k, 2)}: ", v) for k, v in mapping.items())


def _container(value: Any, depth: int, brackets: str, items: Iterable[Tuple[str, Any]]) -> str:
    summary = f"<{type(value).__name__} of {len(value)}>"
    if len(value) > _MAX_ITEMS or depth >= 2:
        return summary if value else brackets
    items = list(items)
    parts = [key + short_repr(x, depth + 1) for key, x in items]
    if len(parts) == 1 and brackets == "()":
        parts[0] += ","
    text = brackets[0] + ", ".join(parts) + brackets[1]
    if len(text) <= _MAX_CONTAINER:
        return text
    if brackets != "{}" and not any(_named(x) for _, x in items):
        # objects (e.g. augmentors) whose full reprs are too long: by type name
        text = brackets[0] + ", ".join(type(x).__name__ for _, x in items) + brackets[1]
        if len(text) <= _MAX_CONTAINER:
            return text
    return summary


def _named(value: Any) -> bool:
    """Whether *value* is shown by its content or name rather than its type."""
    return isinstance(value, _PLAIN) or hasattr(value, "__qualname__")


def _object(value: Any) -> str:
    name = getattr(value, "__qualname__", None)
    if callable(value) and isinstance(name, str):  # functions, methods, builtins
        return name.rpartition("<locals>.")[2]  # not where a nested function was defined
    if type(value).__repr__ is not object.__repr__:
        text = repr(value)
        if len(text) <= _MAX_OBJECT and "\n" not in text:
            return text
    return f"<{type(value).__name__}>"


def call_repr(name: str, args: Iterable[Tuple[str, Any]]) -> str:
    """``name(key=value, ...)`` with each value rendered by :func:`short_repr`.

    Example:
        >>> call_repr("BatchData", [("batch_size", 64), ("remainder", False)])
        'BatchData(batch_size=64, remainder=False)'
    """
    return f"{name}({', '.join(f'{key}={short_repr(value)}' for key, value in args)})"


def is_default(value: Any, default: Any) -> bool:
    """Whether *value* is the parameter's *default* (equal and of the same type)."""
    if value is default:
        return True
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:  # arrays and other objects without a plain truth value
        return False

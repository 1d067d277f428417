"""The argument checks and samplers of :class:`dataflow.sources.FakeData`."""

from __future__ import annotations

import functools
import numbers
from typing import Any, Callable, List, Tuple

import numpy as np

from ._checks import is_int as _is_int

__all__ = ["fake_domains", "fake_dtypes", "fake_sampler", "fake_shape"]

_FAKE_DTYPE_KINDS = "biuf"


def fake_shape(k: int, shape: Any) -> Tuple[int, ...]:
    message = f"shapes[{k}] must be a list or tuple of non-negative ints, got {shape!r}"
    if not isinstance(shape, (list, tuple)) or not all(map(_is_int, shape)):
        raise TypeError(message)
    if any(d < 0 for d in shape):
        raise ValueError(message)
    return tuple(int(d) for d in shape)


def fake_dtypes(dtype: Any, n: int) -> List[np.dtype]:
    dtypes = list(dtype) if isinstance(dtype, (list, tuple)) else [dtype] * n
    constraint = f"a numeric dtype (bool, int, uint or float), or a list of {n} of them"
    if len(dtypes) != n:
        raise ValueError(f"dtype must be {constraint}, got {dtype!r}")
    try:
        out = [np.dtype(d) for d in dtypes]
    except TypeError:
        raise TypeError(f"dtype must be {constraint}, got {dtype!r}") from None
    if any(d.kind not in _FAKE_DTYPE_KINDS for d in out):
        raise ValueError(f"dtype must be {constraint}, got {dtype!r}")
    return out


def _is_bounds(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
    )


def fake_domains(domain: Any, dtypes: List[np.dtype]) -> List[Tuple[Any, Any]]:
    n = len(dtypes)
    single = _is_bounds(domain)
    if single:
        domains = [tuple(domain)] * n
    elif isinstance(domain, (list, tuple)) and len(domain) == n and all(map(_is_bounds, domain)):
        domains = [tuple(d) for d in domain]
    else:
        raise ValueError(
            f"domain must be a (low, high) pair of numbers, or a list of {n} such pairs, "
            f"got {domain!r}"
        )
    for k, ((low, high), dtype) in enumerate(zip(domains, dtypes)):
        name, given = ("domain", domain) if single else (f"domain[{k}]", domain[k])
        if not low < high:
            raise ValueError(f"{name} must be a pair (low, high) with low < high, got {given!r}")
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            if not (_is_int(low) and _is_int(high) and info.min <= low and high - 1 <= info.max):
                raise ValueError(
                    f"{name} must be a pair of ints with {info.min} <= low < high <= "
                    f"{info.max + 1} for the {dtype.name} component {k}, got {given!r}"
                )
        elif dtype.kind == "f":
            largest = float(np.finfo(dtype).max)
            if not (-largest <= low and high <= largest):
                raise ValueError(
                    f"{name} must be a pair with {-largest} <= low < high <= {largest} "
                    f"for the {dtype.name} component {k}, got {given!r}"
                )
    return domains


def fake_sampler(
    rng: np.random.RandomState, shape: Tuple[int, ...], dtype: np.dtype, domain: Tuple[Any, Any]
) -> Callable[[], Any]:
    """A function drawing one component from *rng*."""
    low, high = domain
    if dtype.kind == "b":
        return functools.partial(rng.randint, 0, 2, shape, bool)
    if dtype.kind in "iu":
        return functools.partial(rng.randint, low, high, shape, dtype)
    scale = high - low

    def uniform() -> np.ndarray:
        return (rng.random_sample(shape) * scale + low).astype(dtype, copy=False)

    return uniform

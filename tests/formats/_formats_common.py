"""Test helpers shared by the tests of dataflow.formats."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any, List

import numpy as np

from dataflow import DataFlow

#: Every numeric dtype a format should keep exactly.
DTYPES = [
    np.bool_,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
    np.complex64,
    np.complex128,
]

#: Component shapes: 0-d, empty, 1-d, multi-dimensional, empty multi-dimensional.
SHAPES = [(), (0,), (3,), (2, 3), (2, 0, 4), (1, 2, 1, 2)]


def sample(dtype: Any, shape: tuple, seed: int) -> np.ndarray:
    """A deterministic array of *dtype* and *shape* with varied values."""
    rng = np.random.RandomState(seed)
    values = rng.uniform(-100, 100, size=shape)
    if np.dtype(dtype).kind == "c":
        values = values + 1j * rng.uniform(-100, 100, size=shape)
    elif np.dtype(dtype).kind == "u":
        values = np.abs(values)
    return np.asarray(values).astype(dtype)


class Yields(DataFlow):
    """Yields *items* as they are, even those that are not datapoints."""

    def __init__(self, items: List[Any]) -> None:
        self.items = items

    def __iter__(self):
        return iter(self.items)


class RaisingSource(DataFlow):
    """Yields *n* datapoints ``[i]``, then raises ``RuntimeError("source broke")``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n + 1

    def __iter__(self):
        for i in range(self.n):
            yield [np.int64(i)]
        raise RuntimeError("source broke")


class ClosedCounter(DataFlow):
    """Yields ``[0]``, ``[1]``, ``[2]`` and counts reset_state() and close() calls."""

    def __init__(self) -> None:
        self.resets = self.closes = 0

    def reset_state(self) -> None:
        self.resets += 1

    def close(self) -> None:
        self.closes += 1

    def __iter__(self):
        yield from ([i] for i in range(3))


def assert_same_datapoints(got: List[Any], expected: List[Any]) -> None:
    """Each datapoint of *got* has the components of *expected*, with equal
    values, shapes and dtypes (Python scalars compare as numpy would store them)."""
    assert len(got) == len(expected)
    for k, (g, e) in enumerate(zip(got, expected)):
        assert type(g) is type(e), f"datapoint {k}: {type(g).__name__} != {type(e).__name__}"
        keys = list(e) if isinstance(e, dict) else range(len(e))
        assert len(g) == len(e)
        for key in keys:
            a, b = np.asarray(g[key]), np.asarray(e[key])
            assert a.dtype == b.dtype, f"datapoint {k}, component {key}: {a.dtype} != {b.dtype}"
            assert a.shape == b.shape, f"datapoint {k}, component {key}: {a.shape} != {b.shape}"
            assert np.array_equal(a, b), f"datapoint {k}, component {key}: {a!r} != {b!r}"


def one_pass_in_a_forked_child(df: DataFlow) -> List[Any]:
    """Fork a child that resets *df*, reads one pass and sends it back."""
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_send_one_pass, args=(df, sender))
    child.start()
    sender.close()
    try:
        assert receiver.poll(30), "the forked child sent nothing within 30 s"
        return receiver.recv()
    finally:
        receiver.close()
        child.join(10)


def _send_one_pass(df: DataFlow, sender: Any) -> None:
    df.reset_state()
    sender.send(list(df))
    df.close()
    sender.close()


def files_in(directory: Any) -> List[str]:
    """The names in *directory*, hidden ones (temporary files) included."""
    return sorted(os.listdir(directory))

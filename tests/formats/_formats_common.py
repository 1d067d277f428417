"""Test helpers shared by the tests of dataflow.formats."""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
from typing import Any, Callable, Hashable, List, Optional, Tuple

import numpy as np

from dataflow import DataFlow, MultiProcessRunnerZMQ
from dataflow._worker_state import worker_context
from dataflow.worker import WorkerInfo

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


def datapoint_key(dp: Any) -> Hashable:
    """A hashable stand-in for a datapoint (list or dict) of arrays, scalars and bytes."""
    items = sorted(dp.items()) if isinstance(dp, dict) else enumerate(dp)
    return tuple(
        (k, v.dtype.str, v.shape, v.tobytes())
        if isinstance(v, np.ndarray)
        else (k, v if isinstance(v, Hashable) else repr(v))
        for k, v in items
    )


def pass_in_worker(
    df: DataFlow, info: Optional[WorkerInfo], key: Callable[[Any], Hashable] = datapoint_key
) -> Tuple[int, int, List[Hashable]]:
    """``len()`` before ``reset_state()``, ``len()`` after it and one pass of
    *df* (as keys), all as worker *info* sees them (``None``: outside workers)."""
    with worker_context(info) if info is not None else contextlib.nullcontext():
        before = len(df)
        df.reset_state()
        try:
            return before, len(df), [key(dp) for dp in df]
        finally:
            df.close()


def assert_reads_its_shard(
    make: Callable[[bool], DataFlow],
    key: Callable[[Any], Hashable] = datapoint_key,
    num_workers: int = 3,
) -> None:
    """*make(shuffle)* builds a fresh reader of distinct datapoints. Check that
    worker *i* of *num_workers* with ``sharded=True`` reads the contiguous
    block ``[i * n // num_workers, (i + 1) * n // num_workers)`` of the
    unsharded order of the *n* datapoints (in that order, or shuffled among
    themselves), that ``len()`` is the size of its pass, that the shards
    together are every datapoint exactly once, their sizes differing by at
    most one, and that with ``sharded=False`` every worker reads everything."""
    _, size, full = pass_in_worker(make(False), None, key)
    assert size == len(full) == len(set(full)) > num_workers
    for shuffle in (False, True):
        union: collections.Counter = collections.Counter()
        sizes = []
        for i in range(num_workers):
            info = WorkerInfo(i, num_workers, None, True)
            expected = full[i * size // num_workers : (i + 1) * size // num_workers]
            before, after, got = pass_in_worker(make(shuffle), info, key)
            assert before == after == len(got) == len(expected)
            if shuffle:
                assert collections.Counter(got) == collections.Counter(expected)
            else:
                assert got == expected
            union.update(got)
            sizes.append(len(got))
        assert union == collections.Counter(full)
        assert max(sizes) - min(sizes) <= 1
        info = WorkerInfo(1, num_workers, None, False)
        before, after, got = pass_in_worker(make(shuffle), info, key)
        assert before == after == size
        assert (collections.Counter(got) if shuffle else got) == (
            collections.Counter(full) if shuffle else full
        )


def assert_shuffles_within_its_shard(make: Callable[[bool], DataFlow], passes: int = 6) -> None:
    """Passes of the shuffled reader *make(True)* as worker 0 of 2 (``sharded=True``)
    hold the first half of the datapoints of *make(False)* (its block: ``[0, n // 2)``),
    in an order that changes from pass to pass."""
    _, _, full = pass_in_worker(make(False), None)
    df = make(True)
    with worker_context(WorkerInfo(0, 2, None, True)):
        df.reset_state()
        try:
            orders = [tuple(datapoint_key(dp) for dp in df) for _ in range(passes)]
        finally:
            df.close()
    shard = collections.Counter(full[: len(full) // 2])
    assert all(collections.Counter(order) == shard for order in orders)
    assert len(set(orders)) > 1


def assert_runner_yields_each_once(
    ds: DataFlow, expected: List[Any], key: Callable[[Any], Hashable] = datapoint_key
) -> None:
    """Two passes of ``MultiProcessRunnerZMQ(ds, 2, exactly_once=True)`` each
    yield every datapoint of *expected* exactly once."""
    want = collections.Counter(key(dp) for dp in expected)
    assert len(want) == len(expected)
    with MultiProcessRunnerZMQ(ds, num_proc=2, exactly_once=True) as df:
        df.reset_state()
        assert len(df) == len(expected)
        for _ in range(2):
            assert collections.Counter(key(dp) for dp in df) == want

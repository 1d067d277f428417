"""Helpers that write small dataset files in their real formats, for the reader tests."""

from __future__ import annotations

import collections
import os
import sys
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pytest

from dataflow import DataFlow, MultiProcessRunnerZMQ
from dataflow._worker_state import worker_context
from dataflow.worker import WorkerInfo


def write_image(path: str, bgr: Sequence[int], shape: Sequence[int] = (8, 8)) -> None:
    """A flat-colour image of *shape* (h, w) with colour *bgr*, in the format
    of *path*'s extension (flat colours survive JPEG almost exactly)."""
    cv2 = pytest.importorskip("cv2")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = np.empty((*shape, 3), np.uint8)
    image[:] = bgr
    assert cv2.imwrite(path, image)


def write_lines(path: str, lines: Iterable[str]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def serve_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make urllib reach the loopback test server directly, never through a proxy."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


def hide_module(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Make ``import module`` fail, as if it were not installed."""
    monkeypatch.setitem(sys.modules, module, None)


def datapoint_key(dp):
    """A hashable stand-in for a datapoint of arrays and scalars."""
    return tuple(c.tobytes() if isinstance(c, np.ndarray) else c for c in dp)


def assert_shuffle_behaviour(make: Callable[[bool, Optional[int]], DataFlow]) -> None:
    """*make(shuffle, seed)* builds a reader of distinct datapoints: check
    that unshuffled passes repeat the file order, shuffled passes are
    permutations of it that change from pass to pass, and the same seed
    gives the same passes."""

    def passes(df: DataFlow, count: int) -> List[list]:
        df.reset_state()
        return [[datapoint_key(dp) for dp in df] for _ in range(count)]

    first, second = passes(make(False, None), 2)
    assert first == second and len(set(first)) == len(first) > 2
    shuffled = passes(make(True, 3), 6)
    assert all(sorted(p) == sorted(first) for p in shuffled)
    assert len({tuple(p) for p in shuffled}) > 1
    assert passes(make(True, 3), 6) == shuffled


def pass_as_worker(df: DataFlow, info: Optional[WorkerInfo]) -> Tuple[int, int, List[tuple]]:
    """``len()`` before ``reset_state()``, ``len()`` after it and one pass of
    *df* (as :func:`datapoint_key`), as worker *info* sees them (``None``:
    outside workers)."""
    if info is None:
        df.reset_state()
        return len(df), len(df), [datapoint_key(dp) for dp in df]
    with worker_context(info):
        return pass_as_worker(df, None)


def assert_reads_its_shard(make: Callable[[bool], DataFlow], num_workers: int = 3) -> None:
    """*make(shuffle)* builds a fresh reader of distinct datapoints. Check that
    worker *i* of *num_workers* with ``sharded=True`` reads the contiguous
    block ``[i * n // num_workers, (i + 1) * n // num_workers)`` of the
    unshuffled order of the *n* datapoints (in that order, or shuffled among
    themselves), that ``len()`` is the size of its pass, that the shards
    together are every datapoint exactly once, their sizes differing by at
    most one, and that with ``sharded=False`` a worker reads everything."""
    _, size, full = pass_as_worker(make(False), None)
    assert size == len(full) == len(set(full)) > num_workers
    for shuffle in (False, True):
        union: collections.Counter = collections.Counter()
        sizes = []
        for i in range(num_workers):
            info = WorkerInfo(i, num_workers, None, True)
            expected = full[i * size // num_workers : (i + 1) * size // num_workers]
            before, after, got = pass_as_worker(make(shuffle), info)
            assert before == after == len(got) == len(expected)
            if shuffle:
                assert collections.Counter(got) == collections.Counter(expected)
            else:
                assert got == expected
            union.update(got)
            sizes.append(len(got))
        assert union == collections.Counter(full)
        assert max(sizes) - min(sizes) <= 1
        before, after, got = pass_as_worker(make(shuffle), WorkerInfo(1, num_workers, None, False))
        assert before == after == size
        assert collections.Counter(got) == collections.Counter(full)


def assert_runner_yields_each_once(ds: DataFlow, expected: List[list]) -> None:
    """Two passes of ``MultiProcessRunnerZMQ(ds, 2, exactly_once=True)`` each
    yield every datapoint of *expected* exactly once."""
    want = collections.Counter(datapoint_key(dp) for dp in expected)
    assert len(want) == len(expected)
    with MultiProcessRunnerZMQ(ds, num_proc=2, exactly_once=True) as df:
        df.reset_state()
        assert len(df) == len(expected)
        for _ in range(2):
            assert collections.Counter(datapoint_key(dp) for dp in df) == want

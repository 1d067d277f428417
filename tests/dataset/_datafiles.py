"""Helpers that write small dataset files in their real formats, for the reader tests."""

from __future__ import annotations

import os
import sys
from typing import Callable, Iterable, List, Optional, Sequence

import numpy as np
import pytest

from dataflow import DataFlow


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

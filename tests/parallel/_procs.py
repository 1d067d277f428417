"""Helpers of the parallel tests: whether processes are alive, and waiting for them to end."""

from __future__ import annotations

import time
from typing import Iterable, List


def process_alive(pid: int) -> bool:
    """Whether *pid* is a live process (a zombie awaiting its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def survivors(pids: Iterable[int], timeout: float) -> List[int]:
    """The pids of *pids* still alive after waiting up to *timeout* seconds."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if process_alive(pid)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)

"""The one progress bar of the library: tqdm, on standard error, no monitor thread."""

from __future__ import annotations

from typing import List

from tqdm import tqdm


class ProgressBar(tqdm):
    """A tqdm bar that starts no monitor thread.

    tqdm's monitor thread lives until the interpreter exits, so it would show
    up as a thread left behind by whatever dataflow first drew a bar.
    """

    monitor_interval = 0


def bar_classes() -> List[type]:
    """tqdm and every subclass of it loaded so far, tqdm first. tqdm keeps its lock
    on the class that first asked for one, so any of them may hold a lock of its own."""
    found: List[type] = []
    todo: List[type] = [tqdm]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found

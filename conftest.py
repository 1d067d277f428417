"""Test-wide fixtures, for tests/ and for the doctests in dataflow/.

No test may leave a thread or child process behind, and doctests see every
public name of ``dataflow`` without importing it.
"""

from __future__ import annotations

import importlib.util
import os
import signal

import numpy as np
import pytest

import dataflow
from dataflow._progress import bar_classes
from dataflow.parallel._workers import own_progress_lock
from dataflow.testing import live_child_pids, live_threads, wait_for_leftovers

# Sphinx's configuration is not a test module, and its output repeats the pages.
collect_ignore = ["docs/conf.py"]
collect_ignore_glob = ["docs/_build/*"]


@pytest.fixture(autouse=True)
def no_leftover_threads_or_processes():
    """Fail the test if it leaves a thread or child process alive after a grace period,
    or tqdm's lock held."""
    threads_before, children_before = live_threads(), live_child_pids()
    yield
    problems = []
    leftovers = wait_for_leftovers(threads_before, children_before)
    if leftovers:
        for pid in live_child_pids() - children_before:  # do not poison later tests
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        problems.append("test left behind: " + ", ".join(leftovers))
    if not _progress_lock_free():
        problems.append(
            "test left tqdm's lock held: a process forked by the test, or a thread, died "
            "holding it (give such a process a lock of its own: "
            "dataflow.parallel._workers.own_progress_lock)"
        )
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def _progress_lock_free() -> bool:
    """Whether every lock tqdm's bars use is free; if one is not, give tqdm new ones,
    so that the tests after this one do not wait for it forever."""
    parts = {}
    for cls in bar_classes():
        lock = vars(cls).get("_lock")
        for part in getattr(lock, "locks", [] if lock is None else [lock]):
            parts[id(part)] = part
    free = all(_lock_free(part) for part in parts.values())
    if not free:
        own_progress_lock()
    return free


def _lock_free(lock) -> bool:
    """Whether *lock* is held by nobody: not by another thread or process (it cannot be
    taken within 5 s), and not by this thread (a reentrant lock would let it pass)."""
    if hasattr(lock, "_semlock"):  # multiprocessing.RLock
        if lock._semlock._is_mine():
            return False
    elif getattr(lock, "_is_owned", lambda: False)():  # threading.RLock
        return False
    if not lock.acquire(timeout=5):
        return False
    lock.release()
    return True


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace["np"] = np
    for name in dataflow.__all__:
        doctest_namespace[name] = getattr(dataflow, name)


# The doctests of a framework's adapter need that framework; without it they are skipped.
_FRAMEWORK_OF_MODULE = {
    "dataflow.integrations._torch.": "torch",
    "dataflow.integrations._jax.": "jax",
    "dataflow.integrations._tf.": "tensorflow",
}


def pytest_collection_modifyitems(config, items):
    missing = {
        prefix: module
        for prefix, module in _FRAMEWORK_OF_MODULE.items()
        if importlib.util.find_spec(module) is None
    }
    for item in items:
        for prefix, module in missing.items():
            if isinstance(item, pytest.DoctestItem) and item.name.startswith(prefix):
                item.add_marker(pytest.mark.skip(reason=f"needs {module}"))

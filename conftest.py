"""Test-wide fixtures, for tests/ and for the doctests in dataflow/.

No test may leave a thread or child process behind, and doctests see every
public name of ``dataflow`` without importing it.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading

import numpy as np
import pytest

import dataflow
from dataflow.testing import live_child_pids, live_threads, wait_for_leftovers

# Sphinx's configuration is not a test module, and its output repeats the pages.
collect_ignore = ["docs/conf.py"]
collect_ignore_glob = ["docs/_build/*"]


@pytest.fixture(autouse=True)
def no_leftover_threads_or_processes():
    """Fail the test if it leaves a thread or child process alive after a grace period."""
    threads_before, children_before = live_threads(), live_child_pids()
    yield
    leftovers = wait_for_leftovers(threads_before, children_before)
    if leftovers:
        for pid in live_child_pids() - children_before:  # do not poison later tests
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        pytest.fail("test left behind: " + ", ".join(leftovers), pytrace=False)
    if not _progress_lock_free():
        pytest.fail(
            "test left tqdm's lock held: a process forked by the test died holding it (give "
            "such a process a lock of its own: dataflow.parallel._workers.own_progress_lock)",
            pytrace=False,
        )


def _progress_lock_free() -> bool:
    """Whether tqdm's lock can be taken; if not, replace it, so that the tests after
    this one do not wait for it forever."""
    tqdm_std = sys.modules.get("tqdm.std")
    lock = None if tqdm_std is None else getattr(tqdm_std.tqdm, "_lock", None)
    if lock is None:
        return True
    held = []
    for part in getattr(lock, "locks", [lock]):  # tqdm's acquire() does not say if it got them
        if not part.acquire(timeout=5):
            break
        held.append(part)
    for part in reversed(held):
        part.release()
    if len(held) == len(getattr(lock, "locks", [lock])):
        return True
    tqdm_std.TqdmDefaultWriteLock.mp_lock = None
    tqdm_std.tqdm.set_lock(threading.RLock())
    return False


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

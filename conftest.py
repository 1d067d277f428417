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

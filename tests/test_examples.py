"""Every script in examples/ runs to completion in a fresh interpreter."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Scripts whose name starts with "_" are modules the examples import, not examples.
EXAMPLES = sorted(
    path
    for path in glob.glob(os.path.join(ROOT, "examples", "*.py"))
    if not os.path.basename(path).startswith("_")
)
# Examples that need a framework, which may not be installed: (script, module).
NEEDS = {"train_torch_mnist.py": "torch", "train_jax_mnist.py": "jax"}
_EXAMPLE_TIMEOUT_S = 120


def test_there_are_examples():
    assert EXAMPLES, "examples/ has no scripts"


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example_runs(path):
    needed = NEEDS.get(os.path.basename(path))
    if needed is not None:
        pytest.importorskip(needed)
    env = dict(os.environ, DATAFLOW_EXAMPLE_QUICK="1")
    proc = subprocess.run(
        [sys.executable, path],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=_EXAMPLE_TIMEOUT_S,
    )
    assert proc.returncode == 0, f"{path} failed:\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.strip(), f"{path} printed nothing"

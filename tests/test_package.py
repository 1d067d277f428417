"""The package surface: every exported name resolves, subpackages load lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import dataflow


def test_every_name_in_all_resolves():
    missing = [name for name in dataflow.__all__ if not hasattr(dataflow, name)]
    assert not missing


def test_version_is_a_string():
    assert isinstance(dataflow.__version__, str) and dataflow.__version__.count(".") == 2


def test_image_dataflows_are_exported_lazily():
    from dataflow.image import AugmentImageComponent

    assert dataflow.AugmentImageComponent is AugmentImageComponent
    assert "AugmentImageComponent" in dir(dataflow)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'dataflow' has no attribute 'Nope'"):
        dataflow.Nope  # noqa: B018


def test_import_dataflow_loads_no_optional_subpackage():
    code = (
        "import sys, dataflow\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('cv2', 'lmdb', 'h5py', 'scipy')"
        " or m.startswith(('dataflow.dataset', 'dataflow.imgaug', 'dataflow.image'))]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

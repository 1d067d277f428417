"""The package surface: every exported name resolves, subpackages load lazily,
star imports work as in tensorpack, and the distribution metadata is consistent."""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys

import pytest
from packaging.version import Version

import dataflow
from dataflow._optional import import_optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(*parts: str) -> str:
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def distribution_name() -> str:
    match = re.search(r'^\s*name="([^"]+)",$', read("setup.py"), re.M)
    assert match, "setup.py has no name= line"
    return match.group(1)


def run_fresh(code: str) -> None:
    """Run *code* in a fresh interpreter; its assertions fail the test."""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr


OPTIONAL_DEPENDENCIES = ("cv2", "scipy", "lmdb", "h5py")
# Blocks the optional dependencies in a fresh interpreter, as if they were not installed.
BLOCK_OPTIONAL = f"import sys\nfor m in {OPTIONAL_DEPENDENCIES!r}:\n    sys.modules[m] = None\n"
HEAVY = f"[m for m in sys.modules if m.split('.')[0] in {OPTIONAL_DEPENDENCIES!r}]"


class TestExports:
    def test_every_name_in_all_resolves(self):
        missing = [name for name in dataflow.__all__ if not hasattr(dataflow, name)]
        assert not missing

    def test_image_dataflows_are_exported_lazily(self):
        from dataflow.image import AugmentImageComponent

        assert dataflow.AugmentImageComponent is AugmentImageComponent
        assert "AugmentImageComponent" in dir(dataflow)

    def test_unknown_attribute_is_an_attribute_error(self):
        with pytest.raises(AttributeError, match="module 'dataflow' has no attribute 'Nope'"):
            dataflow.Nope  # noqa: B018

    def test_import_dataflow_loads_no_optional_subpackage(self):
        run_fresh(
            "import sys, dataflow\n"
            f"heavy = {HEAVY}\n"
            "heavy += [m for m in sys.modules"
            " if m.startswith(('dataflow.dataset', 'dataflow.imgaug', 'dataflow.image'))]\n"
            "assert not heavy, heavy\n"
        )


class TestStarImport:
    def test_binds_the_subpackages_like_tensorpack(self):
        run_fresh(
            "import numpy as np\n"
            "from dataflow import *\n"
            "import dataflow.dataset, dataflow.imgaug\n"
            "assert imgaug is dataflow.imgaug and dataset is dataflow.dataset\n"
            "img = np.arange(6, dtype=np.uint8).reshape(2, 3)\n"
            "flipped = imgaug.Flip(horiz=True, prob=1.0).augment(img)\n"
            "assert flipped.tolist() == [[2, 1, 0], [5, 4, 3]], flipped\n"
            "assert BatchData and dataset.Mnist\n"
        )

    def test_works_without_the_optional_dependencies(self):
        # imgaug and dataset need numpy alone at import time; OpenCV only on first use.
        run_fresh(
            BLOCK_OPTIONAL + "import numpy as np\n"
            "from dataflow import *\n"
            "img = np.zeros((4, 6), np.uint8)\n"
            "assert imgaug.Flip(horiz=True, prob=1.0).augment(img).shape == (4, 6)\n"
            "try:\n"
            "    imgaug.Resize((2, 3)).augment(img)\n"
            "except ImportError as err:\n"
            "    assert \"pip install 'dataflow-ml[image]'\" in str(err), err\n"
            "else:\n"
            "    raise AssertionError('Resize ran without OpenCV')\n"
            "assert dataset.Mnist\n"
        )

    def test_star_import_loads_no_optional_dependency(self):
        run_fresh(f"import sys\nfrom dataflow import *\nheavy = {HEAVY}\nassert not heavy, heavy\n")


class TestDistribution:
    def test_name_is_not_the_unrelated_pypi_project(self):
        # "dataflow" on PyPI is someone else's project; the import name stays "dataflow".
        assert distribution_name() == "dataflow-ml"

    def test_every_install_command_names_the_distribution(self):
        files = [os.path.join(ROOT, "README.md")]
        files += glob.glob(os.path.join(ROOT, "docs", "*.md"))
        files += glob.glob(os.path.join(ROOT, "dataflow", "**", "*.py"), recursive=True)
        wrong = []
        for path in files:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for match in re.finditer(r"pip install ['\"]?(dataflow[\w.-]*)", text):
                if match.group(1) != distribution_name():
                    wrong.append(f"{os.path.relpath(path, ROOT)}: {match.group(0)}")
        assert not wrong

    def test_missing_extra_error_names_the_distribution(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "h5py", None)
        with pytest.raises(ImportError) as err:
            import_optional("h5py", "HDF5Data")
        expected = "HDF5Data needs the 'h5py' package: pip install 'dataflow-ml[hdf5]'"
        assert str(err.value) == expected


class TestVersion:
    def test_is_a_canonical_pep440_version(self):
        assert str(Version(dataflow.__version__)) == dataflow.__version__

    def test_changelog_has_a_section_for_this_version(self):
        version = Version(dataflow.__version__)
        changelog = read("CHANGELOG.md")
        if version.is_prerelease:
            # Between releases the changes collect under [Unreleased], named for the next version.
            section = changelog.split("\n## [Unreleased]", 1)[1].split("\n## [", 1)[0]
            assert version.base_version in section
        else:
            heading = rf"^## \[{re.escape(str(version))}\] - \d{{4}}-\d{{2}}-\d{{2}}$"
            assert re.search(heading, changelog, re.M)

    def test_deprecation_policy_is_linked_from_readme_and_docs_index(self):
        assert "(docs/releases.md)" in read("README.md")
        assert "(releases.md)" in read("docs", "index.md")

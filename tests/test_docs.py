"""The documentation tells the truth: the API reference is current, the README
lists every building block, and every public class documents an example."""

from __future__ import annotations

import importlib
import inspect
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "docs"))

import gen_api  # noqa: E402


def public_objects():
    for module_name, _ in gen_api.SECTIONS:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            if not name.startswith("_"):
                yield name, getattr(module, name)


def test_api_reference_is_current():
    with open(os.path.join(ROOT, "docs", "api.md"), encoding="utf-8") as f:
        on_disk = f.read()
    assert on_disk == gen_api.render(), "docs/api.md is stale: run python docs/gen_api.py"


def test_readme_table_lists_every_building_block():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    missing = [
        name for name, obj in public_objects() if inspect.isclass(obj) and f"`{name}`" not in readme
    ]
    assert not missing, f"README.md does not mention: {missing}"


@pytest.mark.parametrize("name,obj", [p for p in public_objects() if inspect.isclass(p[1])])
def test_public_class_has_docstring_with_example(name, obj):
    doc = obj.__doc__ or ""
    assert doc.strip(), f"{name} has no docstring"
    if issubclass(obj, BaseException):
        return
    assert "Example" in doc or ">>>" in doc, f"{name}'s docstring has no example"

"""The documentation tells the truth: the API reference documents every public
name, the README lists every building block, and every public class documents
an example."""

from __future__ import annotations

import glob
import importlib
import inspect
import os
import pkgutil
import re

import pytest

import dataflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(ROOT, "docs", "api")

# The modules whose names users import: `dataflow` and the namespaces it does
# not flatten into itself. The README table and the examples cover these.
USER_MODULES = [
    "dataflow",
    "dataflow.formats",
    "dataflow.serialize",
    "dataflow.dataset",
    "dataflow.imgaug",
]

# `.. autoclass:: dataflow.BatchData` and the like, and `.. py:class::` for the
# other names of a class; the reference always writes full dotted paths.
DIRECTIVE = re.compile(
    r"^\s*\.\. (?:auto|py:)(?:class|exception|function|data|attribute)::\s+([\w.]+)", re.M
)


def public_modules():
    """Every module of the package whose dotted name has no private part."""
    yield dataflow
    for info in pkgutil.walk_packages(dataflow.__path__, "dataflow."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            yield importlib.import_module(info.name)


def public_names(module):
    for name in getattr(module, "__all__", []):
        if not name.startswith("_") and not inspect.ismodule(getattr(module, name)):
            yield name, getattr(module, name)


def public_objects():
    for module_name in USER_MODULES:
        yield from public_names(importlib.import_module(module_name))


def resolve(path):
    """The object that a dotted path such as ``dataflow.imgaug.Flip`` names."""
    module_name, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


def documented():
    """(name, object) for every entry of the reference pages in docs/api/."""
    found = set()
    for page in glob.glob(os.path.join(REFERENCE, "*.md")):
        with open(page, encoding="utf-8") as f:
            for path in DIRECTIVE.findall(f.read()):
                found.add((path.rpartition(".")[2], id(resolve(path))))
    return found


def test_api_reference_documents_every_public_name():
    entries = documented()
    missing = [
        f"{module.__name__}.{name}"
        for module in public_modules()
        for name, obj in public_names(module)
        if (name, id(obj)) not in entries
    ]
    assert not missing, f"docs/api/ does not document: {missing}"


def test_api_reference_pages_are_in_its_table_of_contents():
    with open(os.path.join(REFERENCE, "index.md"), encoding="utf-8") as f:
        index = f.read()
    pages = [os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REFERENCE, "*.md"))]
    missing = [p for p in pages if p != "index" and not re.search(rf"^{p}$", index, re.M)]
    assert not missing, f"docs/api/index.md does not list: {missing}"


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

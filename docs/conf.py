"""Sphinx configuration of the documentation site.

Build it with ``sphinx-build -W --keep-going -b html docs docs/_build/html``
(``pip install -e ".[docs]"`` first). The pages are MyST Markdown; the API
reference under ``api/`` is drawn from the docstrings by autodoc, which reads
their Google style through napoleon.
"""

from __future__ import annotations

import os
import re
import sys

from sphinx.util.nodes import make_refnode

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from dataflow import __version__  # noqa: E402

project = "dataflow"
author = "the dataflow authors"
copyright = "the dataflow authors"
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: `{directive}` fences and ::: blocks; headings get anchors for links.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc: members in source order, signatures with their type hints.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": True}
autodoc_preserve_defaults = True
python_use_unqualified_type_names = True

# The docstrings are Google style; `Example:` sections hold doctests.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "furo"
html_title = f"dataflow {release}"

# A docstring does not know on which page it is shown, so its :doc: targets
# name pages from the top of docs/ (:doc:`checkpointing`), and are made
# absolute here for the reference pages in docs/api/.
_DOC_ROLE = re.compile(r":doc:`([^`]*?)`")


def _absolute(match):
    text, target = re.fullmatch(r"(?:(.*?)\s*<)?([^<>]*)>?", match[1]).groups()
    target = target if target.startswith("/") else "/" + target
    return f":doc:`{text} <{target}>`" if text else f":doc:`{target}`"


def _absolute_doc_targets(app, what, name, obj, options, lines):
    lines[:] = [_DOC_ROLE.sub(_absolute, line) for line in lines]


# A docstring names objects as its own module sees them (:class:`WorkerInfo`
# in dataflow/worker.py), while the reference shows each object once, under
# the name users import it by (dataflow.WorkerInfo). A Python reference that
# finds no object of its own name links to the one documented object whose
# name ends the same way, when there is exactly one; otherwise it stays text.
def _link_by_last_names(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    objtypes = set(domain.objtypes_for_role(node["reftype"]) or ())
    parts = node["reftarget"].lstrip(".~").split(".")
    for depth in (2, 1):
        if len(parts) < depth:
            continue
        suffix = "." + ".".join(parts[-depth:])
        found = [
            (name, entry)
            for name, entry in domain.objects.items()
            if name.endswith(suffix) and entry.objtype in objtypes
        ]
        if len(found) == 1:
            name, entry = found[0]
            return make_refnode(
                app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, name
            )
    return None


def setup(app):
    app.connect("autodoc-process-docstring", _absolute_doc_targets)
    app.connect("missing-reference", _link_by_last_names)

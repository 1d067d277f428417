"""Write docs/api.md from the docstrings of every public name.

Run ``python docs/gen_api.py`` after changing a public docstring or
signature; ``tests/test_docs.py`` fails while docs/api.md is stale.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import List

# (module, title) in the order the reference presents them.
SECTIONS = [
    ("dataflow", "Core, sources, wrappers, debugging (`import dataflow`)"),
    ("dataflow.formats", "Storage formats (`dataflow.formats`, also exported by `dataflow`)"),
    ("dataflow.serialize", "Serialization (`dataflow.serialize`)"),
    ("dataflow.dataset", "Standard datasets (`dataflow.dataset`, imported on first use)"),
    ("dataflow.imgaug", "Image augmentors (`dataflow.imgaug`, imported on first use)"),
]

HEADER = """# API reference

Generated from the docstrings by `python docs/gen_api.py`; do not edit by hand.
Start with the [tutorial](tutorial.md) if you are new.
"""


def signature_of(obj: object) -> str:
    try:
        return str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""


def render() -> str:
    out: List[str] = [HEADER]
    documented = set()
    for module_name, title in SECTIONS:
        module = importlib.import_module(module_name)
        names = [n for n in getattr(module, "__all__", []) if not n.startswith("_")]
        names = [n for n in names if id(getattr(module, n)) not in documented]
        # `dataflow` exports its subpackages for star imports; they have their own sections.
        names = [n for n in names if not inspect.ismodule(getattr(module, n))]
        if not names:
            continue
        out.append(f"\n## {title}\n")
        for name in names:
            obj = getattr(module, name)
            documented.add(id(obj))
            kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else "value"
            sig = signature_of(obj) if kind != "value" else ""
            out.append(f"\n### `{name}{sig}`\n\n*{kind}* in `{obj.__module__}`\n")
            doc = inspect.getdoc(obj) or "(no docstring)"
            out.append("\n```text\n" + doc + "\n```\n")
    return "".join(out)


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.dirname(here))
    with open(os.path.join(here, "api.md"), "w", encoding="utf-8") as f:
        f.write(render())


if __name__ == "__main__":
    main()

"""Run every benchmark and print its table: ``python -m benchmarks [name ...]``.

Each benchmark module is ``benchmarks/bench_<name>.py`` with a ``main(argv)``.
Names select a subset (e.g. ``python -m benchmarks chain``); each module
also runs alone with its own options
(``python -m benchmarks.bench_parallel --help``). tensorpack, the PyTorch
DataLoader and grain run side by side with dataflow where they are
importable, and are skipped with a note where they are not.
"""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import sys

import benchmarks


def available() -> list:
    return sorted(
        m.name[len("bench_") :]
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )


def summary(name: str) -> str:
    """The first line of ``bench_<name>``'s docstring, read without importing it."""
    path = os.path.join(os.path.dirname(benchmarks.__file__), f"bench_{name}.py")
    with open(path, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    return doc.splitlines()[0] if doc else ""


def usage() -> str:
    lines = [__doc__ or "", "benchmarks:"]
    lines += [f"  {name:<10} {summary(name)}" for name in available()]
    return "\n".join(lines)


def run(names: list) -> None:
    if {"-h", "--help"} & set(names):
        print(usage())
        return
    unknown = sorted(set(names) - set(available()))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; available: {available()}")
    for name in names or available():
        importlib.import_module(f"benchmarks.bench_{name}").main([])


if __name__ == "__main__":
    run(sys.argv[1:])

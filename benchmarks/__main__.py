"""Run every benchmark and print its table: ``python -m benchmarks [name ...]``.

Each benchmark module is ``benchmarks/bench_<name>.py`` with a ``main(argv)``.
Names select a subset (e.g. ``python -m benchmarks chain``).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import benchmarks


def available() -> list:
    return sorted(
        m.name[len("bench_") :]
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )


def run(names: list) -> None:
    unknown = sorted(set(names) - set(available()))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; available: {available()}")
    for name in names or available():
        importlib.import_module(f"benchmarks.bench_{name}").main([])


if __name__ == "__main__":
    run(sys.argv[1:])

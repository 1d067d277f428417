"""dataflow: fast, reliable, framework-agnostic data pipelines for machine learning.

Build a pipeline from a source and wrappers, call ``reset_state()`` once, and
iterate it in a plain for-loop::

    import dataflow as D

    df = D.DataFromList([[i, i * i] for i in range(1000)], shuffle=True)
    df = D.BatchData(df, 32)
    df.reset_state()
    for xs, ys in df:
        ...

This module only re-exports the public names; each lives in its own module.
The subpackage ``dataflow.dataset`` (standard dataset readers) is imported on
first use, so ``import dataflow`` stays light.
"""

import importlib as _importlib
from typing import Any as _Any

from ._version import __version__
from .base import (
    DataFlow,
    DataFlowReentrantGuard,
    DataFlowTerminated,
    ProxyDataFlow,
    ReentrancyError,
    RNGDataFlow,
    UnknownLengthError,
)

from .sources import DataFromList  # [exports: sources]
# [exports: transforms]
# [exports: batch]
# [exports: combine]
# [exports: buffer]
# [exports: debug]
# [exports: formats]
from .testing import check_dataflow

__all__ = [
    "__version__",
    # base
    "DataFlow",
    "DataFlowReentrantGuard",
    "DataFlowTerminated",
    "ProxyDataFlow",
    "ReentrancyError",
    "RNGDataFlow",
    "UnknownLengthError",
    # sources
    "DataFromList",  # [all: sources]
    # [all: transforms]
    # [all: batch]
    # [all: combine]
    # [all: buffer]
    # [all: debug]
    # [all: formats]
    # testing
    "check_dataflow",
]

_LAZY_SUBMODULES = ("dataset",)


def __getattr__(name: str) -> _Any:
    if name in _LAZY_SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

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
"""

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

# [exports: sources]
# [exports: transforms]
# [exports: batch]
# [exports: combine]
# [exports: buffer]
# [exports: debug]
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
    # [all: sources]
    # [all: transforms]
    # [all: batch]
    # [all: combine]
    # [all: buffer]
    # [all: debug]
    # testing
    "check_dataflow",
]

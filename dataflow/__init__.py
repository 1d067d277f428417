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

from .sources import (
    DataFromGenerator,
    DataFromIterable,
    DataFromList,
    DataFromQueue,
    FakeData,
)
from .transforms import (
    FixedSizeData,
    MapData,
    MapDataComponent,
    RepeatedData,
    RepeatedDataPoint,
    SelectComponent,
)
from .batch import BatchData, BatchDataByShape, unbatch
from .combine import ConcatData, JoinData, RandomChooseData, RandomMixData
from .buffer import CacheData, LocallyShuffleData
from .debug import (
    PrintData,
    TestDataSpeed,
    describe_datapoint,
    measure_throughput,
    throughput_table,
)
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
    "DataFromGenerator",
    "DataFromIterable",
    "DataFromList",
    "DataFromQueue",
    "FakeData",
    # transforms
    "FixedSizeData",
    "MapData",
    "MapDataComponent",
    "RepeatedData",
    "RepeatedDataPoint",
    "SelectComponent",
    # batch
    "BatchData",
    "BatchDataByShape",
    "unbatch",
    # combine
    "ConcatData",
    "JoinData",
    "RandomChooseData",
    "RandomMixData",
    # buffer
    "CacheData",
    "LocallyShuffleData",
    # debug
    "PrintData",
    "TestDataSpeed",
    "describe_datapoint",
    "measure_throughput",
    "throughput_table",
    # testing
    "check_dataflow",
]

_LAZY_SUBMODULES = ("dataset",)


def __getattr__(name: str) -> _Any:
    if name in _LAZY_SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

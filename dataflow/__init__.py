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
The subpackages ``dataflow.dataset`` (standard dataset readers),
``dataflow.imgaug`` (image augmentors) and ``dataflow.image`` (image
dataflows, also reachable as ``dataflow.AugmentImageComponent`` etc.) are
imported on first use, so ``import dataflow`` stays light and needs no OpenCV.
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
    RandomAccessDataFlow,
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
from .formats import (  # [exports: formats]
    CaffeLMDB,
    HDF5Data,
    HDF5Serializer,
    LMDBData,
    LMDBDataDecoder,
    LMDBSerializer,
    NumpySerializer,
    SVMLightData,
)
from .parallel import (
    MultiProcessMapAndBatchData,
    MultiProcessMapAndBatchDataZMQ,
    MultiProcessMapData,
    MultiProcessMapDataZMQ,
    MultiThreadMapData,
    MultiProcessPrefetchData,
    MultiProcessRunner,
    MultiProcessRunnerZMQ,
    MultiThreadPrefetchData,
    MultiThreadRunner,
    PrefetchData,
    PrefetchDataZMQ,
    WorkerDiedError,
    WorkerError,
)
from .remote import RemoteDataZMQ, send_dataflow_zmq
from .graph import describe
from .profiling import profile
from .testing import check_dataflow
from .integrations import to_jax, to_tf, to_torch
from .worker import WorkerInfo, get_worker_info

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
    "RandomAccessDataFlow",
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
    # graph
    "describe",
    # profiling
    "profile",
    # formats
    "CaffeLMDB",
    "HDF5Data",
    "HDF5Serializer",
    "LMDBData",
    "LMDBDataDecoder",
    "LMDBSerializer",
    "NumpySerializer",
    "SVMLightData",  # [all: formats]
    # parallel
    "MultiProcessMapAndBatchData",
    "MultiProcessMapAndBatchDataZMQ",
    "MultiProcessMapData",
    "MultiProcessMapDataZMQ",
    "MultiThreadMapData",
    "MultiProcessPrefetchData",
    "MultiProcessRunner",
    "MultiProcessRunnerZMQ",
    "MultiThreadPrefetchData",
    "MultiThreadRunner",
    "PrefetchData",
    "PrefetchDataZMQ",
    "WorkerDiedError",
    "WorkerError",
    # remote
    "RemoteDataZMQ",
    "send_dataflow_zmq",
    # worker
    "WorkerInfo",
    "get_worker_info",
    # testing
    "check_dataflow",
    # integrations
    "to_jax",
    "to_tf",
    "to_torch",
]

_LAZY_SUBMODULES = ("dataset", "image", "imgaug")
# Names exported here but defined in a subpackage that is imported on first use.
_LAZY_NAMES = {
    "AugmentImageComponent": "image",
    "AugmentImageComponents": "image",
    "AugmentImageCoordinates": "image",
    "ImageFromFile": "image",
}
__all__ += list(_LAZY_NAMES)
# A drop-in for tensorpack's `from tensorpack.dataflow import *`, which also binds
# the subpackages `dataset` and `imgaug`. Both import with numpy alone (OpenCV,
# scipy, lmdb and h5py are imported on first use inside them), so a star import
# works without the optional dependencies; plain `import dataflow` imports neither.
__all__ += ["dataset", "imgaug"]


def __getattr__(name: str) -> _Any:
    if name in _LAZY_SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY_NAMES:
        return getattr(_importlib.import_module(f"{__name__}.{_LAZY_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES) | set(_LAZY_NAMES))

"""Storage formats: write a dataflow to one file and read it back fast.

Optional dependencies (lmdb, h5py, opencv) are imported only when a reader or
writer that needs them is used.
"""

from .lmdb import LMDBData, LMDBDataDecoder, LMDBSerializer  # [exports: formats.lmdb]

from .caffe import CaffeLMDB  # [exports: formats.caffe]
from .numpy import NumpySerializer  # [exports: formats.numpy]
from .hdf5 import HDF5Data, HDF5Serializer  # [exports: formats.hdf5]
from .svmlight import SVMLightData  # [exports: formats.svmlight]

__all__ = [
    # formats.lmdb
    "LMDBData",
    "LMDBDataDecoder",
    "LMDBSerializer",  # [all: formats.lmdb]
    # formats.caffe
    "CaffeLMDB",  # [all: formats.caffe]
    # formats.numpy
    "NumpySerializer",  # [all: formats.numpy]
    # formats.hdf5
    "HDF5Data",
    "HDF5Serializer",  # [all: formats.hdf5]
    # formats.svmlight
    "SVMLightData",  # [all: formats.svmlight]
]

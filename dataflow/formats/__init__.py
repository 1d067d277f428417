"""Storage formats: write a dataflow to one file and read it back fast.

Optional dependencies (lmdb, h5py, opencv) are imported only when a reader or
writer that needs them is used.
"""

# [exports: formats.lmdb]
# [exports: formats.caffe]
# [exports: formats.numpy]
# [exports: formats.hdf5]
# [exports: formats.svmlight]

__all__ = [
    # [all: formats.lmdb]
    # [all: formats.caffe]
    # [all: formats.numpy]
    # [all: formats.hdf5]
    # [all: formats.svmlight]
]

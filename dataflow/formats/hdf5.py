"""HDF5 files: read rows of datasets with HDF5Data, write them with HDF5Serializer.

Needs the optional ``h5py`` package, imported only when a reader or writer is
created, so ``import dataflow`` does not import it.
"""

from __future__ import annotations

from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .._checks import check_seed as _check_seed
from .._optional import import_optional
from ..base import Datapoint
from ..sources import RandomAccessDataFlow
from ._files import atomic_output, check_path, output_path, reading

__all__ = ["HDF5Data", "HDF5Serializer"]

_READ_BLOCK_BYTES = 4 << 20  # sequential passes read blocks of rows of about this size
_WRITE_BLOCK_BYTES = 4 << 20  # the writer buffers about this much before each write
_CHUNK_BYTES = 4 << 10  # written chunks: a random read reads and checksums one chunk
_LISTED_NAMES = 10  # an error about a missing dataset lists at most this many names


def _check_data_paths(data_paths: Any) -> List[str]:
    if not isinstance(data_paths, (list, tuple)) or not all(isinstance(p, str) for p in data_paths):
        raise TypeError(f"data_paths must be a list of str, got {data_paths!r}")
    if not data_paths or len(set(data_paths)) != len(data_paths):
        raise ValueError(f"data_paths must be a non-empty list of distinct str, got {data_paths!r}")
    return list(data_paths)


def _open(h5py: Any, filename: str, user: str) -> Any:
    """Open *filename* for reading, with an error that names it."""
    try:
        return h5py.File(filename, "r")
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{user}: {filename!r} does not exist") from err
    except OSError as err:
        raise OSError(f"{user}: cannot open {filename!r} as an HDF5 file: {err}") from err


def _datasets(
    h5py: Any, f: Any, filename: str, data_paths: List[str], user: str
) -> Tuple[List[Any], int]:
    """The datasets named by *data_paths* in the open file *f*, and their
    common length; an error naming the file and the path if one is missing
    or the lengths differ."""
    datasets = []
    for path in data_paths:
        obj = f.get(path)
        if obj is None:
            names = sorted(f)
            listing = ", ".join(map(repr, names[:_LISTED_NAMES]))
            if len(names) > _LISTED_NAMES:
                listing += ", ..."
            raise ValueError(
                f"{user}: {filename!r} has no dataset {path!r}; its top level holds [{listing}]"
            )
        if not isinstance(obj, h5py.Dataset):
            raise ValueError(f"{user}: {path!r} in {filename!r} is a group, not a dataset")
        if not obj.shape:
            raise ValueError(
                f"{user}: dataset {path!r} in {filename!r} is a scalar; every data path must "
                "name a dataset with one row per datapoint"
            )
        datasets.append(obj)
    lengths = [len(d) for d in datasets]
    if len(set(lengths)) > 1:
        listing = ", ".join(f"{p!r} has {n}" for p, n in zip(data_paths, lengths))
        raise ValueError(
            f"{user}: the datasets of {filename!r} differ in length ({listing} rows); every "
            "data path must name a dataset with one row per datapoint"
        )
    return datasets, lengths[0]


class HDF5Data(RandomAccessDataFlow):
    """Yield ``[row i of each dataset]`` of an HDF5 file, read from disk as needed.

    Each datapoint is a list with one component per data path: row *i* of
    that dataset, an array (or a numpy scalar for a 1-d dataset). ``len()``
    is the common length of the datasets. Rows come in file order, or (with
    *shuffle*) in a new random order every pass. Inside a runner with
    ``exactly_once=True``, each worker reads only its shard (a contiguous
    block of rows, see :meth:`WorkerInfo.shard`, and so only the chunks that
    hold it), shuffled within it, and ``len()`` counts it. The constructor
    opens the file only to check the datasets and their lengths; it is
    opened for reading in ``reset_state()`` and closed by ``close()``, so a
    dataflow not yet reset can be forked or pickled into worker processes.
    Memory held: one block of rows (about 4 MiB) in order, one row shuffled.

    Args:
        filename: an HDF5 file, e.g. made with ``h5py`` or :class:`HDF5Serializer`.
        data_paths: the datasets to zip, one per component, e.g.
            ``["images", "labels"]``; nested paths (``"train/images"``) work.
            All must have the same first dimension.
        shuffle: visit the rows in a new random order every pass.
        seed: seed of the shuffle; ``None`` (the default) draws fresh
            entropy at every ``reset_state()``.

    Raises:
        FileNotFoundError: *filename* does not exist.
        OSError: *filename* is not an HDF5 file, or is truncated or corrupt.
        ValueError: a data path is missing, is a group or a scalar, or the
            datasets differ in length.

    Example:
        >>> import h5py, os, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = os.path.join(tmp.name, "data.h5")
        >>> with h5py.File(path, "w") as f:
        ...     f["images"] = np.zeros((3, 2, 2), np.uint8)
        ...     f["labels"] = np.array([7, 8, 9])
        >>> df = HDF5Data(path, ["images", "labels"], shuffle=False)
        >>> df.reset_state()
        >>> [(image.shape, int(label)) for image, label in df]
        [((2, 2), 7), ((2, 2), 8), ((2, 2), 9)]
        >>> df.close(); tmp.cleanup()

    Note:
        A shuffled pass reads each row with its own HDF5 read, which costs
        microseconds per component (tens of microseconds from checksummed
        files written by :class:`HDF5Serializer`). For small rows that
        dominates; load such data into memory (:class:`NumpySerializer`)
        instead.
    """

    def __init__(
        self,
        filename: Any,
        data_paths: List[str],
        shuffle: bool = True,
        *,
        seed: Optional[int] = None,
    ) -> None:
        self.filename = check_path(filename, "filename")
        self.data_paths = _check_data_paths(data_paths)
        self.shuffle = shuffle
        self.seed = _check_seed(seed)
        h5py = import_optional("h5py", "HDF5Data")
        with _open(h5py, self.filename, "HDF5Data") as f:
            self._size = _datasets(h5py, f, self.filename, self.data_paths, "HDF5Data")[1]
        self._file: Any = None
        self._datasets: Optional[List[Any]] = None
        self._block_rows = 1

    def num_datapoints(self) -> int:
        """The number of rows of each dataset."""
        return self._size

    def reset_state(self) -> None:
        super().reset_state()
        self.close()
        h5py = import_optional("h5py", "HDF5Data")
        f = _open(h5py, self.filename, "HDF5Data")
        try:
            datasets, size = _datasets(h5py, f, self.filename, self.data_paths, "HDF5Data")
            if size != self._size:
                raise RuntimeError(
                    f"HDF5Data: {self.filename!r} changed since this HDF5Data was created: its "
                    f"datasets had {self._size} rows and now have {size}; create a new HDF5Data"
                )
        except BaseException:
            f.close()
            raise
        row_bytes = sum(d.dtype.itemsize * int(np.prod(d.shape[1:])) for d in datasets)
        self._block_rows = max(1, _READ_BLOCK_BYTES // max(1, row_bytes))
        self._file, self._datasets = f, datasets

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._datasets = None

    def get(self, index: int) -> Datapoint:
        """Row *index* of each dataset."""
        return next(iter(self.read([index])))

    def read(self, indices: Sequence[int]) -> Iterator[Datapoint]:
        """The rows *indices*: consecutive ones (a ``range``) a block at a time."""
        datasets = self._datasets
        if datasets is None:
            raise RuntimeError(
                "HDF5Data has no open file: call reset_state() before iterating "
                "(and again after close())"
            )
        return self._read(datasets, indices)

    def _read(self, datasets: List[Any], indices: Sequence[int]) -> Iterator[Datapoint]:
        # A block: up to _block_rows consecutive rows of this worker's shard (a
        # contiguous range of rows, all of them outside exactly-once runners),
        # read with one slice, so a worker reads only the chunks of its shard.
        block = range(0)
        try:
            if not isinstance(indices, range) or indices.step != 1:
                for i in indices:
                    block = range(i, i + 1)
                    yield [d[i] for d in datasets]
            else:
                step = self._block_rows
                for start in range(indices.start, indices.stop, step):
                    block = range(start, min(start + step, indices.stop))
                    for row in zip(*[d[block.start : block.stop] for d in datasets]):
                        yield list(row)
        except OSError as err:
            first, last = block[0], block[-1]
            rows_read = f"row {first}" if first == last else f"rows {first}..{last}"
            raise OSError(f"HDF5Data: cannot read {rows_read} of {self.filename!r}: {err}") from err


class _Writer:
    """Append datapoints to one resizable, checksummed dataset per data path.

    The first datapoint fixes the shape and dtype of every component; rows
    are buffered and written a block at a time.
    """

    def __init__(self, f: Any, data_paths: List[str], user: str) -> None:
        self._file = f
        self._paths = data_paths
        self._user = user
        self._datasets: List[Any] = []
        self._specs: List[Tuple[tuple, np.dtype]] = []
        self._buffers: List[List[np.ndarray]] = [[] for _ in data_paths]
        self._block_rows = 1
        self._written = 0

    def append(self, k: int, dp: Any) -> None:
        user, paths = self._user, self._paths
        if not isinstance(dp, list):
            raise TypeError(
                f"{user} needs list datapoints (one component per data path), "
                f"got {type(dp).__name__} (datapoint {k})"
            )
        if len(dp) != len(paths):
            raise ValueError(
                f"{user}: datapoint {k} has {len(dp)} components, but {len(paths)} data paths "
                f"were given: {paths}"
            )
        arrays = [np.asarray(c) for c in dp]
        if not self._datasets:
            self._create(arrays)
        for j, (array, (shape, dtype)) in enumerate(zip(arrays, self._specs)):
            if array.shape != shape or array.dtype != dtype:
                raise ValueError(
                    f"{user}: component {j} ({paths[j]!r}) of datapoint {k} has shape "
                    f"{array.shape} and dtype {array.dtype}, but datapoint 0 had shape {shape} "
                    f"and dtype {dtype}; an HDF5 dataset has one row shape and one dtype"
                )
            self._buffers[j].append(array)
        if len(self._buffers[0]) >= self._block_rows:
            self.flush()

    def _create(self, arrays: List[np.ndarray]) -> None:
        for j, (path, array) in enumerate(zip(self._paths, arrays)):
            rows = max(1, _CHUNK_BYTES // max(1, array.nbytes))
            try:
                dataset = self._file.create_dataset(
                    path,
                    shape=(0, *array.shape),
                    maxshape=(None, *(n or None for n in array.shape)),
                    chunks=(rows, *(max(1, n) for n in array.shape)),
                    dtype=array.dtype,
                    fletcher32=True,
                )
            except (TypeError, ValueError) as err:
                raise type(err)(
                    f"{self._user}: cannot create dataset {path!r} for component {j} "
                    f"(shape {array.shape}, dtype {array.dtype}): {err}"
                ) from err
            self._datasets.append(dataset)
            self._specs.append((array.shape, array.dtype))
        row_bytes = sum(a.nbytes for a in arrays)
        self._block_rows = max(1, _WRITE_BLOCK_BYTES // max(1, row_bytes))

    def flush(self) -> None:
        n = len(self._buffers[0])
        if n == 0:
            return
        end = self._written + n
        for dataset, buffer in zip(self._datasets, self._buffers):
            dataset.resize(end, axis=0)
            dataset[self._written : end] = np.stack(buffer)
            buffer.clear()
        self._written = end

    def finish(self) -> None:
        """Write what is buffered; without any datapoint, create empty datasets."""
        self.flush()
        if not self._datasets:
            for path in self._paths:
                self._file.create_dataset(path, shape=(0,), dtype=np.float64)


class HDF5Serializer:
    """Write a dataflow to datasets of an HDF5 file; read it back as :class:`HDF5Data`.

    Component *j* of every datapoint becomes row *i* of the dataset
    ``data_paths[j]``, so each component must keep one shape and one dtype
    (bool, ints, uints, floats including float16, complex, or fixed-length
    bytes; ``str`` and ``object`` are refused). Datapoints must be lists.
    The datasets are chunked and checksummed (Fletcher-32), so a corrupted
    file gives an error, not wrong data. An empty dataflow gives empty
    float64 datasets.

    Example:
        >>> import os, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = os.path.join(tmp.name, "squares.h5")
        >>> src = DataFromList([[i, np.full(2, i * i)] for i in range(3)], shuffle=False)
        >>> HDF5Serializer.save(src, path, ["x", "y"], progress=False)
        >>> df = HDF5Serializer.load(path, ["x", "y"], shuffle=False)
        >>> df.reset_state()
        >>> [[int(x), y.tolist()] for x, y in df]
        [[0, [0, 0]], [1, [1, 1]], [2, [4, 4]]]
        >>> df.close(); tmp.cleanup()
    """

    @staticmethod
    def save(
        df: Any,
        path: Any,
        data_paths: List[str],
        *,
        overwrite: bool = False,
        progress: bool = True,
    ) -> None:
        """Write every datapoint of one pass of *df* to the HDF5 file *path*.

        Calls ``df.reset_state()`` first and ``df.close()`` at the end.
        Datapoints are written as they come, a block at a time, so memory
        stays small. The file appears only when it is complete: it is
        written under a temporary name in the same directory and renamed at
        the end, and the temporary file is deleted if *df* (or the writing)
        raises.

        Args:
            df: the dataflow to write, not yet reset.
            path: the file to write (by convention ending in ``.h5``).
            data_paths: one dataset path per component, e.g. ``["images", "labels"]``.
            overwrite: replace *path* if it exists; by default an existing
                file is an error.
            progress: show a tqdm progress bar on stderr while writing.

        Raises:
            FileExistsError: *path* exists and *overwrite* is false.
            TypeError: a datapoint is not a list, or a dtype cannot be stored.
            ValueError: a datapoint does not have one component per data
                path, or a component changes shape or dtype.
        """
        user = "HDF5Serializer.save"
        data_paths = _check_data_paths(data_paths)
        path = output_path(path, overwrite, user)
        h5py = import_optional("h5py", "HDF5Serializer")
        with reading(df, user, progress) as datapoints, atomic_output(path) as tmp:
            with h5py.File(tmp, "w-") as f:
                writer = _Writer(f, data_paths, user)
                for k, dp in enumerate(datapoints):
                    writer.append(k, dp)
                writer.finish()

    @staticmethod
    def load(
        path: Any, data_paths: List[str], shuffle: bool = True, *, seed: Optional[int] = None
    ) -> HDF5Data:
        """Read a file written by :meth:`save`; the same as :class:`HDF5Data`.

        Inside a runner with ``exactly_once=True``, each worker reads only its
        shard of the rows.
        """
        return HDF5Data(path, data_paths, shuffle, seed=seed)

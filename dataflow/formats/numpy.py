"""NumpySerializer: a whole dataflow in one ``.npz`` file, read without pickle."""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from typing import Any, Iterable, List, Optional, Tuple

import numpy as np

from .._checks import check_seed as _check_seed
from ..base import RNGDataFlow
from ._files import ColumnsData, atomic_output, check_path, output_path, reading

__all__ = ["NumpySerializer"]

_FORMAT = "dataflow.NumpySerializer"
_VERSION = 1
_META = "__dataflow__"
_STRING_KINDS = "SU"  # bytes and str: lengths may differ between datapoints
# What zipfile and the .npy header parser raise on a corrupt file.
_READ_ERRORS = (
    ValueError,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
    zipfile.BadZipFile,
    zlib.error,
)
_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


class NumpySerializer:
    """Write a dataflow to one ``.npz`` file; read it back as a dataflow.

    The file is a standard, uncompressed numpy ``.npz`` archive that
    ``np.load`` opens with ``allow_pickle=False``; no pickle is written or
    read, and every entry's CRC-32 is checked on loading. Component *j*
    of every datapoint is stored in the entry ``c<j>``:

    * when all datapoints agree on its shape, as one stacked array of shape
      ``(len, *shape)``;
    * otherwise (a *ragged* component, e.g. images of different sizes), as
      the 1-d concatenation of the flattened components, plus an entry
      ``c<j>_shapes`` holding each datapoint's shape in an int64 array of
      shape ``(len, ndim)``. The number of dimensions must agree.

    Each component must keep one dtype across datapoints, except that
    ``str`` and ``bytes`` components may differ in length (they are stored
    padded to the longest, so trailing ``"\\0"`` characters are lost).
    Python scalars are stored as numpy scalars (an ``int`` as ``int64``).
    Components whose dtype is ``object`` (``None``, nested lists of mixed
    types, arbitrary objects) cannot be stored without pickle and are
    refused. Datapoints may be lists or dicts with ``str`` keys (all alike);
    the entry ``__dataflow__`` records the keys, the length and the layout.

    Example:
        >>> import os, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = os.path.join(tmp.name, "squares.npz")
        >>> src = DataFromList([[i, np.full(2, i * i)] for i in range(3)], shuffle=False)
        >>> NumpySerializer.save(src, path, progress=False)
        >>> df = NumpySerializer.load(path, shuffle=False)
        >>> df.reset_state()
        >>> [[int(x), y.tolist()] for x, y in df]
        [[0, [0, 0]], [1, [1, 1]], [2, [4, 4]]]
        >>> tmp.cleanup()

    Note:
        The whole dataflow is held in memory: by ``save()`` while it writes,
        and by the dataflow ``load()`` returns. Use ``LMDBSerializer`` for
        data larger than memory.
    """

    @staticmethod
    def save(df: Any, path: Any, *, overwrite: bool = False, progress: bool = True) -> None:
        """Write every datapoint of one pass of *df* to the ``.npz`` file *path*.

        Calls ``df.reset_state()`` first and ``df.close()`` at the end. The
        file appears only when it is complete: it is written under a
        temporary name in the same directory and renamed at the end, and the
        temporary file is deleted if *df* (or the writing) raises.

        Args:
            df: the dataflow to write, not yet reset.
            path: the file to write (by convention ending in ``.npz``).
            overwrite: replace *path* if it exists; by default an existing
                file is an error.
            progress: show a tqdm progress bar on stderr while reading *df*.

        Raises:
            FileExistsError: *path* exists and *overwrite* is false.
            TypeError: a datapoint is not a list or dict, a dict key is not a
                ``str``, or a component has dtype ``object`` or changes dtype.
            ValueError: datapoints differ in structure, or a component
                changes its number of dimensions.
        """
        user = "NumpySerializer.save"
        path = output_path(path, overwrite, user)
        keys, columns, size = _collect(df, user, progress)
        plans = [_plan(column, _component_name(j, keys), user) for j, column in enumerate(columns)]
        meta = {
            "format": _FORMAT,
            "version": _VERSION,
            "size": size,
            "keys": keys,
            "ragged": [shape is None for _, shape in plans],
        }
        with atomic_output(path) as tmp, zipfile.ZipFile(tmp, "x", allowZip64=True) as zf:
            for j, (column, (dtype, shape)) in enumerate(zip(columns, plans)):
                if shape is not None:
                    _write_entry(zf, f"c{j}", dtype, (size, *shape), column)
                    continue
                shapes = np.array([a.shape for a in column], dtype=np.int64)
                _write_entry(zf, f"c{j}_shapes", shapes.dtype, shapes.shape, [shapes])
                total = int(shapes.prod(axis=1).sum())
                _write_entry(zf, f"c{j}", dtype, (total,), column)
            meta_array = np.array(json.dumps(meta))
            _write_entry(zf, _META, meta_array.dtype, (), [meta_array])

    @staticmethod
    def load(path: Any, shuffle: bool = True, *, seed: Optional[int] = None) -> RNGDataFlow:
        """Read a file written by :meth:`save` into memory; return a dataflow over it.

        The returned dataflow yields the datapoints in the order they were
        written, or (with *shuffle*) in a new random order every pass, and
        its ``len()`` is exact. Each datapoint is a new list (or dict), but
        its arrays are read-only views into the loaded arrays, shared by
        all passes and by forked worker processes; copy an array before
        modifying it in place. Inside a runner with ``exactly_once=True``,
        each worker reads only its shard (a contiguous block of the
        datapoints, see :meth:`WorkerInfo.shard`), shuffled within it, and
        ``len()`` counts it.

        Args:
            path: a file written by :meth:`save`.
            shuffle: visit the datapoints in a new random order every pass.
            seed: seed of the shuffle; ``None`` (the default) draws fresh
                entropy at every ``reset_state()``.

        Raises:
            ValueError: the file is not a complete NumpySerializer file (it
                is truncated, corrupt, or was written by something else);
                the message names the file and the entry that failed.
        """
        path = check_path(path, "path")
        seed = _check_seed(seed)
        keys, columns, size = _read(path)
        return ColumnsData(columns, keys, size, shuffle, seed)


# ---- writing -----------------------------------------------------------------


def _component_name(j: int, keys: Optional[List[str]]) -> str:
    return f"component {j}" if keys is None else f"component {keys[j]!r}"


def _collect(
    df: Any, user: str, progress: bool
) -> Tuple[Optional[List[str]], List[List[np.ndarray]], int]:
    """Read one pass of *df* into one list of arrays per component."""
    keys: Optional[List[str]] = None
    columns: List[List[np.ndarray]] = []
    size = 0
    with reading(df, user, progress) as datapoints:
        for k, dp in enumerate(datapoints):
            if k == 0:
                keys = _keys_of(dp, user)
                columns = [[] for _ in dp]
            for j, value in enumerate(_components(dp, k, keys, len(columns), user)):
                columns[j].append(_to_array(value, j, k, keys, user))
            size = k + 1
    return keys, columns, size


def _to_array(value: Any, j: int, k: int, keys: Optional[List[str]], user: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.hasobject:
        raise TypeError(
            f"{user} cannot store {_component_name(j, keys)} of datapoint {k} without pickle: "
            f"it has dtype object ({type(value).__name__}); give each component as a bool, "
            "number, str, bytes or a regular array of them"
        )
    return array


def _keys_of(dp: Any, user: str) -> Optional[List[str]]:
    """The dict keys of the first datapoint, or ``None`` for a list."""
    if isinstance(dp, list):
        return None
    if not isinstance(dp, dict):
        raise TypeError(f"{user} needs list or dict datapoints, got {type(dp).__name__}")
    for key in dp:
        if not isinstance(key, str):
            raise TypeError(f"{user} needs str dict keys, got {key!r}")
    return list(dp)


def _components(dp: Any, k: int, keys: Optional[List[str]], n: int, user: str) -> List[Any]:
    """The *n* components of datapoint *k*, checked against the first datapoint."""
    if keys is None:
        if not isinstance(dp, list):
            raise TypeError(
                f"{user}: datapoint {k} is a {type(dp).__name__}, but datapoint 0 is a list"
            )
        if len(dp) != n:
            raise ValueError(
                f"{user}: datapoint {k} has {len(dp)} components, but datapoint 0 has {n}; "
                "every datapoint needs the same number of components"
            )
        return dp
    if not isinstance(dp, dict):
        raise TypeError(
            f"{user}: datapoint {k} is a {type(dp).__name__}, but datapoint 0 is a dict"
        )
    if len(dp) != len(keys) or not all(key in dp for key in keys):
        raise ValueError(
            f"{user}: datapoint {k} has keys {list(dp)}, but datapoint 0 has {keys}; "
            "every datapoint needs the same keys"
        )
    return [dp[key] for key in keys]


def _plan(column: List[np.ndarray], name: str, user: str) -> Tuple[np.dtype, Optional[tuple]]:
    """The dtype to store *column* in, and its shape (``None`` if ragged)."""
    first = column[0]
    dtype, shape = first.dtype, first.shape
    ragged = False
    for k, array in enumerate(column):
        if array.dtype != first.dtype:
            if array.dtype.kind != first.dtype.kind or first.dtype.kind not in _STRING_KINDS:
                raise TypeError(
                    f"{user}: {name} has dtype {first.dtype} in datapoint 0 but {array.dtype} in "
                    f"datapoint {k}; give each component one dtype in every datapoint"
                )
            dtype = max(dtype, array.dtype, key=lambda d: d.itemsize)
        if array.shape != shape:
            if array.ndim != first.ndim:
                raise ValueError(
                    f"{user}: {name} has shape {shape} in datapoint 0 but {array.shape} in "
                    f"datapoint {k}; shapes may differ in size but not in number of dimensions"
                )
            ragged = True
    return dtype, None if ragged else shape


def _write_entry(
    zf: zipfile.ZipFile, name: str, dtype: np.dtype, shape: tuple, parts: Iterable[np.ndarray]
) -> None:
    """Write the ``.npy`` entry *name*: a header for *dtype* and *shape*, then
    the bytes of *parts* in C order, one after the other."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_2_0(f, header)
        for part in parts:
            f.write(np.asarray(part, dtype=dtype).tobytes())


# ---- reading -----------------------------------------------------------------


def _read(path: str) -> Tuple[Optional[List[str]], List[Any], int]:
    """The keys, columns and length of the file *path*."""
    user = "NumpySerializer.load"
    with open(path, "rb") as f:
        try:
            zf = zipfile.ZipFile(f)
        except _READ_ERRORS as err:
            raise ValueError(f"{user}: {path!r} is not a NumpySerializer file: {err}") from err
        keys, ragged, size = _parse_meta(_entry(zf, _META, path), path)
        columns: List[Any] = []
        for j, is_ragged in enumerate(ragged):
            name = f"c{j}"
            values = _entry(zf, name, path)
            if is_ragged:
                shapes = _entry(zf, f"{name}_shapes", path)
                columns.append(_split(values, shapes, size, name, path))
            elif values.ndim == 0 or len(values) != size:
                rows = "a 0-d array" if values.ndim == 0 else f"{len(values)} rows"
                raise ValueError(
                    f"{user}: entry {name!r} of {path!r} has {rows}, but the file holds {size} "
                    "datapoints; the file is corrupt"
                )
            else:
                columns.append(values)
    return keys, columns, size


def _entry(zf: zipfile.ZipFile, name: str, path: str) -> np.ndarray:
    """The ``.npy`` entry *name* of the archive as a read-only array.

    Checks, before reading the data, that the header's shape and dtype
    account for exactly the bytes stored, and reads the entry to its end so
    that its CRC-32 is verified: a corrupt entry raises, never gives wrong
    values.
    """
    user = "NumpySerializer.load"
    try:
        info = zf.getinfo(f"{name}.npy")
    except KeyError:
        raise ValueError(
            f"{user}: {path!r} has no entry {name!r}; the file is incomplete or was not written "
            "by NumpySerializer.save"
        ) from None
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            read_header = _HEADER_READERS.get(version)
            if read_header is None:
                raise ValueError(f".npy format version {version} is not supported")
            shape, fortran_order, dtype = read_header(f)
            if dtype.hasobject:
                raise ValueError(f"dtype {dtype} holds Python objects")
            count = math.prod(shape)
            stored = info.file_size - f.tell()
            if stored != count * dtype.itemsize:
                raise ValueError(
                    f"the header promises shape {shape} of {dtype} but {stored} bytes follow"
                )
            data = f.read()
    except _READ_ERRORS as err:
        raise ValueError(f"{user}: cannot read entry {name!r} of {path!r}: {err}") from err
    array = np.frombuffer(data, dtype, count).reshape(shape, order="F" if fortran_order else "C")
    array.flags.writeable = False
    return array


def _parse_meta(array: np.ndarray, path: str) -> Tuple[Optional[List[str]], List[bool], int]:
    user = "NumpySerializer.load"
    meta: Any = None
    if array.dtype.kind == "U" and array.shape == ():
        try:
            meta = json.loads(array.item())
        except ValueError:
            pass
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(
            f"{user}: {path!r} was not written by NumpySerializer.save: its {_META!r} entry "
            "is not what save() writes"
        )
    if meta.get("version") != _VERSION:
        raise ValueError(
            f"{user}: {path!r} has format version {meta.get('version')!r}, but this version of "
            f"dataflow reads version {_VERSION}"
        )
    size: Any = meta.get("size")
    keys: Any = meta.get("keys")
    ragged: Any = meta.get("ragged")
    valid = (
        type(size) is int
        and size >= 0
        and isinstance(ragged, list)
        and all(type(r) is bool for r in ragged)
        and (keys is None or isinstance(keys, list) and len(keys) == len(ragged))
        and (keys is None or all(isinstance(key, str) for key in keys))
    )
    if not valid:
        raise ValueError(f"{user}: {path!r} has a malformed {_META!r} entry: {meta!r}")
    return keys, ragged, size


def _split(values: np.ndarray, shapes: np.ndarray, size: int, name: str, path: str) -> List[Any]:
    """The components of a ragged entry: views into *values*, one per datapoint."""
    problem: Optional[str]
    if shapes.ndim != 2 or shapes.dtype.kind not in "iu" or len(shapes) != size:
        problem = f"its shapes have shape {shapes.shape} and dtype {shapes.dtype}"
    elif values.ndim != 1 or (shapes < 0).any():
        problem = "its values are not 1-d or a shape is negative"
    else:
        ends = np.cumsum(shapes.prod(axis=1)).tolist()
        starts = [0, *ends[:-1]]
        total = ends[-1] if ends else 0
        problem = None if total == values.size else f"{values.size} values, shapes need {total}"
    if problem is not None:
        raise ValueError(
            f"NumpySerializer.load: ragged entry {name!r} of {path!r} is corrupt ({problem}); "
            f"the file holds {size} datapoints"
        )
    return [
        values[start:end].reshape(shape) for start, end, shape in zip(starts, ends, shapes.tolist())
    ]

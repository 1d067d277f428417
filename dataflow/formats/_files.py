"""What the file formats share: safe output files, reading the source with a
progress bar, and an in-memory reader of columns.

* :func:`check_path` -- validate a path argument.
* :func:`output_path` -- refuse to overwrite an existing file unless told to.
* :func:`atomic_output` -- write to a temporary name beside the target and
  rename it at the end, so a failed write leaves nothing behind (and a
  killed one leaves a file that the next write in the directory deletes).
* :func:`reading` -- reset a source, iterate it under a progress bar, close it.
* :class:`ColumnsData` -- yield datapoints from per-component columns held in
  memory, shuffled anew every pass.
* :func:`shard_order` -- the indices a reader visits in one pass: this
  worker's shard, in order or shuffled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import zlib
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

from .._checks import check_seed as _check_seed
from .._compact import COMPACT_MIN_ITEMS, CompactList, pack_before_fork, packed
from .._progress import ProgressBar as _ProgressBar
from ..base import DataFlow, Datapoint, UnknownLengthError
from ..sources import RandomAccessDataFlow
from ..worker import shard_order as _worker_shard_order

__all__ = [
    "ColumnsData",
    "atomic_output",
    "check_path",
    "output_path",
    "reading",
    "shard_order",
]

_log = logging.getLogger(__name__)


def check_path(path: Any, name: str) -> str:
    """*path* as a ``str``, or a ``TypeError`` when it is not a path."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {path!r}")
    return os.fspath(path)


def output_path(path: Any, overwrite: bool, user: str) -> str:
    """Check that *user* may write the file *path*; return it as a ``str``."""
    path = check_path(path, "path")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{user}: {path!r} is a directory; give the path of a file")
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise FileNotFoundError(f"{user}: the directory of {path!r} does not exist")
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{user}: {path!r} already exists; pass overwrite=True to replace it")
    return path


# The temporary files of atomic_output: ".<target>.<host>-<pid>-<start>-<random>.tmp".
_TMP_NAME = re.compile(
    r"\.(?P<target>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-(?P<start>\d+)-[0-9a-f]{8}\.tmp"
)


def _host_tag() -> str:
    """8 hex digits that stand for this machine (writers on others may share the directory)."""
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


def _start_time(pid: int) -> Optional[int]:
    """When process *pid* started (clock ticks after boot), ``0`` where the
    system does not say, ``None`` if there is no such process (or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return None if fields[0] in (b"Z", b"X") else int(fields[19])  # a zombie is dead
    except FileNotFoundError:
        return None  # Linux, and no such process
    except (OSError, IndexError, ValueError):
        pass  # no /proc here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # a process of another user
    return 0


def _remove_leftovers(directory: str) -> None:
    """Delete the temporary files in *directory* whose writers died before
    finishing: written on this machine, by a process that no longer exists
    (no process has its pid, or one that started at another time)."""
    host = _host_tag()
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        match = _TMP_NAME.fullmatch(name)
        if match is None or match["host"] != host:
            continue
        pid, start = int(match["pid"]), int(match["start"])
        now = _start_time(pid)
        if now is not None and (now == start or now == 0 or start == 0):
            continue  # the writer may be alive
        path = os.path.join(directory, name)
        try:
            size = os.stat(path).st_size
            os.remove(path)
        except FileNotFoundError:
            continue  # another writer removed it first
        except OSError as err:
            _log.warning("could not remove %s, left behind by a dead writer: %s", path, err)
            continue
        _log.warning(
            "removed %s (%d bytes), the temporary file of a write of %s that process %d "
            "began and never finished (the process died)",
            path,
            size,
            match["target"],
            pid,
        )


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary file name in the directory of *path*; rename it to
    *path* when the block succeeds, delete it when the block raises.

    The temporary name is hidden (a leading dot) and unique, so concurrent
    writers and readers of *path* never see a half-written file. It names
    the machine, the writing process and the time that process started, so
    that a later call in the same directory deletes (and logs a warning
    about) the temporary files of writers that were killed before they could
    clean up; those of live writers stay. The file itself does not exist
    yet: the block creates it.
    """
    directory, name = os.path.split(os.path.abspath(path))
    _remove_leftovers(directory)
    pid = os.getpid()
    tag = f"{_host_tag()}-{pid}-{_start_time(pid) or 0}-{secrets.token_hex(4)}"
    tmp = os.path.join(directory, f".{name}.{tag}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def shard_order(n: int, rng: Optional[np.random.RandomState]) -> Sequence[int]:
    """The indices out of ``range(n)`` that one pass visits here, in order or shuffled.

    :func:`dataflow.worker.shard_order` for the readers. Without *rng* they
    come in increasing order (a ``range``): inside a runner with
    ``exactly_once=True``, this worker's contiguous block ``range(index * n
    // num_workers, (index + 1) * n // num_workers)``, which reads a file
    sequentially; elsewhere all of ``range(n)``. With *rng*, in a random
    order drawn from *rng* (a list): outside workers ``rng.permutation(n)``,
    so seeded readers keep their sequence of passes; inside the workers of
    an exactly-once runner, this worker's part of one random partition of
    the whole of ``range(n)`` per pass, so that what a worker reads is a
    sample of all of the data, not of one block.

    Example:
        >>> from dataflow._worker_state import worker_context
        >>> shard_order(5, None)
        range(0, 5)
        >>> with worker_context(WorkerInfo(1, 2, sharded=True)):
        ...     shard_order(5, None)
        range(2, 5)
        >>> parts = []
        >>> for i in range(2):
        ...     with worker_context(WorkerInfo(i, 2, sharded=True, shared_seed=3)):
        ...         parts += shard_order(5, np.random.RandomState(i))
        >>> sorted(parts)
        [0, 1, 2, 3, 4]
    """
    return _worker_shard_order(n, rng)


@contextlib.contextmanager
def reading(df: Any, user: str, progress: bool) -> Iterator[Iterator[Datapoint]]:
    """Reset *df*, yield an iterator over one pass of it (with a tqdm bar on
    stderr when *progress*), and close *df* at the end."""
    if not isinstance(df, DataFlow):
        raise TypeError(f"df must be a DataFlow, got {type(df).__name__}")
    df.reset_state()
    try:
        try:
            total: Optional[int] = len(df)
        except UnknownLengthError:
            total = None
        with _ProgressBar(df, total=total, desc=user, unit="dp", disable=not progress) as bar:
            yield iter(bar)
    finally:
        df.close()


class ColumnsData(RandomAccessDataFlow):
    """Yield datapoints made of row *i* of every column, for *i* in order or
    in a new random order every pass.

    A column is anything indexable by an int (an array, a list, or an object
    with ``__getitem__``). Each datapoint is a new list (or, with *keys*, a
    new dict), so a consumer may modify it freely. Inside a runner with
    ``exactly_once=True``, each worker reads only its shard (a contiguous
    block of rows, see :meth:`WorkerInfo.shard`), shuffled within it, and
    ``len()`` counts it.

    A column that is a Python list or tuple of at least 100,000 rows is
    packed into a read-only compact store (see "Memory with many workers"
    in the docs) when the process next forks or the dataflow is pickled, so
    that forked workers share it instead of each copying it; it yields the
    same values. Not packed: numpy columns (shared as they are), other
    sequences, lists of numpy arrays (often views into one loaded array,
    which the store would copy), and lists that the store cannot hold.

    Args:
        columns: one sequence per component, each with *size* rows.
        keys: ``None`` to yield lists, or the dict key of each column.
        size: the number of datapoints (needed when there are no columns).
        shuffle: visit the rows in a new random order every pass.
        seed: seed of the shuffle; ``None`` draws fresh entropy at every reset.
    """

    def __init__(
        self,
        columns: Sequence[Any],
        keys: Optional[List[str]],
        size: int,
        shuffle: bool,
        seed: Optional[int],
    ) -> None:
        self._columns = list(columns)
        self._keys = keys
        self._size = size
        self.shuffle = shuffle
        self.seed = _check_seed(seed)
        self._pack_pending = any(map(_packable, self._columns))
        if self._pack_pending:
            pack_before_fork(self)

    def _pack_for_fork(self) -> None:
        """Swap long list columns for compact stores before workers fork or
        this dataflow is pickled for them (once)."""
        if self.__dict__.pop("_pack_pending", False):
            self._columns = [
                packed(column, check_shared=True, owner="ColumnsData")
                if _packable(column)
                else column
                for column in self._columns
            ]

    def __getstate__(self) -> Dict[str, Any]:
        self._pack_for_fork()  # workers started by spawn get the stores too
        return dict(self.__dict__)

    def num_datapoints(self) -> int:
        return self._size

    def get(self, index: int) -> Datapoint:
        if self._keys is None:
            return [column[index] for column in self._columns]
        return {key: column[index] for key, column in zip(self._keys, self._columns)}

    def read(self, indices: Sequence[int]) -> Iterator[Datapoint]:
        columns = self._columns
        if any(isinstance(column, CompactList) for column in columns):
            return self._read_packed(indices)
        if self._keys is None:
            return ([column[i] for column in columns] for i in indices)
        keys = self._keys
        return ({key: column[i] for key, column in zip(keys, columns)} for i in indices)

    def _read_packed(self, indices: Sequence[int]) -> Iterator[Datapoint]:
        """:meth:`read` when some columns are compact stores: each decodes its
        rows a chunk at a time, the others are indexed row by row."""
        order = indices if isinstance(indices, range) else np.asarray(indices)
        rows = zip(
            *(
                column.read(order)
                if isinstance(column, CompactList)
                else map(column.__getitem__, indices)
                for column in self._columns
            )
        )
        keys = self._keys
        if keys is None:
            return map(list, rows)
        return (dict(zip(keys, row)) for row in rows)


def _packable(column: Any) -> bool:
    """Whether *column* is a list or tuple long enough to pack, holding no numpy array."""
    if type(column) not in (list, tuple) or len(column) < COMPACT_MIN_ITEMS:
        return False
    return not any(issubclass(kind, np.ndarray) for kind in set(map(type, column)))

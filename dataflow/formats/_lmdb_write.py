"""Writing an LMDB database for :meth:`LMDBSerializer.save`: transactions, map
growth and a durable commit.

:func:`write_database` writes one pass of a dataflow into a temporary file
beside the target (see :func:`._files.atomic_output`), in transactions of
at most ``write_frequency`` records and about :data:`_TXN_BYTES` bytes. The
map grows before each transaction until the transaction surely fits, so no
record is ever lost to a full map. After each commit a background thread
starts writing the committed pages to disk, and the file is synced before
it is renamed into place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import zlib
from typing import Any, List, Optional, Sequence, Tuple

from .._optional import import_optional
from ..serialize import Serializer
from ._files import atomic_output, reading
from ._lmdb_format import CRC_BYTES, SORTED_KEY_LIMIT, data_file, metadata_records

__all__ = ["write_database"]

_log = logging.getLogger(__name__)

_INITIAL_MAP_SIZE = 1 << 30  # bytes; doubled whenever the database might fill it
_SLACK_PAGES = 64  # pages a commit may need besides the records: copied branches, free list
_NODE_BYTES = 64  # more than LMDB's bookkeeping bytes per record
# Bytes of records per write transaction, at most: the pages of a transaction
# stay in memory until it commits, and a commit lets the disk start writing.
_TXN_BYTES = 1 << 20


def _output_file(path: str, overwrite: bool, user: str) -> str:
    """The data file to write for the database *path*, checked."""
    data_path, subdir = data_file(path)
    parent = os.path.dirname(os.path.abspath(data_path))
    if not subdir and not os.path.isdir(parent):
        raise FileNotFoundError(f"{user}: the directory {parent!r} does not exist")
    if os.path.lexists(data_path) and not overwrite:
        raise FileExistsError(
            f"{user}: {data_path!r} already exists; pass overwrite=True to replace it"
        )
    return data_path


class _Writer:
    """Puts batches of records into a new database, one transaction per batch.

    Before each transaction it grows the map until the batch surely fits, so
    no record is ever lost to a full map and none has to be retried. After
    each commit it starts writing the committed pages to disk in a
    background thread (``os.fdatasync``), so that the final sync has little
    left to wait for; :meth:`close` waits for that thread.
    """

    def __init__(self, env: Any, path: str) -> None:
        self._env = env
        self._page = env.stat()["psize"]
        self._fd: Optional[int] = None
        if hasattr(os, "fdatasync"):  # not on Windows or macOS: no early flushing there
            self._fd = os.open(path, os.O_RDONLY)
        self._flusher: Optional[threading.Thread] = None
        self._flush_error: Optional[OSError] = None

    def write(
        self,
        items: List[Tuple[bytes, bytes]],
        nbytes: int,
        append: bool,
        more: Sequence[Tuple[bytes, bytes]] = (),
    ) -> None:
        """Store the records *items* and then *more*, whose keys and values
        total *nbytes* bytes, in one transaction; with *append*, the keys of
        *items* are in order and sort after every key stored."""
        # A record takes at most twice its size in the map: leaf pages are at
        # least half full after a split, and so are the overflow pages that
        # hold a value too large for a leaf.
        cost = 2 * (nbytes + _NODE_BYTES * (len(items) + len(more)))
        info = self._env.info()
        used = (info["last_pgno"] + 1 + _SLACK_PAGES) * self._page
        size = info["map_size"]
        while size - used < max(cost, size // 2):
            size *= 2
        if size != info["map_size"]:
            _log.info("growing the LMDB map to %.2f GB", size / 1e9)
            self._env.set_mapsize(size)
        with self._env.begin(write=True) as txn:
            cursor = txn.cursor()
            _, added = cursor.putmulti(items, append=append)
            if more:
                added += cursor.putmulti(more)[1]
            assert added == len(items) + len(more), "LMDB did not store every record"
        self._flush()

    def _flush(self) -> None:
        """Start writing the committed pages to disk, unless that is under way."""
        if self._fd is None or (self._flusher is not None and self._flusher.is_alive()):
            return
        flusher = threading.Thread(target=self._fdatasync, name="LMDBSerializer.save flush")
        flusher.start()
        self._flusher = flusher

    def _fdatasync(self) -> None:
        try:
            os.fdatasync(self._fd)  # type: ignore[arg-type]
        except OSError as err:
            self._flush_error = err

    def close(self) -> None:
        """Wait for the background flush; raise the error it met, if any."""
        if self._flusher is not None:
            self._flusher.join()  # an fdatasync, which ends
            self._flusher = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        err, self._flush_error = self._flush_error, None
        if err is not None:
            raise err


def _write_datapoints(
    writer: _Writer, df: Any, per_txn: int, serializer: Serializer, progress: bool, user: str
) -> Tuple[int, List[Tuple[bytes, bytes]], int]:
    """Write one pass of *df*, but for its last batch of records.

    Records are written in batches of at most *per_txn* records and about
    :data:`_TXN_BYTES` bytes, each batch in one transaction. Returns the
    number of datapoints, and the last batch and its size in bytes, for the
    caller to write along with the metadata.
    """
    dumps, crc32 = serializer.dumps, zlib.crc32
    batch: List[Tuple[bytes, bytes]] = []
    nbytes = size = 0
    with reading(df, user, progress) as datapoints:
        for dp in datapoints:
            if type(dp) is not list and not isinstance(dp, (list, dict)):
                raise TypeError(
                    f"{user} needs list or dict datapoints, got {type(dp).__name__} "
                    f"(datapoint {size})"
                )
            try:
                payload = dumps(dp)
            except TypeError as err:
                raise TypeError(f"{user}: datapoint {size}: {err}") from err
            key = b"%08d" % size
            value = payload + crc32(payload, crc32(key)).to_bytes(CRC_BYTES, "little")
            batch.append((key, value))
            nbytes += len(key) + len(value)
            size += 1
            if nbytes >= _TXN_BYTES or len(batch) >= per_txn:
                writer.write(batch, nbytes, size <= SORTED_KEY_LIMIT)
                batch = []
                nbytes = 0
    return size, batch, nbytes


def write_database(
    df: Any,
    path: str,
    write_frequency: int,
    serializer: Serializer,
    overwrite: bool,
    progress: bool,
    user: str,
) -> None:
    """Write one pass of *df* as the database *path* (arguments checked by the caller)."""
    out = _output_file(path, overwrite, user)
    lmdb = import_optional("lmdb", user)
    with atomic_output(out) as tmp:
        env = lmdb.open(
            tmp,
            subdir=False,
            map_size=_INITIAL_MAP_SIZE,
            lock=False,
            sync=False,
            metasync=False,
            meminit=False,
        )
        writer = None
        try:
            writer = _Writer(env, tmp)
            size, batch, nbytes = _write_datapoints(
                writer, df, write_frequency, serializer, progress, user
            )
            metadata = metadata_records(size, serializer.name)
            nbytes += sum(len(key) + len(value) for key, value in metadata)
            writer.write(batch, nbytes, size <= SORTED_KEY_LIMIT, metadata)
            writer.close()
            env.sync(True)
        finally:
            if writer is not None:
                with contextlib.suppress(OSError):
                    writer.close()  # after an error: only wait for the flush
            env.close()

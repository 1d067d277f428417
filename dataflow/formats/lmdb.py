"""LMDB: store a dataflow in an LMDB database and read it back; read any LMDB database.

* :class:`LMDBSerializer` writes one serialized datapoint per record and
  loads such databases, including those written by tensorpack.
* :class:`LMDBData` yields the raw ``[key, value]`` records of any database;
  :class:`LMDBDataDecoder` turns them into datapoints with a function.

The ``lmdb`` package is imported only when a database is opened.

**The database layout** written by :meth:`LMDBSerializer.save`: the key of
datapoint *i* is ``b"%08d" % i``; its value is the serialized datapoint
followed by a checksum, the CRC-32 (``zlib.crc32``, 4 bytes little-endian)
of the key and the serialized datapoint together. Two more records follow
the data: ``__keys__``, the msgpack list of every data key (as tensorpack
stores it), and ``__dataflow__``, a msgpack map with the format name, its
version (2), the serializer's name, the number of datapoints and
``"checksum": "crc32"``. Every read checks the checksum, so a damaged value
or key is an error naming the file and the record, never a changed
datapoint. Version 1 databases (written before checksums) and tensorpack's
have no checksums and load unverified.

**Damaged files.** The LMDB library trusts the pages of its file: on a
damaged branch or leaf page it may stop the process with ``abort()`` or read
outside the file, which no ``try`` can catch. So before the library walks a
data file, the first reader in a process checks the structure of its tree
in Python (every branch and leaf page: kind, bounds, nodes, child and
overflow page numbers, and the totals of the meta page) and raises a
``ValueError`` naming the file when it is damaged. This costs about one
pass over the keys, once per process while the file is unchanged; it reads
no overflow page (large values live there, covered by the checksums). Not
checked: databases whose main table allows duplicate keys (``dupsort``),
and a file changed after it was checked.

**Environments.** LMDB forbids opening one database twice in a process, so
all readers of a file in a process share one read-only environment, opened
by the first ``reset_state()`` and closed by the last ``close()``. A child
process started by ``fork`` opens its own at its ``reset_state()``.
"""

from __future__ import annotations

import logging
import os
import pickle
import weakref
import zlib
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Optional, Sequence

from .._checks import check_seed as _check_seed
from .._optional import import_optional
from ..base import DataFlow, Datapoint, ProxyDataFlow
from ..serialize import MsgpackSerializer, PickleSerializer, Serializer
from ..sources import RandomAccessDataFlow
from ._files import check_path
from ._lmdb_env import SharedEnv, acquire, borrowed_env, release
from ._lmdb_format import (
    CRC_BYTES,
    CRC_RESIDUE,
    KEYS,
    METADATA,
    RESERVED,
    SERIALIZERS,
    SORTED_KEY_LIMIT,
    check_keys,
    first_value,
    is_pickle,
    key_of_hex,
    read_meta,
    records_at,
)
from ._lmdb_write import write_database

__all__ = ["LMDBData", "LMDBDataDecoder", "LMDBSerializer"]

_log = logging.getLogger(__name__)

# ---- reading -----------------------------------------------------------------


class LMDBData(RandomAccessDataFlow):
    """Yield the records of an LMDB database as ``[key, value]`` pairs of ``bytes``.

    Without *keys*, a pass visits every record (except the ``__keys__`` and
    ``__dataflow__`` records that :class:`LMDBSerializer` adds) in the
    database's key order, or with *shuffle* in a new random order every
    pass. ``len()`` is exact. With *keys*, a pass visits exactly those
    records, in the given order or shuffled. Inside a runner with
    ``exactly_once=True``, each worker reads only its shard (a contiguous
    block of that order, see :meth:`WorkerInfo.shard`), shuffled within it,
    and ``len()`` counts it. Read in key order, a worker's cursor starts at
    the first record of its block: on a database of
    :class:`LMDBSerializer` it goes there directly, on others it steps over
    the keys before it without reading their values.

    On a database written by :class:`LMDBSerializer` (version 2, see the
    module notes), every value is checked against its CRC-32 checksum and
    yielded without it: the value is the serialized datapoint, so
    ``LMDBDataDecoder(LMDBData(path), lambda k, v: loads(v))`` decodes it.
    A record whose checksum does not match raises a ``ValueError`` naming
    the file and the key. Other databases' values are yielded as stored.

    The constructor checks the structure of the file first (see the module
    notes), so that a damaged branch or leaf page raises a ``ValueError``
    naming the file instead of aborting the process inside LMDB.

    Shuffling needs the list of keys: it is read from the ``__keys__``
    record when the database has one (LMDBSerializer and tensorpack write
    it), else listed once in the constructor by scanning the database. The
    constructor opens the database briefly to count the records and read
    the keys; ``reset_state()`` opens it for reading (see the module notes
    on shared environments), and ``close()`` lets it go. Memory held: the
    key list when shuffling; records are read from the memory-mapped file.

    Args:
        lmdb_path: the database: a directory holding ``data.mdb``, or the
            data file itself.
        shuffle: visit the records in a new random order every pass.
        keys: ``None`` (all records), a list of keys (``bytes`` or ``str``),
            or a format string such as ``'{:08d}'`` that turns the indices
            ``0 .. n-1`` into the keys, where *n* is the number of records.
        seed: seed of the shuffle; ``None`` (the default) draws fresh
            entropy at every ``reset_state()``.

    Example:
        >>> import os, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = os.path.join(tmp.name, "squares.lmdb")
        >>> LMDBSerializer.save(DataFromList([[1]], shuffle=False), path, progress=False)
        >>> df = LMDBData(path, shuffle=False)
        >>> df.reset_state()
        >>> list(df)
        [[b'00000000', b'\\x91\\x01']]
        >>> df.close(); tmp.cleanup()
    """

    _user = "LMDBData"
    _allow_pickle = False  # whether a pickled __keys__ record may be unpickled

    def __init__(
        self,
        lmdb_path: Any,
        shuffle: bool = True,
        keys: Any = None,
        *,
        seed: Optional[int] = None,
    ) -> None:
        self.lmdb_path = check_path(lmdb_path, "lmdb_path")
        self.shuffle = shuffle
        self.seed = _check_seed(seed)
        keys = check_keys(keys)
        self._shared: Optional[SharedEnv] = None
        self._finalizer: Optional[weakref.finalize] = None
        with borrowed_env(self.lmdb_path, self._user) as env:
            lmdb_error = import_optional("lmdb", self._user).Error
            try:
                with env.begin() as txn:
                    self._reserved: FrozenSet[bytes] = frozenset(
                        key for key in RESERVED if txn.get(key) is not None
                    )
                    size = env.stat()["entries"] - len(self._reserved)
                    meta = read_meta(txn, size, self.lmdb_path, self._user)
                    self._checksummed = meta is not None and meta["checksum"] is not None
                    # Whether data record i has the key b"%08d" % i, in key order.
                    self._numbered = meta is not None and size <= SORTED_KEY_LIMIT
                    self._inspect(txn, meta)
                    if isinstance(keys, str):
                        keys = [keys.format(i).encode() for i in range(size)]
                    elif keys is None and shuffle:
                        keys = self._stored_keys(txn, size, meta is not None)
            except lmdb_error as err:
                raise self._corrupt(None, err) from err
        self._keys: Optional[List[bytes]] = keys
        self._size = size if keys is None else len(keys)

    def _inspect(self, txn: Any, meta: Optional[Dict[str, Any]]) -> None:
        """Check the database further when it is first opened (for subclasses)."""

    def _datapoint(self, key: bytes, value: Any) -> Datapoint:
        """The datapoint of one record; an exception says the record is unreadable.

        *value* is the record's value, or on a checksummed database the
        verified payload: a ``bytes`` slice, or a ``memoryview`` when
        :attr:`_payload_view` is true.
        """
        return [key, value]

    #: Whether :meth:`_datapoint` gets checksummed payloads as ``memoryview``
    #: slices, which copy nothing, rather than as ``bytes``.
    _payload_view = False

    #: Whether :meth:`_datapoint` gets keys and values as ``memoryview`` objects
    #: of the memory-mapped file (valid only while the environment is open),
    #: which saves copying each value; only for code that keeps no reference.
    _in_place = False

    def _stored_keys(self, txn: Any, size: int, ours: bool) -> List[bytes]:
        """The keys of the data records: the ``__keys__`` record, or a scan.

        On a database that LMDBSerializer.save wrote (*ours*), the record
        must list exactly the keys it writes.
        """
        raw = txn.get(KEYS)
        keys: Any = None
        if raw is not None and not is_pickle(raw):
            try:
                keys = METADATA.loads(raw)
            except (TypeError, ValueError) as err:
                raise self._unreadable(KEYS, err) from err
        elif raw is not None and self._allow_pickle:
            keys = pickle.loads(raw)
        if keys is None:
            _log.info("%s: listing the keys of %s by scanning it", self._user, self.lmdb_path)
            reserved = self._reserved
            return [key for key in txn.cursor().iternext(values=False) if key not in reserved]
        if not (isinstance(keys, list) and all(isinstance(key, bytes) for key in keys)):
            raise ValueError(
                f"{self._user}: the {KEYS!r} record of {self.lmdb_path!r} is not a list of "
                "bytes keys; the database is corrupt"
            )
        if len(keys) != size:
            raise ValueError(
                f"{self._user}: the {KEYS!r} record of {self.lmdb_path!r} lists {len(keys)} keys "
                f"but the database holds {size} records; the database is corrupt"
            )
        if ours and keys != [b"%08d" % i for i in range(size)]:
            raise ValueError(
                f"{self._user}: the {KEYS!r} record of {self.lmdb_path!r} is not the key list "
                "that LMDBSerializer.save writes; the database is corrupt"
            )
        return keys

    def _unreadable(self, key: bytes, err: BaseException) -> ValueError:
        return ValueError(
            f"{self._user}: record {bytes(key)!r} of {self.lmdb_path!r} cannot be read "
            f"({_detail(err)})"
        )

    def _mismatch(self, key: bytes) -> ValueError:
        return ValueError(
            f"{self._user}: record {bytes(key)!r} of {self.lmdb_path!r} is corrupt: its "
            "CRC-32 checksum does not match its key and value"
        )

    def _corrupt(self, last_key: Optional[bytes], err: BaseException) -> ValueError:
        """The error for LMDB failing to read the database itself; *last_key*
        is the last record read before it failed, if any."""
        where = "" if last_key is None else f" after record {bytes(last_key)!r}"
        return ValueError(
            f"{self._user}: the LMDB database {self.lmdb_path!r} is corrupt: reading it "
            f"failed{where} ({_detail(err)})"
        )

    def num_datapoints(self) -> int:
        """The number of records a pass visits (in all workers together)."""
        return self._size

    def reset_state(self) -> None:
        super().reset_state()
        shared = acquire(self.lmdb_path, self._user)
        self.close()  # after acquiring, so that a second reset keeps the environment open
        self._shared = shared
        self._finalizer = weakref.finalize(self, release, shared)

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._shared = None

    def __getstate__(self) -> Dict[str, Any]:
        # A copy (e.g. for a spawned worker) opens the database at its own reset_state().
        state = self.__dict__.copy()
        state["_shared"] = state["_finalizer"] = None
        return state

    _last_key: Optional[bytes] = None  # of the last record read, see own_state_dict()

    def own_state_dict(self) -> Dict[str, Any]:
        """The state of :class:`~dataflow.RandomAccessDataFlow`; read in key order
        from a database whose keys are not LMDBSerializer's numbers, also
        ``"after"``: the hex of the last key read, where a resumed pass seeks to."""
        state = super().own_state_dict()
        if self._keys is None and not self._numbered and state["pos"] and "after" not in state:
            state["after"] = None if self._last_key is None else self._last_key.hex()
        return state

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        if isinstance(state, dict):
            key_of_hex(state.get("after"), self._user)  # a clear error if it is not a key
        super().load_own_state_dict(state)

    def read(self, indices: Sequence[int]) -> Iterator[Datapoint]:
        """The records at the positions *indices* (see :class:`~dataflow.RandomAccessDataFlow`)."""
        env = self._env()
        track = self._keys is None and not self._numbered  # keys that say nothing of positions
        after = key_of_hex((self._resumed or {}).get("after"), self._user) if track else None
        self._last_key = after
        return self._iterate(env, indices, after, track)

    def get(self, index: int) -> Datapoint:
        """The record at position *index* of the key order (or of *keys*)."""
        return next(self._iterate(self._env(), range(index, index + 1), None, False))

    def _env(self) -> Any:
        shared = self._shared
        if shared is None:
            raise RuntimeError(
                f"{self._user}: call reset_state() once, in the process that iterates, before "
                "iterating (and again after close())"
            )
        if shared.pid != os.getpid():
            raise RuntimeError(
                f"{self._user} was reset in process {shared.pid} but is iterated in process "
                f"{os.getpid()}; call reset_state() in the process that iterates"
            )
        return shared.env

    def _iterate(
        self, env: Any, indices: Sequence[int], after: Optional[bytes], track: bool
    ) -> Iterator[Datapoint]:
        """The records at *indices* (after the key *after*); *track*: keep the last key."""
        make = self._datapoint
        lmdb_error = import_optional("lmdb", self._user).Error
        in_place = self._in_place
        checksummed, view = self._checksummed, self._payload_view and not in_place
        crc32 = zlib.crc32
        key = None
        try:
            with env.begin(buffers=in_place) as txn:
                records, skip = records_at(
                    txn, self._keys, indices, self._size, self._reserved, self._numbered, after
                )
                for key, value in records:
                    if key in skip:
                        continue
                    if value is None:
                        raise KeyError(f"{self._user}: no record {key!r} in {self.lmdb_path!r}")
                    if checksummed:
                        if crc32(value, crc32(key)) != CRC_RESIDUE:
                            raise self._mismatch(key)
                        value = memoryview(value)[:-CRC_BYTES] if view else value[:-CRC_BYTES]
                    try:
                        dp = make(key, value)
                    except Exception as err:
                        raise self._unreadable(key, err) from err
                    if track:
                        self._last_key = bytes(key)
                    yield dp
        except lmdb_error as err:
            if self._shared is None:
                raise RuntimeError(
                    f"{self._user} was closed during a pass; finish or abandon the pass "
                    "before close()"
                ) from err
            raise self._corrupt(key, err) from err  # a damaged page: LMDB cannot find the record


class LMDBDataDecoder(ProxyDataFlow):
    """Yield ``decoder(key, value)`` for every record ``[key, value]`` of *lmdb_data*,
    dropping those where it is ``None``.

    Order, shuffling and ``len()`` are those of *lmdb_data*; the decoder runs
    in the iterating thread. Inside a runner with ``exactly_once=True``, each
    worker decodes only its shard, as an :class:`LMDBData` reads only its own.

    Args:
        lmdb_data: an :class:`LMDBData` (or any dataflow of ``[key, value]``).
        decoder: takes the key and the value (``bytes``; from an
            :class:`LMDBData` on a database of :class:`LMDBSerializer`, the
            checked serialized datapoint without its checksum) and returns
            a datapoint, or ``None`` to drop the record.

    Example:
        >>> import os, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = os.path.join(tmp.name, "db.lmdb")
        >>> LMDBSerializer.save(DataFromList([[5], [6]], shuffle=False), path, progress=False)
        >>> df = LMDBDataDecoder(LMDBData(path, shuffle=False), lambda k, v: [int(k), len(v)])
        >>> df.reset_state()
        >>> list(df)
        [[0, 2], [1, 2]]
        >>> df.close(); tmp.cleanup()

    Note:
        When *decoder* drops records, ``len()`` still counts them, and so
        over-counts.
    """

    def __init__(self, lmdb_data: DataFlow, decoder: Callable[[bytes, bytes], Any]) -> None:
        super().__init__(lmdb_data)
        if not callable(decoder):
            raise TypeError(f"decoder must be callable, got {decoder!r}")
        self.decoder = decoder

    def __iter__(self) -> Iterator[Datapoint]:
        decoder = self.decoder
        for key, value in self.ds:
            dp = decoder(key, value)
            if dp is not None:
                yield dp

    # The position is that of lmdb_data: the records it read were all decoded.
    own_state_dict = ProxyDataFlow.own_state_dict
    load_own_state_dict = ProxyDataFlow.load_own_state_dict


def _detail(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


class _SerializedLMDBData(LMDBData):
    """Yield the datapoints stored in an LMDB database: what LMDBSerializer.load returns.

    Its serializer is the one given, or the one the database names, or for
    a database from tensorpack, pickle or msgpack as its first value shows.
    """

    _user = "LMDBSerializer.load"
    _payload_view = True  # the serializers take any buffer and copy what they keep

    def __init__(
        self,
        path: Any,
        shuffle: bool,
        seed: Optional[int],
        serializer: Optional[Serializer],
        allow_pickle: bool,
    ) -> None:
        self._serializer = serializer
        self._allow_pickle = bool(allow_pickle) or isinstance(serializer, PickleSerializer)
        super().__init__(path, shuffle, seed=seed)
        # These two copy whatever they keep of a buffer, so they may read the
        # memory-mapped file directly; a subclass or another codec may not.
        self._in_place = type(self._serializer) in (MsgpackSerializer, PickleSerializer)

    def _inspect(self, txn: Any, meta: Optional[Dict[str, Any]]) -> None:
        if self._serializer is not None:
            return
        if meta is not None:
            factory = SERIALIZERS.get(meta["serializer"])
            if factory is None:
                raise ValueError(
                    f"{self._user}: {self.lmdb_path!r} was written with the serializer "
                    f"{meta['serializer']!r}; pass an instance of it as serializer="
                )
        else:  # written by tensorpack, with pickle (its default) or msgpack
            first = first_value(txn, self._reserved)
            factory = (
                PickleSerializer if first is not None and is_pickle(first) else MsgpackSerializer
            )
        if factory is PickleSerializer and not self._allow_pickle:
            raise ValueError(
                f"{self._user}: {self.lmdb_path!r} holds pickled datapoints (tensorpack writes "
                "pickle by default). Loading pickle runs code chosen by whoever wrote the file, "
                "so it is refused unless you trust the file and pass allow_pickle=True"
            )
        self._serializer = factory()

    def _datapoint(self, key: bytes, value: Any) -> Datapoint:
        dp = self._serializer.loads(value)  # type: ignore[union-attr]
        if type(dp) is list or isinstance(dp, dict):
            return dp
        if type(dp) is tuple:  # pickled by tensorpack
            return list(dp)
        raise TypeError(f"it holds a {type(dp).__name__}, not a list or dict datapoint")


def _check_serializer(serializer: Any) -> Optional[Serializer]:
    if serializer is not None and not isinstance(serializer, Serializer):
        raise TypeError(
            "serializer must be None or a Serializer instance such as MsgpackSerializer(), "
            f"got {serializer!r}"
        )
    return serializer


class LMDBSerializer:
    """Store a dataflow in an LMDB database, one record per datapoint; load it back.

    ``save`` stores each datapoint serialized under the key ``b"%08d" % i``,
    followed by a CRC-32 checksum of the key and the serialized datapoint;
    ``load`` checks it on every read, so a damaged record raises a
    ``ValueError`` naming the file and the key instead of yielding a changed
    datapoint. See the module notes for the layout. tensorpack cannot read
    these databases (it knows neither the checksums nor the array format).

    Databases written by tensorpack's ``LMDBSerializer`` load as well
    (without checksums, so unverified): with msgpack values always, with
    pickle values (tensorpack's default) only when you allow it.

    Example:
        >>> import os, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = os.path.join(tmp.name, "squares.lmdb")
        >>> src = DataFromList([[i, np.full(2, i * i)] for i in range(3)], shuffle=False)
        >>> LMDBSerializer.save(src, path, progress=False)
        >>> df = LMDBSerializer.load(path, shuffle=False)
        >>> df.reset_state()
        >>> [[x, y.tolist()] for x, y in df]
        [[0, [0, 0]], [1, [1, 1]], [2, [4, 4]]]
        >>> df.close(); tmp.cleanup()
    """

    @staticmethod
    def save(
        df: Any,
        path: Any,
        write_frequency: int = 5000,
        *,
        serializer: Optional[Serializer] = None,
        overwrite: bool = False,
        progress: bool = True,
    ) -> None:
        """Write every datapoint of one pass of *df* to the LMDB database *path*.

        Calls ``df.reset_state()`` first and ``df.close()`` at the end. The
        database appears only when it is complete: it is written to a hidden
        temporary file beside it, synced to disk and renamed at the end; if
        *df* (or the writing) raises, the temporary file is deleted and the
        error reaches the caller. A writer killed before it could delete its
        temporary file (by ``SIGKILL``, say) leaves it behind; the next save
        into the same directory deletes it and logs a warning naming it and
        its size. Temporary files of live writers, and of writers on other
        machines, stay. The map grows as needed.

        Args:
            df: the dataflow to write, not yet reset; its datapoints must be
                lists or dicts.
            path: an existing directory (the database is ``data.mdb`` in it),
                or the path of the data file to create.
            write_frequency: the most datapoints per transaction, at least 1;
                LMDB holds the pages a transaction writes in memory until it
                commits, so a transaction also ends after about 1 MB of records.
            serializer: how to serialize datapoints; ``None`` means
                ``MsgpackSerializer()``. The database records its name, so
                ``load`` picks it.
            overwrite: replace an existing database; by default it is an error.
            progress: show a tqdm progress bar on stderr while writing.

        Raises:
            FileExistsError: the database exists and *overwrite* is false.
            TypeError: a datapoint is not a list or dict, or cannot be
                serialized (the message names the datapoint and where in it).
        """
        user = "LMDBSerializer.save"
        path = check_path(path, "path")
        if isinstance(write_frequency, bool) or not isinstance(write_frequency, int):
            raise TypeError(f"write_frequency must be a positive int, got {write_frequency!r}")
        if write_frequency < 1:
            raise ValueError(f"write_frequency must be a positive int, got {write_frequency!r}")
        serializer = _check_serializer(serializer) or MsgpackSerializer()
        write_database(df, path, write_frequency, serializer, overwrite, progress, user)

    @staticmethod
    def load(
        path: Any,
        shuffle: bool = True,
        *,
        seed: Optional[int] = None,
        serializer: Optional[Serializer] = None,
        allow_pickle: bool = False,
    ) -> LMDBData:
        """A dataflow over the datapoints stored in the LMDB database *path*.

        It yields the datapoints in the order they were written (the key
        order), or with *shuffle* in a new random order every pass, and its
        ``len()`` is exact. The database is opened in ``reset_state()``, so
        the dataflow can be forked into worker processes before that. A
        record whose checksum does not match, or that cannot be decoded,
        raises a ``ValueError`` naming the file and the key; a damaged
        branch or leaf page, one naming the file and the page, before LMDB
        reads it (see the module notes). Inside a runner
        with ``exactly_once=True``, each worker reads only its shard (a
        contiguous block of the datapoints, see :meth:`WorkerInfo.shard`),
        shuffled within it, and ``len()`` counts it.

        Args:
            path: a database written by :meth:`save` or by tensorpack: a
                directory holding ``data.mdb``, or the data file.
            shuffle: visit the datapoints in a new random order every pass.
            seed: seed of the shuffle; ``None`` (the default) draws fresh
                entropy at every ``reset_state()``.
            serializer: how to decode the values; ``None`` picks the one the
                database was written with (for tensorpack's databases, pickle
                or msgpack from the first value). Pass
                ``MsgpackSerializer(writable=False)`` for read-only arrays
                that skip one copy.
            allow_pickle: allow loading pickled datapoints. Unpickling runs
                code chosen by whoever wrote the file: allow it only for
                files you trust.

        Raises:
            ValueError: the database holds pickle and *allow_pickle* is
                false, or it is truncated or corrupt (its structure is
                checked here, in the constructor).
        """
        return _SerializedLMDBData(
            path, shuffle, _check_seed(seed), _check_serializer(serializer), allow_pickle
        )

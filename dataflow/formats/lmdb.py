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

import contextlib
import logging
import os
import pickle
import threading
import weakref
import zlib
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    Iterator,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
)

from .._optional import import_optional
from ..base import DataFlow, Datapoint, ProxyDataFlow, RNGDataFlow, _check_seed
from ..serialize import MsgpackSerializer, PickleSerializer, Serializer
from ..worker import shard_range
from ._files import atomic_output, check_path, reading, shard_order
from ._lmdb_check import check_structure

__all__ = ["LMDBData", "LMDBDataDecoder", "LMDBSerializer"]

_log = logging.getLogger(__name__)

_KEYS = b"__keys__"
_META = b"__dataflow__"
_RESERVED = (_KEYS, _META)
_FORMAT = "dataflow.LMDBSerializer"
_VERSION = 2  # 1: no checksums; 2: every data value ends with its checksum
_CHECKSUM = "crc32"  # the value of "checksum" in the metadata of version 2
_CRC_BYTES = 4
# The CRC-32 of any bytes followed by their own CRC-32 in little-endian order:
# a record is intact when crc32(value, crc32(key)) equals it.
_CRC_RESIDUE = 0x2144DF1C
_SERIALIZERS: Dict[str, Callable[[], Serializer]] = {
    "msgpack": MsgpackSerializer,
    "pickle": PickleSerializer,
}
_INITIAL_MAP_SIZE = 1 << 30  # bytes; doubled whenever the database might fill it
_SLACK_PAGES = 64  # pages a commit may need besides the records: copied branches, free list
_NODE_BYTES = 64  # more than LMDB's bookkeeping bytes per record
# Bytes of records per write transaction, at most: the pages of a transaction
# stay in memory until it commits, and a commit lets the disk start writing.
_TXN_BYTES = 1 << 20
_SORTED_KEY_LIMIT = 10**8  # keys b"%08d" % i sort in the order of i below this
_METADATA = MsgpackSerializer()  # reads and writes __keys__ and __dataflow__


def _is_pickle(value: bytes) -> bool:
    """Whether *value* is a pickle (protocol 2 or later) rather than msgpack.

    Pickles start with the PROTO opcode ``0x80``; in msgpack ``0x80`` is the
    empty map, which is the whole value.
    """
    return len(value) > 1 and value[0] == 0x80


def _data_file(path: str) -> Tuple[str, bool]:
    """The data file of the database at *path* and whether *path* is a directory."""
    if os.path.isdir(path):
        return os.path.join(path, "data.mdb"), True
    return path, False


# ---- read-only environments shared within a process ---------------------------


class _SharedEnv:
    """A read-only environment of one data file, shared by its readers in one process."""

    __slots__ = ("env", "file_id", "pid", "users")

    def __init__(self, env: Any, file_id: Tuple[int, int]) -> None:
        self.env = env
        self.file_id = file_id
        self.pid = os.getpid()
        self.users = 0


_SHARED: Dict[Tuple[int, int], _SharedEnv] = {}
_SHARED_LOCK = threading.Lock()


def _new_lock_after_fork() -> None:
    global _SHARED_LOCK
    _SHARED_LOCK = threading.Lock()  # another thread may have held it at fork time


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def _open_readonly(path: str, subdir: bool, file_size: int, user: str) -> Any:
    lmdb = import_optional("lmdb", user)
    try:
        env = lmdb.open(path, subdir=subdir, readonly=True, lock=False, max_spare_txns=2)
    except lmdb.Error as err:
        raise ValueError(f"{user}: cannot open {path!r} as an LMDB database: {err}") from err
    end = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    if file_size < end:
        env.close()
        raise ValueError(
            f"{user}: the LMDB database {path!r} is truncated: its data file has {file_size} "
            f"bytes but its pages end at byte {end}"
        )
    try:
        _check_once(_data_file(path)[0], file_size, env.info()["last_txnid"], user)
    except BaseException:
        env.close()
        raise
    return env


# The data files (device, inode, size, modification time, transaction) whose
# structure this process has checked; forked children inherit it.
_CHECKED: Set[Tuple[int, int, int, int, int]] = set()


def _check_once(data_file: str, file_size: int, txnid: int, user: str) -> None:
    """Check the structure of *data_file* (see :mod:`._lmdb_check`), unless
    this process has checked it as it is now."""
    st = os.stat(data_file)
    state = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, txnid)
    if state not in _CHECKED:
        check_structure(data_file, user, file_size)
        _CHECKED.add(state)


def _acquire(path: str, user: str) -> _SharedEnv:
    """This process's shared read-only environment of the database at *path*,
    with one more user."""
    data_file, subdir = _data_file(path)
    try:
        st = os.stat(data_file)
    except FileNotFoundError:
        raise FileNotFoundError(f"{user}: there is no LMDB database at {path!r}") from None
    file_id = (st.st_dev, st.st_ino)
    with _SHARED_LOCK:
        shared = _SHARED.get(file_id)
        if shared is not None and shared.pid != os.getpid():
            # This process's copy of an environment that its parent opened before fork.
            shared.env.close()
            shared = None
        if shared is None:
            env = _open_readonly(path, subdir, st.st_size, user)
            shared = _SHARED[file_id] = _SharedEnv(env, file_id)
        shared.users += 1
    return shared


def _release(shared: _SharedEnv) -> None:
    """Drop one user of *shared*; the last one closes the environment."""
    with _SHARED_LOCK:
        if shared.pid != os.getpid():
            return  # inherited through fork: the parent process owns it
        shared.users -= 1
        if shared.users == 0:
            shared.env.close()
            if _SHARED.get(shared.file_id) is shared:
                del _SHARED[shared.file_id]


@contextlib.contextmanager
def _borrowed_env(path: str, user: str) -> Iterator[Any]:
    shared = _acquire(path, user)
    try:
        yield shared.env
    finally:
        _release(shared)


# ---- reading -----------------------------------------------------------------


def _check_keys(keys: Any) -> Any:
    """*keys* as ``None``, a format string, or a list of bytes."""
    if keys is None:
        return None
    if isinstance(keys, str):
        try:
            keys.format(0)
        except (IndexError, KeyError, ValueError):
            valid = False
        else:
            valid = "{" in keys
        if not valid:
            raise ValueError(
                f"keys must be a format string of one index such as '{{:08d}}' when it is a "
                f"str, got {keys!r}"
            )
        return keys
    if not isinstance(keys, (list, tuple)):
        raise TypeError(
            f"keys must be None, a format string or a list of bytes or str keys, got {keys!r}"
        )
    for i, key in enumerate(keys):
        if not isinstance(key, (bytes, str)):
            raise TypeError(f"keys must hold bytes or str keys, got {key!r} at index {i}")
    return [key.encode() if isinstance(key, str) else key for key in keys]


def _read_meta(txn: Any, size: int, path: str, user: str) -> Optional[Dict[str, Any]]:
    """The metadata that LMDBSerializer.save wrote, checked; ``None`` if there is none.

    Its ``"checksum"`` is ``"crc32"`` when the values end with checksums
    (version 2), else ``None`` (version 1).
    """
    raw = txn.get(_META)
    if raw is None:
        return None
    try:
        meta = _METADATA.loads(raw)
    except (TypeError, ValueError):
        meta = None
    if not (
        isinstance(meta, dict)
        and meta.get("format") == _FORMAT
        and isinstance(meta.get("serializer"), str)
        and type(meta.get("size")) is int
    ):
        raise ValueError(
            f"{user}: the {_META!r} record of {path!r} is not what LMDBSerializer.save writes; "
            "the database is corrupt"
        )
    version = meta.get("version")
    if type(version) is not int or not 1 <= version <= _VERSION:
        raise ValueError(
            f"{user}: {path!r} has format version {version!r}, but this version of "
            f"dataflow reads versions 1 to {_VERSION}"
        )
    if version == 1:
        meta["checksum"] = None
    elif meta.get("checksum") != _CHECKSUM:
        raise ValueError(
            f"{user}: the {_META!r} record of {path!r} names the checksum "
            f"{meta.get('checksum')!r}, not {_CHECKSUM!r}; the database is corrupt"
        )
    if meta["size"] != size:
        raise ValueError(
            f"{user}: {path!r} holds {size} datapoints, but it was written with {meta['size']}; "
            "the database is corrupt"
        )
    return meta


class LMDBData(RNGDataFlow):
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
        keys = _check_keys(keys)
        self._shared: Optional[_SharedEnv] = None
        self._finalizer: Optional[weakref.finalize] = None
        with _borrowed_env(self.lmdb_path, self._user) as env:
            lmdb_error = import_optional("lmdb", self._user).Error
            try:
                with env.begin() as txn:
                    self._reserved: FrozenSet[bytes] = frozenset(
                        key for key in _RESERVED if txn.get(key) is not None
                    )
                    size = env.stat()["entries"] - len(self._reserved)
                    meta = _read_meta(txn, size, self.lmdb_path, self._user)
                    self._checksummed = meta is not None and meta["checksum"] is not None
                    # Whether data record i has the key b"%08d" % i, in key order.
                    self._numbered = meta is not None and size <= _SORTED_KEY_LIMIT
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
        raw = txn.get(_KEYS)
        keys: Any = None
        if raw is not None and not _is_pickle(raw):
            try:
                keys = _METADATA.loads(raw)
            except (TypeError, ValueError) as err:
                raise self._unreadable(_KEYS, err) from err
        elif raw is not None and self._allow_pickle:
            keys = pickle.loads(raw)
        if keys is None:
            _log.info("%s: listing the keys of %s by scanning it", self._user, self.lmdb_path)
            reserved = self._reserved
            return [key for key in txn.cursor().iternext(values=False) if key not in reserved]
        if not (isinstance(keys, list) and all(isinstance(key, bytes) for key in keys)):
            raise ValueError(
                f"{self._user}: the {_KEYS!r} record of {self.lmdb_path!r} is not a list of "
                "bytes keys; the database is corrupt"
            )
        if len(keys) != size:
            raise ValueError(
                f"{self._user}: the {_KEYS!r} record of {self.lmdb_path!r} lists {len(keys)} keys "
                f"but the database holds {size} records; the database is corrupt"
            )
        if ours and keys != [b"%08d" % i for i in range(size)]:
            raise ValueError(
                f"{self._user}: the {_KEYS!r} record of {self.lmdb_path!r} is not the key list "
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

    def __len__(self) -> int:
        return len(shard_range(self._size))

    def reset_state(self) -> None:
        super().reset_state()
        shared = _acquire(self.lmdb_path, self._user)
        self.close()  # after acquiring, so that a second reset keeps the environment open
        self._shared = shared
        self._finalizer = weakref.finalize(self, _release, shared)

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

    def __iter__(self) -> Iterator[Datapoint]:
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
        return self._iterate(shared.env)

    def _iterate(self, env: Any) -> Iterator[Datapoint]:
        make = self._datapoint
        lmdb_error = import_optional("lmdb", self._user).Error
        keys = self._keys
        shard = shard_range(self._size)
        if keys is not None:
            order = shard_order(len(keys), self.rng if self.shuffle else None)
            if order != range(len(keys)):
                keys = [keys[i] for i in order]
        in_place = self._in_place
        checksummed, view = self._checksummed, self._payload_view and not in_place
        crc32 = zlib.crc32
        key = None
        try:
            with env.begin(buffers=in_place) as txn:
                skip: FrozenSet[bytes] = frozenset()
                if keys is not None:
                    records: Iterator[Tuple[Any, Any]] = zip(keys, map(txn.get, keys))
                elif len(shard) < self._size:  # this worker's shard, in key order
                    records = _shard_of_records(txn.cursor(), self._reserved, shard, self._numbered)
                else:
                    records, skip = txn.cursor().iternext(), self._reserved
                for key, value in records:
                    if key in skip:
                        continue
                    if value is None:
                        raise KeyError(f"{self._user}: no record {key!r} in {self.lmdb_path!r}")
                    if checksummed:
                        if crc32(value, crc32(key)) != _CRC_RESIDUE:
                            raise self._mismatch(key)
                        value = memoryview(value)[:-_CRC_BYTES] if view else value[:-_CRC_BYTES]
                    try:
                        dp = make(key, value)
                    except Exception as err:
                        raise self._unreadable(key, err) from err
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


def _detail(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _shard_of_records(
    cursor: Any, reserved: FrozenSet[bytes], shard: range, numbered: bool
) -> Iterator[Tuple[Any, Any]]:
    """The ``(key, value)`` pairs of the data records whose positions in key
    order are in *shard*, a contiguous range; no other value is read, nor
    any record after the shard.

    With *numbered* (the data keys are ``b"%08d" % i`` in key order, as
    LMDBSerializer.save writes them below :data:`_SORTED_KEY_LIMIT` records)
    the cursor goes straight to the first key of the shard, and each key
    read must be the one expected there; a missing or unexpected one is
    yielded as ``(expected key, None)``, which the reader reports as a
    missing record. Otherwise the cursor steps over the keys before the
    shard (counting data records only: *reserved* keys are skipped).
    """
    start, stop = shard.start, shard.stop
    if start >= stop:
        return
    if numbered:
        found = cursor.set_key(b"%08d" % start)
        for i in range(start, stop):
            if i > start:
                found = cursor.next()
            expected, key = b"%08d" % i, cursor.key() if found else None
            if key != expected:
                yield expected, None
                return
            yield key, cursor.value()
        return
    position = 0
    for key in cursor.iternext(values=False):
        if key in reserved:
            continue
        if position >= start:
            yield key, cursor.value()
            if position + 1 == stop:
                return
        position += 1


def _first_value(txn: Any, reserved: FrozenSet[bytes]) -> Optional[bytes]:
    for key, value in txn.cursor():
        if key not in reserved:
            return value
    return None


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
            factory = _SERIALIZERS.get(meta["serializer"])
            if factory is None:
                raise ValueError(
                    f"{self._user}: {self.lmdb_path!r} was written with the serializer "
                    f"{meta['serializer']!r}; pass an instance of it as serializer="
                )
        else:  # written by tensorpack, with pickle (its default) or msgpack
            first = _first_value(txn, self._reserved)
            factory = (
                PickleSerializer if first is not None and _is_pickle(first) else MsgpackSerializer
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


# ---- writing -----------------------------------------------------------------


def _check_serializer(serializer: Any) -> Optional[Serializer]:
    if serializer is not None and not isinstance(serializer, Serializer):
        raise TypeError(
            "serializer must be None or a Serializer instance such as MsgpackSerializer(), "
            f"got {serializer!r}"
        )
    return serializer


def _output_file(path: str, overwrite: bool, user: str) -> str:
    """The data file to write for the database *path*, checked."""
    data_file, subdir = _data_file(path)
    parent = os.path.dirname(os.path.abspath(data_file))
    if not subdir and not os.path.isdir(parent):
        raise FileNotFoundError(f"{user}: the directory {parent!r} does not exist")
    if os.path.lexists(data_file) and not overwrite:
        raise FileExistsError(
            f"{user}: {data_file!r} already exists; pass overwrite=True to replace it"
        )
    return data_file


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
            value = payload + crc32(payload, crc32(key)).to_bytes(_CRC_BYTES, "little")
            batch.append((key, value))
            nbytes += len(key) + len(value)
            size += 1
            if nbytes >= _TXN_BYTES or len(batch) >= per_txn:
                writer.write(batch, nbytes, size <= _SORTED_KEY_LIMIT)
                batch = []
                nbytes = 0
    return size, batch, nbytes


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
        data_file = _output_file(path, overwrite, user)
        lmdb = import_optional("lmdb", user)
        with atomic_output(data_file) as tmp:
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
                meta = {
                    "format": _FORMAT,
                    "version": _VERSION,
                    "serializer": serializer.name,
                    "size": size,
                    "checksum": _CHECKSUM,
                }
                keys = [b"%08d" % i for i in range(size)]
                metadata = [(_KEYS, _METADATA.dumps(keys)), (_META, _METADATA.dumps(meta))]
                nbytes += sum(len(key) + len(value) for key, value in metadata)
                writer.write(batch, nbytes, size <= _SORTED_KEY_LIMIT, metadata)
                writer.close()
                env.sync(True)
            finally:
                if writer is not None:
                    with contextlib.suppress(OSError):
                        writer.close()  # after an error: only wait for the flush
                env.close()

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

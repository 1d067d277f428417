"""LMDB: store a dataflow in an LMDB database and read it back; read any LMDB database.

* :class:`LMDBSerializer` writes one serialized datapoint per record and
  loads such databases, including those written by tensorpack.
* :class:`LMDBData` yields the raw ``[key, value]`` records of any database;
  :class:`LMDBDataDecoder` turns them into datapoints with a function.

The ``lmdb`` package is imported only when a database is opened.

**The database layout** written by :meth:`LMDBSerializer.save`: the key of
datapoint *i* is ``b"%08d" % i``, its value the serialized datapoint. Two
more records follow the data: ``__keys__``, the msgpack list of every data
key (as tensorpack stores it), and ``__dataflow__``, a msgpack map with the
format name, its version, the serializer's name and the number of
datapoints.

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
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Optional, Tuple

from .._optional import import_optional
from ..base import DataFlow, Datapoint, ProxyDataFlow, RNGDataFlow, _check_seed
from ..serialize import MsgpackSerializer, PickleSerializer, Serializer
from ._files import atomic_output, check_path, reading

__all__ = ["LMDBData", "LMDBDataDecoder", "LMDBSerializer"]

_log = logging.getLogger(__name__)

_KEYS = b"__keys__"
_META = b"__dataflow__"
_RESERVED = (_KEYS, _META)
_FORMAT = "dataflow.LMDBSerializer"
_VERSION = 1
_SERIALIZERS: Dict[str, Callable[[], Serializer]] = {
    "msgpack": MsgpackSerializer,
    "pickle": PickleSerializer,
}
_INITIAL_MAP_SIZE = 1 << 30  # bytes; doubled whenever the database might fill it
_SLACK_PAGES = 64  # pages a commit may need besides the records: copied branches, free list
_NODE_BYTES = 64  # more than LMDB's bookkeeping bytes per record
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
    return env


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
    """The metadata that LMDBSerializer.save wrote, checked; ``None`` if there is none."""
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
    if meta.get("version") != _VERSION:
        raise ValueError(
            f"{user}: {path!r} has format version {meta.get('version')!r}, but this version of "
            f"dataflow reads version {_VERSION}"
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
    records, in the given order or shuffled.

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
                    self._inspect(txn, _read_meta(txn, size, self.lmdb_path, self._user))
                    if isinstance(keys, str):
                        keys = [keys.format(i).encode() for i in range(size)]
                    elif keys is None and shuffle:
                        keys = self._stored_keys(txn, size)
            except lmdb_error as err:
                raise self._corrupt(None, err) from err
        self._keys: Optional[List[bytes]] = keys
        self._size = size if keys is None else len(keys)

    def _inspect(self, txn: Any, meta: Optional[Dict[str, Any]]) -> None:
        """Check the database further when it is first opened (for subclasses)."""

    def _datapoint(self, key: bytes, value: bytes) -> Datapoint:
        """The datapoint of one record; an exception says the record is unreadable."""
        return [key, value]

    def _stored_keys(self, txn: Any, size: int) -> List[bytes]:
        """The keys of the data records: the ``__keys__`` record, or a scan."""
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
        return keys

    def _unreadable(self, key: bytes, err: BaseException) -> ValueError:
        return ValueError(
            f"{self._user}: record {bytes(key)!r} of {self.lmdb_path!r} cannot be read "
            f"({_detail(err)})"
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
        return self._size

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
        if keys is not None and self.shuffle:
            keys = [keys[i] for i in self.rng.permutation(len(keys)).tolist()]
        key = None
        try:
            with env.begin() as txn:
                if keys is None:
                    records, skip = txn.cursor().iternext(), self._reserved
                else:
                    records, skip = zip(keys, map(txn.get, keys)), frozenset()
                for key, value in records:
                    if key in skip:
                        continue
                    if value is None:
                        raise KeyError(f"{self._user}: no record {key!r} in {self.lmdb_path!r}")
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
    in the iterating thread.

    Args:
        lmdb_data: an :class:`LMDBData` (or any dataflow of ``[key, value]``).
        decoder: takes the key and the value (``bytes``) and returns a
            datapoint, or ``None`` to drop the record.

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

    def _datapoint(self, key: bytes, value: bytes) -> Datapoint:
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
    """Puts records into a new database, committing every *per_txn* records.

    It never lets a transaction fill the map: before a record might not fit,
    it commits and grows the map. So no record is ever lost to a full map,
    and none has to be kept in memory for a retry.
    """

    def __init__(self, env: Any, per_txn: int) -> None:
        self._env = env
        self._per_txn = per_txn
        self._page = env.stat()["psize"]
        self._begin(0)

    def _begin(self, cost: int) -> None:
        """Start a transaction with room for a record of *cost* bytes and more."""
        info = self._env.info()
        used = (info["last_pgno"] + 1 + _SLACK_PAGES) * self._page
        size = info["map_size"]
        while size - used < max(cost, size // 2):
            size *= 2
        if size != info["map_size"]:
            _log.info("growing the LMDB map to %.2f GB", size / 1e9)
            self._env.set_mapsize(size)
        self._room = size - used
        self._left = self._per_txn
        self._txn = self._env.begin(write=True)
        self._cursor_put = self._txn.cursor().put

    def put(self, key: bytes, value: bytes, append: bool) -> None:
        """Store a record; with *append*, *key* must sort after every key stored."""
        # A record takes at most twice its size in the map: leaf pages are at
        # least half full after a split, and so are the overflow pages that
        # hold a value too large for a leaf.
        cost = 2 * (len(key) + len(value) + _NODE_BYTES)
        if cost > self._room or not self._left:
            self.commit()
            self._begin(cost)
        self._room -= cost
        self._left -= 1
        stored = self._cursor_put(key, value, append=append)
        assert stored, f"LMDB did not store the record {key!r}"

    def commit(self) -> None:
        self._txn.commit()


def _write_datapoints(
    writer: _Writer, df: Any, serializer: Serializer, progress: bool, user: str
) -> int:
    """Write one pass of *df*; return the number of datapoints written."""
    dumps = serializer.dumps
    size = 0
    with reading(df, user, progress) as datapoints:
        for dp in datapoints:
            if not isinstance(dp, (list, dict)):
                raise TypeError(
                    f"{user} needs list or dict datapoints, got {type(dp).__name__} "
                    f"(datapoint {size})"
                )
            try:
                value = dumps(dp)
            except TypeError as err:
                raise TypeError(f"{user}: datapoint {size}: {err}") from err
            writer.put(b"%08d" % size, value, append=size < _SORTED_KEY_LIMIT)
            size += 1
    return size


class LMDBSerializer:
    """Store a dataflow in an LMDB database, one record per datapoint; load it back.

    Databases written by tensorpack's ``LMDBSerializer`` load as well: with
    msgpack values always, with pickle values (tensorpack's default) only
    when you allow it. See the module notes for the layout.

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
        error reaches the caller. The map grows as needed.

        Args:
            df: the dataflow to write, not yet reset; its datapoints must be
                lists or dicts.
            path: an existing directory (the database is ``data.mdb`` in it),
                or the path of the data file to create.
            write_frequency: datapoints per transaction, at least 1; LMDB
                holds the pages a transaction writes in memory until it commits.
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
            try:
                writer = _Writer(env, write_frequency)
                size = _write_datapoints(writer, df, serializer, progress, user)
                meta = {
                    "format": _FORMAT,
                    "version": _VERSION,
                    "serializer": serializer.name,
                    "size": size,
                }
                keys = [b"%08d" % i for i in range(size)]
                writer.put(_KEYS, _METADATA.dumps(keys), append=False)
                writer.put(_META, _METADATA.dumps(meta), append=False)
                writer.commit()
                env.sync(True)
            finally:
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
        record that cannot be decoded raises a ``ValueError`` naming the
        file and the key.

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
                false, or it is truncated or corrupt.
        """
        return _SerializedLMDBData(
            path, shuffle, _check_seed(seed), _check_serializer(serializer), allow_pickle
        )

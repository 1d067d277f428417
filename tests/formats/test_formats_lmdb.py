"""Tests of dataflow.formats.lmdb: LMDBSerializer, LMDBData, LMDBDataDecoder."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
import zlib

import msgpack
import msgpack_numpy
import numpy as np
import pytest
from _formats_common import (
    DTYPES,
    SHAPES,
    ClosedCounter,
    RaisingSource,
    Yields,
    assert_reads_its_shard,
    assert_runner_yields_each_once,
    assert_same_datapoints,
    assert_shuffles_within_its_shard,
    files_in,
    one_pass_in_a_forked_child,
    sample,
)

from dataflow import (
    DataFromList,
    LMDBData,
    LMDBDataDecoder,
    LMDBSerializer,
    check_dataflow,
)
from dataflow._worker_state import worker_context
from dataflow.formats import _lmdb_env, _lmdb_write
from dataflow.serialize import MsgpackSerializer, PickleSerializer
from dataflow.worker import WorkerInfo

lmdb = pytest.importorskip("lmdb")


def save(path, datapoints, **kwargs):
    kwargs.setdefault("progress", False)
    LMDBSerializer.save(Yields(datapoints), str(path), **kwargs)
    return str(path)


def load_all(path, shuffle=False, **kwargs):
    df = LMDBSerializer.load(path, shuffle=shuffle, **kwargs)
    df.reset_state()
    try:
        return list(df)
    finally:
        df.close()


def records(path):
    """Every record of the database at *path*, reserved ones included."""
    with lmdb.open(path, subdir=os.path.isdir(path), readonly=True, lock=False) as env:
        with env.begin() as txn:
            return dict(txn.cursor())


def rewrite(path, put=(), delete=()):
    """Change records of the (closed) database at *path* in place."""
    with lmdb.open(path, subdir=os.path.isdir(path), lock=False) as env:
        with env.begin(write=True) as txn:
            for key, value in put:
                txn.put(key, value)
            for key in delete:
                txn.delete(key)


def with_crc(key, payload):
    """The value LMDBSerializer.save stores for *payload* under *key*."""
    return payload + zlib.crc32(payload, zlib.crc32(key)).to_bytes(4, "little")


def checksum_error(path, key):
    return (
        f"LMDBSerializer.load: record {key!r} of {path!r} is corrupt: its CRC-32 checksum "
        "does not match its key and value"
    )


def tensorpack_dumps(codec):
    if codec == "pickle":
        return lambda obj: pickle.dumps(obj, protocol=-1)
    return lambda obj: msgpack.packb(obj, default=msgpack_numpy.encode, use_bin_type=True)


def write_like_tensorpack(path, datapoints, codec, with_keys=True):
    """Write what tensorpack 0.11's LMDBSerializer.save writes: keys '{:08}',
    values serialized with its serializer (pickle by default, msgpack with
    msgpack-numpy otherwise), and the key list under b'__keys__' serialized the
    same way. Older versions wrote no key list."""
    dumps = tensorpack_dumps(codec)
    path = str(path)
    with lmdb.open(path, subdir=os.path.isdir(path), map_size=1 << 26) as env:
        with env.begin(write=True) as txn:
            for idx, dp in enumerate(datapoints):
                txn.put(f"{idx:08}".encode("ascii"), dumps(dp))
            if with_keys:
                keys = [f"{k:08}".encode("ascii") for k in range(len(datapoints))]
                txn.put(b"__keys__", dumps(keys))
    return path


def _read_after_fork(df, sender):
    """In a forked child: try to iterate *df* as inherited, then reset it and read a pass."""
    try:
        iter(df)
    except RuntimeError as err:
        error = str(err)
    else:
        error = "iterating without reset_state() raised nothing"
    df.reset_state()
    sender.send((error, list(df)))
    df.close()
    sender.close()


FORMAT_STRING_MESSAGE = (
    "keys must be a format string of one index such as '{:08d}' when it is a str"
)


class CountingCursor:
    """An LMDB cursor that records the keys it visits and those whose values it reads."""

    def __init__(self, cursor, visited, values_read):
        self._cursor = cursor
        self._visited, self._values_read = visited, values_read

    def _visit(self, found):
        if found:
            self._visited.append(bytes(self._cursor.key()))
        return found

    def set_key(self, key):
        return self._visit(self._cursor.set_key(key))

    def next(self):
        return self._visit(self._cursor.next())

    def first(self):
        return self._visit(self._cursor.first())

    def key(self):
        return self._cursor.key()

    def value(self):
        self._values_read.append(bytes(self._cursor.key()))
        return self._cursor.value()

    def iternext(self, keys=True, values=True):
        found = self.first()
        while found:
            if keys and values:
                yield self.key(), self.value()
            elif keys:
                yield self.key()
            else:
                yield self.value()
            found = self.next()

    def __iter__(self):
        return self.iternext()


class CountingTxn:
    def __init__(self, txn, visited, values_read):
        self._txn = txn
        self._visited, self._values_read = visited, values_read

    def __enter__(self):
        self._txn.__enter__()
        return self

    def __exit__(self, *exc):
        return self._txn.__exit__(*exc)

    def cursor(self):
        return CountingCursor(self._txn.cursor(), self._visited, self._values_read)

    def get(self, key):
        self._values_read.append(bytes(key))
        return self._txn.get(key)


def reads_as_worker(df, info):
    """One pass of *df* (reset here) as worker *info*: ``(datapoints, the keys
    its cursors visited, the keys whose values it read)``, in order."""
    visited, values_read = [], []
    with worker_context(info):
        df.reset_state()
        iterate = df._iterate

        class Env:
            def __init__(self, env):
                self._env = env

            def begin(self, **kwargs):
                return CountingTxn(self._env.begin(**kwargs), visited, values_read)

        df._iterate = lambda env, *args: iterate(Env(env), *args)
        try:
            return list(df), visited, values_read
        finally:
            df.close()


def mixed(n):
    """*n* datapoints of several component types."""
    return [[np.full((2, 3), i, np.float32), i, f"s{i}", np.int16(-i)] for i in range(n)]


class TestLMDBSerializer:
    # ---- round trips -------------------------------------------------------------
    @pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
    def test_round_trip_keeps_values_dtypes_and_shapes(self, tmp_path, dtype):
        datapoints = [
            [sample(dtype, shape, seed=10 * k + j) for j, shape in enumerate(SHAPES)]
            for k in range(4)
        ]
        got = load_all(save(tmp_path / "db", datapoints))
        assert_same_datapoints(got, datapoints)

    def test_round_trip_of_dicts_scalars_and_nested_values(self, tmp_path):
        datapoints = [
            {
                "image": np.zeros((4, 4, 3), np.uint8),
                "label": 3,
                "meta": {"n": "a", "box": [1.5]},
            },
            {"image": np.ones((2, 5, 3), np.uint8), "label": -1, "meta": {"n": "b", "box": []}},
        ]
        got = load_all(save(tmp_path / "db", datapoints))
        assert got[0]["meta"] == {"n": "a", "box": [1.5]} and got[1]["label"] == -1
        assert [dp["image"].shape for dp in got] == [(4, 4, 3), (2, 5, 3)]

    def test_empty_dataset_round_trips(self, tmp_path):
        path = save(tmp_path / "db", [])
        assert load_all(path) == []
        assert check_dataflow(lambda: LMDBSerializer.load(path)) == []

    def test_keeps_the_contract_sequential_and_shuffled(self, tmp_path):
        path = save(tmp_path / "db", mixed(30))
        first = check_dataflow(lambda: LMDBSerializer.load(path, shuffle=False))
        assert [dp[1] for dp in first] == list(range(30))
        shuffled = check_dataflow(lambda: LMDBSerializer.load(path, seed=3))
        assert sorted(dp[1] for dp in shuffled) == list(range(30))

    def test_shuffles_anew_every_pass_and_reproducibly_with_a_seed(self, tmp_path):
        path = save(tmp_path / "db", mixed(40))
        a, b = LMDBSerializer.load(path, seed=5), LMDBSerializer.load(path, seed=5)
        a.reset_state()
        b.reset_state()
        passes_a = [[dp[1] for dp in a] for _ in range(2)]
        passes_b = [[dp[1] for dp in b] for _ in range(2)]
        assert passes_a == passes_b
        assert passes_a[0] != passes_a[1] and sorted(passes_a[0]) == list(range(40))
        a.close()
        b.close()

    def test_len_is_exact(self, tmp_path):
        path = save(tmp_path / "db", mixed(7))
        assert len(LMDBSerializer.load(path)) == 7 == len(LMDBSerializer.load(path, shuffle=False))

    def test_writes_into_an_existing_directory_or_a_single_file(self, tmp_path):
        directory = tmp_path / "dir"
        directory.mkdir()
        save(directory, mixed(3))
        assert files_in(directory) == ["data.mdb"]
        save(tmp_path / "single.lmdb", mixed(3))
        assert "single.lmdb" in files_in(tmp_path) and "single.lmdb-lock" not in files_in(tmp_path)
        for path in (directory, tmp_path / "single.lmdb"):
            assert [dp[1] for dp in load_all(path)] == [0, 1, 2]

    @pytest.mark.parametrize("as_directory", [False, True], ids=["file", "directory"])
    def test_paths_with_spaces_and_unicode_work(self, tmp_path, as_directory):
        path = tmp_path / "données d'été 数据.lmdb"  # a pathlib.Path, not a str
        if as_directory:
            path.mkdir()
        LMDBSerializer.save(DataFromList(mixed(3), shuffle=False), path, progress=False)
        assert [dp[1] for dp in load_all(path)] == [0, 1, 2]
        assert sorted(dp[1] for dp in load_all(path, shuffle=True)) == [0, 1, 2]
        assert len(check_dataflow(lambda: LMDBData(path))) == 3

    def test_stores_the_key_list_and_what_wrote_the_database(self, tmp_path):
        path = save(tmp_path / "db", mixed(3), serializer=PickleSerializer())
        stored = records(path)
        assert sorted(stored) == [
            b"00000000",
            b"00000001",
            b"00000002",
            b"__dataflow__",
            b"__keys__",
        ]
        assert msgpack.unpackb(stored[b"__keys__"]) == [b"00000000", b"00000001", b"00000002"]
        meta = msgpack.unpackb(stored[b"__dataflow__"])
        assert meta == {
            "format": "dataflow.LMDBSerializer",
            "version": 2,
            "serializer": "pickle",
            "size": 3,
            "checksum": "crc32",
        }
        for i in range(3):
            key = b"%08d" % i
            assert stored[key] == with_crc(key, pickle.dumps(mixed(3)[i], protocol=-1))

    def test_arrays_are_writable_unless_the_serializer_says_otherwise(self, tmp_path):
        path = save(tmp_path / "db", [[np.zeros(3)]])
        load_all(path)[0][0][:] = 1
        got = load_all(path, serializer=MsgpackSerializer(writable=False))
        assert not got[0][0].flags.writeable

    def test_grows_the_map_as_needed(self, tmp_path, monkeypatch):
        monkeypatch.setattr(_lmdb_write, "_INITIAL_MAP_SIZE", 1 << 16)
        datapoints = [[np.full(3000, i % 256, np.uint8)] for i in range(300)]
        datapoints.append([np.zeros(3 << 20, np.uint8)])  # larger than the map so far
        datapoints += [[np.full(10, i, np.int64)] for i in range(300)]
        path = save(tmp_path / "db", datapoints, write_frequency=100)
        assert_same_datapoints(load_all(path), datapoints)

    def test_grows_the_map_across_many_small_transactions(self, tmp_path, monkeypatch):
        monkeypatch.setattr(_lmdb_write, "_INITIAL_MAP_SIZE", 1 << 16)
        monkeypatch.setattr(_lmdb_write, "_TXN_BYTES", 5000)
        datapoints = [[np.full(1500 + i, i % 256, np.uint8), i] for i in range(400)]
        path = save(tmp_path / "db", datapoints)
        assert_same_datapoints(load_all(path), datapoints)

    @staticmethod
    def _transactions(monkeypatch):
        """The number of records of every write transaction, as a list filled while saving."""
        sizes = []
        write = _lmdb_write._Writer.write

        def counting(self, items, nbytes, append, more=()):
            sizes.append(len(items) + len(more))
            return write(self, items, nbytes, append, more)

        monkeypatch.setattr(_lmdb_write._Writer, "write", counting)
        return sizes

    def test_a_transaction_holds_at_most_write_frequency_records(self, tmp_path, monkeypatch):
        sizes = self._transactions(monkeypatch)
        path = save(tmp_path / "db", mixed(23), write_frequency=5)
        assert sizes == [5, 5, 5, 5, 3 + 2]  # the last one with the two metadata records
        assert [dp[1] for dp in load_all(path)] == list(range(23))

    def test_a_transaction_holds_about_txn_bytes_of_records(self, tmp_path, monkeypatch):
        monkeypatch.setattr(_lmdb_write, "_TXN_BYTES", 10_000)
        sizes = self._transactions(monkeypatch)
        # 1000-byte arrays: a transaction is full at its tenth record; a record
        # larger than the budget makes a transaction of its own.
        datapoints = [[np.full(1000, i, np.uint8)] for i in range(25)]
        datapoints[12] = [np.zeros(30_000, np.uint8)]
        path = save(tmp_path / "db", datapoints)
        assert sizes == [10, 3, 10, 2 + 2]
        assert_same_datapoints(load_all(path), datapoints)

    def test_an_empty_dataflow_writes_one_transaction_of_metadata(self, tmp_path, monkeypatch):
        sizes = self._transactions(monkeypatch)
        assert load_all(save(tmp_path / "db", [])) == []
        assert sizes == [2]

    @pytest.mark.skipif(not hasattr(os, "fdatasync"), reason="no os.fdatasync here")
    def test_a_failed_background_flush_is_an_error_and_leaves_nothing_behind(
        self, tmp_path, monkeypatch
    ):
        def failing(fd):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(_lmdb_write, "_TXN_BYTES", 1000)
        monkeypatch.setattr(os, "fdatasync", failing)
        with pytest.raises(OSError, match="Input/output error"):
            save(tmp_path / "db", [[np.zeros(800, np.uint8)] for _ in range(20)])
        assert files_in(tmp_path) == []

    def test_write_frequency_of_one_commits_every_datapoint(self, tmp_path):
        path = save(tmp_path / "db", mixed(5), write_frequency=1)
        assert [dp[1] for dp in load_all(path)] == list(range(5))

    def test_shows_a_progress_bar(self, tmp_path, capsys):
        LMDBSerializer.save(DataFromList(mixed(3), shuffle=False), str(tmp_path / "db"))
        assert "LMDBSerializer.save" in capsys.readouterr().err

    def test_resets_and_closes_the_source(self, tmp_path):
        source = ClosedCounter()
        LMDBSerializer.save(source, str(tmp_path / "db"), progress=False)
        assert (source.resets, source.closes) == (1, 1)

    # ---- writing errors ------------------------------------------------------------
    def test_refuses_to_overwrite_unless_told_to(self, tmp_path):
        path = save(tmp_path / "db", mixed(2))
        with pytest.raises(FileExistsError) as info:
            save(path, mixed(5))
        assert str(info.value) == (
            f"LMDBSerializer.save: {path!r} already exists; pass overwrite=True to replace it"
        )
        save(path, mixed(5), overwrite=True)
        assert len(load_all(path)) == 5

    def test_refuses_to_overwrite_a_database_directory(self, tmp_path):
        save(tmp_path, mixed(2))
        with pytest.raises(FileExistsError, match="data.mdb' already exists"):
            save(tmp_path, mixed(2))

    @pytest.mark.parametrize("as_directory", [False, True], ids=["file", "directory"])
    def test_a_failing_source_leaves_nothing_behind(self, tmp_path, as_directory):
        path = tmp_path / "out"
        if as_directory:
            path.mkdir()
        with pytest.raises(RuntimeError, match="source broke"):
            LMDBSerializer.save(RaisingSource(50), str(path), write_frequency=7, progress=False)
        assert files_in(path if as_directory else tmp_path) == []

    def test_an_unserializable_datapoint_is_named_and_leaves_nothing_behind(self, tmp_path):
        datapoints = [[1, {"meta": 2}], [3, {"meta": object()}]]
        with pytest.raises(TypeError) as info:
            save(tmp_path / "db", datapoints)
        assert str(info.value).startswith(
            "LMDBSerializer.save: datapoint 1: MsgpackSerializer cannot serialize a value of "
            "type 'object' at component 1, key 'meta'"
        )
        assert files_in(tmp_path) == []

    def test_refuses_datapoints_that_are_not_lists_or_dicts(self, tmp_path):
        with pytest.raises(TypeError) as info:
            save(tmp_path / "db", [[1], (2,)])
        assert str(info.value) == (
            "LMDBSerializer.save needs list or dict datapoints, got tuple (datapoint 1)"
        )

    @pytest.mark.parametrize(
        ("value", "error"),
        [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError)],
    )
    def test_write_frequency_must_be_a_positive_int(self, tmp_path, value, error):
        with pytest.raises(error) as info:
            save(tmp_path / "db", [], write_frequency=value)
        assert str(info.value) == f"write_frequency must be a positive int, got {value!r}"

    def test_serializer_must_be_an_instance(self, tmp_path):
        with pytest.raises(TypeError) as info:
            save(tmp_path / "db", [], serializer=MsgpackSerializer)
        assert str(info.value) == (
            "serializer must be None or a Serializer instance such as MsgpackSerializer(), "
            f"got {MsgpackSerializer!r}"
        )

    def test_path_must_be_a_path(self):
        with pytest.raises(TypeError, match="path must be a str or os.PathLike, got 3"):
            LMDBSerializer.save(DataFromList([]), 3)

    def test_the_directory_of_a_file_must_exist(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            save(tmp_path / "missing" / "db", [])

    # ---- loading, serializers and pickle ------------------------------------------------
    def test_pickled_databases_load_only_when_allowed(self, tmp_path):
        path = save(tmp_path / "db", mixed(3), serializer=PickleSerializer())
        with pytest.raises(ValueError) as info:
            LMDBSerializer.load(path)
        message = str(info.value)
        assert f"{path!r} holds pickled datapoints" in message
        assert "runs code chosen by whoever wrote the file" in message
        assert "pass allow_pickle=True" in message
        assert [dp[1] for dp in load_all(path, allow_pickle=True)] == [0, 1, 2]
        assert [dp[1] for dp in load_all(path, serializer=PickleSerializer())] == [0, 1, 2]

    def test_an_unknown_serializer_must_be_given(self, tmp_path):
        class Repr(PickleSerializer):
            name = "repr"

        path = save(tmp_path / "db", mixed(2), serializer=Repr())
        with pytest.raises(ValueError, match="written with the serializer 'repr'; pass an"):
            LMDBSerializer.load(path)
        assert len(load_all(path, serializer=Repr())) == 2

    def test_load_checks_its_arguments(self, tmp_path):
        path = save(tmp_path / "db", [])
        with pytest.raises(ValueError, match="seed must be None or a non-negative int, got -1"):
            LMDBSerializer.load(path, seed=-1)
        with pytest.raises(TypeError, match="serializer must be None or a Serializer"):
            LMDBSerializer.load(path, serializer="msgpack")
        with pytest.raises(FileNotFoundError, match="there is no LMDB database at"):
            LMDBSerializer.load(str(tmp_path / "nothing"))

    # ---- tensorpack's databases --------------------------------------------------------
    @pytest.mark.parametrize("with_keys", [True, False], ids=["keys", "no-keys"])
    @pytest.mark.parametrize("codec", ["msgpack", "pickle"])
    @pytest.mark.parametrize("as_directory", [False, True], ids=["file", "directory"])
    def test_loads_databases_written_by_tensorpack(self, tmp_path, codec, with_keys, as_directory):
        datapoints = mixed(12)
        path = tmp_path / "tp"
        if as_directory:
            path.mkdir()
        path = write_like_tensorpack(path, datapoints, codec, with_keys)
        allow = codec == "pickle"
        expected = [[dp[0], dp[1], dp[2], dp[3]] for dp in datapoints]
        assert_same_datapoints(load_all(path, allow_pickle=allow), expected)
        shuffled = check_dataflow(lambda: LMDBSerializer.load(path, allow_pickle=allow, seed=1))
        assert sorted(dp[1] for dp in shuffled) == list(range(12))

    def test_tensorpack_pickle_needs_permission(self, tmp_path):
        path = write_like_tensorpack(tmp_path / "tp", mixed(2), "pickle")
        with pytest.raises(ValueError, match="tensorpack writes pickle by default"):
            LMDBSerializer.load(path)

    def test_tensorpack_tuple_datapoints_come_back_as_lists(self, tmp_path):
        path = write_like_tensorpack(tmp_path / "tp", [(1, 2), (3, 4)], "pickle")
        assert load_all(path, allow_pickle=True) == [[1, 2], [3, 4]]

    @pytest.mark.skipif(
        importlib.util.find_spec("tensorpack") is None, reason="tensorpack is not installed"
    )
    @pytest.mark.timeout(60)
    def test_loads_databases_written_by_real_tensorpack(self, tmp_path):
        script = textwrap.dedent(
            """
            import sys, numpy as np
            import tensorpack.dataflow as tp
            from tensorpack.dataflow import serialize
            from tensorpack.utils.serialize import MsgpackSerializer, PickleSerializer
            data = [[np.arange(6, dtype=np.float32).reshape(2, 3) + i, i] for i in range(10)]
            for name, codec in (("pickle", PickleSerializer), ("msgpack", MsgpackSerializer)):
                serialize.dumps = codec.dumps
                tp.LMDBSerializer.save(tp.DataFromList(data, shuffle=False), sys.argv[1] + name)
            """
        )
        base = str(tmp_path / "tp-")
        subprocess.run([sys.executable, "-c", script, base], check=True, capture_output=True)
        expected = [[np.arange(6, dtype=np.float32).reshape(2, 3) + i, i] for i in range(10)]
        assert_same_datapoints(load_all(base + "pickle", allow_pickle=True), expected)
        assert_same_datapoints(load_all(base + "msgpack"), expected)

    # ---- corrupt and truncated databases --------------------------------------------------
    def test_a_corrupt_record_is_named_with_the_file(self, tmp_path):
        path = save(tmp_path / "db", mixed(5))
        rewrite(path, put=[(b"00000003", with_crc(b"00000003", b"\x94\xc1garbage"))])
        df = LMDBSerializer.load(path, shuffle=False)
        df.reset_state()
        with pytest.raises(ValueError) as info:
            list(df)
        assert str(info.value).startswith(
            f"LMDBSerializer.load: record b'00000003' of {path!r} cannot be read (FormatError"
        )
        df.close()

    def test_a_record_that_is_not_a_datapoint_is_an_error(self, tmp_path):
        path = save(tmp_path / "db", mixed(2))
        rewrite(path, put=[(b"00000001", with_crc(b"00000001", msgpack.packb(7)))])
        with pytest.raises(ValueError, match=r"record b'00000001' .* holds a int, not a list"):
            load_all(path)

    def test_a_missing_record_is_detected_when_loading(self, tmp_path):
        path = save(tmp_path / "db", mixed(4))
        rewrite(path, delete=[b"00000002"])
        with pytest.raises(ValueError, match="holds 3 datapoints, but it was written with 4"):
            LMDBSerializer.load(path)

    def test_a_truncated_file_is_refused_with_its_name(self, tmp_path):
        path = save(tmp_path / "db", [[np.zeros(5000, np.uint8)] for _ in range(20)])
        os.truncate(path, os.path.getsize(path) // 2)
        with pytest.raises(ValueError) as info:
            LMDBSerializer.load(path)
        assert f"the LMDB database {path!r} is truncated" in str(info.value)

    @pytest.mark.parametrize("shuffle", [False, True], ids=["sequential", "shuffled"])
    def test_a_damaged_page_is_an_error_naming_the_file(self, tmp_path, shuffle):
        path = save(tmp_path / "db", [[np.full(500, i, np.uint8)] for i in range(100)])
        with lmdb.open(path, subdir=False, readonly=True, lock=False) as env:
            page_size = env.stat()["psize"]
        with open(path, "rb") as f:
            raw = f.read()
        messages = []
        for page in range(2, len(raw) // page_size):  # pages 0 and 1 are the meta pages
            damaged = bytearray(raw)
            damaged[page * page_size + 10] ^= 0xFF  # the page's type flags
            copy = str(tmp_path / f"damaged page {page}")
            with open(copy, "wb") as f:
                f.write(damaged)
            try:
                load_all(copy, shuffle=shuffle)
            except ValueError as err:
                messages.append((copy, str(err)))
        # Branch and leaf pages: the check of the structure refuses the file
        # before LMDB reads it. Overflow pages: LMDB reads no flags of theirs.
        assert len(messages) > len(raw) // page_size // 2
        for copy, message in messages:
            assert message.startswith(
                f"LMDBSerializer.load: the LMDB database {copy!r} is corrupt: "
            )

    # ---- checksums ---------------------------------------------------------------------
    @staticmethod
    def _locate_values(path, datapoints, serializer):
        """``(key, start, end)`` of every stored value (payload and checksum)
        in the data file, found by searching it for the bytes. A page LMDB
        copied on write may leave a stale copy of a value in the file: the
        live one is the copy whose damage the reader notices."""
        with open(path, "rb") as f:
            raw = f.read()
        spans = []
        for i, dp in enumerate(datapoints):
            key = b"%08d" % i
            value = with_crc(key, serializer.dumps(dp))
            starts, m = [], raw.find(value)
            while m >= 0:
                starts.append(m)
                m = raw.find(value, m + 1)
            if len(starts) > 1:
                starts = [m for m in starts if TestLMDBSerializer._damage_is_noticed(path, raw, m)]
            assert len(starts) == 1 and starts[0] > 0, starts
            spans.append((key, starts[0], starts[0] + len(value)))
        return raw, spans

    @staticmethod
    def _damage_is_noticed(path, raw, start):
        """Whether loading fails with byte *start* of the file *raw* at *path* damaged."""
        TestLMDBSerializer._flip(path, raw, 8 * start)
        try:
            load_all(path, allow_pickle=True)
        except ValueError:
            return True
        finally:
            TestLMDBSerializer._flip(path, raw, 8 * start, flipped=False)
        return False

    @staticmethod
    def _flip(path, raw, bit, flipped=True):
        """Write byte ``bit // 8`` of the original file *raw* into *path*,
        with *bit* flipped or as it was."""
        with open(path, "r+b") as f:
            f.seek(bit // 8)
            f.write(bytes([raw[bit // 8] ^ (flipped << bit % 8)]))

    @pytest.mark.parametrize("codec", [MsgpackSerializer(), PickleSerializer()], ids=repr)
    def test_every_bit_flip_in_a_value_is_an_error_naming_the_file_and_key(self, tmp_path, codec):
        datapoints = [[i, f"s{i}", np.arange(3, dtype=np.int16) + i] for i in range(4)]
        path = save(tmp_path / "db", datapoints, serializer=codec)
        raw, spans = self._locate_values(path, datapoints, codec)
        flips = 0
        for key, start, end in spans:
            for bit in range(8 * start, 8 * end):
                self._flip(path, raw, bit)
                with pytest.raises(ValueError) as info:
                    load_all(path, allow_pickle=True)
                assert str(info.value) == checksum_error(path, key)
                self._flip(path, raw, bit, flipped=False)
                flips += 1
        assert flips == 8 * sum(end - start for _, start, end in spans)
        assert_same_datapoints(load_all(path, allow_pickle=True), datapoints)

    def test_bit_flips_in_a_large_value_are_errors_in_shuffled_passes_too(self, tmp_path):
        datapoints = [[np.arange(6000, dtype=np.uint16)], [1]]  # the first on overflow pages
        path = save(tmp_path / "db", datapoints)
        raw, [(key, start, end), _] = self._locate_values(path, datapoints, MsgpackSerializer())
        bits = list(range(8 * start, 8 * end, 61)) + list(range(8 * end - 40, 8 * end))
        for bit in bits:
            self._flip(path, raw, bit)
            for shuffle in (False, True):
                with pytest.raises(ValueError) as info:
                    load_all(path, shuffle=shuffle)
                assert str(info.value) == checksum_error(path, key)
            self._flip(path, raw, bit, flipped=False)
        assert_same_datapoints(load_all(path), datapoints)

    def test_every_bit_flip_in_a_key_is_an_error_naming_the_file(self, tmp_path):
        datapoints = [[i] for i in range(3)]
        path = save(tmp_path / "db", datapoints)
        raw, spans = self._locate_values(path, datapoints, MsgpackSerializer())
        for key, start, _ in spans:
            assert raw[start - 8 : start] == key  # a small value follows its key in the leaf
            for bit in range(8 * (start - 8), 8 * start):
                self._flip(path, raw, bit)
                with pytest.raises(ValueError) as info:
                    load_all(path)
                message = str(info.value)
                self._flip(path, raw, bit, flipped=False)
                assert message.startswith("LMDBSerializer.load: record b'"), message
                assert f" of {path!r} " in message

    def test_lmdb_data_yields_checked_payloads_without_the_checksum(self, tmp_path):
        datapoints = mixed(3)
        path = save(tmp_path / "db", datapoints)
        stored = records(path)
        got = check_dataflow(lambda: LMDBData(path, shuffle=False))
        assert got == [[key, stored[key][:-4]] for key in sorted(stored)[:3]]
        assert all(type(value) is bytes for _, value in got)
        loads = MsgpackSerializer().loads
        decode = lambda k, v: loads(v)  # noqa: E731
        decoded = check_dataflow(lambda: LMDBDataDecoder(LMDBData(path, seed=1), decode))
        assert sorted(dp[1] for dp in decoded) == [0, 1, 2]
        rewrite(path, put=[(b"00000001", stored[b"00000001"][:-1] + b"\0")])
        df = LMDBData(path, shuffle=False)
        df.reset_state()
        with pytest.raises(ValueError) as info:
            list(df)
        assert str(info.value) == checksum_error(path, b"00000001").replace(
            "LMDBSerializer.load", "LMDBData"
        )
        df.close()

    def test_read_only_arrays_stay_valid_after_close(self, tmp_path):
        datapoints = [[np.arange(2000, dtype=np.int32) + i] for i in range(3)]
        path = save(tmp_path / "db", datapoints)
        got = load_all(path, serializer=MsgpackSerializer(writable=False))  # closed here
        assert_same_datapoints(got, datapoints)

    def test_version_1_databases_load_unverified(self, tmp_path):
        datapoints = mixed(3)
        path = save(tmp_path / "db", datapoints)
        stored = records(path)
        meta = msgpack.unpackb(stored[b"__dataflow__"])
        del meta["checksum"]
        meta["version"] = 1
        values = [(key, stored[key][:-4]) for key in sorted(stored)[:3]]
        rewrite(path, put=[*values, (b"__dataflow__", msgpack.packb(meta))])
        assert_same_datapoints(load_all(path), datapoints)
        assert check_dataflow(lambda: LMDBData(path, shuffle=False)) == [list(v) for v in values]

    def test_version_2_metadata_must_name_the_checksum(self, tmp_path):
        path = save(tmp_path / "db", mixed(1))
        meta = msgpack.unpackb(records(path)[b"__dataflow__"])
        meta["checksum"] = "crc33"
        rewrite(path, put=[(b"__dataflow__", msgpack.packb(meta))])
        with pytest.raises(ValueError) as info:
            LMDBSerializer.load(path)
        assert str(info.value) == (
            f"LMDBSerializer.load: the b'__dataflow__' record of {path!r} names the checksum "
            "'crc33', not 'crc32'; the database is corrupt"
        )

    def test_a_key_list_with_other_keys_is_refused(self, tmp_path):
        path = save(tmp_path / "db", mixed(3))
        keys = [b"00000000", b"00000002", b"00000002"]  # one bit flipped in the second key
        rewrite(path, put=[(b"__keys__", msgpack.packb(keys))])
        with pytest.raises(ValueError, match="is not the key list that LMDBSerializer.save"):
            LMDBSerializer.load(path)
        assert [dp[1] for dp in load_all(path)] == [0, 1, 2]  # a sequential pass needs no list

    def test_a_file_that_is_not_lmdb_is_refused_with_its_name(self, tmp_path):
        path = tmp_path / "fake"
        path.write_bytes(b"not a database" * 1000)
        with pytest.raises(ValueError, match=f"cannot open {str(path)!r} as an LMDB database"):
            LMDBSerializer.load(str(path))

    def test_corrupt_metadata_and_newer_versions_are_refused(self, tmp_path):
        path = save(tmp_path / "db", mixed(1))
        rewrite(path, put=[(b"__dataflow__", b"\xc1")])
        with pytest.raises(ValueError, match="is not what LMDBSerializer.save writes"):
            LMDBSerializer.load(path)
        meta = {
            "format": "dataflow.LMDBSerializer",
            "version": 9,
            "serializer": "msgpack",
            "size": 1,
        }
        rewrite(path, put=[(b"__dataflow__", msgpack.packb(meta))])
        with pytest.raises(ValueError, match="has format version 9, but this version of dataflow"):
            LMDBSerializer.load(path)

    def test_a_corrupt_key_list_is_refused(self, tmp_path):
        path = save(tmp_path / "db", mixed(3))
        rewrite(path, put=[(b"__keys__", msgpack.packb([b"00000000"]))])
        with pytest.raises(ValueError, match="lists 1 keys but the database holds 3 records"):
            LMDBSerializer.load(path)

    # ---- processes and shared environments -------------------------------------------
    def test_a_forked_child_reads_while_the_parent_has_it_open(self, tmp_path):
        path = save(tmp_path / "db", mixed(6))
        parent = LMDBSerializer.load(path, shuffle=False)
        parent.reset_state()
        child_pass = one_pass_in_a_forked_child(LMDBSerializer.load(path, shuffle=False))
        assert [dp[1] for dp in child_pass] == list(range(6))
        assert [dp[1] for dp in parent] == list(range(6))
        parent.close()

    @pytest.mark.timeout(60)
    def test_a_reset_dataflow_forked_mid_pass_must_be_reset_again_in_the_child(self, tmp_path):
        path = save(tmp_path / "db", mixed(6))
        df = LMDBSerializer.load(path, seed=4)
        df.reset_state()
        first = next(iter(df))
        ctx = multiprocessing.get_context("fork")
        receiver, sender = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_read_after_fork, args=(df, sender))
        child.start()
        sender.close()
        try:
            assert receiver.poll(30), "the forked child sent nothing within 30 s"
            error, child_pass = receiver.recv()
        finally:
            receiver.close()
            child.join(10)
        assert child.exitcode == 0
        assert "was reset in process" in error and "call reset_state() in the process" in error
        assert sorted(dp[1] for dp in child_pass) == list(range(6))
        parent_pass = [dp[1] for dp in df]
        assert sorted(parent_pass) == list(range(6)) and first[1] in parent_pass
        df.close()

    def test_readers_of_one_file_share_an_environment(self, tmp_path):
        path = save(tmp_path / "db", mixed(4))
        a, b = LMDBSerializer.load(path, shuffle=False), LMDBSerializer.load(path, shuffle=False)
        a.reset_state()
        b.reset_state()
        shared = a._shared
        assert shared is b._shared and shared.users == 2
        a.close()
        assert [dp[1] for dp in b] == [0, 1, 2, 3]
        b.close()
        assert shared.users == 0 and shared.file_id not in _lmdb_env._SHARED

    def test_iterating_before_reset_state_is_an_error(self, tmp_path):
        df = LMDBSerializer.load(save(tmp_path / "db", mixed(1)))
        with pytest.raises(RuntimeError, match=r"call reset_state\(\) once, in the process"):
            iter(df)

    def test_iterating_in_another_process_than_the_reset_is_an_error(self, tmp_path):
        df = LMDBSerializer.load(save(tmp_path / "db", mixed(1)))
        df.reset_state()
        df._shared.pid += 1  # as if this were a forked child of the process that reset it
        try:
            with pytest.raises(RuntimeError, match=r"was reset in process \d+ but is iterated"):
                iter(df)
        finally:
            df._shared.pid -= 1
            df.close()

    def test_closing_during_a_pass_is_not_reported_as_corruption(self, tmp_path):
        df = LMDBSerializer.load(save(tmp_path / "db", mixed(3)), shuffle=False)
        df.reset_state()
        it = iter(df)
        next(it)
        df.close()
        with pytest.raises(RuntimeError, match="was closed during a pass; finish or abandon"):
            next(it)

    def test_reset_twice_and_close_twice_are_harmless(self, tmp_path):
        df = LMDBSerializer.load(save(tmp_path / "db", mixed(2)), shuffle=False)
        df.reset_state()
        df.reset_state()
        shared = df._shared
        assert shared.users == 1 and [dp[1] for dp in df] == [0, 1]
        df.close()
        df.close()
        assert shared.users == 0 and shared.file_id not in _lmdb_env._SHARED

    def test_a_reset_dataflow_pickles_without_its_environment(self, tmp_path):
        df = LMDBSerializer.load(save(tmp_path / "db", mixed(3)), shuffle=False)
        df.reset_state()
        copy = pickle.loads(pickle.dumps(df))
        df.close()
        with pytest.raises(RuntimeError, match="call reset_state"):
            iter(copy)
        copy.reset_state()
        assert [dp[1] for dp in copy] == [0, 1, 2]
        copy.close()

    def test_a_forgotten_dataflow_releases_its_environment(self, tmp_path):
        df = LMDBSerializer.load(save(tmp_path / "db", mixed(2)))
        df.reset_state()
        shared = df._shared
        del df
        assert shared.users == 0 and shared.file_id not in _lmdb_env._SHARED

    # ---- exactly-once runners: each worker reads its shard ----------------------------

    def test_each_worker_reads_only_its_shard(self, tmp_path):
        path = save(tmp_path / "db", mixed(10))
        assert_reads_its_shard(lambda shuffle: LMDBSerializer.load(path, shuffle, seed=3))

    def test_shards_a_tensorpack_database_with_or_without_its_key_list(self, tmp_path):
        for with_keys in (True, False):
            path = write_like_tensorpack(
                tmp_path / f"tp{with_keys}", mixed(7), "msgpack", with_keys=with_keys
            )
            assert_reads_its_shard(lambda shuffle, p=path: LMDBSerializer.load(p, shuffle))

    @pytest.mark.parametrize("num_workers", [2, 3])
    def test_a_worker_reads_only_the_records_of_its_block(self, tmp_path, num_workers):
        # On a database of save(), an in-order pass goes straight to the first
        # key of the worker's block: no other key is visited, no other value read.
        path = save(tmp_path / "db", [[i] for i in range(10)])
        for i in range(num_workers):
            block = range(i * 10 // num_workers, (i + 1) * 10 // num_workers)
            df = LMDBSerializer.load(path, shuffle=False)
            got, visited, values_read = reads_as_worker(df, WorkerInfo(i, num_workers, None, True))
            keys = [b"%08d" % k for k in block]
            assert got == [[k] for k in block]
            assert visited == values_read == keys

    def test_a_worker_reads_nothing_of_an_empty_block(self, tmp_path):
        path = save(tmp_path / "db", [[0], [1]])
        df = LMDBSerializer.load(path, shuffle=False)
        assert reads_as_worker(df, WorkerInfo(0, 3, None, True)) == ([], [], [])

    def test_a_missing_record_of_the_block_is_an_error(self, tmp_path):
        path = save(tmp_path / "db", [[i] for i in range(6)])
        rewrite(path, put=[(b"00000004x", b"")], delete=[b"00000004"])
        df = LMDBSerializer.load(path, shuffle=False)
        with pytest.raises(KeyError, match=r"no record b'00000004' in"):
            reads_as_worker(df, WorkerInfo(1, 2, None, True))
        rewrite(path, put=[(b"00000003x", b"")], delete=[b"00000003"])  # the block's first key
        with pytest.raises(KeyError, match=r"no record b'00000003' in"):
            reads_as_worker(LMDBSerializer.load(path, shuffle=False), WorkerInfo(1, 2, None, True))

    def test_a_shuffled_shard_is_shuffled_anew_every_pass(self, tmp_path):
        path = save(tmp_path / "db", mixed(12))
        assert_shuffles_within_its_shard(lambda shuffle: LMDBSerializer.load(path, shuffle, seed=5))

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("shuffle", [False, True])
    def test_an_exactly_once_runner_yields_every_datapoint_once_per_pass(self, tmp_path, shuffle):
        datapoints = mixed(9)
        path = save(tmp_path / "db", datapoints)
        expected = load_all(path)
        assert_runner_yields_each_once(LMDBSerializer.load(path, shuffle), expected)


class TestLMDBData:
    def test_yields_raw_records_without_the_reserved_ones(self, tmp_path):
        path = save(tmp_path / "db", [[1], [2]])
        got = check_dataflow(lambda: LMDBData(path, shuffle=False))
        assert got == [[b"00000000", msgpack.packb([1])], [b"00000001", msgpack.packb([2])]]

    def test_reads_any_database_in_key_order(self, tmp_path):
        path = str(tmp_path / "any")
        with lmdb.open(path, subdir=False) as env, env.begin(write=True) as txn:
            for key in (b"b", b"a", b"c"):
                txn.put(key, key.upper())
        assert check_dataflow(lambda: LMDBData(path, shuffle=False)) == [
            [b"a", b"A"],
            [b"b", b"B"],
            [b"c", b"C"],
        ]
        shuffled = check_dataflow(lambda: LMDBData(path, seed=0))  # keys found by scanning
        assert sorted(shuffled) == [[b"a", b"A"], [b"b", b"B"], [b"c", b"C"]]

    def test_keys_select_records_in_their_order(self, tmp_path):
        path = save(tmp_path / "db", [[i] for i in range(5)])
        df = LMDBData(path, shuffle=False, keys=["00000003", b"00000001"])
        assert len(df) == 2
        assert [k for k, _ in check_dataflow(lambda: df)] == [b"00000003", b"00000001"]

    def test_a_format_string_makes_the_keys(self, tmp_path):
        path = save(tmp_path / "db", [[i] for i in range(5)])
        got = check_dataflow(lambda: LMDBData(path, shuffle=True, keys="{:08d}", seed=2))
        assert sorted(k for k, _ in got) == [b"%08d" % i for i in range(5)]

    def test_a_missing_key_is_named(self, tmp_path):
        path = save(tmp_path / "db", [[1]])
        df = LMDBData(path, shuffle=False, keys=[b"nope"])
        df.reset_state()
        with pytest.raises(KeyError, match=r"LMDBData: no record b'nope' in "):
            list(df)
        df.close()

    def test_a_pickled_key_list_is_never_unpickled(self, tmp_path, monkeypatch):
        path = write_like_tensorpack(tmp_path / "tp", mixed(3), "pickle")

        def refuse(*args, **kwargs):
            raise AssertionError("pickle.loads was called")

        monkeypatch.setattr(pickle, "loads", refuse)
        got = check_dataflow(lambda: LMDBData(path, seed=1))
        assert sorted(k for k, _ in got) == [b"00000000", b"00000001", b"00000002"]

    @pytest.mark.parametrize(
        ("keys", "error", "message"),
        [
            (5, TypeError, "keys must be None, a format string or a list of bytes or str keys"),
            ("abc", ValueError, FORMAT_STRING_MESSAGE),
            ("{name}", ValueError, FORMAT_STRING_MESSAGE),
            ([b"a", 1], TypeError, "keys must hold bytes or str keys"),
        ],
    )
    def test_keys_are_checked(self, tmp_path, keys, error, message):
        path = save(tmp_path / "db", [])
        with pytest.raises(error) as info:
            LMDBData(path, keys=keys)
        tail = ", got 1 at index 1" if isinstance(keys, list) else f", got {keys!r}"
        assert str(info.value) == message + tail

    def test_lmdb_path_must_be_a_path(self):
        with pytest.raises(TypeError, match="lmdb_path must be a str or os.PathLike, got None"):
            LMDBData(None)

    def test_each_worker_reads_only_its_shard_of_any_database(self, tmp_path):
        # b"__keys__" sorts between the digit and the letter keys: positions
        # in the shard count data records only.
        path = str(tmp_path / "any")
        data_keys = [b"0", b"1", b"2", b"3", b"a", b"b", b"c"]
        with lmdb.open(path, subdir=False) as env, env.begin(write=True) as txn:
            for key in data_keys:
                txn.put(key, key.upper())
            txn.put(b"__keys__", msgpack.packb(data_keys))
        assert_reads_its_shard(lambda shuffle: LMDBData(path, shuffle, seed=1))

    def test_a_worker_walks_no_further_than_its_block_of_any_database(self, tmp_path):
        # Without save()'s numbered keys, the cursor steps over the keys before
        # the block (reading none of their values) and stops at its end.
        path = str(tmp_path / "any")
        data_keys = [b"0", b"1", b"2", b"3", b"a", b"b", b"c", b"d", b"e"]
        with lmdb.open(path, subdir=False) as env, env.begin(write=True) as txn:
            for key in data_keys:
                txn.put(key, key.upper())
            txn.put(b"__keys__", msgpack.packb(data_keys))
        everything = sorted([*data_keys, b"__keys__"])
        for i, block in enumerate([data_keys[0:3], data_keys[3:6], data_keys[6:9]]):
            df = LMDBData(path, shuffle=False)
            got, visited, values_read = reads_as_worker(df, WorkerInfo(i, 3, None, True))
            assert got == [[key, key.upper()] for key in block]
            assert values_read == block
            assert visited == everything[: everything.index(block[-1]) + 1]

    @pytest.mark.parametrize("keys", ["{:08d}", ["00000005", b"00000001", "00000003", "00000000"]])
    def test_each_worker_reads_only_its_shard_of_the_given_keys(self, tmp_path, keys):
        path = save(tmp_path / "db", [[i] for i in range(8)])
        assert_reads_its_shard(lambda shuffle: LMDBData(path, shuffle, keys, seed=2))


class TestLMDBDataDecoder:
    def test_decodes_records_and_drops_none(self, tmp_path):
        path = save(tmp_path / "db", [[i] for i in range(4)])

        def decode(key, value):
            n = int(key)
            return None if n == 2 else [n, msgpack.unpackb(value)[0] * 10]

        df = LMDBDataDecoder(LMDBData(path, shuffle=False), decode)
        df.reset_state()
        assert list(df) == [[0, 0], [1, 10], [3, 30]]
        assert len(df) == 4  # the dropped record is counted, as documented
        df.close()

    def test_keeps_the_contract(self, tmp_path):
        path = save(tmp_path / "db", [[i] for i in range(4)])
        got = check_dataflow(lambda: LMDBDataDecoder(LMDBData(path, seed=0), lambda k, v: [k]))
        assert sorted(got) == [[b"%08d" % i] for i in range(4)]

    def test_decoder_must_be_callable(self, tmp_path):
        path = save(tmp_path / "db", [])
        with pytest.raises(TypeError) as info:
            LMDBDataDecoder(LMDBData(path), "decode")
        assert str(info.value) == "decoder must be callable, got 'decode'"

    def test_lmdb_data_must_be_a_dataflow(self):
        with pytest.raises(TypeError, match="ds must be a DataFlow, got str"):
            LMDBDataDecoder("path", lambda k, v: [k])

    def test_each_worker_decodes_only_its_shard(self, tmp_path):
        path = save(tmp_path / "db", [[i] for i in range(7)])

        def make(shuffle):
            return LMDBDataDecoder(LMDBData(path, shuffle, seed=0), lambda k, v: [int(k), v])

        assert_reads_its_shard(make)

"""Resuming the readers of dataflow.formats: state_dict() / load_state_dict()
resume exactly (check_resume) on small files written here in each format, and
a resumed pass seeks: it reads none of the datapoints before its position
(counted, never timed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dataflow import (
    CaffeLMDB,
    DataFromList,
    HDF5Data,
    HDF5Serializer,
    LMDBData,
    LMDBDataDecoder,
    LMDBSerializer,
    NumpySerializer,
    SVMLightData,
)
from dataflow.testing import check_resume

lmdb = pytest.importorskip("lmdb")
h5py = pytest.importorskip("h5py")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N = 12


def datapoints(n=N):
    return [[i, np.full((2, 3), i, np.int16), f"s{i}"] for i in range(n)]


def lmdb_file(tmp_path, n=N):
    path = str(tmp_path / "data.lmdb")
    LMDBSerializer.save(DataFromList(datapoints(n), shuffle=False), path, progress=False)
    return path


def foreign_lmdb(tmp_path, n=N):
    """A database with keys that say nothing of the records' positions."""
    path = tmp_path / "foreign"
    path.mkdir()
    with lmdb.open(str(path)) as env, env.begin(write=True) as txn:
        for i in range(n):
            txn.put(b"key-%s" % bytes([97 + (i * 7) % 26]) * (1 + i % 3), b"v%d" % i)
    return str(path)


def caffe_lmdb(tmp_path, n=N):
    path = tmp_path / "caffe"
    path.mkdir()
    with lmdb.open(str(path)) as env, env.begin(write=True) as txn:
        for i in range(n):
            # a Datum: channels 1, height 1, width 2, data, label
            data = bytes([i, 255 - i])
            value = b"\x08\x01\x10\x01\x18\x02\x22\x02" + data + b"\x28" + bytes([i])
            txn.put(b"%08d_img.jpg" % i, value)
    return str(path)


def hdf5_file(tmp_path, n=N):
    path = str(tmp_path / "data.h5")
    with h5py.File(path, "w") as f:
        f["images"] = np.arange(n * 6, dtype=np.float32).reshape(n, 2, 3)
        f["labels"] = np.arange(n) * 10
    return path


def npz_file(tmp_path, n=N, keys=False):
    path = str(tmp_path / "data.npz")
    dps = [[i, np.arange(i % 3 + 1)] for i in range(n)]  # a ragged component
    if keys:
        dps = [{"x": x, "y": y} for x, y in dps]
    NumpySerializer.save(DataFromList(dps, shuffle=False), path, progress=False)
    return path


def svmlight_file(tmp_path, n=N):
    path = tmp_path / "data.svm"
    path.write_text("".join(f"{i % 2} 1:{i} 3:{i / 4}\n" for i in range(n)))
    return str(path)


def drop_odd(key, value):
    return None if int(key) % 2 else [int(key), bytes(value)]


# name -> (write the file under tmp_path, build a reader of it)
READERS = {
    "LMDBSerializer": (lmdb_file, lambda p, **kw: LMDBSerializer.load(p, **kw)),
    "LMDBData": (lmdb_file, lambda p, **kw: LMDBData(p, **kw)),
    "LMDBData foreign keys": (foreign_lmdb, lambda p, **kw: LMDBData(p, **kw)),
    "LMDBData key format": (lmdb_file, lambda p, **kw: LMDBData(p, keys="{:08d}", **kw)),
    "LMDBDataDecoder": (
        lmdb_file,
        lambda p, **kw: LMDBDataDecoder(LMDBData(p, **kw), drop_odd),
    ),
    "CaffeLMDB": (caffe_lmdb, lambda p, **kw: CaffeLMDB(p, **kw)),
    "HDF5Data": (hdf5_file, lambda p, **kw: HDF5Data(p, ["images", "labels"], **kw)),
    "NumpySerializer": (npz_file, lambda p, **kw: NumpySerializer.load(p, **kw)),
    "NumpySerializer dicts": (
        lambda t: npz_file(t, keys=True),
        lambda p, **kw: NumpySerializer.load(p, **kw),
    ),
    "SVMLightData": (svmlight_file, lambda p, **kw: SVMLightData(p, **kw)),
}


class TestResume:
    @pytest.mark.parametrize("shuffle", [False, True], ids=["in order", "shuffled"])
    @pytest.mark.parametrize("name", sorted(READERS))
    def test_resumes_exactly(self, tmp_path, name, shuffle):
        write, make = READERS[name]
        path = write(tmp_path)
        check_resume(lambda: make(path, shuffle=shuffle))  # unseeded: the state holds the RNG
        check_resume(lambda: make(path, shuffle=shuffle, seed=5))

    def test_state_in_order_is_a_position_and_shuffled_adds_one_random_state(self, tmp_path):
        path = lmdb_file(tmp_path)
        for shuffle, limit in [(False, 200), (True, 3600)]:
            df = LMDBSerializer.load(path, shuffle=shuffle, seed=0)
            df.reset_state()
            it = iter(df)
            next(it)
            state = df.state_dict()
            assert state["state"]["pos"] == 1
            assert len(json.dumps(state)) < limit
            df.close()

    @pytest.mark.parametrize("name", ["LMDBData foreign keys", "HDF5Data", "SVMLightData"])
    def test_get_reads_one_datapoint_and_leaves_the_position_alone(self, tmp_path, name):
        write, make = READERS[name]
        path = write(tmp_path)
        df = make(path, shuffle=False)
        df.reset_state()
        everything = list(df)
        it = iter(df)
        next(it), next(it)
        assert same(df.get(7), everything[7])
        state = df.state_dict()
        resumed = make(path, shuffle=False)
        resumed.reset_state()
        resumed.load_state_dict(state)
        assert same(list(resumed), everything[2:])
        df.close()
        resumed.close()

    def test_a_state_past_the_end_is_refused(self, tmp_path):
        df = HDF5Data(hdf5_file(tmp_path), ["labels"], shuffle=False)
        df.reset_state()
        state = df.state_dict()
        state["state"]["pos"] = N + 1
        with pytest.raises(ValueError, match=r"the position must be None or an int from 0 to"):
            df.load_state_dict(state)
        df.close()


def resumed_at(make, p):
    """A reader from *make()*, loaded with the state after *p* datapoints of its
    first pass, and the datapoints that pass had left."""
    original = make()
    original.reset_state()
    it = iter(original)
    for _ in range(p):
        next(it)
    state = json.loads(json.dumps(original.state_dict()))
    rest = list(it)
    original.close()
    resumed = make()
    resumed.reset_state()
    resumed.load_state_dict(state)
    return resumed, rest


def same(a, b):
    """Whether datapoints (or lists of them) are equal, arrays by dtype, shape and value."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))


class Counted:
    """A column (or dataset) that records the indices it is read at."""

    def __init__(self, column, log):
        self._column, self._log = column, log

    def __getitem__(self, index):
        self._log.append(index)
        return self._column[index]

    def __len__(self):
        return len(self._column)


class CountingCursor:
    """An LMDB cursor that records the keys it steps over and the values it reads."""

    def __init__(self, cursor, log):
        self._cursor, self._log = cursor, log

    def iternext(self, keys=True, values=True):
        for item in self._cursor.iternext(keys=keys, values=values):
            self._log.append(item[0] if isinstance(item, tuple) else item)
            yield item

    def value(self):
        self._log.append(bytes(self._cursor.key()))
        return self._cursor.value()

    def __getattr__(self, name):
        return getattr(self._cursor, name)


def count_lmdb_reads(df, log):
    """Make *df* (reset) record every key its transactions read or step over."""
    iterate = df._iterate

    class Txn:
        def __init__(self, txn):
            self._txn = txn

        def __enter__(self):
            self._txn.__enter__()
            return self

        def __exit__(self, *exc):
            return self._txn.__exit__(*exc)

        def get(self, key):
            log.append(bytes(key))
            return self._txn.get(key)

        def cursor(self):
            return CountingCursor(self._txn.cursor(), log)

    class Env:
        def __init__(self, env):
            self._env = env

        def begin(self, **kwargs):
            return Txn(self._env.begin(**kwargs))

    df._iterate = lambda env, *args: iterate(Env(env), *args)


class TestSeeking:
    """Loading the state after position p and reading the rest reads only the
    records from p on: checked by counting reads, for each format."""

    P = 9

    @pytest.mark.parametrize("shuffle", [False, True], ids=["in order", "shuffled"])
    @pytest.mark.parametrize(
        "write,make",
        [
            (lmdb_file, lambda p, **kw: LMDBSerializer.load(p, **kw)),
            (foreign_lmdb, lambda p, **kw: LMDBData(p, **kw)),
            (caffe_lmdb, lambda p, **kw: CaffeLMDB(p, **kw)),
        ],
        ids=["LMDBSerializer", "LMDBData foreign keys", "CaffeLMDB"],
    )
    def test_lmdb_reads_only_the_records_after_the_position(self, tmp_path, write, make, shuffle):
        path = write(tmp_path)
        df, rest = resumed_at(lambda: make(path, shuffle=shuffle, seed=3), self.P)
        log = []
        count_lmdb_reads(df, log)
        assert same(list(df), rest) and len(rest) == N - self.P
        data_keys = [key for key in log if not key.startswith(b"__")]
        assert len(data_keys) == N - self.P, log
        df.close()

    @pytest.mark.parametrize("shuffle", [False, True], ids=["in order", "shuffled"])
    def test_hdf5_reads_only_the_rows_after_the_position(self, tmp_path, shuffle):
        path = hdf5_file(tmp_path)
        df, rest = resumed_at(
            lambda: HDF5Data(path, ["images", "labels"], shuffle=shuffle, seed=3), self.P
        )
        log = []
        df._datasets = [Counted(d, log) for d in df._datasets]
        assert same(list(df), rest)
        rows = set()
        for index in log:
            rows.update(range(*index.indices(N)) if isinstance(index, slice) else [index])
        assert len(rows) == N - self.P
        df.close()

    @pytest.mark.parametrize("shuffle", [False, True], ids=["in order", "shuffled"])
    @pytest.mark.parametrize(
        "write,make",
        [
            (npz_file, lambda p, **kw: NumpySerializer.load(p, **kw)),
            (svmlight_file, lambda p, **kw: SVMLightData(p, **kw)),
        ],
        ids=["NumpySerializer", "SVMLightData"],
    )
    def test_in_memory_readers_read_only_the_rows_after_the_position(
        self, tmp_path, write, make, shuffle
    ):
        path = write(tmp_path)
        df, rest = resumed_at(lambda: make(path, shuffle=shuffle, seed=3), self.P)
        log = []
        df._columns = [Counted(c, log) for c in df._columns]
        assert same(list(df), rest)
        assert len(log) == (N - self.P) * len(df._columns)
        assert len(set(log)) == N - self.P


class TestResumeInANewProcess:
    def test_a_shuffled_lmdb_reader_resumes_from_json_in_a_new_process(self, tmp_path):
        path = lmdb_file(tmp_path, n=30)
        script = textwrap.dedent(
            """
            import json, sys
            from dataflow import BatchData, LMDBSerializer, SelectComponent

            df = BatchData(SelectComponent(LMDBSerializer.load(sys.argv[3], seed=7), [0]), 4)
            df.reset_state()
            if sys.argv[1] == "save":
                it = iter(df)
                for _ in range(3):
                    next(it)
                json.dump(df.state_dict(), open(sys.argv[2], "w"))
                rest = [b[0].tolist() for b in it] + [b[0].tolist() for b in df]
            else:
                df.load_state_dict(json.load(open(sys.argv[2])))
                rest = [b[0].tolist() for b in df] + [b[0].tolist() for b in df]
            df.close()
            print(json.dumps(rest))
            """
        )
        state = str(tmp_path / "state.json")
        env = dict(os.environ, PYTHONPATH=ROOT)

        def run(mode):
            out = subprocess.run(
                [sys.executable, "-c", script, mode, state, path],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                check=True,
            )
            return json.loads(out.stdout)

        uninterrupted = run("save")
        assert len(uninterrupted) == 4 + 7
        assert run("load") == uninterrupted


def test_hdf5_serializer_files_resume_too(tmp_path):
    path = str(tmp_path / "s.h5")
    dps = [dp[:2] for dp in datapoints(7)]
    HDF5Serializer.save(DataFromList(dps, shuffle=False), path, ["a", "b"], progress=False)
    check_resume(lambda: HDF5Serializer.load(path, ["a", "b"], seed=1))

"""Tests of dataflow.formats.hdf5: HDF5Data reads HDF5 files, HDF5Serializer writes them."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys

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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import dataflow.formats.hdf5 as hdf5_module
from dataflow import DataFromList, HDF5Data, HDF5Serializer, check_dataflow
from dataflow._worker_state import worker_context
from dataflow.worker import WorkerInfo

h5py = pytest.importorskip("h5py")


def save(tmp_path, datapoints, data_paths, name="data.h5", **kwargs):
    path = str(tmp_path / name)
    kwargs.setdefault("progress", False)
    HDF5Serializer.save(Yields(datapoints), path, data_paths, **kwargs)
    return path


def load_all(path, data_paths, **kwargs):
    df = HDF5Serializer.load(path, data_paths, shuffle=False, **kwargs)
    df.reset_state()
    try:
        return list(df)
    finally:
        df.close()


def make_file(tmp_path, name="made.h5", **datasets):
    path = str(tmp_path / name)
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f[key.replace("__", "/")] = value
    return path


def open_fds_to(path):
    """The file descriptors of this process open on *path*."""
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == os.path.abspath(path):
                fds.append(fd)
        except OSError:
            continue
    return fds


class TestHDF5Serializer:
    @pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
    def test_round_trip_keeps_values_dtypes_and_shapes(self, tmp_path, dtype):
        paths = [f"c{j}" for j in range(len(SHAPES))]
        datapoints = [
            [sample(dtype, shape, seed=10 * k + j) for j, shape in enumerate(SHAPES)]
            for k in range(4)
        ]
        got = load_all(save(tmp_path, datapoints, paths), paths)
        # 0-d components come back as numpy scalars: compare as arrays.
        assert_same_datapoints(got, datapoints)

    def test_python_scalars_and_bytes_round_trip(self, tmp_path):
        datapoints = [[i, i / 2, i % 2 == 0, complex(i, 1), b"ab%d" % i] for i in range(3)]
        paths = ["int", "float", "bool", "complex", "bytes"]
        got = load_all(save(tmp_path, datapoints, paths), paths)
        assert_same_datapoints(got, [[np.asarray(c)[()] for c in dp] for dp in datapoints])
        assert [type(c) for c in got[0]] == [
            np.int64,
            np.float64,
            np.bool_,
            np.complex128,
            np.bytes_,
        ]

    def test_nested_data_paths_make_groups(self, tmp_path):
        path = save(tmp_path, [[1, 2]], ["train/x", "train/y"])
        with h5py.File(path, "r") as f:
            assert sorted(f["train"]) == ["x", "y"]
        assert [[int(c) for c in dp] for dp in load_all(path, ["train/x", "train/y"])] == [[1, 2]]

    def test_empty_dataflow_gives_empty_datasets(self, tmp_path):
        path = save(tmp_path, [], ["x", "y"])
        assert check_dataflow(lambda: HDF5Serializer.load(path, ["x", "y"])) == []
        assert len(HDF5Data(path, ["x", "y"])) == 0

    @pytest.mark.parametrize("block_bytes", [1, 24, 1 << 20])
    def test_writes_and_reads_in_blocks_without_losing_rows(
        self, tmp_path, monkeypatch, block_bytes
    ):
        monkeypatch.setattr(hdf5_module, "_WRITE_BLOCK_BYTES", block_bytes)
        monkeypatch.setattr(hdf5_module, "_READ_BLOCK_BYTES", block_bytes)
        datapoints = [[np.int64(i), np.full(3, i, np.int16)] for i in range(25)]
        got = load_all(save(tmp_path, datapoints, ["a", "b"]), ["a", "b"])
        assert_same_datapoints(got, datapoints)

    def test_datasets_are_chunked_and_checksummed(self, tmp_path):
        path = save(tmp_path, [[np.zeros((2, 3))]] * 5, ["x"])
        with h5py.File(path, "r") as f:
            assert f["x"].fletcher32 and f["x"].shape == (5, 2, 3)

    @settings(
        max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(data=st.data())
    def test_load_of_save_gives_back_the_datapoints(self, tmp_path, data):
        # The law, for every input save() accepts: one shape and dtype per component.
        dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
        shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
        arrays = data.draw(st.lists(hnp.arrays(dtype, shape), max_size=5), label="arrays")
        datapoints = [[a] for a in arrays]
        got = load_all(save(tmp_path, datapoints, ["x"], overwrite=True), ["x"])
        assert len(got) == len(arrays)
        for a, (g,) in zip(arrays, got):
            g = np.asarray(g)
            assert (g.dtype, g.shape) == (a.dtype, a.shape)
            assert g.tobytes() == a.tobytes()  # NaN payloads and -0.0 too

    # ---- the writer --------------------------------------------------------------
    def test_refuses_to_overwrite_an_existing_file(self, tmp_path):
        path = save(tmp_path, [[1]], ["x"])
        with pytest.raises(FileExistsError) as err:
            save(tmp_path, [[2]], ["x"])
        assert str(err.value) == (
            f"HDF5Serializer.save: {path!r} already exists; pass overwrite=True to replace it"
        )
        assert int(load_all(path, ["x"])[0][0]) == 1

    def test_load_shards_like_hdf5_data(self, tmp_path):
        path = save(tmp_path, [[np.int32(i), np.full(2, i)] for i in range(8)], ["a", "b"])
        assert_reads_its_shard(lambda shuffle: HDF5Serializer.load(path, ["a", "b"], shuffle))

    def test_overwrite_replaces_the_file(self, tmp_path):
        path = save(tmp_path, [[1]], ["x"])
        save(tmp_path, [[2], [3]], ["y"], overwrite=True)
        assert [int(dp[0]) for dp in load_all(path, ["y"])] == [2, 3]

    def test_source_that_raises_leaves_no_file_behind(self, tmp_path):
        with pytest.raises(RuntimeError, match="source broke"):
            HDF5Serializer.save(RaisingSource(3), str(tmp_path / "a.h5"), ["x"], progress=False)
        assert files_in(tmp_path) == []

    def test_failed_overwrite_keeps_the_old_file(self, tmp_path):
        path = save(tmp_path, [[7]], ["x"])
        with pytest.raises(RuntimeError, match="source broke"):
            HDF5Serializer.save(RaisingSource(3), path, ["x"], overwrite=True, progress=False)
        assert files_in(tmp_path) == ["data.h5"]
        assert int(load_all(path, ["x"])[0][0]) == 7

    def test_resets_and_closes_the_source(self, tmp_path):
        src = ClosedCounter()
        HDF5Serializer.save(src, str(tmp_path / "a.h5"), ["x"], progress=False)
        assert (src.resets, src.closes) == (1, 1)

    def test_shows_a_progress_bar_unless_told_not_to(self, tmp_path, capsys):
        HDF5Serializer.save(DataFromList([[1]] * 3), str(tmp_path / "a.h5"), ["x"])
        assert "HDF5Serializer.save" in capsys.readouterr().err
        HDF5Serializer.save(DataFromList([[1]] * 3), str(tmp_path / "b.h5"), ["x"], progress=False)
        assert capsys.readouterr().err == ""

    @pytest.mark.parametrize(
        "datapoints, error, message",
        [
            (
                [{"x": 1}],
                TypeError,
                "HDF5Serializer.save needs list datapoints (one component per data path), "
                "got dict (datapoint 0)",
            ),
            (
                [[1, 2], (1, 2)],
                TypeError,
                "HDF5Serializer.save needs list datapoints (one component per data path), "
                "got tuple (datapoint 1)",
            ),
            (
                [[1, 2], [1]],
                ValueError,
                "HDF5Serializer.save: datapoint 1 has 1 components, but 2 data paths were "
                "given: ['x', 'y']",
            ),
            (
                [[1, np.zeros(2)], [2, np.zeros(3)]],
                ValueError,
                "HDF5Serializer.save: component 1 ('y') of datapoint 1 has shape (3,) and dtype "
                "float64, but datapoint 0 had shape (2,) and dtype float64; an HDF5 dataset has "
                "one row shape and one dtype",
            ),
            (
                [[1, 2], [3, 4.5]],
                ValueError,
                "HDF5Serializer.save: component 1 ('y') of datapoint 1 has shape () and dtype "
                "float64, but datapoint 0 had shape () and dtype int64; an HDF5 dataset has "
                "one row shape and one dtype",
            ),
        ],
    )
    def test_save_rejects_bad_datapoints_with_a_clear_error(
        self, tmp_path, datapoints, error, message
    ):
        with pytest.raises(error) as err:
            save(tmp_path, datapoints, ["x", "y"])
        assert str(err.value) == message
        assert files_in(tmp_path) == []

    @pytest.mark.parametrize("value, dtype", [("text", "<U4"), (None, "object")])
    def test_save_refuses_dtypes_hdf5_cannot_store(self, tmp_path, value, dtype):
        with pytest.raises(TypeError) as err:
            save(tmp_path, [[1, value]], ["x", "y"])
        assert str(err.value).startswith(
            f"HDF5Serializer.save: cannot create dataset 'y' for component 1 (shape (), "
            f"dtype {dtype}): "
        )
        assert files_in(tmp_path) == []

    @pytest.mark.parametrize(
        "data_paths, error, message",
        [
            ("x", TypeError, "data_paths must be a list of str, got 'x'"),
            (["x", 1], TypeError, "data_paths must be a list of str, got ['x', 1]"),
            ([], ValueError, "data_paths must be a non-empty list of distinct str, got []"),
            (
                ["x", "x"],
                ValueError,
                "data_paths must be a non-empty list of distinct str, got ['x', 'x']",
            ),
        ],
    )
    def test_data_paths_are_checked(self, tmp_path, data_paths, error, message):
        with pytest.raises(error) as err:
            HDF5Serializer.save(DataFromList([[1]]), str(tmp_path / "a.h5"), data_paths)
        assert str(err.value) == message
        path = make_file(tmp_path, x=np.arange(2))
        with pytest.raises(error) as err:
            HDF5Serializer.load(path, data_paths)
        assert str(err.value) == message

    def test_save_rejects_bad_arguments(self, tmp_path):
        with pytest.raises(TypeError) as err:
            HDF5Serializer.save([[1]], str(tmp_path / "a.h5"), ["x"])
        assert str(err.value) == "df must be a DataFlow, got list"
        with pytest.raises(IsADirectoryError, match="is a directory; give the path of a file"):
            HDF5Serializer.save(DataFromList([[1]]), str(tmp_path), ["x"], overwrite=True)

    def test_missing_h5py_says_how_to_install_it(self, tmp_path, monkeypatch):
        monkeypatch.setitem(sys.modules, "h5py", None)
        with pytest.raises(ImportError) as err:
            HDF5Serializer.save(DataFromList([[1]]), str(tmp_path / "a.h5"), ["x"])
        assert str(err.value) == (
            "HDF5Serializer needs the 'h5py' package: pip install 'dataflow-ml[hdf5]'"
        )


class TestHDF5Data:
    def test_reads_a_user_made_file_and_keeps_the_contract(self, tmp_path):
        images = np.arange(5 * 2 * 3, dtype=np.uint8).reshape(5, 2, 3)
        path = make_file(tmp_path, train__images=images, train__labels=np.arange(5) * 10)
        paths = ["train/images", "train/labels"]
        got = check_dataflow(lambda: HDF5Data(path, paths, shuffle=False))
        assert_same_datapoints(got, [[images[i], np.int64(10 * i)] for i in range(5)])
        got = check_dataflow(lambda: HDF5Data(path, paths))
        assert sorted(int(dp[1]) for dp in got) == [0, 10, 20, 30, 40]

    def test_shuffle_is_new_every_pass_and_reproducible_with_a_seed(self, tmp_path):
        path = make_file(tmp_path, x=np.arange(40))

        def passes(seed):
            with HDF5Data(path, ["x"], seed=seed) as df:
                df.reset_state()
                return [[int(dp[0]) for dp in df] for _ in range(3)]

        a, b, c = passes(3), passes(3), passes(4)
        assert a == b != c
        assert a[0] != a[1] and sorted(a[0]) == list(range(40))

    def test_len_is_exact_before_reset_state(self, tmp_path):
        assert len(HDF5Data(make_file(tmp_path, x=np.zeros((7, 2))), ["x"])) == 7

    # Rows are 24 bytes. 1: one row per read; 72: three rows of the shard per
    # read, the last block short; the default: the whole shard in one read.
    @pytest.mark.parametrize("block_bytes", [1, 72, 4 << 20])
    def test_each_worker_reads_only_its_shard(self, tmp_path, monkeypatch, block_bytes):
        monkeypatch.setattr(hdf5_module, "_READ_BLOCK_BYTES", block_bytes)
        path = make_file(tmp_path, x=np.arange(11 * 2).reshape(11, 2), y=np.arange(11) * 3)
        assert_reads_its_shard(lambda shuffle: HDF5Data(path, ["x", "y"], shuffle, seed=7))

    @pytest.mark.parametrize("block_bytes", [1, 72, 4 << 20])
    def test_a_worker_reads_only_slices_of_its_block(self, tmp_path, monkeypatch, block_bytes):
        # Every HDF5 read of a sharded, in-order pass is one step-1 slice inside
        # the worker's block of rows, and the slices together are the block.
        monkeypatch.setattr(hdf5_module, "_READ_BLOCK_BYTES", block_bytes)
        path = make_file(tmp_path, x=np.arange(11 * 2).reshape(11, 2), y=np.arange(11) * 3)
        reads = []
        getitem = h5py.Dataset.__getitem__

        def recording(dataset, index, *args, **kwargs):
            reads.append((dataset.name, index))
            return getitem(dataset, index, *args, **kwargs)

        monkeypatch.setattr(h5py.Dataset, "__getitem__", recording)
        for i, rows in enumerate([range(0, 3), range(3, 7), range(7, 11)]):
            with HDF5Data(path, ["x", "y"], shuffle=False) as df:
                with worker_context(WorkerInfo(i, 3, None, True)):
                    df.reset_state()
                    reads.clear()
                    assert [int(y) for _, y in df] == [3 * k for k in rows]
            for name in ("/x", "/y"):
                slices = [index for dataset, index in reads if dataset == name]
                assert all(type(s) is slice and s.step is None for s in slices)
                assert all(rows.start <= s.start < s.stop <= rows.stop for s in slices)
                assert [k for s in slices for k in range(s.start, s.stop)] == list(rows)

    def test_a_worker_does_not_read_the_chunks_of_other_blocks(self, tmp_path):
        # Rows of 8 bytes in chunks of 512 rows: worker 1 of 2 reads rows 512 ..
        # 1023, the second chunk only, so damage in the first chunk does not
        # reach it (with every other row, it would read and verify both).
        path = save(tmp_path, [[np.int64(7 * i)] for i in range(1024)], ["x"])
        with h5py.File(path, "r") as f:
            assert f["x"].chunks == (512,)
        with open(path, "rb") as f:
            data = bytearray(f.read())
        data[data.index(np.int64(7 * 100).tobytes())] ^= 1
        with open(path, "wb") as f:
            f.write(data)
        with HDF5Data(path, ["x"], shuffle=False) as df:
            with worker_context(WorkerInfo(1, 2, None, True)):
                df.reset_state()
                assert [int(x) for (x,) in df] == [7 * i for i in range(512, 1024)]
            with worker_context(WorkerInfo(0, 2, None, True)):
                with pytest.raises(OSError, match=r"^HDF5Data: cannot read rows 0\.\.511 "):
                    list(df)

    def test_a_shuffled_shard_is_shuffled_anew_every_pass(self, tmp_path):
        path = make_file(tmp_path, x=np.arange(12))
        assert_shuffles_within_its_shard(lambda shuffle: HDF5Data(path, ["x"], shuffle, seed=1))

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("shuffle", [False, True])
    def test_an_exactly_once_runner_yields_every_datapoint_once_per_pass(self, tmp_path, shuffle):
        path = make_file(tmp_path, x=np.arange(9 * 3).reshape(9, 3), y=np.arange(9))
        expected = load_all(path, ["x", "y"])
        assert_runner_yields_each_once(HDF5Data(path, ["x", "y"], shuffle), expected)

    def test_opens_the_file_only_between_reset_state_and_close(self, tmp_path):
        path = make_file(tmp_path, x=np.arange(3))
        df = HDF5Data(path, ["x"], shuffle=False)
        assert open_fds_to(path) == []
        df.reset_state()
        assert open_fds_to(path) != []
        df.close()
        df.close()
        assert open_fds_to(path) == []
        with pytest.raises(RuntimeError) as err:
            list(df)
        assert str(err.value) == (
            "HDF5Data has no open file: call reset_state() before iterating "
            "(and again after close())"
        )
        df.reset_state()
        assert [int(dp[0]) for dp in df] == [0, 1, 2]
        df.close()

    def test_can_be_pickled_before_reset_state(self, tmp_path):
        path = make_file(tmp_path, x=np.arange(3))
        copy = pickle.loads(pickle.dumps(HDF5Data(path, ["x"], shuffle=False)))
        copy.reset_state()
        assert [int(dp[0]) for dp in copy] == [0, 1, 2]
        copy.close()

    def test_a_dataflow_not_yet_reset_works_in_a_forked_child(self, tmp_path):
        path = make_file(tmp_path, x=np.arange(4), y=np.arange(8).reshape(4, 2))
        df = HDF5Data(path, ["x", "y"], shuffle=False)
        got = one_pass_in_a_forked_child(df)
        assert [(int(x), y.tolist()) for x, y in got] == [(i, [2 * i, 2 * i + 1]) for i in range(4)]
        df.reset_state()
        assert len(list(df)) == 4
        df.close()

    def test_each_datapoint_is_a_new_list_of_new_arrays(self, tmp_path):
        path = make_file(tmp_path, x=np.zeros((2, 3)))
        with HDF5Data(path, ["x"], shuffle=False) as df:
            df.reset_state()
            first = next(iter(df))
            first[0][:] = 5
            assert next(iter(df))[0].tolist() == [0, 0, 0]

    def test_import_dataflow_does_not_import_h5py(self):
        code = "import sys, dataflow; print('h5py' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.stdout.strip() == "False", out.stderr

    def test_missing_h5py_says_how_to_install_it(self, tmp_path, monkeypatch):
        path = make_file(tmp_path, x=np.arange(3))
        monkeypatch.setitem(sys.modules, "h5py", None)
        with pytest.raises(ImportError) as err:
            HDF5Data(path, ["x"])
        assert str(err.value) == (
            "HDF5Data needs the 'h5py' package: pip install 'dataflow-ml[hdf5]'"
        )

    # ---- errors, each message pinned ------------------------------------------------
    def test_datasets_of_different_lengths_are_refused(self, tmp_path):
        path = make_file(tmp_path, x=np.arange(3), y=np.arange(4))
        with pytest.raises(ValueError) as err:
            HDF5Data(path, ["x", "y"])
        assert str(err.value) == (
            f"HDF5Data: the datasets of {path!r} differ in length ('x' has 3, 'y' has 4 rows); "
            "every data path must name a dataset with one row per datapoint"
        )

    def test_a_missing_dataset_is_refused(self, tmp_path):
        path = make_file(tmp_path, x=np.arange(3), g__y=np.arange(3))
        with pytest.raises(ValueError) as err:
            HDF5Data(path, ["x", "z"])
        assert (
            str(err.value)
            == f"HDF5Data: {path!r} has no dataset 'z'; its top level holds ['g', 'x']"
        )

    def test_a_group_or_a_scalar_is_refused(self, tmp_path):
        path = make_file(tmp_path, g__y=np.arange(3), s=np.float64(1.5))
        with pytest.raises(ValueError) as err:
            HDF5Data(path, ["g"])
        assert str(err.value) == f"HDF5Data: 'g' in {path!r} is a group, not a dataset"
        with pytest.raises(ValueError) as err:
            HDF5Data(path, ["s"])
        assert str(err.value) == (
            f"HDF5Data: dataset 's' in {path!r} is a scalar; every data path must name a "
            "dataset with one row per datapoint"
        )

    def test_a_missing_file_is_a_file_not_found_error(self, tmp_path):
        path = str(tmp_path / "nope.h5")
        with pytest.raises(FileNotFoundError) as err:
            HDF5Data(path, ["x"])
        assert str(err.value) == f"HDF5Data: {path!r} does not exist"

    def test_every_truncation_is_an_error_naming_the_file(self, tmp_path):
        path = save(tmp_path, [[np.arange(i, i + 50)] for i in range(40)], ["x"])
        with open(path, "rb") as f:
            data = f.read()
        cut = str(tmp_path / "cut.h5")
        for n in range(0, len(data), len(data) // 40):
            with open(cut, "wb") as f:
                f.write(data[:n])
            with pytest.raises(
                OSError, match=re.escape(f"HDF5Data: cannot open {cut!r} as an HDF5 file: ")
            ):
                HDF5Data(cut, ["x"])

    def test_corrupt_data_is_an_error_naming_the_file_and_row_never_garbage(self, tmp_path):
        path = save(tmp_path, [[np.int64(7 * i)] for i in range(1000)], ["x"])
        with open(path, "rb") as f:
            data = bytearray(f.read())
        data[data.index(np.int64(7 * 500).tobytes())] ^= 1
        with open(path, "wb") as f:
            f.write(data)
        for shuffle, rows in [(False, r"rows 0\.\.999"), (True, r"row \d+")]:
            with HDF5Data(path, ["x"], shuffle) as df:
                df.reset_state()
                with pytest.raises(
                    OSError, match=f"^HDF5Data: cannot read {rows} of {re.escape(repr(path))}: "
                ):
                    list(df)
        with HDF5Data(path, ["x"], shuffle=False) as df:
            with worker_context(WorkerInfo(1, 2, None, True)):  # its block: rows 500 .. 999
                df.reset_state()
                with pytest.raises(
                    OSError,
                    match=f"^HDF5Data: cannot read rows 500\\.\\.999 of {re.escape(repr(path))}: ",
                ):
                    list(df)

    def test_a_file_changed_before_reset_state_is_refused(self, tmp_path):
        path = make_file(tmp_path, x=np.arange(3))
        df = HDF5Data(path, ["x"])
        make_file(tmp_path, x=np.arange(5))
        with pytest.raises(RuntimeError) as err:
            df.reset_state()
        assert str(err.value) == (
            f"HDF5Data: {path!r} changed since this HDF5Data was created: its datasets had 3 "
            "rows and now have 5; create a new HDF5Data"
        )
        assert open_fds_to(path) == []

    def test_bad_arguments_are_refused(self, tmp_path):
        path = make_file(tmp_path, x=np.arange(3))
        with pytest.raises(TypeError) as err:
            HDF5Data(3, ["x"])
        assert str(err.value) == "filename must be a str or os.PathLike, got 3"
        with pytest.raises(TypeError) as err:
            HDF5Data(path, ["x"], seed=1.5)
        assert str(err.value) == "seed must be None or a non-negative int, got 1.5"

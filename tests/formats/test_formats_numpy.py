"""Tests of dataflow.formats.numpy: NumpySerializer writes and reads .npz files."""

from __future__ import annotations

import json
import os
import pathlib
import re
import zipfile

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
    sample,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dataflow import DataFromList, NumpySerializer, check_dataflow


def save(tmp_path, datapoints, name="data.npz", **kwargs):
    path = str(tmp_path / name)
    kwargs.setdefault("progress", False)
    NumpySerializer.save(Yields(datapoints), path, **kwargs)
    return path


def load_all(path, **kwargs):
    df = NumpySerializer.load(path, shuffle=False, **kwargs)
    df.reset_state()
    return list(df)


def round_trip(tmp_path, datapoints):
    return load_all(save(tmp_path, datapoints))


def as_stored(dp):
    """*dp* with Python scalars replaced by the numpy scalars they are stored as."""
    if isinstance(dp, dict):
        return {k: np.asarray(v)[()] for k, v in dp.items()}
    return [np.asarray(v)[()] for v in dp]


class TestNumpySerializer:
    # ---- round trips -------------------------------------------------------------
    @pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
    def test_round_trip_keeps_values_dtypes_and_shapes(self, tmp_path, dtype):
        datapoints = [
            [sample(dtype, shape, seed=10 * k + j) for j, shape in enumerate(SHAPES)]
            for k in range(4)
        ]
        assert_same_datapoints(round_trip(tmp_path, datapoints), datapoints)

    @pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
    def test_round_trip_of_components_whose_shapes_differ(self, tmp_path, dtype):
        shapes = [(2, 3), (0, 3), (4, 1), (1, 5)]
        datapoints = [[sample(dtype, shape, seed=k)] for k, shape in enumerate(shapes)]
        assert_same_datapoints(round_trip(tmp_path, datapoints), datapoints)
        entries = np.load(str(tmp_path / "data.npz"), allow_pickle=False)
        assert entries["c0_shapes"].tolist() == [list(s) for s in shapes]

    def test_python_scalars_come_back_as_numpy_scalars(self, tmp_path):
        datapoints = [[i, i / 2, i % 2 == 0, complex(i, 1)] for i in range(3)]
        got = round_trip(tmp_path, datapoints)
        assert_same_datapoints(got, [as_stored(dp) for dp in datapoints])
        assert [type(c) for c in got[0]] == [np.int64, np.float64, np.bool_, np.complex128]

    def test_str_and_bytes_of_different_lengths_round_trip(self, tmp_path):
        datapoints = [["", b"x"], ["héllo", b""], ["ab", b"\x00\xffzz"]]
        got = round_trip(tmp_path, datapoints)
        assert [[str(s), bytes(b)] for s, b in got] == datapoints

    def test_dict_datapoints_round_trip(self, tmp_path):
        datapoints = [{"image": np.full((2, 2), i, np.uint8), "label": i} for i in range(3)]
        got = round_trip(tmp_path, datapoints)
        assert_same_datapoints(got, [as_stored(dp) for dp in datapoints])
        assert [list(dp) for dp in got] == [["image", "label"]] * 3

    def test_dict_keys_may_come_in_any_order(self, tmp_path):
        got = round_trip(tmp_path, [{"a": 1, "b": 2}, {"b": 4, "a": 3}])
        assert [(int(dp["a"]), int(dp["b"])) for dp in got] == [(1, 2), (3, 4)]

    def test_empty_dataflow_round_trips_to_an_empty_dataflow(self, tmp_path):
        path = save(tmp_path, [])
        assert check_dataflow(lambda: NumpySerializer.load(path)) == []
        assert len(NumpySerializer.load(path)) == 0

    def test_datapoints_without_components_round_trip(self, tmp_path):
        assert round_trip(tmp_path, [[], [], []]) == [[], [], []]

    @settings(
        max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(data=st.data())
    def test_load_of_save_gives_back_the_datapoints(self, tmp_path, data):
        # The law, for every input save() accepts: one dtype and ndim per component.
        dtype = data.draw(hnp.scalar_dtypes(), label="dtype")
        ndim = data.draw(st.integers(0, 3), label="ndim")
        shapes = hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=0, max_side=3)
        datapoint = st.tuples(hnp.arrays(dtype, shapes), st.integers(-(2**63), 2**63 - 1))
        datapoints = [list(dp) for dp in data.draw(st.lists(datapoint, max_size=5))]
        got = load_all(save(tmp_path, datapoints, overwrite=True))
        assert len(got) == len(datapoints)
        for (array, label), (got_array, got_label) in zip(datapoints, got):
            # A 0-d component comes back as a numpy scalar, and those are native-endian.
            dtype = array.dtype if ndim else array.dtype.newbyteorder("=")
            assert (got_array.dtype, got_array.shape) == (dtype, array.shape)
            assert np.asarray(got_array, array.dtype).tobytes() == array.tobytes()
            assert type(got_label) is np.int64 and got_label == label

    # ---- the loader --------------------------------------------------------------
    def test_loader_keeps_the_contract(self, tmp_path):
        path = save(tmp_path, [[i, np.arange(i % 3)] for i in range(10)])
        check_dataflow(lambda: NumpySerializer.load(path, shuffle=False))
        got = check_dataflow(lambda: NumpySerializer.load(path))
        assert sorted(int(dp[0]) for dp in got) == list(range(10))

    def test_unshuffled_yields_the_file_order(self, tmp_path):
        path = save(tmp_path, [[i] for i in range(6)])
        assert [int(dp[0]) for dp in load_all(path)] == list(range(6))

    def test_shuffle_is_new_every_pass_and_reproducible_with_a_seed(self, tmp_path):
        path = save(tmp_path, [[i] for i in range(40)])

        def passes(seed):
            df = NumpySerializer.load(path, seed=seed)
            df.reset_state()
            return [[int(dp[0]) for dp in df] for _ in range(3)]

        a, b, c = passes(3), passes(3), passes(4)
        assert a == b != c
        assert a[0] != a[1] and sorted(a[0]) == list(range(40))

    def test_len_is_exact_before_reset_state(self, tmp_path):
        assert len(NumpySerializer.load(save(tmp_path, [[i] for i in range(7)]))) == 7

    @pytest.mark.parametrize("as_dict", [False, True], ids=["lists", "dicts"])
    def test_each_worker_reads_only_its_shard(self, tmp_path, as_dict):
        datapoints = [[i, np.arange(i % 4)] for i in range(10)]  # a ragged component
        if as_dict:
            datapoints = [{"i": i, "a": a} for i, a in datapoints]
        path = save(tmp_path, datapoints)
        assert_reads_its_shard(lambda shuffle: NumpySerializer.load(path, shuffle, seed=2))

    def test_a_shuffled_shard_is_shuffled_anew_every_pass(self, tmp_path):
        path = save(tmp_path, [[i] for i in range(12)])
        assert_shuffles_within_its_shard(
            lambda shuffle: NumpySerializer.load(path, shuffle, seed=4)
        )

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("shuffle", [False, True])
    def test_an_exactly_once_runner_yields_every_datapoint_once_per_pass(self, tmp_path, shuffle):
        path = save(tmp_path, [[i, np.full((2, 2), i, np.float32)] for i in range(9)])
        assert_runner_yields_each_once(NumpySerializer.load(path, shuffle), load_all(path))

    def test_loaded_arrays_are_read_only(self, tmp_path):
        path = save(tmp_path, [[np.zeros(2)], [np.zeros(3)]])  # a ragged component
        path2 = save(tmp_path, [[np.zeros(2)], [np.zeros(2)]], name="b.npz")
        for dp in load_all(path) + load_all(path2):
            with pytest.raises(ValueError, match="read-only"):
                dp[0][0] = 1

    def test_each_datapoint_is_a_new_list(self, tmp_path):
        df = NumpySerializer.load(save(tmp_path, [[1, 2]]), shuffle=False)
        df.reset_state()
        first = next(iter(df))
        first[0] = "changed"
        assert int(next(iter(df))[0]) == 1

    def test_file_is_a_plain_npz_without_pickle(self, tmp_path):
        path = save(tmp_path, [[np.arange(3), "a"], [np.arange(3), "bc"]])
        with np.load(path, allow_pickle=False) as entries:
            assert sorted(entries.files) == ["__dataflow__", "c0", "c1"]
            assert entries["c0"].shape == (2, 3)
            meta = json.loads(entries["__dataflow__"].item())
        assert meta == {
            "format": "dataflow.NumpySerializer",
            "version": 1,
            "size": 2,
            "keys": None,
            "ragged": [False, False],
        }

    # ---- the writer --------------------------------------------------------------
    def test_refuses_to_overwrite_an_existing_file(self, tmp_path):
        path = save(tmp_path, [[1]])
        with pytest.raises(FileExistsError) as err:
            save(tmp_path, [[2]])
        assert str(err.value) == (
            f"NumpySerializer.save: {path!r} already exists; pass overwrite=True to replace it"
        )
        assert int(load_all(path)[0][0]) == 1

    def test_overwrite_replaces_the_file(self, tmp_path):
        path = save(tmp_path, [[1]])
        save(tmp_path, [[2], [3]], overwrite=True)
        assert [int(dp[0]) for dp in load_all(path)] == [2, 3]

    def test_refuses_a_directory(self, tmp_path):
        with pytest.raises(IsADirectoryError, match="is a directory; give the path of a file"):
            NumpySerializer.save(DataFromList([[1]]), str(tmp_path), overwrite=True)

    def test_refuses_a_path_in_a_missing_directory(self, tmp_path):
        path = str(tmp_path / "nope" / "a.npz")
        with pytest.raises(FileNotFoundError) as err:
            NumpySerializer.save(DataFromList([[1]]), path)
        assert str(err.value) == f"NumpySerializer.save: the directory of {path!r} does not exist"

    def test_source_that_raises_leaves_no_file_behind(self, tmp_path):
        path = str(tmp_path / "data.npz")
        with pytest.raises(RuntimeError, match="source broke"):
            NumpySerializer.save(RaisingSource(3), path, progress=False)
        assert files_in(tmp_path) == []

    def test_failed_overwrite_keeps_the_old_file(self, tmp_path):
        path = save(tmp_path, [[7]])
        with pytest.raises(RuntimeError, match="source broke"):
            NumpySerializer.save(RaisingSource(3), path, overwrite=True, progress=False)
        assert files_in(tmp_path) == ["data.npz"]
        assert int(load_all(path)[0][0]) == 7

    def test_resets_and_closes_the_source(self, tmp_path):
        src = ClosedCounter()
        NumpySerializer.save(src, str(tmp_path / "a.npz"), progress=False)
        assert (src.resets, src.closes) == (1, 1)

    def test_shows_a_progress_bar_unless_told_not_to(self, tmp_path, capsys):
        NumpySerializer.save(DataFromList([[1]] * 3), str(tmp_path / "a.npz"))
        assert "NumpySerializer.save" in capsys.readouterr().err
        NumpySerializer.save(DataFromList([[1]] * 3), str(tmp_path / "b.npz"), progress=False)
        assert capsys.readouterr().err == ""

    # ---- errors of save(), each message pinned -------------------------------------
    @pytest.mark.parametrize(
        "datapoints, error, message",
        [
            ([(1, 2)], TypeError, "NumpySerializer.save needs list or dict datapoints, got tuple"),
            ([{1: 2}], TypeError, "NumpySerializer.save needs str dict keys, got 1"),
            (
                [[1], {"a": 1}],
                TypeError,
                "NumpySerializer.save: datapoint 1 is a dict, but datapoint 0 is a list",
            ),
            (
                [{"a": 1}, [1]],
                TypeError,
                "NumpySerializer.save: datapoint 1 is a list, but datapoint 0 is a dict",
            ),
            (
                [[1, 2], [1]],
                ValueError,
                "NumpySerializer.save: datapoint 1 has 1 components, but datapoint 0 has 2; "
                "every datapoint needs the same number of components",
            ),
            (
                [{"a": 1}, {"b": 1}],
                ValueError,
                "NumpySerializer.save: datapoint 1 has keys ['b'], but datapoint 0 has ['a']; "
                "every datapoint needs the same keys",
            ),
            (
                [[1, None]],
                TypeError,
                "NumpySerializer.save cannot store component 1 of datapoint 0 without pickle: "
                "it has dtype object (NoneType); give each component as a bool, number, str, "
                "bytes or a regular array of them",
            ),
            (
                [[np.int32(1)], [np.int64(1)]],
                TypeError,
                "NumpySerializer.save: component 0 has dtype int32 in datapoint 0 but int64 in "
                "datapoint 1; give each component one dtype in every datapoint",
            ),
            (
                [{"x": "a"}, {"x": b"a"}],
                TypeError,
                "NumpySerializer.save: component 'x' has dtype <U1 in datapoint 0 but |S1 in "
                "datapoint 1; give each component one dtype in every datapoint",
            ),
            (
                [[np.zeros(2)], [np.zeros(2)], [np.zeros((2, 1))]],
                ValueError,
                "NumpySerializer.save: component 0 has shape (2,) in datapoint 0 but (2, 1) in "
                "datapoint 2; shapes may differ in size but not in number of dimensions",
            ),
        ],
    )
    def test_save_rejects_bad_datapoints_with_a_clear_error(
        self, tmp_path, datapoints, error, message
    ):
        with pytest.raises(error) as err:
            save(tmp_path, datapoints)
        assert str(err.value) == message
        assert files_in(tmp_path) == []

    def test_save_rejects_bad_arguments(self, tmp_path):
        with pytest.raises(TypeError, match=re.escape("df must be a DataFlow, got list")):
            NumpySerializer.save([[1]], str(tmp_path / "a.npz"))
        with pytest.raises(TypeError, match=re.escape("path must be a str or os.PathLike, got 3")):
            NumpySerializer.save(DataFromList([[1]]), 3)

    def test_save_accepts_a_pathlike(self, tmp_path):
        NumpySerializer.save(DataFromList([[1]]), tmp_path / "a.npz", progress=False)
        assert len(NumpySerializer.load(tmp_path / "a.npz")) == 1

    def test_load_rejects_bad_arguments(self, tmp_path):
        path = save(tmp_path, [[1]])
        with pytest.raises(ValueError) as err:
            NumpySerializer.load(path, seed=-1)
        assert str(err.value) == "seed must be None or a non-negative int, got -1"
        with pytest.raises(TypeError) as err:
            NumpySerializer.load(None)
        assert str(err.value) == "path must be a str or os.PathLike, got None"

    # ---- corrupt files ---------------------------------------------------------------
    def test_a_missing_file_is_a_file_not_found_error(self, tmp_path):
        with pytest.raises(FileNotFoundError):
            NumpySerializer.load(str(tmp_path / "nope.npz"))

    def test_every_truncation_is_an_error_naming_the_file(self, tmp_path):
        path = save(tmp_path, [[i, np.arange(i)] for i in range(4)])
        with open(path, "rb") as f:
            data = f.read()
        cut = str(tmp_path / "cut.npz")
        for n in range(0, len(data), 7):
            with open(cut, "wb") as f:
                f.write(data[:n])
            with pytest.raises(ValueError, match=re.escape(f"NumpySerializer.load: {cut!r}")):
                NumpySerializer.load(cut)

    def test_a_flipped_byte_gives_an_error_or_the_same_data_never_garbage(self, tmp_path):
        datapoints = [[i, np.arange(i, dtype=np.int16), "ab" * i] for i in range(3)]
        path = save(tmp_path, datapoints)
        expected = load_all(path)
        with open(path, "rb") as f:
            data = f.read()
        bad = str(tmp_path / "bad.npz")
        errors = 0
        for pos in range(0, len(data), 3):
            flipped = bytearray(data)
            flipped[pos] ^= 0x55
            with open(bad, "wb") as f:
                f.write(flipped)
            try:
                got = load_all(bad)
            except ValueError as err:
                assert repr(bad) in str(err)
                errors += 1
            else:  # a byte the format does not read, e.g. a timestamp
                assert_same_datapoints(got, expected)
        assert errors > len(data) // 6

    def test_corrupt_entry_names_the_file_and_the_entry(self, tmp_path):
        path = save(tmp_path, [[np.arange(100, dtype=np.int64)]])
        with open(path, "rb") as f:
            data = bytearray(f.read())
        data[data.index(np.int64(50).tobytes())] ^= 1
        with open(path, "wb") as f:
            f.write(data)
        with pytest.raises(ValueError) as err:
            NumpySerializer.load(path)
        assert str(err.value) == (
            f"NumpySerializer.load: cannot read entry 'c0' of {path!r}: "
            "Bad CRC-32 for file 'c0.npy'"
        )

    def write_npz(self, tmp_path, meta, **arrays):
        path = str(tmp_path / "made.npz")
        if meta is not None:
            arrays["__dataflow__"] = np.array(json.dumps(meta))
        np.savez(path, **arrays)
        return path

    def meta(self, **changes):
        meta = {
            "format": "dataflow.NumpySerializer",
            "version": 1,
            "size": 2,
            "keys": None,
            "ragged": [False],
        }
        meta.update(changes)
        return meta

    def test_a_file_not_written_by_save_is_refused(self, tmp_path):
        path = self.write_npz(tmp_path, None, x=np.arange(3))
        with pytest.raises(ValueError) as err:
            NumpySerializer.load(path)
        assert str(err.value) == (
            f"NumpySerializer.load: {path!r} has no entry '__dataflow__'; the file is "
            "incomplete or was not written by NumpySerializer.save"
        )
        path = self.write_npz(tmp_path, {"format": "other"}, c0=np.arange(2))
        with pytest.raises(ValueError) as err:
            NumpySerializer.load(path)
        assert str(err.value) == (
            f"NumpySerializer.load: {path!r} was not written by NumpySerializer.save: its "
            "'__dataflow__' entry is not what save() writes"
        )

    def test_a_npy_or_text_file_is_refused(self, tmp_path):
        for name, write in [
            ("a.npy", lambda p: np.save(p, np.arange(3))),
            ("a.txt", lambda p: pathlib.Path(p).write_text("hello")),
        ]:
            path = str(tmp_path / name)
            write(path)
            with pytest.raises(ValueError) as err:
                NumpySerializer.load(path)
            assert str(err.value) == (
                f"NumpySerializer.load: {path!r} is not a NumpySerializer file: "
                "File is not a zip file"
            )

    def test_a_newer_format_version_is_refused(self, tmp_path):
        path = self.write_npz(tmp_path, self.meta(version=2), c0=np.arange(2))
        with pytest.raises(ValueError) as err:
            NumpySerializer.load(path)
        assert str(err.value) == (
            f"NumpySerializer.load: {path!r} has format version 2, but this version of "
            "dataflow reads version 1"
        )

    def test_a_malformed_description_is_refused(self, tmp_path):
        meta = self.meta(size=-1)
        path = self.write_npz(tmp_path, meta, c0=np.arange(2))
        with pytest.raises(ValueError) as err:
            NumpySerializer.load(path)
        assert str(err.value) == (
            f"NumpySerializer.load: {path!r} has a malformed '__dataflow__' entry: {meta!r}"
        )

    def test_an_entry_with_the_wrong_number_of_rows_is_refused(self, tmp_path):
        path = self.write_npz(tmp_path, self.meta(size=3), c0=np.arange(2))
        with pytest.raises(ValueError) as err:
            NumpySerializer.load(path)
        assert str(err.value) == (
            f"NumpySerializer.load: entry 'c0' of {path!r} has 2 rows, but the file holds 3 "
            "datapoints; the file is corrupt"
        )

    def test_an_entry_holding_objects_is_refused_without_unpickling(self, tmp_path):
        path = str(tmp_path / "made.npz")
        np.savez(
            path,
            __dataflow__=np.array(json.dumps(self.meta())),
            c0=np.array([{"evil": 1}, None], dtype=object),
        )
        with pytest.raises(ValueError, match=re.escape("cannot read entry 'c0' of")) as err:
            NumpySerializer.load(path)
        assert "holds Python objects" in str(err.value)

    def test_a_ragged_entry_whose_shapes_do_not_add_up_is_refused(self, tmp_path):
        path = self.write_npz(
            tmp_path,
            self.meta(ragged=[True]),
            c0=np.arange(5),
            c0_shapes=np.array([[2], [2]]),
        )
        with pytest.raises(ValueError) as err:
            NumpySerializer.load(path)
        assert str(err.value) == (
            f"NumpySerializer.load: ragged entry 'c0' of {path!r} is corrupt (5 values, shapes "
            "need 4); the file holds 2 datapoints"
        )

    def test_a_header_that_does_not_match_the_data_is_refused(self, tmp_path):
        path = save(tmp_path, [[np.arange(3)], [np.arange(3)]])
        with zipfile.ZipFile(path) as zf:
            entries = {name: zf.read(name) for name in zf.namelist()}
        entries["c0.npy"] = entries["c0.npy"].replace(b"(2, 3)", b"(2, 2)")
        os.remove(path)
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in entries.items():
                zf.writestr(name, data)
        with pytest.raises(ValueError) as err:
            NumpySerializer.load(path)
        assert str(err.value) == (
            f"NumpySerializer.load: cannot read entry 'c0' of {path!r}: the header promises "
            "shape (2, 2) of int64 but 48 bytes follow"
        )

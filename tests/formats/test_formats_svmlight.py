"""Tests of dataflow.formats.svmlight: SVMLightData reads SVMLight / LIBSVM text files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from _formats_common import (
    assert_reads_its_shard,
    assert_runner_yields_each_once,
    assert_shuffles_within_its_shard,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow import SVMLightData, check_dataflow


def write(tmp_path, text, name="data.svm"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def read(path, **kwargs):
    df = SVMLightData(path, shuffle=False, **kwargs)
    df.reset_state()
    return [(x.tolist(), float(y)) for x, y in df]


class TestSVMLightData:
    def test_reads_labels_features_qids_comments_and_blank_lines(self, tmp_path):
        path = write(
            tmp_path,
            "# a comment line\n"
            "+1 qid:3 1:0.5 4:-2e1   # a trailing comment\n"
            "\n"
            "   \t\n"
            "-1 2:1\r\n"
            "0.25\n",
        )
        assert read(path) == [
            ([0.5, 0.0, 0.0, -20.0], 1.0),
            ([0.0, 1.0, 0.0, 0.0], -1.0),
            ([0.0, 0.0, 0.0, 0.0], 0.25),
        ]
        assert SVMLightData(path).n_features == 4

    def test_yields_new_float64_vectors_and_float64_labels(self, tmp_path):
        # float64, as scikit-learn's reader (which tensorpack used) gives.
        df = SVMLightData(write(tmp_path, "3 1:1 2:2\n"), shuffle=False)
        df.reset_state()
        x, y = next(iter(df))
        assert (x.dtype, x.shape, type(y)) == (np.float64, (2,), np.float64)
        x[:] = 9
        assert next(iter(df))[0].tolist() == [1.0, 2.0]

    def test_values_keep_full_precision_and_range(self, tmp_path):
        df = SVMLightData(write(tmp_path, "1 1:0.1 2:16777217 3:1e40\n"), shuffle=False)
        df.reset_state()
        assert next(iter(df))[0].tolist() == [0.1, 16777217.0, 1e40]

    def test_keeps_the_contract(self, tmp_path):
        path = write(tmp_path, "".join(f"{i} {i % 3 + 1}:{i}\n" for i in range(10)))
        got = check_dataflow(lambda: SVMLightData(path, shuffle=False))
        assert [float(y) for _, y in got] == list(range(10))
        got = check_dataflow(lambda: SVMLightData(path))
        assert sorted(float(y) for _, y in got) == list(range(10))

    def test_each_worker_reads_only_its_shard(self, tmp_path):
        path = write(
            tmp_path, "# header\n" + "".join(f"{i} {i % 3 + 1}:{i}\n\n" for i in range(10))
        )
        assert_reads_its_shard(lambda shuffle: SVMLightData(path, shuffle, seed=8))

    def test_a_shuffled_shard_is_shuffled_anew_every_pass(self, tmp_path):
        path = write(tmp_path, "".join(f"{i} 1:{i}\n" for i in range(12)))
        assert_shuffles_within_its_shard(lambda shuffle: SVMLightData(path, shuffle, seed=4))

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("shuffle", [False, True])
    def test_an_exactly_once_runner_yields_every_datapoint_once_per_pass(self, tmp_path, shuffle):
        path = write(tmp_path, "".join(f"{i} {i % 3 + 1}:{i}\n" for i in range(9)))
        df = SVMLightData(path, shuffle=False)
        df.reset_state()
        assert_runner_yields_each_once(SVMLightData(path, shuffle), list(df))

    def test_shuffle_is_new_every_pass_and_reproducible_with_a_seed(self, tmp_path):
        path = write(tmp_path, "".join(f"{i} 1:1\n" for i in range(40)))

        def passes(seed):
            df = SVMLightData(path, seed=seed)
            df.reset_state()
            return [[int(y) for _, y in df] for _ in range(3)]

        a, b, c = passes(3), passes(3), passes(4)
        assert a == b != c
        assert a[0] != a[1] and sorted(a[0]) == list(range(40))

    def test_an_empty_file_is_an_empty_dataflow(self, tmp_path):
        path = write(tmp_path, "# nothing here\n\n")
        assert check_dataflow(lambda: SVMLightData(path)) == []
        assert SVMLightData(path).n_features == 0

    def test_indices_are_one_based_by_default(self, tmp_path):
        assert read(write(tmp_path, "1 1:5 3:7\n")) == [([5.0, 0.0, 7.0], 1.0)]

    def test_a_file_using_index_0_is_read_as_zero_based(self, tmp_path):
        path = write(tmp_path, "1 0:5 2:7\n")
        assert read(path) == [([5.0, 0.0, 7.0], 1.0)]

    def test_zero_based_can_be_forced(self, tmp_path):
        path = write(tmp_path, "1 1:5 2:7\n")
        assert read(path, zero_based=True) == [([0.0, 5.0, 7.0], 1.0)]
        assert read(path, zero_based=False) == [([5.0, 7.0], 1.0)]

    def test_n_features_pads_every_vector(self, tmp_path):
        path = write(tmp_path, "1 1:5\n2 2:6\n")
        assert read(path, n_features=4) == [([5.0, 0, 0, 0], 1.0), ([0, 6.0, 0, 0], 2.0)]
        assert SVMLightData(path, n_features=4).n_features == 4

    def test_len_counts_data_lines(self, tmp_path):
        assert len(SVMLightData(write(tmp_path, "# c\n1 1:1\n\n2\n3 2:1 # c\n"))) == 3

    def test_does_not_import_scikit_learn_or_scipy(self, tmp_path):
        path = write(tmp_path, "1 1:1\n")
        code = (
            "import sys, dataflow\n"
            f"df = dataflow.SVMLightData({path!r}); df.reset_state(); list(df)\n"
            "print(sorted({'sklearn', 'scipy'} & set(sys.modules)))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.stdout.strip() == "[]", out.stderr

    @settings(
        max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        rows=st.lists(
            st.tuples(
                st.floats(allow_nan=False, width=64),
                st.dictionaries(
                    st.integers(1, 12), st.floats(allow_nan=False, width=32), max_size=6
                ),
            ),
            max_size=8,
        ),
        spacing=st.sampled_from([" ", "  ", "\t"]),
        comments=st.booleans(),
    )
    def test_reads_what_a_writer_of_the_format_writes(self, tmp_path, rows, spacing, comments):
        lines = []
        for label, features in rows:
            tokens = [repr(label)] + [f"{i}:{v!r}" for i, v in features.items()]
            lines.append(spacing.join(tokens) + ("  # note" if comments else ""))
            if comments:
                lines.append("# a comment line")
        path = write(tmp_path, "\n".join(lines) + "\n")
        n_features = max((max(f) for _, f in rows if f), default=0)
        expected = []
        for label, features in rows:
            x = [0.0] * n_features
            for i, v in features.items():
                x[i - 1] = float(v)
            expected.append((x, label))
        assert read(path, zero_based=False) == expected

    # ---- errors, each message pinned --------------------------------------------------
    @pytest.mark.parametrize(
        "text, kwargs, message",
        [
            ("1 1:1\n# c\n\nx 1:1\n", {}, "line 4: the label 'x' is not a number"),
            ("1,2 1:1\n", {}, "line 1: the label '1,2' is not a number"),
            ("1 1:1 2\n", {}, "line 1: the feature '2' is not <integer>:<number>"),
            ("1 1:1 2:\n", {}, "line 1: the feature '2:' is not <integer>:<number>"),
            ("1 1.5:1\n", {}, "line 1: the feature '1.5:1' is not <integer>:<number>"),
            ("1 1:1:1\n", {}, "line 1: the feature '1:1:1' is not <integer>:<number>"),
            ("1 qid:a 1:1\n", {}, "line 1: 'qid:a' is not qid:<integer>"),
            (
                "1 99999999999999999999:1\n",
                {},
                "line 1: feature index 99999999999999999999 is too large",
            ),
            ("1 1:1\n1 3:1 2:1 3:2\n", {}, "line 2: feature index 3 appears twice"),
            ("1 1:1\n\n1 -2:1\n", {}, "line 3: feature index -2 is negative"),
            (
                "1 1:1\n1 0:1\n",
                {"zero_based": False},
                "line 2: feature index 0 in a one-based file (pass zero_based=True?)",
            ),
            ("1 1:1\n1 5:1\n", {"n_features": 4}, "line 2: feature index 5 is beyond n_features=4"),
        ],
    )
    def test_a_malformed_line_is_an_error_naming_the_file_and_line(
        self, tmp_path, text, kwargs, message
    ):
        path = write(tmp_path, text)
        with pytest.raises(ValueError) as err:
            SVMLightData(path, **kwargs)
        assert str(err.value) == f"SVMLightData: {path!r} {message}"

    def test_a_missing_file_is_a_file_not_found_error(self, tmp_path):
        with pytest.raises(FileNotFoundError):
            SVMLightData(str(tmp_path / "nope.svm"))

    @pytest.mark.parametrize(
        "kwargs, error, message",
        [
            ({"filename": 3}, TypeError, "filename must be a str or os.PathLike, got 3"),
            (
                {"n_features": -1},
                ValueError,
                "n_features must be None or a non-negative int, got -1",
            ),
            (
                {"n_features": True},
                TypeError,
                "n_features must be None or a non-negative int, got True",
            ),
            (
                {"n_features": 2.0},
                TypeError,
                "n_features must be None or a non-negative int, got 2.0",
            ),
            (
                {"zero_based": "yes"},
                ValueError,
                "zero_based must be True, False or 'auto', got 'yes'",
            ),
            ({"zero_based": 1}, ValueError, "zero_based must be True, False or 'auto', got 1"),
            ({"seed": -3}, ValueError, "seed must be None or a non-negative int, got -3"),
        ],
    )
    def test_bad_arguments_are_refused(self, tmp_path, kwargs, error, message):
        kwargs.setdefault("filename", write(tmp_path, "1 1:1\n"))
        with pytest.raises(error) as err:
            SVMLightData(**kwargs)
        assert str(err.value) == message

"""Tests of dataflow.dataset.svhn on small .mat files written in the real format."""

from __future__ import annotations

import os
import pickle
import tempfile

import numpy as np
import pytest
from _datafiles import assert_reads_its_shard, assert_shuffle_behaviour, hide_module, serve_env
from _loopback import serve_directory
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflow import check_dataflow
from dataflow.dataset import SVHNDigit

scipy_io = pytest.importorskip("scipy.io")


def make_split(n, seed):
    """(X, y) as in the official files: X is 32 x 32 x 3 x N uint8, y is N x 1 in 1..10."""
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, (32, 32, 3, n)).astype(np.uint8)
    labels = rng.randint(1, 11, (n, 1)).astype(np.uint8)
    labels[0, 0] = 10  # the digit 0
    return images, labels


def write_split(directory, name, images, labels):
    scipy_io.savemat(os.path.join(directory, f"{name}_32x32.mat"), {"X": images, "y": labels})


@pytest.fixture
def svhn_dir(tmp_path):
    """train: 7 digits, test: 4, extra: 5; returns (dir, {name: (X, y)})."""
    data = {"train": make_split(7, 0), "test": make_split(4, 1), "extra": make_split(5, 2)}
    for name, (images, labels) in data.items():
        write_split(str(tmp_path), name, images, labels)
    return str(tmp_path), data


class TestSVHNDigit:
    @pytest.mark.parametrize("name", ["train", "test", "extra"])
    def test_yields_rgb_images_and_digit_labels_in_file_order(self, svhn_dir, name):
        directory, data = svhn_dir
        images, labels = data[name]
        df = SVHNDigit(name, directory, shuffle=False)
        df.reset_state()
        out = list(df)
        assert len(out) == len(df) == images.shape[3]
        for k, (image, label) in enumerate(out):
            assert image.dtype == np.uint8 and image.shape == (32, 32, 3)
            np.testing.assert_array_equal(image, images[..., k])
            assert type(label) is int and label == labels[k, 0] % 10
        assert out[0][1] == 0  # the file's label 10

    @settings(max_examples=15, deadline=None)
    @given(n=st.integers(1, 6), seed=st.integers(0, 2**16))
    def test_reads_back_exactly_what_was_written(self, n, seed):
        images, labels = make_split(n, seed)
        with tempfile.TemporaryDirectory() as directory:
            write_split(directory, "test", images, labels)
            df = SVHNDigit("test", directory)
        df.reset_state()
        out = list(df)
        np.testing.assert_array_equal(
            np.stack([image for image, _ in out]), images.transpose(3, 0, 1, 2)
        )
        assert [label for _, label in out] == (labels[:, 0] % 10).tolist()

    @pytest.mark.parametrize("name", ["train", "test"])
    def test_keeps_the_dataflow_contract(self, svhn_dir, name):
        check_dataflow(lambda: SVHNDigit(name, svhn_dir[0], seed=1))

    def test_each_worker_reads_only_its_shard(self, svhn_dir):
        assert_reads_its_shard(lambda shuffle: SVHNDigit("extra", svhn_dir[0], shuffle, seed=1))

    def test_shuffles_training_splits_only_by_default(self, svhn_dir):
        directory, _ = svhn_dir
        assert SVHNDigit("train", directory).shuffle is True
        assert SVHNDigit("extra", directory).shuffle is True
        assert SVHNDigit("test", directory).shuffle is False

    def test_shuffle_gives_a_new_permutation_every_pass_and_a_seed_fixes_them(self, svhn_dir):
        directory, _ = svhn_dir
        assert_shuffle_behaviour(
            lambda shuffle, seed: SVHNDigit("train", directory, shuffle, seed=seed)
        )

    def test_yields_a_fresh_array_each_time(self, svhn_dir):
        df = SVHNDigit("test", svhn_dir[0])
        df.reset_state()
        first = next(iter(df))[0]
        first[:] = 0
        assert next(iter(df))[0].any()

    def test_pickles_before_reset_state(self, svhn_dir):
        df = pickle.loads(pickle.dumps(SVHNDigit("test", svhn_dir[0])))
        df.reset_state()
        assert len(list(df)) == 4

    def test_default_dir_is_under_DATAFLOW_DATASETS(self, tmp_path, monkeypatch):
        os.makedirs(tmp_path / "svhn_data")
        write_split(str(tmp_path / "svhn_data"), "test", *make_split(3, 0))
        monkeypatch.setenv("DATAFLOW_DATASETS", str(tmp_path))
        assert len(SVHNDigit("test")) == 3

    def test_missing_file_error_says_what_where_and_how(self, tmp_path):
        with pytest.raises(FileNotFoundError) as info:
            SVHNDigit("extra", str(tmp_path))
        assert str(info.value) == (
            f"SVHNDigit expected these files in {str(tmp_path)!r}, which are missing: "
            "'extra_32x32.mat'. Download them from http://ufldl.stanford.edu/housenumbers/, "
            "or pass download=True."
        )

    def test_download_fetches_the_missing_file(self, svhn_dir, tmp_path_factory, monkeypatch):
        served, data = svhn_dir
        serve_env(monkeypatch)
        target = str(tmp_path_factory.mktemp("target"))
        with serve_directory(served) as url:
            monkeypatch.setattr(SVHNDigit, "SOURCE_URL", url)
            df = SVHNDigit("test", target, download=True, shuffle=False)
        assert os.listdir(target) == ["test_32x32.mat"]
        df.reset_state()
        assert [label for _, label in df] == (data["test"][1][:, 0] % 10).tolist()

    def test_damaged_file_is_reported_with_its_name(self, tmp_path):
        path = tmp_path / "test_32x32.mat"
        path.write_bytes(b"not a MATLAB file at all" * 10)
        with pytest.raises(ValueError, match=f"SVHNDigit could not read {str(path)!r} as a MATLAB"):
            SVHNDigit("test", str(tmp_path))

    @pytest.mark.parametrize(
        "variables, message",
        [
            (
                {"X": np.zeros((32, 32, 4), np.uint8), "y": np.ones((4, 1))},
                "variable 'X' should be a uint8 array of shape (32, 32, 3, N), "
                "got shape (32, 32, 4)",
            ),
            (
                {"X": np.zeros((32, 32, 3, 2)), "y": np.ones((2, 1))},
                "variable 'X' should be a uint8 array of shape (32, 32, 3, N), "
                "got shape (32, 32, 3, 2) and dtype float64",
            ),
            ({"X": np.zeros((32, 32, 3, 2), np.uint8)}, "has no variable 'y'; it has ['X']"),
            (
                {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1))},
                "holds 2 images in 'X' but 3 labels in 'y'",
            ),
            (
                {"X": np.zeros((32, 32, 3, 3), np.uint8), "y": np.array([[1], [11], [0]])},
                "record 1 of 'y' is 11; labels must be whole numbers in 1..10",
            ),
        ],
    )
    def test_wrong_variables_are_reported_with_the_file_name(self, tmp_path, variables, message):
        scipy_io.savemat(str(tmp_path / "test_32x32.mat"), variables)
        with pytest.raises(ValueError) as info:
            SVHNDigit("test", str(tmp_path))
        assert str(info.value).startswith(repr(str(tmp_path / "test_32x32.mat")))
        assert message in str(info.value)

    def test_without_scipy_the_error_says_what_to_install(self, svhn_dir, monkeypatch):
        hide_module(monkeypatch, "scipy.io")
        expected = r"^SVHNDigit needs the 'scipy' package: pip install 'dataflow-ml\[mat\]'$"
        with pytest.raises(ImportError, match=expected):
            SVHNDigit("test", svhn_dir[0])

    @pytest.mark.parametrize(
        "args, kwargs, error, message",
        [
            (
                ("valid",),
                {},
                ValueError,
                "name must be one of 'train', 'test', 'extra', got 'valid'",
            ),
            (("test", 3), {}, TypeError, "data_dir must be None or a path, got 3"),
            (("test", None, "yes"), {}, TypeError, "shuffle must be None or a bool, got 'yes'"),
            (
                ("test",),
                {"seed": -1},
                ValueError,
                "seed must be None or a non-negative int, got -1",
            ),
        ],
    )
    def test_argument_errors(self, args, kwargs, error, message):
        with pytest.raises(error) as info:
            SVHNDigit(*args, **kwargs)
        assert str(info.value) == message

    @pytest.mark.parametrize("names", [("train", "test", "extra"), ("test",), ["extra", "train"]])
    def test_per_pixel_mean_is_the_float64_mean_image_of_the_named_splits(self, svhn_dir, names):
        directory, data = svhn_dir
        df = SVHNDigit("test", directory)
        expected = np.concatenate([data[n][0].transpose(3, 0, 1, 2) for n in names]).mean(axis=0)
        mean = df.get_per_pixel_mean(names)
        assert mean.dtype == np.float64 and mean.shape == (32, 32, 3)
        np.testing.assert_allclose(mean, expected, rtol=1e-12)

    def test_per_pixel_mean_defaults_to_every_split(self, svhn_dir):
        directory, data = svhn_dir
        everything = np.concatenate([x.transpose(3, 0, 1, 2) for x, _ in data.values()])
        mean = SVHNDigit("extra", directory).get_per_pixel_mean()
        np.testing.assert_allclose(mean, everything.mean(axis=0), rtol=1e-12)

    @pytest.mark.parametrize("names", ["train", (), ("train", "val")])
    def test_per_pixel_mean_rejects_other_names(self, svhn_dir, names):
        with pytest.raises(ValueError) as info:
            SVHNDigit("test", svhn_dir[0]).get_per_pixel_mean(names)
        assert str(info.value) == (
            f"names must be a non-empty sequence of 'train', 'test' and/or 'extra', got {names!r}"
        )

    def test_per_pixel_mean_names_a_missing_split_file(self, tmp_path):
        write_split(str(tmp_path), "test", *make_split(2, 0))
        with pytest.raises(FileNotFoundError, match="missing: 'train_32x32.mat'"):
            SVHNDigit("test", str(tmp_path)).get_per_pixel_mean(("train", "test"))

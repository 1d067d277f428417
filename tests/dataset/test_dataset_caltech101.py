"""Tests of dataflow.dataset.caltech101 on a small .mat file written in the real format."""

from __future__ import annotations

import os

import numpy as np
import pytest
from _datafiles import assert_reads_its_shard, assert_shuffle_behaviour, hide_module, serve_env
from _loopback import serve_directory

from dataflow import check_dataflow
from dataflow.dataset import Caltech101Silhouettes

scipy_io = pytest.importorskip("scipy.io")

FILE = "caltech101_silhouettes_28_split1.mat"
SIZES = {"train": 6, "val": 4, "test": 5}


def make_variables(seed=0):
    """The variables of the official file: <split>_data (N x 784 float64 of 0/1)
    and <split>_labels (N x 1, 1..101)."""
    rng = np.random.RandomState(seed)
    variables = {}
    for split, n in SIZES.items():
        variables[f"{split}_data"] = rng.randint(0, 2, (n, 784)).astype(np.float64)
        variables[f"{split}_labels"] = rng.randint(1, 102, (n, 1)).astype(np.float64)
        variables[f"{split}_labels"][0, 0] = 101
    return variables


@pytest.fixture
def caltech_dir(tmp_path):
    variables = make_variables()
    scipy_io.savemat(str(tmp_path / FILE), variables)
    return str(tmp_path), variables


class TestCaltech101Silhouettes:
    @pytest.mark.parametrize("name", ["train", "val", "test"])
    def test_yields_28x28_images_and_labels_from_zero_in_file_order(self, caltech_dir, name):
        directory, variables = caltech_dir
        df = Caltech101Silhouettes(name, shuffle=False, dir=directory)
        df.reset_state()
        out = list(df)
        assert len(out) == len(df) == SIZES[name]
        for k, (image, label) in enumerate(out):
            assert image.dtype == np.float64 and image.shape == (28, 28)
            np.testing.assert_array_equal(image, variables[f"{name}_data"][k].reshape(28, 28))
            assert type(label) is int and label == variables[f"{name}_labels"][k, 0] - 1
        assert out[0][1] == 100

    def test_takes_shuffle_before_dir_as_tensorpack_does(self, caltech_dir):
        df = Caltech101Silhouettes("val", False, caltech_dir[0])
        assert df.shuffle is False and len(df) == 4

    def test_keeps_the_dataflow_contract(self, caltech_dir):
        check_dataflow(lambda: Caltech101Silhouettes("train", dir=caltech_dir[0], seed=1))

    def test_each_worker_reads_only_its_shard(self, caltech_dir):
        assert_reads_its_shard(
            lambda shuffle: Caltech101Silhouettes("train", shuffle, caltech_dir[0], seed=1)
        )

    def test_shuffles_train_only_by_default(self, caltech_dir):
        shuffles = {n: Caltech101Silhouettes(n, dir=caltech_dir[0]).shuffle for n in SIZES}
        assert shuffles == {"train": True, "val": False, "test": False}

    def test_shuffle_gives_a_new_permutation_every_pass_and_a_seed_fixes_them(self, caltech_dir):
        assert_shuffle_behaviour(
            lambda shuffle, seed: Caltech101Silhouettes("train", shuffle, caltech_dir[0], seed=seed)
        )

    def test_missing_file_error_says_what_where_and_how(self, tmp_path):
        with pytest.raises(FileNotFoundError) as info:
            Caltech101Silhouettes("train", dir=str(tmp_path))
        assert str(info.value) == (
            f"Caltech101Silhouettes expected these files in {str(tmp_path)!r}, which are "
            f"missing: '{FILE}'. Download them from https://people.cs.umass.edu/~marlin/data/, "
            "or pass download=True."
        )

    def test_download_fetches_the_file(self, caltech_dir, tmp_path_factory, monkeypatch):
        serve_env(monkeypatch)
        target = str(tmp_path_factory.mktemp("target"))
        with serve_directory(caltech_dir[0]) as url:
            monkeypatch.setattr(Caltech101Silhouettes, "SOURCE_URL", url)
            df = Caltech101Silhouettes("test", dir=target, download=True)
        assert os.listdir(target) == [FILE] and len(df) == 5

    @pytest.mark.parametrize(
        "change, message",
        [
            (
                {"val_data": np.zeros((4, 783))},
                "variable 'val_data' should be a numeric array of shape (N, 784), "
                "got shape (4, 783)",
            ),
            ({"val_labels": None}, "has no variable 'val_labels'"),
            ({"val_labels": np.ones((3, 1))}, "holds 4 images in 'val_data' but 3 labels"),
            (
                {"val_labels": np.array([[1], [2], [102], [3]])},
                "record 2 of 'val_labels' is 102; labels must be whole numbers in 1..101",
            ),
            (
                {"val_labels": np.array([[1], [2.5], [3], [3]])},
                "record 1 of 'val_labels' is 2.5",
            ),
        ],
    )
    def test_wrong_variables_are_reported_with_the_file_name(self, tmp_path, change, message):
        variables = {**make_variables(), **change}
        scipy_io.savemat(
            str(tmp_path / FILE), {k: v for k, v in variables.items() if v is not None}
        )
        with pytest.raises(ValueError) as info:
            Caltech101Silhouettes("val", dir=str(tmp_path))
        assert str(info.value).startswith(repr(str(tmp_path / FILE)))
        assert message in str(info.value)

    def test_without_scipy_the_error_says_what_to_install(self, caltech_dir, monkeypatch):
        hide_module(monkeypatch, "scipy.io")
        with pytest.raises(ImportError, match="^Caltech101Silhouettes needs the 'scipy' package"):
            Caltech101Silhouettes("val", dir=caltech_dir[0])

    @pytest.mark.parametrize(
        "kwargs, error, message",
        [
            (
                {"name": "valid"},
                ValueError,
                "name must be one of 'train', 'val', 'test', got 'valid'",
            ),
            ({"name": "val", "dir": 3}, TypeError, "dir must be None or a path, got 3"),
            ({"name": "val", "shuffle": 1}, TypeError, "shuffle must be None or a bool, got 1"),
        ],
    )
    def test_argument_errors(self, kwargs, error, message):
        with pytest.raises(error) as info:
            Caltech101Silhouettes(**kwargs)
        assert str(info.value) == message

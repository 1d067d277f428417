"""Tests of dataflow.dataset.places365 on a small tree in the "easy directory structure"."""

from __future__ import annotations

import os

import numpy as np
import pytest
from _datafiles import (
    assert_reads_its_shard,
    assert_shuffle_behaviour,
    hide_module,
    write_image,
    write_lines,
)

from dataflow import check_dataflow
from dataflow.dataset import Places365Standard

# Listed out of alphabetical order: the labels follow the sorted class names.
TRAIN = [
    ("train/volcano/00000001.jpg", 2),
    ("train/airfield/00000001.jpg", 0),
    ("train/apartment_building/outdoor/00000001.jpg", 1),
    ("train/volcano/00000002.jpg", 2),
    ("train/airfield/00000002.jpg", 0),
]
VAL = [
    ("val/volcano/Places365_val_00000001.jpg", 2),
    ("val/airfield/Places365_val_00000002.jpg", 0),
    ("val/apartment_building/outdoor/Places365_val_00000003.jpg", 1),
]


def bgr(k):
    return ((40 * k) % 256, (230 - 25 * k) % 256, (15 + 50 * k) % 256)


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("places365_standard"))
    write_lines(os.path.join(root, "train.txt"), [path for path, _ in TRAIN])
    write_lines(os.path.join(root, "val.txt"), [path for path, _ in VAL])
    for k, (path, _) in enumerate(TRAIN + VAL):
        write_image(os.path.join(root, path), bgr(k), (16, 16))
    return root


class TestPlaces365Standard:
    @pytest.mark.parametrize(
        "name, entries, first", [("train", TRAIN, 0), ("val", VAL, len(TRAIN))]
    )
    def test_yields_images_and_sorted_class_indices_in_list_order(
        self, places, name, entries, first
    ):
        df = Places365Standard(places, name, shuffle=False)
        df.reset_state()
        out = list(df)
        assert len(out) == len(df) == len(entries)
        for k, ((image, label), (_, want_label)) in enumerate(zip(out, entries)):
            assert image.dtype == np.uint8 and image.shape == (16, 16, 3)
            assert np.abs(image.astype(int) - bgr(first + k)).max() <= 3
            assert label == want_label
        assert df.get_label_names() == ["airfield", "apartment_building/outdoor", "volcano"]

    def test_labels_given_in_the_list_file_are_used(self, places, tmp_path):
        write_lines(
            str(tmp_path / "val.txt"), [f"/{path} {k + 100}" for k, (path, _) in enumerate(VAL)]
        )
        os.symlink(os.path.join(places, "val"), tmp_path / "val")
        df = Places365Standard(str(tmp_path), "val", shuffle=False)
        df.reset_state()
        assert [label for _, label in df] == [100, 101, 102]

    def test_keeps_the_dataflow_contract(self, places):
        check_dataflow(lambda: Places365Standard(places, "train", seed=5))

    def test_each_worker_reads_only_its_shard(self, places):
        assert_reads_its_shard(lambda shuffle: Places365Standard(places, "train", shuffle))

    def test_shuffles_train_only_by_default(self, places):
        assert Places365Standard(places, "train").shuffle is True
        assert Places365Standard(places, "val").shuffle is False

    def test_shuffle_gives_a_new_permutation_every_pass_and_a_seed_fixes_them(self, places):
        assert_shuffle_behaviour(
            lambda shuffle, seed: Places365Standard(places, "train", shuffle, seed=seed)
        )

    def test_missing_list_file_error_says_what_where_and_how(self, tmp_path):
        with pytest.raises(FileNotFoundError) as info:
            Places365Standard(str(tmp_path), "train")
        assert str(info.value) == (
            f"Places365Standard expected these files in {str(tmp_path)!r}, which are missing: "
            "'train.txt'. Download places365standard_easyformat.tar (the 256 x 256 images in the "
            "easy directory structure, 26 GB) from http://places2.csail.mit.edu/download.html, "
            "unpack it, and pass the places365_standard directory it creates."
        )

    def test_missing_images_error_names_the_first_and_counts_them(self, places, tmp_path):
        write_lines(str(tmp_path / "train.txt"), [path for path, _ in TRAIN])
        os.makedirs(tmp_path / "train" / "volcano")
        os.symlink(os.path.join(places, "train", "airfield"), tmp_path / "train" / "airfield")
        with pytest.raises(FileNotFoundError) as info:
            Places365Standard(str(tmp_path), "train")
        assert str(info.value).startswith(
            f"Places365Standard: 3 of the 5 files listed in {str(tmp_path / 'train.txt')!r} are "
            f"missing from {str(tmp_path)!r}; the first is 'train/volcano/00000001.jpg'. Download"
        )

    def test_lines_with_and_without_labels_cannot_mix(self, tmp_path):
        path = str(tmp_path / "val.txt")
        write_lines(path, ["val/a/1.jpg", "val/a/2.jpg 0"])
        with pytest.raises(ValueError) as info:
            Places365Standard(str(tmp_path), "val")
        assert str(info.value) == (
            f"{path}, line 2: expected '<relative path> <integer label>' or '<relative path>', "
            "got 'val/a/2.jpg 0' (some lines have a label and some do not)"
        )

    def test_without_opencv_the_error_says_what_to_install(self, places, monkeypatch):
        hide_module(monkeypatch, "cv2")
        with pytest.raises(
            ImportError, match=r"^Places365Standard needs the 'opencv-python-headless'"
        ):
            Places365Standard(places, "val")

    @pytest.mark.parametrize(
        "args, error, message",
        [
            ((None, "val"), TypeError, "dir must be a path, got None"),
            (("/x", "test"), ValueError, "name must be one of 'train', 'val', got 'test'"),
            (("/x", "val", "shuffle"), TypeError, "shuffle must be None or a bool, got 'shuffle'"),
        ],
    )
    def test_argument_errors(self, args, error, message):
        with pytest.raises(error) as info:
            Places365Standard(*args)
        assert str(info.value) == message

"""Tests of dataflow.dataset.tinyimagenet on a small tree written in the real format."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
from _datafiles import (
    assert_reads_its_shard,
    assert_shuffle_behaviour,
    hide_module,
    serve_env,
    write_image,
    write_lines,
)
from _loopback import serve_directory

from dataflow import check_dataflow
from dataflow.dataset import TinyImageNet

WNIDS = ["n02124075", "n04067472", "n01443537"]


def make_tiny(root):
    """3 classes with 2 training images each, 4 val images, 3 test images, each
    of a flat colour; returns {split: [(relative path, label, bgr)]} in the
    order the reader yields them."""
    made = {"train": [], "val": [], "test": []}
    colours = iter([(30 * k % 256, (250 - 20 * k) % 256, 11 * k % 256) for k in range(20)])
    write_lines(os.path.join(root, "wnids.txt"), WNIDS)
    for label, wnid in enumerate(WNIDS):
        for k in (1, 0):  # written out of order: the reader sorts by name
            rel = f"train/{wnid}/images/{wnid}_{k}.JPEG"
            made["train"].append((rel, label, next(colours)))
        made["train"][-2:] = made["train"][-2:][::-1]
        write_lines(os.path.join(root, "train", wnid, f"{wnid}_boxes.txt"), [])
    annotations = []
    for k, wnid in enumerate([WNIDS[2], WNIDS[0], WNIDS[2], WNIDS[1]]):
        annotations.append(f"val_{k}.JPEG\t{wnid}\t0\t1\t60\t62")
        made["val"].append((f"val/images/val_{k}.JPEG", WNIDS.index(wnid), next(colours)))
    write_lines(os.path.join(root, "val", "val_annotations.txt"), annotations)
    for k in range(3):
        made["test"].append((f"test/images/test_{k}.JPEG", -1, next(colours)))
    for entries in made.values():
        for rel, _, bgr in entries:
            write_image(os.path.join(root, rel), bgr, (64, 64))
    return made


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tiny-imagenet-200"))
    return root, make_tiny(root)


class TestTinyImageNet:
    @pytest.mark.parametrize("name", ["train", "val", "test"])
    def test_yields_images_and_wnid_indices_in_a_fixed_order(self, tiny, name):
        root, made = tiny
        df = TinyImageNet(root, name, shuffle=False)
        df.reset_state()
        out = list(df)
        assert len(out) == len(df) == len(made[name])
        for (image, label), (_, want_label, bgr) in zip(out, made[name]):
            assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
            assert np.abs(image.astype(int) - bgr).max() <= 3
            assert label == want_label
        assert df.wnids == WNIDS

    def test_train_order_is_by_class_then_file_name(self, tiny):
        root, _ = tiny
        df = TinyImageNet(root, "train", shuffle=False)
        assert [name for name, _ in df.imglist][:2] == [
            "n02124075/images/n02124075_0.JPEG",
            "n02124075/images/n02124075_1.JPEG",
        ]

    @pytest.mark.parametrize("name", ["train", "val"])
    def test_keeps_the_dataflow_contract(self, tiny, name):
        check_dataflow(lambda: TinyImageNet(tiny[0], name, seed=4))

    @pytest.mark.parametrize("name", ["train", "val"])
    def test_each_worker_reads_only_its_shard(self, tiny, name):
        assert_reads_its_shard(lambda shuffle: TinyImageNet(tiny[0], name, shuffle, seed=4))

    def test_shuffles_train_only_by_default(self, tiny):
        shuffles = {n: TinyImageNet(tiny[0], n).shuffle for n in ("train", "val", "test")}
        assert shuffles == {"train": True, "val": False, "test": False}

    def test_shuffle_gives_a_new_permutation_every_pass_and_a_seed_fixes_them(self, tiny):
        assert_shuffle_behaviour(
            lambda shuffle, seed: TinyImageNet(tiny[0], "train", shuffle, seed=seed)
        )

    def test_missing_files_error_says_what_where_and_how(self, tmp_path):
        with pytest.raises(FileNotFoundError) as info:
            TinyImageNet(str(tmp_path), "val")
        assert str(info.value) == (
            f"TinyImageNet expected these files in {str(tmp_path)!r}, which are missing: "
            "'wnids.txt', 'val/val_annotations.txt'. Download "
            "http://cs231n.stanford.edu/tiny-imagenet-200.zip and unpack it, or pass download=True."
        )

    def test_missing_class_folder_is_named(self, tmp_path):
        make_tiny(str(tmp_path))
        for name in os.listdir(tmp_path / "train" / WNIDS[1] / "images"):
            os.remove(tmp_path / "train" / WNIDS[1] / "images" / name)
        with pytest.raises(
            FileNotFoundError, match=f"which are missing: 'train/{WNIDS[1]}/images/"
        ):
            TinyImageNet(str(tmp_path), "train")

    def test_missing_val_image_is_named_and_counted(self, tmp_path):
        make_tiny(str(tmp_path))
        os.remove(tmp_path / "val" / "images" / "val_2.JPEG")
        with pytest.raises(
            FileNotFoundError, match="1 of the 4 files listed in .*'images/val_2.JPEG'"
        ):
            TinyImageNet(str(tmp_path), "val")

    @pytest.mark.parametrize("line", ["val_9.JPEG", "val_9.JPEG\tn99999999\t0\t0\t1\t1"])
    def test_bad_annotation_line_is_named_with_file_and_line_number(self, tmp_path, line):
        make_tiny(str(tmp_path))
        path = str(tmp_path / "val" / "val_annotations.txt")
        with open(path, "a") as f:
            f.write(line + "\n")
        with pytest.raises(ValueError) as info:
            TinyImageNet(str(tmp_path), "val")
        assert str(info.value) == (
            f"{path}, line 5: expected '<file> <wnid> ...' with a WordNet id from wnids.txt, "
            f"got {line!r}"
        )

    def test_download_fetches_and_unpacks_the_zip_into_dir(self, tiny, tmp_path, monkeypatch):
        root, made = tiny
        served = tmp_path / "served"
        served.mkdir()
        with zipfile.ZipFile(served / "tiny-imagenet-200.zip", "w") as archive:
            for folder, _, files in os.walk(root):
                for f in files:
                    path = os.path.join(folder, f)
                    archive.write(path, "tiny-imagenet-200/" + os.path.relpath(path, root))
        serve_env(monkeypatch)
        target = tmp_path / "data" / "tiny-imagenet-200"
        with serve_directory(str(served)) as url:
            monkeypatch.setattr(TinyImageNet, "SOURCE_URL", url + "tiny-imagenet-200.zip")
            df = TinyImageNet(str(target), "val", download=True)
        assert len(df) == 4
        assert sorted(os.listdir(target)) == ["test", "train", "val", "wnids.txt"]

    def test_zip_member_outside_dir_is_refused(self, tmp_path, monkeypatch):
        served = tmp_path / "served"
        served.mkdir()
        with zipfile.ZipFile(served / "tiny-imagenet-200.zip", "w") as archive:
            archive.writestr("tiny-imagenet-200/../../evil.txt", "x")
        serve_env(monkeypatch)
        with serve_directory(str(served)) as url:
            monkeypatch.setattr(TinyImageNet, "SOURCE_URL", url + "tiny-imagenet-200.zip")
            with pytest.raises(ValueError, match="would land outside"):
                TinyImageNet(str(tmp_path / "a" / "b"), "test", download=True)
        assert not (tmp_path / "evil.txt").exists()

    def test_without_opencv_the_error_says_what_to_install(self, tiny, monkeypatch):
        hide_module(monkeypatch, "cv2")
        with pytest.raises(ImportError, match=r"^TinyImageNet needs the 'opencv-python-headless'"):
            TinyImageNet(tiny[0], "val")

    @pytest.mark.parametrize(
        "args, error, message",
        [
            ((None, "val"), TypeError, "dir must be a path, got None"),
            (
                ("/x", "valid"),
                ValueError,
                "name must be one of 'train', 'val', 'test', got 'valid'",
            ),
            (("/x", "val", 0), TypeError, "shuffle must be None or a bool, got 0"),
        ],
    )
    def test_argument_errors(self, args, error, message):
        with pytest.raises(error) as info:
            TinyImageNet(*args)
        assert str(info.value) == message

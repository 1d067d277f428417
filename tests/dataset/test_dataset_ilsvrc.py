"""Tests of dataflow.dataset.ilsvrc on a small ImageNet-style tree written in the real format."""

from __future__ import annotations

import os
import pickle
import shutil
import tarfile
import tempfile

import numpy as np
import pytest
from _datafiles import (
    assert_reads_its_shard,
    assert_runner_yields_each_once,
    assert_shuffle_behaviour,
    hide_module,
    serve_env,
    write_image,
    write_lines,
)
from _loopback import serve_directory
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflow import check_dataflow
from dataflow.dataset import ILSVRC12, ILSVRC12Files, ILSVRCMeta

SYNSETS = ["n01440764", "n01443537", "n01484850"]
WORDS = ["tench, Tinca tinca", "goldfish, Carassius auratus", "great white shark"]


def colour(k):
    """A distinct BGR colour for image *k*."""
    return ((10 + 23 * k) % 256, (200 - 17 * k) % 256, (40 * k) % 256)


def make_meta(meta):
    """caffe's metadata files for 3 classes: 5 train, 4 val, 2 test images."""
    train = [
        f"{SYNSETS[c]}/{SYNSETS[c]}_{k}.JPEG {c}"
        for c, k in [(0, 1), (0, 2), (1, 1), (2, 7), (2, 3)]
    ]
    val = [f"ILSVRC2012_val_{k:08d}.JPEG {c}" for k, c in [(1, 2), (2, 0), (3, 1), (4, 2)]]
    test = [f"ILSVRC2012_test_{k:08d}.JPEG 0" for k in (1, 2)]
    write_lines(os.path.join(meta, "synsets.txt"), SYNSETS)
    write_lines(
        os.path.join(meta, "synset_words.txt"), [f"{s} {w}" for s, w in zip(SYNSETS, WORDS)]
    )
    for name, lines in (("train", train), ("val", val), ("test", test)):
        write_lines(os.path.join(meta, name + ".txt"), lines)
    return {"train": train, "val": val, "test": test}


def make_images(root, lists, val_by_synset=False):
    """The images the lists name, each of a flat colour; returns {split: [(path, label, bgr)]}."""
    made = {}
    k = 0
    for name, lines in lists.items():
        made[name] = []
        for line in lines:
            rel, label = line.split()
            label = int(label) if name != "test" else -1
            if name == "val" and val_by_synset:
                rel = f"{SYNSETS[label]}/{rel}"
            path = os.path.join(root, name, rel)
            write_image(path, colour(k))
            made[name].append((path, label, colour(k)))
            k += 1
    return made


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """(dir, meta_dir, {split: [(path, label, bgr)]}) with val in the original flat layout."""
    root = str(tmp_path_factory.mktemp("imagenet"))
    meta = os.path.join(root, "meta")
    return root, meta, make_images(root, make_meta(meta))


class TestILSVRCMeta:
    def test_reads_synsets_and_words(self, imagenet):
        meta = ILSVRCMeta(imagenet[1])
        assert meta.get_synset_1000() == dict(enumerate(SYNSETS))
        assert meta.get_synset_words_1000()[1] == "n01443537 goldfish, Carassius auratus"

    def test_image_list_is_relative_paths_and_labels_in_file_order(self, imagenet):
        meta = ILSVRCMeta(imagenet[1])
        assert meta.get_image_list("val") == [
            ("ILSVRC2012_val_00000001.JPEG", 2),
            ("ILSVRC2012_val_00000002.JPEG", 0),
            ("ILSVRC2012_val_00000003.JPEG", 1),
            ("ILSVRC2012_val_00000004.JPEG", 2),
        ]
        assert meta.get_image_list("train")[3] == ("n01484850/n01484850_7.JPEG", 2)

    def test_val_with_train_structure_prepends_the_synset(self, imagenet):
        val = ILSVRCMeta(imagenet[1]).get_image_list("val", "train")
        assert val[0] == ("n01484850/ILSVRC2012_val_00000001.JPEG", 2)

    @settings(max_examples=30, deadline=None)
    @given(
        entries=st.lists(
            st.tuples(
                st.from_regex(r"[A-Za-z0-9_.-]{1,12}(/[A-Za-z0-9_.-]{1,12})?", fullmatch=True),
                st.integers(-3, 5000),
            ),
            min_size=1,
            max_size=20,
        )
    )
    def test_image_list_reads_back_what_was_written(self, entries):
        with tempfile.TemporaryDirectory() as meta:
            write_lines(os.path.join(meta, "train.txt"), [f"{n} {label}" for n, label in entries])
            assert ILSVRCMeta(meta).get_image_list("train") == entries

    def test_test_labels_are_minus_one(self, imagenet):
        assert [label for _, label in ILSVRCMeta(imagenet[1]).get_image_list("test")] == [-1, -1]

    def test_test_list_may_leave_out_labels(self, tmp_path):
        write_lines(str(tmp_path / "test.txt"), ["a.JPEG", "b.JPEG"])
        assert ILSVRCMeta(str(tmp_path)).get_image_list("test") == [("a.JPEG", -1), ("b.JPEG", -1)]

    def test_guesses_dir_structure_from_synset_folders(self, tmp_path):
        (tmp_path / "flat").mkdir()
        (tmp_path / "flat" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
        (tmp_path / "flat" / "notes").mkdir()
        (tmp_path / "by_class" / "n01440764").mkdir(parents=True)
        assert ILSVRCMeta.guess_dir_structure(str(tmp_path / "flat")) == "original"
        assert ILSVRCMeta.guess_dir_structure(str(tmp_path / "by_class")) == "train"

    def test_missing_file_error_says_what_where_and_how(self, tmp_path):
        with pytest.raises(FileNotFoundError) as info:
            ILSVRCMeta(str(tmp_path)).get_image_list("val")
        assert str(info.value) == (
            f"ILSVRCMeta expected these files in {str(tmp_path)!r}, which are missing: "
            "'val.txt'. Download http://dl.caffe.berkeleyvision.org/caffe_ilsvrc12.tar.gz and "
            "unpack it there, or pass download=True."
        )

    def test_default_dir_is_under_DATAFLOW_DATASETS(self, tmp_path, monkeypatch):
        monkeypatch.setenv("DATAFLOW_DATASETS", str(tmp_path))
        assert ILSVRCMeta().dir == str(tmp_path / "ilsvrc_metadata")

    def test_download_fetches_and_unpacks_caffes_archive(self, imagenet, tmp_path, monkeypatch):
        served = tmp_path / "served"
        served.mkdir()
        with tarfile.open(served / "caffe_ilsvrc12.tar.gz", "w:gz") as tar:
            for name in os.listdir(imagenet[1]):
                tar.add(os.path.join(imagenet[1], name), arcname=name)
        serve_env(monkeypatch)
        with serve_directory(str(served)) as url:
            monkeypatch.setattr(ILSVRCMeta, "SOURCE_URL", url + "caffe_ilsvrc12.tar.gz")
            meta = ILSVRCMeta(str(tmp_path / "meta"), download=True)
            assert meta.get_synset_1000() == dict(enumerate(SYNSETS))
        assert len(meta.get_image_list("train")) == 5

    @pytest.mark.parametrize(
        "line, why",
        [
            ("ILSVRC2012_val_00000002.JPEG", "1 fields"),
            ("ILSVRC2012_val_00000002.JPEG zero", "invalid literal for int() with base 10: 'zero'"),
            ("a b c", "3 fields"),
        ],
    )
    def test_malformed_list_line_is_named_with_file_and_line_number(self, tmp_path, line, why):
        path = str(tmp_path / "val.txt")
        write_lines(path, ["ILSVRC2012_val_00000001.JPEG 3", "", line])
        with pytest.raises(ValueError) as info:
            ILSVRCMeta(str(tmp_path)).get_image_list("val")
        assert str(info.value) == (
            f"{path}, line 3: expected '<relative path> <integer label>', got {line!r} ({why})"
        )

    def test_empty_list_is_an_error(self, tmp_path):
        write_lines(str(tmp_path / "val.txt"), [])
        with pytest.raises(ValueError, match="val.txt' lists no images$"):
            ILSVRCMeta(str(tmp_path)).get_image_list("val")

    def test_label_without_synset_is_an_error_for_train_structure(self, tmp_path):
        write_lines(str(tmp_path / "synsets.txt"), SYNSETS)
        write_lines(str(tmp_path / "val.txt"), ["a.JPEG 1", "b.JPEG 3"])
        with pytest.raises(ValueError, match="has label 3, which has no synset in synsets.txt"):
            ILSVRCMeta(str(tmp_path)).get_image_list("val", "train")

    def test_argument_errors(self, imagenet):
        meta = ILSVRCMeta(imagenet[1])
        with pytest.raises(ValueError) as info:
            meta.get_image_list("valid")
        assert str(info.value) == "name must be one of 'train', 'val', 'test', got 'valid'"
        with pytest.raises(ValueError) as info:
            meta.get_image_list("val", "flat")
        assert str(info.value) == "dir_structure must be 'original' or 'train', got 'flat'"
        with pytest.raises(TypeError) as info:
            ILSVRCMeta(1)
        assert str(info.value) == "dir must be None or a path, got 1"


class TestILSVRC12Files:
    @pytest.mark.parametrize("name", ["train", "val", "test"])
    def test_yields_full_paths_and_labels_in_list_order(self, imagenet, name):
        root, meta, made = imagenet
        df = ILSVRC12Files(root, name, meta, shuffle=False)
        df.reset_state()
        assert list(df) == [[path, label] for path, label, _ in made[name]]
        assert len(df) == len(made[name])

    def test_val_in_train_structure_is_found_by_guessing(self, tmp_path):
        meta = str(tmp_path / "meta")
        made = make_images(str(tmp_path), {"val": make_meta(meta)["val"]}, val_by_synset=True)
        df = ILSVRC12Files(str(tmp_path), "val", meta)
        df.reset_state()
        assert list(df) == [[path, label] for path, label, _ in made["val"]]
        assert made["val"][0][0].endswith("val/n01484850/ILSVRC2012_val_00000001.JPEG")

    def test_explicit_dir_structure_overrides_the_guess(self, imagenet):
        root, meta, _ = imagenet
        with pytest.raises(FileNotFoundError, match="4 of the 4 files listed in"):
            ILSVRC12Files(root, "val", meta, dir_structure="train")

    @pytest.mark.parametrize("name", ["train", "val"])
    def test_keeps_the_dataflow_contract(self, imagenet, name):
        root, meta, _ = imagenet
        check_dataflow(lambda: ILSVRC12Files(root, name, meta, seed=2))

    def test_each_worker_reads_only_its_shard(self, imagenet):
        root, meta, _ = imagenet
        assert_reads_its_shard(lambda shuffle: ILSVRC12Files(root, "train", meta, shuffle))

    @pytest.mark.timeout(60)
    def test_an_exactly_once_runner_yields_every_file_once_per_pass(self, imagenet):
        root, meta, made = imagenet
        expected = [[path, label] for path, label, _ in made["train"]]
        assert_runner_yields_each_once(ILSVRC12Files(root, "train", meta), expected)

    def test_shuffles_train_only_by_default(self, imagenet):
        root, meta, _ = imagenet
        shuffles = {n: ILSVRC12Files(root, n, meta).shuffle for n in ("train", "val", "test")}
        assert shuffles == {"train": True, "val": False, "test": False}

    def test_shuffle_gives_a_new_permutation_every_pass_and_a_seed_fixes_them(self, imagenet):
        root, meta, _ = imagenet
        assert_shuffle_behaviour(
            lambda shuffle, seed: ILSVRC12Files(root, "train", meta, shuffle, seed=seed)
        )

    def test_pickles_before_reset_state(self, imagenet):
        root, meta, made = imagenet
        df = pickle.loads(pickle.dumps(ILSVRC12Files(root, "val", meta)))
        df.reset_state()
        assert len(list(df)) == 4

    def test_missing_images_error_names_the_first_and_counts_them(self, tmp_path):
        meta = str(tmp_path / "meta")
        made = make_images(str(tmp_path), make_meta(meta))
        os.remove(made["train"][3][0])
        shutil.rmtree(os.path.join(tmp_path, "train", SYNSETS[0]))
        with pytest.raises(FileNotFoundError) as info:
            ILSVRC12Files(str(tmp_path), "train", meta)
        assert str(info.value).startswith(
            f"ILSVRC12Files: 3 of the 5 files listed in {os.path.join(meta, 'train.txt')!r} are "
            f"missing from {str(tmp_path / 'train')!r}; the first is 'n01440764/n01440764_1.JPEG'. "
            "The images are in ILSVRC2012_img_train.tar"
        )

    def test_missing_split_directory_is_named(self, imagenet, tmp_path):
        with pytest.raises(FileNotFoundError) as info:
            ILSVRC12Files(str(tmp_path), "test", imagenet[1])
        assert str(info.value).startswith(
            f"ILSVRC12Files expected the directory {str(tmp_path / 'test')!r}, "
            "which does not exist. The images are in"
        )

    def test_download_applies_to_the_metadata(self, imagenet, tmp_path, monkeypatch):
        root, meta, _ = imagenet
        served = tmp_path / "served"
        served.mkdir()
        with tarfile.open(served / "caffe_ilsvrc12.tar.gz", "w:gz") as tar:
            tar.add(os.path.join(meta, "test.txt"), arcname="test.txt")
        serve_env(monkeypatch)
        with serve_directory(str(served)) as url:
            monkeypatch.setattr(ILSVRCMeta, "SOURCE_URL", url + "caffe_ilsvrc12.tar.gz")
            df = ILSVRC12Files(root, "test", str(tmp_path / "meta"), download=True)
        assert len(df) == 2

    @pytest.mark.parametrize(
        "args, kwargs, error, message",
        [
            ((None, "val"), {}, TypeError, "dir must be a path, got None"),
            (
                ("/x", "eval"),
                {},
                ValueError,
                "name must be one of 'train', 'val', 'test', got 'eval'",
            ),
            (("/x", "val", 5), {}, TypeError, "meta_dir must be None or a path, got 5"),
            (("/x", "val", None, "no"), {}, TypeError, "shuffle must be None or a bool, got 'no'"),
            (
                ("/x", "val", None, None, "flat"),
                {},
                ValueError,
                "dir_structure must be None, 'original' or 'train', got 'flat'",
            ),
            (
                ("/x", "val"),
                {"seed": 1.5},
                TypeError,
                "seed must be None or a non-negative int, got 1.5",
            ),
        ],
    )
    def test_argument_errors(self, args, kwargs, error, message):
        with pytest.raises(error) as info:
            ILSVRC12Files(*args, **kwargs)
        assert str(info.value) == message


class TestILSVRC12:
    @pytest.mark.parametrize("name", ["train", "val", "test"])
    def test_yields_decoded_bgr_images_and_labels_in_list_order(self, imagenet, name):
        root, meta, made = imagenet
        df = ILSVRC12(root, name, meta, shuffle=False)
        df.reset_state()
        out = list(df)
        assert len(out) == len(df) == len(made[name])
        for (image, label), (_, want_label, bgr) in zip(out, made[name]):
            assert image.dtype == np.uint8 and image.shape == (8, 8, 3)
            assert np.abs(image.astype(int) - bgr).max() <= 3
            assert label == want_label

    def test_is_an_ILSVRC12Files(self, imagenet):
        assert isinstance(ILSVRC12(imagenet[0], "val", imagenet[1]), ILSVRC12Files)

    def test_keeps_the_dataflow_contract(self, imagenet):
        root, meta, _ = imagenet
        check_dataflow(lambda: ILSVRC12(root, "train", meta, seed=0))

    def test_each_worker_reads_only_its_shard(self, imagenet):
        root, meta, _ = imagenet
        assert_reads_its_shard(lambda shuffle: ILSVRC12(root, "train", meta, shuffle, seed=0))

    def test_grayscale_file_is_decoded_to_three_channels(self, tmp_path):
        cv2 = pytest.importorskip("cv2")
        meta = str(tmp_path / "meta")
        write_lines(os.path.join(meta, "test.txt"), ["gray.JPEG 0"])
        os.makedirs(tmp_path / "test")
        cv2.imwrite(str(tmp_path / "test" / "gray.JPEG"), np.full((5, 6), 77, np.uint8))
        df = ILSVRC12(str(tmp_path), "test", meta)
        df.reset_state()
        ((image, label),) = list(df)
        assert image.shape == (5, 6, 3) and abs(int(image[2, 2, 1]) - 77) <= 2 and label == -1

    def test_undecodable_file_is_named_while_iterating(self, tmp_path):
        meta = str(tmp_path / "meta")
        write_lines(os.path.join(meta, "test.txt"), ["bad.JPEG 0"])
        os.makedirs(tmp_path / "test")
        (tmp_path / "test" / "bad.JPEG").write_bytes(b"truncated")
        df = ILSVRC12(str(tmp_path), "test", meta)
        df.reset_state()
        path = str(tmp_path / "test" / "bad.JPEG")
        with pytest.raises(OSError, match=f"^ILSVRC12 could not read {path!r} as an image$"):
            list(df)

    def test_without_opencv_the_error_says_what_to_install(self, imagenet, monkeypatch):
        hide_module(monkeypatch, "cv2")
        with pytest.raises(ImportError, match=r"^ILSVRC12 needs the 'opencv-python-headless'"):
            ILSVRC12(imagenet[0], "val", imagenet[1])
        assert len(ILSVRC12Files(imagenet[0], "val", imagenet[1])) == 4

"""Tests of dataflow.dataset.bsds500 on a small BSR tree written in the real format."""

from __future__ import annotations

import os
import tarfile

import numpy as np
import pytest
from _datafiles import (
    assert_reads_its_shard,
    assert_runner_yields_each_once,
    assert_shuffle_behaviour,
    hide_module,
    serve_env,
    write_image,
)
from _loopback import serve_directory

from dataflow import check_dataflow
from dataflow.dataset import BSDS500

scipy_io = pytest.importorskip("scipy.io")
cv2 = pytest.importorskip("cv2")

H, W = 321, 481
DATA = os.path.join("BSR", "BSDS500", "data")


def write_ground_truth(path, boundaries):
    """A groundTruth .mat: a 1 x K cell array of structs, one per annotator."""
    cells = np.empty((1, len(boundaries)), dtype=object)
    for k, b in enumerate(boundaries):
        cells[0, k] = {
            "Segmentation": np.ones(b.shape, np.uint16),
            "Boundaries": b.astype(np.uint8),
        }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scipy_io.savemat(path, {"groundTruth": cells}, do_compression=True)


def edges(shape, rows):
    b = np.zeros(shape, np.uint8)
    b[rows] = 1
    return b


def make_bsds(root, name="train"):
    """Three images: two landscape ones of flat colour and a portrait one whose
    top half is blue and bottom half red; returns {id: (bgr, expected map)}."""
    expected = {}
    for image_id, bgr in (("100", (200, 30, 10)), ("7", (20, 220, 60))):
        write_image(os.path.join(root, DATA, "images", name, image_id + ".jpg"), bgr, (H, W))
        a, b = edges((H, W), slice(0, 10)), edges((H, W), slice(5, 20))
        write_ground_truth(os.path.join(root, DATA, "groundTruth", name, image_id + ".mat"), [a, b])
        expected[image_id] = (bgr, (a + b) / np.float32(2))
    portrait = np.zeros((W, H, 3), np.uint8)
    portrait[: W // 2] = (255, 0, 0)
    portrait[W // 2 :] = (0, 0, 255)
    assert cv2.imwrite(os.path.join(root, DATA, "images", name, "55.jpg"), portrait)
    maps = [edges((W, H), slice(0, 3)), edges((W, H), slice(0, 1)), edges((W, H), slice(2, 4))]
    write_ground_truth(os.path.join(root, DATA, "groundTruth", name, "55.mat"), maps)
    expected["55"] = (None, (sum(m.astype(np.float32) for m in maps) / 3).T)
    # The official tree has a Thumbs.db beside the images.
    with open(os.path.join(root, DATA, "images", name, "Thumbs.db"), "wb") as f:
        f.write(b"\0" * 16)
    return expected


@pytest.fixture(scope="module")
def bsds_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bsds"))
    return root, make_bsds(root)


class TestBSDS500:
    def test_yields_images_and_mean_boundary_maps_sorted_by_file_name(self, bsds_dir):
        root, expected = bsds_dir
        df = BSDS500("train", root, shuffle=False)
        df.reset_state()
        out = list(df)
        assert len(out) == len(df) == 3
        for image_id, (image, boundaries) in zip(["100", "55", "7"], out):
            assert image.dtype == np.uint8 and image.shape == (H, W, 3)
            assert boundaries.dtype == np.float32 and boundaries.shape == (H, W)
            bgr, want = expected[image_id]
            np.testing.assert_allclose(boundaries, want, rtol=1e-6)
            if bgr is not None:
                assert np.abs(image[H // 2, W // 2].astype(int) - bgr).max() <= 3
        assert sorted(np.unique(out[0][1]).tolist()) == [0.0, 0.5, 1.0]

    def test_portrait_images_are_transposed_to_landscape(self, bsds_dir):
        df = BSDS500("train", bsds_dir[0], shuffle=False)
        df.reset_state()
        image = list(df)[1][0]  # 55.jpg: blue on top, red below before the transpose
        assert np.abs(image[H // 2, 10].astype(int) - (255, 0, 0)).max() <= 3
        assert np.abs(image[H // 2, W - 10].astype(int) - (0, 0, 255)).max() <= 3

    def test_keeps_the_dataflow_contract(self, bsds_dir):
        check_dataflow(lambda: BSDS500("train", bsds_dir[0], seed=0))

    def test_each_worker_reads_only_its_shard(self, bsds_dir):
        assert_reads_its_shard(
            lambda shuffle: BSDS500("train", bsds_dir[0], shuffle, seed=0), num_workers=2
        )

    @pytest.mark.timeout(60)
    def test_an_exactly_once_runner_yields_every_image_once_per_pass(self, bsds_dir):
        df = BSDS500("train", bsds_dir[0], shuffle=False)
        df.reset_state()
        assert_runner_yields_each_once(BSDS500("train", bsds_dir[0]), list(df))

    def test_shuffles_train_only_by_default(self, bsds_dir):
        assert BSDS500("train", bsds_dir[0]).shuffle is True
        assert BSDS500("train", bsds_dir[0], False).shuffle is False

    def test_shuffle_gives_a_new_permutation_every_pass_and_a_seed_fixes_them(self, bsds_dir):
        assert_shuffle_behaviour(
            lambda shuffle, seed: BSDS500("train", bsds_dir[0], shuffle, seed=seed)
        )

    def test_yields_fresh_arrays_each_time(self, bsds_dir):
        df = BSDS500("train", bsds_dir[0], shuffle=False)
        df.reset_state()
        image, boundaries = next(iter(df))
        image[:] = 0
        boundaries[:] = 0
        image, boundaries = next(iter(df))
        assert image.any() and boundaries.any()

    def test_missing_split_error_says_what_where_and_how(self, bsds_dir):
        with pytest.raises(FileNotFoundError) as info:
            BSDS500("val", bsds_dir[0])
        assert str(info.value) == (
            f"BSDS500 expected these files in {bsds_dir[0]!r}, which are missing: "
            "'BSR/BSDS500/data/images/val/*', 'BSR/BSDS500/data/groundTruth/val/*'. "
            f"Download {BSDS500.SOURCE_URL} and unpack it there, or pass download=True."
        )

    def test_missing_ground_truth_is_named(self, tmp_path):
        make_bsds(str(tmp_path), "val")
        os.remove(os.path.join(tmp_path, DATA, "groundTruth", "val", "7.mat"))
        with pytest.raises(FileNotFoundError, match="which are missing: 'groundTruth/val/7.mat'"):
            BSDS500("val", str(tmp_path))

    def test_download_fetches_and_unpacks_the_archive(self, bsds_dir, tmp_path, monkeypatch):
        served = tmp_path / "served"
        served.mkdir()
        with tarfile.open(served / "BSR_bsds500.tgz", "w:gz") as tar:
            tar.add(os.path.join(bsds_dir[0], "BSR"), arcname="BSR")
        serve_env(monkeypatch)
        with serve_directory(str(served)) as url:
            monkeypatch.setattr(BSDS500, "SOURCE_URL", url + "BSR_bsds500.tgz")
            df = BSDS500("train", str(tmp_path / "target"), download=True)
        assert len(df) == 3

    def test_image_of_another_size_is_named(self, tmp_path):
        make_bsds(str(tmp_path))
        path = os.path.join(tmp_path, DATA, "images", "train", "7.jpg")
        write_image(path, (1, 2, 3), (H, W - 1))
        with pytest.raises(ValueError) as info:
            BSDS500("train", str(tmp_path))
        assert str(info.value) == (
            f"{path!r} holds an array of shape (321, 480); BSDS500 images and maps are "
            "321 x 481 or 481 x 321"
        )

    def test_undecodable_image_is_named(self, tmp_path):
        make_bsds(str(tmp_path))
        path = os.path.join(tmp_path, DATA, "images", "train", "7.jpg")
        with open(path, "wb") as f:
            f.write(b"not a jpeg")
        with pytest.raises(OSError, match=f"^BSDS500 could not read {path!r} as an image$"):
            BSDS500("train", str(tmp_path))

    @pytest.mark.parametrize(
        "variables",
        [
            {"something": np.zeros((2, 2))},
            {"groundTruth": np.zeros((1, 2))},
            {"groundTruth": np.empty((1, 0), dtype=object)},
        ],
    )
    def test_ground_truth_without_boundary_maps_is_named(self, tmp_path, variables):
        make_bsds(str(tmp_path))
        path = os.path.join(tmp_path, DATA, "groundTruth", "train", "7.mat")
        scipy_io.savemat(path, variables)
        with pytest.raises(ValueError) as info:
            BSDS500("train", str(tmp_path))
        assert str(info.value).startswith(
            f"{path!r} should hold a variable 'groundTruth' with one struct per annotator"
        )

    def test_without_scipy_the_error_says_what_to_install(self, bsds_dir, monkeypatch):
        hide_module(monkeypatch, "scipy.io")
        with pytest.raises(ImportError, match="^BSDS500 needs the 'scipy' package"):
            BSDS500("train", bsds_dir[0])

    def test_without_opencv_the_error_says_what_to_install(self, bsds_dir, monkeypatch):
        hide_module(monkeypatch, "cv2")
        with pytest.raises(ImportError) as info:
            BSDS500("train", bsds_dir[0])
        assert str(info.value) == (
            "BSDS500 needs the 'opencv-python-headless' package: pip install 'dataflow-ml[image]'"
        )

    @pytest.mark.parametrize(
        "args, error, message",
        [
            (
                ("training",),
                ValueError,
                "name must be one of 'train', 'val', 'test', got 'training'",
            ),
            (("val", b"/x"), TypeError, "data_dir must be None or a path, got b'/x'"),
        ],
    )
    def test_argument_errors(self, args, error, message):
        with pytest.raises(error) as info:
            BSDS500(*args)
        assert str(info.value) == message

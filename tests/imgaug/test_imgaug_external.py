"""Adapters for the imgaug and albumentations libraries, tested with fakes of
their interfaces (neither library is a dependency)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from dataflow import imgaug
from dataflow._state import ResumeNotSupportedError
from dataflow.imgaug import Albumentations, IAAugmentor


@pytest.fixture
def fake_imgaug(monkeypatch):
    """A stand-in for the imgaug package: Keypoint and KeypointsOnImage."""
    module = types.ModuleType("imgaug")

    class Keypoint:
        def __init__(self, x, y):
            self.x, self.y = x, y

    class KeypointsOnImage:
        def __init__(self, keypoints, shape):
            self.keypoints, self.shape = keypoints, shape

    module.Keypoint, module.KeypointsOnImage = Keypoint, KeypointsOnImage
    monkeypatch.setitem(sys.modules, "imgaug", module)
    return module


class FakeFliplr:
    """An imgaug-style augmenter: to_deterministic(), augment_image(), augment_keypoints()."""

    def __init__(self):
        self.frozen = 0

    def to_deterministic(self):
        self.frozen += 1
        return self

    def augment_image(self, img):
        return img[:, ::-1]

    def augment_keypoints(self, kps_list):
        out = []
        for kps in kps_list:
            w = kps.shape[1]
            moved = [type(p)(x=w - p.x, y=p.y) for p in kps.keypoints]
            out.append(type(kps)(moved, kps.shape))
        return out


class FakeRotate90:
    """An albumentations-style transform: get_params() and apply(img, **params)."""

    def __init__(self):
        self.draws = iter([1, 2, 3])

    def get_params(self):
        return {"factor": next(self.draws)}

    def apply(self, img, factor):
        return np.rot90(img, factor)


class TestIAAugmentor:
    def test_missing_library_says_how_to_install_it(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "imgaug", None)
        with pytest.raises(
            ImportError, match="IAAugmentor needs the 'imgaug' package: pip install imgaug"
        ):
            IAAugmentor(FakeFliplr())

    def test_freezes_the_augmenter_per_image_and_moves_coords(self, fake_imgaug):
        fake = FakeFliplr()
        aug = IAAugmentor(fake)
        img = np.arange(6, dtype=np.uint8).reshape(2, 3)
        tfm = aug.get_transform(img)
        assert fake.frozen == 1
        np.testing.assert_array_equal(tfm.apply_image(img), img[:, ::-1])
        out = tfm.apply_coords(np.array([[0.5, 1.5], [2.5, 0.5]], np.float32))
        assert out.dtype == np.float32 and out.tolist() == [[2.5, 1.5], [0.5, 0.5]]
        np.testing.assert_array_equal(aug.augment(img), img[:, ::-1])

    def test_state_dict_is_refused_naming_the_library(self, fake_imgaug):
        with pytest.raises(ResumeNotSupportedError, match="^IAAugmentor draws from the imgaug"):
            IAAugmentor(FakeFliplr()).state_dict()
        listed = imgaug.AugmentorList([imgaug.Flip(horiz=True), IAAugmentor(FakeFliplr())])
        with pytest.raises(ResumeNotSupportedError, match="^IAAugmentor"):
            listed.state_dict()


class TestAlbumentations:
    def test_missing_library_says_how_to_install_it(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "albumentations", None)
        with pytest.raises(ImportError, match="Albumentations needs the 'albumentations' package"):
            Albumentations(FakeRotate90())

    def test_draws_params_once_per_image(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "albumentations", types.ModuleType("albumentations"))
        aug = Albumentations(FakeRotate90())
        img = np.arange(6, dtype=np.uint8).reshape(2, 3)
        tfm = aug.get_transform(img)  # factor 1
        np.testing.assert_array_equal(tfm.apply_image(img), np.rot90(img, 1))
        np.testing.assert_array_equal(tfm.apply_image(img), np.rot90(img, 1))
        np.testing.assert_array_equal(aug.augment(img), np.rot90(img, 2))
        with pytest.raises(NotImplementedError, match="cannot transform coordinates"):
            tfm.apply_coords(np.zeros((1, 2)))

    def test_state_dict_is_refused_naming_the_library(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "albumentations", types.ModuleType("albumentations"))
        with pytest.raises(ResumeNotSupportedError, match="^Albumentations draws from the"):
            Albumentations(FakeRotate90()).state_dict()

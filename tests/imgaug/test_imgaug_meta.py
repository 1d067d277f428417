"""Augmentors made of other augmentors or of plain functions."""

from __future__ import annotations

import numpy as np
import pytest
from imgaug_checks import assert_coords_follow_pixels, assert_seeding, ramp

from dataflow.imgaug import (
    BrightnessScale,
    CenterCrop,
    Flip,
    Identity,
    ImageAugmentor,
    MapImage,
    RandomApplyAug,
    RandomChooseAug,
    RandomCrop,
    RandomOrderAug,
    TransformFactory,
)


class Const(ImageAugmentor):
    """Adds a fixed value (test double)."""

    def __init__(self, v):
        self.v = v

    def get_transform(self, img):
        return TransformFactory(apply_image=lambda im: im + self.v, apply_coords=lambda c: c)


class TestIdentity:
    def test_changes_nothing(self):
        img, coords = ramp((3, 3)), np.array([[0.5, 0.5]])
        tfm = Identity().get_transform(img)
        assert tfm.apply_image(img) is img and tfm.apply_coords(coords) is coords


class TestRandomApplyAug:
    def test_applies_with_the_probability(self):
        aug = RandomApplyAug(Const(1), 0.3).set_seed(0)
        applied = sum(int(aug.augment(np.zeros((1, 1)))[0, 0]) for _ in range(300))
        assert 60 < applied < 120
        assert RandomApplyAug(Const(1), 0.0).augment(np.zeros((1, 1)))[0, 0] == 0

    def test_seeds_the_inner_augmentor_and_moves_coords(self):
        assert_seeding(lambda: RandomApplyAug(RandomCrop(2), 0.5), ramp((4, 4), np.float32))
        assert_coords_follow_pixels(RandomApplyAug(Flip(horiz=True), 0.5))

    def test_argument_errors(self):
        with pytest.raises(TypeError, match="aug must be an ImageAugmentor, got 3"):
            RandomApplyAug(3, 0.5)
        with pytest.raises(ValueError, match=r"prob must be a number in \[0, 1\], got 1.5"):
            RandomApplyAug(Identity(), 1.5)


class TestRandomChooseAug:
    def test_chooses_uniformly(self):
        aug = RandomChooseAug([Const(1), Const(2)]).set_seed(0)
        picks = [int(aug.augment(np.zeros((1, 1)))[0, 0]) for _ in range(300)]
        assert 110 < picks.count(1) < 190

    def test_chooses_by_weight(self):
        aug = RandomChooseAug([(Const(1), 3), (Const(2), 1)]).set_seed(0)
        picks = [int(aug.augment(np.zeros((1, 1)))[0, 0]) for _ in range(400)]
        assert 260 < picks.count(1) < 340
        assert (
            RandomChooseAug([(Const(1), 0.0), (Const(2), 1.0)]).augment(np.zeros((1, 1)))[0, 0] == 2
        )

    def test_seeds_the_inner_augmentors_and_moves_coords(self):
        assert_seeding(
            lambda: RandomChooseAug([RandomCrop(2), RandomCrop(3)]), ramp((4, 4), np.float32)
        )
        assert_coords_follow_pixels(RandomChooseAug([Flip(horiz=True), CenterCrop(10)]))

    def test_argument_errors(self):
        with pytest.raises(
            TypeError, match="aug_lists must be a non-empty list of ImageAugmentor, got"
        ):
            RandomChooseAug([])
        with pytest.raises(
            ValueError,
            match=r"aug_lists weights must be numbers >= 0 with a positive sum, got \[0, 0\]",
        ):
            RandomChooseAug([(Identity(), 0), (Identity(), 0)])


class TestRandomOrderAug:
    def test_applies_all_in_a_random_order(self):
        aug = RandomOrderAug([BrightnessScale((2, 2)), Const(1)]).set_seed(0)
        results = {float(aug.augment(np.full((1, 1), 10.0, np.float32))[0, 0]) for _ in range(30)}
        assert results == {21.0, 22.0}  # 10 * 2 + 1 or (10 + 1) * 2

    def test_seeds_and_moves_coords(self):
        assert_seeding(lambda: RandomOrderAug([Flip(horiz=True), Flip(vert=True)]), ramp((4, 4)))
        assert_coords_follow_pixels(RandomOrderAug([Flip(horiz=True), Flip(vert=True)]))

    def test_bad_list_is_an_error(self):
        with pytest.raises(TypeError, match="aug_lists must be a non-empty list of ImageAugmentor"):
            RandomOrderAug([Identity(), "flip"])


class TestMapImage:
    def test_maps_images_and_coords(self):
        aug = MapImage(lambda img: img[:, ::-1], lambda c: np.stack([2 - c[:, 0], c[:, 1]], 1))
        img = ramp((2, 2))
        tfm = aug.get_transform(img)
        np.testing.assert_array_equal(tfm.apply_image(img), img[:, ::-1])
        assert tfm.apply_coords(np.array([[0.5, 1.5]])).tolist() == [[1.5, 1.5]]

    def test_coords_without_coord_func_are_an_error(self):
        tfm = MapImage(lambda img: img).get_transform(np.zeros((1, 1)))
        with pytest.raises(NotImplementedError, match="pass coord_func= to MapImage"):
            tfm.apply_coords(np.zeros((1, 2)))

    def test_argument_errors(self):
        with pytest.raises(TypeError, match="func must be callable, got 3"):
            MapImage(3)
        with pytest.raises(TypeError, match="coord_func must be None or callable, got 'x'"):
            MapImage(abs, "x")

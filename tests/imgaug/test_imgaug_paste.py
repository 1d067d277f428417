"""Pasting onto a canvas, and the canvas fillers."""

from __future__ import annotations

import numpy as np
import pytest
from imgaug_checks import (
    assert_coords_follow_pixels,
    assert_keeps_dtype_and_rank,
    assert_seeding,
    ramp,
)

from dataflow.imgaug import BackgroundFiller, CenterPaste, ConstantBackgroundFiller, RandomPaste


class TestBackgroundFiller:
    def test_subclass_defines_fill(self):
        class Ones(BackgroundFiller):
            def _fill(self, background_shape, img):
                return np.ones(background_shape + img.shape[2:], img.dtype)

        out = Ones().fill([2, 3], np.zeros((1, 1, 3), np.float32))
        assert out.shape == (2, 3, 3) and out.dtype == np.float32

    def test_base_class_says_what_to_define(self):
        with pytest.raises(NotImplementedError, match="BackgroundFiller must define _fill"):
            BackgroundFiller().fill((1, 1), np.zeros((1, 1)))


class TestConstantBackgroundFiller:
    def test_fills_with_the_value_in_the_image_dtype_and_channels(self):
        out = ConstantBackgroundFiller(7).fill((2, 3), np.zeros((1, 1, 3), np.uint8))
        assert out.shape == (2, 3, 3) and out.dtype == np.uint8 and (out == 7).all()
        gray = ConstantBackgroundFiller(0.5).fill((1, 2), np.zeros((1, 1), np.float32))
        assert gray.tolist() == [[0.5, 0.5]]


class TestCenterPaste:
    def test_pastes_at_the_center(self):
        out = CenterPaste((3, 4)).augment(np.full((1, 2), 9, np.uint8))
        assert out.tolist() == [[0, 0, 0, 0], [0, 9, 9, 0], [0, 0, 0, 0]]

    def test_uses_the_filler(self):
        out = CenterPaste(3, ConstantBackgroundFiller(5)).augment(np.zeros((3, 1, 3), np.uint8))
        assert out.shape == (3, 3, 3) and out[:, 0].min() == 5 and out[:, 1].max() == 0

    def test_keeps_dtype_and_moves_coords(self):
        assert_keeps_dtype_and_rank(CenterPaste((9, 9)), same_shape=False)
        assert_coords_follow_pixels(CenterPaste((30, 30)))

    def test_image_larger_than_the_canvas_is_an_error(self):
        with pytest.raises(
            ValueError,
            match=(
                r"CenterPaste\(background_shape=\(2, 2\), .*\) cannot paste an image of shape "
                r"\(3, 1\)"
            ),
        ):
            CenterPaste(2).augment(np.zeros((3, 1), np.uint8))

    def test_bad_filler_is_an_error(self):
        with pytest.raises(
            TypeError, match="background_filler must be None or a BackgroundFiller, got 0"
        ):
            CenterPaste(2, 0)


class TestRandomPaste:
    def test_every_position_occurs(self):
        aug = RandomPaste((2, 3)).set_seed(0)
        positions = set()
        for _ in range(60):
            out = aug.augment(np.ones((1, 2), np.uint8))
            ys, xs = np.nonzero(out)
            positions.add((ys.min(), xs.min()))
        assert positions == {(0, 0), (0, 1), (1, 0), (1, 1)}

    def test_image_of_canvas_size_fills_it(self):
        img = ramp((2, 3))
        np.testing.assert_array_equal(RandomPaste((2, 3)).augment(img), img)

    def test_keeps_dtype_seeds_and_moves_coords(self):
        assert_keeps_dtype_and_rank(RandomPaste((9, 10)), same_shape=False)
        assert_seeding(lambda: RandomPaste((10, 10)), ramp((4, 4)))
        assert_coords_follow_pixels(RandomPaste((30, 40)))

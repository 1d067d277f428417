"""Crops and cutout."""

from __future__ import annotations

import numpy as np
import pytest
from imgaug_checks import (
    assert_coords_follow_pixels,
    assert_keeps_dtype_and_rank,
    assert_seeding,
    needs_cv2,
    ramp,
)

from dataflow.imgaug import (
    CenterCrop,
    GoogleNetRandomCropAndResize,
    RandomCrop,
    RandomCropRandomShape,
    RandomCutout,
)


def find_window(img: np.ndarray, out: np.ndarray):
    """The (y0, x0) where *out* sits in *img* (img has distinct values)."""
    h, w = out.shape[:2]
    hits = [
        (y, x)
        for y in range(img.shape[0] - h + 1)
        for x in range(img.shape[1] - w + 1)
        if np.array_equal(img[y : y + h, x : x + w], out)
    ]
    assert len(hits) == 1, hits
    return hits[0]


def distinct(shape):
    return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)


class TestCenterCrop:
    def test_cuts_the_center(self):
        img = distinct((4, 5))
        np.testing.assert_array_equal(CenterCrop((2, 3)).augment(img), img[1:3, 1:4])
        # an odd margin leaves the extra pixel at the bottom/right
        np.testing.assert_array_equal(
            CenterCrop(2).augment(distinct((5, 5))), distinct((5, 5))[1:3, 1:3]
        )

    def test_keeps_dtype_and_moves_coords(self):
        assert_keeps_dtype_and_rank(CenterCrop((4, 5)), same_shape=False)
        assert_coords_follow_pixels(CenterCrop(11))

    def test_image_smaller_than_the_crop_is_an_error(self):
        with pytest.raises(
            ValueError,
            match=(
                r"CenterCrop\(crop_shape=\(5, 5\)\) cannot crop a window of height 5 and width 5 "
                r"from an image of shape \(4, 6\)"
            ),
        ):
            CenterCrop(5).augment(np.zeros((4, 6), np.uint8))

    def test_bad_shape_is_an_error(self):
        with pytest.raises(
            ValueError,
            match=r"crop_shape must be a positive int or an \(h, w\) pair of them, got \(2, 0\)",
        ):
            CenterCrop((2, 0))


class TestRandomCrop:
    def test_every_position_occurs(self):
        img = distinct((4, 4))
        aug = RandomCrop(3).set_seed(0)
        seen = {find_window(img, aug.augment(img)) for _ in range(60)}
        assert seen == {(0, 0), (0, 1), (1, 0), (1, 1)}

    def test_full_size_crop_is_the_image(self):
        img = distinct((3, 4))
        np.testing.assert_array_equal(RandomCrop((3, 4)).augment(img), img)

    def test_keeps_dtype_seeds_and_moves_coords(self):
        assert_keeps_dtype_and_rank(RandomCrop((4, 5)), same_shape=False)
        assert_seeding(lambda: RandomCrop(3), distinct((8, 8)))
        assert_coords_follow_pixels(RandomCrop((12, 15)))

    def test_image_smaller_than_the_crop_is_an_error(self):
        with pytest.raises(
            ValueError, match=r"RandomCrop\(crop_shape=\(3, 3\)\) cannot crop a window"
        ):
            RandomCrop(3).augment(np.zeros((2, 8), np.uint8))


class TestRandomCropRandomShape:
    def test_sizes_cover_the_inclusive_range(self):
        aug = RandomCropRandomShape(2, 3, wmax=4, hmax=5).set_seed(0)
        img = distinct((6, 6))
        shapes = set()
        for _ in range(200):
            out = aug.augment(img)
            find_window(img, out)
            shapes.add(out.shape)
        assert {s[0] for s in shapes} == {3, 4, 5} and {s[1] for s in shapes} == {2, 3, 4}

    def test_max_defaults_to_the_image_size(self):
        aug = RandomCropRandomShape(1, 1).set_seed(0)
        assert {aug.augment(distinct((2, 2))).shape for _ in range(100)} == {
            (1, 1),
            (1, 2),
            (2, 1),
            (2, 2),
        }

    def test_max_larger_than_the_image_is_capped_at_its_size(self):
        aug = RandomCropRandomShape(2, 2, wmax=10, hmax=10).set_seed(0)
        assert {aug.augment(distinct((2, 3))).shape for _ in range(50)} == {(2, 2), (2, 3)}

    def test_keeps_dtype_seeds_and_moves_coords(self):
        assert_keeps_dtype_and_rank(RandomCropRandomShape(2, 2), same_shape=False)
        assert_seeding(lambda: RandomCropRandomShape(2, 2), distinct((8, 8)))
        assert_coords_follow_pixels(RandomCropRandomShape(10, 10))

    def test_argument_errors(self):
        with pytest.raises(ValueError, match="wmin must be an int >= 1, got 0"):
            RandomCropRandomShape(0, 2)
        with pytest.raises(ValueError, match="hmax must be None or an int >= 3, got 2"):
            RandomCropRandomShape(2, 3, hmax=2)
        with pytest.warns(DeprecationWarning, match="ignores max_aspect_ratio"):
            RandomCropRandomShape(2, 2, max_aspect_ratio=2.0)

    def test_image_smaller_than_the_minimum_is_an_error(self):
        with pytest.raises(ValueError, match="cannot crop a window of height 3 and width 2"):
            RandomCropRandomShape(2, 3).augment(np.zeros((2, 8), np.uint8))


@needs_cv2
class TestGoogleNetRandomCropAndResize:
    def test_output_has_the_target_shape(self):
        aug = GoogleNetRandomCropAndResize(target_shape=8).set_seed(0)
        for shape in [(20, 30, 3), (30, 20), (9, 9, 1)]:
            for dtype in (np.uint8, np.float32):
                out = aug.augment(ramp(shape, dtype))
                assert out.shape == (8, 8) + shape[2:] and out.dtype == dtype

    def test_rectangular_target(self):
        aug = GoogleNetRandomCropAndResize(target_shape=(6, 9)).set_seed(0)
        assert aug.augment(ramp((20, 30, 3))).shape == (6, 9, 3)

    def test_full_area_square_crop_of_a_square_image_is_a_resize(self):
        aug = GoogleNetRandomCropAndResize((1.0, 1.0), (1.0, 1.0), target_shape=4, interp=3)
        img = ramp((8, 8), np.float32)
        expected = img.reshape(4, 2, 4, 2).mean(axis=(1, 3))  # INTER_AREA halves by averaging
        np.testing.assert_allclose(aug.augment(img), expected)

    def test_falls_back_to_resize_and_center_crop(self):
        # No square window of 90% area fits a 2x40 image: resize to 8x160, then
        # center-crop columns 76..83, which repeat source columns 19 and 20.
        aug = GoogleNetRandomCropAndResize((0.9, 1.0), (1.0, 1.0), target_shape=8, interp=0)
        img = np.tile(np.arange(40, dtype=np.uint8), (2, 1))
        out = aug.augment(img)
        assert out.shape == (8, 8)
        assert out[0].tolist() == [19, 19, 19, 19, 20, 20, 20, 20]

    def test_draws_the_window_as_tensorpack_does(self):
        # tensorpack draws area, ratio, swap, then x0 before y0: the same rng gives
        # the same window. A 14x14 window (a quarter of 20x40 is 200 pixels) resized
        # to 14x14 is the window itself.
        img = distinct((20, 40))
        aug = GoogleNetRandomCropAndResize((0.25, 0.25), (1.0, 1.0), target_shape=14)
        for seed in range(10):
            aug.rng = np.random.RandomState(seed)
            expected = np.random.RandomState(seed)
            expected.uniform(size=3)  # area, ratio, swap
            x0, y0 = expected.randint(40 - 14 + 1), expected.randint(20 - 14 + 1)
            np.testing.assert_array_equal(aug.augment(img), img[y0 : y0 + 14, x0 : x0 + 14])

    def test_seeds_and_moves_coords(self):
        assert_seeding(lambda: GoogleNetRandomCropAndResize(target_shape=6), ramp((12, 12)))
        assert_coords_follow_pixels(GoogleNetRandomCropAndResize(target_shape=(40, 31)))

    def test_argument_errors(self):
        with pytest.raises(
            ValueError,
            match=(
                r"crop_area_fraction must be a \(low, high\) pair of numbers in \(0, 1\], got "
                r"\(0, 1\)"
            ),
        ):
            GoogleNetRandomCropAndResize((0, 1))
        with pytest.raises(
            ValueError,
            match=(
                r"aspect_ratio_range must be a \(low, high\) pair of positive numbers, got \(0, "
                r"1\)"
            ),
        ):
            GoogleNetRandomCropAndResize(aspect_ratio_range=(0, 1))
        with pytest.raises(ValueError, match="target_shape must be a positive int"):
            GoogleNetRandomCropAndResize(target_shape=0)


class TestRandomCutout:
    def test_fills_one_rectangle_of_the_given_size(self):
        aug = RandomCutout(2, 3, fill=9).set_seed(0)
        for _ in range(10):
            out = aug.augment(np.zeros((5, 6), np.uint8))
            ys, xs = np.nonzero(out == 9)
            assert len(ys) == 6 and np.ptp(ys) == 1 and np.ptp(xs) == 2

    def test_ranges_draw_sizes_from_low_to_high_exclusive(self):
        aug = RandomCutout((1, 3), (2, 4)).set_seed(0)
        sizes = set()
        for _ in range(100):
            out = aug.augment(np.ones((6, 6), np.float32))
            ys, xs = np.nonzero(out == 0)
            sizes.add((np.ptp(ys) + 1, np.ptp(xs) + 1))
        assert sizes == {(1, 2), (1, 3), (2, 2), (2, 3)}

    def test_draws_the_position_as_tensorpack_does(self):
        # tensorpack draws x0 before y0: the same rng gives the same rectangle
        aug = RandomCutout(2, 3, fill=1)
        for seed in range(10):
            aug.rng = np.random.RandomState(seed)
            expected = np.random.RandomState(seed)
            x0, y0 = expected.randint(9 - 3 + 1), expected.randint(5 - 2 + 1)
            out = aug.augment(np.zeros((5, 9), np.uint8))
            assert list(zip(*np.nonzero(out))) == [
                (y, x) for y in range(y0, y0 + 2) for x in range(x0, x0 + 3)
            ]

    def test_coords_do_not_move(self):
        tfm = RandomCutout(1, 1).get_transform(np.zeros((3, 3), np.uint8))
        coords = np.array([[1.5, 1.5]])
        assert tfm.apply_coords(coords).tolist() == [[1.5, 1.5]]

    def test_keeps_dtype_and_seeds(self):
        assert_keeps_dtype_and_rank(RandomCutout(2, 2))
        assert_seeding(lambda: RandomCutout(2, 2), ramp((8, 8)))

    def test_argument_errors(self):
        with pytest.raises(
            ValueError,
            match=(
                r"h_range must be an int >= 0 or a \(low, high\) pair of them with low < high, "
                r"got \(3, 3\)"
            ),
        ):
            RandomCutout((3, 3), 1)
        with pytest.raises(ValueError, match="fill must be a number, got 'x'"):
            RandomCutout(1, 1, fill="x")

    def test_rectangle_larger_than_the_image_is_an_error(self):
        with pytest.raises(ValueError, match="cannot cut out a rectangle of height 4 and width 1"):
            RandomCutout(4, 1).augment(np.zeros((3, 3), np.uint8))

"""Pixel-value augmentors: brightness, contrast, color, blur, normalization."""

from __future__ import annotations

import numpy as np
import pytest
from imgaug_checks import assert_keeps_dtype_and_rank, assert_seeding, needs_cv2, ramp, twin_rng

from dataflow.imgaug import (
    Brightness,
    BrightnessScale,
    Clip,
    Contrast,
    Gamma,
    GaussianBlur,
    Hue,
    Lighting,
    MeanVarianceNormalize,
    MinMaxNormalize,
    Saturation,
)

RGB = [(6, 8, 3)]


def assert_coords_stay(aug, img):
    coords = np.array([[1.5, 2.5]])
    assert aug.get_transform(img).apply_coords(coords).tolist() == [[1.5, 2.5]]


class TestBrightness:
    def test_adds_one_value_then_clips_and_rounds_uint8(self):
        shift = Brightness(50).set_seed(0).augment(np.full((2, 2), 100.0, np.float32)) - 100
        assert np.ptp(shift) == 0 and abs(shift[0, 0]) <= 50
        out = Brightness(50).set_seed(0).augment(np.array([[0, 100, 250]], np.uint8))
        expected = np.clip(np.rint(np.array([0, 100, 250]) + shift[0, 0]), 0, 255)
        assert out.tolist() == [expected.tolist()]

    def test_clip_false_keeps_float_values_outside_0_255(self):
        out = Brightness(10, clip=False).set_seed(0).augment(np.array([[-50.0, 300.0]], np.float32))
        assert out.min() < -39 and out.max() > 289

    def test_keeps_dtype_seeds_and_coords(self):
        assert_keeps_dtype_and_rank(Brightness(30))
        assert_seeding(lambda: Brightness(30), ramp((4, 4)))
        assert_coords_stay(Brightness(30), ramp((4, 4)))

    def test_bad_delta_is_an_error(self):
        with pytest.raises(ValueError, match="delta must be a positive number, got 0"):
            Brightness(0)


class TestBrightnessScale:
    def test_multiplies_and_clips(self):
        assert BrightnessScale((2, 2)).augment(np.array([[10, 200]], np.uint8)).tolist() == [
            [20, 255]
        ]
        out = BrightnessScale((2, 2), clip=False).augment(np.array([[200.0]], np.float32))
        assert out.tolist() == [[400.0]]

    def test_keeps_dtype_and_seeds(self):
        assert_keeps_dtype_and_rank(BrightnessScale((0.5, 1.5)))
        assert_seeding(lambda: BrightnessScale((0.5, 1.5)), ramp((4, 4)))

    def test_bad_range_is_an_error(self):
        with pytest.raises(
            ValueError,
            match=r"range must be a \(low, high\) pair of numbers with low <= high, got 2",
        ):
            BrightnessScale(2)


class TestContrast:
    def test_scales_the_distance_to_the_mean(self):
        assert Contrast((2, 2)).augment(np.array([[90, 110]], np.uint8)).tolist() == [[80, 120]]

    def test_each_channel_uses_its_own_mean(self):
        img = np.array([[[0, 10, 20], [10, 30, 20]]], np.float32)  # means 5, 20, 20
        out = Contrast((2, 2)).augment(img)
        assert out.tolist() == [[[0, 0, 20], [15, 40, 20]]]  # -5 clipped to 0

    def test_rgb_uses_the_mean_gray_value(self):
        img = np.array([[[100, 0, 0], [50, 0, 0]]], np.float32)  # mean gray 0.299 * 75
        gray = 0.299 * 75
        out = Contrast((2, 2), rgb=True, clip=False).augment(img)
        np.testing.assert_allclose(out, 2 * img - gray, rtol=1e-6)
        out_bgr = Contrast((2, 2), rgb=False, clip=False).augment(img)
        np.testing.assert_allclose(out_bgr, 2 * img - 0.114 * 75, rtol=1e-6)

    def test_keeps_dtype_and_seeds(self):
        assert_keeps_dtype_and_rank(Contrast((0.5, 1.5)))
        assert_seeding(lambda: Contrast((0.5, 1.5)), ramp((4, 4)))

    def test_rgb_needs_three_channels(self):
        with pytest.raises(
            ValueError,
            match=(
                r"Contrast\(factor_range=\(1, 2\), rgb=True\) needs an HxWx3 image, got shape "
                r"\(2, 2, 1\)"
            ),
        ):
            Contrast((1, 2), rgb=True).augment(np.zeros((2, 2, 1), np.uint8))


@needs_cv2
class TestSaturation:
    def test_blends_with_gray(self):
        img = np.array([[[10, 100, 200]]], np.float32)
        out = Saturation(0.4, clip=False).set_seed(0).augment(img)
        s = (out[0, 0, 0] - out[0, 0, 1]) / (10 - 100)
        assert 0.6 <= s <= 1.4
        gray = 0.299 * 10 + 0.587 * 100 + 0.114 * 200
        np.testing.assert_allclose(out, img * s + gray * (1 - s), rtol=1e-5)

    def test_gray_pixels_do_not_change(self):
        img = np.full((2, 2, 3), 77, np.uint8)
        np.testing.assert_array_equal(Saturation(0.9).set_seed(0).augment(img), img)

    def test_keeps_dtype_and_seeds(self):
        assert_keeps_dtype_and_rank(Saturation(), shapes=RGB)
        assert_seeding(Saturation, ramp((4, 4, 3)))

    def test_argument_and_image_errors(self):
        with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\), got 1"):
            Saturation(1)
        with pytest.raises(
            ValueError, match=r"Saturation\(\) needs an HxWx3 image, got shape \(2, 2\)"
        ):
            Saturation().augment(np.zeros((2, 2), np.uint8))


@needs_cv2
class TestHue:
    @pytest.mark.parametrize(
        "offset,rgb,pixel,expected",
        [
            (60, True, [255, 0, 0], [0, 255, 0]),  # red -> green
            (-60, True, [255, 0, 0], [0, 0, 255]),  # red -> blue
            (60, False, [0, 0, 255], [0, 255, 0]),  # BGR red -> BGR green
            (180, True, [255, 0, 0], [255, 0, 0]),  # a full turn
        ],
    )
    def test_rotates_hue(self, offset, rgb, pixel, expected):
        for dtype in (np.uint8, np.float32):
            out = Hue((offset, offset), rgb=rgb).augment(np.array([[pixel]], dtype))
            np.testing.assert_allclose(out[0, 0], expected, atol=0.01)

    def test_keeps_dtype_and_seeds(self):
        assert_keeps_dtype_and_rank(Hue(), shapes=RGB)
        assert_seeding(Hue, ramp((4, 4, 3)))

    def test_needs_three_channels(self):
        with pytest.raises(ValueError, match=r"Hue\(\) needs an HxWx3 image, got shape \(2, 2\)"):
            Hue().augment(np.zeros((2, 2), np.uint8))


class TestLighting:
    def test_adds_one_color_along_the_eigenvectors(self):
        eigvec = np.zeros((3, 3))
        eigvec[0, 0] = 100.0  # only the first component, only the first channel
        aug = Lighting(1.0, [1.0, 1.0, 1.0], eigvec, clip=False).set_seed(0)
        img = np.full((2, 2, 3), 100.0, np.float32)
        delta = aug.augment(img) - img
        assert np.ptp(delta[..., 0]) == 0 and delta[0, 0, 0] != 0
        assert (delta[..., 1:] == 0).all()

    def test_adds_eigvec_times_scaled_normal_weights(self):
        # AlexNet's formula: color = eigvec @ (randn(3) * std * eigval), the three
        # normal draws from the augmentor's rng; eigvec is not symmetric, so
        # mixing up its rows and columns would show
        eigval = np.array([1.0, 0.5, 0.2])
        eigvec = np.array([[0.5, 0.2, 0.1], [0.3, -0.6, 0.2], [0.1, 0.4, -0.9]]) * 100
        aug = Lighting(0.5, eigval, eigvec, clip=False)
        img = ramp((3, 4, 3), np.float32)
        for seed in range(4):
            color = eigvec @ (twin_rng(aug, seed).randn(3) * 0.5 * eigval)
            np.testing.assert_allclose(aug.augment(img), img + color, rtol=1e-5, atol=1e-4)
        uint8 = Lighting(0.5, eigval, eigvec)
        for seed in range(4):
            color = eigvec @ (twin_rng(uint8, seed).randn(3) * 0.5 * eigval)
            expected = np.rint(np.clip(ramp((3, 4, 3)) + color, 0, 255))
            np.testing.assert_array_equal(uint8.augment(ramp((3, 4, 3))), expected)

    def test_zero_std_changes_nothing(self):
        img = ramp((3, 3, 3))
        np.testing.assert_array_equal(Lighting(0, [1, 1, 1], np.eye(3)).augment(img), img)

    def test_keeps_dtype_and_seeds(self):
        make = lambda: Lighting(0.1, [0.2175, 0.0188, 0.0045], np.eye(3) * 255)  # noqa: E731
        assert_keeps_dtype_and_rank(make(), shapes=RGB)
        assert_seeding(make, ramp((4, 4, 3)))

    def test_argument_and_image_errors(self):
        with pytest.raises(ValueError, match=r"eigval must be 3 numbers, got shape \(2,\)"):
            Lighting(0.1, [1, 2], np.eye(3))
        with pytest.raises(ValueError, match=r"eigvec must be a 3x3 matrix, got shape \(2, 2\)"):
            Lighting(0.1, [1, 2, 3], np.eye(2))
        with pytest.raises(ValueError, match="std must be a number >= 0, got -1"):
            Lighting(-1, [1, 2, 3], np.eye(3))
        with pytest.raises(ValueError, match=r"needs an HxWx3 image, got shape \(2, 2, 1\)"):
            Lighting(0.1, [1, 2, 3], np.eye(3)).augment(np.zeros((2, 2, 1), np.uint8))


class TestGamma:
    def test_applies_the_power_curve(self):
        # g = 1: x -> 255 * sqrt(x / 255); 64 -> 127.75
        assert Gamma((1, 1)).augment(np.array([[0, 64, 255]], np.uint8)).tolist() == [[0, 128, 255]]
        out = Gamma((1, 1)).augment(np.array([[64.0, 300.0]], np.float32))
        np.testing.assert_allclose(out, [[127.75, 255.0]], atol=0.01)

    def test_zero_exponent_changes_nothing(self):
        img = ramp((4, 4))
        np.testing.assert_array_equal(Gamma((0, 0)).augment(img), img)

    def test_keeps_dtype_and_seeds(self):
        assert_keeps_dtype_and_rank(Gamma())
        assert_seeding(Gamma, ramp((4, 4)))

    def test_bad_range_is_an_error(self):
        with pytest.raises(
            ValueError,
            match=r"range must be a \(low, high\) pair with -1 < low <= high, got \(-1, 0\)",
        ):
            Gamma((-1, 0))


class TestClip:
    def test_clips_keeping_the_dtype(self):
        out = Clip(10, 200).augment(np.array([[0, 100, 255]], np.uint8))
        assert out.tolist() == [[10, 100, 200]] and out.dtype == np.uint8
        out = Clip(0.5, 1.5).augment(np.array([[0, 1, 2]], np.uint8))
        assert out.dtype == np.uint8
        assert Clip(0, 1).augment(np.array([[-1.0, 0.25, 9.0]], np.float32)).tolist() == [
            [0.0, 0.25, 1.0]
        ]

    def test_keeps_dtype_and_rank(self):
        assert_keeps_dtype_and_rank(Clip(20, 100))

    def test_bad_bounds_are_an_error(self):
        with pytest.raises(ValueError, match="min must be a number <= max, got min=2, max=1"):
            Clip(2, 1)


@needs_cv2
class TestGaussianBlur:
    def test_blurs_a_point_with_the_gaussian_kernel(self):
        img = np.zeros((5, 5), np.float32)
        img[2, 2] = 1
        out = GaussianBlur(size_range=(1, 2), sigma_range=(1, 1)).augment(img)
        g = np.exp(-0.5 * np.array([1.0, 0.0, 1.0]))
        g /= g.sum()
        np.testing.assert_allclose(out[1:4, 1:4], np.outer(g, g), atol=1e-6)

    def test_window_of_one_changes_nothing(self):
        img = ramp((4, 4))
        np.testing.assert_array_equal(GaussianBlur(size_range=(0, 1)).augment(img), img)

    def test_int_size_range_and_older_max_size(self):
        assert GaussianBlur(2).size_range == (0, 2)
        with pytest.warns(DeprecationWarning, match="size_range"):
            assert GaussianBlur(max_size=4).size_range == (0, 4)

    def test_keeps_dtype_and_seeds(self):
        assert_keeps_dtype_and_rank(GaussianBlur(sigma_range=(0.5, 1.5)))
        assert_seeding(lambda: GaussianBlur(size_range=(0, 3), sigma_range=(0.5, 2)), ramp((8, 8)))

    def test_argument_errors(self):
        with pytest.raises(
            ValueError,
            match=(
                r"size_range must be a \(low, high\) pair of ints >= 0 with low < high, got \(2, "
                r"2\)"
            ),
        ):
            GaussianBlur((2, 2))
        with pytest.raises(
            ValueError,
            match=r"sigma_range must be a \(low, high\) pair of numbers >= 0, got \(-1, 1\)",
        ):
            GaussianBlur(sigma_range=(-1, 1))


class TestMinMaxNormalize:
    def test_stretches_to_the_range_as_float32(self):
        out = MinMaxNormalize(0, 1).augment(np.array([[10, 20, 30]], np.uint8))
        assert out.dtype == np.float32 and out.tolist() == [[0.0, 0.5, 1.0]]

    def test_per_channel(self):
        img = np.array([[[0, 10], [10, 30]]], np.float32)
        out = MinMaxNormalize(0, 2, all_channel=False).augment(img)
        assert out.tolist() == [[[0.0, 0.0], [2.0, 2.0]]]

    def test_constant_image_becomes_min(self):
        out = MinMaxNormalize(-1, 1).augment(np.full((2, 2), 5, np.uint8))
        assert (out == -1).all()

    def test_bad_bounds_are_an_error(self):
        with pytest.raises(ValueError, match="min must be a number <= max, got min=1, max=0"):
            MinMaxNormalize(1, 0)


class TestMeanVarianceNormalize:
    def test_zero_mean_unit_variance_float32(self):
        out = MeanVarianceNormalize().augment(np.array([[1, 3]], np.uint8))
        assert out.dtype == np.float32 and out.tolist() == [[-1.0, 1.0]]
        out = MeanVarianceNormalize().augment(ramp((6, 8, 3), np.float32))
        assert abs(out.mean()) < 1e-5 and abs(out.std() - 1) < 1e-4

    def test_per_channel(self):
        img = np.array([[[1, 10], [3, 30]]], np.float32)
        out = MeanVarianceNormalize(all_channel=False).augment(img)
        np.testing.assert_allclose(out, [[[-1, -1], [1, 1]]], rtol=1e-6)

    def test_constant_image_gives_zeros(self):
        out = MeanVarianceNormalize().augment(np.full((2, 2), 7, np.uint8))
        assert (out == 0).all()

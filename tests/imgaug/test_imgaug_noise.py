"""Random noise: Gaussian, salt and pepper, JPEG artifacts."""

from __future__ import annotations

import numpy as np
import pytest
from imgaug_checks import (
    SHAPES,
    assert_keeps_dtype_and_rank,
    assert_seeding,
    needs_cv2,
    ramp,
    twin_rng,
)

from dataflow.imgaug import GaussianNoise, JpegNoise, SaltPepperNoise


@needs_cv2
class TestJpegNoise:
    def test_round_trip_keeps_smooth_images_close(self):
        img = np.full((16, 16, 3), 120, np.uint8)
        out = JpegNoise((90, 91)).augment(img)
        assert np.abs(out.astype(int) - 120).max() <= 2

    def test_low_quality_changes_a_detailed_image(self):
        img = ramp((16, 16, 3))
        out = JpegNoise((1, 2)).augment(img)
        assert not np.array_equal(out, img)

    def test_is_the_opencv_round_trip_at_the_drawn_quality(self):
        # quality = rng.randint(low, high); then cv2.imencode(".jpg") and imdecode
        cv2 = pytest.importorskip("cv2")
        aug = JpegNoise((5, 95))
        qualities = set()
        for shape in SHAPES:
            img = ramp(shape)
            for seed in range(3):
                quality = twin_rng(aug, seed).randint(5, 95)
                qualities.add(quality)
                ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
                assert ok
                expected = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).reshape(shape)
                np.testing.assert_array_equal(aug.augment(img), expected)
                # float images make the round trip as uint8 (rounded), and come back as floats
                aug.rng = np.random.RandomState(seed)
                out = aug.augment(img.astype(np.float32) + 0.3)
                assert out.dtype == np.float32
                np.testing.assert_array_equal(out, expected.astype(np.float32))
        assert len(qualities) == 3

    def test_keeps_dtype_and_seeds(self):
        assert_keeps_dtype_and_rank(JpegNoise())
        assert_seeding(lambda: JpegNoise((5, 100)), ramp((16, 16, 3)))

    def test_argument_and_image_errors(self):
        with pytest.raises(
            ValueError,
            match=(
                r"quality_range must be a \(low, high\) pair of ints with 0 <= low < high <= 101, "
                r"got \(50, 50\)"
            ),
        ):
            JpegNoise((50, 50))
        with pytest.raises(
            ValueError, match=r"JpegNoise\(\) needs an HxWx1 or HxWx3 image, got shape \(4, 4, 2\)"
        ):
            JpegNoise().augment(np.zeros((4, 4, 2), np.uint8))


class TestGaussianNoise:
    def test_adds_noise_of_the_given_deviation(self):
        out = GaussianNoise(sigma=3, clip=False).set_seed(0).augment(np.zeros((64, 64), np.float32))
        assert abs(out.mean()) < 0.2 and abs(out.std() - 3) < 0.2

    def test_adds_sigma_times_the_normal_draws(self):
        # noise = rng.randn(*img.shape), one draw per value, times sigma
        for shape in SHAPES:
            img = ramp(shape, np.float32)
            aug = GaussianNoise(sigma=30, clip=False)
            for seed in range(3):
                expected = img + 30 * twin_rng(aug, seed).randn(*shape)
                np.testing.assert_allclose(aug.augment(img), expected, rtol=1e-6, atol=1e-4)
            clipped = GaussianNoise(sigma=30)
            expected = np.clip(img + 30 * twin_rng(clipped, 0).randn(*shape), 0, 255)
            np.testing.assert_allclose(clipped.augment(img), expected, rtol=1e-6, atol=1e-4)

    def test_uint8_is_clipped_and_rounded(self):
        # uint8 results are clipped to [0, 255] and rounded to the nearest integer
        aug = GaussianNoise(sigma=30)
        for shape in SHAPES:
            img = ramp(shape)
            for seed in range(3):
                expected = np.rint(np.clip(img + 30 * twin_rng(aug, seed).randn(*shape), 0, 255))
                np.testing.assert_array_equal(aug.augment(img), expected)

    def test_uint8_is_clipped(self):
        out = GaussianNoise(sigma=50).set_seed(0).augment(np.full((16, 16), 250, np.uint8))
        assert out.max() == 255 and out.dtype == np.uint8

    def test_keeps_dtype_seeds_and_coords(self):
        assert_keeps_dtype_and_rank(GaussianNoise())
        assert_seeding(GaussianNoise, ramp((4, 4)))
        tfm = GaussianNoise().get_transform(np.zeros((2, 2)))
        assert tfm.apply_coords(np.array([[0.5, 1.5]])).tolist() == [[0.5, 1.5]]

    def test_bad_sigma_is_an_error(self):
        with pytest.raises(ValueError, match="sigma must be a number >= 0, got -1"):
            GaussianNoise(-1)


class TestSaltPepperNoise:
    def test_sets_values_to_0_or_255_at_the_given_rates(self):
        img = np.full((100, 100), 100, np.uint8)
        out = SaltPepperNoise(0.2, 0.1).set_seed(0).augment(img)
        assert set(np.unique(out).tolist()) == {0, 100, 255}
        assert abs((out == 255).mean() - 0.2) < 0.02 and abs((out == 0).mean() - 0.1) < 0.02

    def test_salts_and_peppers_where_the_uniform_draws_say(self):
        # u = rng.uniform(0, 1, img.shape), one draw per value: u >= 1 - white_prob
        # becomes 255, u < black_prob becomes 0, everything else stays
        aug = SaltPepperNoise(0.2, 0.3)
        for shape in SHAPES:
            for dtype in (np.uint8, np.float32):
                img = ramp(shape, dtype)
                for seed in range(3):
                    u = twin_rng(aug, seed).uniform(0, 1, size=shape)
                    expected = np.where(u >= 0.8, 255, np.where(u < 0.3, 0, img))
                    out = aug.augment(img)
                    assert out.dtype == dtype
                    np.testing.assert_array_equal(out, expected)

    def test_zero_rates_change_nothing(self):
        img = ramp((4, 4, 3))
        np.testing.assert_array_equal(SaltPepperNoise(0, 0).augment(img), img)

    def test_keeps_dtype_and_seeds(self):
        assert_keeps_dtype_and_rank(SaltPepperNoise())
        assert_seeding(lambda: SaltPepperNoise(0.3, 0.3), ramp((4, 4)))

    def test_argument_errors(self):
        with pytest.raises(ValueError, match=r"white_prob must be a number in \[0, 1\], got 2"):
            SaltPepperNoise(2, 0)
        with pytest.raises(
            ValueError, match="white_prob \\+ black_prob must be <= 1, got 0.6 \\+ 0.6"
        ):
            SaltPepperNoise(0.6, 0.6)

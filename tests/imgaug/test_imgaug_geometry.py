"""Resizes, flips, rotations and affine warps."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from imgaug_checks import (
    assert_coords_follow_pixels,
    assert_keeps_dtype_and_rank,
    assert_seeding,
    f32_uniform,
    needs_cv2,
    ramp,
    twin_rng,
)

from dataflow.imgaug import (
    Affine,
    Flip,
    RandomResize,
    Resize,
    ResizeShortestEdge,
    Rotation,
    RotationAndCropValid,
    Shift,
    Transpose,
)

NEAREST, LINEAR, AREA = 0, 1, 3


def rotation_matrix(center, deg, scale=1.0):
    """The matrix of ``cv2.getRotationMatrix2D(center, deg, scale)`` as OpenCV
    documents it: ``a = scale * cos``, ``b = scale * sin``, and
    ``[[a, b, (1 - a) * cx - b * cy], [-b, a, b * cx + (1 - a) * cy]]``."""
    cx, cy = center
    a = scale * math.cos(math.radians(deg))
    b = scale * math.sin(math.radians(deg))
    return np.array([[a, b, (1 - a) * cx - b * cy], [-b, a, b * cx + (1 - a) * cy]])


def assert_warped_nearest(out, img, mat, border_value=None):
    """*out* is ``cv2.warpAffine(img, mat, (w, h), INTER_NEAREST, BORDER_REPLICATE)``
    worked out by hand: output pixel ``(x, y)`` takes the input pixel nearest to
    ``mat^-1 (x, y)``, clamped to the edges (or *border_value* outside the
    image, for ``BORDER_CONSTANT``). Where that point lies within
    0.005 pixel of a rounding tie, OpenCV's fixed-point arithmetic (1/1024 pixel)
    may round either way, and either neighbour is accepted."""
    h, w = img.shape[:2]
    inv = np.linalg.inv(np.vstack([mat, [0.0, 0.0, 1.0]]))[:2]
    ys, xs = np.indices((h, w))
    src = (inv @ np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)])).reshape(2, h, w)
    nearest = np.floor(src + 0.5)
    tie = np.abs(src - np.floor(src) - 0.5) < 0.005
    other = np.where(tie, np.where(nearest > src, nearest - 1, nearest + 1), nearest)
    if border_value is None:
        padded = np.pad(img, 1, mode="edge")
    else:
        padded = np.pad(img, 1, constant_values=border_value)
    sx, ox = (np.clip(a.astype(int) + 1, 0, w + 1) for a in (nearest[0], other[0]))
    sy, oy = (np.clip(a.astype(int) + 1, 0, h + 1) for a in (nearest[1], other[1]))
    ok = np.zeros(out.shape, bool)
    for y in (sy, oy):
        for x in (sx, ox):
            ok |= out == padded[y, x]
    assert out.shape == img.shape and ok.all(), (mat, np.argwhere(~ok))
    assert tie.any(axis=0).mean() < 0.1, "too many ties for a meaningful check"


def distinct(shape):
    return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)


@needs_cv2
class TestResize:
    def test_output_shape_and_dtype(self):
        for shape in [(6, 8), (6, 8, 1), (6, 8, 3)]:
            for dtype in (np.uint8, np.float32):
                out = Resize((3, 5)).augment(ramp(shape, dtype))
                assert out.shape == (3, 5) + shape[2:] and out.dtype == dtype
        assert Resize(4).augment(ramp((6, 8))).shape == (4, 4)

    def test_linear_downscale_averages(self):
        img = np.array([[0, 2], [4, 6]], np.float32)
        assert Resize(1, interp=LINEAR).augment(img).tolist() == [[3.0]]

    def test_nearest_upscale_repeats(self):
        out = Resize((2, 4), NEAREST).augment(np.array([[1, 2]], np.uint8))
        assert out.tolist() == [[1, 1, 2, 2], [1, 1, 2, 2]]

    def test_coords_follow_pixels(self):
        assert_coords_follow_pixels(Resize((30, 40)))
        assert_coords_follow_pixels(Resize((10, 10), AREA))

    def test_bad_shape_is_an_error(self):
        with pytest.raises(
            ValueError, match=r"shape must be a positive int or an \(h, w\) pair of them, got 0"
        ):
            Resize(0)


@needs_cv2
class TestResizeShortestEdge:
    @pytest.mark.parametrize(
        "shape,size,expected",
        [((8, 10), 4, (4, 5)), ((10, 8), 4, (5, 4)), ((3, 5), 2, (2, 3)), ((6, 6), 3, (3, 3))],
    )
    def test_shorter_side_becomes_size(self, shape, size, expected):
        assert ResizeShortestEdge(size).augment(ramp(shape)).shape == expected

    def test_keeps_dtype_and_rank(self):
        assert_keeps_dtype_and_rank(ResizeShortestEdge(4), same_shape=False)

    def test_coords_follow_pixels(self):
        assert_coords_follow_pixels(ResizeShortestEdge(30))

    def test_bad_size_is_an_error(self):
        with pytest.raises(ValueError, match="size must be an int >= 1, got -1"):
            ResizeShortestEdge(-1)
        # a pair is not a size: it used to keep the first number silently
        with pytest.raises(ValueError, match=r"size must be an int >= 1, got \(256, 300\)"):
            ResizeShortestEdge((256, 300))


@needs_cv2
class TestRandomResize:
    def test_float_range_scales_keeping_aspect_ratio(self):
        aug = RandomResize((0.5, 2.0), aspect_ratio_thres=0).set_seed(0)
        for _ in range(10):
            h, w = aug.augment(ramp((10, 20))).shape
            assert 5 <= h <= 20 and abs(w - 2 * h) <= 1

    def test_int_range_gives_widths_in_pixels(self):
        aug = RandomResize((10, 12), aspect_ratio_thres=0).set_seed(0)
        for _ in range(10):
            h, w = aug.augment(ramp((10, 20))).shape
            assert 10 <= w <= 12 and abs(h - w / 2) <= 1

    def test_aspect_ratio_change_stays_under_threshold(self):
        aug = RandomResize((0.5, 2.0), (0.5, 2.0), aspect_ratio_thres=0.1).set_seed(0)
        for _ in range(20):
            h, w = aug.augment(ramp((20, 20))).shape
            assert abs(w / h - 1) <= 0.1 + 1e-5

    def test_minimum_bounds_the_size(self):
        aug = RandomResize((0.1, 0.2), minimum=(7, 9), aspect_ratio_thres=0).set_seed(0)
        assert aug.augment(ramp((20, 20))).shape == (9, 7)

    def test_impossible_ratio_keeps_the_size_and_warns(self, caplog):
        aug = RandomResize((1.0, 1.0), (2.0, 2.0), aspect_ratio_thres=0.1)
        with caplog.at_level(logging.WARNING, logger="dataflow.imgaug.geometry"):
            assert aug.augment(ramp((4, 6))).shape == (4, 6)
        assert "found no size within its aspect ratio threshold" in caplog.text

    def test_keeps_dtype_seeds_and_moves_coords(self):
        make = lambda: RandomResize((0.8, 1.5), (0.8, 1.5))  # noqa: E731
        assert_keeps_dtype_and_rank(make(), same_shape=False)
        assert_seeding(make, ramp((8, 8)))
        assert_coords_follow_pixels(RandomResize((1.0, 2.0), (1.0, 2.0), aspect_ratio_thres=0.5))

    def test_argument_errors(self):
        with pytest.raises(
            ValueError,
            match=r"yrange must be a \(low, high\) pair when aspect_ratio_thres > 0, got None",
        ):
            RandomResize((0.5, 1.0))
        with pytest.raises(
            ValueError, match=r"yrange must hold the same kind of numbers as xrange, got \(10, 20\)"
        ):
            RandomResize((0.5, 1.0), (10, 20))
        with pytest.raises(ValueError, match="aspect_ratio_thres must be a number >= 0, got -1"):
            RandomResize((0.5, 1.0), (0.5, 1.0), aspect_ratio_thres=-1)
        with pytest.raises(
            ValueError,
            match=r"xrange must be a \(low, high\) pair of numbers with low <= high, got \(2, 1\)",
        ):
            RandomResize((2, 1), aspect_ratio_thres=0)


class TestFlip:
    def test_horizontal_and_vertical(self):
        img = np.array([[1, 2], [3, 4]], np.uint8)
        assert Flip(horiz=True, prob=1.0).augment(img).tolist() == [[2, 1], [4, 3]]
        assert Flip(vert=True, prob=1.0).augment(img).tolist() == [[3, 4], [1, 2]]
        assert Flip(horiz=True, prob=0.0).augment(img).tolist() == [[1, 2], [3, 4]]

    def test_flips_about_half_the_time(self):
        aug = Flip(horiz=True).set_seed(0)
        img = np.array([[1, 2]], np.uint8)
        flips = sum(aug.augment(img)[0, 0] == 2 for _ in range(200))
        assert 70 < flips < 130

    def test_keeps_dtype_seeds_and_moves_coords(self):
        assert_keeps_dtype_and_rank(Flip(horiz=True))
        assert_seeding(lambda: Flip(vert=True), ramp((4, 4)))
        assert_coords_follow_pixels(Flip(horiz=True))
        assert_coords_follow_pixels(Flip(vert=True))

    def test_argument_errors(self):
        with pytest.raises(
            ValueError,
            match="exactly one of horiz and vert must be True, got horiz=False, vert=False",
        ):
            Flip()
        with pytest.raises(
            ValueError,
            match="exactly one of horiz and vert must be True, got horiz=True, vert=True",
        ):
            Flip(horiz=True, vert=True)
        with pytest.raises(ValueError, match=r"prob must be a number in \[0, 1\], got 2"):
            Flip(horiz=True, prob=2)


class TestTranspose:
    def test_swaps_rows_and_columns(self):
        img = np.array([[1, 2, 3]], np.uint8)
        assert Transpose(prob=1.0).augment(img).tolist() == [[1], [2], [3]]
        assert Transpose(prob=1.0).augment(ramp((2, 5, 3))).shape == (5, 2, 3)

    def test_keeps_dtype_seeds_and_moves_coords(self):
        assert_keeps_dtype_and_rank(Transpose(), shapes=[(5, 5), (5, 5, 3)])
        assert_seeding(Transpose, ramp((4, 4)))
        assert_coords_follow_pixels(Transpose(prob=1.0))

    def test_bad_prob_is_an_error(self):
        with pytest.raises(ValueError, match=r"prob must be a number in \[0, 1\], got -0.5"):
            Transpose(-0.5)


@needs_cv2
class TestRotation:
    def test_quarter_turns_about_the_center_are_exact(self):
        img = ramp((5, 5))
        turns = [np.rot90(img, k) for k in range(4)]
        aug = Rotation(180, center_range=(0.5, 0.5), interp=NEAREST, step_deg=90).set_seed(0)
        seen = set()
        for _ in range(20):
            out = aug.augment(img)
            k = next(k for k in range(4) if np.array_equal(out, turns[k]))
            seen.add(k)
        assert seen == {0, 1, 2, 3}

    def test_a_positive_angle_turns_counter_clockwise_as_rot90(self):
        # tensorpack's sign, that of cv2.getRotationMatrix2D: +90 degrees turns the
        # picture counter-clockwise on screen, which is np.rot90(img, 1).
        img = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.uint8)
        aug = Rotation(180, center_range=(0.5, 0.5), interp=NEAREST, step_deg=90)
        seen = {}
        for seed in range(12):
            rng = twin_rng(aug, seed)
            f32_uniform(rng, 0.5, 0.5, (2,))  # the center, then the angle
            deg = float(f32_uniform(rng, -180, 180) // 90 * 90)
            out = aug.augment(img)
            np.testing.assert_array_equal(out, np.rot90(img, int(deg // 90) % 4), err_msg=deg)
            seen[deg] = out.tolist()
        assert set(seen) == {-180.0, -90.0, 0.0, 90.0}
        assert seen[90.0] == [[3, 6, 9], [2, 5, 8], [1, 4, 7]]
        assert seen[-90.0] == [[7, 4, 1], [8, 5, 2], [9, 6, 3]]

    def test_any_angle_warps_by_the_rotation_matrix_about_the_drawn_center(self):
        img = distinct((9, 11))
        aug = Rotation(30, interp=NEAREST)
        for seed in range(12):
            rng = twin_rng(aug, seed)
            fx, fy = f32_uniform(rng, 0, 1, (2,))
            deg = f32_uniform(rng, -30, 30)
            mat = rotation_matrix((11 * fx - 0.5, 9 * fy - 0.5), deg)
            assert_warped_nearest(aug.augment(img), img, mat)

    def test_keeps_dtype_seeds_and_moves_coords(self):
        assert_keeps_dtype_and_rank(Rotation(30))
        assert_seeding(lambda: Rotation(30), ramp((6, 6)))
        assert_coords_follow_pixels(Rotation(40))

    def test_argument_errors(self):
        with pytest.raises(ValueError, match="max_deg must be a number >= 0, got -1"):
            Rotation(-1)
        with pytest.raises(
            ValueError,
            match=r"step_deg must be None or a divisor of 180 \(with max_deg=180\), got 45",
        ):
            Rotation(90, step_deg=45)
        with pytest.raises(ValueError, match=r"center_range must be a \(low, high\) pair"):
            Rotation(10, center_range=(1, 0))


@needs_cv2
class TestRotationAndCropValid:
    @pytest.mark.parametrize(
        "w,h,angle,expected",
        [(10, 20, 0, (10, 20)), (10, 10, 45, (7, 7)), (20, 10, 90, (10, 20)), (0, 5, 30, (0, 0))],
    )
    def test_largest_rotated_rect(self, w, h, angle, expected):
        assert RotationAndCropValid.largest_rotated_rect(w, h, angle) == expected

    def test_no_rotation_keeps_the_image(self):
        img = ramp((5, 7, 3))
        np.testing.assert_array_equal(RotationAndCropValid(0).augment(img), img)

    def test_crop_holds_only_rotated_pixels(self):
        aug = RotationAndCropValid(45).set_seed(0)
        for _ in range(10):
            out = aug.augment(np.full((20, 30), 200, np.uint8))
            assert out.shape[0] <= 20 and out.shape[1] <= 30
            # corners may blend in a little of the border, but no black corner is left
            assert out.min() > 100 and np.median(out) == 200

    def test_quarter_turns_keep_the_middle_square_of_a_wide_image(self):
        # A 4x6 image turned by +-90 degrees is 6 high and 4 wide; the 4-row canvas
        # keeps its middle rows 1..4, all valid pixels. Half turns keep everything.
        img = np.arange(24, dtype=np.uint8).reshape(4, 6)
        aug = RotationAndCropValid(180, interp=NEAREST, step_deg=90)
        seen = set()
        for seed in range(12):
            k = int(f32_uniform(twin_rng(aug, seed), -180, 180) // 90) % 4
            expected = np.rot90(img, k) if k % 2 == 0 else np.rot90(img, k)[1:5]
            np.testing.assert_array_equal(aug.augment(img), expected, err_msg=f"k={k}")
            seen.add(k)
        assert seen == {0, 1, 2, 3}
        aug.rng = np.random.RandomState(4)  # draws +90 degrees (see the Rotation test)
        assert aug.augment(img).tolist() == [
            [4, 10, 16, 22],
            [3, 9, 15, 21],
            [2, 8, 14, 20],
            [1, 7, 13, 19],
        ]

    def test_any_angle_is_the_centered_valid_crop_of_the_rotation(self):
        img = distinct((20, 30))
        aug = RotationAndCropValid(40, interp=NEAREST)
        for seed in range(12):
            deg = f32_uniform(twin_rng(aug, seed), -40, 40)
            # The largest valid upright rectangle, by hand. Below ~20.9 degrees
            # (20 > 30 sin 2a) its four corners touch the rotated 30x20 image:
            # w cos + h sin = 30 and w sin + h cos = 20. Above, two corners touch the
            # long sides, 10 (half the short side) from the center: w = 10 / sin,
            # h = 10 / cos.
            sin_a, cos_a = abs(math.sin(math.radians(deg))), abs(math.cos(math.radians(deg)))
            if 2 * sin_a * cos_a * 30 >= 20:
                cw, ch = 10 / sin_a, 10 / cos_a
            else:
                cos_2a = cos_a**2 - sin_a**2
                cw, ch = (30 * cos_a - 20 * sin_a) / cos_2a, (20 * cos_a - 30 * sin_a) / cos_2a
            cw, ch = int(round(cw)), int(round(ch))
            y0, x0 = (20 - ch) // 2, (30 - cw) // 2
            rotated = aug.get_transform(img).tfms[0].apply_image(img)
            assert_warped_nearest(rotated, img, rotation_matrix((14.5, 9.5), deg), border_value=0)
            aug.rng = np.random.RandomState(seed)
            out = aug.augment(img)
            assert out.shape == (ch, cw), (seed, deg)
            np.testing.assert_array_equal(out, rotated[y0 : y0 + ch, x0 : x0 + cw])

    def test_keeps_dtype_seeds_and_moves_coords(self):
        assert_keeps_dtype_and_rank(RotationAndCropValid(20), same_shape=False)
        assert_seeding(lambda: RotationAndCropValid(30), ramp((9, 9)))
        assert_coords_follow_pixels(RotationAndCropValid(30))

    def test_bad_step_is_an_error(self):
        with pytest.raises(ValueError, match="step_deg must be None or a divisor of 180"):
            RotationAndCropValid(180, step_deg=7)


@needs_cv2
class TestAffine:
    def test_defaults_keep_the_image(self):
        img = ramp((5, 6, 3))
        np.testing.assert_array_equal(Affine().augment(img), img)

    def test_translation_moves_by_whole_pixels(self):
        img = np.zeros((9, 9), np.uint8)
        img[4, 4] = 255
        aug = Affine(translate_frac=(0.3, 0.3), interp=NEAREST).set_seed(0)
        for _ in range(10):
            out = aug.augment(img)
            assert (out == 255).sum() == 1 and out.sum() == 255

    def test_scale_half_samples_every_other_pixel_about_the_center(self):
        # the center (x, y) = (3, 2) of a 5x7 image stays; output (x, y) takes input
        # (2x - 3, 2y - 2), edges replicated
        img = distinct((5, 7))
        out = Affine(scale=(0.5, 0.5), interp=NEAREST).augment(img)
        rows = np.clip(2 * np.arange(5) - 2, 0, 4)
        cols = np.clip(2 * np.arange(7) - 3, 0, 6)
        np.testing.assert_array_equal(out, img[np.ix_(rows, cols)])
        np.testing.assert_array_equal(Affine(scale=(0.5, 0.5)).augment(img), out)  # exact in linear

    def test_rotation_warps_by_the_rotation_matrix_about_the_center(self):
        img = distinct((9, 12))
        aug = Affine(rotate_max_deg=40, interp=NEAREST)
        for seed in range(12):
            deg = f32_uniform(twin_rng(aug, seed), -40, 40)  # the only draw
            assert_warped_nearest(aug.augment(img), img, rotation_matrix((5.5, 4.0), deg))

    def test_shear_slides_rows_by_sin_and_squeezes_them_by_cos(self):
        # tensorpack's shear by s degrees about the center c: (x, y) -> c + S (x - cx, y - cy)
        # with S = [[1, sin s], [0, cos s]]; the center row stays put.
        img = distinct((9, 12))
        aug = Affine(shear=30, interp=NEAREST)
        for seed in range(12):
            s = math.radians(f32_uniform(twin_rng(aug, seed), -30, 30))  # then a 0 angle
            lin = np.array([[1, math.sin(s)], [0, math.cos(s)]])
            center = np.array([5.5, 4.0])
            out = aug.augment(img)
            assert_warped_nearest(out, img, np.hstack([lin, (center - lin @ center)[:, None]]))
            np.testing.assert_array_equal(out[4], img[4])

    def test_all_parts_compose_as_rotate_scale_after_shear_then_shift(self):
        # the matrix is [R S | t]: R the rotation matrix with scale, S the shear, t
        # keeps the center c fixed and then adds the (rounded) shift
        img = distinct((10, 12))
        aug = Affine(scale=(0.7, 1.3), translate_frac=(0.2, 0.2), rotate_max_deg=30, shear=20)
        aug.interp = NEAREST
        for seed in range(16):
            rng = twin_rng(aug, seed)
            scale = f32_uniform(rng, 0.7, 1.3)
            dx = np.round(f32_uniform(rng, -0.2 * 12, 0.2 * 12))
            dy = np.round(f32_uniform(rng, -0.2 * 10, 0.2 * 10))
            s = math.radians(f32_uniform(rng, -20, 20))
            deg = f32_uniform(rng, -30, 30)
            center = np.array([5.5, 4.5])
            lin = rotation_matrix(center, deg, scale)[:, :2] @ np.array(
                [[1, math.sin(s)], [0, math.cos(s)]]
            )
            t = center - lin @ center + (dx, dy)
            mat = np.hstack([lin, t[:, None]])
            np.testing.assert_allclose(aug.get_transform(img).mat, mat, atol=1e-6)
            aug.rng = np.random.RandomState(seed)
            assert_warped_nearest(aug.augment(img), img, mat)

    def test_keeps_dtype_seeds_and_moves_coords(self):
        def make():
            return Affine(scale=(0.8, 1.2), translate_frac=(0.1, 0.1), rotate_max_deg=20, shear=10)

        assert_keeps_dtype_and_rank(make())
        assert_seeding(make, ramp((8, 8)))
        assert_coords_follow_pixels(make())

    def test_argument_errors(self):
        with pytest.raises(ValueError, match=r"scale must be a \(low, high\) pair"):
            Affine(scale=(2, 1))
        with pytest.raises(
            ValueError,
            match=r"translate_frac must be None or a pair of numbers >= 0, got \(-0.1, 0\)",
        ):
            Affine(translate_frac=(-0.1, 0))
        with pytest.raises(ValueError, match=r"rotate_max_deg must be a number >= 0, got -5"):
            Affine(rotate_max_deg=-5)
        with pytest.raises(ValueError, match=r"shear must be a number in \[0, 180\), got 180"):
            Affine(shear=180)


@needs_cv2
class TestShift:
    def test_shifts_by_whole_pixels_replicating_the_border(self):
        img = np.tile(np.arange(8, dtype=np.uint8), (3, 1))
        aug = Shift(horiz_frac=0.5).set_seed(0)
        shifts = set()
        for _ in range(20):
            out = aug.augment(img)
            moves = [
                dx
                for dx in range(-4, 5)
                if out[0].tolist() == np.clip(np.arange(8) - dx, 0, 7).tolist()
            ]
            assert len(moves) == 1 and (out == out[0]).all()
            shifts.add(moves[0])
        assert len(shifts) > 3

    def test_keeps_dtype_seeds_and_moves_coords(self):
        assert_keeps_dtype_and_rank(Shift(0.3, 0.3))
        assert_seeding(lambda: Shift(0.3, 0.3), ramp((8, 8)))
        assert_coords_follow_pixels(Shift(0.2, 0.2))

    def test_bad_fraction_is_an_error(self):
        with pytest.raises(ValueError, match=r"horiz_frac must be a number in \[0, 1\), got 1"):
            Shift(horiz_frac=1)

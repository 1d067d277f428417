"""Deterministic transforms: pixels, coordinates, composition."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from imgaug_checks import needs_cv2, ramp

from dataflow.imgaug import (
    CropTransform,
    FlipTransform,
    NoOpTransform,
    PhotometricTransform,
    ResizeTransform,
    Transform,
    TransformFactory,
    TransformList,
    TransposeTransform,
    WarpAffineTransform,
)

images = hnp.arrays(
    np.uint8,
    st.tuples(st.integers(1, 6), st.integers(1, 6), st.sampled_from([1, 3])),
    elements=st.integers(0, 255),
)


def pixel_centers(img: np.ndarray) -> np.ndarray:
    ys, xs = np.indices(img.shape[:2])
    return np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1)


def assert_pixels_move_with_coords(tfm: Transform, img: np.ndarray) -> None:
    """Every input pixel shows up in the output where apply_coords puts its center."""
    out = tfm.apply_image(img)
    moved = tfm.apply_coords(pixel_centers(img))
    for (x, y), value in zip(moved, img.reshape(-1, *img.shape[2:])):
        if 0 <= x < out.shape[1] and 0 <= y < out.shape[0]:
            np.testing.assert_array_equal(out[int(y), int(x)], value)


class TestTransform:
    def test_subclass_without_apply_image_says_so(self):
        with pytest.raises(NotImplementedError, match="Bare does not implement apply_image"):

            class Bare(Transform):
                pass

            Bare().apply_image(np.zeros((1, 1)))

    def test_apply_coords_is_an_error_unless_defined(self):
        class OnlyImage(Transform):
            def apply_image(self, img):
                return img

        with pytest.raises(NotImplementedError, match="cannot transform coordinates"):
            OnlyImage().apply_coords(np.zeros((1, 2)))

    def test_repr_shows_constructor_arguments(self):
        assert repr(CropTransform(1, 2, 3, 4)) == "CropTransform(y0=1, x0=2, h=3, w=4)"

    def test_init_helper_stores_locals(self):
        class Ported(Transform):
            def __init__(self, a, b=2):
                self._init(locals())

        t = Ported(1)
        assert (t.a, t.b) == (1, 2)


@needs_cv2
class TestResizeTransform:
    def test_nearest_upscale_repeats_pixels(self):
        t = ResizeTransform(1, 2, 2, 4, interp=0)
        out = t.apply_image(np.array([[1, 2]], np.uint8))
        assert out.tolist() == [[1, 1, 2, 2], [1, 1, 2, 2]]

    @pytest.mark.parametrize("shape", [(4, 6), (4, 6, 1), (4, 6, 3)])
    @pytest.mark.parametrize("dtype", [np.uint8, np.float32])
    def test_keeps_rank_and_dtype(self, shape, dtype):
        out = ResizeTransform(4, 6, 3, 5).apply_image(ramp(shape, dtype))
        assert out.shape == (3, 5) + shape[2:] and out.dtype == dtype

    def test_coords_scale_with_the_image(self):
        coords = np.array([[2.0, 1.0], [6.0, 4.0]], np.float32)
        out = ResizeTransform(4, 6, 8, 3).apply_coords(coords)
        assert out.dtype == np.float32
        assert out.tolist() == [[1.0, 2.0], [3.0, 8.0]]
        assert coords.tolist() == [[2.0, 1.0], [6.0, 4.0]]  # input untouched

    def test_integer_factor_moves_pixels_with_coords(self):
        assert_pixels_move_with_coords(ResizeTransform(3, 4, 9, 12, interp=6), ramp((3, 4)))

    def test_wrong_input_size_is_an_error(self):
        with pytest.raises(ValueError, match="needs an image of height 4 and width 6"):
            ResizeTransform(4, 6, 2, 2).apply_image(np.zeros((5, 6), np.uint8))


class TestCropTransform:
    def test_cuts_the_window(self):
        out = CropTransform(1, 1, 2, 3).apply_image(ramp((4, 5)))
        np.testing.assert_array_equal(out, ramp((4, 5))[1:3, 1:4])

    @settings(max_examples=30, deadline=None)
    @given(images, st.data())
    def test_pixels_move_with_coords(self, img, data):
        h, w = img.shape[:2]
        y0, x0 = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
        ch, cw = data.draw(st.integers(1, h - y0)), data.draw(st.integers(1, w - x0))
        assert_pixels_move_with_coords(CropTransform(y0, x0, ch, cw), img)

    def test_window_outside_the_image_is_an_error(self):
        with pytest.raises(ValueError, match="does not fit in an image of shape"):
            CropTransform(2, 0, 3, 3).apply_image(np.zeros((4, 4)))


class TestFlipTransform:
    def test_flips_rows_or_columns(self):
        img = np.array([[1, 2], [3, 4]])
        assert FlipTransform(2, 2, horiz=True).apply_image(img).tolist() == [[2, 1], [4, 3]]
        assert FlipTransform(2, 2, horiz=False).apply_image(img).tolist() == [[3, 4], [1, 2]]

    @settings(max_examples=30, deadline=None)
    @given(images, st.booleans())
    def test_flipping_twice_is_identity_and_coords_follow(self, img, horiz):
        t = FlipTransform(img.shape[0], img.shape[1], horiz)
        np.testing.assert_array_equal(t.apply_image(t.apply_image(img)), img)
        centers = pixel_centers(img)
        np.testing.assert_allclose(t.apply_coords(t.apply_coords(centers)), centers)
        assert_pixels_move_with_coords(t, img)


class TestTransposeTransform:
    @settings(max_examples=30, deadline=None)
    @given(images)
    def test_swaps_axes_and_coords_follow(self, img):
        t = TransposeTransform()
        out = t.apply_image(img)
        assert out.shape == (img.shape[1], img.shape[0], img.shape[2])
        assert_pixels_move_with_coords(t, img)


@needs_cv2
class TestWarpAffineTransform:
    def test_identity_matrix_keeps_the_image(self):
        img = ramp((4, 5, 3))
        t = WarpAffineTransform(np.eye(2, 3), (5, 4))
        np.testing.assert_array_equal(t.apply_image(img), img)

    def test_keeps_the_channel_axis_of_one_channel_images(self):
        out = WarpAffineTransform(np.eye(2, 3), (5, 4)).apply_image(ramp((4, 5, 1)))
        assert out.shape == (4, 5, 1)

    def test_quarter_turn_moves_pixels_with_coords(self):
        # Rotate a 5x5 image by 90 degrees about its center pixel (2, 2).
        mat = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 4.0]])
        assert_pixels_move_with_coords(WarpAffineTransform(mat, (5, 5), interp=0), ramp((5, 5)))


class TestNoOpTransform:
    def test_returns_every_input_unchanged(self):
        img, coords = np.zeros((2, 2)), np.ones((1, 2))
        t = NoOpTransform()
        assert t.apply_image(img) is img
        assert t.apply_coords(coords) is coords
        assert t.apply_segmentation(img) is img


class TestPhotometricTransform:
    def test_changes_pixels_not_coords(self):
        t = PhotometricTransform(lambda img: img * 2, name="double")
        assert t.apply_image(np.array([3])).tolist() == [6]
        coords = np.ones((2, 2))
        assert t.apply_coords(coords) is coords
        assert repr(t) == "PhotometricTransform(double)"


class TestTransformFactory:
    def test_uses_the_given_functions(self):
        t = TransformFactory(name="f", apply_image=lambda x: x + 1, apply_box=lambda b: b * 2)
        assert t.apply_image(1) == 2 and t.apply_box(3) == 6
        assert repr(t) == "TransformFactory(f)"

    def test_missing_function_is_not_implemented(self):
        with pytest.raises(NotImplementedError):
            TransformFactory(apply_image=lambda x: x).apply_coords(np.zeros((1, 2)))

    def test_other_keywords_are_an_error(self):
        with pytest.raises(
            TypeError, match="TransformFactory takes only apply_\\* functions, got 'image'"
        ):
            TransformFactory(image=lambda x: x)


class TestTransformList:
    def test_applies_in_order_to_images_and_coords(self):
        t = TransformList([CropTransform(0, 1, 2, 2), FlipTransform(2, 2, horiz=True)])
        img = ramp((3, 3))
        assert t.apply_image(img).tolist() == img[:2, 1:][:, ::-1].tolist()
        assert t.apply_coords(np.array([[1.5, 0.5]])).tolist() == [[1.5, 0.5]]
        assert_pixels_move_with_coords(t, img)

    def test_forwards_any_apply_method(self):
        a = TransformFactory(apply_box=lambda b: b + 1)
        b = TransformFactory(apply_box=lambda b: b * 10)
        assert TransformList([a, b]).apply_box(1) == 20

    def test_addition_concatenates(self):
        a, b, c = NoOpTransform(), NoOpTransform(), NoOpTransform()
        assert (TransformList([a]) + b).tfms == [a, b]
        assert (c + TransformList([a])).tfms == [c, a]
        lst = TransformList([a])
        lst += TransformList([b, c])
        assert lst.tfms == [a, b, c]

    def test_non_transform_member_is_an_error(self):
        with pytest.raises(TypeError, match="tfms must be a list of Transform, got"):
            TransformList([lambda x: x])

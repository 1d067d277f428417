"""Color space and dtype conversion."""

from __future__ import annotations

import numpy as np
import pytest
from imgaug_checks import needs_cv2, ramp

from dataflow.imgaug import ColorSpace, Grayscale, ToFloat32, ToUint8

COLOR_RGB2BGR, COLOR_RGB2GRAY = 4, 7


@needs_cv2
class TestColorSpace:
    def test_converts_with_opencv(self):
        img = np.array([[[1, 2, 3]]], np.uint8)
        assert ColorSpace(COLOR_RGB2BGR).augment(img).tolist() == [[[3, 2, 1]]]

    def test_keepdims_puts_the_channel_axis_back(self):
        img = ramp((2, 3, 3))
        assert ColorSpace(COLOR_RGB2GRAY).augment(img).shape == (2, 3, 1)
        assert ColorSpace(COLOR_RGB2GRAY, keepdims=False).augment(img).shape == (2, 3)

    def test_float64_images_keep_their_dtype(self):
        out = ColorSpace(COLOR_RGB2BGR).augment(np.array([[[0.1, 0.2, 0.3]]]))
        assert out.dtype == np.float64
        np.testing.assert_allclose(out, [[[0.3, 0.2, 0.1]]], rtol=1e-6)

    def test_image_opencv_cannot_convert_is_an_error_naming_the_augmentor(self):
        with pytest.raises(
            ValueError,
            match=(
                r"ColorSpace\(mode=7\) cannot convert an image of shape \(2, 3\) and dtype "
                r"uint8 with OpenCV color code 7: \S"
            ),
        ):
            ColorSpace(COLOR_RGB2GRAY).augment(ramp((2, 3)))


@needs_cv2
class TestGrayscale:
    def test_weights_the_channels(self):
        img = np.array([[[10, 100, 200]]], np.float32)
        np.testing.assert_allclose(Grayscale(rgb=True).augment(img), [[[84.49]]], rtol=1e-5)
        np.testing.assert_allclose(
            Grayscale(rgb=False).augment(img),
            [[[0.114 * 10 + 0.587 * 100 + 0.299 * 200]]],
            rtol=1e-5,
        )

    def test_shapes(self):
        img = ramp((2, 3, 3))
        assert Grayscale(keepdims=False).augment(img).shape == (2, 3)
        out = Grayscale(keepshape=True).augment(img)
        assert out.shape == (2, 3, 3) and (out[..., 0] == out[..., 2]).all()

    def test_keeps_dtype(self):
        for dtype in (np.uint8, np.float32):
            assert Grayscale().augment(ramp((2, 3, 3), dtype)).dtype == dtype

    def test_argument_and_image_errors(self):
        with pytest.raises(
            ValueError, match="keepdims must be True when keepshape is True, got False"
        ):
            Grayscale(keepdims=False, keepshape=True)
        with pytest.raises(
            ValueError, match=r"Grayscale\(\) needs an HxWx3 image, got shape \(2, 2\)"
        ):
            Grayscale().augment(np.zeros((2, 2), np.uint8))


class TestToUint8:
    def test_clips_and_rounds(self):
        out = ToUint8().augment(np.array([[-3.0, 7.4, 7.6, 300.0]], np.float32))
        assert out.dtype == np.uint8 and out.tolist() == [[0, 7, 8, 255]]

    def test_uint8_passes_through(self):
        img = ramp((2, 2, 3))
        assert ToUint8().augment(img) is img


class TestToFloat32:
    def test_converts_values_unchanged(self):
        out = ToFloat32().augment(np.array([[0, 255]], np.uint8))
        assert out.dtype == np.float32 and out.tolist() == [[0.0, 255.0]]
        img = np.zeros((2, 2, 1), np.float64)
        assert ToFloat32().augment(img).shape == (2, 2, 1)

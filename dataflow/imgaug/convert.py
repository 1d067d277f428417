"""Augmentors that convert color spaces and dtypes. Coordinates never move."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import check_channels, cvt_color, restore_dtype
from .base import PhotometricAugmentor

__all__ = ["ColorSpace", "Grayscale", "ToFloat32", "ToUint8"]

# OpenCV's codes for cv2.COLOR_BGR2GRAY and cv2.COLOR_RGB2GRAY.
_COLOR_BGR2GRAY = 6
_COLOR_RGB2GRAY = 7


class ColorSpace(PhotometricAugmentor):
    """Convert the image with ``cv2.cvtColor(img, mode)``.

    Args:
        mode: an OpenCV conversion code, e.g. ``cv2.COLOR_BGR2HSV``.
        keepdims: when the conversion drops the channel axis (to gray), put
            it back as HxWx1.

    Example:
        >>> import cv2
        >>> from dataflow import imgaug
        >>> imgaug.ColorSpace(cv2.COLOR_RGB2BGR).augment(np.array([[[1, 2, 3]]], np.uint8)).tolist()
        [[[3, 2, 1]]]
    """

    def __init__(self, mode: int, keepdims: bool = True):
        self.mode, self.keepdims = mode, keepdims

    def _augment(self, img: np.ndarray, _: Any) -> np.ndarray:
        out = cvt_color(img, self.mode, repr(self))
        if self.keepdims and out.ndim < img.ndim:
            out = out[:, :, np.newaxis]
        return out


class Grayscale(ColorSpace):
    """Convert an HxWx3 RGB or BGR image to gray.

    Args:
        keepdims: return HxWx1 (True) or HxW.
        rgb: the channels are RGB (True) or BGR (False, OpenCV's order).
        keepshape: repeat the gray channel 3 times, so the shape stays
            HxWx3; needs *keepdims*.

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.Grayscale(rgb=True).augment(np.full((1, 2, 3), 100, np.uint8)).shape
        (1, 2, 1)
    """

    def __init__(self, keepdims: bool = True, rgb: bool = False, keepshape: bool = False):
        if keepshape and not keepdims:
            raise ValueError(f"keepdims must be True when keepshape is True, got {keepdims!r}")
        super().__init__(_COLOR_RGB2GRAY if rgb else _COLOR_BGR2GRAY, keepdims)
        self.rgb, self.keepshape = rgb, keepshape

    def _get_augment_params(self, img: np.ndarray) -> Any:
        check_channels(img, self)
        return None

    def _augment(self, img: np.ndarray, _: Any) -> np.ndarray:
        out = super()._augment(img, _)
        return np.repeat(out, 3, axis=2) if self.keepshape else out


class ToUint8(PhotometricAugmentor):
    """Convert to uint8: clip to [0, 255] and round to the nearest integer.

    A uint8 image takes a quarter of the bytes of a float32 one, which is
    worth it before sending images between processes.

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.ToUint8().augment(np.array([[-3.0, 7.6, 300.0]], np.float32)).tolist()
        [[0, 8, 255]]
    """

    def _augment(self, img: np.ndarray, _: Any) -> np.ndarray:
        if img.dtype == np.uint8:
            return img
        return restore_dtype(img.astype(np.float32), np.dtype(np.uint8), True)


class ToFloat32(PhotometricAugmentor):
    """Convert to float32 (values unchanged), e.g. so that later augmentors
    compute without rounding to uint8 after each step.

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.ToFloat32().augment(np.array([[7]], np.uint8)).dtype
        dtype('float32')
    """

    def _augment(self, img: np.ndarray, _: Any) -> np.ndarray:
        return img.astype(np.float32, copy=False)

"""Augmentors that cut part of an image out, or blank part of it."""

from __future__ import annotations

import warnings
from typing import Any, Optional, Tuple, Union

import numpy as np

from ._common import (
    INTER_LINEAR,
    check_int,
    check_range,
    check_size,
    is_int,
    is_number,
    shape2d,
)
from .base import ImageAugmentor
from .geometry import _shortest_edge_shape
from .transform import (
    CropTransform,
    PhotometricTransform,
    ResizeTransform,
    Transform,
    TransformList,
)

__all__ = [
    "CenterCrop",
    "GoogleNetRandomCropAndResize",
    "RandomCrop",
    "RandomCropRandomShape",
    "RandomCutout",
]

_GOOGLENET_TRIES = 10


class CenterCrop(ImageAugmentor):
    """Cut the *crop_shape* window at the center of the image.

    When the margin is odd, the window sits one pixel nearer the top/left.

    Args:
        crop_shape: ``(h, w)``, or an int for a square; at most the image size.

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.CenterCrop(2).augment(np.arange(16).reshape(4, 4).astype(np.uint8)).tolist()
        [[5, 6], [9, 10]]
    """

    def __init__(self, crop_shape: Union[int, Tuple[int, int]]):
        self.crop_shape = shape2d(crop_shape, "crop_shape")

    def get_transform(self, img: np.ndarray) -> Transform:
        h, w = self.crop_shape
        check_size(img, self, h, w, "crop a window")
        return CropTransform((img.shape[0] - h) // 2, (img.shape[1] - w) // 2, h, w)


class RandomCrop(ImageAugmentor):
    """Cut a *crop_shape* window at a uniformly random position.

    Args:
        crop_shape: ``(h, w)``, or an int for a square; at most the image size.

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.RandomCrop((2, 3)).augment(np.zeros((4, 4, 3), np.uint8)).shape
        (2, 3, 3)
    """

    def __init__(self, crop_shape: Union[int, Tuple[int, int]]):
        self.crop_shape = shape2d(crop_shape, "crop_shape")

    def get_transform(self, img: np.ndarray) -> Transform:
        h, w = self.crop_shape
        check_size(img, self, h, w, "crop a window")
        y0 = self.rng.randint(img.shape[0] - h + 1)
        x0 = self.rng.randint(img.shape[1] - w + 1)
        return CropTransform(int(y0), int(x0), h, w)


class RandomCropRandomShape(ImageAugmentor):
    """Cut a window of random size at a random position.

    The height is uniform in ``[hmin, hmax]`` and the width in ``[wmin,
    wmax]`` (both inclusive); the position is uniform over where it fits.

    Args:
        wmin, hmin: the smallest width and height, positive ints.
        wmax, hmax: the largest, capped at the image's width/height; None
            means the image's width/height.
        max_aspect_ratio: ignored (it never had an effect in tensorpack);
            passing it warns.

    Example:
        >>> from dataflow import imgaug
        >>> out = imgaug.RandomCropRandomShape(2, 2, 3, 3).augment(np.zeros((4, 4), np.uint8))
        >>> 2 <= out.shape[0] <= 3 and 2 <= out.shape[1] <= 3
        True
    """

    def __init__(
        self,
        wmin: int,
        hmin: int,
        wmax: Optional[int] = None,
        hmax: Optional[int] = None,
        max_aspect_ratio: Optional[float] = None,
    ):
        check_int(wmin, "wmin", 1)
        check_int(hmin, "hmin", 1)
        check_int(wmax, "wmax", wmin, allow_none=True)
        check_int(hmax, "hmax", hmin, allow_none=True)
        if max_aspect_ratio is not None:
            warnings.warn(
                "RandomCropRandomShape ignores max_aspect_ratio", DeprecationWarning, stacklevel=2
            )
        self.wmin, self.hmin, self.wmax, self.hmax = wmin, hmin, wmax, hmax

    def get_transform(self, img: np.ndarray) -> Transform:
        img_h, img_w = img.shape[:2]
        hmax = img_h if self.hmax is None else self.hmax
        wmax = img_w if self.wmax is None else self.wmax
        check_size(img, self, self.hmin, self.wmin, "crop a window")
        h = int(self.rng.randint(self.hmin, min(hmax, img_h) + 1))
        w = int(self.rng.randint(self.wmin, min(wmax, img_w) + 1))
        y0 = int(self.rng.randint(img_h - h + 1))
        x0 = int(self.rng.randint(img_w - w + 1))
        return CropTransform(y0, x0, h, w)


class GoogleNetRandomCropAndResize(ImageAugmentor):
    """The "Inception" crop: a random window of random area and aspect ratio,
    resized to *target_shape*.

    The window covers a fraction of the image area drawn from
    *crop_area_fraction* and has a width/height ratio drawn from
    *aspect_ratio_range* (then swapped with probability 1/2). Up to 10 draws
    are tried; if no window fits, the image is resized so that its shorter
    side matches the target and center-cropped instead.

    Args:
        crop_area_fraction: ``(low, high)`` fraction of the area; default 8%-100%.
        aspect_ratio_range: ``(low, high)`` width/height ratio; default 3/4-4/3.
        target_shape: the output size: an int for a square, or ``(h, w)``.
        interp: an OpenCV interpolation flag; default ``cv2.INTER_LINEAR``.

    Example:
        >>> from dataflow import imgaug
        >>> aug = imgaug.GoogleNetRandomCropAndResize(target_shape=8)
        >>> aug.augment(np.zeros((20, 30, 3), np.uint8)).shape
        (8, 8, 3)
    """

    def __init__(
        self,
        crop_area_fraction: Tuple[float, float] = (0.08, 1.0),
        aspect_ratio_range: Tuple[float, float] = (0.75, 1.333),
        target_shape: Union[int, Tuple[int, int]] = 224,
        interp: int = INTER_LINEAR,
    ):
        low, high = check_range(crop_area_fraction, "crop_area_fraction")
        if not (low > 0 and high <= 1):
            raise ValueError(
                "crop_area_fraction must be a (low, high) pair of numbers in (0, 1], got "
                f"{crop_area_fraction!r}"
            )
        if not check_range(aspect_ratio_range, "aspect_ratio_range")[0] > 0:
            raise ValueError(
                f"aspect_ratio_range must be a (low, high) pair of positive numbers, got "
                f"{aspect_ratio_range!r}"
            )
        self._target = shape2d(target_shape, "target_shape")
        self.crop_area_fraction, self.aspect_ratio_range = crop_area_fraction, aspect_ratio_range
        self.target_shape, self.interp = target_shape, interp

    def get_transform(self, img: np.ndarray) -> Transform:
        h, w = img.shape[:2]
        th, tw = self._target
        for _ in range(_GOOGLENET_TRIES):
            area = self.rng.uniform(*self.crop_area_fraction) * h * w
            ratio = self.rng.uniform(*self.aspect_ratio_range)
            ww, hh = int(np.sqrt(area * ratio) + 0.5), int(np.sqrt(area / ratio) + 0.5)
            if self.rng.uniform() < 0.5:
                ww, hh = hh, ww
            if 0 < hh <= h and 0 < ww <= w:
                # x before y, as tensorpack draws them: the same rng gives the same crop
                x0 = int(self.rng.randint(w - ww + 1))
                y0 = int(self.rng.randint(h - hh + 1))
                return TransformList(
                    [CropTransform(y0, x0, hh, ww), ResizeTransform(hh, ww, th, tw, self.interp)]
                )
        # Fall back: resize so the target fits, keeping the aspect ratio, then center-crop.
        if th == tw:
            new_h, new_w = _shortest_edge_shape(h, w, th)
        else:
            scale = max(th / h, tw / w)
            new_h, new_w = max(int(h * scale + 0.5), th), max(int(w * scale + 0.5), tw)
        return TransformList(
            [
                ResizeTransform(h, w, new_h, new_w, self.interp),
                CropTransform((new_h - th) // 2, (new_w - tw) // 2, th, tw),
            ]
        )


def _check_size_range(value: Any, name: str) -> None:
    ok_int = is_int(value) and value >= 0
    ok_pair = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(is_int(v) and v >= 0 for v in value)
        and value[0] < value[1]
    )
    if not (ok_int or ok_pair):
        raise ValueError(
            f"{name} must be an int >= 0 or a (low, high) pair of them with low < high, "
            f"got {value!r}"
        )


def _cutout(img: np.ndarray, y0: int, x0: int, h: int, w: int, fill: Any) -> np.ndarray:
    out = img.copy()
    out[y0 : y0 + h, x0 : x0 + w] = fill
    return out


class RandomCutout(ImageAugmentor):
    """Cutout: fill a rectangle of random size at a random position with *fill*.

    The rectangle lies fully inside the image. Coordinates do not move.

    Args:
        h_range: the rectangle's height: an int, or ``(low, high)`` to draw it
            from ``[low, high)``.
        w_range: the same for the width.
        fill: the value written into the rectangle.

    Example:
        >>> from dataflow import imgaug
        >>> out = imgaug.RandomCutout(2, 2).augment(np.ones((2, 2), np.uint8))
        >>> out.tolist()
        [[0, 0], [0, 0]]
    """

    def __init__(
        self,
        h_range: Union[int, Tuple[int, int]],
        w_range: Union[int, Tuple[int, int]],
        fill: float = 0.0,
    ):
        _check_size_range(h_range, "h_range")
        _check_size_range(w_range, "w_range")
        if not is_number(fill):
            raise ValueError(f"fill must be a number, got {fill!r}")
        self.h_range, self.w_range, self.fill = h_range, w_range, fill

    def _draw(self, value: Any) -> int:
        if isinstance(value, (tuple, list)):
            return int(self.rng.randint(value[0], value[1]))
        return int(value)

    def get_transform(self, img: np.ndarray) -> Transform:
        h, w = self._draw(self.h_range), self._draw(self.w_range)
        check_size(img, self, h, w, "cut out a rectangle")
        # x before y, as tensorpack draws them: the same rng gives the same rectangle
        x0 = int(self.rng.randint(img.shape[1] - w + 1))
        y0 = int(self.rng.randint(img.shape[0] - h + 1))
        return PhotometricTransform(
            lambda im: _cutout(im, y0, x0, h, w, self.fill), f"cutout {h}x{w} at ({y0}, {x0})"
        )

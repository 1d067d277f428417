"""Augmentors that change an image's size or move its pixels: resizes, flips,
rotations, affine warps."""

from __future__ import annotations

import logging
import math
from typing import Any, Optional, Tuple

import numpy as np

from ._common import (
    BORDER_REPLICATE,
    INTER_LINEAR,
    check_int,
    check_prob,
    check_range,
    is_number,
    shape2d,
)
from .base import ImageAugmentor
from .transform import (
    CropTransform,
    FlipTransform,
    NoOpTransform,
    ResizeTransform,
    Transform,
    TransformList,
    TransposeTransform,
    WarpAffineTransform,
)

__all__ = [
    "Affine",
    "Flip",
    "RandomResize",
    "Resize",
    "ResizeShortestEdge",
    "Rotation",
    "RotationAndCropValid",
    "Shift",
    "Transpose",
]

logger = logging.getLogger(__name__)

_MAX_RESIZE_TRIES = 50


def _shortest_edge_shape(h: int, w: int, size: int) -> Tuple[int, int]:
    """The ``(h, w)`` whose shorter side is *size*, keeping the aspect ratio."""
    scale = size / min(h, w)
    if h < w:
        return size, int(scale * w + 0.5)
    return int(scale * h + 0.5), size


def _affine_about(
    center: Tuple[float, float], deg: float, scale: float = 1.0, shear_deg: float = 0.0
) -> np.ndarray:
    """The 2x3 matrix that rotates by *deg* (counter-clockwise on screen, as
    ``cv2.getRotationMatrix2D``), scales and shears about *center*, which it
    keeps in place. Positions are pixel indices."""
    a = math.radians(deg)
    cos_a, sin_a = scale * math.cos(a), scale * math.sin(a)
    lin = np.array([[cos_a, sin_a], [-sin_a, cos_a]])
    if shear_deg:
        s = math.radians(shear_deg)
        lin[:, 1] = lin[:, 1] * math.cos(s) + lin[:, 0] * math.sin(s)
    c = np.asarray(center, dtype=np.float64)
    return np.hstack([lin, (c - lin @ c)[:, None]])


def _check_step_deg(max_deg: Any, step_deg: Any) -> None:
    if step_deg is not None and not (
        max_deg == 180 and is_number(step_deg) and step_deg > 0 and 180 % step_deg == 0
    ):
        raise ValueError(
            f"step_deg must be None or a divisor of 180 (with max_deg=180), got {step_deg!r}"
        )


def _draw_deg(aug: Any) -> float:
    deg = float(aug._rand_range(-aug.max_deg, aug.max_deg))
    if aug.step_deg:
        deg = deg // aug.step_deg * aug.step_deg
    return deg


class Resize(ImageAugmentor):
    """Resize every image to *shape*.

    Args:
        shape: the output ``(h, w)``, or an int for a square.
        interp: an OpenCV interpolation flag; default ``cv2.INTER_LINEAR``.

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.Resize((2, 3)).augment(np.zeros((4, 4, 3), np.uint8)).shape
        (2, 3, 3)
    """

    def __init__(self, shape: Any, interp: int = INTER_LINEAR):
        self.shape = shape2d(shape, "shape")
        self.interp = interp

    def get_transform(self, img: np.ndarray) -> Transform:
        h, w = img.shape[:2]
        return ResizeTransform(h, w, self.shape[0], self.shape[1], self.interp)


class ResizeShortestEdge(ImageAugmentor):
    """Resize so that the shorter side becomes *size*, keeping the aspect ratio.

    The longer side is rounded to the nearest pixel.

    Args:
        size: the length of the shorter side afterwards, a positive int.
        interp: an OpenCV interpolation flag; default ``cv2.INTER_LINEAR``.

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.ResizeShortestEdge(4).augment(np.zeros((8, 10), np.float32)).shape
        (4, 5)
    """

    def __init__(self, size: int, interp: int = INTER_LINEAR):
        check_int(size, "size", 1)
        self.size = int(size)
        self.interp = interp

    def get_transform(self, img: np.ndarray) -> Transform:
        h, w = img.shape[:2]
        return ResizeTransform(h, w, *_shortest_edge_shape(h, w, self.size), self.interp)


class RandomResize(ImageAugmentor):
    """Resize to a random width and height.

    Draws the new width from *xrange* and the height from *yrange*: scale
    factors when the range holds floats, pixel sizes when it holds ints.
    Results below *minimum* are raised to it. A draw that changes the aspect
    ratio by more than *aspect_ratio_thres* (relative) is drawn again; after
    50 failed draws the image keeps its size (and a warning is logged).

    Args:
        xrange: ``(low, high)`` for the width: floats scale, ints are pixels.
        yrange: the same for the height, of the same kind. Unused (may be
            None) when *aspect_ratio_thres* is 0, which keeps the aspect ratio.
        minimum: the smallest ``(width, height)`` in pixels.
        aspect_ratio_thres: the largest relative change of the aspect ratio,
            at least 0.
        interp: an OpenCV interpolation flag; default ``cv2.INTER_LINEAR``.

    Example:
        >>> from dataflow import imgaug
        >>> aug = imgaug.RandomResize((0.5, 0.5), aspect_ratio_thres=0)
        >>> aug.augment(np.zeros((8, 6), np.uint8)).shape
        (4, 3)
    """

    def __init__(
        self,
        xrange: Tuple[float, float],
        yrange: Optional[Tuple[float, float]] = None,
        minimum: Tuple[int, int] = (0, 0),
        aspect_ratio_thres: float = 0.15,
        interp: int = INTER_LINEAR,
    ):
        check_range(xrange, "xrange")
        if not (is_number(aspect_ratio_thres) and aspect_ratio_thres >= 0):
            raise ValueError(
                f"aspect_ratio_thres must be a number >= 0, got {aspect_ratio_thres!r}"
            )
        self._is_scale = any(isinstance(v, float) for v in xrange)
        if yrange is None:
            if aspect_ratio_thres != 0:
                raise ValueError(
                    f"yrange must be a (low, high) pair when aspect_ratio_thres > 0, got {yrange!r}"
                )
        elif any(isinstance(v, float) for v in check_range(yrange, "yrange")) != self._is_scale:
            raise ValueError(f"yrange must hold the same kind of numbers as xrange, got {yrange!r}")
        self.xrange, self.yrange, self.minimum = xrange, yrange, minimum
        self._yrange = xrange if yrange is None else yrange
        self.aspect_ratio_thres, self.interp = aspect_ratio_thres, interp

    def _draw_size(self, h: int, w: int) -> Tuple[int, int]:
        sx = float(self._rand_range(*self.xrange))
        keep_ratio = self.aspect_ratio_thres == 0
        if self._is_scale:
            sy = sx if keep_ratio else float(self._rand_range(*self._yrange))
            new_w, new_h = sx * w, sy * h
        else:
            new_w = sx
            new_h = sx * h / w if keep_ratio else float(self._rand_range(*self._yrange))
        new_w, new_h = max(new_w, self.minimum[0]), max(new_h, self.minimum[1])
        return int(new_h + 0.5), int(new_w + 0.5)

    def get_transform(self, img: np.ndarray) -> Transform:
        h, w = img.shape[:2]
        for _ in range(_MAX_RESIZE_TRIES):
            new_h, new_w = self._draw_size(h, w)
            if self.aspect_ratio_thres == 0 or min(new_h, new_w) <= 0:
                break
            change = abs(new_w / new_h - w / h) / (w / h)
            if change < self.aspect_ratio_thres + 1e-5:
                break
        else:
            logger.warning(
                "%r found no size within its aspect ratio threshold in %d draws; "
                "the image keeps its size",
                self,
                _MAX_RESIZE_TRIES,
            )
            new_h, new_w = h, w
        return ResizeTransform(h, w, max(new_h, 1), max(new_w, 1), self.interp)


class Flip(ImageAugmentor):
    """Mirror the image left-right (*horiz*) or upside down (*vert*) with
    probability *prob*.

    Args:
        horiz: flip left-right. Exactly one of *horiz* and *vert* must be set;
            use two Flip augmentors for both.
        vert: flip upside down.
        prob: the probability to flip, in [0, 1].

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.Flip(horiz=True, prob=1.0).augment(np.array([[1, 2, 3]], np.uint8)).tolist()
        [[3, 2, 1]]
    """

    def __init__(self, horiz: bool = False, vert: bool = False, prob: float = 0.5):
        if bool(horiz) == bool(vert):
            raise ValueError(
                f"exactly one of horiz and vert must be True, got horiz={horiz!r}, vert={vert!r}"
            )
        self.horiz, self.vert, self.prob = horiz, vert, check_prob(prob)

    def get_transform(self, img: np.ndarray) -> Transform:
        if self.rng.uniform() < self.prob:
            return FlipTransform(img.shape[0], img.shape[1], horiz=bool(self.horiz))
        return NoOpTransform()


class Transpose(ImageAugmentor):
    """Swap rows and columns with probability *prob*.

    Args:
        prob: the probability to transpose, in [0, 1].

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.Transpose(prob=1.0).augment(np.zeros((2, 5, 3), np.uint8)).shape
        (5, 2, 3)
    """

    def __init__(self, prob: float = 0.5):
        self.prob = check_prob(prob)

    def get_transform(self, img: np.ndarray) -> Transform:
        return TransposeTransform() if self.rng.uniform() < self.prob else NoOpTransform()


class Rotation(ImageAugmentor):
    """Rotate by a random angle about a random center; the size stays the same.

    The angle is uniform in ``[-max_deg, max_deg]`` degrees (positive turns
    counter-clockwise on screen). The center is drawn per axis from
    *center_range* as a fraction of the width and height.

    Args:
        max_deg: the largest absolute angle, in degrees.
        center_range: ``(low, high)`` fractions for the center; ``(0.5, 0.5)``
            always rotates about the image center.
        interp: an OpenCV interpolation flag; default ``cv2.INTER_LINEAR``.
        border: an OpenCV border mode for pixels that come from outside;
            default ``cv2.BORDER_REPLICATE``.
        step_deg: if set, the angle is a multiple of it; needs
            ``max_deg=180`` and a divisor of 180.
        border_value: the fill value for ``cv2.BORDER_CONSTANT``.

    Example:
        >>> from dataflow import imgaug
        >>> aug = imgaug.Rotation(180, center_range=(0.5, 0.5), step_deg=90)
        >>> aug.augment(np.zeros((4, 4, 3), np.float32)).shape
        (4, 4, 3)
    """

    def __init__(
        self,
        max_deg: float,
        center_range: Tuple[float, float] = (0, 1),
        interp: int = INTER_LINEAR,
        border: int = BORDER_REPLICATE,
        step_deg: Optional[float] = None,
        border_value: Any = 0,
    ):
        if not (is_number(max_deg) and max_deg >= 0):
            raise ValueError(f"max_deg must be a number >= 0, got {max_deg!r}")
        _check_step_deg(max_deg, step_deg)
        self.max_deg, self.center_range = max_deg, check_range(center_range, "center_range")
        self.interp, self.border, self.step_deg, self.border_value = (
            interp,
            border,
            step_deg,
            border_value,
        )

    def get_transform(self, img: np.ndarray) -> Transform:
        h, w = img.shape[:2]
        frac = self._rand_range(self.center_range[0], self.center_range[1], (2,))
        center = (w * frac[0] - 0.5, h * frac[1] - 0.5)
        mat = _affine_about(center, _draw_deg(self))
        return WarpAffineTransform(mat, (w, h), self.interp, self.border, self.border_value)


class RotationAndCropValid(ImageAugmentor):
    """Rotate about the center by a random angle, then crop the largest
    upright rectangle that holds only pixels of the original image.

    Output sizes vary with the angle.

    Args:
        max_deg, interp, step_deg: as in :class:`Rotation`.

    Example:
        >>> from dataflow import imgaug
        >>> aug = imgaug.RotationAndCropValid(180, step_deg=90)
        >>> sorted(aug.augment(np.zeros((4, 6), np.uint8)).shape) in ([4, 4], [4, 6])
        True
    """

    def __init__(
        self, max_deg: float, interp: int = INTER_LINEAR, step_deg: Optional[float] = None
    ):
        if not (is_number(max_deg) and max_deg >= 0):
            raise ValueError(f"max_deg must be a number >= 0, got {max_deg!r}")
        _check_step_deg(max_deg, step_deg)
        self.max_deg, self.interp, self.step_deg = max_deg, interp, step_deg

    def get_transform(self, img: np.ndarray) -> Transform:
        deg = _draw_deg(self)
        h, w = img.shape[:2]
        rotate = WarpAffineTransform(
            _affine_about((w / 2 - 0.5, h / 2 - 0.5), deg), (w, h), self.interp
        )
        new_w, new_h = self.largest_rotated_rect(w, h, deg)
        new_w, new_h = max(min(new_w, w), 1), max(min(new_h, h), 1)
        crop = CropTransform(int((h - new_h) / 2), int((w - new_w) / 2), new_h, new_w)
        return TransformList([rotate, crop])

    @staticmethod
    def largest_rotated_rect(w: int, h: int, angle: float) -> Tuple[int, int]:
        """The ``(width, height)`` of the largest upright rectangle inside a
        *w* x *h* rectangle rotated by *angle* degrees, both centered."""
        if w <= 0 or h <= 0:
            return 0, 0
        a = math.radians(angle)
        sin_a, cos_a = abs(math.sin(a)), abs(math.cos(a))
        long_side, short_side = max(w, h), min(w, h)
        if short_side <= 2.0 * sin_a * cos_a * long_side:
            # Two corners of the crop touch the long sides of the rotated
            # rectangle; half the short side bounds it.
            half = 0.5 * short_side
            along, across = half / sin_a, half / cos_a
            width, height = (along, across) if w >= h else (across, along)
        else:
            # All four corners touch the rotated rectangle.
            cos_2a = cos_a * cos_a - sin_a * sin_a
            width = (w * cos_a - h * sin_a) / cos_2a
            height = (h * cos_a - w * sin_a) / cos_2a
        return int(round(width)), int(round(height))


class Affine(ImageAugmentor):
    """A random affine warp about the image center: scale, translation,
    rotation and shear, each drawn per image; the size stays the same.

    Args:
        scale: ``(low, high)`` for the zoom factor; None keeps the scale.
        translate_frac: ``(fx, fy)``: the shift is uniform in
            ``[-fx * width, fx * width]`` by ``[-fy * height, fy * height]``
            pixels (rounded); None does not shift.
        rotate_max_deg: the largest absolute rotation angle, in degrees.
        shear: the largest absolute shear angle, in degrees, in [0, 180).
        interp: an OpenCV interpolation flag; default ``cv2.INTER_LINEAR``.
        border: an OpenCV border mode; default ``cv2.BORDER_REPLICATE``.
        border_value: the fill value for ``cv2.BORDER_CONSTANT``.

    Example:
        >>> from dataflow import imgaug
        >>> aug = imgaug.Affine(scale=(0.9, 1.1), translate_frac=(0.1, 0.1), rotate_max_deg=10)
        >>> aug.augment(np.zeros((8, 8), np.uint8)).shape
        (8, 8)
    """

    def __init__(
        self,
        scale: Optional[Tuple[float, float]] = None,
        translate_frac: Optional[Tuple[float, float]] = None,
        rotate_max_deg: float = 0.0,
        shear: float = 0.0,
        interp: int = INTER_LINEAR,
        border: int = BORDER_REPLICATE,
        border_value: Any = 0,
    ):
        if scale is not None:
            check_range(scale, "scale")
        if translate_frac is not None and not (
            isinstance(translate_frac, (tuple, list))
            and len(translate_frac) == 2
            and all(is_number(v) and v >= 0 for v in translate_frac)
        ):
            raise ValueError(
                f"translate_frac must be None or a pair of numbers >= 0, got {translate_frac!r}"
            )
        if not (is_number(rotate_max_deg) and rotate_max_deg >= 0):
            raise ValueError(f"rotate_max_deg must be a number >= 0, got {rotate_max_deg!r}")
        if not (is_number(shear) and 0 <= shear < 180):
            raise ValueError(f"shear must be a number in [0, 180), got {shear!r}")
        self.scale, self.translate_frac = scale, translate_frac
        self.rotate_max_deg, self.shear = rotate_max_deg, shear
        self.interp, self.border, self.border_value = interp, border, border_value

    def get_transform(self, img: np.ndarray) -> Transform:
        h, w = img.shape[:2]
        scale = float(self._rand_range(*self.scale)) if self.scale is not None else 1.0
        dx = dy = 0.0
        if self.translate_frac is not None:
            max_dx, max_dy = self.translate_frac[0] * w, self.translate_frac[1] * h
            dx = float(np.round(self._rand_range(-max_dx, max_dx)))
            dy = float(np.round(self._rand_range(-max_dy, max_dy)))
        shear = float(self._rand_range(-self.shear, self.shear)) if self.shear > 0 else 0.0
        deg = float(self._rand_range(-self.rotate_max_deg, self.rotate_max_deg))
        mat = _affine_about((w / 2 - 0.5, h / 2 - 0.5), deg, scale, shear)
        mat[:, 2] += (dx, dy)
        return WarpAffineTransform(mat, (w, h), self.interp, self.border, self.border_value)


class Shift(ImageAugmentor):
    """Shift the image by a random whole number of pixels; the size stays the same.

    Args:
        horiz_frac: the largest horizontal shift as a fraction of the width,
            in [0, 1).
        vert_frac: the largest vertical shift as a fraction of the height,
            in [0, 1).
        border: an OpenCV border mode for the uncovered band; default
            ``cv2.BORDER_REPLICATE``.
        border_value: the fill value for ``cv2.BORDER_CONSTANT``.

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.Shift(0.25, 0.25).augment(np.zeros((4, 4, 3), np.uint8)).shape
        (4, 4, 3)
    """

    def __init__(
        self,
        horiz_frac: float = 0,
        vert_frac: float = 0,
        border: int = BORDER_REPLICATE,
        border_value: Any = 0,
    ):
        for name, value in (("horiz_frac", horiz_frac), ("vert_frac", vert_frac)):
            if not (is_number(value) and 0 <= value < 1):
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
        self.horiz_frac, self.vert_frac = horiz_frac, vert_frac
        self.border, self.border_value = border, border_value

    def get_transform(self, img: np.ndarray) -> Transform:
        h, w = img.shape[:2]
        max_dx, max_dy = self.horiz_frac * w, self.vert_frac * h
        dx = float(np.round(self._rand_range(-max_dx, max_dx)))
        dy = float(np.round(self._rand_range(-max_dy, max_dy)))
        mat = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
        return WarpAffineTransform(mat, (w, h), INTER_LINEAR, self.border, self.border_value)

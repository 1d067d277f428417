"""Augmentors that change pixel values only: brightness, contrast, color, blur,
normalization. Coordinates never move.

Unless noted, they keep the image's dtype: results are computed in floating
point, then clipped to [0, 255] (always for uint8, and with ``clip=True`` for
float images) and, for uint8, rounded to the nearest integer.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ._common import (
    BORDER_REPLICATE,
    check_channels,
    check_range,
    cv2,
    cvt_color,
    is_int,
    is_number,
    restore_dtype,
    work_dtype,
)
from .base import PhotometricAugmentor

__all__ = [
    "Brightness",
    "BrightnessScale",
    "Clip",
    "Contrast",
    "Gamma",
    "GaussianBlur",
    "Hue",
    "Lighting",
    "MeanVarianceNormalize",
    "MinMaxNormalize",
    "Saturation",
]


def _channel_mean(img: np.ndarray) -> np.ndarray:
    """The mean of each channel of an HxWxC image, as float64. Summing rows
    first is many times faster than ``img.mean(axis=(0, 1))``."""
    return img.sum(axis=0, dtype=np.float64).sum(axis=0) / (img.shape[0] * img.shape[1])


# ITU-R BT.601 luma weights of R, G, B, as OpenCV's RGB2GRAY uses.
_LUMA_RGB = np.array([0.299, 0.587, 0.114])


class Brightness(PhotometricAugmentor):
    """Add a random value, uniform in ``[-delta, delta]``, to every pixel.

    Args:
        delta: the largest absolute change, > 0.
        clip: clip float images to [0, 255] too (uint8 always is).

    Example:
        >>> from dataflow import imgaug
        >>> aug = imgaug.Brightness(50)
        >>> out = aug.augment(np.full((2, 2), 100, np.uint8))
        >>> out.dtype, bool(50 <= out.min() == out.max() <= 150)
        (dtype('uint8'), True)
    """

    def __init__(self, delta: float, clip: bool = True):
        if not (is_number(delta) and delta > 0):
            raise ValueError(f"delta must be a positive number, got {delta!r}")
        self.delta, self.clip = delta, clip

    def _get_augment_params(self, img: np.ndarray) -> Any:
        return self._rand_range(-self.delta, self.delta)

    def _augment(self, img: np.ndarray, v: Any) -> np.ndarray:
        return restore_dtype(np.add(img, v, dtype=work_dtype(img)), img.dtype, self.clip)


class BrightnessScale(PhotometricAugmentor):
    """Multiply every pixel by a random factor, uniform in *range*.

    Args:
        range: ``(low, high)`` of the factor.
        clip: clip float images to [0, 255] too (uint8 always is).

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.BrightnessScale((2, 2)).augment(np.array([[10, 200]], np.uint8)).tolist()
        [[20, 255]]
    """

    def __init__(self, range: Tuple[float, float], clip: bool = True):
        self.range, self.clip = check_range(range, "range"), clip

    def _get_augment_params(self, img: np.ndarray) -> Any:
        return self._rand_range(*self.range)

    def _augment(self, img: np.ndarray, v: Any) -> np.ndarray:
        return restore_dtype(np.multiply(img, v, dtype=work_dtype(img)), img.dtype, self.clip)


class Contrast(PhotometricAugmentor):
    """Scale the distance to the mean by a random factor: ``x = (x - mean) * r + mean``.

    Args:
        factor_range: ``(low, high)`` of the factor *r*.
        rgb: which mean: None uses each channel's own mean; True (RGB) or
            False (BGR) uses the mean gray value of an HxWx3 image.
        clip: clip float images to [0, 255] too (uint8 always is).

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.Contrast((2, 2)).augment(np.array([[90, 110]], np.uint8)).tolist()
        [[80, 120]]
    """

    def __init__(
        self, factor_range: Tuple[float, float], rgb: Optional[bool] = None, clip: bool = True
    ):
        self.factor_range, self.rgb, self.clip = (
            check_range(factor_range, "factor_range"),
            rgb,
            clip,
        )

    def _get_augment_params(self, img: np.ndarray) -> Any:
        if self.rgb is not None and img.ndim == 3:
            check_channels(img, self)
        return self._rand_range(*self.factor_range)

    def _augment(self, img: np.ndarray, r: Any) -> np.ndarray:
        dtype = work_dtype(img)
        if img.ndim == 2:
            mean = img.mean(dtype=dtype)
        elif self.rgb is None:
            mean = _channel_mean(img)
        else:
            mean = _channel_mean(img) @ (_LUMA_RGB if self.rgb else _LUMA_RGB[::-1])
        out = np.multiply(img, r, dtype=dtype)
        out += np.asarray(mean * (1 - r), dtype=dtype)
        return restore_dtype(out, img.dtype, self.clip)


class Saturation(PhotometricAugmentor):
    """Blend an HxWx3 image with its gray version by a random factor:
    ``x = x * s + gray * (1 - s)``, with ``s`` uniform in ``[1 - alpha, 1 + alpha]``.

    Args:
        alpha: the largest change of saturation, in [0, 1).
        rgb: the channels are RGB (True) or BGR (False).
        clip: clip float images to [0, 255] too (uint8 always is).

    Example:
        >>> from dataflow import imgaug
        >>> out = imgaug.Saturation(0.4).augment(np.zeros((2, 2, 3), np.uint8))
        >>> out.shape, out.dtype
        ((2, 2, 3), dtype('uint8'))
    """

    def __init__(self, alpha: float = 0.4, rgb: bool = True, clip: bool = True):
        if not (is_number(alpha) and 0 <= alpha < 1):
            raise ValueError(f"alpha must be a number in [0, 1), got {alpha!r}")
        self.alpha, self.rgb, self.clip = alpha, bool(rgb), clip

    def _get_augment_params(self, img: np.ndarray) -> Any:
        check_channels(img, self)
        return 1 + self._rand_range(-self.alpha, self.alpha)

    def _augment(self, img: np.ndarray, s: Any) -> np.ndarray:
        cv = cv2("Saturation")
        gray = cvt_color(img, cv.COLOR_RGB2GRAY if self.rgb else cv.COLOR_BGR2GRAY, "Saturation")
        out = np.multiply(img, s, dtype=work_dtype(img))
        out += np.multiply(gray, 1 - s, dtype=out.dtype)[:, :, np.newaxis]
        return restore_dtype(out, img.dtype, self.clip)


class Hue(PhotometricAugmentor):
    """Rotate the hue of an HxWx3 image by a random offset, uniform in *range*.

    Offsets are in OpenCV's 8-bit hue unit (2 degrees), so 180 is a full turn.

    Args:
        range: ``(low, high)`` of the offset; the default (0, 180) is any hue.
        rgb: the channels are RGB (True) or BGR (False).

    Example:
        >>> from dataflow import imgaug
        >>> red = np.array([[[255, 0, 0]]], np.uint8)
        >>> imgaug.Hue((60, 60)).augment(red).tolist()  # a third of a turn: green
        [[[0, 255, 0]]]
    """

    def __init__(self, range: Tuple[float, float] = (0, 180), rgb: bool = True):
        self.range, self.rgb = check_range(range, "range"), bool(rgb)

    def _get_augment_params(self, img: np.ndarray) -> Any:
        check_channels(img, self)
        return self._rand_range(*self.range)

    def _augment(self, img: np.ndarray, hue: Any) -> np.ndarray:
        cv = cv2("Hue")
        hsv = cvt_color(img, cv.COLOR_RGB2HSV if self.rgb else cv.COLOR_BGR2HSV, "Hue")
        if hsv.dtype == np.uint8:  # OpenCV's 8-bit hue runs over [0, 180)
            hsv[..., 0] = np.mod(np.rint(hsv[..., 0] + hue), 180)
        else:  # and the float hue over [0, 360)
            hsv[..., 0] = np.mod(hsv[..., 0] + 2 * hue, 360)
        return cvt_color(hsv, cv.COLOR_HSV2RGB if self.rgb else cv.COLOR_HSV2BGR, "Hue")


class Lighting(PhotometricAugmentor):
    """AlexNet's "lighting" noise: add a random combination of the principal
    color components to every pixel of an HxWx3 image.

    The weights are ``normal(0, std) * eigval``; the added color is
    ``eigvec @ weights``.

    Args:
        std: the standard deviation of the weights, >= 0.
        eigval: the 3 eigenvalues of the color covariance.
        eigvec: a 3x3 matrix whose columns are the eigenvectors.
        clip: clip float images to [0, 255] too (uint8 always is).

    Example:
        >>> from dataflow import imgaug
        >>> aug = imgaug.Lighting(0.1, eigval=[0.2175, 0.0188, 0.0045],
        ...                       eigvec=np.eye(3) * 255)
        >>> aug.augment(np.zeros((2, 2, 3), np.float32)).shape
        (2, 2, 3)
    """

    def __init__(self, std: float, eigval: Sequence[float], eigvec: Any, clip: bool = True):
        if not (is_number(std) and std >= 0):
            raise ValueError(f"std must be a number >= 0, got {std!r}")
        values = np.asarray(eigval, dtype=np.float32)
        vectors = np.asarray(eigvec, dtype=np.float32)
        if values.shape != (3,):
            raise ValueError(f"eigval must be 3 numbers, got shape {values.shape}")
        if vectors.shape != (3, 3):
            raise ValueError(f"eigvec must be a 3x3 matrix, got shape {vectors.shape}")
        self.std, self.eigval, self.eigvec, self.clip = std, values, vectors, clip

    def _get_augment_params(self, img: np.ndarray) -> Any:
        check_channels(img, self)
        return (self.rng.randn(3) * self.std).astype(np.float32)

    def _augment(self, img: np.ndarray, weights: np.ndarray) -> np.ndarray:
        color = self.eigvec @ (weights * self.eigval)
        return restore_dtype(np.add(img, color, dtype=work_dtype(img)), img.dtype, self.clip)


class Gamma(PhotometricAugmentor):
    """Gamma correction with a random exponent: ``x = 255 * (x / 255) ** (1 / (1 + g))``
    with ``g`` uniform in *range*.

    Float images are clipped to [0, 255] first.

    Args:
        range: ``(low, high)`` of ``g``, with ``low > -1``.

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.Gamma((1, 1)).augment(np.array([[0, 64, 255]], np.uint8)).tolist()
        [[0, 128, 255]]
    """

    def __init__(self, range: Tuple[float, float] = (-0.5, 0.5)):
        low, _ = check_range(range, "range")
        if not low > -1:
            raise ValueError(
                f"range must be a (low, high) pair with -1 < low <= high, got {range!r}"
            )
        self.range = range

    def _get_augment_params(self, img: np.ndarray) -> Any:
        return self._rand_range(*self.range)

    def _augment(self, img: np.ndarray, g: Any) -> np.ndarray:
        power = 1.0 / (1.0 + float(g))
        if img.dtype == np.uint8:
            lut = np.rint((np.arange(256) / 255.0) ** power * 255).astype(np.uint8)
            return lut[img]
        out = np.clip(img, 0, 255) / 255.0
        return (out**power * 255).astype(img.dtype, copy=False)


class Clip(PhotometricAugmentor):
    """Clip pixel values to ``[min, max]``, keeping the dtype.

    Args:
        min, max: the bounds.

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.Clip(0, 1).augment(np.array([[-2.0, 0.5, 3.0]], np.float32)).tolist()
        [[0.0, 0.5, 1.0]]
    """

    def __init__(self, min: float = 0, max: float = 255):
        if not (is_number(min) and is_number(max) and min <= max):
            raise ValueError(f"min must be a number <= max, got min={min!r}, max={max!r}")
        self.min, self.max = min, max

    def _augment(self, img: np.ndarray, _: Any) -> np.ndarray:
        return np.clip(img, self.min, self.max).astype(img.dtype, copy=False)


class GaussianBlur(PhotometricAugmentor):
    """Gaussian blur with a random window size and sigma.

    The window side is ``2 * k + 1`` with ``k`` drawn from ``[low, high)`` of
    *size_range*; sigma is drawn from *sigma_range* (0 lets OpenCV derive it
    from the window). Borders replicate the edge pixels.

    Args:
        size_range: ``(low, high)`` of ``k``, or an int *n* for ``(0, n)``.
        sigma_range: ``(low, high)`` of sigma.
        symmetric: use the same size and sigma along x and y.
        max_size: the older spelling of ``size_range=(0, max_size)``; warns.

    Example:
        >>> from dataflow import imgaug
        >>> img = np.zeros((5, 5), np.float32); img[2, 2] = 1
        >>> out = imgaug.GaussianBlur(size_range=(1, 2), sigma_range=(1, 1)).augment(img)
        >>> bool(out[2, 2] < 1 and out[1, 2] > 0 and abs(out.sum() - 1) < 1e-5)
        True
    """

    def __init__(
        self,
        size_range: Any = (0, 3),
        sigma_range: Tuple[float, float] = (0, 0),
        symmetric: bool = True,
        max_size: Optional[int] = None,
    ):
        if max_size is not None:
            warnings.warn(
                "GaussianBlur(max_size=n) is the older spelling of size_range=(0, n)",
                DeprecationWarning,
                stacklevel=2,
            )
            size_range = (0, max_size)
        if is_int(size_range):
            size_range = (0, size_range)
        if not (
            isinstance(size_range, (tuple, list))
            and len(size_range) == 2
            and all(is_int(v) and v >= 0 for v in size_range)
            and size_range[0] < size_range[1]
        ):
            raise ValueError(
                "size_range must be a (low, high) pair of ints >= 0 with low < high, got "
                f"{size_range!r}"
            )
        if not check_range(sigma_range, "sigma_range")[0] >= 0:
            raise ValueError(
                f"sigma_range must be a (low, high) pair of numbers >= 0, got {sigma_range!r}"
            )
        self.size_range, self.sigma_range, self.symmetric = size_range, sigma_range, symmetric

    def _get_augment_params(self, img: np.ndarray) -> Any:
        sizes = self.rng.randint(self.size_range[0], self.size_range[1], size=2) * 2 + 1
        sigmas = self._rand_range(*self.sigma_range, size=(2,))
        if self.symmetric:
            sizes[1], sigmas[1] = sizes[0], sigmas[0]
        return (int(sizes[0]), int(sizes[1])), (float(sigmas[0]), float(sigmas[1]))

    def _augment(self, img: np.ndarray, params: Any) -> np.ndarray:
        size, sigma = params
        out = cv2("GaussianBlur").GaussianBlur(
            img, size, sigmaX=sigma[0], sigmaY=sigma[1], borderType=BORDER_REPLICATE
        )
        return out.reshape(img.shape)


def _channel_axes(img: np.ndarray, all_channel: bool) -> Optional[Tuple[int, int]]:
    """The axes to reduce over: all of them, or all but the channel axis."""
    return None if all_channel or img.ndim == 2 else (0, 1)


class MinMaxNormalize(PhotometricAugmentor):
    """Stretch pixel values linearly so that they span ``[min, max]``; returns float32.

    A constant image (or channel) becomes *min*.

    Args:
        min, max: the output range.
        all_channel: one stretch for all channels (True) or one per channel.

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.MinMaxNormalize(0, 1).augment(np.array([[10, 20, 30]], np.uint8)).tolist()
        [[0.0, 0.5, 1.0]]
    """

    def __init__(self, min: float = 0, max: float = 255, all_channel: bool = True):
        if not (is_number(min) and is_number(max) and min <= max):
            raise ValueError(f"min must be a number <= max, got min={min!r}, max={max!r}")
        self.min, self.max, self.all_channel = min, max, all_channel

    def _augment(self, img: np.ndarray, _: Any) -> np.ndarray:
        out = img.astype(np.float32)
        axes = _channel_axes(img, self.all_channel)
        low = out.min(axis=axes, keepdims=True)
        spread = out.max(axis=axes, keepdims=True) - low
        scale = np.divide(self.max - self.min, spread, out=np.zeros_like(spread), where=spread > 0)
        out -= low
        out *= scale
        out += self.min
        return out


class MeanVarianceNormalize(PhotometricAugmentor):
    """Shift and scale pixel values to zero mean and unit variance; returns float32.

    Computes ``(x - mean) / max(std, 1 / sqrt(number of values))``, so a
    constant image does not divide by zero.

    Args:
        all_channel: one mean and std for all channels (True) or per channel.

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.MeanVarianceNormalize().augment(np.array([[1, 3]], np.uint8)).tolist()
        [[-1.0, 1.0]]
    """

    def __init__(self, all_channel: bool = True):
        self.all_channel = all_channel

    def _augment(self, img: np.ndarray, _: Any) -> np.ndarray:
        out = img.astype(np.float32)
        axes = _channel_axes(img, self.all_channel)
        mean = out.mean(axis=axes, keepdims=True)
        std = np.maximum(out.std(axis=axes, keepdims=True), 1.0 / np.sqrt(img.size))
        out -= mean
        out /= std
        return out

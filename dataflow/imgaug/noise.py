"""Augmentors that add random noise to pixel values. Coordinates never move."""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from ._common import check_channels, cv2, is_int, is_number, restore_dtype, work_dtype
from .base import PhotometricAugmentor

__all__ = ["GaussianNoise", "JpegNoise", "SaltPepperNoise"]

_IMREAD_UNCHANGED = -1


class JpegNoise(PhotometricAugmentor):
    """JPEG compression artifacts: encode the image as JPEG with a random
    quality and decode it again.

    Takes HxW, HxWx1 or HxWx3 images; float images are rounded to uint8 for
    the round trip and come back as their own dtype.

    Args:
        quality_range: ``(low, high)``: the quality is an int in ``[low, high)``,
            within [0, 100].

    Example:
        >>> from dataflow import imgaug
        >>> out = imgaug.JpegNoise((50, 51)).augment(np.full((8, 8, 3), 100, np.uint8))
        >>> out.shape, out.dtype
        ((8, 8, 3), dtype('uint8'))
    """

    def __init__(self, quality_range: Tuple[int, int] = (40, 100)):
        if not (
            isinstance(quality_range, (tuple, list))
            and len(quality_range) == 2
            and all(is_int(v) for v in quality_range)
            and 0 <= quality_range[0] < quality_range[1] <= 101
        ):
            raise ValueError(
                f"quality_range must be a (low, high) pair of ints with 0 <= low < high <= 101, "
                f"got {quality_range!r}"
            )
        self.quality_range = quality_range

    def _get_augment_params(self, img: np.ndarray) -> Any:
        check_channels(img, self, (1, 3))
        return int(self.rng.randint(*self.quality_range))

    def _augment(self, img: np.ndarray, quality: int) -> np.ndarray:
        cv = cv2("JpegNoise")
        pixels = (
            img
            if img.dtype == np.uint8
            else restore_dtype(img.astype(np.float32), np.dtype(np.uint8), True)
        )
        ok, encoded = cv.imencode(".jpg", pixels, [cv.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError(f"{self!r}: OpenCV could not encode an image of shape {img.shape}")
        out = cv.imdecode(encoded, _IMREAD_UNCHANGED).reshape(img.shape)
        return out.astype(img.dtype, copy=False)


class GaussianNoise(PhotometricAugmentor):
    """Add independent normal noise, ``N(0, sigma^2)``, to every value.

    Args:
        sigma: the standard deviation, >= 0.
        clip: clip float images to [0, 255] too (uint8 always is).

    Example:
        >>> from dataflow import imgaug
        >>> out = imgaug.GaussianNoise(sigma=2).augment(np.full((4, 4), 100.0, np.float32))
        >>> out.dtype, bool(out.std() > 0)
        (dtype('float32'), True)
    """

    def __init__(self, sigma: float = 1, clip: bool = True):
        if not (is_number(sigma) and sigma >= 0):
            raise ValueError(f"sigma must be a number >= 0, got {sigma!r}")
        self.sigma, self.clip = sigma, clip

    def _get_augment_params(self, img: np.ndarray) -> Any:
        return self.rng.randn(*img.shape)

    def _augment(self, img: np.ndarray, noise: np.ndarray) -> np.ndarray:
        out = np.multiply(noise, self.sigma, dtype=work_dtype(img))
        out += img
        return restore_dtype(out, img.dtype, self.clip)


class SaltPepperNoise(PhotometricAugmentor):
    """Set random values (each channel on its own) to 255 ("salt") or 0 ("pepper").

    Args:
        white_prob: the probability of a value to become 255.
        black_prob: the probability of a value to become 0;
            ``white_prob + black_prob <= 1``.

    Example:
        >>> from dataflow import imgaug
        >>> out = imgaug.SaltPepperNoise(0.5, 0.5).augment(np.full((4, 4), 100, np.uint8))
        >>> sorted(set(out.ravel().tolist()))
        [0, 255]
    """

    def __init__(self, white_prob: float = 0.05, black_prob: float = 0.05):
        for name, value in (("white_prob", white_prob), ("black_prob", black_prob)):
            if not (is_number(value) and 0 <= value <= 1):
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        if white_prob + black_prob > 1:
            raise ValueError(
                f"white_prob + black_prob must be <= 1, got {white_prob!r} + {black_prob!r}"
            )
        self.white_prob, self.black_prob = white_prob, black_prob

    def _get_augment_params(self, img: np.ndarray) -> Any:
        return self.rng.uniform(0, 1, size=img.shape)

    def _augment(self, img: np.ndarray, u: np.ndarray) -> np.ndarray:
        out = img.copy()
        out[u >= 1 - self.white_prob] = 255
        out[u < self.black_prob] = 0
        return out

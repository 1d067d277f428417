"""Augmentors that paste an image onto a larger canvas."""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import numpy as np

from ._common import shape2d
from .base import ImageAugmentor
from .transform import Transform, _float_copy

__all__ = ["BackgroundFiller", "CenterPaste", "ConstantBackgroundFiller", "RandomPaste"]


class BackgroundFiller:
    """Base class of canvas makers for :class:`CenterPaste` and :class:`RandomPaste`.

    Subclasses define ``_fill(background_shape, img)``, returning a new array
    of height and width *background_shape*, with the dtype and channels of *img*.

    Example:
        >>> from dataflow import imgaug
        >>> class Gray(imgaug.BackgroundFiller):
        ...     def _fill(self, background_shape, img):
        ...         return np.full(background_shape + img.shape[2:], 128, img.dtype)
        >>> Gray().fill((1, 2), np.zeros((1, 1), np.uint8)).tolist()
        [[128, 128]]
    """

    def fill(self, background_shape: Tuple[int, int], img: np.ndarray) -> np.ndarray:
        """A new canvas of height and width *background_shape* for *img*."""
        return self._fill((int(background_shape[0]), int(background_shape[1])), img)

    def _fill(self, background_shape: Tuple[int, int], img: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must define _fill(background_shape, img)")


class ConstantBackgroundFiller(BackgroundFiller):
    """A canvas filled with one value.

    Args:
        value: the fill value (a number, or one per channel).

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.ConstantBackgroundFiller(7).fill((1, 2), np.zeros((1, 1), np.uint8)).tolist()
        [[7, 7]]
    """

    def __init__(self, value: Any):
        self.value = value

    def _fill(self, background_shape: Tuple[int, int], img: np.ndarray) -> np.ndarray:
        return np.full(background_shape + img.shape[2:], self.value, dtype=img.dtype)

    def __repr__(self) -> str:
        return f"ConstantBackgroundFiller({self.value!r})"


class _PasteTransform(Transform):
    """Paste an image with its top-left pixel at ``(y0, x0)`` of a new canvas."""

    def __init__(
        self, y0: int, x0: int, background_shape: Tuple[int, int], filler: BackgroundFiller
    ):
        self.y0, self.x0, self.background_shape, self.filler = y0, x0, background_shape, filler

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        bh, bw = self.background_shape
        if self.y0 + h > bh or self.x0 + w > bw:
            raise ValueError(f"{self!r} cannot hold an image of shape {img.shape}")
        canvas = self.filler.fill(self.background_shape, img)
        canvas[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = img
        return canvas

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        out = _float_copy(coords)
        out[:, 0] += self.x0
        out[:, 1] += self.y0
        return out


class CenterPaste(ImageAugmentor):
    """Paste the image at the center of a *background_shape* canvas.

    When the margin is odd, the image sits one pixel nearer the top/left.

    Args:
        background_shape: the canvas ``(h, w)`` (or an int for a square), at
            least the image size.
        background_filler: a :class:`BackgroundFiller`; default fills with 0.

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.CenterPaste((3, 3)).augment(np.full((1, 1), 9, np.uint8)).tolist()
        [[0, 0, 0], [0, 9, 0], [0, 0, 0]]
    """

    def __init__(
        self,
        background_shape: Union[int, Tuple[int, int]],
        background_filler: Optional[BackgroundFiller] = None,
    ):
        self.background_shape = shape2d(background_shape, "background_shape")
        if background_filler is None:
            background_filler = ConstantBackgroundFiller(0)
        elif not isinstance(background_filler, BackgroundFiller):
            raise TypeError(
                f"background_filler must be None or a BackgroundFiller, got {background_filler!r}"
            )
        self.background_filler = background_filler

    def _may_modify_input(self) -> bool:
        # The filler is handed the image; a filler written by the user may write into it.
        filler_module = type(self.background_filler).__module__
        return super()._may_modify_input() or not filler_module.startswith("dataflow.imgaug.")

    def _position(self, img: np.ndarray) -> Tuple[int, int]:
        return (
            (self.background_shape[0] - img.shape[0]) // 2,
            (self.background_shape[1] - img.shape[1]) // 2,
        )

    def get_transform(self, img: np.ndarray) -> Transform:
        bh, bw = self.background_shape
        h, w = img.shape[:2]
        if h > bh or w > bw:
            raise ValueError(
                f"{self!r} cannot paste an image of shape {img.shape}: it is larger than the canvas"
            )
        y0, x0 = self._position(img)
        return _PasteTransform(y0, x0, self.background_shape, self.background_filler)


class RandomPaste(CenterPaste):
    """Paste the image at a uniformly random position of a *background_shape* canvas.

    Args:
        background_shape, background_filler: as in :class:`CenterPaste`.

    Example:
        >>> from dataflow import imgaug
        >>> out = imgaug.RandomPaste((3, 4)).augment(np.full((2, 2, 3), 9, np.uint8))
        >>> out.shape, int((out == 9).sum())
        ((3, 4, 3), 12)
    """

    def _position(self, img: np.ndarray) -> Tuple[int, int]:
        y0 = self.rng.randint(self.background_shape[0] - img.shape[0] + 1)
        x0 = self.rng.randint(self.background_shape[1] - img.shape[1] + 1)
        return int(y0), int(x0)

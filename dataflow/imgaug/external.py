"""Adapters for augmenters of the third-party libraries ``imgaug`` (aleju/imgaug)
and ``albumentations``.

They need those libraries, which this package does not install: constructing
an adapter without them raises an ImportError that says what to install.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from .._optional import import_optional
from .._state import ResumeNotSupportedError
from .base import ImageAugmentor
from .transform import Transform

__all__ = ["Albumentations", "IAAugmentor"]


class _IAATransform(Transform):
    """An imgaug augmenter frozen by ``to_deterministic()``."""

    def __init__(self, aug: Any, img_shape: Tuple[int, ...]):
        self.aug, self.img_shape = aug, img_shape

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self.aug.augment_image(img)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        ia = import_optional("imgaug", "IAAugmentor")
        points = ia.KeypointsOnImage(
            [ia.Keypoint(x=float(x), y=float(y)) for x, y in coords], shape=self.img_shape
        )
        moved = self.aug.augment_keypoints([points])[0].keypoints
        return np.asarray([[p.x, p.y] for p in moved], dtype=np.asarray(coords).dtype).reshape(
            -1, 2
        )


class IAAugmentor(ImageAugmentor):
    """Use an augmenter of the ``imgaug`` library (aleju/imgaug) as an augmentor.

    Each image gets ``augmenter.to_deterministic()``, so its masks and
    keypoints get the same random transform. That library works on uint8
    images, and moves keypoints less precisely than it moves pixels.
    Randomness comes from that library's own generator, not from this
    augmentor's ``rng`` or seed.

    Args:
        augmentor: an ``imgaug.augmenters.Augmenter``.

    Example:
        >>> from dataflow import imgaug
        >>> try:
        ...     import imgaug.augmenters as iaa
        ... except ImportError:
        ...     pass  # not installed here
        ... else:
        ...     aug = imgaug.IAAugmentor(iaa.Fliplr(1.0))
    """

    def _may_modify_input(self) -> bool:
        return True  # a third-party library's code

    def __init__(self, augmentor: Any):
        import_optional("imgaug", "IAAugmentor")
        self.augmentor = augmentor

    def state_dict(self) -> Dict[str, Any]:
        raise ResumeNotSupportedError(
            "IAAugmentor draws from the imgaug library's own random generator, whose "
            "state state_dict() cannot save; a pipeline that uses it cannot resume exactly"
        )

    def get_transform(self, img: np.ndarray) -> Transform:
        return _IAATransform(self.augmentor.to_deterministic(), img.shape)


class _AlbumentationsTransform(Transform):
    """An albumentations transform with its random parameters drawn."""

    def __init__(self, aug: Any, param: Dict[str, Any]):
        self.aug, self.param = aug, param

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self.aug.apply(img, **self.param)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        raise NotImplementedError(
            f"Albumentations adapter cannot transform coordinates ({self.aug!r}); "
            "use it for augmentors that move no pixel, or transform the coordinates yourself"
        )


class Albumentations(ImageAugmentor):
    """Use a transform of the ``albumentations`` library as an augmentor.

    Draws the transform's parameters with ``get_params()`` once per image and
    applies them with ``apply(img, **params)``, so several images can share
    them. Coordinates are not supported. Randomness comes from that library's
    own generator, not from this augmentor's ``rng`` or seed.

    Args:
        augmentor: an ``albumentations.BasicTransform``, e.g.
            ``albumentations.RandomRotate90(p=1)``.

    Example:
        >>> from dataflow import imgaug
        >>> try:
        ...     import albumentations as A
        ... except ImportError:
        ...     pass  # not installed here
        ... else:
        ...     aug = imgaug.Albumentations(A.RandomRotate90(p=1))
    """

    def _may_modify_input(self) -> bool:
        return True  # a third-party library's code

    def __init__(self, augmentor: Any):
        import_optional("albumentations", "Albumentations")
        self.augmentor = augmentor

    def state_dict(self) -> Dict[str, Any]:
        raise ResumeNotSupportedError(
            "Albumentations draws from the albumentations library's own random generator, "
            "whose state state_dict() cannot save; a pipeline that uses it cannot resume exactly"
        )

    def get_transform(self, img: np.ndarray) -> Transform:
        return _AlbumentationsTransform(self.augmentor, self.augmentor.get_params())

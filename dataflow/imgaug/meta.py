"""Augmentors that combine other augmentors, or wrap plain functions."""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._common import check_prob, is_number
from .base import ImageAugmentor
from .transform import NoOpTransform, Transform, TransformFactory, TransformList

__all__ = ["Identity", "MapImage", "RandomApplyAug", "RandomChooseAug", "RandomOrderAug"]


def _check_augmentors(augs: object, name: str) -> List[ImageAugmentor]:
    if (
        not isinstance(augs, (list, tuple))
        or not augs
        or not all(isinstance(a, ImageAugmentor) for a in augs)
    ):
        raise TypeError(f"{name} must be a non-empty list of ImageAugmentor, got {augs!r}")
    return list(augs)


class Identity(ImageAugmentor):
    """An augmentor that changes nothing.

    Example:
        >>> from dataflow import imgaug
        >>> imgaug.Identity().augment(np.array([[1, 2]], np.uint8)).tolist()
        [[1, 2]]
    """

    def get_transform(self, img: np.ndarray) -> Transform:
        return NoOpTransform()


class RandomApplyAug(ImageAugmentor):
    """Apply *aug* with probability *prob*, else change nothing.

    Args:
        aug: an :class:`ImageAugmentor`.
        prob: the probability to apply it, in [0, 1].

    Example:
        >>> from dataflow import imgaug
        >>> aug = imgaug.RandomApplyAug(imgaug.Flip(horiz=True, prob=1.0), prob=1.0)
        >>> aug.augment(np.array([[1, 2]], np.uint8)).tolist()
        [[2, 1]]
    """

    def __init__(self, aug: ImageAugmentor, prob: float):
        if not isinstance(aug, ImageAugmentor):
            raise TypeError(f"aug must be an ImageAugmentor, got {aug!r}")
        self.aug, self.prob = aug, check_prob(prob)

    def _children(self) -> Sequence[ImageAugmentor]:
        return (self.aug,)

    def get_transform(self, img: np.ndarray) -> Transform:
        if self.rng.uniform() < self.prob:
            return self.aug.get_transform(img)
        return NoOpTransform()


class RandomChooseAug(ImageAugmentor):
    """Apply one augmentor of a list, chosen at random for each image.

    Args:
        aug_lists: a list of augmentors (chosen with equal probability), or of
            ``(augmentor, weight)`` pairs (chosen in proportion to the weights,
            which need not sum to 1).

    Example:
        >>> from dataflow import imgaug
        >>> aug = imgaug.RandomChooseAug([(imgaug.Identity(), 0), (imgaug.Clip(0, 1), 1)])
        >>> aug.augment(np.array([[0, 5]], np.uint8)).tolist()
        [[0, 1]]
    """

    def __init__(self, aug_lists: Sequence[Union[ImageAugmentor, Tuple[ImageAugmentor, float]]]):
        self.aug_lists = aug_lists
        if (
            isinstance(aug_lists, (list, tuple))
            and aug_lists
            and all(isinstance(a, (list, tuple)) for a in aug_lists)
        ):
            weights: List[Any] = [a[1] if len(a) == 2 else None for a in aug_lists]
            if not all(is_number(w) and w >= 0 for w in weights) or sum(weights) <= 0:
                raise ValueError(
                    f"aug_lists weights must be numbers >= 0 with a positive sum, got {weights!r}"
                )
            self._augs = _check_augmentors([a[0] for a in aug_lists], "aug_lists")
            self._prob = np.asarray(weights, dtype=np.float64) / sum(weights)
        else:
            self._augs = _check_augmentors(aug_lists, "aug_lists")
            self._prob = np.full(len(self._augs), 1.0 / len(self._augs))

    def _children(self) -> Sequence[ImageAugmentor]:
        return self._augs

    def get_transform(self, img: np.ndarray) -> Transform:
        k = self.rng.choice(len(self._augs), p=self._prob)
        return self._augs[k].get_transform(img)


class RandomOrderAug(ImageAugmentor):
    """Apply all augmentors of a list, in a random order for each image.

    All of them decide their transform from the input image, so they should
    not change its shape (the order would change what a later one sees).

    Args:
        aug_lists: a list of augmentors.

    Example:
        >>> from dataflow import imgaug
        >>> aug = imgaug.RandomOrderAug([imgaug.BrightnessScale((2, 2)), imgaug.Brightness(1)])
        >>> aug.augment(np.full((1, 1), 10.0, np.float32)).shape
        (1, 1)
    """

    def __init__(self, aug_lists: Sequence[ImageAugmentor]):
        self.aug_lists = _check_augmentors(aug_lists, "aug_lists")

    def _children(self) -> Sequence[ImageAugmentor]:
        return self.aug_lists

    def get_transform(self, img: np.ndarray) -> Transform:
        order = self.rng.permutation(len(self.aug_lists))
        tfms = [a.get_transform(img) for a in self.aug_lists]
        return TransformList([tfms[k] for k in order])


class MapImage(ImageAugmentor):
    """Apply a plain function to the image (and another to coordinates).

    Args:
        func: ``img -> img``; must not modify its argument.
        coord_func: ``coords -> coords`` on ``Nx2`` ``(x, y)`` arrays; without
            it, transforming coordinates is an error.

    Example:
        >>> from dataflow import imgaug
        >>> aug = imgaug.MapImage(lambda img: img[:, :1])
        >>> aug.augment(np.array([[1, 2]], np.uint8)).tolist()
        [[1]]
    """

    def __init__(
        self,
        func: Callable[[np.ndarray], np.ndarray],
        coord_func: Optional[Callable[[np.ndarray], np.ndarray]] = None,
    ):
        if not callable(func):
            raise TypeError(f"func must be callable, got {func!r}")
        if coord_func is not None and not callable(coord_func):
            raise TypeError(f"coord_func must be None or callable, got {coord_func!r}")
        self.func, self.coord_func = func, coord_func

    def _may_modify_input(self) -> bool:
        return True  # func is the user's

    def _no_coords(self, coords: np.ndarray) -> np.ndarray:
        raise NotImplementedError(
            f"{self!r} cannot transform coordinates: pass coord_func= to MapImage"
        )

    def get_transform(self, img: np.ndarray) -> Transform:
        return TransformFactory(
            name=self, apply_image=self.func, apply_coords=self.coord_func or self._no_coords
        )

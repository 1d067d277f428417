"""The augmentor model: random policy in the augmentor, deterministic work in a Transform.

An :class:`ImageAugmentor` draws its random parameters from its own ``rng`` in
``get_transform(img)`` and returns a :class:`~dataflow.imgaug.Transform` that
applies them, to the image and to anything tied to it (masks, keypoints).
``augment(img)`` does both steps for the common case of one image.
"""

from __future__ import annotations

import os
import warnings
import weakref
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._checks import check_seed as _check_seed
from .._rng import child_seed
from .._rng import seed_state as _seed_state
from .._state import rng_from_state, rng_state
from ._common import check_image, init_repr
from .transform import (
    PhotometricTransform,
    Transform,
    TransformFactory,
    TransformList,
    _LazyTransform,
)

__all__ = ["Augmentor", "AugmentorList", "ImageAugmentor", "PhotometricAugmentor"]

# Augmentors whose rng came from fresh entropy: a forked child must not keep
# drawing the parent's stream, so it forgets these rngs and makes new ones.
_UNSEEDED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _forget_unseeded_rngs() -> None:
    for aug in list(_UNSEEDED.values()):
        aug._rng = None
    _UNSEEDED.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_unseeded_rngs)


class ImageAugmentor:
    """Base class of augmentors: a random policy that yields deterministic transforms.

    Subclasses define ``get_transform(img)``: draw random parameters from
    ``self.rng`` (decided by the image's shape or content) and return a
    :class:`~dataflow.imgaug.Transform` that applies them. The same transform
    can then change the image, its masks and its coordinates consistently.
    ``augment(img)`` is ``get_transform(img).apply_image(img)`` after checking
    that *img* is an ``HxW`` or ``HxWxC`` array of uint8, float32 or float64. Built-in
    augmentors keep the image's dtype unless changing it is their job, and
    never modify their input (their output may be a view of it).

    Randomness: ``self.rng`` is a ``numpy.random.RandomState``. Without a
    seed it comes from fresh entropy, anew in each forked process and at
    each ``reset_state()``, so parallel workers draw different streams. With
    ``set_seed(n)`` every ``reset_state()`` restarts the same stream.
    The image dataflows call ``reset_state()`` in their own. ``state_dict()``
    and ``load_state_dict()`` save and restore the random states (of
    sub-augmentors too), so a pipeline that augments resumes exactly.

    Code written for tensorpack keeps working: ``self._init(locals())``
    stores constructor arguments, ``self._rand_range(low, high)`` draws a
    float, and an augmentor that defines the older ``_get_augment_params(img)``
    and ``_augment(img, params)`` (plus ``_augment_coords(coords, params)``
    when it moves pixels; without it coordinates stay as they are, as in
    tensorpack) needs no ``get_transform``. The deprecated calls
    ``augment_return_params``, ``augment_with_params`` and ``augment_coords``
    still work, with a ``DeprecationWarning``.

    Example:
        >>> from dataflow import imgaug
        >>> class RandomInvert(imgaug.ImageAugmentor):
        ...     def __init__(self, prob=0.5):
        ...         self.prob = prob
        ...     def get_transform(self, img):
        ...         if self.rng.uniform() < self.prob:
        ...             return imgaug.PhotometricTransform(lambda im: 255 - im, "invert")
        ...         return imgaug.NoOpTransform()
        >>> aug = RandomInvert(prob=1.0)
        >>> aug.augment(np.array([[0, 200]], np.uint8)).tolist()
        [[255, 55]]
        >>> aug
        RandomInvert(prob=1.0)
    """

    #: The seed of ``self.rng``; ``None`` means fresh entropy.
    seed: Optional[int] = None
    _rng: Optional[np.random.RandomState] = None

    def __init__(self) -> None:
        """Nothing to set up; subclasses may call it or not."""

    def _init(self, params: Optional[Dict[str, Any]] = None) -> None:
        """Store ``locals()`` of a constructor as attributes (tensorpack's helper)."""
        for k, v in (params or {}).items():
            if k != "self" and not k.startswith("_"):
                setattr(self, k, v)

    # ---- randomness ----------------------------------------------------------
    def _new_rng(self) -> np.random.RandomState:
        rng = np.random.RandomState(_seed_state(self.seed))
        if self.seed is None:
            try:
                _UNSEEDED[id(self)] = self
            except TypeError:  # a subclass with __slots__ and no __weakref__
                pass
        return rng

    @property
    def rng(self) -> np.random.RandomState:
        """The random generator of this augmentor, created on first use."""
        if self._rng is None:
            self._rng = self._new_rng()
        return self._rng

    @rng.setter
    def rng(self, value: np.random.RandomState) -> None:
        self._rng = value

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        if self.seed is None:  # a copy must not replay this stream: it draws fresh entropy
            state.pop("_rng", None)
        return state

    def _children(self) -> Sequence[ImageAugmentor]:
        """The augmentors this one delegates to (reset and seeded with it)."""
        return ()

    def _may_modify_input(self) -> bool:
        """False only if this augmentor and everything it delegates to are built in
        and run no user code on the image, so they never write into their input
        (pinned by a test on read-only images). The image dataflows then need not
        copy an image before augmenting it. Any class defined outside this package
        may, as far as they know."""
        if not type(self).__module__.startswith(__name__.rpartition(".")[0] + "."):
            return True
        return any(child._may_modify_input() for child in self._children())

    def reset_state(self) -> None:
        """Restart ``self.rng`` (and those of sub-augmentors): the seeded stream
        from its start, or fresh entropy without a seed. Call it in the process
        that uses the augmentor; the image dataflows do."""
        self._rng = self._new_rng()
        for child in self._children():
            child.reset_state()

    def set_seed(self, seed: Optional[int]) -> ImageAugmentor:
        """Seed ``self.rng`` (from its next use on) and, with seeds derived from
        *seed*, those of sub-augmentors; ``None`` returns to fresh entropy.
        Returns ``self``."""
        self.seed = _check_seed(seed)
        self._rng = None
        for k, child in enumerate(self._children()):
            child.set_seed(child_seed(self.seed, k))
        return self

    #: Whether this augmentor draws from ``self.rng`` (its state is then saved).
    _draws = True

    def state_dict(self) -> Dict[str, Any]:
        """The random state of this augmentor and of its sub-augmentors, as
        JSON-compatible data: what :meth:`load_state_dict` restores, so that
        the augmentor draws the same numbers again. The image dataflows put
        it in their own ``state_dict()``.

        Raises:
            ResumeNotSupportedError: the augmentor draws from a generator it
                cannot save (one of another library).
        """
        rng = self._rng if self._draws else None
        return {
            "rng": rng_state(rng),
            "children": [child.state_dict() for child in self._children()],
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (of an augmentor built alike)."""
        children = self._children()
        if not isinstance(state, dict) or len(state.get("children", ())) != len(children):
            raise ValueError(
                f"load_state_dict(): the augmentor state is not from {self!r}: it has "
                f"{len(state.get('children', ())) if isinstance(state, dict) else 'no'} "
                f"sub-augmentor state(s) for {len(children)} sub-augmentor(s)"
            )
        if state.get("rng") is None:
            self._rng = None  # created again from the seed at its first use
        else:
            rng_from_state(self.rng, state["rng"])
        for child, sub in zip(children, state["children"]):
            child.load_state_dict(sub)

    def _rand_range(self, low: float = 1.0, high: Optional[float] = None, size: Any = None) -> Any:
        """A uniform float32 draw from ``[low, high)`` (``[0, low)`` if *high* is None)."""
        if high is None:
            low, high = 0.0, low
        if size is None:
            return np.float32(self.rng.uniform(low, high))
        return self.rng.uniform(low, high, size).astype(np.float32)

    # ---- the model -------------------------------------------------------------
    def get_transform(self, img: np.ndarray) -> Transform:
        """Draw the random parameters for *img* and return the transform that
        applies them."""
        augment = getattr(self, "_augment", None)
        if augment is None:
            raise NotImplementedError(
                f"{type(self).__name__} must define get_transform(img), returning a Transform"
            )
        params = self._get_augment_params(img)
        augment_coords = getattr(self, "_augment_coords", None)
        if augment_coords is None:  # tensorpack's default: coordinates stay put
            return PhotometricTransform(lambda im: augment(im, params), self)
        return TransformFactory(
            name=self,
            apply_image=lambda im: augment(im, params),
            apply_coords=lambda coords: augment_coords(coords, params),
        )

    def _get_augment_params(self, img: np.ndarray) -> Any:
        """The random parameters of the older interface (none by default)."""
        return None

    def augment(self, img: np.ndarray) -> np.ndarray:
        """Augment one image: ``get_transform(img).apply_image(img)``."""
        check_image(img, self)
        return self.get_transform(img).apply_image(img)

    # ---- tensorpack's older calls, deprecated there too ----------------------
    def augment_return_params(self, img: np.ndarray) -> Tuple[np.ndarray, Transform]:
        """Deprecated: ``t = get_transform(img); return t.apply_image(img), t``."""
        _warn_deprecated("augment_return_params(img)", "get_transform(img)")
        tfm = self.get_transform(img)
        return tfm.apply_image(img), tfm

    def augment_with_params(self, img: np.ndarray, param: Transform) -> np.ndarray:
        """Deprecated: ``param.apply_image(img)``."""
        _warn_deprecated("augment_with_params(img, t)", "t.apply_image(img)")
        return param.apply_image(img)

    def augment_coords(self, coords: np.ndarray, param: Transform) -> np.ndarray:
        """Deprecated: ``param.apply_coords(coords)``."""
        _warn_deprecated("augment_coords(coords, t)", "t.apply_coords(coords)")
        return param.apply_coords(coords)

    def __repr__(self) -> str:
        return init_repr(self)


def _warn_deprecated(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=3)


#: Another name of :class:`ImageAugmentor`, as in tensorpack.
Augmentor = ImageAugmentor


class PhotometricAugmentor(ImageAugmentor):
    """Base class of augmentors that change pixel values but move nothing.

    Subclasses define ``_get_augment_params(img)`` (draw from ``self.rng``;
    return ``None`` if there is nothing to draw) and ``_augment(img,
    params)`` (must not modify *img*). The transform leaves coordinates as
    they are.

    Example:
        >>> from dataflow import imgaug
        >>> class AddNoise(imgaug.PhotometricAugmentor):
        ...     def _get_augment_params(self, img):
        ...         return self.rng.randint(0, 3)
        ...     def _augment(self, img, v):
        ...         return img + v
        >>> aug = AddNoise().set_seed(0)
        >>> t = aug.get_transform(np.zeros((1, 2), np.uint8))
        >>> t.apply_coords(np.array([[0.5, 0.5]])).tolist()
        [[0.5, 0.5]]
    """

    def get_transform(self, img: np.ndarray) -> Transform:
        params = self._get_augment_params(img)
        augment = self._augment
        return PhotometricTransform(lambda im: augment(im, params), self)

    def _augment(self, img: np.ndarray, params: Any) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must define _augment(img, params)")


class AugmentorList(ImageAugmentor):
    """Apply several augmentors in order, each to the output of the previous one.

    ``augment(img)`` runs them one after the other. ``get_transform(img)``
    returns a :class:`~dataflow.imgaug.TransformList` whose later members are
    decided by the image they receive: call its ``apply_image`` on the main
    image first, then on other images (masks) or ``apply_coords``.
    ``reset_state()`` and ``set_seed()`` reach every augmentor of the list.

    Args:
        augmentors: a list of :class:`ImageAugmentor`.

    Example:
        >>> from dataflow import imgaug
        >>> augs = imgaug.AugmentorList([imgaug.CenterCrop(2), imgaug.Flip(horiz=True, prob=1.0)])
        >>> augs.augment(np.arange(9, dtype=np.uint8).reshape(3, 3)).tolist()
        [[1, 0], [4, 3]]
    """

    def __init__(self, augmentors: Sequence[ImageAugmentor]):
        if not isinstance(augmentors, (list, tuple)) or not all(
            isinstance(a, ImageAugmentor) for a in augmentors
        ):
            raise TypeError(f"augmentors must be a list of ImageAugmentor, got {augmentors!r}")
        self.augmentors: List[ImageAugmentor] = list(augmentors)

    _draws = False  # its members draw, the list itself does not

    def _children(self) -> Sequence[ImageAugmentor]:
        return self.augmentors

    def get_transform(self, img: np.ndarray) -> Transform:
        check_image(img, self)
        tfms: List[Transform] = []
        for k, aug in enumerate(self.augmentors):
            tfms.append(aug.get_transform(img) if k == 0 else _LazyTransform(aug.get_transform))
        return TransformList(tfms)

    def augment(self, img: np.ndarray) -> np.ndarray:
        check_image(img, self)
        for aug in self.augmentors:
            img = aug.get_transform(img).apply_image(img)
        return img

    def __repr__(self) -> str:
        inner = ",\n".join(f"  {a!r}" for a in self.augmentors)
        return f"AugmentorList([\n{inner}])" if self.augmentors else "AugmentorList([])"

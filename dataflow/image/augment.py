"""Dataflows that augment the image components of datapoints."""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Hashable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..base import DataFlow, Datapoint, ProxyDataFlow, init_args
from ..imgaug._common import check_image
from ..imgaug.base import AugmentorList, ImageAugmentor
from ..imgaug.transform import Transform

__all__ = ["AugmentImageComponent", "AugmentImageComponents", "AugmentImageCoordinates"]

logger = logging.getLogger(__name__)

Augmentors = Union[AugmentorList, Sequence[ImageAugmentor]]

# With catch_exceptions=True, a skipped datapoint is logged while fewer than
# this many were skipped, and then every _LOG_EVERY-th one.
_LOG_FIRST = 10
_LOG_EVERY = 100


def _check_coords(coords: Any) -> None:
    if not (
        isinstance(coords, np.ndarray)
        and coords.ndim == 2
        and coords.shape[1] == 2
        and coords.dtype.kind == "f"
    ):
        got = (
            f"a {coords.dtype} array of shape {coords.shape}"
            if isinstance(coords, np.ndarray)
            else f"a {type(coords).__name__}"
        )
        raise TypeError(f"coordinates must be an Nx2 float array of (x, y) rows, got {got}")


def _check_indices(value: Any, name: str, allow_empty: bool) -> Tuple[Hashable, ...]:
    if isinstance(value, (list, tuple)) and (value or allow_empty):
        return tuple(value)
    kind = "a tuple" if allow_empty else "a non-empty tuple"
    raise ValueError(f"{name} must be {kind} of component indices or keys, got {value!r}")


class _AugmentImageData(ProxyDataFlow):
    """The engine of the three augmenting dataflows: one random transform per
    datapoint, decided by its first image component and applied to all
    image components and coordinate components it names."""

    def __init__(
        self,
        ds: DataFlow,
        augmentors: Augmentors,
        images: Tuple[Hashable, ...],
        coords: Tuple[Hashable, ...],
        copy: bool,
        catch_exceptions: bool,
    ):
        super().__init__(ds)
        self.augs = (
            augmentors if isinstance(augmentors, AugmentorList) else AugmentorList(augmentors)
        )
        self._images, self._coords = images, coords
        self._copy, self._catch = bool(copy), bool(catch_exceptions)
        self._plan_copies()
        self._num_skipped = 0

    def _augment_args(self, **indices: Any) -> Dict[str, Any]:
        """The ``repr`` arguments, given the index parameters of the subclass."""
        augmentors = self.augs.augmentors
        return init_args(self, augmentors=augmentors, catch_exceptions=self._catch, **indices)

    def _plan_copies(self) -> None:
        # With copy=True the output must not share memory with the input. Augmentors
        # that may write into their input get a copy to work on; built-in ones, which
        # never do, work on the input itself, and only an output that is (a view of)
        # the input is copied (a crop copies fewer pixels than the whole image).
        self._copy_before = self._copy and self.augs._may_modify_input()
        self._copy_after = self._copy and not self._copy_before

    def reset_state(self) -> None:
        super().reset_state()
        self.augs.reset_state()
        self._plan_copies()  # the list of augmentors may have changed since __init__
        self._num_skipped = 0

    def set_seed(self, seed: Optional[int]) -> _AugmentImageData:
        """Seed the augmentors (see :meth:`ImageAugmentor.set_seed`); returns ``self``."""
        self.augs.set_seed(seed)
        return self

    def __iter__(self) -> Iterator[Datapoint]:
        augment = self._augment
        for dp in self.ds:
            out = augment(dp)
            if out is not None:
                yield out

    def own_state_dict(self) -> Dict[str, Any]:
        """``{"augmentors": ..., "skipped": n}``: the random states of the
        augmentors (see :meth:`ImageAugmentor.state_dict`) and how many
        datapoints *catch_exceptions* skipped; the position is the input's."""
        return {"augmentors": self.augs.state_dict(), "skipped": self._num_skipped}

    def load_own_state_dict(self, state: Dict[str, Any]) -> None:
        self.augs.load_state_dict(state["augmentors"])
        self._num_skipped = int(state["skipped"])

    def _augment(self, dp: Any) -> Optional[Datapoint]:
        if not isinstance(dp, (list, dict)):
            raise TypeError(
                f"{type(self).__name__} needs list or dict datapoints, got {type(dp).__name__}"
            )
        dp = dp.copy()  # a shallow copy: the input datapoint stays as it was
        augmentors = self.augs.augmentors
        component: Hashable = self._images[0]
        step: Optional[int] = None  # the augmentor at work, when one is
        try:
            img = original = self._take(dp, component, self._check_image, self._copy_before)
            tfms: List[Transform] = []
            for step in range(len(augmentors)):
                tfm = augmentors[step].get_transform(img)
                img = tfm.apply_image(img)
                tfms.append(tfm)
            dp[component] = self._unshare(img, original)
            for component in self._images[1:]:
                step = None
                img = original = self._take(dp, component, self._check_image, self._copy_before)
                for step in range(len(tfms)):
                    img = tfms[step].apply_image(img)
                dp[component] = self._unshare(img, original)
            for component in self._coords:
                step = None
                coords = self._take(dp, component, _check_coords, self._copy)
                for step in range(len(tfms)):
                    coords = tfms[step].apply_coords(coords)
                dp[component] = coords
        except Exception as err:
            self._fail(err, component, None if step is None else augmentors[step])
            return None
        return dp

    def _check_image(self, img: Any) -> None:
        check_image(img, self.augs)  # the message names the augmentors

    def _take(self, dp: Any, component: Hashable, check: Callable[[Any], None], copy: bool) -> Any:
        """Component *component* of *dp*, checked, and copied if *copy*."""
        value = dp[component]
        check(value)
        return value.copy() if copy else value

    def _unshare(self, img: np.ndarray, original: np.ndarray) -> np.ndarray:
        """*img*, copied if it may share memory with the input *original* and
        ``copy=True`` skipped copying the input."""
        if self._copy_after and np.may_share_memory(img, original):
            return img.copy()
        return img

    def _fail(self, err: Exception, component: Hashable, aug: Optional[ImageAugmentor]) -> None:
        """Raise a RuntimeError that says where augmentation failed, or, with
        *catch_exceptions*, count and log the skipped datapoint."""
        name = type(self).__name__
        where = (
            f"component {component!r}"
            if aug is None
            else f"{aug!r} failed on component {component!r}"
        )
        message = f"{name}: {where}: {type(err).__name__}: {err}"
        if not self._catch:
            raise RuntimeError(message) from err
        self._num_skipped += 1
        n = self._num_skipped
        if n <= _LOG_FIRST or n % _LOG_EVERY == 0:
            logger.warning(
                "%s skipped a datapoint (%d skipped so far): %s",
                name,
                n,
                message,
                exc_info=err if n == 1 else None,
            )


class AugmentImageComponent(_AugmentImageData):
    """Augment one image component of each datapoint with a list of augmentors.

    Each datapoint is a shallow copy of the input with component *index*
    replaced by the augmented image; the input datapoint is not modified.
    ``len()`` is ``len(ds)`` (an upper bound with *catch_exceptions*).
    Augmentors draw from their own random generators, reset with this
    dataflow's ``reset_state()`` and seeded by :meth:`set_seed`.

    Args:
        ds: the input dataflow.
        augmentors: a list of :class:`~dataflow.imgaug.ImageAugmentor`
            (applied in order) or an :class:`~dataflow.imgaug.AugmentorList`.
        index: the index (or dict key) of the image component.
        copy: keep the output apart from the input: the augmented image
            never shares memory with the input image, so neither an augmentor
            that writes into its input nor a later step that writes into the
            result can change the input datapoint (e.g. the images a
            ``DataFromList`` or ``CacheData`` yields again next pass). Built-in
            augmentors never write into their input, so with them only an
            output that is a view of the input (after a crop, for instance) is
            copied; with any other augmentor the image is copied first, as
            in tensorpack. ``copy=False`` never copies: outputs may be views
            of the input images.
        catch_exceptions: skip a datapoint whose augmentation raises, and
            log how many were skipped. False raises a RuntimeError that names
            the augmentor and the component, chained to the original error.

    Example:
        >>> from dataflow import imgaug
        >>> from dataflow.image import AugmentImageComponent
        >>> df = DataFromList([[np.arange(9, dtype=np.uint8).reshape(3, 3), 7]], shuffle=False)
        >>> df = AugmentImageComponent(df, [imgaug.CenterCrop(1)])
        >>> df.reset_state()
        >>> [(dp[0].tolist(), dp[1]) for dp in df]
        [([[4]], 7)]
    """

    def __init__(
        self,
        ds: DataFlow,
        augmentors: Augmentors,
        index: Hashable = 0,
        copy: bool = True,
        catch_exceptions: bool = False,
    ):
        super().__init__(ds, augmentors, (index,), (), copy, catch_exceptions)

    def _repr_args(self) -> Dict[str, Any]:
        return self._augment_args(index=self._images[0])


class AugmentImageComponents(_AugmentImageData):
    """Augment several image components (and coordinate components) of each
    datapoint with the same random transform.

    The transform is decided by the first component of *index* (e.g. the
    image) and then applied to the others (e.g. its segmentation mask) and to
    the ``Nx2`` ``(x, y)`` float arrays of *coords_index*. Otherwise as
    :class:`AugmentImageComponent`.

    Args:
        ds: the input dataflow.
        augmentors: a list of augmentors or an AugmentorList.
        index: a non-empty tuple of indices (or keys) of image components.
        coords_index: a tuple of indices (or keys) of coordinate components.
        copy, catch_exceptions: as in :class:`AugmentImageComponent`.

    Example:
        >>> from dataflow import imgaug
        >>> from dataflow.image import AugmentImageComponents
        >>> img, mask = np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)
        >>> df = DataFromList([[img, mask]], shuffle=False)
        >>> df = AugmentImageComponents(df, [imgaug.RandomCrop(2)], index=(0, 1))
        >>> df.reset_state()
        >>> [(a.shape, b.shape) for a, b in df]
        [((2, 2, 3), (2, 2))]

    Note:
        Every augmentor changes every image component, photometric ones
        included: ``Brightness`` would brighten a mask too. Apply those with
        an :class:`AugmentImageComponent` on the image alone.
    """

    def __init__(
        self,
        ds: DataFlow,
        augmentors: Augmentors,
        index: Sequence[Hashable] = (0, 1),
        coords_index: Sequence[Hashable] = (),
        copy: bool = True,
        catch_exceptions: bool = False,
    ):
        super().__init__(
            ds,
            augmentors,
            _check_indices(index, "index", allow_empty=False),
            _check_indices(coords_index, "coords_index", allow_empty=True),
            copy,
            catch_exceptions,
        )

    def _repr_args(self) -> Dict[str, Any]:
        return self._augment_args(index=self._images, coords_index=self._coords)


class AugmentImageCoordinates(_AugmentImageData):
    """Augment an image component and move a coordinate component with it.

    Component *coords_index* must be an ``Nx2`` float array of ``(x, y)``
    rows (pixel ``(i, j)`` spans ``[j, j + 1) x [i, i + 1)``). Otherwise as
    :class:`AugmentImageComponent`.

    Args:
        ds: the input dataflow.
        augmentors: a list of augmentors or an AugmentorList.
        img_index: the index (or key) of the image component.
        coords_index: the index (or key) of the coordinate component.
        copy, catch_exceptions: as in :class:`AugmentImageComponent`.

    Example:
        >>> from dataflow import imgaug
        >>> from dataflow.image import AugmentImageCoordinates
        >>> pts = np.array([[0.5, 0.5]])
        >>> df = DataFromList([[np.zeros((2, 4), np.uint8), pts]], shuffle=False)
        >>> df = AugmentImageCoordinates(df, [imgaug.Flip(horiz=True, prob=1.0)])
        >>> df.reset_state()
        >>> [dp[1].tolist() for dp in df]
        [[[3.5, 0.5]]]
    """

    def __init__(
        self,
        ds: DataFlow,
        augmentors: Augmentors,
        img_index: Hashable = 0,
        coords_index: Hashable = 1,
        copy: bool = True,
        catch_exceptions: bool = False,
    ):
        super().__init__(ds, augmentors, (img_index,), (coords_index,), copy, catch_exceptions)

    def _repr_args(self) -> Dict[str, Any]:
        return self._augment_args(img_index=self._images[0], coords_index=self._coords[0])

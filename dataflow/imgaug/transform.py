"""Deterministic transforms: what an augmentor decided, applied to images and coordinates.

An augmentor draws its random parameters and returns a :class:`Transform`.
The transform does the same thing every time, so one transform can change an
image, its mask and its keypoints consistently.

Coordinates are ``Nx2`` float arrays of ``(x, y)`` rows. Pixel ``(row i,
column j)`` covers the square ``[j, j + 1) x [i, i + 1)``, so its center is
``(j + 0.5, i + 0.5)``; every transform maps coordinates in that convention.
Transforms never modify their input; their output may be a view of it (crops,
flips, transposes).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._common import (
    BORDER_CONSTANT,
    INTER_LINEAR,
    cv2,
    init_repr,
    keep_channel_axis,
    optional_cv2,
)

__all__ = [
    "CropTransform",
    "FlipTransform",
    "NoOpTransform",
    "PhotometricTransform",
    "ResizeTransform",
    "Transform",
    "TransformFactory",
    "TransformList",
    "TransposeTransform",
    "WarpAffineTransform",
]


def _float_copy(coords: np.ndarray) -> np.ndarray:
    """A float copy of *coords* to change in place (float32 stays float32)."""
    coords = np.asarray(coords)
    return coords.astype(np.result_type(coords.dtype, np.float32), copy=True)


class Transform:
    """Base class of deterministic transforms.

    Subclasses define ``apply_image(img) -> img`` and, when the transform
    moves pixels in a way coordinates can follow, ``apply_coords(coords) ->
    coords`` on ``Nx2`` ``(x, y)`` float arrays (see the module docstring for
    the pixel convention). Neither may modify its argument. Store the
    constructor's arguments under the same names and ``repr()`` shows them.

    Example:
        >>> from dataflow.imgaug import Transform
        >>> class AddOne(Transform):
        ...     def apply_image(self, img):
        ...         return img + 1
        ...     def apply_coords(self, coords):
        ...         return coords
        >>> AddOne().apply_image(np.zeros((2, 2), np.uint8)).tolist()
        [[1, 1], [1, 1]]
    """

    def _init(self, params: Optional[Dict[str, Any]] = None) -> None:
        """Store ``locals()`` of a constructor as attributes (tensorpack's helper)."""
        for k, v in (params or {}).items():
            if k != "self" and not k.startswith("_"):
                setattr(self, k, v)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """The transformed image."""
        raise NotImplementedError(f"{type(self).__name__} does not implement apply_image")

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """The transformed ``Nx2`` array of ``(x, y)`` coordinates."""
        raise NotImplementedError(f"{self!r} cannot transform coordinates")

    def __repr__(self) -> str:
        return init_repr(self)


class ResizeTransform(Transform):
    """Resize an ``h`` x ``w`` image to ``new_h`` x ``new_w`` with OpenCV.

    Args:
        h, w: the size of the images it accepts.
        new_h, new_w: the size it produces.
        interp: an OpenCV interpolation flag (``cv2.INTER_*``).

    Example:
        >>> from dataflow.imgaug import ResizeTransform
        >>> t = ResizeTransform(2, 4, 4, 8, interp=0)  # 0 is cv2.INTER_NEAREST
        >>> t.apply_image(np.zeros((2, 4, 3), np.uint8)).shape
        (4, 8, 3)
        >>> t.apply_coords(np.array([[1.0, 1.5]])).tolist()
        [[2.0, 3.0]]
    """

    def __init__(self, h: int, w: int, new_h: int, new_w: int, interp: int = INTER_LINEAR):
        self.h, self.w, self.new_h, self.new_w, self.interp = h, w, new_h, new_w, interp

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(
                f"{self!r} needs an image of height {self.h} and width {self.w}, "
                f"got shape {img.shape}"
            )
        out = cv2("ResizeTransform").resize(
            img, (self.new_w, self.new_h), interpolation=self.interp
        )
        return keep_channel_axis(out, img)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        out = _float_copy(coords)
        out[:, 0] *= self.new_w / self.w
        out[:, 1] *= self.new_h / self.h
        return out


class CropTransform(Transform):
    """Cut the ``h`` x ``w`` window whose top-left pixel is ``(y0, x0)``.

    The output is a view of the input.

    Example:
        >>> from dataflow.imgaug import CropTransform
        >>> t = CropTransform(1, 2, 2, 2)
        >>> t.apply_image(np.arange(16).reshape(4, 4)).tolist()
        [[6, 7], [10, 11]]
        >>> t.apply_coords(np.array([[2.5, 1.5]])).tolist()
        [[0.5, 0.5]]
    """

    def __init__(self, y0: int, x0: int, h: int, w: int):
        self.y0, self.x0, self.h, self.w = y0, x0, h, w

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if img.shape[0] < self.y0 + self.h or img.shape[1] < self.x0 + self.w:
            raise ValueError(f"{self!r} does not fit in an image of shape {img.shape}")
        return img[self.y0 : self.y0 + self.h, self.x0 : self.x0 + self.w]

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        out = _float_copy(coords)
        out[:, 0] -= self.x0
        out[:, 1] -= self.y0
        return out


_CV2_FLIP_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))


class FlipTransform(Transform):
    """Mirror an ``h`` x ``w`` image left-right (*horiz*) or upside down.

    The output is a new C-contiguous array for uint8 and float32 images with
    1, 3 or 4 channels when OpenCV is installed (its fast flip: later
    stacking into a batch then copies contiguous memory), and a view of the
    input otherwise (numpy alone).

    Example:
        >>> from dataflow.imgaug import FlipTransform
        >>> t = FlipTransform(2, 3, horiz=True)
        >>> t.apply_image(np.array([[1, 2, 3], [4, 5, 6]])).tolist()
        [[3, 2, 1], [6, 5, 4]]
        >>> t.apply_coords(np.array([[0.5, 0.5]])).tolist()
        [[2.5, 0.5]]
    """

    def __init__(self, h: int, w: int, horiz: bool = True):
        self.h, self.w, self.horiz = h, w, horiz

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if img.dtype in _CV2_FLIP_DTYPES and (
            img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))
        ):
            ocv = optional_cv2()
            if ocv is not None:
                return ocv.flip(img, 1 if self.horiz else 0)
        return img[:, ::-1] if self.horiz else img[::-1]

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        out = _float_copy(coords)
        axis, size = (0, self.w) if self.horiz else (1, self.h)
        out[:, axis] = size - out[:, axis]
        return out


class TransposeTransform(Transform):
    """Swap the rows and columns of an image (and x and y of coordinates).

    The output is a view of the input.

    Example:
        >>> from dataflow.imgaug import TransposeTransform
        >>> TransposeTransform().apply_image(np.array([[1, 2, 3]])).tolist()
        [[1], [2], [3]]
    """

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return img.swapaxes(0, 1)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return _float_copy(coords)[:, ::-1].copy()


class WarpAffineTransform(Transform):
    """Warp an image by a 2x3 affine matrix with ``cv2.warpAffine``.

    *mat* maps pixel indices (pixel centers at integer positions), as OpenCV
    does; ``apply_coords`` accounts for the half-pixel shift to the coordinate
    convention of this module.

    Args:
        mat: a 2x3 float matrix from input to output pixel positions.
        dsize: the ``(width, height)`` of the output, in OpenCV's order.
        interp: an OpenCV interpolation flag.
        borderMode: an OpenCV border mode (``cv2.BORDER_*``).
        borderValue: the fill value for ``cv2.BORDER_CONSTANT``.

    Example:
        >>> from dataflow.imgaug import WarpAffineTransform
        >>> shift_right = WarpAffineTransform(np.array([[1.0, 0, 1], [0, 1, 0]]), (3, 1))
        >>> shift_right.apply_image(np.array([[1, 2, 3]], np.uint8)).tolist()
        [[0, 1, 2]]
        >>> shift_right.apply_coords(np.array([[0.5, 0.5]])).tolist()
        [[1.5, 0.5]]
    """

    def __init__(
        self,
        mat: np.ndarray,
        dsize: Tuple[int, int],
        interp: int = INTER_LINEAR,
        borderMode: int = BORDER_CONSTANT,
        borderValue: Any = 0,
    ):
        self.mat = np.asarray(mat, dtype=np.float64)
        self.dsize = (int(dsize[0]), int(dsize[1]))
        self.interp, self.borderMode, self.borderValue = interp, borderMode, borderValue

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        out = cv2("WarpAffineTransform").warpAffine(
            img,
            self.mat,
            self.dsize,
            flags=self.interp,
            borderMode=self.borderMode,
            borderValue=self.borderValue,
        )
        return keep_channel_axis(out, img)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        out = _float_copy(coords)
        moved = (out - 0.5) @ self.mat[:, :2].T + self.mat[:, 2] + 0.5
        out[:] = moved
        return out


class NoOpTransform(Transform):
    """A transform that returns its input, for every ``apply_*`` method.

    Example:
        >>> from dataflow.imgaug import NoOpTransform
        >>> NoOpTransform().apply_coords(np.array([[1.0, 2.0]])).tolist()
        [[1.0, 2.0]]
    """

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return img

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def __getattr__(self, name: str) -> Callable[[Any], Any]:
        if name.startswith("apply_"):
            return lambda x: x
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


class PhotometricTransform(Transform):
    """A transform that changes pixel values only: ``apply_image`` calls *func*,
    ``apply_coords`` returns the coordinates unchanged.

    Args:
        func: ``img -> img``; must not modify its argument.
        name: what ``repr()`` shows (its ``str()``, formatted only then).

    Example:
        >>> from dataflow.imgaug import PhotometricTransform
        >>> t = PhotometricTransform(lambda img: 255 - img, "invert")
        >>> t.apply_image(np.array([[0, 55]], np.uint8)).tolist()
        [[255, 200]]
        >>> t
        PhotometricTransform(invert)
    """

    def __init__(self, func: Callable[[np.ndarray], np.ndarray], name: Any = None):
        self._func = func
        self._name = name

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self._func(img)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def __repr__(self) -> str:
        return f"PhotometricTransform({'' if self._name is None else self._name})"


class TransformFactory(Transform):
    """A transform made of functions: ``TransformFactory(apply_image=f, apply_coords=g)``.

    Args:
        name: what ``repr()`` shows (its ``str()``, formatted only then).
        **kwargs: ``apply_<what>=function`` pairs; any other keyword is a
            TypeError. A method not given raises NotImplementedError.

    Example:
        >>> from dataflow.imgaug import TransformFactory
        >>> t = TransformFactory(name="double", apply_image=lambda img: img * 2)
        >>> t.apply_image(np.array([1, 2])).tolist()
        [2, 4]
    """

    def __init__(self, name: Any = None, **kwargs: Callable[[Any], Any]):
        for key, func in kwargs.items():
            if not key.startswith("apply_"):
                raise TypeError(f"TransformFactory takes only apply_* functions, got {key!r}")
            setattr(self, key, func)
        self._name = name

    def __repr__(self) -> str:
        return f"TransformFactory({'' if self._name is None else self._name})"


class TransformList(Transform):
    """Apply several transforms in order; ``apply_<what>`` of the list calls
    ``apply_<what>`` of each.

    Args:
        tfms: a list of :class:`Transform`.

    Example:
        >>> from dataflow.imgaug import CropTransform, FlipTransform, TransformList
        >>> t = TransformList([CropTransform(0, 0, 1, 3), FlipTransform(1, 3)])
        >>> t.apply_image(np.array([[1, 2, 3], [4, 5, 6]])).tolist()
        [[3, 2, 1]]
        >>> t.apply_coords(np.array([[0.5, 0.5]])).tolist()
        [[2.5, 0.5]]
    """

    def __init__(self, tfms: Sequence[Transform]):
        if not isinstance(tfms, (list, tuple)) or not all(isinstance(t, Transform) for t in tfms):
            raise TypeError(f"tfms must be a list of Transform, got {tfms!r}")
        self.tfms: List[Transform] = list(tfms)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        for t in self.tfms:
            img = t.apply_image(img)
        return img

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        for t in self.tfms:
            coords = t.apply_coords(coords)
        return coords

    def __getattr__(self, name: str) -> Callable[[Any], Any]:
        if name.startswith("apply_") and "tfms" in self.__dict__:

            def apply_all(x: Any) -> Any:
                for t in self.tfms:
                    x = getattr(t, name)(x)
                return x

            return apply_all
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __add__(self, other: Transform) -> TransformList:
        return TransformList(self.tfms + _as_list(other))

    def __radd__(self, other: Transform) -> TransformList:
        return TransformList(_as_list(other) + self.tfms)

    def __iadd__(self, other: Transform) -> TransformList:
        self.tfms.extend(_as_list(other))
        return self

    def __repr__(self) -> str:
        inner = ",\n".join(f"  {t!r}" for t in self.tfms)
        return f"TransformList([\n{inner}])" if self.tfms else "TransformList([])"


def _as_list(t: Transform) -> List[Transform]:
    return list(t.tfms) if isinstance(t, TransformList) else [t]


class _LazyTransform(Transform):
    """The transform of a later augmentor in a chain: it is decided from the
    image it receives, so it exists only once ``apply_image`` has run."""

    def __init__(self, get_transform: Callable[[np.ndarray], Transform]):
        self._get_transform = get_transform
        self._transform: Optional[Transform] = None

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if self._transform is None:
            self._transform = self._get_transform(img)
        return self._transform.apply_image(img)

    def _decided(self) -> Transform:
        if self._transform is None:
            raise RuntimeError(
                "the transforms of an AugmentorList after the first one are decided by the "
                "image each receives: call apply_image on the main image before apply_coords "
                "or applying to other components"
            )
        return self._transform

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return self._decided().apply_coords(coords)

    def __getattr__(self, name: str) -> Callable[[Any], Any]:
        if name.startswith("apply_") and "_transform" in self.__dict__:
            return getattr(self._decided(), name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __repr__(self) -> str:
        if self._transform is None:
            return f"_LazyTransform(undecided: {self._get_transform!r})"
        return repr(self._transform)

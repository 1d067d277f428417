"""Helpers shared by the augmentors: OpenCV access, argument checks, image checks,
dtype handling and a readable ``repr``."""

from __future__ import annotations

import inspect
import numbers
from types import ModuleType
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from .._optional import import_optional
from .._repr import is_default as _is_default

# OpenCV's flag values, fixed across OpenCV releases. Default arguments use
# them so that constructing an augmentor does not import cv2.
INTER_NEAREST = 0
INTER_LINEAR = 1
INTER_CUBIC = 2
INTER_AREA = 3
BORDER_CONSTANT = 0
BORDER_REPLICATE = 1

_cv2: Optional[ModuleType] = None
_cv2_missing = False  # an import of cv2 failed (for optional_cv2, which then stops trying)


def cv2(user: str) -> ModuleType:
    """The ``cv2`` module, or an ImportError that says *user* needs OpenCV."""
    global _cv2
    if _cv2 is None:
        _cv2 = import_optional("cv2", user)
    return _cv2


def optional_cv2() -> Optional[ModuleType]:
    """The ``cv2`` module, or ``None`` without OpenCV (for code with a numpy fallback)."""
    global _cv2_missing
    if _cv2 is None and not _cv2_missing:
        try:
            cv2("")
        except ImportError:
            _cv2_missing = True
    return _cv2


# ---- argument checks (constructor errors, STYLE.md message form) ----------


def is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


def shape2d(value: Any, name: str) -> Tuple[int, int]:
    """An ``(h, w)`` pair of positive ints from an int or a pair."""
    if is_int(value) and value > 0:
        return int(value), int(value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(is_int(v) and v > 0 for v in value)
    ):
        return int(value[0]), int(value[1])
    raise ValueError(f"{name} must be a positive int or an (h, w) pair of them, got {value!r}")


def check_range(value: Any, name: str) -> Tuple[float, float]:
    """A ``(low, high)`` pair of numbers with ``low <= high``."""
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(is_number(v) for v in value)
        and value[0] <= value[1]
    ):
        return value[0], value[1]
    raise ValueError(
        f"{name} must be a (low, high) pair of numbers with low <= high, got {value!r}"
    )


def check_int(value: Any, name: str, low: int, allow_none: bool = False) -> Optional[int]:
    """An int >= *low* (or None, if *allow_none*)."""
    if value is None and allow_none:
        return None
    if is_int(value) and value >= low:
        return int(value)
    what = f"None or an int >= {low}" if allow_none else f"an int >= {low}"
    raise ValueError(f"{name} must be {what}, got {value!r}")


def check_prob(value: Any, name: str = "prob") -> float:
    if is_number(value) and 0 <= value <= 1:
        return value
    raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


# ---- image checks ----------------------------------------------------------


_IMAGE_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float64))


def check_image(img: Any, owner: object) -> None:
    """Raise a TypeError/ValueError naming *owner* unless *img* is an HxW or
    HxWxC numpy array of uint8, float32 or float64."""
    if not isinstance(img, np.ndarray):
        raise TypeError(f"{owner} needs a numpy array image, got {type(img).__name__}")
    if img.dtype not in _IMAGE_DTYPES:
        hint = (
            " (OpenCV cannot resize or warp it): convert it first, e.g. img.astype(np.float32)"
            if img.dtype.kind == "f"
            else ""
        )
        raise TypeError(
            f"{owner} needs a uint8, float32 or float64 image, got dtype {img.dtype}{hint}"
        )
    if img.ndim not in (2, 3):
        raise ValueError(f"{owner} needs an HxW or HxWxC image, got shape {img.shape}")


def check_channels(img: np.ndarray, owner: object, allowed: Sequence[int] = (3,)) -> None:
    """Raise a ValueError naming *owner* unless *img* is HxWxC with C in *allowed*
    (1 in *allowed* also admits HxW)."""
    channels = img.shape[2] if img.ndim == 3 else 1 if img.ndim == 2 else None
    if channels not in allowed or (img.ndim == 2 and 1 not in allowed):
        wanted = " or ".join(f"HxWx{c}" for c in allowed)
        raise ValueError(f"{owner} needs an {wanted} image, got shape {img.shape}")


def check_size(img: np.ndarray, owner: object, h: int, w: int, what: str) -> None:
    """Raise a ValueError naming *owner* unless *img* is at least *h* x *w*."""
    if img.shape[0] < h or img.shape[1] < w:
        raise ValueError(
            f"{owner} cannot {what} of height {h} and width {w} from an image of shape {img.shape}"
        )


# ---- dtype handling ----------------------------------------------------------


def work_dtype(img: np.ndarray) -> np.dtype:
    """The float dtype to compute in: float32 for uint8, else the image's own."""
    return np.dtype(np.float32) if img.dtype == np.uint8 else img.dtype


def restore_dtype(out: np.ndarray, dtype: np.dtype, clip: bool) -> np.ndarray:
    """Bring a float result *out* (which the caller owns) back to *dtype*.

    uint8 results are clipped to [0, 255] and rounded to the nearest integer;
    float results are clipped to [0, 255] only when *clip* is true.
    """
    if clip or dtype == np.uint8:
        np.clip(out, 0, 255, out=out)
    if dtype == np.uint8:
        np.rint(out, out=out)
    return out.astype(dtype, copy=False)


def keep_channel_axis(out: np.ndarray, img: np.ndarray) -> np.ndarray:
    """OpenCV drops the channel axis of HxWx1 images; put it back."""
    return out[:, :, np.newaxis] if img.ndim == 3 and out.ndim == 2 else out


def cvt_color(img: np.ndarray, code: int, user: str) -> np.ndarray:
    """``cv2.cvtColor`` that also takes float64 images (OpenCV does not), and
    says in a ValueError naming *user* which image it could not convert."""
    cv = cv2(user)
    try:
        if img.dtype == np.float64:
            return cv.cvtColor(img.astype(np.float32), code).astype(np.float64)
        return cv.cvtColor(img, code)
    except cv.error as err:
        # OpenCV's message: a long first line, then the reason on lines starting with '>'
        reason = " ".join(line.lstrip("> ").strip() for line in str(err).splitlines()[1:])
        raise ValueError(
            f"{user} cannot convert an image of shape {img.shape} and dtype {img.dtype} "
            f"with OpenCV color code {code}: {reason or str(err).strip()}"
        ) from err


# ---- repr ------------------------------------------------------------------

_MAX_VALUE_REPR = 60


def _short_repr(value: Any) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= _MAX_VALUE_REPR else text[: _MAX_VALUE_REPR - 3] + "..."


def init_repr(obj: object) -> str:
    """``ClassName(arg=value, ...)`` from the constructor's parameters that *obj*
    stores under the same name and that differ from their defaults."""
    cls = type(obj)
    try:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        params = []
    parts = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name not in vars(obj):
            continue
        value = vars(obj)[p.name]
        if p.default is not p.empty and _is_default(value, p.default):
            continue
        parts.append(f"{p.name}={_short_repr(value)}")
    return f"{cls.__name__}({', '.join(parts)})"

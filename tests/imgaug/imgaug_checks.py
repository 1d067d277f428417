"""Checks shared by the augmentor tests: dtype and rank, coordinates that follow
pixels, seeding. Imported by the tests/imgaug test modules (not collected)."""

from __future__ import annotations

import importlib.util
from typing import Callable, List, Sequence, Tuple

import numpy as np
import pytest

from dataflow.imgaug import ImageAugmentor

needs_cv2 = pytest.mark.skipif(importlib.util.find_spec("cv2") is None, reason="needs OpenCV")

SHAPES = ((6, 8), (6, 8, 1), (6, 8, 3))
DTYPES = (np.uint8, np.float32)


def ramp(shape: Sequence[int], dtype=np.uint8) -> np.ndarray:
    """A deterministic test image with distinct-ish values in [0, 255]."""
    n = int(np.prod(shape))
    return (np.arange(n) * 7 % 256).reshape(shape).astype(dtype)


def assert_keeps_dtype_and_rank(
    aug: ImageAugmentor,
    shapes: Sequence[Tuple[int, ...]] = SHAPES,
    dtypes: Sequence[type] = DTYPES,
    same_shape: bool = True,
) -> None:
    """The output has the input's dtype and rank (and shape, if *same_shape*),
    and the input is left unchanged."""
    for shape in shapes:
        for dtype in dtypes:
            img = ramp(shape, dtype)
            before = img.copy()
            out = aug.augment(img)
            assert out.dtype == img.dtype, (aug, shape, dtype, out.dtype)
            assert out.ndim == img.ndim, (aug, shape, dtype, out.shape)
            if same_shape:
                assert out.shape == img.shape, (aug, shape, dtype, out.shape)
            elif img.ndim == 3:
                assert out.shape[2] == img.shape[2]
            np.testing.assert_array_equal(img, before, err_msg=f"{aug!r} modified its input")


def assert_coords_follow_pixels(
    aug: ImageAugmentor,
    shape: Tuple[int, int] = (15, 21),
    trials: int = 20,
    tol: float = 0.3,
) -> None:
    """Mark one pixel; its transformed center (``apply_coords``) lies within
    *tol* pixels of the intensity centroid of the transformed image."""
    aug.set_seed(0)
    pick = np.random.RandomState(1)
    checked = 0
    for _ in range(trials):
        y, x = pick.randint(3, shape[0] - 3), pick.randint(3, shape[1] - 3)
        img = np.zeros(shape, np.float32)
        img[y, x] = 1.0
        tfm = aug.get_transform(img)
        out = tfm.apply_image(img)
        ((cx, cy),) = tfm.apply_coords(np.array([[x + 0.5, y + 0.5]]))
        inside = 1 <= cx < out.shape[1] - 1 and 1 <= cy < out.shape[0] - 1
        if not inside or out.sum() == 0:
            continue  # the marked pixel was cropped away
        ys, xs = np.indices(out.shape)
        mx = (out * (xs + 0.5)).sum() / out.sum()
        my = (out * (ys + 0.5)).sum() / out.sum()
        assert abs(mx - cx) <= tol and abs(my - cy) <= tol, (aug, (x, y), (cx, cy), (mx, my))
        checked += 1
    assert checked >= trials // 2, f"only {checked} of {trials} marked pixels stayed in view"


def _draws(aug: ImageAugmentor, img: np.ndarray, n: int) -> List[np.ndarray]:
    return [aug.augment(img) for _ in range(n)]


def _same(a: List[np.ndarray], b: List[np.ndarray]) -> bool:
    return all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


def assert_seeding(make_aug: Callable[[], ImageAugmentor], img: np.ndarray, n: int = 24) -> None:
    """Same seed, same outputs (also after reset_state); without a seed, or
    with another seed, the outputs differ."""
    first = _draws(make_aug().set_seed(3), img, n)
    again = make_aug().set_seed(3)
    assert _same(first, _draws(again, img, n)), "the same seed gave different outputs"
    again.reset_state()
    assert _same(first, _draws(again, img, n)), "reset_state() did not restart the seeded stream"
    assert not _same(first, _draws(make_aug().set_seed(4), img, n)), "another seed changed nothing"
    unseeded = make_aug()
    a = _draws(unseeded, img, n)
    unseeded.reset_state()
    assert not _same(a, _draws(unseeded, img, n)), "reset_state() without a seed repeated itself"


def twin_rng(aug: ImageAugmentor, seed: int) -> np.random.RandomState:
    """Give *aug* the generator ``RandomState(seed)`` and return an identical
    twin, from which a test rebuilds by hand the draws *aug* makes."""
    aug.rng = np.random.RandomState(seed)
    return np.random.RandomState(seed)


def f32_uniform(rng: np.random.RandomState, low: float, high: float, size=None):
    """The draw of ``ImageAugmentor._rand_range(low, high, size)``: a uniform
    draw rounded to float32, as tensorpack makes it."""
    if size is None:
        return np.float32(rng.uniform(low, high))
    return rng.uniform(low, high, size).astype(np.float32)

"""Every augmentor of ``dataflow.imgaug`` at once: a table with an entry for each
exported augmentor class, swept over image shapes and dtypes, audited on
read-only inputs, and fed images it must refuse."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np
import pytest
from imgaug_checks import ramp

from dataflow import imgaug
from dataflow.imgaug import ImageAugmentor

cv2 = pytest.importorskip("cv2")  # most entries resize, warp or convert colors

# Abstract bases, and adapters that need third-party libraries (tested in
# test_imgaug_external.py); every other exported augmentor needs a table entry.
NOT_IN_TABLE = {
    "ImageAugmentor",
    "Augmentor",
    "PhotometricAugmentor",
    "IAAugmentor",
    "Albumentations",
}

GRAY, GRAY1, RGB = "HxW", "HxWx1", "HxWx3"
IMAGE_SHAPES = {GRAY: (12, 16), GRAY1: (12, 16, 1), RGB: (12, 16, 3)}
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Entry:
    """One augmentor of the table and what its documentation promises.

    Attributes:
        make: builds a fresh instance.
        takes: the image layouts it accepts; the others are a ValueError that
            names it (colour augmentors need HxWx3).
        dtype: the output dtype, None when the input's is kept.
        tail: the output shape after height and width for an HxWx3 input,
            None when kept (the colour conversions change it).
    """

    make: Callable[[], ImageAugmentor]
    takes: Tuple[str, ...] = (GRAY, GRAY1, RGB)
    dtype: Optional[type] = None
    tail: Optional[Tuple[int, ...]] = None


def _invert(img: np.ndarray) -> np.ndarray:
    return (255 - img).astype(img.dtype)  # a new array: the input stays as it was


def _mirror_x(coords: np.ndarray) -> np.ndarray:
    return coords * np.array([-1.0, 1.0])


_EIGVAL = [0.2175, 0.0188, 0.0045]
_EIGVEC = (
    np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])
    * 255
)

ENTRIES = [
    # geometry
    Entry(lambda: imgaug.Affine((0.8, 1.2), (0.2, 0.2), rotate_max_deg=30, shear=15)),
    Entry(lambda: imgaug.Flip(horiz=True)),
    Entry(lambda: imgaug.Flip(vert=True, prob=0.9)),
    Entry(lambda: imgaug.RandomResize((0.5, 1.5), (0.5, 1.5))),
    Entry(lambda: imgaug.Resize((5, 7))),
    Entry(lambda: imgaug.ResizeShortestEdge(6)),
    Entry(lambda: imgaug.Rotation(30)),
    Entry(lambda: imgaug.Rotation(180, center_range=(0.5, 0.5), step_deg=90)),
    Entry(lambda: imgaug.RotationAndCropValid(40)),
    Entry(lambda: imgaug.Shift(0.25, 0.25)),
    Entry(lambda: imgaug.Transpose()),
    # crop and paste
    Entry(lambda: imgaug.CenterCrop((5, 9))),
    Entry(lambda: imgaug.GoogleNetRandomCropAndResize(target_shape=(6, 8))),
    Entry(lambda: imgaug.RandomCrop(7)),
    Entry(lambda: imgaug.RandomCropRandomShape(2, 3, 10, 9)),
    Entry(lambda: imgaug.RandomCutout((2, 6), (2, 6), fill=9.0)),
    Entry(lambda: imgaug.CenterPaste(20)),
    Entry(lambda: imgaug.RandomPaste((15, 21), imgaug.ConstantBackgroundFiller(7))),
    # photometric
    Entry(lambda: imgaug.Brightness(40)),
    Entry(lambda: imgaug.BrightnessScale((0.5, 1.5))),
    Entry(lambda: imgaug.Clip(20, 200)),
    Entry(lambda: imgaug.Contrast((0.5, 1.5))),
    Entry(lambda: imgaug.Contrast((0.5, 1.5), rgb=True), takes=(GRAY, RGB)),
    Entry(lambda: imgaug.Gamma()),
    Entry(lambda: imgaug.GaussianBlur(size_range=(1, 3), sigma_range=(0.5, 2))),
    Entry(lambda: imgaug.Hue(), takes=(RGB,)),
    Entry(lambda: imgaug.Lighting(0.1, _EIGVAL, _EIGVEC), takes=(RGB,)),
    Entry(lambda: imgaug.MeanVarianceNormalize(all_channel=False), dtype=np.float32),
    Entry(lambda: imgaug.MinMaxNormalize(0, 1), dtype=np.float32),
    Entry(lambda: imgaug.Saturation(0.5, rgb=False), takes=(RGB,)),
    # noise
    Entry(lambda: imgaug.GaussianNoise(sigma=20)),
    Entry(lambda: imgaug.JpegNoise()),
    Entry(lambda: imgaug.SaltPepperNoise(0.2, 0.2)),
    # convert
    Entry(lambda: imgaug.ColorSpace(cv2.COLOR_BGR2HSV), takes=(RGB,)),
    Entry(lambda: imgaug.ColorSpace(cv2.COLOR_RGB2GRAY), takes=(RGB,), tail=(1,)),
    Entry(lambda: imgaug.Grayscale(), takes=(RGB,), tail=(1,)),
    Entry(lambda: imgaug.Grayscale(keepdims=False, rgb=True), takes=(RGB,), tail=()),
    Entry(lambda: imgaug.Grayscale(keepshape=True), takes=(RGB,)),
    Entry(lambda: imgaug.ToFloat32(), dtype=np.float32),
    Entry(lambda: imgaug.ToUint8(), dtype=np.uint8),
    # meta
    Entry(lambda: imgaug.AugmentorList([imgaug.RandomCrop(8), imgaug.SaltPepperNoise()])),
    Entry(lambda: imgaug.Identity()),
    Entry(lambda: imgaug.MapImage(_invert, _mirror_x)),
    Entry(lambda: imgaug.RandomApplyAug(imgaug.Rotation(20), 0.5)),
    Entry(lambda: imgaug.RandomChooseAug([imgaug.Flip(horiz=True), imgaug.RandomCutout(3, 3)])),
    Entry(lambda: imgaug.RandomOrderAug([imgaug.Brightness(10), imgaug.Contrast((0.8, 1.2))])),
]

IDS = [repr(e.make()).replace("\n", "") for e in ENTRIES]
entries = pytest.mark.parametrize("entry", ENTRIES, ids=IDS)


def names(aug: ImageAugmentor) -> str:
    """A regex that finds the augmentor's class name in a message."""
    return re.escape(type(aug).__name__)


def exported_augmentor_classes():
    return {
        getattr(imgaug, name)
        for name in imgaug.__all__
        if name not in NOT_IN_TABLE
        and isinstance(getattr(imgaug, name), type)
        and issubclass(getattr(imgaug, name), ImageAugmentor)
    }


def test_the_table_covers_every_exported_augmentor():
    assert set(imgaug.__all__) >= NOT_IN_TABLE, "a name left out of the table is not exported"
    covered = {type(e.make()) for e in ENTRIES}
    missing = sorted(c.__name__ for c in exported_augmentor_classes() - covered)
    assert not missing, f"no table entry for {missing}: add one to ENTRIES"
    assert covered <= exported_augmentor_classes()
    assert len(exported_augmentor_classes()) >= 40  # the export list itself was read


def images(entry: Entry, accepted: bool = True):
    """(layout, image) pairs of uint8 and float32 test images the entry takes
    (or, with *accepted* false, those it refuses)."""
    for layout, shape in IMAGE_SHAPES.items():
        if (layout in entry.takes) == accepted:
            for dtype in (np.uint8, np.float32):
                yield layout, ramp(shape, dtype)


@entries
def test_keeps_dtype_and_rank_unless_converting(entry):
    aug = entry.make()
    for layout, img in images(entry):
        tail = img.shape[2:] if entry.tail is None or layout != RGB else entry.tail
        dtype = np.dtype(entry.dtype or img.dtype)
        for seed in SEEDS:
            out = aug.set_seed(seed).augment(img)
            assert isinstance(out, np.ndarray), (aug, layout, seed)
            assert out.dtype == dtype, (aug, layout, img.dtype, seed, out.dtype)
            assert out.shape[2:] == tail, (aug, layout, img.dtype, seed, out.shape)
            assert out.shape[0] > 0 and out.shape[1] > 0, (aug, layout, seed, out.shape)


@entries
def test_refuses_the_layouts_it_does_not_take_naming_itself(entry):
    refused = list(images(entry, accepted=False))
    if not refused:
        assert entry.takes == tuple(IMAGE_SHAPES)
        return
    aug = entry.make()
    for _, img in refused:
        with pytest.raises(ValueError, match=names(aug)):
            aug.set_seed(0).augment(img)


@entries
def test_never_modifies_a_read_only_image_or_coordinates(entry):
    # dataflow.image's promise: built-in augmentors never modify their input, so
    # AugmentImageComponent(copy=False) is safe. A write into a read-only array raises.
    aug = entry.make()
    coords = np.array([[0.5, 0.5], [3.25, 7.5], [15.5, 11.5]])
    coords.flags.writeable = False
    for layout, img in images(entry):
        img.flags.writeable = False
        before = img.copy()
        for seed in SEEDS:
            aug.set_seed(seed).augment(img)
            tfm = aug.get_transform(img)
            tfm.apply_image(img)  # first: an AugmentorList decides its later members here
            for dtype in (np.float64, np.float32):
                c = coords.astype(dtype)
                c.flags.writeable = False
                moved = tfm.apply_coords(c)
                assert np.shape(moved) == (3, 2), (aug, layout, seed, moved)
                np.testing.assert_array_equal(c, coords.astype(dtype), err_msg=repr(aug))
            np.testing.assert_array_equal(img, before, err_msg=f"{aug!r} modified its input")


@entries
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint16, np.bool_])
def test_refuses_a_non_image_dtype_naming_itself(entry, dtype):
    aug = entry.make()
    img = np.zeros(IMAGE_SHAPES[entry.takes[-1]], dtype)
    with pytest.raises(TypeError, match=names(aug)) as err:
        aug.augment(img)
    assert np.dtype(dtype).name in str(err.value)


@entries
def test_refuses_float16_naming_itself(entry):
    # OpenCV cannot resize or warp float16 images: every augmentor refuses them
    aug = entry.make()
    img = np.zeros(IMAGE_SHAPES[entry.takes[-1]], np.float16)
    with pytest.raises((TypeError, ValueError), match=names(aug)) as err:
        aug.augment(img)
    assert "float16" in str(err.value)


@entries
@pytest.mark.parametrize("shape", [(16,), (2, 12, 16, 3), (1, 1, 1, 1)], ids=["1-D", "4-D", "4-D1"])
def test_refuses_a_wrong_rank_naming_itself(entry, shape):
    aug = entry.make()
    for dtype in (np.uint8, np.float32):
        with pytest.raises(ValueError, match=names(aug)) as err:
            aug.augment(np.zeros(shape, dtype))
        assert str(shape) in str(err.value)


@entries
def test_state_dict_makes_a_new_augmentor_draw_the_same_transforms(entry):
    # Unseeded on purpose: the state holds the random states themselves, of
    # sub-augmentors too, and survives JSON.
    layout, img = next(images(entry))
    aug = entry.make()
    aug.reset_state()
    for _ in range(3):
        aug.augment(img)
    state = json.loads(json.dumps(aug.state_dict()))
    expected = [aug.augment(img) for _ in range(4)]
    again = entry.make()
    again.reset_state()
    again.load_state_dict(state)
    got = [again.augment(img) for _ in range(4)]
    for a, b in zip(expected, got):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), (aug, layout)

"""The augmentor model: seeding, image checks, chaining, tensorpack's older interface."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import subprocess
import sys

import numpy as np
import pytest
from imgaug_checks import needs_cv2, ramp

from dataflow import imgaug
from dataflow.imgaug import (
    Augmentor,
    AugmentorList,
    ImageAugmentor,
    PhotometricAugmentor,
    TransformList,
    _common,
)


class Coin(ImageAugmentor):
    """Draws one number per image and records it (test double)."""

    def get_transform(self, img):
        v = self.rng.uniform()
        return imgaug.PhotometricTransform(lambda im: im + np.float32(v))


class LegacyBrightness(ImageAugmentor):
    """A tensorpack-0.9-style augmentor: _get_augment_params/_augment only."""

    def __init__(self, delta):
        super().__init__()
        self._init(locals())

    def _get_augment_params(self, img):
        return self._rand_range(-self.delta, self.delta)

    def _augment(self, img, v):
        return img + v


class LegacyFlip(ImageAugmentor):
    """A tensorpack-0.9-style geometric augmentor with _augment_coords."""

    def _get_augment_params(self, img):
        return img.shape[1]

    def _augment(self, img, w):
        return img[:, ::-1]

    def _augment_coords(self, coords, w):
        out = coords.copy()
        out[:, 0] = w - out[:, 0]
        return out


def _draw_in_child(aug, conn):
    conn.send(float(aug.rng.uniform()))
    conn.close()


def _draw_after_fork(aug):
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_draw_in_child, args=(aug, child_end))
    proc.start()
    child_end.close()
    try:
        assert parent_end.poll(30), "the child process sent nothing"
        return parent_end.recv()
    finally:
        proc.join(30)
        parent_end.close()


class TestImageAugmentor:
    def test_rng_exists_without_init_or_reset(self):
        class NoInit(ImageAugmentor):
            def __init__(self):
                pass  # does not call super().__init__()

        assert 0 <= NoInit().rng.uniform() < 1

    def test_set_seed_makes_draws_reproducible(self):
        a, b = Coin().set_seed(5), Coin().set_seed(5)
        assert [a.rng.uniform() for _ in range(3)] == [b.rng.uniform() for _ in range(3)]

    def test_reset_state_restarts_a_seeded_stream(self):
        aug = Coin().set_seed(5)
        first = [aug.rng.uniform() for _ in range(3)]
        aug.reset_state()
        assert [aug.rng.uniform() for _ in range(3)] == first

    def test_reset_state_without_seed_draws_fresh_entropy(self):
        aug = Coin()
        first = [aug.rng.uniform() for _ in range(3)]
        aug.reset_state()
        assert [aug.rng.uniform() for _ in range(3)] != first

    def test_set_seed_none_returns_to_fresh_entropy(self):
        aug = Coin().set_seed(1).set_seed(None)
        assert aug.seed is None
        first = aug.rng.uniform()
        aug.reset_state()
        assert aug.rng.uniform() != first

    def test_bad_seed_is_an_error(self):
        with pytest.raises(ValueError, match="seed must be None or a non-negative int, got -1"):
            Coin().set_seed(-1)

    def test_forked_child_draws_a_different_stream_when_unseeded(self):
        aug = Coin()
        aug.rng.uniform()  # the rng exists before the fork
        state = aug.rng.get_state()
        child = _draw_after_fork(aug)
        aug.rng.set_state(state)
        assert child != aug.rng.uniform()

    def test_forked_child_keeps_a_seeded_stream(self):
        aug = Coin().set_seed(9)
        aug.rng.uniform()
        state = aug.rng.get_state()
        child = _draw_after_fork(aug)
        aug.rng.set_state(state)
        assert child == aug.rng.uniform()

    def test_a_pickled_copy_draws_fresh_entropy_unless_seeded(self):
        aug = Coin()
        aug.rng.uniform()
        copy = pickle.loads(pickle.dumps(aug))
        assert copy.rng.uniform() != aug.rng.uniform()
        seeded = Coin().set_seed(2)
        seeded.rng.uniform()
        copy = pickle.loads(pickle.dumps(seeded))
        assert copy.rng.uniform() == seeded.rng.uniform()

    def test_rand_range_draws_float32_in_range(self):
        aug = Coin().set_seed(0)
        v = aug._rand_range(2, 3)
        assert isinstance(v, np.float32) and 2 <= v < 3
        assert 0 <= aug._rand_range(0.5) < 0.5
        assert aug._rand_range(0, 1, size=(4,)).shape == (4,)

    def test_augment_applies_the_transform(self):
        out = Coin().set_seed(0).augment(np.zeros((2, 2), np.float32))
        assert out.shape == (2, 2) and 0 < out[0, 0] < 1

    def test_augment_rejects_a_non_array(self):
        with pytest.raises(TypeError, match=r"Coin\(\) needs a numpy array image, got list"):
            Coin().augment([[0]])

    def test_augment_rejects_integer_dtypes_other_than_uint8(self):
        with pytest.raises(
            TypeError, match=r"^Coin\(\) needs a uint8, float32 or float64 image, got dtype int64$"
        ):
            Coin().augment(np.zeros((2, 2), np.int64))

    @pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
    def test_augment_rejects_floats_opencv_cannot_warp(self, dtype):
        if np.dtype(dtype) == np.float64:
            pytest.skip("longdouble is float64 on this platform")
        with pytest.raises(
            TypeError,
            match=rf"^Coin\(\) needs a uint8, float32 or float64 image, got dtype "
            rf"{np.dtype(dtype)} \(OpenCV cannot resize or warp it\): convert it first",
        ):
            Coin().augment(np.zeros((2, 2), dtype))

    def test_augment_rejects_wrong_rank(self):
        with pytest.raises(
            ValueError, match=r"Coin\(\) needs an HxW or HxWxC image, got shape \(2, 2, 2, 2\)"
        ):
            Coin().augment(np.zeros((2, 2, 2, 2), np.uint8))

    def test_missing_get_transform_says_what_to_define(self):
        class Empty(ImageAugmentor):
            pass

        with pytest.raises(NotImplementedError, match="Empty must define get_transform"):
            Empty().augment(np.zeros((1, 1), np.uint8))

    def test_repr_shows_arguments_that_differ_from_defaults(self):
        assert repr(imgaug.Flip(horiz=True)) == "Flip(horiz=True)"
        assert repr(imgaug.Flip(vert=True, prob=0.2)) == "Flip(vert=True, prob=0.2)"

    def test_older_interface_works_for_images_and_coords(self):
        aug = AugmentorList([LegacyBrightness(0.5), LegacyFlip()])
        img = ramp((3, 4), np.float32)
        tfm = aug.get_transform(img)
        out = tfm.apply_image(img)
        assert out.shape == (3, 4)
        np.testing.assert_allclose(out - out.mean(), img[:, ::-1] - img.mean(), atol=1e-5)
        assert tfm.apply_coords(np.array([[0.5, 0.5]])).tolist() == [[3.5, 0.5]]

    def test_older_interface_without_augment_coords_leaves_coords(self):
        tfm = LegacyBrightness(1.0).get_transform(np.zeros((2, 2), np.float32))
        assert tfm.apply_coords(np.array([[1.5, 0.5]])).tolist() == [[1.5, 0.5]]

    def test_deprecated_calls_still_work_and_warn(self):
        aug = LegacyFlip()
        img = ramp((2, 3), np.float32)
        with pytest.warns(DeprecationWarning, match="get_transform"):
            out, tfm = aug.augment_return_params(img)
        np.testing.assert_array_equal(out, img[:, ::-1])
        with pytest.warns(DeprecationWarning, match="apply_image"):
            np.testing.assert_array_equal(aug.augment_with_params(img, tfm), out)
        with pytest.warns(DeprecationWarning, match="apply_coords"):
            assert aug.augment_coords(np.array([[0.5, 0.5]]), tfm).tolist() == [[2.5, 0.5]]


class TestImageAugmentorState:
    def test_a_loaded_state_continues_the_stream(self):
        aug = Coin().set_seed(3)
        aug.rng.uniform(size=5)
        state = json.loads(json.dumps(aug.state_dict()))
        expected = aug.rng.uniform(size=4)
        again = Coin()
        again.load_state_dict(state)
        assert again.rng.uniform(size=4).tolist() == expected.tolist()

    def test_reaches_sub_augmentors_and_the_list_keeps_no_random_state(self):
        augs = imgaug.AugmentorList([Coin(), imgaug.RandomApplyAug(Coin(), 0.5)])
        augs.set_seed(0)
        augs.reset_state()
        state = augs.state_dict()
        assert state["rng"] is None  # the list draws nothing itself
        assert [s["rng"] is None for s in state["children"]] == [False, False]
        assert state["children"][1]["children"][0]["rng"] is not None

    def test_state_of_a_seeded_chain_of_three_is_about_10_kb(self):
        augs = imgaug.AugmentorList(
            [imgaug.Flip(horiz=True), imgaug.Brightness(10), imgaug.RandomCrop(2)]
        )
        augs.set_seed(0)
        augs.reset_state()
        size = len(json.dumps(augs.state_dict()))
        assert 3 * 3328 < size < 3 * 3500  # the 624-word key as base64, per augmentor

    def test_refuses_the_state_of_another_structure(self):
        one = imgaug.AugmentorList([Coin()])
        two = imgaug.AugmentorList([Coin(), Coin()])
        with pytest.raises(ValueError, match=r"has 1 sub-augmentor state\(s\) for 2"):
            two.load_state_dict(one.state_dict())

    def test_an_unused_unseeded_augmentor_saves_no_random_state(self):
        aug = Coin()
        assert aug.state_dict() == {"rng": None, "children": []}
        aug.load_state_dict({"rng": None, "children": []})
        assert aug._rng is None


class TestAugmentor:
    def test_is_the_same_class_as_image_augmentor(self):
        assert Augmentor is ImageAugmentor


class TestPhotometricAugmentor:
    class AddDraw(PhotometricAugmentor):
        def _get_augment_params(self, img):
            return self.rng.randint(1, 10)

        def _augment(self, img, v):
            return img + v

    def test_applies_params_to_pixels_and_leaves_coords(self):
        tfm = self.AddDraw().set_seed(0).get_transform(np.zeros((1, 1), np.uint8))
        out = tfm.apply_image(np.zeros((1, 1), np.uint8))
        assert 1 <= out[0, 0] <= 9
        # the same transform gives the same result twice
        assert tfm.apply_image(np.zeros((1, 1), np.uint8))[0, 0] == out[0, 0]
        coords = np.array([[1.5, 2.5]])
        assert tfm.apply_coords(coords) is coords

    def test_params_default_to_none(self):
        class Invert(PhotometricAugmentor):
            def _augment(self, img, params):
                assert params is None
                return 255 - img

        assert Invert().augment(np.array([[5]], np.uint8)).tolist() == [[250]]

    def test_missing_augment_says_what_to_define(self):
        class Empty(PhotometricAugmentor):
            pass

        with pytest.raises(NotImplementedError, match="Empty must define _augment"):
            Empty().augment(np.zeros((1, 1), np.uint8))


class TestAugmentorList:
    def test_augment_applies_in_order(self):
        augs = AugmentorList([imgaug.CenterCrop((2, 3)), imgaug.Flip(horiz=True, prob=1.0)])
        img = ramp((4, 5))
        np.testing.assert_array_equal(augs.augment(img), img[1:3, 1:4][:, ::-1])

    def test_empty_list_changes_nothing(self):
        img = ramp((2, 2))
        np.testing.assert_array_equal(AugmentorList([]).augment(img), img)

    def test_transform_applies_the_same_to_a_second_image(self):
        augs = AugmentorList([imgaug.RandomCrop(3), imgaug.Flip(horiz=True)]).set_seed(1)
        img = ramp((6, 6))
        tfm = augs.get_transform(img)
        assert isinstance(tfm, TransformList)
        out = tfm.apply_image(img)
        np.testing.assert_array_equal(tfm.apply_image(img.copy()), out)

    def test_transform_needs_apply_image_before_coords(self):
        augs = AugmentorList([imgaug.RandomCrop(3), imgaug.Flip(horiz=True)])
        tfm = augs.get_transform(ramp((6, 6)))
        with pytest.raises(RuntimeError, match="call apply_image on the main image before"):
            tfm.apply_coords(np.zeros((1, 2)))

    def test_reset_and_seed_reach_every_augmentor(self):
        a, b = Coin(), Coin()
        augs = AugmentorList([a, b]).set_seed(3)
        first = (a.rng.uniform(), b.rng.uniform())
        assert first[0] != first[1]  # each member gets its own stream
        augs.reset_state()
        assert (a.rng.uniform(), b.rng.uniform()) == first

    def test_non_augmentor_member_is_an_error(self):
        with pytest.raises(TypeError, match="augmentors must be a list of ImageAugmentor, got"):
            AugmentorList([imgaug.Flip(horiz=True), lambda img: img])

    def test_checks_the_image_naming_itself(self):
        with pytest.raises(
            TypeError, match=r"AugmentorList\(\[\n  Flip\(horiz=True\)\]\) needs a uint8"
        ):
            AugmentorList([imgaug.Flip(horiz=True)]).augment(np.zeros((2, 2), np.int32))


class TestOptionalOpenCV:
    def test_import_dataflow_imports_neither_imgaug_nor_cv2(self):
        code = (
            "import sys, dataflow\n"
            "assert 'cv2' not in sys.modules, 'cv2'\n"
            "assert 'dataflow.imgaug' not in sys.modules, 'imgaug'\n"
            "from dataflow import imgaug\n"
            "imgaug.Flip(horiz=True, prob=1.0).augment(__import__('numpy').zeros((2, 2)))\n"
            "assert 'cv2' not in sys.modules, 'cv2 after a flip'\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

    @needs_cv2
    def test_missing_opencv_says_how_to_install_it(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "cv2", None)  # makes "import cv2" fail
        monkeypatch.setattr(_common, "_cv2", None)
        with pytest.raises(ImportError, match=r"pip install 'dataflow-ml\[image\]'"):
            imgaug.Resize(2).augment(np.zeros((4, 4), np.uint8))

    @needs_cv2
    @pytest.mark.parametrize("shape", [(4, 5), (4, 5, 1), (4, 5, 3), (4, 5, 4)])
    @pytest.mark.parametrize("dtype", [np.uint8, np.float32])
    def test_flip_works_without_opencv(self, monkeypatch, shape, dtype):
        img = (np.arange(np.prod(shape)) % 251).reshape(shape).astype(dtype)
        with_cv2 = imgaug.Flip(horiz=True, prob=1.0).augment(img)
        if shape[-1] != 1:  # OpenCV's flip (HxWx1 stays a numpy view)
            assert with_cv2.flags.c_contiguous
        monkeypatch.setitem(sys.modules, "cv2", None)  # makes "import cv2" fail
        monkeypatch.setattr(_common, "_cv2", None)
        monkeypatch.setattr(_common, "_cv2_missing", False)
        for horiz, expected in ((True, img[:, ::-1]), (False, img[::-1])):
            out = imgaug.Flip(horiz=horiz, vert=not horiz, prob=1.0).augment(img)
            assert out.dtype == img.dtype and out.shape == img.shape
            np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(with_cv2, img[:, ::-1])

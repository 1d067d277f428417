"""The augmenting dataflows: one transform per datapoint, errors named, inputs untouched."""

from __future__ import annotations

import json
import logging
import pickle

import numpy as np
import pytest

from dataflow import DataFlow, DataFromList, check_dataflow, imgaug
from dataflow.image import AugmentImageComponent, AugmentImageComponents, AugmentImageCoordinates
from dataflow.testing import check_resume


def distinct(shape, dtype=np.uint8):
    return (np.arange(int(np.prod(shape))) % 251).reshape(shape).astype(dtype)


def source(dps):
    return DataFromList(dps, shuffle=False)


class InPlaceInvert(imgaug.ImageAugmentor):
    """A user augmentor that (badly) modifies its input."""

    def get_transform(self, img):
        def invert(im):
            im[...] = 255 - im
            return im

        return imgaug.PhotometricTransform(invert)


class FailOn(imgaug.ImageAugmentor):
    """Raises on images whose first pixel is *bad* (test double)."""

    def __init__(self, bad):
        self.bad = bad

    def get_transform(self, img):
        if img.flat[0] == self.bad:
            raise ValueError("bad pixel")
        return imgaug.NoOpTransform()


class TestAugmentImageComponent:
    def test_keeps_the_dataflow_contract(self):
        dps = [[distinct((6, 6, 3)), k] for k in range(5)]
        out = check_dataflow(lambda: AugmentImageComponent(source(dps), [imgaug.RandomCrop(4)]))
        assert [dp[1] for dp in out] == list(range(5))
        assert all(dp[0].shape == (4, 4, 3) for dp in out)

    def test_augments_the_indexed_component_and_leaves_the_input_alone(self):
        img = distinct((3, 3))
        dp = [0, img]
        df = AugmentImageComponent(source([dp]), [imgaug.Flip(horiz=True, prob=1.0)], index=1)
        df.reset_state()
        (out,) = list(df)
        np.testing.assert_array_equal(out[1], img[:, ::-1])
        assert out is not dp and dp[1] is img and out[0] == 0

    def test_dict_datapoints(self):
        df = AugmentImageComponent(
            source([{"img": distinct((4, 4)), "y": 1}]), [imgaug.CenterCrop(2)], index="img"
        )
        df.reset_state()
        (out,) = list(df)
        assert out["img"].shape == (2, 2) and out["y"] == 1

    def test_copy_protects_the_source_from_in_place_augmentors(self):
        img = distinct((2, 2))
        before = img.copy()
        df = AugmentImageComponent(source([[img]]), [InPlaceInvert()])
        df.reset_state()
        list(df)
        np.testing.assert_array_equal(img, before)
        df = AugmentImageComponent(source([[img]]), [InPlaceInvert()], copy=False)
        df.reset_state()
        list(df)
        np.testing.assert_array_equal(img, 255 - before)

    @pytest.mark.parametrize(
        "augs",
        [
            [imgaug.Identity()],
            [imgaug.CenterCrop(3)],
            [imgaug.RandomCrop(3), imgaug.Flip(horiz=True, prob=0.5)],
            [imgaug.RandomApplyAug(imgaug.Transpose(), 0.5)],
            [imgaug.CenterPaste(6)],
        ],
        ids=repr,
    )
    def test_copy_keeps_output_and_input_apart(self, augs):
        """Built-in augmentors may return views of their input; with copy=True the
        datapoint still never shares memory with the input datapoint."""
        img = distinct((4, 5, 3))
        df = AugmentImageComponents(source([[img, img[:, :, 0]]] * 8), augs, index=(0, 1))
        df.reset_state()
        for out in df:
            assert not np.shares_memory(out[0], img) and not np.shares_memory(out[1], img)
            out[0][...] = 0  # a later step writing into the result
            out[1][...] = 0
        np.testing.assert_array_equal(img, distinct((4, 5, 3)))
        # Without a copy, the views remain views.
        df = AugmentImageComponent(source([[img]]), [imgaug.CenterCrop(3)], copy=False)
        df.reset_state()
        assert all(np.shares_memory(out[0], img) for out in df)

    def test_copy_protects_the_source_from_user_code_nested_in_built_ins(self):
        class InvertingFiller(imgaug.BackgroundFiller):
            def _fill(self, background_shape, img):
                img[...] = 255 - img  # (badly) writes into the image it is shown
                return np.zeros(background_shape + img.shape[2:], img.dtype)

        img = distinct((2, 2))
        before = img.copy()
        for augs in (
            [imgaug.RandomApplyAug(InPlaceInvert(), 1.0)],
            [imgaug.RandomOrderAug([imgaug.Identity(), InPlaceInvert()])],
            [imgaug.MapImage(lambda im: np.subtract(255, im, out=im))],
            [imgaug.CenterPaste(3, InvertingFiller())],
        ):
            df = AugmentImageComponent(source([[img]]), augs)
            df.reset_state()
            list(df)
            np.testing.assert_array_equal(img, before, err_msg=repr(augs))

    def test_set_seed_makes_it_reproducible(self):
        dps = [[distinct((8, 8))] for _ in range(6)]

        def run(seed):
            df = AugmentImageComponent(source(dps), [imgaug.RandomCrop(3), imgaug.Flip(horiz=True)])
            df.set_seed(seed).reset_state()
            return [dp[0].tolist() for dp in df]

        assert run(1) == run(1)
        assert run(1) != run(2)

    def test_failure_names_the_augmentor_and_component(self):
        dps = [[np.zeros((2, 2), np.uint8)], [np.ones((2, 2), np.uint8)]]
        df = AugmentImageComponent(source(dps), [imgaug.Identity(), FailOn(1)])
        df.reset_state()
        with pytest.raises(
            RuntimeError,
            match=(
                r"AugmentImageComponent: FailOn\(bad=1\) failed on component 0: ValueError: bad "
                r"pixel"
            ),
        ) as info:
            list(df)
        assert isinstance(info.value.__cause__, ValueError)

    def test_catch_exceptions_skips_and_logs(self, caplog):
        dps = [[np.full((2, 2), k, np.uint8)] for k in range(4)]
        df = AugmentImageComponent(source(dps), [FailOn(1)], catch_exceptions=True)
        df.reset_state()
        with caplog.at_level(logging.WARNING, logger="dataflow.image.augment"):
            out = [int(dp[0][0, 0]) for dp in df]
            out2 = [int(dp[0][0, 0]) for dp in df]
        assert out == out2 == [0, 2, 3]
        assert "skipped a datapoint (1 skipped so far)" in caplog.text
        assert "skipped a datapoint (2 skipped so far)" in caplog.text
        assert "FailOn(bad=1) failed on component 0" in caplog.text

    def test_bad_image_names_the_component_and_the_augmentors(self):
        df = AugmentImageComponent(source([[np.zeros((2, 2), np.int64)]]), [imgaug.Identity()])
        df.reset_state()
        with pytest.raises(
            RuntimeError,
            match=r"^AugmentImageComponent: component 0: TypeError: AugmentorList\(\[\n  "
            r"Identity\(\)\]\) needs a uint8, float32 or float64 image, got dtype int64$",
        ):
            list(df)

    def test_image_of_wrong_rank_names_the_augmentors(self):
        df = AugmentImageComponent(
            source([[np.zeros((2, 2, 3, 1), np.uint8)]]), [imgaug.Flip(horiz=True)]
        )
        df.reset_state()
        with pytest.raises(
            RuntimeError,
            match=r"^AugmentImageComponent: component 0: ValueError: AugmentorList\(\[\n  "
            r"Flip\(horiz=True\)\]\) needs an HxW or HxWxC image, got shape \(2, 2, 3, 1\)$",
        ):
            list(df)

    def test_non_list_datapoint_is_an_error(self):
        class Tuples(DataFlow):
            def __iter__(self):
                yield (np.zeros((2, 2), np.uint8),)

        df = AugmentImageComponent(Tuples(), [imgaug.Identity()])
        df.reset_state()
        with pytest.raises(
            TypeError, match="AugmentImageComponent needs list or dict datapoints, got tuple"
        ):
            list(df)

    def test_accepts_an_augmentor_list_and_rejects_other_things(self):
        augs = imgaug.AugmentorList([imgaug.Identity()])
        assert AugmentImageComponent(source([]), augs).augs is augs
        with pytest.raises(TypeError, match="augmentors must be a list of ImageAugmentor, got"):
            AugmentImageComponent(source([]), imgaug.Identity())

    def test_pickles_before_reset_state(self):
        dps = [[distinct((8, 8, 3))] for _ in range(4)]
        augs = [
            imgaug.RandomCrop(5),
            imgaug.RandomApplyAug(imgaug.Flip(horiz=True), 0.5),
            imgaug.Brightness(20),
        ]
        df = AugmentImageComponent(source(dps), augs).set_seed(7)
        clone = pickle.loads(pickle.dumps(df))
        df.reset_state()
        clone.reset_state()
        assert [dp[0].tolist() for dp in df] == [dp[0].tolist() for dp in clone]


class TestAugmentImageComponents:
    def test_image_and_mask_get_the_same_transform(self):
        img = distinct((8, 8, 3))
        mask = img[:, :, 0].copy()
        augs = [
            imgaug.RandomCrop(5),
            imgaug.Flip(horiz=True),
            imgaug.Rotation(180, step_deg=90, center_range=(0.5, 0.5), interp=0),
        ]
        df = AugmentImageComponents(source([[img, mask, 7]] * 10), augs, index=(0, 1))
        df.reset_state()
        for out_img, out_mask, label in df:
            assert out_mask.shape == (5, 5) and label == 7
            np.testing.assert_array_equal(out_img[:, :, 0], out_mask)

    def test_coords_follow_the_images(self):
        img = np.zeros((9, 9), np.float32)
        img[2, 6] = 1.0
        coords = np.array([[6.5, 2.5]])
        augs = [imgaug.RandomCrop(7), imgaug.Flip(horiz=True), imgaug.Transpose()]
        df = AugmentImageComponents(
            source([[img, img.copy(), coords]] * 10), augs, coords_index=(2,)
        )
        df.reset_state()
        for a, b, c in df:
            ((y, x),) = np.argwhere(a == 1.0)
            assert c.tolist() == [[x + 0.5, y + 0.5]]
            np.testing.assert_array_equal(a, b)

    def test_keeps_the_dataflow_contract(self):
        dps = [[distinct((6, 6)), distinct((6, 6)), np.array([[1.0, 2.0]])] for _ in range(4)]
        check_dataflow(
            lambda: AugmentImageComponents(source(dps), [imgaug.RandomCrop(4)], coords_index=[2])
        )

    def test_failure_on_a_later_component_names_it(self):
        dps = [[np.zeros((4, 4), np.uint8), np.zeros((2, 2), np.uint8)]]
        df = AugmentImageComponents(source(dps), [imgaug.CenterCrop(2), imgaug.Identity()])
        df.reset_state()
        with pytest.raises(
            RuntimeError, match=r"CenterCrop\(crop_shape=\(2, 2\)\) failed on component 1"
        ):
            list(df)

    def test_argument_errors(self):
        with pytest.raises(
            ValueError,
            match=r"index must be a non-empty tuple of component indices or keys, got \(\)",
        ):
            AugmentImageComponents(source([]), [], index=())
        with pytest.raises(
            ValueError, match="coords_index must be a tuple of component indices or keys, got 2"
        ):
            AugmentImageComponents(source([]), [], coords_index=2)


class TestAugmentImageCoordinates:
    def test_moves_coords_with_the_image(self):
        pts = np.array([[0.5, 0.5], [3.0, 1.0]], np.float32)
        df = AugmentImageCoordinates(
            source([[np.zeros((2, 4), np.uint8), pts]]), [imgaug.Flip(horiz=True, prob=1.0)]
        )
        df.reset_state()
        (dp,) = list(df)
        assert dp[1].tolist() == [[3.5, 0.5], [1.0, 1.0]] and dp[1].dtype == np.float32
        assert pts.tolist() == [[0.5, 0.5], [3.0, 1.0]]

    def test_keeps_the_dataflow_contract(self):
        dps = [[distinct((6, 6, 3)), np.array([[1.0, 2.0]])] for _ in range(4)]
        check_dataflow(lambda: AugmentImageCoordinates(source(dps), [imgaug.RandomCrop(4)]))

    def test_other_indices(self):
        dp = {"pts": np.array([[1.0, 1.0]]), "im": distinct((4, 4))}
        df = AugmentImageCoordinates(
            source([dp]), [imgaug.CenterCrop(2)], img_index="im", coords_index="pts"
        )
        df.reset_state()
        (out,) = list(df)
        assert out["pts"].tolist() == [[0.0, 0.0]]

    def test_integer_coords_are_an_error(self):
        df = AugmentImageCoordinates(
            source([[distinct((2, 2)), np.array([[1, 1]])]]), [imgaug.Identity()]
        )
        df.reset_state()
        with pytest.raises(
            RuntimeError,
            match=(
                r"component 1: TypeError: coordinates must be an Nx2 float array of \(x, y\) "
                r"rows, got a int64 array of shape \(1, 2\)"
            ),
        ):
            list(df)


def nested_augmentors():
    return [
        imgaug.RandomChooseAug([imgaug.Flip(horiz=True), imgaug.Flip(vert=True)]),
        imgaug.RandomApplyAug(imgaug.Brightness(30), 0.5),
        imgaug.RandomOrderAug([imgaug.Contrast((0.5, 1.5)), imgaug.Saturation(0.4)]),
        imgaug.RandomCrop(5),
    ]


class TestResume:
    """The augmenting dataflows carry their augmentors' random states, of
    sub-augmentors too, so a pipeline that augments resumes bit-identical."""

    def images(self, n=9):
        rng = np.random.RandomState(0)
        return [[rng.randint(0, 256, (7, 7, 3)).astype(np.uint8), k] for k in range(n)]

    def test_component_with_nested_augmentors_resumes_exactly(self):
        dps = self.images()
        check_resume(lambda: AugmentImageComponent(DataFromList(dps), nested_augmentors()))

    def test_seeded_pipeline_resumes_exactly(self):
        dps = self.images()
        check_resume(
            lambda: AugmentImageComponent(
                DataFromList(dps, seed=1), nested_augmentors()
            ).set_seed(2)
        )

    def test_components_and_coordinates_resume_exactly(self):
        dps = [[img, img[::-1].copy(), np.array([[1.5, 2.5]])] for img, _ in self.images()]
        check_resume(
            lambda: AugmentImageComponents(
                DataFromList(dps), nested_augmentors(), index=(0, 1), coords_index=(2,)
            )
        )
        pairs = [[img, np.array([[1.5, 2.5]])] for img, _ in self.images()]
        check_resume(
            lambda: AugmentImageCoordinates(
                DataFromList(pairs), [imgaug.RandomCrop(5), imgaug.Flip(horiz=True)]
            )
        )

    def test_skipped_datapoints_are_counted_on(self):
        dps = [[np.full((2, 2), k % 3, np.uint8)] for k in range(8)]
        check_resume(lambda: AugmentImageComponent(source(dps), [FailOn(1)], catch_exceptions=True))
        df = AugmentImageComponent(source(dps), [FailOn(1)], catch_exceptions=True)
        df.reset_state()
        list(df)
        assert df.state_dict()["state"]["skipped"] == 3

    def test_state_holds_one_random_state_per_augmentor_that_draws(self):
        df = AugmentImageComponent(source(self.images()), nested_augmentors()).set_seed(0)
        df.reset_state()
        next(iter(df))
        augs = df.state_dict()["state"]["augmentors"]
        assert augs["rng"] is None  # the list itself
        assert [len(s["children"]) for s in augs["children"]] == [2, 1, 2, 0]
        # 4 augmentors and 5 sub-augmentors, about 3.4 KB each
        assert 9 * 3328 < len(json.dumps(augs)) < 9 * 3500

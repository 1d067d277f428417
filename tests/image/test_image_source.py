"""ImageFromFile on tiny PNG and JPEG files written by the tests."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

from dataflow import check_dataflow
from dataflow.image import ImageFromFile
from dataflow.worker import WorkerInfo, _worker_context

cv2 = pytest.importorskip("cv2")

BLUE_BGR = (255, 0, 0)


@pytest.fixture
def image_files(tmp_path):
    """Three files: a blue 4x6 PNG, a gray 5x5 PNG and a blue 8x8 JPEG."""
    paths = []
    blue = np.zeros((4, 6, 3), np.uint8)
    blue[:] = BLUE_BGR
    paths.append(tmp_path / "blue.png")
    cv2.imwrite(str(paths[-1]), blue)
    paths.append(tmp_path / "gray.png")
    cv2.imwrite(str(paths[-1]), np.full((5, 5), 77, np.uint8))
    jpeg = np.zeros((8, 8, 3), np.uint8)
    jpeg[:] = BLUE_BGR
    paths.append(tmp_path / "blue.jpg")
    cv2.imwrite(str(paths[-1]), jpeg)
    return [str(p) for p in paths]


class TestImageFromFile:
    def test_keeps_the_dataflow_contract(self, image_files):
        out = check_dataflow(lambda: ImageFromFile(image_files))
        assert [dp[0].shape for dp in out] == [(4, 6, 3), (5, 5, 3), (8, 8, 3)]
        assert all(dp[0].dtype == np.uint8 and len(dp) == 1 for dp in out)

    def test_color_images_are_rgb(self, image_files):
        df = ImageFromFile(image_files[:1])
        df.reset_state()
        (img,) = next(iter(df))
        assert img[0, 0].tolist() == [0, 0, 255]

    def test_channel_1_gives_hxwx1_gray(self, image_files):
        df = ImageFromFile(image_files, channel=1)
        df.reset_state()
        shapes = [dp[0].shape for dp in df]
        assert shapes == [(4, 6, 1), (5, 5, 1), (8, 8, 1)]

    def test_resize(self, image_files):
        df = ImageFromFile(image_files, resize=(3, 2))
        df.reset_state()
        assert {dp[0].shape for dp in df} == {(3, 2, 3)}
        df = ImageFromFile(image_files, channel=1, resize=4)
        df.reset_state()
        assert {dp[0].shape for dp in df} == {(4, 4, 1)}

    def test_shuffle_is_seeded_and_leaves_the_list_alone(self, tmp_path):
        files = []
        for k in range(6):
            files.append(str(tmp_path / f"{k}.png"))
            cv2.imwrite(files[-1], np.full((1, 1), k, np.uint8))
        original = list(files)

        def order(df):
            return [int(dp[0][0, 0, 0]) for dp in df]

        df = ImageFromFile(files, channel=1, shuffle=True, seed=3)
        df.reset_state()
        first = order(df)
        assert sorted(first) == list(range(6))
        passes = {tuple(order(df)) for _ in range(10)}
        assert len(passes) > 1  # a new order every pass
        again = ImageFromFile(files, channel=1, shuffle=True, seed=3)
        again.reset_state()
        assert order(again) == first
        assert files == original

    def test_accepts_path_objects(self, image_files):
        df = ImageFromFile([pathlib.Path(p) for p in image_files])
        df.reset_state()
        assert len(list(df)) == 3

    def test_accepts_a_numpy_array_of_paths(self, image_files):
        df = ImageFromFile(np.array([str(f) for f in image_files]))
        df.reset_state()
        assert len(list(df)) == len(image_files)

    def test_unicode_paths(self, tmp_path):
        path = tmp_path / "bild_äöü_日本.png"
        assert cv2.imwrite(str(path), np.full((3, 4, 3), 7, np.uint8))
        df = ImageFromFile([path])
        df.reset_state()
        assert [dp[0].tolist() for dp in df] == [np.full((3, 4, 3), 7).tolist()]

    def test_unreadable_file_is_an_error_naming_it(self, tmp_path):
        bad = tmp_path / "not-an-image.png"
        bad.write_bytes(b"hello")
        df = ImageFromFile([str(bad)])
        df.reset_state()
        with pytest.raises(OSError, match="ImageFromFile cannot read .*not-an-image.png"):
            list(df)

    def test_argument_errors(self, image_files):
        with pytest.raises(ValueError, match=r"files must be a non-empty list of paths, got \[\]"):
            ImageFromFile([])
        with pytest.raises(
            ValueError, match="files must be a non-empty list of paths, got 'a.png'"
        ):
            ImageFromFile("a.png")
        with pytest.raises(TypeError, match="files must hold str or os.PathLike paths, got 3"):
            ImageFromFile([image_files[0], 3])
        with pytest.raises(ValueError, match="channel must be 1 or 3, got 2"):
            ImageFromFile(image_files, channel=2)
        with pytest.raises(
            ValueError,
            match=r"resize must be a positive int or an \(h, w\) pair of them, got \(0, 2\)",
        ):
            ImageFromFile(image_files, resize=(0, 2))

    def test_missing_opencv_says_how_to_install_it(self, image_files, monkeypatch):
        monkeypatch.setitem(sys.modules, "cv2", None)
        with pytest.raises(
            ImportError, match=r"ImageFromFile needs the 'opencv-python-headless' package"
        ):
            ImageFromFile(image_files)

    def test_each_worker_of_an_exactly_once_runner_reads_its_shard(self, image_files):
        for shuffle in (False, True):
            shapes = []
            for i in range(2):
                with _worker_context(WorkerInfo(i, 2, sharded=True, shared_seed=3)):
                    df = ImageFromFile(image_files, shuffle=shuffle)
                    df.reset_state()
                    part = [dp[0].shape for dp in df]
                    assert len(df) == len(part)
                    shapes += part
            assert sorted(shapes) == [(4, 6, 3), (5, 5, 3), (8, 8, 3)]

    def test_a_resumed_pass_decodes_only_the_files_after_the_position(
        self, image_files, monkeypatch
    ):
        df = ImageFromFile(image_files * 3, shuffle=True, seed=1)
        df.reset_state()
        it = iter(df)
        for _ in range(5):
            next(it)
        state = df.state_dict()
        rest = [dp[0] for dp in it]
        resumed = ImageFromFile(image_files * 3, shuffle=True, seed=1)
        resumed.reset_state()
        resumed.load_state_dict(state)
        read = []
        imread = cv2.imread
        monkeypatch.setattr(cv2, "imread", lambda path, *a: read.append(path) or imread(path, *a))
        again = [dp[0] for dp in resumed]
        assert len(read) == len(again) == 9 - 5
        assert all(np.array_equal(a, b) for a, b in zip(again, rest))

    def test_a_long_list_of_paths_is_packed_before_a_fork_with_the_same_passes(
        self, image_files, monkeypatch
    ):
        import os
        import pickle

        from dataflow import _compact
        from dataflow.image import source as source_module

        paths = [str(p) for p in image_files] * 3
        plain = ImageFromFile(paths, shuffle=True, seed=1)  # short: never packed
        monkeypatch.setattr(source_module, "COMPACT_MIN_ITEMS", 4)
        df = ImageFromFile(paths, shuffle=True, seed=1)
        assert isinstance(df.files, list)
        pid = os.fork()
        if pid == 0:  # the child only has to exist: packing happens before it
            os._exit(0)
        os.waitpid(pid, 0)
        assert isinstance(df.files, _compact.CompactList)
        assert list(df.files) == paths
        copy = pickle.loads(pickle.dumps(df))
        for d in (df, copy, plain):
            d.reset_state()
        assert isinstance(plain.files, list)
        got = [[int(dp[0].sum()) for dp in d] for d in (df, copy, plain)]
        assert got[0] == got[1] == got[2] and len(got[0]) == len(paths)

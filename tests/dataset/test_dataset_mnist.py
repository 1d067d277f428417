"""Tests of dataflow.dataset.mnist on small IDX files written in the real format."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import tempfile

import numpy as np
import pytest
from _datafiles import assert_reads_its_shard, assert_runner_yields_each_once
from _loopback import serve_directory
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflow import check_dataflow
from dataflow.dataset import FashionMnist, Mnist

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(array: np.ndarray) -> bytes:
    """*array* (uint8) as an IDX file: magic 0x0000 0x08 ndim, big-endian dims, data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(path: str, data: bytes, gz: bool) -> None:
    with (gzip.open if gz else open)(path + (".gz" if gz else ""), "wb") as f:
        f.write(data)


def write_split(directory, split, images, labels, gz=True):
    image_name, label_name = SPLIT_FILES[split]
    write(os.path.join(directory, image_name), idx_bytes(images), gz)
    write(os.path.join(directory, label_name), idx_bytes(labels), gz)


def make_data(n, seed):
    rng = np.random.RandomState(seed)
    return rng.randint(0, 256, (n, 28, 28)).astype(np.uint8), rng.randint(0, 10, n).astype(np.uint8)


@pytest.fixture
def mnist_dir(tmp_path):
    """train: 12 images (gzipped), test: 5 images (gzipped); returns (dir, data)."""
    data = {"train": make_data(12, 0), "test": make_data(5, 1)}
    for split, (images, labels) in data.items():
        write_split(str(tmp_path), split, images, labels)
    return str(tmp_path), data


@pytest.fixture
def serve(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    return serve_directory


class TestMnist:
    def test_yields_float_images_in_unit_range_and_int_labels_in_file_order(self, mnist_dir):
        directory, data = mnist_dir
        images, labels = data["train"]
        df = Mnist("train", shuffle=False, dir=directory)
        df.reset_state()
        out = list(df)
        assert len(out) == len(df) == 12
        for (image, label), want_image, want_label in zip(out, images, labels):
            assert image.dtype == np.float32 and image.shape == (28, 28)
            np.testing.assert_array_equal(image, want_image.astype(np.float32) / 255)
            assert type(label) is int and label == want_label
        assert out[0][0].min() >= 0 and out[0][0].max() <= 1

    def test_test_split_reads_the_t10k_files(self, mnist_dir):
        directory, data = mnist_dir
        df = Mnist("test", shuffle=False, dir=directory)
        df.reset_state()
        assert len(df) == 5
        assert [label for _, label in df] == data["test"][1].tolist()

    def test_reads_gunzipped_files(self, tmp_path):
        images, labels = make_data(3, 2)
        write_split(str(tmp_path), "test", images, labels, gz=False)
        df = Mnist("test", shuffle=False, dir=tmp_path)
        df.reset_state()
        np.testing.assert_array_equal(np.stack([im for im, _ in df]), images / np.float32(255))

    def test_byte_values_map_exactly_to_value_over_255(self, tmp_path):
        images = np.arange(256 * 4, dtype=np.uint8)[: 28 * 28].reshape(1, 28, 28)
        write_split(str(tmp_path), "test", images, np.array([3], np.uint8))
        df = Mnist("test", dir=tmp_path)
        df.reset_state()
        [[image, label]] = list(df)
        np.testing.assert_array_equal(image, images[0].astype(np.float32) / 255)
        assert image[0, 0] == 0 and image[9, 3] == 1  # 9 * 28 + 3 == 255

    @pytest.mark.parametrize("shuffle", [True, False])
    def test_keeps_the_dataflow_contract(self, mnist_dir, shuffle):
        directory, _ = mnist_dir
        check_dataflow(lambda: Mnist("train", shuffle=shuffle, dir=directory))

    def test_each_worker_reads_only_its_shard(self, mnist_dir):
        assert_reads_its_shard(lambda shuffle: Mnist("train", shuffle, mnist_dir[0], seed=1))

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize("shuffle", [False, True])
    def test_an_exactly_once_runner_yields_every_image_once_per_pass(self, mnist_dir, shuffle):
        df = Mnist("train", shuffle=False, dir=mnist_dir[0])
        df.reset_state()
        assert_runner_yields_each_once(Mnist("train", shuffle, mnist_dir[0]), list(df))

    def test_shuffle_gives_a_new_permutation_every_pass(self, mnist_dir):
        directory, data = mnist_dir
        df = Mnist("train", dir=directory, seed=3)  # shuffle=True by default
        df.reset_state()
        passes = [[label for _, label in df] for _ in range(5)]
        for p in passes:
            assert sorted(p) == sorted(data["train"][1].tolist())
        assert len({tuple(p) for p in passes}) > 1

    def test_same_seed_gives_the_same_order(self, mnist_dir):
        directory, _ = mnist_dir

        def order(seed):
            df = Mnist("train", dir=directory, seed=seed)
            df.reset_state()
            return [image.tobytes() for image, _ in df]

        assert order(5) == order(5)
        assert order(5) != order(6)

    def test_yields_a_fresh_array_each_time(self, mnist_dir):
        directory, _ = mnist_dir
        df = Mnist("test", shuffle=False, dir=directory)
        df.reset_state()
        first = next(iter(df))[0]
        before = first.copy()
        first[:] = -1
        np.testing.assert_array_equal(next(iter(df))[0], before)

    def test_pickles_before_reset_state(self, mnist_dir):
        directory, _ = mnist_dir
        df = pickle.loads(pickle.dumps(Mnist("test", shuffle=False, dir=directory)))
        df.reset_state()
        assert len(list(df)) == 5

    def test_missing_files_error_says_what_where_and_how(self, tmp_path):
        with pytest.raises(FileNotFoundError) as info:
            Mnist("train", dir=tmp_path)
        assert str(info.value) == (
            f"Mnist expected these files in '{tmp_path}', which are missing: "
            "'train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'. Download them from "
            "https://ossci-datasets.s3.amazonaws.com/mnist/ (gunzipping them is optional), "
            "or pass download=True to do it for you."
        )

    def test_missing_error_names_only_the_missing_file(self, mnist_dir):
        directory, _ = mnist_dir
        os.remove(os.path.join(directory, "t10k-labels-idx1-ubyte.gz"))
        with pytest.raises(FileNotFoundError, match="missing: 't10k-labels-idx1-ubyte.gz'. "):
            Mnist("test", dir=directory)

    def test_default_dir_is_under_DATAFLOW_DATASETS(self, mnist_dir, monkeypatch):
        directory, _ = mnist_dir
        root = os.path.dirname(directory)
        os.rename(directory, os.path.join(root, "mnist_data"))
        monkeypatch.setenv("DATAFLOW_DATASETS", root)
        df = Mnist("test")
        assert df.dir == os.path.join(root, "mnist_data")
        assert len(df) == 5

    def test_default_dir_without_the_variable_is_in_the_home_directory(self, tmp_path, monkeypatch):
        monkeypatch.delenv("DATAFLOW_DATASETS", raising=False)
        monkeypatch.setenv("HOME", str(tmp_path))
        expected = os.path.join(str(tmp_path), ".dataflow", "datasets", "mnist_data")
        with pytest.raises(FileNotFoundError, match=f"in '{expected}'"):
            Mnist("test")

    @pytest.mark.parametrize("gz", [True, False])
    def test_truncated_image_file_is_reported_with_its_shape(self, tmp_path, gz):
        images, labels = make_data(3, 0)
        write_split(str(tmp_path), "test", images, labels, gz=gz)
        path = os.path.join(str(tmp_path), "t10k-images-idx3-ubyte")
        write(path, idx_bytes(images)[:-10], gz)
        name = path + (".gz" if gz else "")
        with pytest.raises(ValueError) as info:
            Mnist("test", dir=tmp_path)
        assert str(info.value) == (
            f"{name} holds 2342 bytes of data, but its header announces shape (3, 28, 28), "
            "i.e. 2352 bytes; the file is truncated or damaged"
        )

    def test_file_shorter_than_its_header_is_reported(self, tmp_path):
        images, labels = make_data(2, 0)
        write_split(str(tmp_path), "test", images, labels)
        write(os.path.join(str(tmp_path), "t10k-labels-idx1-ubyte"), b"\x00\x00\x08", True)
        with pytest.raises(
            ValueError,
            match=r"t10k-labels-idx1-ubyte.gz is too short for an IDX "
            r"file: 3 bytes, the header alone is 8",
        ):
            Mnist("test", dir=tmp_path)

    def test_swapped_image_and_label_files_give_a_magic_number_error(self, tmp_path):
        images, labels = make_data(2, 0)
        write_split(str(tmp_path), "test", images, labels)
        write(os.path.join(str(tmp_path), "t10k-images-idx3-ubyte"), idx_bytes(labels), True)
        with pytest.raises(ValueError) as info:
            Mnist("test", dir=tmp_path)
        assert str(info.value).endswith(
            "t10k-images-idx3-ubyte.gz has magic number 0x00000801, expected 0x00000803 "
            "(an IDX file of unsigned bytes with 3 dimensions)"
        )

    def test_damaged_gzip_stream_is_reported(self, tmp_path):
        images, labels = make_data(2, 0)
        write_split(str(tmp_path), "test", images, labels)
        path = os.path.join(str(tmp_path), "t10k-images-idx3-ubyte.gz")
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz could not be read: "):
            Mnist("test", dir=tmp_path)

    def test_image_and_label_counts_must_agree(self, tmp_path):
        images, labels = make_data(3, 0)
        write_split(str(tmp_path), "test", images, labels[:2])
        with pytest.raises(
            ValueError,
            match=r"holds 3 images but .*t10k-labels-idx1-ubyte.gz "
            r"holds 2 labels",
        ):
            Mnist("test", dir=tmp_path)

    def test_download_fetches_the_missing_files_from_source_url(
        self, mnist_dir, tmp_path_factory, serve, monkeypatch
    ):
        served, data = mnist_dir
        target = str(tmp_path_factory.mktemp("target"))
        with serve(served) as url:
            monkeypatch.setattr(Mnist, "SOURCE_URL", url)
            df = Mnist("test", shuffle=False, dir=target, download=True)
        assert sorted(os.listdir(target)) == [
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ]
        df.reset_state()
        assert [label for _, label in df] == data["test"][1].tolist()

    def test_download_failure_names_the_url(self, tmp_path, tmp_path_factory, serve, monkeypatch):
        empty = str(tmp_path_factory.mktemp("empty"))
        with serve(empty) as url:
            monkeypatch.setattr(Mnist, "SOURCE_URL", url)
            with pytest.raises(OSError, match=f"could not download {url}t10k-images-idx3"):
                Mnist("test", dir=tmp_path, download=True)
        assert os.listdir(tmp_path) == []  # no partial file left behind

    @pytest.mark.parametrize(
        "kwargs,error,message",
        [
            (
                {"train_or_test": "val"},
                ValueError,
                "train_or_test must be 'train' or 'test', got 'val'",
            ),
            ({"shuffle": 1}, TypeError, "shuffle must be a bool, got 1"),
            ({"seed": -1}, ValueError, "seed must be None or a non-negative int, got -1"),
            ({"dir": 3}, TypeError, "dir must be None or a path, got 3"),
        ],
    )
    def test_argument_errors(self, mnist_dir, kwargs, error, message):
        args = {"train_or_test": "test", "dir": mnist_dir[0], **kwargs}
        with pytest.raises(error) as info:
            Mnist(**args)
        assert str(info.value) == message

    @settings(max_examples=20, deadline=None)
    @given(n=st.integers(0, 6), gz=st.booleans(), seed=st.integers(0, 2**16))
    def test_reads_back_exactly_what_was_written(self, n, gz, seed):
        images, labels = make_data(n, seed)
        with tempfile.TemporaryDirectory() as directory:
            write_split(directory, "train", images, labels, gz=gz)
            df = Mnist("train", shuffle=False, dir=directory)
        df.reset_state()
        out = list(df)
        assert len(out) == len(df) == n
        assert [label for _, label in out] == labels.tolist()
        for (image, _), want in zip(out, images):
            np.testing.assert_array_equal(np.rint(image * 255).astype(np.uint8), want)


class TestFashionMnist:
    def test_reads_the_same_format_from_its_own_directory(self, mnist_dir, monkeypatch):
        directory, data = mnist_dir
        root = os.path.dirname(directory)
        os.rename(directory, os.path.join(root, "fashion_mnist_data"))
        monkeypatch.setenv("DATAFLOW_DATASETS", root)
        df = FashionMnist("train", shuffle=False)
        df.reset_state()
        assert [label for _, label in df] == data["train"][1].tolist()

    def test_keeps_the_dataflow_contract(self, mnist_dir):
        check_dataflow(lambda: FashionMnist("test", dir=mnist_dir[0], seed=0))

    def test_each_worker_reads_only_its_shard(self, mnist_dir):
        assert_reads_its_shard(lambda shuffle: FashionMnist("test", shuffle, mnist_dir[0]))

    def test_missing_files_error_points_to_the_fashion_mnist_url(self, tmp_path):
        with pytest.raises(FileNotFoundError) as info:
            FashionMnist("test", dir=tmp_path)
        assert str(info.value) == (
            f"FashionMnist expected these files in '{tmp_path}', which are missing: "
            "'t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'. Download them from "
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ "
            "(gunzipping them is optional), or pass download=True to do it for you."
        )

    def test_label_names_are_the_ten_clothing_classes_as_in_tensorpack(self, mnist_dir):
        df = FashionMnist("test", dir=mnist_dir[0])
        names = df.get_label_names()
        assert names == [
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ]  # fmt: skip
        names.append("x")  # a copy: the reader's names do not change
        assert len(df.get_label_names()) == 10

    def test_download_uses_its_own_source_url(
        self, mnist_dir, tmp_path_factory, serve, monkeypatch
    ):
        served, data = mnist_dir
        target = str(tmp_path_factory.mktemp("target"))
        with serve(served) as url:
            monkeypatch.setattr(FashionMnist, "SOURCE_URL", url)
            df = FashionMnist("train", shuffle=False, dir=target, download=True)
        df.reset_state()
        assert len(df) == 12
        assert [label for _, label in df] == data["train"][1].tolist()

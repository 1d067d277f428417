"""Tests of dataflow.dataset.cifar on small batch files written like the originals:
pickle protocol 2, bytes keys, b'data' a uint8 N x 3072 array in channel-planar order."""

from __future__ import annotations

import os
import pickle
import shutil
import tarfile

import numpy as np
import pytest
from _datafiles import assert_reads_its_shard
from _loopback import serve_directory

from dataflow import check_dataflow
from dataflow.dataset import Cifar10, Cifar100, CifarBase

CIFAR10_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
FINE_NAMES = [f"fine{i}" for i in range(100)]
COARSE_NAMES = [f"coarse{i}" for i in range(20)]


def planar_rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) images as the N x 3072 rows of a CIFAR file: R plane, G plane, B plane."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def write_pickle(path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_batch(path, images, **labels) -> None:
    content = {
        b"batch_label": b"a test batch",
        b"data": planar_rows(images),
        b"filenames": [b"img_%d.png" % i for i in range(len(images))],
    }
    content.update({key.encode(): [int(v) for v in values] for key, values in labels.items()})
    write_pickle(path, content)


def random_images(rng, n):
    return rng.randint(0, 256, (n, 32, 32, 3)).astype(np.uint8)


def make_cifar10(root, train_per_batch=2, test=3):
    """Write cifar-10-batches-py/ under *root*; return {split: (images, labels)}."""
    rng = np.random.RandomState(0)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)
    write_pickle(
        os.path.join(folder, "batches.meta"),
        {
            b"label_names": [n.encode() for n in CIFAR10_NAMES],
            b"num_cases_per_batch": train_per_batch,
            b"num_vis": 3072,
        },
    )
    data = {}
    for split, files, n in [
        ("train", [f"data_batch_{i}" for i in range(1, 6)], train_per_batch),
        ("test", ["test_batch"], test),
    ]:
        all_images, all_labels = [], []
        for name in files:
            images, labels = random_images(rng, n), rng.randint(0, 10, n)
            write_batch(os.path.join(folder, name), images, labels=labels)
            all_images.append(images)
            all_labels.append(labels)
        data[split] = (np.concatenate(all_images), np.concatenate(all_labels))
    return data


def make_cifar100(root, train=6, test=4):
    """Write cifar-100-python/ under *root*; return {split: (images, fine, coarse)}."""
    rng = np.random.RandomState(1)
    folder = os.path.join(root, "cifar-100-python")
    os.makedirs(folder)
    write_pickle(
        os.path.join(folder, "meta"),
        {
            b"fine_label_names": [n.encode() for n in FINE_NAMES],
            b"coarse_label_names": [n.encode() for n in COARSE_NAMES],
        },
    )
    data = {}
    for split, n in [("train", train), ("test", test)]:
        images, fine, coarse = random_images(rng, n), rng.randint(0, 100, n), rng.randint(0, 20, n)
        write_batch(os.path.join(folder, split), images, fine_labels=fine, coarse_labels=coarse)
        data[split] = (images, fine, coarse)
    return data


@pytest.fixture
def cifar10_dir(tmp_path):
    return str(tmp_path), make_cifar10(str(tmp_path))


@pytest.fixture
def cifar100_dir(tmp_path):
    return str(tmp_path), make_cifar100(str(tmp_path))


@pytest.fixture
def serve(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    return serve_directory


def read_all(df):
    df.reset_state()
    out = list(df)
    return np.stack([image for image, _ in out]), [label for _, label in out]


class TestCifarBase:
    def test_cifar_classnum_chooses_the_dataset(self, cifar10_dir, cifar100_dir):
        # both fixtures share tmp_path: the two folders sit side by side
        directory, data10 = cifar10_dir
        _, data100 = cifar100_dir
        out = check_dataflow(lambda: CifarBase("test", dir=directory))
        assert [label for _, label in out] == data10["test"][1].tolist()
        out = check_dataflow(lambda: CifarBase("test", dir=directory, cifar_classnum=100))
        assert [label for _, label in out] == data100["test"][1].tolist()

    def test_image_rows_are_read_as_red_green_blue_planes(self, tmp_path):
        make_cifar10(str(tmp_path))
        row = np.repeat(np.array([10, 20, 30], np.uint8), 1024)  # R plane, G plane, B plane
        row[5] = 99  # red, row 0, column 5
        write_batch(
            os.path.join(str(tmp_path), "cifar-10-batches-py", "test_batch"),
            row.reshape(1, 3, 32, 32).transpose(0, 2, 3, 1),
            labels=[4],
        )
        [[image, label]] = check_dataflow(lambda: Cifar10("test", dir=tmp_path))
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and label == 4
        assert image[0, 5].tolist() == [99, 20, 30]
        assert image[31, 31].tolist() == [10, 20, 30]

    @pytest.mark.parametrize("names", [("train", "test"), ("train",), ("test",), ["test", "train"]])
    @pytest.mark.parametrize("split", ["train", "test"])
    def test_per_pixel_mean_is_the_mean_image_of_the_named_splits(self, cifar10_dir, names, split):
        directory, data = cifar10_dir
        expected = np.concatenate([data[n][0] for n in names]).astype(np.float64).mean(axis=0)
        mean = Cifar10(split, dir=directory).get_per_pixel_mean(names)
        assert mean.dtype == np.float32 and mean.shape == (32, 32, 3)
        np.testing.assert_allclose(mean, expected, rtol=1e-6)

    def test_per_pixel_mean_defaults_to_every_image(self, cifar10_dir):
        directory, data = cifar10_dir
        df = Cifar10("test", dir=directory)
        both = np.concatenate([data["train"][0], data["test"][0]]).astype(np.float64)
        np.testing.assert_allclose(df.get_per_pixel_mean(), both.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(df.get_per_channel_mean(), both.mean(axis=(0, 1, 2)), rtol=1e-6)

    def test_per_channel_mean_of_constant_planes(self, tmp_path):
        make_cifar10(str(tmp_path))
        images = np.zeros((2, 32, 32, 3), np.uint8)
        images[..., 0], images[..., 1], images[..., 2] = 10, 20, 30
        images[1, ..., 2] = 40
        write_batch(
            os.path.join(str(tmp_path), "cifar-10-batches-py", "test_batch"), images, labels=[0, 1]
        )
        df = Cifar10("test", dir=tmp_path)
        assert df.get_per_channel_mean(("test",)).tolist() == [10.0, 20.0, 35.0]

    @pytest.mark.parametrize("names", ["train", (), ("train", "val")])
    def test_per_pixel_mean_rejects_other_names(self, cifar10_dir, names):
        df = Cifar10("test", dir=cifar10_dir[0])
        with pytest.raises(ValueError) as info:
            df.get_per_pixel_mean(names)
        assert str(info.value) == (
            f"names must be a non-empty sequence of 'train' and/or 'test', got {names!r}"
        )

    def test_per_pixel_mean_reports_missing_files_of_the_other_split(self, cifar10_dir):
        directory, _ = cifar10_dir
        df = Cifar10("test", dir=directory)
        os.remove(os.path.join(directory, "cifar-10-batches-py", "data_batch_3"))
        with pytest.raises(FileNotFoundError, match="missing: 'cifar-10-batches-py/data_batch_3'"):
            df.get_per_pixel_mean(("train",))

    @pytest.mark.parametrize(
        "kwargs,error,message",
        [
            ({"cifar_classnum": 20}, ValueError, "cifar_classnum must be 10 or 100, got 20"),
            (
                {"fine_label": False},
                ValueError,
                "fine_label must be True when cifar_classnum is 10 (CIFAR-10 has no coarse "
                "labels), got False",
            ),
            (
                {"train_or_test": "val"},
                ValueError,
                "train_or_test must be 'train' or 'test', got 'val'",
            ),
            ({"shuffle": "yes"}, TypeError, "shuffle must be None or a bool, got 'yes'"),
            ({"seed": 1.5}, TypeError, "seed must be None or a non-negative int, got 1.5"),
            ({"dir": 7}, TypeError, "dir must be None or a path, got 7"),
        ],
    )
    def test_argument_errors(self, cifar10_dir, kwargs, error, message):
        args = {"train_or_test": "test", "dir": cifar10_dir[0], **kwargs}
        with pytest.raises(error) as info:
            CifarBase(**args)
        assert str(info.value) == message

    def corrupt(self, directory, content):
        path = os.path.join(directory, "cifar-10-batches-py", "test_batch")
        write_pickle(path, content)
        with pytest.raises(ValueError) as info:
            Cifar10("test", dir=directory)
        return path, str(info.value)

    def test_batch_with_the_wrong_data_size_is_reported(self, cifar10_dir):
        path, message = self.corrupt(
            cifar10_dir[0], {b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}
        )
        assert message == (
            f"{path}: 'data' is a uint8 array of shape (2, 3000), expected uint8 of shape "
            "(N, 3072): N images of 3 x 32 x 32 bytes, one color plane after another"
        )

    def test_batch_with_data_of_another_type_is_reported(self, cifar10_dir):
        path, message = self.corrupt(
            cifar10_dir[0], {b"data": np.zeros((2, 3072), np.int64), b"labels": [0, 1]}
        )
        assert message.startswith(f"{path}: 'data' is a int64 array of shape (2, 3072)")

    def test_batch_with_one_label_too_few_is_reported(self, cifar10_dir):
        path, message = self.corrupt(
            cifar10_dir[0], {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}
        )
        assert (
            message
            == f"{path}: 'labels' holds 1 values of type int64, expected 2 ints, one per image"
        )

    def test_batch_without_labels_is_reported(self, cifar10_dir):
        path, message = self.corrupt(cifar10_dir[0], {b"data": np.zeros((2, 3072), np.uint8)})
        assert message == f"{path} has no 'labels' entry; its entries are ['data']"

    def test_labels_outside_the_named_classes_are_reported(self, cifar10_dir):
        path, message = self.corrupt(
            cifar10_dir[0], {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 10]}
        )
        assert message == f"{path}: 'labels' range from 3 to 10, but the meta file names 10 classes"

    def test_file_that_is_not_a_dict_is_reported(self, cifar10_dir):
        path, message = self.corrupt(cifar10_dir[0], [1, 2, 3])
        assert message == f"{path} holds a list, not the dict of a CIFAR file"

    def test_truncated_pickle_is_reported(self, cifar10_dir):
        directory, _ = cifar10_dir
        path = os.path.join(directory, "cifar-10-batches-py", "test_batch")
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        with pytest.raises(ValueError, match=f"^{path} could not be unpickled: "):
            Cifar10("test", dir=directory)

    def test_accepts_files_pickled_with_str_keys(self, cifar10_dir):
        directory, _ = cifar10_dir
        images = random_images(np.random.RandomState(3), 2)
        path = os.path.join(directory, "cifar-10-batches-py", "test_batch")
        write_pickle(path, {"data": planar_rows(images), "labels": [1, 2]})
        out_images, labels = read_all(Cifar10("test", dir=directory))
        np.testing.assert_array_equal(out_images, images)
        assert labels == [1, 2]


class TestCifar10:
    def test_yields_uint8_images_and_int_labels_in_file_order(self, cifar10_dir):
        directory, data = cifar10_dir
        for split in ("train", "test"):
            df = Cifar10(split, shuffle=False, dir=directory)
            images, labels = read_all(df)
            assert len(df) == len(labels) == {"train": 10, "test": 3}[split]
            assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3)
            np.testing.assert_array_equal(images, data[split][0])
            assert labels == data[split][1].tolist()
            assert all(type(label) is int for label in labels)

    @pytest.mark.parametrize("split", ["train", "test"])
    @pytest.mark.parametrize("shuffle", [None, True, False])
    def test_keeps_the_dataflow_contract(self, cifar10_dir, split, shuffle):
        check_dataflow(lambda: Cifar10(split, shuffle=shuffle, dir=cifar10_dir[0]))

    def test_each_worker_reads_only_its_shard(self, cifar10_dir):
        assert_reads_its_shard(lambda shuffle: Cifar10("train", shuffle, cifar10_dir[0], seed=2))

    def test_shuffles_the_training_set_but_not_the_test_set_by_default(self, cifar10_dir):
        directory, data = cifar10_dir
        train, test = Cifar10("train", dir=directory), Cifar10("test", dir=directory)
        assert train.shuffle is True and test.shuffle is False
        train.reset_state()
        passes = [[image.tobytes() for image, _ in train] for _ in range(4)]
        assert len({tuple(p) for p in passes}) > 1
        assert sorted(passes[0]) == sorted(image.tobytes() for image in data["train"][0])

    def test_same_seed_gives_the_same_order(self, cifar10_dir):
        def labels(seed):
            return read_all(Cifar10("train", dir=cifar10_dir[0], seed=seed))[1]

        assert labels(1) == labels(1)
        assert len({tuple(labels(s)) for s in range(5)}) > 1

    def test_yields_a_fresh_array_each_time(self, cifar10_dir):
        df = Cifar10("test", dir=cifar10_dir[0])
        df.reset_state()
        image = next(iter(df))[0]
        before = image.copy()
        image[:] = 0
        np.testing.assert_array_equal(next(iter(df))[0], before)

    def test_label_names_come_from_the_meta_file(self, cifar10_dir):
        assert Cifar10("test", dir=cifar10_dir[0]).get_label_names() == CIFAR10_NAMES

    def test_records_the_batch_files_it_read(self, cifar10_dir):
        directory, _ = cifar10_dir
        df = Cifar10("train", dir=directory)
        folder = os.path.join(directory, "cifar-10-batches-py")
        assert df.fs == [os.path.join(folder, f"data_batch_{i}") for i in range(1, 6)]

    def test_pickles_before_reset_state(self, cifar10_dir):
        df = pickle.loads(pickle.dumps(Cifar10("test", dir=cifar10_dir[0])))
        assert len(read_all(df)[1]) == 3

    def test_missing_files_error_says_what_where_and_how(self, tmp_path):
        with pytest.raises(FileNotFoundError) as info:
            Cifar10("test", dir=tmp_path)
        assert str(info.value) == (
            f"Cifar10 expected these files in '{tmp_path}', which are missing: "
            "'cifar-10-batches-py/batches.meta', 'cifar-10-batches-py/test_batch'. "
            "Download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and unpack it "
            "in that directory, or pass download=True to do it for you."
        )

    def test_default_dir_is_under_DATAFLOW_DATASETS(self, tmp_path, monkeypatch):
        make_cifar10(str(tmp_path / "cifar10_data"))
        monkeypatch.setenv("DATAFLOW_DATASETS", str(tmp_path))
        df = Cifar10("test")
        assert df.dir == str(tmp_path / "cifar10_data") and len(df) == 3

    def test_download_fetches_and_unpacks_the_archive(self, tmp_path_factory, serve, monkeypatch):
        served = str(tmp_path_factory.mktemp("served"))
        data = make_cifar10(served)
        with tarfile.open(os.path.join(served, "cifar-10-python.tar.gz"), "w:gz") as tar:
            tar.add(os.path.join(served, "cifar-10-batches-py"), "cifar-10-batches-py")
        target = str(tmp_path_factory.mktemp("target"))
        with serve(served) as url:
            monkeypatch.setattr(CifarBase, "SOURCE_URL", url)
            df = Cifar10("train", shuffle=False, dir=target, download=True)
            mean = df.get_per_pixel_mean()
        assert sorted(os.listdir(target)) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
        images, labels = read_all(df)
        np.testing.assert_array_equal(images, data["train"][0])
        assert labels == data["train"][1].tolist()
        both = np.concatenate([data["train"][0], data["test"][0]]).astype(np.float64)
        np.testing.assert_allclose(mean, both.mean(axis=0), rtol=1e-6)

    def test_download_reuses_an_archive_fetched_earlier(self, tmp_path, monkeypatch):
        source = str(tmp_path / "source")
        data = make_cifar10(source)
        with tarfile.open(str(tmp_path / "cifar-10-python.tar.gz"), "w:gz") as tar:
            tar.add(os.path.join(source, "cifar-10-batches-py"), "cifar-10-batches-py")
        shutil.rmtree(source)
        # port 9 (discard) on loopback: any download attempt would fail
        monkeypatch.setattr(CifarBase, "SOURCE_URL", "http://127.0.0.1:9/")
        df = Cifar10("test", dir=tmp_path, download=True)
        assert read_all(df)[1] == data["test"][1].tolist()


class TestCifar100:
    def test_yields_fine_labels_by_default(self, cifar100_dir):
        directory, data = cifar100_dir
        df = Cifar100("train", shuffle=False, dir=directory)
        images, labels = read_all(df)
        assert len(df) == 6
        np.testing.assert_array_equal(images, data["train"][0])
        assert labels == data["train"][1].tolist()
        assert df.get_label_names() == FINE_NAMES

    def test_fine_label_false_yields_coarse_labels_and_names(self, cifar100_dir):
        directory, data = cifar100_dir
        df = Cifar100("test", None, directory, False)  # tensorpack-style positional arguments
        assert read_all(df)[1] == data["test"][2].tolist()
        assert df.get_label_names() == COARSE_NAMES

    @pytest.mark.parametrize("fine_label", [True, False])
    def test_keeps_the_dataflow_contract(self, cifar100_dir, fine_label):
        check_dataflow(lambda: Cifar100("train", dir=cifar100_dir[0], fine_label=fine_label))

    def test_each_worker_reads_only_its_shard(self, cifar100_dir):
        assert_reads_its_shard(lambda shuffle: Cifar100("train", shuffle, cifar100_dir[0]))

    def test_per_pixel_mean(self, cifar100_dir):
        directory, data = cifar100_dir
        expected = np.concatenate([data["train"][0], data["test"][0]]).astype(np.float64)
        mean = Cifar100("train", dir=directory).get_per_pixel_mean()
        np.testing.assert_allclose(mean, expected.mean(axis=0), rtol=1e-6)

    def test_missing_files_error_says_what_where_and_how(self, tmp_path):
        with pytest.raises(FileNotFoundError) as info:
            Cifar100("train", dir=tmp_path)
        assert str(info.value) == (
            f"Cifar100 expected these files in '{tmp_path}', which are missing: "
            "'cifar-100-python/meta', 'cifar-100-python/train'. "
            "Download https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz and unpack it "
            "in that directory, or pass download=True to do it for you."
        )

    def test_download_fetches_and_unpacks_the_archive(self, tmp_path_factory, serve, monkeypatch):
        served = str(tmp_path_factory.mktemp("served"))
        data = make_cifar100(served)
        with tarfile.open(os.path.join(served, "cifar-100-python.tar.gz"), "w:gz") as tar:
            tar.add(os.path.join(served, "cifar-100-python"), "cifar-100-python")
        target = str(tmp_path_factory.mktemp("target"))
        with serve(served) as url:
            monkeypatch.setattr(Cifar100, "SOURCE_URL", url)
            df = Cifar100("test", dir=target, download=True)
        assert read_all(df)[1] == data["test"][1].tolist()

"""The dataset readers in the pipeline graph: sources, with a pinned ``repr``."""

from __future__ import annotations

import inspect
import os

import pytest
from _datafiles import write_image, write_lines

import dataflow.dataset
from dataflow import DataFlow, describe
from dataflow._repr import short_repr


def mnist(root):
    from test_dataset_mnist import make_data, write_split

    for split, (images, labels) in {"train": make_data(3, 0), "test": make_data(2, 1)}.items():
        write_split(root, split, images, labels)
    return root


def cifar10(root):
    from test_dataset_cifar import make_cifar10

    make_cifar10(root)
    return root


def cifar100(root):
    from test_dataset_cifar import make_cifar100

    make_cifar100(root)
    return root


def imagenet(root):
    from test_dataset_ilsvrc import make_images, make_meta

    make_images(root, make_meta(os.path.join(root, "meta")))
    return root


def bsds(root):
    pytest.importorskip("scipy")
    from test_dataset_bsds500 import make_bsds

    make_bsds(root)
    return root


def caltech(root):
    scipy_io = pytest.importorskip("scipy.io")
    from test_dataset_caltech101 import FILE, make_variables

    scipy_io.savemat(os.path.join(root, FILE), make_variables())
    return root


def svhn(root):
    pytest.importorskip("scipy")
    from test_dataset_svhn import make_split, write_split

    write_split(root, "test", *make_split(2, 0))
    return root


def places(root):
    from test_dataset_places365 import TRAIN, VAL, bgr

    write_lines(os.path.join(root, "train.txt"), [path for path, _ in TRAIN])
    write_lines(os.path.join(root, "val.txt"), [path for path, _ in VAL])
    for k, (path, _) in enumerate(TRAIN + VAL):
        write_image(os.path.join(root, path), bgr(k), (16, 16))
    return root


def tiny(root):
    from test_dataset_tinyimagenet import make_tiny

    make_tiny(root)
    return root


D = dataflow.dataset
# (reader, builder of its files, its arguments given the files' root, its repr with {root})
PINNED = [
    (
        D.Mnist,
        mnist,
        lambda r: D.Mnist("train", dir=r),
        "Mnist(train_or_test='train', shuffle=True, dir={root})",
    ),
    (
        D.FashionMnist,
        mnist,
        lambda r: D.FashionMnist("test", False, r, seed=3),
        "FashionMnist(train_or_test='test', shuffle=False, dir={root}, seed=3)",
    ),
    (
        D.CifarBase,
        cifar10,
        lambda r: D.CifarBase("test", dir=r),
        "CifarBase(train_or_test='test', shuffle=False, dir={root}, cifar_classnum=10)",
    ),
    (
        D.Cifar10,
        cifar10,
        lambda r: D.Cifar10("train", dir=r),
        "Cifar10(train_or_test='train', shuffle=True, dir={root})",
    ),
    (
        D.Cifar100,
        cifar100,
        lambda r: D.Cifar100("test", dir=r, fine_label=False),
        "Cifar100(train_or_test='test', shuffle=False, dir={root}, fine_label=False)",
    ),
    (
        D.ILSVRC12Files,
        imagenet,
        lambda r: D.ILSVRC12Files(r, "val", os.path.join(r, "meta")),
        "ILSVRC12Files(dir={root}, name='val', meta_dir={meta}, shuffle=False)",
    ),
    (
        D.ILSVRC12,
        imagenet,
        lambda r: D.ILSVRC12(r, "train", os.path.join(r, "meta"), seed=1),
        "ILSVRC12(dir={root}, name='train', meta_dir={meta}, shuffle=True, seed=1)",
    ),
    (
        D.BSDS500,
        bsds,
        lambda r: D.BSDS500("train", r),
        "BSDS500(name='train', data_dir={root}, shuffle=True)",
    ),
    (
        D.Caltech101Silhouettes,
        caltech,
        lambda r: D.Caltech101Silhouettes("val", dir=r),
        "Caltech101Silhouettes(name='val', shuffle=False, dir={root})",
    ),
    (
        D.SVHNDigit,
        svhn,
        lambda r: D.SVHNDigit("test", r),
        "SVHNDigit(name='test', data_dir={root}, shuffle=False)",
    ),
    (
        D.Places365Standard,
        places,
        lambda r: D.Places365Standard(r, "val"),
        "Places365Standard(dir={root}, name='val', shuffle=False)",
    ),
    (
        D.TinyImageNet,
        tiny,
        lambda r: D.TinyImageNet(r, "train"),
        "TinyImageNet(dir={root}, name='train', shuffle=True)",
    ),
]


def public_readers():
    return {
        obj
        for name in D.__all__
        if inspect.isclass(obj := getattr(D, name)) and issubclass(obj, DataFlow)
    }


class TestDescribe:
    def test_every_public_reader_has_a_pinned_repr(self):
        missing = public_readers() - {cls for cls, *_ in PINNED}
        assert not missing, f"pin the repr of {sorted(c.__name__ for c in missing)} in PINNED"

    @pytest.mark.parametrize(
        "cls, make_files, make, expected", PINNED, ids=[p[0].__name__ for p in PINNED]
    )
    def test_reader_is_a_source_with_a_short_repr(self, tmp_path, cls, make_files, make, expected):
        root = make_files(str(tmp_path))
        df = make(root)
        assert type(df) is cls
        text = expected.format(root=short_repr(root), meta=short_repr(os.path.join(root, "meta")))
        assert df.parents == ()
        assert repr(df) == text
        assert str(describe(df)) == text

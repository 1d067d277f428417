"""CIFAR-10 and CIFAR-100, read from the pickled batches of their Python version.

Security: the CIFAR files are Python pickles, and unpickling a file can run
any code its author chose. Read only the files of the official archives (or
files you made yourself), never CIFAR files from an untrusted source.
"""

from __future__ import annotations

import os
import pickle
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from .._checks import check_seed
from ._common import (
    InMemorySplit,
    check_train_or_test,
    dataset_dir,
    download_file,
    extract_tar,
    find_files,
)
from ._readers import check_shuffle

__all__ = ["Cifar10", "Cifar100", "CifarBase"]

_IMAGE_BYTES = 3 * 32 * 32


class _Layout(NamedTuple):
    """Where one CIFAR archive keeps its files, relative to the dataset directory."""

    archive: str  # the file name of the official .tar.gz
    train: Tuple[str, ...]
    test: Tuple[str, ...]
    meta: str


_LAYOUTS = {
    10: _Layout(
        "cifar-10-python.tar.gz",
        train=tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
        test=("cifar-10-batches-py/test_batch",),
        meta="cifar-10-batches-py/batches.meta",
    ),
    100: _Layout(
        "cifar-100-python.tar.gz",
        train=("cifar-100-python/train",),
        test=("cifar-100-python/test",),
        meta="cifar-100-python/meta",
    ),
}


def _unpickle(path: str) -> Dict[Any, Any]:
    """The dict pickled in *path*, with ``bytes`` keys decoded to ``str``."""
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except Exception as err:  # a damaged pickle raises many different types
        raise ValueError(f"{path} could not be unpickled: {type(err).__name__}: {err}") from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not the dict of a CIFAR file")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _entry(content: Dict[Any, Any], path: str, key: str) -> Any:
    try:
        return content[key]
    except KeyError:
        raise ValueError(
            f"{path} has no {key!r} entry; its entries are {sorted(map(str, content))}"
        ) from None


def _read_batch(path: str, label_key: str) -> Tuple[np.ndarray, np.ndarray]:
    """The images (N, 32, 32, 3; a view, not contiguous) and labels (N,) of one batch file."""
    content = _unpickle(path)
    data = np.asarray(_entry(content, path, "data"))
    labels = np.asarray(_entry(content, path, label_key))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _IMAGE_BYTES:
        raise ValueError(
            f"{path}: 'data' is a {data.dtype} array of shape {data.shape}, expected uint8 "
            f"of shape (N, {_IMAGE_BYTES}): N images of 3 x 32 x 32 bytes, "
            "one color plane after another"
        )
    if labels.shape != (len(data),) or (labels.size and labels.dtype.kind not in "iu"):
        raise ValueError(
            f"{path}: {label_key!r} holds {labels.size} values of type {labels.dtype}, "
            f"expected {len(data)} ints, one per image"
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


class CifarBase(InMemorySplit):
    """Yield ``[image, label]`` from CIFAR-10 or CIFAR-100, training set or test set.

    *image* is a new uint8 array of shape (32, 32, 3) (height, width, RGB),
    values 0..255; *label* is an int, the class index. ``len()`` is exact:
    the number of images in the split's files (50000 for train, 10000 for
    test). Without *shuffle*, the order is the order of the files; with it,
    every pass is a new permutation drawn from ``self.rng``. Inside a runner
    with ``exactly_once=True``, each worker reads only its shard. All images
    of the split are read in ``__init__``: 154 MB held for a training set,
    31 MB for a test set (and about twice that while reading the files).

    The files are those of the "python version" archives,
    ``cifar-10-python.tar.gz`` and ``cifar-100-python.tar.gz``, unpacked in
    *dir*: ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
    and ``cifar-100-python/{train,test,meta}``.

    Args:
        train_or_test: ``"train"`` or ``"test"``.
        shuffle: shuffle every pass; ``None`` (default) shuffles the training
            set and not the test set.
        dir: the directory that holds the unpacked folder. ``None`` means
            ``$DATAFLOW_DATASETS/cifar10_data`` (``cifar100_data``) when that
            variable is set, else ``~/.dataflow/datasets/cifar10_data``.
        cifar_classnum: ``10`` or ``100``: which dataset.
        fine_label: for CIFAR-100, yield the fine label (0..99, default) or,
            when false, the coarse label (0..19); it also selects which names
            :meth:`get_label_names` returns. Must be true for CIFAR-10.
        download: when files are missing, download the archive from
            ``SOURCE_URL`` into *dir* and unpack it (default ``False``: raise
            ``FileNotFoundError``, whose message says which files are expected,
            where, and where to get them). The archive is kept beside the folder.
        seed: ``None`` (fresh randomness at every ``reset_state()``) or a
            non-negative int for the same order every run.

    Raises:
        FileNotFoundError: a file is missing and *download* is false.
        ValueError: a file is damaged: not a pickle of the expected dict, or
            an entry with the wrong shape or type.

    Example:
        Use :class:`Cifar10` or :class:`Cifar100`; ``cifar_classnum`` chooses
        between them here:

        >>> CifarBase("test", dir="/no/such/dir", cifar_classnum=100)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: CifarBase ... 'cifar-100-python/meta', 'cifar-100-python/test'. ...

    Note:
        CIFAR files are Python pickles, and unpickling runs whatever code the
        file asks for. Read only the official files (or your own).
    """

    #: Where ``download=True`` fetches the archive: ``SOURCE_URL + archive name``.
    SOURCE_URL = "https://www.cs.toronto.edu/~kriz/"

    def __init__(
        self,
        train_or_test: str,
        shuffle: Optional[bool] = None,
        dir: Optional[Union[str, os.PathLike]] = None,
        cifar_classnum: int = 10,
        *,
        fine_label: bool = True,
        download: bool = False,
        seed: Optional[int] = None,
    ) -> None:
        self.train_or_test = check_train_or_test(train_or_test)
        self.shuffle = check_shuffle(shuffle, train_or_test)
        self.seed = check_seed(seed)
        if cifar_classnum not in _LAYOUTS:
            raise ValueError(f"cifar_classnum must be 10 or 100, got {cifar_classnum!r}")
        if cifar_classnum == 10 and not fine_label:
            raise ValueError(
                "fine_label must be True when cifar_classnum is 10 "
                f"(CIFAR-10 has no coarse labels), got {fine_label!r}"
            )
        self.cifar_classnum = cifar_classnum
        self.fine_label = bool(fine_label)
        self.dir = dataset_dir(f"cifar{cifar_classnum}_data", dir)
        self._layout = _LAYOUTS[cifar_classnum]
        self._download = download
        if cifar_classnum == 10:
            self._label_key, names_key = "labels", "label_names"
        elif fine_label:
            self._label_key, names_key = "fine_labels", "fine_label_names"
        else:
            self._label_key, names_key = "coarse_labels", "coarse_label_names"

        meta_path, *self.fs = self._find([self._layout.meta, *getattr(self._layout, train_or_test)])
        names = _entry(_unpickle(meta_path), meta_path, names_key)
        self._label_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        images, labels = self._read(self.fs)
        self._set_arrays(images, labels)

    def _find(self, names: Sequence[str]) -> List[str]:
        url = self.SOURCE_URL + self._layout.archive
        return find_files(
            type(self).__name__,
            self.dir,
            names,
            how_to_get=(
                f"Download {url} and unpack it in that directory, "
                "or pass download=True to do it for you."
            ),
            fetch=self._fetch if self._download else None,
        )

    def _fetch(self, missing: List[str]) -> None:
        archive = os.path.join(self.dir, self._layout.archive)
        if not os.path.isfile(archive):  # a complete download from an earlier attempt
            download_file(self.SOURCE_URL + self._layout.archive, self.dir)
        extract_tar(archive, self.dir)

    def _read(self, paths: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
        """The images (contiguous, N x 32 x 32 x 3) and labels of the batch files *paths*."""
        batches = [_read_batch(path, self._label_key) for path in paths]
        images = np.concatenate([b[0] for b in batches])
        labels = np.concatenate([b[1] for b in batches])
        num_classes = len(self._label_names)
        if labels.size and not 0 <= labels.min() <= labels.max() < num_classes:
            raise ValueError(
                f"{', '.join(paths)}: {self._label_key!r} range from {labels.min()} to "
                f"{labels.max()}, but the meta file names {num_classes} classes"
            )
        return images, labels

    def get_per_pixel_mean(self, names: Sequence[str] = ("train", "test")) -> np.ndarray:
        """The mean image of the splits *names*, float32 of shape (32, 32, 3).

        Args:
            names: a non-empty sequence of ``"train"`` and/or ``"test"``;
                the default is every image of the dataset. A split other than
                this reader's is read from its files for the computation.
        """
        if isinstance(names, str) or not names or not set(names) <= {"train", "test"}:
            raise ValueError(
                f"names must be a non-empty sequence of 'train' and/or 'test', got {names!r}"
            )
        total = np.zeros((32, 32, 3), np.float64)
        count = 0
        for name in ("train", "test"):
            if name not in names:
                continue
            if name == self.train_or_test:
                images = self._images
            else:
                images = self._read(self._find(getattr(self._layout, name)))[0]
            total += images.sum(axis=0, dtype=np.float64)
            count += len(images)
        return (total / count).astype(np.float32)

    def get_per_channel_mean(self, names: Sequence[str] = ("train", "test")) -> np.ndarray:
        """The mean of each color channel over the splits *names*, float32 of shape (3,).

        Args:
            names: as for :meth:`get_per_pixel_mean`.
        """
        return self.get_per_pixel_mean(names).mean(axis=(0, 1))

    def get_label_names(self) -> List[str]:
        """The name of each class, indexed by label (from the meta file)."""
        return list(self._label_names)


class Cifar10(CifarBase):
    """Yield ``[image, label]`` from CIFAR-10: 32 x 32 RGB images of 10 classes.

    See :class:`CifarBase` for the datapoints, files, memory and arguments.

    Example:
        Typical use, once the archive is unpacked in ``~/.dataflow/datasets/cifar10_data``::

            df = Cifar10("train", seed=0)   # shuffled: the training set
            mean = df.get_per_pixel_mean()
            df.reset_state()
            for image, label in df:
                ...

        Without the files, the error says what to do:

        >>> Cifar10("test", dir="/no/such/dir")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: Cifar10 expected these files in '/no/such/dir', which are missing: ...
    """

    def __init__(
        self,
        train_or_test: str,
        shuffle: Optional[bool] = None,
        dir: Optional[Union[str, os.PathLike]] = None,
        *,
        download: bool = False,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__(train_or_test, shuffle, dir, 10, download=download, seed=seed)


class Cifar100(CifarBase):
    """Yield ``[image, label]`` from CIFAR-100: 32 x 32 RGB images of 100 classes in 20 groups.

    The label is the fine class (0..99), or the coarse group (0..19) with
    ``fine_label=False``. See :class:`CifarBase` for the datapoints, files,
    memory and arguments.

    Example:
        Train on the 20 coarse groups, with their names::

            df = Cifar100("train", fine_label=False, seed=0)
            names = df.get_label_names()   # 20 names, e.g. 'aquatic_mammals'
            df.reset_state()
            for image, group in df:
                ...
    """

    def __init__(
        self,
        train_or_test: str,
        shuffle: Optional[bool] = None,
        dir: Optional[Union[str, os.PathLike]] = None,
        fine_label: bool = True,
        *,
        download: bool = False,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__(
            train_or_test, shuffle, dir, 100, fine_label=fine_label, download=download, seed=seed
        )

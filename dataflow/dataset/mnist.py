"""MNIST and Fashion-MNIST, read from their IDX files."""

from __future__ import annotations

import gzip
import os
from typing import Any, List, Optional, Union

import numpy as np

from .._checks import check_seed
from ._common import (
    InMemorySplit,
    check_train_or_test,
    dataset_dir,
    download_file,
    find_files,
)

__all__ = ["FashionMnist", "Mnist"]

# IDX magic numbers: 0x0000 0x08 (unsigned bytes) then the number of dimensions.
_IMAGES_MAGIC = 0x0803
_LABELS_MAGIC = 0x0801

# byte value -> float32 in [0, 1], exactly ``np.float32(v) / 255``; ``take`` is
# the fastest way to convert one 28 x 28 image into a new float32 array.
_FLOAT_OF_BYTE = np.arange(256, dtype=np.float32) / 255


def _read_idx(path: str, magic: int) -> np.ndarray:
    """The uint8 array stored in the IDX file *path* (gzipped if it ends in .gz)."""
    opener: Any = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:  # a damaged gzip stream
        raise ValueError(f"{path} could not be read: {err}") from err
    ndim = magic & 0xFF
    found = int.from_bytes(data[:4], "big")
    if len(data) >= 4 and found != magic:
        raise ValueError(
            f"{path} has magic number {found:#010x}, expected {magic:#010x} "
            f"(an IDX file of unsigned bytes with {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    header_bytes = 4 * (1 + ndim)
    if len(data) < header_bytes:
        raise ValueError(
            f"{path} is too short for an IDX file: {len(data)} bytes, "
            f"the header alone is {header_bytes}"
        )
    shape = tuple(np.frombuffer(data, dtype=">u4", count=ndim, offset=4).tolist())
    size = int(np.prod(shape))
    if len(data) - header_bytes != size:
        raise ValueError(
            f"{path} holds {len(data) - header_bytes} bytes of data, but its header "
            f"announces shape {shape}, i.e. {size} bytes; the file is truncated or damaged"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_bytes).reshape(shape)


class Mnist(InMemorySplit):
    """Yield ``[image, label]`` from the MNIST training set (60000) or test set (10000).

    *image* is a new float32 array of shape (28, 28) with values in [0, 1]
    (the stored byte divided by 255); *label* is an int in 0..9. ``len()`` is
    exact: the number of images in the files. Without *shuffle*, the order is
    the order of the files; with it, every pass is a new permutation drawn
    from ``self.rng``. Inside a runner with ``exactly_once=True``, each
    worker reads only its shard. All images of the split are read in
    ``__init__`` and held as uint8: 47 MB for the training set, 8 MB for the
    test set.

    The files are the four IDX files of the official distribution, gzipped as
    downloaded or gunzipped (the same name without ``.gz``):
    ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
    ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``.

    Args:
        train_or_test: ``"train"`` or ``"test"``.
        shuffle: shuffle every pass (default ``True``).
        dir: the directory of the files. ``None`` means
            ``$DATAFLOW_DATASETS/mnist_data`` when that variable is set, else
            ``~/.dataflow/datasets/mnist_data``.
        download: when files are missing, download them from ``SOURCE_URL``
            into *dir* (default ``False``: raise ``FileNotFoundError``, whose
            message says which files are expected, where, and where to get them).
        seed: ``None`` (fresh randomness at every ``reset_state()``) or a
            non-negative int for the same order every run.

    Raises:
        FileNotFoundError: a file is missing and *download* is false.
        ValueError: a file is damaged (wrong magic number, truncated), or the
            image and label files disagree on the number of images.

    Example:
        Typical use, once the files are in ``~/.dataflow/datasets/mnist_data``::

            df = Mnist("train", seed=0)
            df.reset_state()
            for image, label in df:
                ...

        Without the files, the error says what to do:

        >>> Mnist("test", dir="/no/such/dir")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: Mnist expected these files in '/no/such/dir', which are missing: ...

    Note:
        The original site, http://yann.lecun.com/exdb/mnist/, no longer serves
        the files; ``SOURCE_URL`` is the mirror kept by the PyTorch project.
    """

    #: The default sub-directory of ``$DATAFLOW_DATASETS``.
    DIR_NAME = "mnist_data"
    #: Where ``download=True`` fetches each file: ``SOURCE_URL + file name``.
    SOURCE_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"

    @staticmethod
    def _convert(image: np.ndarray) -> np.ndarray:
        return _FLOAT_OF_BYTE.take(image)

    def __init__(
        self,
        train_or_test: str,
        shuffle: bool = True,
        dir: Optional[Union[str, os.PathLike]] = None,
        *,
        download: bool = False,
        seed: Optional[int] = None,
    ) -> None:
        self.train_or_test = check_train_or_test(train_or_test)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be a bool, got {shuffle!r}")
        self.shuffle = bool(shuffle)
        self.seed = check_seed(seed)
        self.dir = dataset_dir(self.DIR_NAME, dir)
        prefix = "train" if train_or_test == "train" else "t10k"
        images_path, labels_path = self._find(
            [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"], download
        )
        images = _read_idx(images_path, _IMAGES_MAGIC)
        labels = _read_idx(labels_path, _LABELS_MAGIC)
        if len(images) != len(labels):
            raise ValueError(
                f"{images_path} holds {len(images)} images but {labels_path} holds "
                f"{len(labels)} labels"
            )
        self._set_arrays(images, labels)

    def _find(self, names: List[str], download: bool) -> List[str]:
        # A gunzipped file is used as is; otherwise the .gz name is expected.
        names = [n if os.path.isfile(os.path.join(self.dir, n)) else n + ".gz" for n in names]

        def fetch(missing: List[str]) -> None:
            for name in missing:
                download_file(self.SOURCE_URL + name, self.dir)

        return find_files(
            type(self).__name__,
            self.dir,
            names,
            how_to_get=(
                f"Download them from {self.SOURCE_URL} (gunzipping them is optional), "
                "or pass download=True to do it for you."
            ),
            fetch=fetch if download else None,
        )


class FashionMnist(Mnist):
    """Yield ``[image, label]`` from Fashion-MNIST, a drop-in replacement for MNIST.

    Same files, format, sizes and datapoints as :class:`Mnist` (28 x 28
    clothing images, labels 0..9), in another directory (default
    ``$DATAFLOW_DATASETS/fashion_mnist_data``) and from another URL.

    Example:
        >>> FashionMnist.DIR_NAME, FashionMnist.SOURCE_URL
        ('fashion_mnist_data', 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/')
    """

    DIR_NAME = "fashion_mnist_data"
    SOURCE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

    def get_label_names(self) -> List[str]:
        """The name of each class, indexed by label: ``'T-shirt/top'`` for 0
        through ``'Ankle boot'`` for 9 (the names of the official README)."""
        return list(_FASHION_LABEL_NAMES)


_FASHION_LABEL_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

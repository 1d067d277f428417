"""SVHN, the Street View House Numbers, cropped-digit format (``*_32x32.mat``)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from ..base import init_args
from ._common import InMemorySplit
from ._readers import (
    PathLike,
    check_dir,
    find_downloadable,
    init_split,
    load_mat,
    mat_labels,
    mat_variable,
)

__all__ = ["SVHNDigit"]

_NAMES = ("train", "test", "extra")


class SVHNDigit(InMemorySplit):
    """Yield ``[image, label]`` from the cropped digits of SVHN.

    *image* is a new uint8 array of shape (32, 32, 3), in RGB order as stored
    in the file; *label* is an int in 0..9 (the file's label 10 stands for
    the digit 0). ``len()`` is exact: 73257 for ``"train"``, 26032 for
    ``"test"``, 531131 for ``"extra"``. Without *shuffle* the order is that of
    the file; with it, every pass is a new permutation drawn from
    ``self.rng``. Inside a runner with ``exactly_once=True``, each worker
    reads only its shard. The whole split is read in ``__init__`` and held as uint8:
    about 3 KB per image (225 MB for ``"train"``, 1.6 GB for ``"extra"``;
    twice that while loading).

    The files are ``train_32x32.mat``, ``test_32x32.mat`` and
    ``extra_32x32.mat`` from http://ufldl.stanford.edu/housenumbers/, each
    holding ``X`` (32 x 32 x 3 x N, uint8) and ``y`` (N x 1, labels 1..10).
    Reading them needs scipy.

    Args:
        name: ``"train"``, ``"test"`` or ``"extra"``.
        data_dir: the directory of the ``.mat`` files. ``None`` means
            ``$DATAFLOW_DATASETS/svhn_data`` (``~/.dataflow/datasets/svhn_data``
            when the variable is not set).
        shuffle: shuffle every pass; ``None`` (default) shuffles ``"train"``
            and ``"extra"`` only.
        download: when the file is missing, download it into *data_dir*
            (default ``False``: raise ``FileNotFoundError``, whose message
            says which file is expected, where, and where to get it).
        seed: ``None`` (fresh randomness at every ``reset_state()``) or a
            non-negative int for the same order every run.

    Raises:
        ImportError: scipy is not installed.
        FileNotFoundError: the file is missing and *download* is false.
        ValueError: the file is damaged, or ``X`` or ``y`` has another shape.

    Example:
        Typical use, once the files are in ``~/.dataflow/datasets/svhn_data``::

            df = SVHNDigit("train", seed=0)
            df.reset_state()
            for image, label in df:
                ...

        Without the file, the error says what to do:

        >>> from dataflow.dataset import SVHNDigit
        >>> SVHNDigit("test", "/no/such/dir")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: SVHNDigit expected these files in '/no/such/dir', which are missing: ...
    """

    #: The default sub-directory of ``$DATAFLOW_DATASETS``.
    DIR_NAME = "svhn_data"
    #: Where ``download=True`` fetches each file: ``SOURCE_URL + file name``.
    SOURCE_URL = "http://ufldl.stanford.edu/housenumbers/"
    name: str

    def __init__(
        self,
        name: str,
        data_dir: Optional[PathLike] = None,
        shuffle: Optional[bool] = None,
        *,
        download: bool = False,
        seed: Optional[int] = None,
    ) -> None:
        init_split(self, name, _NAMES, shuffle, seed, train_names=("train", "extra"))
        self.dir = check_dir("data_dir", data_dir, self.DIR_NAME)
        reader = type(self).__name__
        (path,) = find_downloadable(
            reader, self.dir, [f"{name}_32x32.mat"], self.SOURCE_URL, download
        )
        mat = load_mat(path, reader)
        images = mat_variable(mat, "X", path, (32, 32, 3, None), np.uint8)
        labels = mat_labels(mat, "y", path, "X", images.shape[3], 1, 10)
        # (32, 32, 3, N) -> (N, 32, 32, 3), contiguous so that each image is one block.
        images = np.ascontiguousarray(images.transpose(3, 0, 1, 2))
        self._set_arrays(images, labels % 10)

    def _repr_args(self) -> Dict[str, Any]:
        return init_args(self, data_dir=self.dir)

    def get_per_pixel_mean(self, names: Sequence[str] = _NAMES) -> np.ndarray:
        """The mean image of the splits *names*, float64 of shape (32, 32, 3).

        Args:
            names: a non-empty sequence of ``"train"``, ``"test"`` and/or
                ``"extra"``; the default is every image of the dataset. A
                split other than this reader's is read from its file in this
                reader's directory for the computation (``"extra"`` takes
                1.6 GB of memory while it is read).
        """
        if isinstance(names, str) or not names or not set(names) <= set(_NAMES):
            raise ValueError(
                "names must be a non-empty sequence of 'train', 'test' and/or 'extra', "
                f"got {names!r}"
            )
        total = np.zeros((32, 32, 3), np.float64)
        count = 0
        for name in _NAMES:
            if name not in names:
                continue
            other = self if name == self.name else SVHNDigit(name, self.dir, shuffle=False)
            total += other._images.sum(axis=0, dtype=np.float64)
            count += len(other._images)
        return total / count

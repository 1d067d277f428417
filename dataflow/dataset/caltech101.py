"""Caltech-101 Silhouettes, 28 x 28 split 1 (``caltech101_silhouettes_28_split1.mat``)."""

from __future__ import annotations

from typing import Optional

from ._common import InMemorySplit, dataset_dir
from ._readers import (
    PathLike,
    find_downloadable,
    init_split,
    load_mat,
    mat_labels,
    mat_variable,
)

__all__ = ["Caltech101Silhouettes"]


class Caltech101Silhouettes(InMemorySplit):
    """Yield ``[image, label]`` from the Caltech-101 Silhouettes dataset.

    *image* is a new array of shape (28, 28) with values in [0, 1], of the
    dtype stored in the file (float64 in the official one), each row of the
    file reshaped in row-major order; *label* is an int in 0..100 (the file's
    labels 1..101, minus one). ``len()`` is exact: 4100 for ``"train"``, 2264
    for ``"val"``, 2307 for ``"test"``. Without *shuffle* the order is that of
    the file; with it, every pass is a new permutation drawn from
    ``self.rng``. Inside a runner with ``exactly_once=True``, each worker
    reads only its shard. The whole file is read in ``__init__`` and the
    split's images are held (6 KB per image as float64, 25 MB for ``"train"``).

    The file is ``caltech101_silhouettes_28_split1.mat`` from
    https://people.cs.umass.edu/~marlin/data/, holding ``train_data``,
    ``val_data`` and ``test_data`` (N x 784) with ``train_labels``,
    ``val_labels`` and ``test_labels`` (N x 1). Reading it needs scipy.

    Args:
        name: ``"train"``, ``"val"`` or ``"test"``.
        shuffle: shuffle every pass; ``None`` (default) shuffles ``"train"`` only.
        dir: the directory of the file. ``None`` means
            ``$DATAFLOW_DATASETS/caltech101_data``
            (``~/.dataflow/datasets/caltech101_data`` when the variable is not set).
        download: when the file is missing, download it into *dir* (default
            ``False``: raise ``FileNotFoundError``, whose message says which
            file is expected, where, and where to get it).
        seed: ``None`` (fresh randomness at every ``reset_state()``) or a
            non-negative int for the same order every run.

    Raises:
        ImportError: scipy is not installed.
        FileNotFoundError: the file is missing and *download* is false.
        ValueError: the file is damaged, or a variable has another shape.

    Example:
        Typical use, once the file is in ``~/.dataflow/datasets/caltech101_data``::

            df = Caltech101Silhouettes("train", seed=0)
            df.reset_state()
            for image, label in df:
                ...

        Without the file, the error says what to do:

        >>> from dataflow.dataset import Caltech101Silhouettes
        >>> Caltech101Silhouettes("val", dir="/no/such/dir")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: Caltech101Silhouettes expected these files in '/no/such/dir', ...

    Note:
        The file was written by MATLAB, where each row holds an image column
        after column; read row after row, as here and in tensorpack, every
        silhouette comes out transposed (mirrored about its main diagonal).
        The reader keeps tensorpack's orientation, so that models trained
        with tensorpack see the same images; ``image.T`` is the upright
        silhouette.
    """

    #: The default sub-directory of ``$DATAFLOW_DATASETS``.
    DIR_NAME = "caltech101_data"
    #: Where ``download=True`` fetches the file: ``SOURCE_URL + FILE_NAME``.
    SOURCE_URL = "https://people.cs.umass.edu/~marlin/data/"
    #: The name of the file.
    FILE_NAME = "caltech101_silhouettes_28_split1.mat"
    name: str

    def __init__(
        self,
        name: str,
        shuffle: Optional[bool] = None,
        dir: Optional[PathLike] = None,
        *,
        download: bool = False,
        seed: Optional[int] = None,
    ) -> None:
        init_split(self, name, ("train", "val", "test"), shuffle, seed)
        self.dir = dataset_dir(self.DIR_NAME, dir)
        reader = type(self).__name__
        (path,) = find_downloadable(reader, self.dir, [self.FILE_NAME], self.SOURCE_URL, download)
        mat = load_mat(path, reader)
        images = mat_variable(mat, f"{name}_data", path, (None, 28 * 28))
        labels = mat_labels(mat, f"{name}_labels", path, f"{name}_data", len(images), 1, 101)
        self._set_arrays(images.reshape(-1, 28, 28), labels - 1)

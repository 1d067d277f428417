"""BSDS500, the Berkeley Segmentation Data Set, as unpacked from ``BSR_bsds500.tgz``."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import numpy as np

from .._optional import import_optional
from ..base import Datapoint, init_args
from ..sources import RandomAccessDataFlow
from ._common import download_file, extract_tar, find_files, missing_files_error
from ._readers import PathLike, check_dir, init_split, list_files, load_mat

__all__ = ["BSDS500"]

#: Every image is this size, once portrait images are turned to landscape.
_HEIGHT, _WIDTH = 321, 481


class BSDS500(RandomAccessDataFlow):
    """Yield ``[image, boundaries]`` from the Berkeley Segmentation Data Set 500.

    *image* is a new BGR uint8 array of shape (321, 481, 3); *boundaries* is
    a new float32 array of shape (321, 481) whose value at each pixel is the
    fraction of the human annotators who drew a boundary there, in [0, 1].
    Portrait images and their maps are transposed to this landscape shape.
    ``len()`` is exact: 200 for ``"train"``, 100 for ``"val"``, 200 for
    ``"test"``. Without *shuffle* the order is that of the sorted file names;
    with it, every pass is a new permutation drawn from ``self.rng``. Inside
    a runner with ``exactly_once=True``, each worker reads only its shard.
    The whole split is decoded in ``__init__`` (a few seconds) and held: 1.1 MB
    per image, 216 MB for ``"train"``.

    The files are those of ``BSR_bsds500.tgz`` unpacked in *data_dir*:
    ``BSR/BSDS500/data/images/<name>/<id>.jpg`` and
    ``BSR/BSDS500/data/groundTruth/<name>/<id>.mat``, whose ``groundTruth``
    variable holds one struct per annotator with a ``Boundaries`` map.
    Reading them needs OpenCV and scipy.

    Args:
        name: ``"train"``, ``"val"`` or ``"test"``.
        data_dir: the directory holding ``BSR``. ``None`` means
            ``$DATAFLOW_DATASETS/bsds500_data``
            (``~/.dataflow/datasets/bsds500_data`` when the variable is not set).
        shuffle: shuffle every pass; ``None`` (default) shuffles ``"train"`` only.
        download: when the files are missing, download ``BSR_bsds500.tgz``
            (70 MB) and unpack it into *data_dir* (default ``False``: raise
            ``FileNotFoundError``, whose message says which files are
            expected, where, and where to get them).
        seed: ``None`` (fresh randomness at every ``reset_state()``) or a
            non-negative int for the same order every run.

    Raises:
        ImportError: OpenCV or scipy is not installed.
        FileNotFoundError: files are missing and *download* is false.
        OSError: an image cannot be decoded.
        ValueError: an image or a map has another size, or a ``.mat`` file
            is damaged or holds something else.

    Example:
        Typical use, once ``BSR`` is in ``~/.dataflow/datasets/bsds500_data``::

            df = BSDS500("train", seed=0)
            df.reset_state()
            for image, boundaries in df:
                ...

        Without the files, the error says what to do:

        >>> from dataflow.dataset import BSDS500
        >>> BSDS500("val", "/no/such/dir")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: BSDS500 expected these files in '/no/such/dir', which are missing: ...
    """

    #: The default sub-directory of ``$DATAFLOW_DATASETS``.
    DIR_NAME = "bsds500_data"
    name: str
    shuffle: bool
    #: What ``download=True`` fetches and unpacks.
    SOURCE_URL = (
        "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz"
    )

    def __init__(
        self,
        name: str,
        data_dir: Optional[PathLike] = None,
        shuffle: Optional[bool] = None,
        *,
        download: bool = False,
        seed: Optional[int] = None,
    ) -> None:
        init_split(self, name, ("train", "val", "test"), shuffle, seed)
        reader = type(self).__name__
        cv2 = import_optional("cv2", reader)
        import_optional("scipy.io", reader)
        self.dir = check_dir("data_dir", data_dir, self.DIR_NAME)
        data_root = os.path.join(self.dir, "BSR", "BSDS500", "data")
        image_dir = os.path.join(data_root, "images", name)
        how_to_get = f"Download {self.SOURCE_URL} and unpack it there, or pass download=True."
        if not os.path.isdir(image_dir) and download:
            extract_tar(download_file(self.SOURCE_URL, self.dir), self.dir)
        ids = [f[: -len(".jpg")] for f in list_files(image_dir, ".jpg")]
        if not ids:
            expected = [f"BSR/BSDS500/data/{kind}/{name}/*" for kind in ("images", "groundTruth")]
            raise missing_files_error(reader, self.dir, expected, how_to_get)
        gt_paths = find_files(
            reader, data_root, [f"groundTruth/{name}/{i}.mat" for i in ids], how_to_get=how_to_get
        )
        images = np.empty((len(ids), _HEIGHT, _WIDTH, 3), np.uint8)
        maps = np.empty((len(ids), _HEIGHT, _WIDTH), np.float32)
        for k, (image_id, gt_path) in enumerate(zip(ids, gt_paths)):
            image_path = os.path.join(image_dir, image_id + ".jpg")
            image = cv2.imread(image_path, cv2.IMREAD_COLOR)
            if image is None:
                raise OSError(f"{reader} could not read {image_path!r} as an image")
            images[k] = _landscape(image, image_path)
            maps[k] = _landscape(_boundaries(load_mat(gt_path, reader), gt_path), gt_path)
        self._images, self._boundaries = images, maps

    def _repr_args(self) -> Dict[str, Any]:
        return init_args(self, data_dir=self.dir)

    def num_datapoints(self) -> int:
        return len(self._images)

    def get(self, index: int) -> Datapoint:
        return [self._images[index].copy(), self._boundaries[index].copy()]


def _landscape(array: np.ndarray, path: str) -> np.ndarray:
    """*array* of shape (321, 481, ...), transposing a (481, 321, ...) one."""
    if array.shape[:2] == (_WIDTH, _HEIGHT):
        array = array.swapaxes(0, 1)
    if array.shape[:2] != (_HEIGHT, _WIDTH):
        raise ValueError(
            f"{path!r} holds an array of shape {array.shape[:2]}; BSDS500 images and maps "
            f"are {_HEIGHT} x {_WIDTH} or {_WIDTH} x {_HEIGHT}"
        )
    return array


def _boundaries(mat: Dict[str, Any], path: str) -> np.ndarray:
    """The mean of the annotators' boundary maps in a ``groundTruth`` file."""
    try:
        cells = np.asarray(mat["groundTruth"]).ravel()
        maps = [np.asarray(cell["Boundaries"][0, 0], dtype=np.float32) for cell in cells]
        if not maps or any(m.shape != maps[0].shape or m.ndim != 2 for m in maps):
            raise ValueError("the maps are missing or differ in shape")
    except (KeyError, IndexError, ValueError, TypeError) as err:
        raise ValueError(
            f"{path!r} should hold a variable 'groundTruth' with one struct per annotator, "
            f"each with a 2-d 'Boundaries' map of the image's size ({type(err).__name__}: {err})"
        ) from err
    return np.asarray(np.mean(maps, axis=0, dtype=np.float32))

"""ILSVRC12 (ImageNet-1k): the unpacked image folders and caffe's metadata files."""

from __future__ import annotations

import logging
import os
import re
from typing import Dict, List, Optional, Tuple

from ..base import Datapoint
from ._common import dataset_dir, download_file, extract_tar, find_files
from ._readers import (
    FileListReader,
    PathLike,
    check_dir,
    check_listed_files,
    check_name,
    read_image,
    read_list_file,
)

__all__ = ["ILSVRC12", "ILSVRC12Files", "ILSVRCMeta"]

logger = logging.getLogger(__name__)

_NAMES = ("train", "val", "test")
_DIR_STRUCTURES = ("original", "train")
_SYNSET = re.compile(r"n\d{8}")

_HOW_TO_GET_IMAGES = (
    "The images are in ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and "
    "ILSVRC2012_img_test.tar from https://image-net.org/download-images.php (free "
    "registration): unpack the val and test archives into <dir>/val and <dir>/test, and "
    "each per-class archive inside the train archive into <dir>/train/<synset>/."
)


class ILSVRCMeta:
    """The ILSVRC12 metadata of caffe's ``caffe_ilsvrc12.tar.gz``: class names
    and image lists.

    The files, in *dir*: ``synsets.txt`` (the 1000 WordNet ids, line *i* for
    label *i*), ``synset_words.txt`` (the same with readable names),
    ``train.txt``, ``val.txt`` and ``test.txt`` (one ``relative/path label``
    line per image). Each file is read when a method needs it; nothing is
    held.

    Args:
        dir: the directory of the files. ``None`` means
            ``$DATAFLOW_DATASETS/ilsvrc_metadata``
            (``~/.dataflow/datasets/ilsvrc_metadata`` when the variable is not set).
        download: when a file is missing, download caffe's archive (17 MB)
            and unpack it into *dir* (default ``False``: raise
            ``FileNotFoundError``, whose message says which file is expected,
            where, and where to get it).

    Example:
        >>> from dataflow.dataset import ILSVRCMeta
        >>> ILSVRCMeta("/no/such/dir").get_synset_1000()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: ILSVRCMeta expected these files in '/no/such/dir', which are missing: ...
    """

    #: The default sub-directory of ``$DATAFLOW_DATASETS``.
    DIR_NAME = "ilsvrc_metadata"
    #: What ``download=True`` fetches and unpacks.
    SOURCE_URL = "http://dl.caffe.berkeleyvision.org/caffe_ilsvrc12.tar.gz"

    def __init__(self, dir: Optional[PathLike] = None, *, download: bool = False) -> None:
        self.dir = dataset_dir(self.DIR_NAME, dir)
        self.download = bool(download)

    def _path(self, filename: str) -> str:
        def fetch(missing: List[str]) -> None:
            extract_tar(download_file(self.SOURCE_URL, self.dir), self.dir)

        (path,) = find_files(
            type(self).__name__,
            self.dir,
            [filename],
            how_to_get=f"Download {self.SOURCE_URL} and unpack it there, or pass download=True.",
            fetch=fetch if self.download else None,
        )
        return path

    def _lines(self, filename: str) -> List[str]:
        with open(self._path(filename), encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]

    def get_synset_words_1000(self) -> Dict[int, str]:
        """``{label: "<synset> <names>"}`` from ``synset_words.txt``,
        e.g. ``{0: "n01440764 tench, Tinca tinca", ...}``."""
        return dict(enumerate(self._lines("synset_words.txt")))

    def get_synset_1000(self) -> Dict[int, str]:
        """``{label: synset}`` from ``synsets.txt``, e.g. ``{0: "n01440764", ...}``."""
        return dict(enumerate(self._lines("synsets.txt")))

    def get_image_list(self, name: str, dir_structure: str = "original") -> List[Tuple[str, int]]:
        """The ``(relative path, label)`` pairs of one split, in list-file order.

        Args:
            name: ``"train"``, ``"val"`` or ``"test"``.
            dir_structure: the layout of ``val``: ``"original"`` (flat) or
                ``"train"`` (one folder per synset, so each path of
                ``val.txt`` gets its synset prepended). ``train`` always has
                one folder per synset and ``test`` is always flat.

        The labels of ``test`` are ``-1``: the list file's are placeholders.

        Raises:
            ValueError: a line of the list file is malformed (the message
                names the file and the line), a label has no synset, or the
                list is empty.
        """
        check_name(name, _NAMES)
        if dir_structure not in _DIR_STRUCTURES:
            raise ValueError(f"dir_structure must be 'original' or 'train', got {dir_structure!r}")
        path = self._path(name + ".txt")
        names, labels = read_list_file(path, label_optional=name == "test")
        if not names:
            raise ValueError(f"{path!r} lists no images")
        if name == "test":
            return [(n, -1) for n in names]
        assert labels is not None  # read_list_file requires them
        if name == "val" and dir_structure == "train":
            synsets = self._lines("synsets.txt")
            bad = [label for label in labels if not 0 <= label < len(synsets)]
            if bad:
                raise ValueError(
                    f"{path!r} has label {bad[0]}, which has no synset in synsets.txt "
                    f"({len(synsets)} synsets)"
                )
            names = [f"{synsets[label]}/{n}" for n, label in zip(names, labels)]
        return list(zip(names, labels))

    @staticmethod
    def guess_dir_structure(dir: PathLike) -> str:
        """``"train"`` when *dir* has a sub-directory named like a synset
        (``n`` and eight digits), else ``"original"``."""
        with os.scandir(dir) as entries:
            found = any(_SYNSET.fullmatch(e.name) and e.is_dir() for e in entries)
        structure = "train" if found else "original"
        logger.info("ILSVRC12: assuming directory %s has the %r structure", dir, structure)
        return structure


class ILSVRC12Files(FileListReader):
    """Yield ``[path, label]`` for the images of one ILSVRC12 split.

    *path* is the full path of the image file, a ``str``; *label* an int in
    0..999 (``-1`` for ``"test"``). Use it to decode the images your own way,
    e.g. in parallel workers; :class:`ILSVRC12` decodes them for you.
    ``len()`` is exact: the number of lines of the split's list file (1281167
    for ``"train"``, 50000 for ``"val"``, 100000 for ``"test"``). Without
    *shuffle* the order is that of the list file; with it, every pass is a
    new permutation drawn from ``self.rng``. Inside a runner with
    ``exactly_once=True``, each worker reads only its shard of the list.
    ``__init__`` reads the list file and checks that every listed image
    exists (one directory listing per folder, a few seconds for
    ``"train"``); the list of names is held, about 210 MB for ``"train"``.

    The layout of *dir*, as unpacked from the official archives::

        dir/
          train/n01440764/n01440764_10026.JPEG   one folder per synset
          val/ILSVRC2012_val_00000001.JPEG       flat ("original"), or
          val/n01751748/ILSVRC2012_val_00000001.JPEG  by synset ("train")
          test/ILSVRC2012_test_00000001.JPEG     flat

    and the list files of :class:`ILSVRCMeta` in *meta_dir*.

    Args:
        dir: the directory holding ``train``, ``val`` and ``test``.
        name: ``"train"``, ``"val"`` or ``"test"``.
        meta_dir: the directory of the metadata files (see
            :class:`ILSVRCMeta`; ``None`` means its default directory).
        shuffle: shuffle every pass; ``None`` (default) shuffles ``"train"`` only.
        dir_structure: the layout of ``val``: ``"original"`` or ``"train"``;
            ``None`` (default) guesses it with
            :meth:`ILSVRCMeta.guess_dir_structure`. Ignored for the other splits.
        download: when metadata files are missing, download them (see
            :class:`ILSVRCMeta`). The images cannot be downloaded automatically.
        seed: ``None`` (fresh randomness at every ``reset_state()``) or a
            non-negative int for the same order every run.

    Raises:
        FileNotFoundError: a metadata file or an image is missing; for images,
            the message names the first missing one and counts them.
        ValueError: a line of the list file is malformed.

    Example:
        Typical use, with the images in ``/data/imagenet``::

            df = ILSVRC12Files("/data/imagenet", "val", meta_dir="/data/ilsvrc_meta")
            df.reset_state()
            for path, label in df:
                ...

        Without the metadata, the error says what to do:

        >>> from dataflow.dataset import ILSVRC12Files
        >>> ILSVRC12Files("/data/imagenet", "val", "/no/meta")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: ILSVRCMeta expected these files in '/no/meta', ...: 'val.txt'. ...
    """

    def __init__(
        self,
        dir: PathLike,
        name: str,
        meta_dir: Optional[PathLike] = None,
        shuffle: Optional[bool] = None,
        dir_structure: Optional[str] = None,
        *,
        download: bool = False,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__(name, _NAMES, shuffle, seed)
        self.dir = check_dir("dir", dir)
        full_dir = os.path.join(self.dir, name)
        if dir_structure is not None and dir_structure not in _DIR_STRUCTURES:
            raise ValueError(
                f"dir_structure must be None, 'original' or 'train', got {dir_structure!r}"
            )
        meta = ILSVRCMeta(check_dir("meta_dir", meta_dir, ILSVRCMeta.DIR_NAME), download=download)
        self.meta_dir = meta.dir
        if name != "val":
            dir_structure = "train" if name == "train" else "original"
        elif dir_structure is None:
            dir_structure = (
                ILSVRCMeta.guess_dir_structure(full_dir) if os.path.isdir(full_dir) else "original"
            )
        imglist = meta.get_image_list(name, dir_structure)
        listed_in = repr(os.path.join(meta.dir, name + ".txt"))
        check_listed_files(
            type(self).__name__, full_dir, [n for n, _ in imglist], listed_in, _HOW_TO_GET_IMAGES
        )
        self._set_list(full_dir, imglist)


class ILSVRC12(ILSVRC12Files):
    """Yield ``[image, label]`` for the images of one ILSVRC12 split.

    *image* is the decoded image, a BGR uint8 array of shape (h, w, 3) as
    OpenCV reads it (grayscale and CMYK files are converted to 3 channels);
    *label* an int in 0..999 (``-1`` for ``"test"``). The images are decoded
    while iterating, in the process that iterates; to keep up with training,
    use :class:`ILSVRC12Files` and decode in a parallel map (such as
    ``MultiProcessMapDataZMQ``) instead. Everything else (arguments, layout,
    ``len()``, order, sharding, memory) is as in :class:`ILSVRC12Files`. Needs OpenCV.

    Raises:
        ImportError: OpenCV is not installed.
        OSError: while iterating, when a file cannot be decoded; the message
            names it.

    Example:
        Typical use, with the images in ``/data/imagenet``::

            df = ILSVRC12("/data/imagenet", "train", meta_dir="/data/ilsvrc_meta")
            df.reset_state()
            for image, label in df:
                ...

        Without the metadata, the error says what to do:

        >>> from dataflow.dataset import ILSVRC12
        >>> ILSVRC12("/data/imagenet", "train", "/no/meta")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: ILSVRCMeta expected these files in '/no/meta', ...: 'train.txt'. ...
    """

    _requires = ("cv2",)

    def get(self, index: int) -> Datapoint:
        return read_image(self, index)

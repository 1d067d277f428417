"""Tiny ImageNet (200 classes, 64 x 64 images), as unpacked from ``tiny-imagenet-200.zip``."""

from __future__ import annotations

import os
import shutil
import zipfile
from typing import List, Optional, Tuple

from ..base import Datapoint
from ._common import download_file, find_files, missing_files_error
from ._readers import (
    FileListReader,
    PathLike,
    check_dir,
    check_listed_files,
    list_files,
    read_image,
)

__all__ = ["TinyImageNet"]

_ARCHIVE_ROOT = "tiny-imagenet-200/"


class TinyImageNet(FileListReader):
    """Yield ``[image, label]`` for the images of one Tiny ImageNet split.

    *image* is a BGR uint8 array of shape (64, 64, 3) as OpenCV decodes it
    (the few grayscale files are converted to 3 channels); *label* is the
    index of the image's WordNet id in ``wnids.txt``, an int in 0..199
    (``-1`` for ``"test"``, whose labels are not public). ``len()`` is exact:
    100000 for ``"train"``, 10000 for ``"val"`` and ``"test"``. Without
    *shuffle* the order is: ``"train"`` by class in ``wnids.txt`` order, then
    by file name; ``"val"`` in ``val_annotations.txt`` order; ``"test"`` by
    file name. With it, every pass is a new permutation drawn from
    ``self.rng``. Inside a runner with ``exactly_once=True``, each worker
    reads only its shard of the files. ``__init__`` lists the files and holds their names (about
    15 MB for ``"train"``); the images are decoded while iterating. Needs
    OpenCV. The attribute ``wnids`` lists the WordNet ids: label *i* is
    ``wnids[i]``.

    The layout of *dir*, as unpacked from ``tiny-imagenet-200.zip``::

        dir/wnids.txt                         the 200 WordNet ids, one a line
        dir/train/<wnid>/images/*.JPEG
        dir/val/images/*.JPEG
        dir/val/val_annotations.txt           "<file> <wnid> <box>" lines
        dir/test/images/*.JPEG

    Args:
        dir: the ``tiny-imagenet-200`` directory.
        name: ``"train"``, ``"val"`` or ``"test"``.
        shuffle: shuffle every pass; ``None`` (default) shuffles ``"train"`` only.
        download: when files are missing, download ``tiny-imagenet-200.zip``
            (240 MB) and unpack its ``tiny-imagenet-200`` folder as *dir*
            (default ``False``: raise ``FileNotFoundError``, whose message
            says which files are expected, where, and where to get them).
        seed: ``None`` (fresh randomness at every ``reset_state()``) or a
            non-negative int for the same order every run.

    Raises:
        ImportError: OpenCV is not installed.
        FileNotFoundError: files are missing and *download* is false.
        ValueError: a line of ``val_annotations.txt`` is malformed or names
            a WordNet id that is not in ``wnids.txt``.
        OSError: while iterating, when a file cannot be decoded.

    Example:
        Typical use, with the data in ``/data/tiny-imagenet-200``::

            df = TinyImageNet("/data/tiny-imagenet-200", "train", seed=0)
            df.reset_state()
            for image, label in df:
                ...

        Without the files, the error says what to do:

        >>> from dataflow.dataset import TinyImageNet
        >>> TinyImageNet("/no/dir", "test")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: TinyImageNet expected these files in '/no/dir', ...: 'wnids.txt'. ...
    """

    #: What ``download=True`` fetches and unpacks.
    SOURCE_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"

    _requires = ("cv2",)

    def __init__(
        self,
        dir: PathLike,
        name: str,
        shuffle: Optional[bool] = None,
        *,
        download: bool = False,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__(name, ("train", "val", "test"), shuffle, seed)
        self.dir = check_dir("dir", dir)
        reader = type(self).__name__
        self._how_to_get = f"Download {self.SOURCE_URL} and unpack it, or pass download=True."

        def fetch(missing: List[str]) -> None:
            _extract_zip_folder(download_file(self.SOURCE_URL, self.dir), _ARCHIVE_ROOT, self.dir)

        needed = ["wnids.txt"] + (["val/val_annotations.txt"] if name == "val" else [])
        paths = find_files(
            reader, self.dir, needed, how_to_get=self._how_to_get, fetch=fetch if download else None
        )
        with open(paths[0], encoding="utf-8") as f:
            self.wnids = [line.strip() for line in f if line.strip()]
        full_dir = os.path.join(self.dir, name)
        if name == "val":
            imglist = self._read_annotations(paths[1])
            check_listed_files(
                reader, full_dir, [n for n, _ in imglist], repr(paths[1]), self._how_to_get
            )
        elif name == "train":
            imglist = [
                (f"{wnid}/images/{f}", label)
                for label, wnid in enumerate(self.wnids)
                for f in self._list_images(f"train/{wnid}/images")
            ]
        else:
            imglist = [(f"images/{f}", -1) for f in self._list_images("test/images")]
        self._set_list(full_dir, imglist)

    def _list_images(self, folder: str) -> List[str]:
        """The sorted ``.JPEG`` files of *folder* (relative to ``self.dir``)."""
        files = list_files(os.path.join(self.dir, folder), ".JPEG")
        if not files:
            raise missing_files_error(
                type(self).__name__, self.dir, [f"{folder}/*.JPEG"], self._how_to_get
            )
        return files

    def _read_annotations(self, path: str) -> List[Tuple[str, int]]:
        label_of = {wnid: label for label, wnid in enumerate(self.wnids)}
        imglist = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) < 2 or fields[1] not in label_of:
                    raise ValueError(
                        f"{path}, line {lineno}: expected '<file> <wnid> ...' with a WordNet id "
                        f"from wnids.txt, got {line.rstrip()!r}"
                    )
                imglist.append((f"images/{fields[0]}", label_of[fields[1]]))
        return imglist

    def get(self, index: int) -> Datapoint:
        return read_image(self, index)


def _extract_zip_folder(path: str, folder: str, directory: str) -> None:
    """Unpack the files under *folder* of the zip archive *path* into
    *directory*, without that prefix, then delete the archive.

    Raises:
        ValueError: a member would land outside *directory*; nothing is
            extracted then.
    """
    root = os.path.realpath(directory)
    with zipfile.ZipFile(path) as archive:
        members = []
        for info in archive.infolist():
            if info.filename.startswith(folder) and not info.is_dir():
                target = os.path.realpath(os.path.join(root, info.filename[len(folder) :]))
                if os.path.commonpath([root, target]) != root:
                    raise ValueError(
                        f"{path} holds {info.filename!r}, which would land outside {directory!r}; "
                        "refusing to extract it"
                    )
                members.append((info, target))
        for info, target in members:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    os.remove(path)

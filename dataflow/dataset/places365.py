"""Places365-Standard in its "easy directory structure" (``places365standard_easyformat.tar``)."""

from __future__ import annotations

from typing import List, Optional

from ..base import Datapoint
from ._common import find_files
from ._readers import (
    FileListReader,
    PathLike,
    check_dir,
    check_listed_files,
    read_image,
    read_list_file,
)

__all__ = ["Places365Standard"]

_HOW_TO_GET = (
    "Download places365standard_easyformat.tar (the 256 x 256 images in the easy directory "
    "structure, 26 GB) from http://places2.csail.mit.edu/download.html, unpack it, and pass "
    "the places365_standard directory it creates."
)


class Places365Standard(FileListReader):
    """Yield ``[image, label]`` for the images of one Places365-Standard split.

    *image* is a BGR uint8 array as OpenCV decodes it, (256, 256, 3) for the
    low-resolution images; *label* is an int in 0..364. ``len()`` is exact:
    the number of lines of the split's list file (1803460 for ``"train"``,
    36500 for ``"val"``). Without *shuffle* the order is that of the list
    file; with it, every pass is a new permutation drawn from ``self.rng``.
    Inside a runner with ``exactly_once=True``, each worker reads only its
    shard of the list. ``__init__`` reads the list file and checks that
    every listed image exists; the list of names is held (about 280 MB for
    ``"train"``), the images are decoded while iterating. Needs OpenCV.

    The layout of *dir*::

        dir/train.txt                  "train/<class>/<file>.jpg" lines
        dir/val.txt                    "val/<class>/<file>.jpg" lines
        dir/train/<class>/*.jpg
        dir/val/<class>/*.jpg

    Each line of a list file is a path relative to *dir*, optionally followed
    by an integer label. Without labels, as in the official files, the label
    is the index of the image's class (the folders between the split folder
    and the file) among the sorted class names of the list file, which is
    the order of the official ``categories_places365.txt``.

    Args:
        dir: the ``places365_standard`` directory.
        name: ``"train"`` or ``"val"``.
        shuffle: shuffle every pass; ``None`` (default) shuffles ``"train"`` only.
        seed: ``None`` (fresh randomness at every ``reset_state()``) or a
            non-negative int for the same order every run.

    Raises:
        ImportError: OpenCV is not installed.
        FileNotFoundError: the list file or an image is missing; for images,
            the message names the first missing one and counts them.
        ValueError: a line of the list file is malformed.
        OSError: while iterating, when a file cannot be decoded.

    Example:
        Typical use, with the data in ``/data/places365_standard``::

            df = Places365Standard("/data/places365_standard", "train", seed=0)
            df.reset_state()
            for image, label in df:
                ...

        Without the files, the error says what to do:

        >>> from dataflow.dataset import Places365Standard
        >>> Places365Standard("/no/dir", "val")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: Places365Standard expected these files in '/no/dir', ...: 'val.txt'. ...

    Note:
        The archive is 26 GB, so there is no ``download=True``; fetch it once
        by hand.
    """

    _requires = ("cv2",)

    def __init__(
        self,
        dir: PathLike,
        name: str,
        shuffle: Optional[bool] = None,
        *,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__(name, ("train", "val"), shuffle, seed)
        self.dir = check_dir("dir", dir)
        reader = type(self).__name__
        (list_path,) = find_files(reader, self.dir, [f"{name}.txt"], how_to_get=_HOW_TO_GET)
        names, labels = read_list_file(list_path, label_optional=True)
        names = [n.lstrip("/") for n in names]
        classes = [n.partition("/")[2].rpartition("/")[0] for n in names]
        self._label_names = sorted(set(classes))
        if labels is None:
            index = {c: label for label, c in enumerate(self._label_names)}
            labels = [index[c] for c in classes]
        check_listed_files(reader, self.dir, names, repr(list_path), _HOW_TO_GET)
        self._set_list(self.dir, list(zip(names, labels)))

    def get_label_names(self) -> List[str]:
        """The class names, sorted: the name of label *i* is element *i*."""
        return list(self._label_names)

    def get(self, index: int) -> Datapoint:
        return read_image(self, index)

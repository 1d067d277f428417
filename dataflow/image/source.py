"""ImageFromFile: decode image files into arrays."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from .._checks import check_seed as _check_seed
from .._compact import COMPACT_MIN_ITEMS, pack_before_fork, packed
from .._optional import import_optional
from ..base import Datapoint
from ..imgaug._common import shape2d
from ..sources import RandomAccessDataFlow

__all__ = ["ImageFromFile"]

_FEATURE = "ImageFromFile"


class ImageFromFile(RandomAccessDataFlow):
    """Yield ``[image]`` for each file of a list of image files, decoded with OpenCV.

    Each image is an ``HxWx3`` RGB (``channel=3``, gray files are converted)
    or ``HxWx1`` gray (``channel=1``) uint8 array. ``len()`` is the number of
    files. Files are read in the given order, or in a new random order every
    pass with *shuffle*; one image is in memory at a time. A file that cannot
    be decoded raises an ``OSError`` naming it. Inside a runner with
    ``exactly_once=True``, each worker reads only its shard of the files
    (see :func:`dataflow.worker.shard_order`), and ``len()`` counts it.

    Args:
        files: a non-empty list (or tuple, or numpy array) of paths, each a
            ``str`` or ``os.PathLike``.
        channel: 3 for RGB, 1 for gray.
        resize: None keeps each image's size; an ``(h, w)`` pair (or an int
            for a square) resizes every image to it.
        shuffle: read the files in a new random order every pass.
        seed: seed of the shuffling order (see :class:`~dataflow.RNGDataFlow`).

    Example:
        >>> import os, tempfile, cv2
        >>> from dataflow.image import ImageFromFile
        >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
        >>> _ = cv2.imwrite(path, np.zeros((4, 6, 3), np.uint8))
        >>> df = ImageFromFile([path], resize=(2, 3))
        >>> df.reset_state()
        >>> [dp[0].shape for dp in df]
        [(2, 3, 3)]

    Note:
        OpenCV reads channels as BGR; this dataflow returns RGB, as
        tensorpack's did. Convert back with ``img[:, :, ::-1]`` before
        handing images to OpenCV functions that expect BGR.
    """

    def __init__(
        self,
        files: Sequence[Union[str, os.PathLike[str]]],
        channel: int = 3,
        resize: Optional[Union[int, Tuple[int, int]]] = None,
        shuffle: bool = False,
        *,
        seed: Optional[int] = None,
    ):
        if isinstance(files, (str, bytes, os.PathLike)) or not hasattr(files, "__len__"):
            raise ValueError(f"files must be a non-empty list of paths, got {files!r}")
        paths = list(files)  # a list, a tuple, a numpy array of str ...
        if not paths:
            raise ValueError(f"files must be a non-empty list of paths, got {files!r}")
        bad = [f for f in paths if not isinstance(f, (str, os.PathLike))]
        if bad:
            raise TypeError(f"files must hold str or os.PathLike paths, got {bad[0]!r}")
        if channel not in (1, 3) or isinstance(channel, bool):
            raise ValueError(f"channel must be 1 or 3, got {channel!r}")
        import_optional("cv2", _FEATURE)
        self.files = [os.fspath(f) for f in paths]
        self.channel = int(channel)
        self.resize = None if resize is None else shape2d(resize, "resize")
        self.shuffle = shuffle
        self.seed = _check_seed(seed)

    @property
    def files(self) -> Sequence[str]:
        """The paths: a list, or once packed (a list of 100,000 paths or more, before
        workers fork or this dataflow is pickled for them) a read-only compact
        store that forked workers share (see "Memory with many workers")."""
        return self._files

    @files.setter
    def files(self, files: Sequence[str]) -> None:
        self._files = files
        self._pack_pending = isinstance(files, list) and len(files) >= COMPACT_MIN_ITEMS
        if self._pack_pending:
            pack_before_fork(self)

    def _pack_for_fork(self) -> None:
        if self.__dict__.pop("_pack_pending", False):
            self._files = packed(self._files, check_shared=False, owner="ImageFromFile")

    def __getstate__(self) -> Dict[str, Any]:
        self._pack_for_fork()  # workers started by spawn get the store too
        return dict(self.__dict__)

    def num_datapoints(self) -> int:
        return len(self.files)

    def get(self, index: int) -> Datapoint:
        cv2 = import_optional("cv2", _FEATURE)
        gray = self.channel == 1
        path = self.files[index]
        img = cv2.imread(path, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
        if img is None:
            raise OSError(f"ImageFromFile cannot read {path!r} as an image")
        resize = self.resize
        if resize is not None:
            img = cv2.resize(img, (resize[1], resize[0]))
        return [img[:, :, None] if gray else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)]

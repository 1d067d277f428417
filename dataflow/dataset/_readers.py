"""Building blocks shared by the readers of image datasets.

* :class:`FileListReader` -- a reader that holds a list of image files and
  labels and reads the files while iterating (ILSVRC12, Tiny ImageNet,
  Places365); :func:`read_image` decodes one.
* :func:`list_files` -- the files of a folder, sorted.
* :func:`read_list_file` and :func:`check_listed_files` -- parse the
  ``relative/path label`` list files these datasets ship with, and check that
  every listed file is on disk.
* :func:`load_mat`, :func:`mat_variable` and :func:`mat_labels` -- read
  MATLAB files with errors that name the file.
* :func:`find_downloadable` -- find files that ``download=True`` fetches
  one by one.
* Argument checks: :func:`init_split` (with :func:`check_name` and
  :func:`check_shuffle`) and :func:`check_dir`.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple, Union

import numpy as np

from .._checks import check_seed
from .._compact import COMPACT_MIN_ITEMS, CompactList, pack_before_fork, packed
from .._optional import import_optional
from ..base import Datapoint
from ..sources import RandomAccessDataFlow
from ._common import dataset_dir, download_file, find_files

__all__ = [
    "PathLike",
    "FileListReader",
    "check_dir",
    "check_listed_files",
    "check_name",
    "check_shuffle",
    "find_downloadable",
    "init_split",
    "read_image",
    "list_files",
    "load_mat",
    "mat_labels",
    "mat_variable",
    "read_list_file",
]

#: A directory argument.
PathLike = Union[str, "os.PathLike[str]"]

#: How a list file with labels spells each line, for error messages.
_LINE_FORM = "'<relative path> <integer label>'"


def check_name(name: Any, names: Sequence[str]) -> str:
    """*name* if it is one of *names*, else a ``ValueError`` that lists them."""
    if not isinstance(name, str) or name not in names:
        choices = ", ".join(repr(n) for n in names)
        raise ValueError(f"name must be one of {choices}, got {name!r}")
    return name


def check_shuffle(shuffle: Any, name: str, train_names: Sequence[str] = ("train",)) -> bool:
    """Whether to shuffle: *shuffle*, or when it is ``None``, whether *name*
    is a training split."""
    if shuffle is None:
        return name in train_names
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be None or a bool, got {shuffle!r}")
    return bool(shuffle)


def check_dir(param: str, value: Any, default_name: Optional[str] = None) -> str:
    """The directory the argument *param* names.

    ``None`` means the default directory *default_name* (see
    :func:`~dataflow.dataset._common.dataset_dir`); without a default,
    ``None`` is an error.
    """
    if value is None and default_name is not None:
        return dataset_dir(default_name)
    if not isinstance(value, (str, os.PathLike)):
        what = "None or a path" if default_name is not None else "a path"
        raise TypeError(f"{param} must be {what}, got {value!r}")
    return os.path.expanduser(os.fspath(value))


def find_downloadable(
    reader: str, directory: str, names: Sequence[str], base_url: str, download: bool
) -> List[str]:
    """:func:`~dataflow.dataset._common.find_files` for files that are
    downloaded one by one from ``base_url + name`` when *download* is true."""

    def fetch(missing: List[str]) -> None:
        for name in missing:
            download_file(base_url + name, directory)

    return find_files(
        reader,
        directory,
        names,
        how_to_get=f"Download them from {base_url}, or pass download=True.",
        fetch=fetch if download else None,
    )


def list_files(directory: str, suffix: str) -> List[str]:
    """The sorted names of the files in *directory* that end with *suffix*;
    empty when *directory* does not exist."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(name for name in names if name.endswith(suffix))


def read_list_file(
    path: str, *, label_optional: bool = False
) -> Tuple[List[str], Optional[List[int]]]:
    """The file names and labels of a list file of ``relative/path label`` lines.

    Blank lines are skipped. With *label_optional*, a file may leave out the
    label on every line (the labels are then ``None``), but not on some only.

    Raises:
        ValueError: a line has another form; the message names the file, the
            line number and the line.
    """
    names: List[str] = []
    labels: List[int] = []
    expected = _LINE_FORM if not label_optional else f"{_LINE_FORM} or '<relative path>'"
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) == 2:
                    labels.append(int(fields[1]))
                elif not (label_optional and len(fields) == 1):
                    raise ValueError(f"{len(fields)} fields")
                if len(labels) not in (0, len(names) + 1):
                    raise ValueError("some lines have a label and some do not")
            except ValueError as err:
                raise ValueError(
                    f"{path}, line {lineno}: expected {expected}, got {line.rstrip()!r} ({err})"
                ) from None
            names.append(fields[0])
    return names, (labels if len(labels) == len(names) else None)


def check_listed_files(
    reader: str, root: str, names: Sequence[str], listed_in: str, how_to_get: str
) -> None:
    """Check that every file in *names* (relative to *root*, ``/``-separated)
    exists, listing each directory once instead of asking about every file.

    Raises:
        FileNotFoundError: *root* is not a directory, or some files are
            missing; the message names the first and counts them.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"{reader} expected the directory {root!r}, which does not exist. {how_to_get}"
        )
    listings: Dict[str, Set[str]] = {}
    missing = []
    for name in names:
        folder, _, base = name.rpartition("/")
        present = listings.get(folder)
        if present is None:
            try:
                present = set(os.listdir(os.path.join(root, folder)))
            except OSError:  # no such directory, or not a directory
                present = set()
            listings[folder] = present
        if base not in present:
            missing.append(name)
    if missing:
        raise FileNotFoundError(
            f"{reader}: {len(missing)} of the {len(names)} files listed in {listed_in} are "
            f"missing from {root!r}; the first is {missing[0]!r}. {how_to_get}"
        )


def load_mat(path: str, reader: str) -> Dict[str, Any]:
    """The variables of the MATLAB file *path* (needs scipy).

    Raises:
        ImportError: scipy is not installed.
        ValueError: the file cannot be read as a MATLAB file.
    """
    scipy_io = import_optional("scipy.io", reader)
    try:
        return scipy_io.loadmat(path)
    except Exception as err:  # loadmat raises many types for a damaged file
        raise ValueError(
            f"{reader} could not read {path!r} as a MATLAB file: {type(err).__name__}: {err}"
        ) from err


def mat_variable(
    mat: Dict[str, Any],
    key: str,
    path: str,
    shape: Tuple[Optional[int], ...],
    dtype: Optional[type] = None,
) -> np.ndarray:
    """The variable *key* of a loaded MATLAB file, checked to be a numeric
    array of the given *shape* (``None`` for a dimension of any size) and, if
    given, *dtype*.

    Raises:
        ValueError: the variable is missing or has another shape or type;
            the message names the file and the variable.
    """
    if key not in mat:
        present = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path!r} has no variable {key!r}; it has {present}")
    value = np.asarray(mat[key])
    fits = value.ndim == len(shape) and all(s is None or s == v for s, v in zip(shape, value.shape))
    if not fits or value.dtype.kind not in "uifb" or (dtype is not None and value.dtype != dtype):
        expected = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        kind = np.dtype(dtype).name if dtype is not None else "numeric"
        raise ValueError(
            f"{path!r}: variable {key!r} should be a {kind} array of shape {expected}, "
            f"got shape {value.shape} and dtype {value.dtype}"
        )
    return value


def mat_labels(
    mat: Dict[str, Any], key: str, path: str, images_key: str, count: int, low: int, high: int
) -> np.ndarray:
    """The labels in the N x 1 variable *key* as int64, checked to be one for
    each of the *count* images of *images_key* and whole numbers in
    *low*..*high*.

    Raises:
        ValueError: the message names the file, the variable and, for a bad
            label, its record number.
    """
    labels = mat_variable(mat, key, path, (None, 1))[:, 0]
    if len(labels) != count:
        raise ValueError(
            f"{path!r} holds {count} images in {images_key!r} but {len(labels)} labels in {key!r}"
        )
    bad = np.flatnonzero((labels < low) | (labels > high) | (labels % 1 != 0))
    if len(bad):
        k = int(bad[0])
        raise ValueError(
            f"{path!r}: record {k} of {key!r} is {labels[k].item()!r}; "
            f"labels must be whole numbers in {low}..{high}"
        )
    return labels.astype(np.int64)


def init_split(
    df: Any,
    name: Any,
    names: Sequence[str],
    shuffle: Any,
    seed: Any,
    train_names: Sequence[str] = ("train",),
) -> None:
    """Check and set ``df.name``, ``df.shuffle`` and ``df.seed``.

    *shuffle* ``None`` means: shuffle when *name* is one of *train_names*.
    """
    df.name = check_name(name, names)
    df.shuffle = check_shuffle(shuffle, name, train_names)
    df.seed = check_seed(seed)


class FileListReader(RandomAccessDataFlow):
    """Yield ``[path, label]`` for the files of one split, in order or shuffled.

    ``__init__`` checks the split name, *shuffle* and *seed*, and that the
    modules in ``_requires`` can be imported; the subclass then finds its
    files and calls :meth:`_set_list`. ``len()`` is the number of files.
    Inside a runner with ``exactly_once=True``, each worker reads only its
    shard (a contiguous block of the files, see :meth:`WorkerInfo.shard`),
    shuffled within it, and ``len()`` counts it.

    Holds the list of file names, not the images. ``imglist`` holds the
    ``(name, label)`` pairs. A list of at least 100,000 of them (ILSVRC12
    has 1.28 million) is packed into a read-only compact store (see "Memory
    with many workers" in the docs) when the process next forks or the
    reader is pickled, so that forked workers share it instead of each
    copying it: about 40 bytes per ILSVRC file instead of 160, in one copy.
    The store gives back the same tuples, by index, slice or iteration; it
    cannot be modified (assign a new list to ``imglist`` instead).
    """

    #: Optional modules the reader needs, imported in ``__init__`` to fail early.
    _requires: Tuple[str, ...] = ()
    name: str
    shuffle: bool

    def __init__(
        self,
        name: str,
        names: Sequence[str],
        shuffle: Any,
        seed: Optional[int],
        *,
        train_names: Sequence[str] = ("train",),
    ) -> None:
        init_split(self, name, names, shuffle, seed, train_names)
        for module in self._requires:
            import_optional(module, type(self).__name__)
        self.full_dir = ""
        self.imglist = []
        self._prefix = ""

    def _set_list(self, full_dir: str, imglist: List[Tuple[str, int]]) -> None:
        """Hold *imglist*, ``(name, label)`` pairs with each name relative to
        *full_dir* and ``/``-separated."""
        self.full_dir = full_dir
        self.imglist = imglist
        self._prefix = os.path.join(full_dir, "")

    @property
    def imglist(self) -> Sequence[Tuple[str, int]]:
        """The ``(name, label)`` pairs of the files, each name relative to
        ``full_dir``: a list, or once packed a read-only compact store giving
        the same tuples. Assigning a new list is allowed (a long one is
        packed in turn before the next fork)."""
        return self._imglist

    @imglist.setter
    def imglist(self, imglist: Sequence[Tuple[str, int]]) -> None:
        self._imglist = imglist
        long_list = isinstance(imglist, (list, tuple)) and len(imglist) >= COMPACT_MIN_ITEMS
        self._pack_pending = long_list
        if long_list:
            pack_before_fork(self)

    def _pack_for_fork(self) -> None:
        """Swap a long ``imglist`` for a compact store before workers fork or
        this reader is pickled for them (once per list)."""
        if self.__dict__.pop("_pack_pending", False):
            owner = type(self).__name__
            self._imglist = packed(self._imglist, check_shared=False, owner=owner)

    def __getstate__(self) -> Dict[str, Any]:
        self._pack_for_fork()  # workers started by spawn get the store too
        return dict(self.__dict__)

    def num_datapoints(self) -> int:
        return len(self.imglist)

    def get(self, index: int) -> Datapoint:
        name, label = self.imglist[index]
        return [self._prefix + name, label]

    def read(self, indices: Sequence[int]) -> Iterator[Datapoint]:
        """``get(i)`` for each of *indices*; from a packed ``imglist``, decoded
        a chunk at a time (when a subclass does not define its own ``get``)."""
        store = self._imglist
        if not isinstance(store, CompactList) or type(self).get is not FileListReader.get:
            return super().read(indices)
        order = indices if isinstance(indices, range) else np.asarray(indices)
        prefix = self._prefix
        return ([prefix + name, label] for name, label in store.read(order))


def read_image(df: FileListReader, index: int) -> Datapoint:
    """``[image, label]`` for file *index* of *df*, decoded by OpenCV as a
    BGR ``uint8`` array of shape ``(h, w, 3)``: the ``get`` of the readers
    that decode their images.

    Raises:
        OSError: the file cannot be read or decoded; the message names it.
    """
    cv2 = import_optional("cv2", type(df).__name__)
    name, label = df.imglist[index]
    path = df._prefix + name
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"{type(df).__name__} could not read {path!r} as an image")
    return [image, label]

"""What every dataset reader needs: where its files live, what to say when
they are missing, and an opt-in download.

The API, used by every module of :mod:`dataflow.dataset`:

* :func:`dataset_dir` -- the directory a reader looks in.
* :func:`find_files` -- the full paths of the files a reader needs; when some
  are missing, either fetches them (only if the caller asked to download) or
  raises the error made by :func:`missing_files_error`.
* :func:`download_file` -- fetch one URL into a directory, atomically.
* :func:`extract_tar` -- unpack a downloaded archive, refusing members that
  would land outside the target directory.
* :class:`InMemorySplit` -- the base of readers that load one split into
  two arrays and yield ``[image, label]`` from them; :func:`check_train_or_test`
  checks the split argument of the readers with a train and a test split.

Nothing here downloads unless a reader was asked to (``download=True``).
"""

from __future__ import annotations

import http.client
import logging
import os
import posixpath
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Iterator, List, Optional, Sequence

import numpy as np

from ..base import Datapoint
from ..sources import RandomAccessDataFlow

__all__ = [
    "DATASETS_ENV",
    "InMemorySplit",
    "check_train_or_test",
    "dataset_dir",
    "download_file",
    "extract_tar",
    "find_files",
    "missing_files_error",
]

logger = logging.getLogger(__name__)

#: The environment variable naming the root of the default dataset directories.
DATASETS_ENV = "DATAFLOW_DATASETS"
_DEFAULT_ROOT = os.path.join("~", ".dataflow", "datasets")
_DOWNLOAD_TIMEOUT_S = 60.0
_DOWNLOAD_CHUNK_BYTES = 1 << 20


def dataset_dir(name: str, dir: Any = None) -> str:
    """The directory a reader looks in: *dir* if given, else ``<root>/<name>``.

    ``<root>`` is ``$DATAFLOW_DATASETS`` when that variable is set and not
    empty, else ``~/.dataflow/datasets``. The directory need not exist.

    Args:
        name: the reader's default sub-directory, e.g. ``"mnist_data"``.
        dir: ``None`` or a path (``str`` or ``os.PathLike``) chosen by the user.

    Raises:
        TypeError: *dir* is neither ``None`` nor a path.

    Example:
        >>> dataset_dir("mnist_data", "/data/mnist")
        '/data/mnist'
    """
    if dir is None:
        root = os.environ.get(DATASETS_ENV) or _DEFAULT_ROOT
        return os.path.join(os.path.expanduser(root), name)
    if not isinstance(dir, (str, os.PathLike)):
        raise TypeError(f"dir must be None or a path, got {dir!r}")
    return os.path.expanduser(os.fspath(dir))


def missing_files_error(
    reader: str, directory: str, missing: Sequence[str], how_to_get: str
) -> FileNotFoundError:
    """The error a reader raises when files it needs are not in *directory*.

    The message names the reader, the directory, each missing file (relative
    to the directory) and how to obtain them.

    Args:
        reader: the class name, e.g. ``"Mnist"``.
        directory: where the files were expected.
        missing: the missing files, relative to *directory*.
        how_to_get: one or more sentences telling the user how to obtain them
            (the official URL, and ``download=True`` when the reader has it).

    Example:
        >>> print(missing_files_error("Toy", "/data", ["a.bin"], "Get it from x."))
        Toy expected these files in '/data', which are missing: 'a.bin'. Get it from x.
    """
    names = ", ".join(repr(m) for m in missing)
    return FileNotFoundError(
        f"{reader} expected these files in {directory!r}, which are missing: {names}. {how_to_get}"
    )


def find_files(
    reader: str,
    directory: str,
    names: Sequence[str],
    *,
    how_to_get: str,
    fetch: Optional[Callable[[List[str]], None]] = None,
) -> List[str]:
    """The full paths of *names* under *directory*, after checking they exist.

    Args:
        reader: the class name, for the error message.
        directory: where the files are.
        names: the files needed, relative to *directory* (``/`` separated).
        how_to_get: for the error message, see :func:`missing_files_error`.
        fetch: ``None`` (the user did not ask to download), or a function
            called with the list of missing names that should create them,
            e.g. by :func:`download_file`.

    Raises:
        FileNotFoundError: some files are missing (still missing after
            *fetch*), from :func:`missing_files_error`.
    """
    paths = [os.path.join(directory, *name.split("/")) for name in names]
    missing = [name for name, path in zip(names, paths) if not os.path.isfile(path)]
    if missing and fetch is not None:
        fetch(missing)
        missing = [name for name, path in zip(names, paths) if not os.path.isfile(path)]
    if missing:
        raise missing_files_error(reader, directory, missing, how_to_get)
    return paths


def download_file(url: str, directory: str, *, timeout: float = _DOWNLOAD_TIMEOUT_S) -> str:
    """Download *url* to ``<directory>/<last part of the URL path>``; return that path.

    The data goes to a temporary file in *directory* first and is renamed when
    complete, so an interrupted download never leaves a truncated file under
    the final name. *directory* is created if needed.

    Args:
        url: what to fetch (``http``, ``https`` or ``file``).
        directory: where to put it.
        timeout: seconds to wait for the server at each step (> 0).

    Raises:
        ValueError: the URL path does not end with a file name.
        OSError: the download failed or was cut short; the message names the URL.
    """
    filename = posixpath.basename(urllib.parse.urlsplit(url).path)
    if not filename:
        raise ValueError(f"url must end with a file name, got {url!r}")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, filename)
    logger.info("Downloading %s to %s", url, path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{filename}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    expected = response.headers.get("Content-Length")
                    shutil.copyfileobj(response, out, _DOWNLOAD_CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as err:  # URLError is an OSError
                if isinstance(err, urllib.error.HTTPError):
                    err.close()  # it holds the connection, which the raised error would keep
                raise OSError(f"could not download {url} to {path}: {err}") from err
            received = out.tell()
        if expected is not None and received != int(expected):
            raise OSError(
                f"could not download {url} to {path}: received {received} bytes of {int(expected)}"
            )
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def extract_tar(path: str, directory: str) -> None:
    """Unpack the tar archive *path* (compressed or not) into *directory*.

    Raises:
        ValueError: a member would be written outside *directory* (an absolute
            path, ``..``, or a link); nothing is extracted then.
    """
    root = os.path.realpath(directory)
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        for member in members:
            target = os.path.realpath(os.path.join(root, member.name))
            unsafe = member.issym() or member.islnk() or member.isdev()
            if unsafe or os.path.commonpath([root, target]) != root:
                raise ValueError(
                    f"{path} holds {member.name!r}, which would not be a plain file or "
                    f"directory inside {directory!r}; refusing to extract it"
                )
        if hasattr(tarfile, "data_filter"):  # Python >= 3.12 and recent patch releases
            tar.extractall(root, members=members, filter="data")
        else:
            tar.extractall(root, members=members)


def check_train_or_test(train_or_test: Any) -> str:
    """*train_or_test* if it is ``"train"`` or ``"test"``, else a ``ValueError``."""
    if train_or_test not in ("train", "test"):
        raise ValueError(f"train_or_test must be 'train' or 'test', got {train_or_test!r}")
    return str(train_or_test)


class InMemorySplit(RandomAccessDataFlow):
    """Base of readers that yield ``[image, label]`` from one split held in memory.

    The subclass's ``__init__`` checks its arguments, sets ``self.shuffle``
    (a bool) and ``self.seed``, loads its files and calls :meth:`_set_arrays`.
    Each pass yields ``[self._convert(images[k]), labels[k]]`` for every *k*,
    in file order, or in a new random order every pass when ``self.shuffle``
    is true. ``len()`` is the number of images. Inside a runner with
    ``exactly_once=True``, each worker reads only its shard (a contiguous
    block of the images, see :meth:`WorkerInfo.shard`), shuffled within it,
    and ``len()`` counts it.

    Subclasses may override the static method ``_convert``, which turns a
    stored image into the yielded one; it must return a new array, so that
    code which modifies a datapoint in place cannot change the stored data.
    """

    shuffle: bool
    _images: np.ndarray
    _labels: List[int]

    @staticmethod
    def _convert(image: np.ndarray) -> np.ndarray:
        """The datapoint's image made from a stored one: a copy by default."""
        return image.copy()

    def _set_arrays(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Hold *images* (first axis: one per datapoint) and their int *labels*."""
        assert len(images) == len(labels), (images.shape, labels.shape)
        self._images = images
        self._labels = labels.tolist()

    def num_datapoints(self) -> int:
        return len(self._labels)

    def get(self, index: int) -> Datapoint:
        return [self._convert(self._images[index]), self._labels[index]]

    def read(self, indices: Sequence[int]) -> Iterator[Datapoint]:
        images, labels, convert = self._images, self._labels, self._convert
        return ([convert(images[k]), labels[k]] for k in indices)

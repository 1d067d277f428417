"""SVMLightData: read an SVMLight (LIBSVM) text file, without scikit-learn."""

from __future__ import annotations

import array
from typing import Any, Iterable, List, Optional, Union

import numpy as np

from .._checks import check_seed as _check_seed
from .._checks import is_int
from ._files import ColumnsData, check_path

__all__ = ["SVMLightData"]


class SVMLightData(ColumnsData):
    """Yield ``[features, label]`` for each data line of an SVMLight (LIBSVM) file.

    A data line reads ``label [qid:n] index:value index:value ... [# comment]``;
    blank lines and comment lines are skipped, and ``qid`` is accepted and
    ignored. Each datapoint is a new dense ``float64`` vector of length
    :attr:`n_features` (features not given are 0) and the label as a
    ``float64`` numpy scalar. ``len()`` is the number of data lines. Lines
    come in file order, or (with *shuffle*) in a new random order every pass.
    Inside a runner with ``exactly_once=True``, each worker reads only its
    shard (a contiguous block of the data lines, see :meth:`WorkerInfo.shard`),
    shuffled within it, and ``len()`` counts it.

    The file is parsed when the dataflow is created and kept in memory in
    sparse form (an index and a value per feature given), so the memory held
    grows with the size of the file, not with lines x features; each
    datapoint's dense vector is made when it is yielded.

    Feature indices are one-based, as the format defines: ``1:0.5`` sets the
    first feature. A file that uses index 0 anywhere is read as zero-based
    (as scikit-learn's ``zero_based="auto"`` does); pass *zero_based* to
    decide instead, e.g. for a zero-based file that never uses feature 0.

    Args:
        filename: the text file to read.
        shuffle: visit the lines in a new random order every pass.
        seed: seed of the shuffle; ``None`` (the default) draws fresh
            entropy at every ``reset_state()``.
        n_features: the length of every feature vector, at least the largest
            index in the file; ``None`` (the default) means the largest index
            (plus one if zero-based). Give it to make two files agree.
        zero_based: ``"auto"`` (the default: zero-based if index 0 occurs),
            ``True`` or ``False``.

    Raises:
        ValueError: a line is malformed: its label is not a number, a
            feature is not ``index:value`` with an integer index, an index is
            negative, repeated, 0 in a one-based file, or beyond
            *n_features*. The message names the file and the line number.

    Example:
        >>> import os, tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = os.path.join(tmp.name, "data.svm")
        >>> with open(path, "w") as f:
        ...     _ = f.write("# two samples\\n+1 1:0.5 3:2  # first\\n\\n-1 qid:4 2:1\\n")
        >>> df = SVMLightData(path, shuffle=False)
        >>> df.reset_state()
        >>> [(x.tolist(), float(y)) for x, y in df]
        [([0.5, 0.0, 2.0], 1.0), ([0.0, 1.0, 0.0], -1.0)]
        >>> tmp.cleanup()
    """

    def __init__(
        self,
        filename: Any,
        shuffle: bool = True,
        *,
        seed: Optional[int] = None,
        n_features: Optional[int] = None,
        zero_based: Union[bool, str] = "auto",
    ) -> None:
        self.filename = check_path(filename, "filename")
        seed = _check_seed(seed)
        if n_features is not None and not is_int(n_features):
            raise TypeError(f"n_features must be None or a non-negative int, got {n_features!r}")
        if n_features is not None and n_features < 0:
            raise ValueError(f"n_features must be None or a non-negative int, got {n_features!r}")
        if not isinstance(zero_based, bool) and zero_based != "auto":
            raise ValueError(f"zero_based must be True, False or 'auto', got {zero_based!r}")
        file = _SVMLightFile(self.filename)
        if zero_based == "auto":
            zero_based = bool(file.indices.size) and int(file.indices.min()) == 0
        indices = file.indices if zero_based else file.indices - 1
        if indices.size and indices.min() < 0:
            position = int(np.argmin(indices))
            index = file.indices[position]
            problem = "is negative" if index else "in a one-based file (pass zero_based=True?)"
            raise file.error(position, f"feature index {index} {problem}")
        largest = int(indices.max()) + 1 if indices.size else 0
        if n_features is not None and n_features < largest:
            position = int(np.argmax(indices))
            raise file.error(
                position,
                f"feature index {file.indices[position]} is beyond n_features={n_features}",
            )
        #: The length of every feature vector.
        self.n_features = largest if n_features is None else n_features
        rows = _DenseRows(file.indptr, indices, file.values, self.n_features)
        super().__init__([rows, file.labels], None, len(file.labels), shuffle, seed)


class _DenseRows:
    """Row *i* of a sparse matrix in CSR form, as a new dense float64 vector."""

    def __init__(
        self, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, n_features: int
    ) -> None:
        self._indptr = indptr
        self._indices = indices
        self._values = values
        self._n_features = n_features

    def __getitem__(self, i: int) -> np.ndarray:
        start, end = self._indptr[i], self._indptr[i + 1]
        row = np.zeros(self._n_features, np.float64)
        row[self._indices[start:end]] = self._values[start:end]
        return row


class _SVMLightFile:
    """The labels and the features (in CSR form: ``indptr``, ``indices``,
    ``values``) of an SVMLight file, and the line number of each data line."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.lines: List[int] = []
        labels = array.array("d")
        indptr = array.array("q", [0])
        indices = array.array("q")
        values = array.array("d")
        with open(filename, "rb") as f:
            for lineno, line in enumerate(f, 1):
                tokens = line.split(b"#", 1)[0].split()
                if not tokens:
                    continue
                self.lines.append(lineno)
                start = 2 if len(tokens) > 1 and tokens[1].startswith(b"qid:") else 1
                try:
                    labels.append(float(tokens[0]))
                    if start == 2:
                        int(tokens[1][4:])
                    for token in tokens[start:]:
                        index, _, value = token.partition(b":")
                        indices.append(int(index))
                        values.append(float(value))
                except (ValueError, OverflowError):
                    raise _error(filename, lineno, _problem(tokens, start)) from None
                if len(set(indices[indptr[-1] :])) != len(tokens) - start:
                    raise _error(filename, lineno, _repeated(indices[indptr[-1] :]))
                indptr.append(len(indices))
        self.labels = np.frombuffer(labels, np.float64)
        self.indptr = np.frombuffer(indptr, np.int64)
        self.indices = np.frombuffer(indices, np.int64)
        self.values = np.frombuffer(values, np.float64)
        for column in (self.labels, self.indptr, self.indices, self.values):
            column.flags.writeable = False

    def error(self, position: int, problem: str) -> ValueError:
        """The error for the line that holds feature number *position*."""
        row = int(np.searchsorted(self.indptr, position, side="right")) - 1
        return _error(self.filename, self.lines[row], problem)


def _error(filename: str, lineno: int, problem: str) -> ValueError:
    return ValueError(f"SVMLightData: {filename!r} line {lineno}: {problem}")


def _problem(tokens: List[bytes], start: int) -> str:
    """What is wrong with a data line whose tokens did not parse."""
    if not _parses(float, tokens[0]):
        return f"the label {tokens[0].decode(errors='replace')!r} is not a number"
    if start == 2 and not _parses(int, tokens[1][4:]):
        return f"{tokens[1].decode(errors='replace')!r} is not qid:<integer>"
    for token in tokens[start:]:
        index, _, value = token.partition(b":")
        if not (_parses(int, index) and _parses(float, value)):
            return f"the feature {token.decode(errors='replace')!r} is not <integer>:<number>"
        if not -(2**63) <= int(index) < 2**63:
            return f"feature index {int(index)} is too large"
    raise AssertionError("_problem() called on a line that parses")  # pragma: no cover


def _repeated(indices: Iterable[int]) -> str:
    seen = set()
    for index in indices:
        if index in seen:
            return f"feature index {index} appears twice"
        seen.add(index)
    raise AssertionError("_repeated() called on distinct indices")  # pragma: no cover


def _parses(convert: Any, token: bytes) -> bool:
    try:
        convert(token)
    except ValueError:
        return False
    return True

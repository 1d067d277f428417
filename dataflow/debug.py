"""Look at datapoints and measure speed: the only module of the library that prints.

Everything printed goes to ``sys.stderr``, like the progress bars, so that a
program's own output on stdout stays clean. The text is also available
without printing: :func:`describe_datapoint` returns the table that
:class:`PrintData` prints, and :func:`measure_throughput` returns the figures
that :class:`TestDataSpeed` shows.
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from tabulate import tabulate
from tqdm import tqdm

from ._checks import check_bool as _check_bool
from ._checks import check_int as _check_int
from ._progress import ProgressBar as _ProgressBar
from .base import DataFlow, Datapoint, ProxyDataFlow, init_args, was_reset

__all__ = [
    "PrintData",
    "TestDataSpeed",
    "Throughput",
    "describe_datapoint",
    "measure_throughput",
    "throughput_table",
]

_DESCRIBE_HEADERS = ("key", "type", "dtype", "shape", "value")
# How often TestDataSpeed(bottleneck=True) updates the stage it shows.
_BOTTLENECK_EVERY_S = 1.0
_MAX_VALUE_CHARS = 40

_Row = Tuple[str, str, str, str, str]


# ---- describing a datapoint ------------------------------------------------


def _short(value: Any) -> str:
    """A one-line text of *value*, at most _MAX_VALUE_CHARS characters."""
    if isinstance(value, float):
        return f"{value:.6g}"
    text = " ".join(repr(value).split())
    if len(text) > _MAX_VALUE_CHARS:
        text = text[: _MAX_VALUE_CHARS - 3] + "..."
    return text


def _value_range(array: np.ndarray) -> str:
    if array.size == 0 or array.dtype.kind not in "biuf":
        return ""
    return f"[{_short(array.min().item())}, {_short(array.max().item())}]"


def _describe(
    rows: List[_Row], key: str, value: Any, depth: int, max_depth: int, max_list: int
) -> None:
    """Append the rows describing *value* (and its elements, if a list or dict) to *rows*."""
    dtype = shape = text = ""
    children: Optional[Iterable[Tuple[Any, Any]]] = None
    if isinstance(value, np.ndarray):
        dtype, shape, text = str(value.dtype), str(value.shape), _value_range(value)
    elif isinstance(value, np.generic):
        dtype, shape, text = str(value.dtype), "()", _short(value.item())
    elif isinstance(value, (list, tuple)):
        shape, children = f"len {len(value)}", enumerate(value)
    elif isinstance(value, dict):
        shape, children = f"len {len(value)}", value.items()
    elif isinstance(value, (str, bytes)):
        shape, text = f"len {len(value)}", _short(value)
    else:  # Python scalars, and duck-typed arrays (torch, jax) by their attributes
        dtype = str(getattr(value, "dtype", ""))
        shape = getattr(value, "shape", "")
        shape = str(tuple(shape)) if isinstance(shape, (tuple, list)) else str(shape)
        text = _short(value)
    rows.append((key, type(value).__name__, dtype, shape, text))
    if children is not None:
        shown = min(len(value), max_list) if depth < max_depth else 0
        for k, child in itertools.islice(children, shown):
            _describe(rows, f"{key}[{k!r}]", child, depth + 1, max_depth, max_list)
        if shown < len(value):
            rows.append((f"{key}[...]", "", "", "", f"{len(value) - shown} more"))


def describe_datapoint(dp: Any, *, max_depth: int = 3, max_list: int = 3) -> str:
    """A table describing each component of the datapoint *dp*.

    One row per component: its index or key, type, dtype, shape, and its
    value range (numeric arrays) or a short value (scalars, strings). The
    elements of a component that is a list, tuple or dict get rows of their
    own, keyed like ``2[0]`` or ``boxes['xy']``, down to *max_depth* levels
    and at most *max_list* per container; a ``[...]`` row counts the ones
    left out. Every top-level component is shown. A *dp* that is not a list,
    tuple or dict is described as a single row keyed ``-``.

    Args:
        dp: the datapoint to describe.
        max_depth: how many levels of nesting to describe, >= 1; default 3
            (1 describes only the components themselves).
        max_list: how many elements of a nested list, tuple or dict to
            describe, >= 0; default 3.

    Example:
        >>> dp = [np.arange(6, dtype="uint8").reshape(2, 3), 7, ["a", "b", "c", "d"]]
        >>> print(describe_datapoint(dp, max_list=2))  # doctest: +NORMALIZE_WHITESPACE
        key     type     dtype    shape    value
        ------  -------  -------  -------  -------
        0       ndarray  uint8    (2, 3)   [0, 5]
        1       int                        7
        2       list              len 4
        2[0]    str               len 1    'a'
        2[1]    str               len 1    'b'
        2[...]                             2 more
    """
    max_depth = _check_int("max_depth", max_depth, 1, "a positive int")
    max_list = _check_int("max_list", max_list, 0, "a non-negative int")
    rows: List[_Row] = []
    if isinstance(dp, (list, tuple, dict)):
        for key, value in dp.items() if isinstance(dp, dict) else enumerate(dp):
            _describe(rows, str(key), value, 1, max_depth, max_list)
    else:
        _describe(rows, "-", dp, 1, max_depth, max_list)
    return tabulate(rows, headers=_DESCRIBE_HEADERS, disable_numparse=True)


class PrintData(ProxyDataFlow):
    """Yield the datapoints of *ds* unchanged, printing a table of the first *num* of them.

    The first pass after each ``reset_state()`` prints, for each of its first
    *num* datapoints, a title line and the :func:`describe_datapoint` table
    (type, dtype, shape and value range of every component) to
    ``sys.stderr``, above any progress bar. Other datapoints and later passes
    go through untouched and at full speed. ``len()`` is ``len(ds)``. Holds
    nothing. ``reset_state()`` resets *ds* unless it was reset already
    (see :func:`~dataflow.base.was_reset`), so *ds* may be a dataflow you
    reset yourself, even a parallel one.

    Args:
        ds: the dataflow to look at.
        num: how many datapoints to print, >= 1; default 1.
        name: a label for the title line, to tell several ``PrintData`` apart;
            default none.
        max_depth: how many levels of nested lists and dicts to describe,
            >= 1; default 3.
        max_list: how many elements of a nested list or dict to describe,
            >= 0; default 3.

    Example:
        >>> df = PrintData(DataFromList([[np.zeros((2, 2)), 1]], shuffle=False), name="raw")
        >>> df.reset_state()
        >>> [dp[1] for dp in df]  # the table went to stderr
        [1]
    """

    def __init__(
        self,
        ds: DataFlow,
        num: int = 1,
        name: Optional[str] = None,
        max_depth: int = 3,
        max_list: int = 3,
    ) -> None:
        super().__init__(ds)
        self.num = _check_int("num", num, 1, "a positive int")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be None or a str, got {name!r}")
        self.name = name
        self.max_depth = _check_int("max_depth", max_depth, 1, "a positive int")
        self.max_list = _check_int("max_list", max_list, 0, "a non-negative int")
        self._print_next_pass = True

    def reset_state(self) -> None:
        _reset_once(self.ds)
        self._print_next_pass = True

    def __iter__(self) -> Iterator[Datapoint]:
        if not self._print_next_pass:
            return iter(self.ds)
        self._print_next_pass = False
        return self._print_first(iter(self.ds))

    # The position is the input's: printing changes no datapoint.
    own_state_dict = ProxyDataFlow.own_state_dict
    load_own_state_dict = ProxyDataFlow.load_own_state_dict

    def _print_first(self, it: Iterator[Datapoint]) -> Iterator[Datapoint]:
        title = "PrintData" if self.name is None else f"PrintData ({self.name})"
        for k, dp in enumerate(itertools.islice(it, self.num)):
            table = describe_datapoint(dp, max_depth=self.max_depth, max_list=self.max_list)
            tqdm.write(f"{title}: datapoint {k}\n{table}", file=sys.stderr)
            yield dp
        yield from it


def _reset_once(ds: DataFlow) -> None:
    """Reset *ds* unless it was reset already: a parallel dataflow refuses a second reset."""
    if not was_reset(ds):
        ds.reset_state()


# ---- measuring speed -------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    """What :func:`measure_throughput` measured: *datapoints* taken in *seconds*.

    *nbytes* is the total ``nbytes`` of the numpy arrays in those datapoints
    (found in nested lists, tuples and dicts too); other objects count 0.

    Example:
        >>> t = Throughput("demo", datapoints=500, seconds=0.25, nbytes=3_000_000)
        >>> t.datapoints_per_s, t.mb_per_s
        (2000.0, 12.0)
        >>> print(t)
        demo: 500 datapoints in 0.25 s: 2,000.0 datapoints/s, 12.0 MB/s
    """

    name: str
    datapoints: int
    seconds: float
    nbytes: int

    @property
    def datapoints_per_s(self) -> float:
        return self.datapoints / self.seconds

    @property
    def mb_per_s(self) -> float:
        """Megabytes (10**6 bytes) of numpy arrays per second."""
        return self.nbytes / self.seconds / 1e6

    def __str__(self) -> str:
        return (
            f"{self.name}: {self.datapoints} datapoints in {self.seconds:.2f} s: "
            f"{self.datapoints_per_s:,.1f} datapoints/s, {self.mb_per_s:,.1f} MB/s"
        )


def _nbytes(obj: Any) -> int:
    """The total ``nbytes`` of the numpy arrays in *obj* and in its nested lists and dicts."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        obj = obj.values()
    elif not isinstance(obj, (list, tuple)):
        return 0
    total = 0
    for component in obj:  # arrays inline: this runs for every timed datapoint
        if isinstance(component, np.ndarray):
            total += component.nbytes
        elif isinstance(component, (list, tuple, dict)):
            total += _nbytes(component)
    return total


def measure_throughput(
    ds: DataFlow, size: int = 1000, *, warmup: int = 0, name: Optional[str] = None
) -> Throughput:
    """Take *size* datapoints from *ds* under a progress bar and return how fast that went.

    Takes *warmup* datapoints first without timing them (time to start
    workers and fill buffers), then times the next *size* datapoints, or as
    many as *ds* has left, counting the bytes of their numpy arrays. The
    progress bar goes to ``sys.stderr``. *ds* is reset first unless it was
    reset already (see :func:`~dataflow.base.was_reset`); closing it stays
    with you. One pass is started and abandoned when done.

    Args:
        ds: the dataflow to measure.
        size: how many datapoints to time, >= 1; default 1000.
        warmup: how many datapoints to take before timing, >= 0; default 0.
        name: the label of the progress bar and of the result; default the
            class name of *ds*.

    Returns:
        A :class:`Throughput` with ``datapoints``, ``seconds``, ``nbytes``,
        ``datapoints_per_s`` and ``mb_per_s``; :func:`throughput_table`
        formats a list of them.

    Raises:
        RuntimeError: *ds* ended before yielding any datapoint to time.

    Example:
        >>> df = DataFromList([[np.zeros(1000, "uint8")] for _ in range(100)], shuffle=False)
        >>> df.reset_state()
        >>> result = measure_throughput(df, size=50, warmup=10)
        >>> result.datapoints, result.nbytes, result.datapoints_per_s > 0
        (50, 50000, True)

    Note:
        The timed loop also drives the bar and counts bytes, which costs
        under a microsecond per datapoint; rates of a million datapoints per
        second or more read low.
    """
    size = _check_int("size", size, 1, "a positive int")
    warmup = _check_int("warmup", warmup, 0, "a non-negative int")
    label = type(ds).__name__ if name is None else name
    _reset_once(ds)
    it = iter(ds)
    try:
        warm = _ProgressBar(
            itertools.islice(it, warmup),
            total=warmup,
            desc=f"{label} warmup",
            unit="dp",
            leave=False,
            disable=not warmup,
        )
        skipped = sum(1 for _ in warm)
        count = nbytes = 0
        start = time.perf_counter()
        for dp in _ProgressBar(itertools.islice(it, size), total=size, desc=label, unit="dp"):
            count += 1
            nbytes += _nbytes(dp)
        seconds = time.perf_counter() - start
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
    if count == 0:
        raise RuntimeError(
            f"measure_throughput: {label} yielded no datapoint to time: it ended "
            f"after the {skipped} datapoints of warmup={warmup}"
        )
    return Throughput(label, count, seconds, nbytes)


def throughput_table(results: Sequence[Throughput]) -> str:
    """A table of several :class:`Throughput` results, one row each (GitHub markdown).

    Example:
        >>> rows = [Throughput("list", 1000, 0.5, 4_000_000), Throughput("batched", 40, 0.25, 0)]
        >>> print(throughput_table(rows))  # doctest: +NORMALIZE_WHITESPACE
        | dataflow   |   datapoints |   seconds |   datapoints/s |   MB/s |
        |------------|--------------|-----------|----------------|--------|
        | list       |         1000 |      0.50 |        2,000.0 |    8.0 |
        | batched    |           40 |      0.25 |          160.0 |    0.0 |
    """
    rows = [(r.name, r.datapoints, r.seconds, r.datapoints_per_s, r.mb_per_s) for r in results]
    return tabulate(
        rows,
        headers=("dataflow", "datapoints", "seconds", "datapoints/s", "MB/s"),
        tablefmt="github",
        floatfmt=("", "", ".2f", ",.1f", ",.1f"),
    )


class TestDataSpeed(ProxyDataFlow):
    """Measure how many datapoints per second *ds* yields: call ``start()``.

    ``start()`` calls ``ds.reset_state()`` unless *ds* was reset already (by
    you, by ``reset_state()`` or by an earlier ``start()``; see
    :func:`~dataflow.base.was_reset`), takes
    *warmup* datapoints untimed, then times *size* datapoints (fewer if *ds*
    ends first) under a progress bar, prints a one-line summary (datapoints/s
    and MB/s of numpy arrays) to ``sys.stderr`` and returns the datapoints
    per second.
    Iterating a ``TestDataSpeed`` yields the datapoints of *ds* unchanged and
    measures nothing, so one left in a pipeline costs nothing; ``len()`` is
    ``len(ds)``. Holds nothing.

    With *bottleneck*, ``start()`` runs *ds* under :func:`~dataflow.profile`
    (worker stages included when it resets *ds*), shows the stage that limits
    the pipeline beside the progress bar as it runs (updated every second),
    and prints the verdict after the summary; the whole report is then in
    :attr:`report`.

    Args:
        ds: the dataflow to measure, reset or not (``start()`` resets it
            if needed).
        size: how many datapoints to time, >= 1; default 5000.
        warmup: how many datapoints to take before timing, >= 0; default 0.
        bottleneck: also find the slowest stage while measuring (default
            ``False``). Profiling costs some speed: about 15% on a chain of
            stages that each take a fraction of a microsecond, nothing
            measurable next to a decoder.

    Attributes:
        report: the :class:`~dataflow.profiling.ProfileReport` of the last
            ``start()`` with *bottleneck* (``None`` before).

    Example:
        >>> df = DataFromList([[i] for i in range(100)], shuffle=False)
        >>> TestDataSpeed(df, size=50).start() > 0
        True
        >>> speed = TestDataSpeed(MapData(df, lambda dp: dp), size=50, bottleneck=True)
        >>> speed.start() > 0, speed.report.datapoints
        (True, 50)

    Note:
        tensorpack's ``TestDataSpeed`` also ran the measurement at the start of
        every pass; this one only passes datapoints through. Use
        :func:`measure_throughput` to get the numbers without the printed
        summary.
    """

    __test__ = False  # the name starts with "Test": tell pytest it is not a test class

    def __init__(
        self, ds: DataFlow, size: int = 5000, warmup: int = 0, *, bottleneck: bool = False
    ) -> None:
        super().__init__(ds)
        # Not "self.size": that is the tensorpack alias of len().
        self.test_size = _check_int("size", size, 1, "a positive int")
        self.warmup = _check_int("warmup", warmup, 0, "a non-negative int")
        self.bottleneck = _check_bool("bottleneck", bottleneck)
        self.report: Optional[Any] = None

    def _repr_args(self) -> Dict[str, Any]:
        return init_args(self, size=self.test_size)

    def reset_state(self) -> None:
        _reset_once(self.ds)

    def start(self) -> float:
        """Reset *ds* if it was not, measure it, print the summary, and return datapoints per
        second."""
        if self.bottleneck:
            return self._start_profiled()
        result = measure_throughput(
            self.ds, self.test_size, warmup=self.warmup, name=type(self).__name__
        )
        tqdm.write(str(result), file=sys.stderr)
        return result.datapoints_per_s

    def _start_profiled(self) -> float:
        from .profiling import _profile

        label = type(self).__name__
        warmup, total = self.warmup, self.warmup + self.test_size
        marks = {"start": 0.0, "shown": 0.0, "bytes": 0}
        with _ProgressBar(total=self.test_size, desc=label, unit="dp") as bar:

            def watch(count: int, report_now: Callable[[], Any]) -> None:
                now = time.perf_counter()
                if count <= warmup:
                    marks["start"] = now
                    return
                bar.update(1)
                if now - marks["shown"] >= _BOTTLENECK_EVERY_S:
                    marks["shown"] = now
                    verdict = report_now().bottleneck
                    if verdict is not None:
                        bar.set_postfix_str(f"bottleneck: {verdict.stage.name}", refresh=False)

            if not warmup:
                marks["start"] = time.perf_counter()
            report = self.report = _profile(self.ds, None, total, watch)
        seconds = time.perf_counter() - marks["start"]
        count = max(0, report.datapoints - warmup)
        if count == 0:
            raise RuntimeError(
                f"{label}: {type(self.ds).__name__} yielded no datapoint to time: it ended "
                f"after the {report.datapoints} datapoints of warmup={warmup}"
            )
        root_bytes = report.stages[0].bytes_out or 0
        nbytes = round(root_bytes * count / report.datapoints) if report.datapoints else 0
        result = Throughput(label, count, seconds, nbytes)
        tqdm.write(str(result), file=sys.stderr)
        if report.bottleneck is not None:
            tqdm.write(f"bottleneck: {report.bottleneck.stage.name}", file=sys.stderr)
            tqdm.write(str(report.bottleneck), file=sys.stderr)
        return result.datapoints_per_s

"""Whether a pipeline is provably deterministic, and the warning for clones of one.

A runner without ``exactly_once=True`` runs a copy (a clone) of its dataflow
in every worker. Clones of a dataflow without randomness all yield the same
datapoints in the same order, so each datapoint arrives once per worker and
a pass of the runner holds only about ``1 / num_workers`` of them. The
runners warn about it, but only when they can prove the pipeline has no
randomness: every node is one of the library's dataflows known to be
deterministic with the options it was given. A node this module does not
know (a class of your own, a subclass of a library class, ``MapData`` with
an arbitrary function, an augmentor) might be random, so it gets no warning:
a false alarm would teach people to ignore the real ones.
"""

from __future__ import annotations

import collections
import warnings
import weakref
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from .base import DataFlow

__all__ = ["ClonesRepeatWarning", "is_deterministic", "warn_if_clones_repeat"]


class ClonesRepeatWarning(UserWarning):
    """A runner runs several clones of a dataflow that has no randomness.

    Every clone yields the same datapoints in the same order, so each
    datapoint arrives once per worker, and a pass of the runner is not a pass
    of the data. Use ``exactly_once=True`` to split the datapoints among the
    workers instead.
    """


def _name(df: Any) -> str:
    kind = type(df)
    return f"{kind.__module__}.{kind.__qualname__}"


def _unshuffled(df: Any) -> Optional[List[DataFlow]]:
    flag = getattr(df, "shuffle", None)
    return [] if isinstance(flag, (bool, np.bool_)) and not flag else None


def _proxy(df: Any) -> Optional[List[DataFlow]]:
    return [df.ds]


def _combined(df: Any) -> Optional[List[DataFlow]]:
    return list(df.df_lists)


def _unshuffled_proxy(df: Any) -> Optional[List[DataFlow]]:
    return None if _unshuffled(df) is None else [df.ds]


# Containers whose iteration is the same every pass and in every copy.
_PLAIN_ITERABLES = (list, tuple, range, collections.deque)


def _plain_iterable(df: Any) -> Optional[List[DataFlow]]:
    return [] if type(getattr(df, "_itr", None)) in _PLAIN_ITERABLES else None


# The library's dataflows that are deterministic (given the options the function
# checks), by the qualified name of their exact class. The function returns the
# node's inputs, or None when the node may be random. Everything else is unknown.
_KNOWN: Dict[str, Callable[[Any], Optional[List[DataFlow]]]] = {
    # sources, deterministic without shuffle= (they draw no other random numbers)
    "dataflow.sources.DataFromList": _unshuffled,
    "dataflow.sources.DataFromIterable": _plain_iterable,
    "dataflow.formats.lmdb.LMDBData": _unshuffled,
    "dataflow.formats.lmdb._SerializedLMDBData": _unshuffled,
    "dataflow.formats.caffe.CaffeLMDB": _unshuffled,
    "dataflow.formats.hdf5.HDF5Data": _unshuffled,
    "dataflow.formats._files.ColumnsData": _unshuffled,
    "dataflow.formats.svmlight.SVMLightData": _unshuffled,
    "dataflow.image.source.ImageFromFile": _unshuffled,
    "dataflow.dataset.bsds500.BSDS500": _unshuffled,
    "dataflow.dataset.caltech101.Caltech101Silhouettes": _unshuffled,
    "dataflow.dataset.cifar.Cifar10": _unshuffled,
    "dataflow.dataset.cifar.Cifar100": _unshuffled,
    "dataflow.dataset.ilsvrc.ILSVRC12Files": _unshuffled,
    "dataflow.dataset.ilsvrc.ILSVRC12": _unshuffled,
    "dataflow.dataset.mnist.Mnist": _unshuffled,
    "dataflow.dataset.mnist.FashionMnist": _unshuffled,
    "dataflow.dataset.places365.Places365Standard": _unshuffled,
    "dataflow.dataset.svhn.SVHNDigit": _unshuffled,
    "dataflow.dataset.tinyimagenet.TinyImageNet": _unshuffled,
    # wrappers that only regroup, select, repeat or look at datapoints
    "dataflow.batch.BatchData": _proxy,
    "dataflow.batch.BatchDataByShape": _proxy,
    "dataflow.transforms.SelectComponent": _proxy,
    "dataflow.transforms.RepeatedData": _proxy,
    "dataflow.transforms.RepeatedDataPoint": _proxy,
    "dataflow.transforms.FixedSizeData": _proxy,
    "dataflow.buffer.CacheData": _unshuffled_proxy,
    "dataflow.debug.PrintData": _proxy,
    "dataflow.debug.TestDataSpeed": _proxy,
    "dataflow.combine.ConcatData": _combined,
    "dataflow.combine.JoinData": _combined,
}

# Pipelines deeper or wider than this are not examined (and get no warning).
_MAX_NODES = 1000


def is_deterministic(df: DataFlow) -> bool:
    """Whether *df* provably yields the same datapoints in the same order in every copy.

    True only when every node of the pipeline (following ``ds`` of wrappers
    and ``df_lists`` of combined dataflows) is a library dataflow known to
    draw no random numbers with its options: ``DataFromList(shuffle=False)``,
    ``DataFromIterable`` over a list, tuple, range or deque, the
    storage-format and dataset readers and ``ImageFromFile`` without
    shuffling, ``BatchData``, ``SelectComponent``, ``RepeatedData``,
    ``ConcatData``, ``JoinData``, ``CacheData`` without shuffling and the
    like. False when some node is random or unknown (a class of your own, a
    subclass, ``MapData``, augmentors, a parallel dataflow).

    Example:
        >>> is_deterministic(BatchData(DataFromList([[1], [2]], shuffle=False), 2))
        True
        >>> is_deterministic(BatchData(DataFromList([[1], [2]]), 2))  # shuffled
        False
        >>> is_deterministic(MapData(DataFromList([[1]], shuffle=False), lambda dp: dp))
        False
    """
    pending = [df]
    seen = set()
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if len(seen) > _MAX_NODES:
            return False
        rule = _KNOWN.get(_name(node))
        inputs = None if rule is None else rule(node)
        if inputs is None:
            return False
        pending.extend(inputs)
    return True


# The runners already checked: each warns at most once.
_CHECKED: weakref.WeakSet[Any] = weakref.WeakSet()


def warn_if_clones_repeat(runner: Any, ds: DataFlow, num_workers: int) -> None:
    """Warn (once per *runner*) when its *num_workers* clones of *ds* would repeat each other.

    Called by a runner without ``exactly_once=True`` when a pass starts, from
    its iteration generator, so the warning points at the loop that iterates
    the runner.
    """
    if runner in _CHECKED:
        return
    _CHECKED.add(runner)
    if num_workers < 2 or not is_deterministic(ds):
        return
    owner = type(runner).__name__
    warnings.warn(
        f"{owner} runs {num_workers} clones of {type(ds).__name__}, which has no randomness: "
        f"every clone yields the same datapoints in the same order, so each datapoint "
        f"arrives {num_workers} times and a pass holds only about 1/{num_workers} of them. "
        f"Pass exactly_once=True to {owner} to split the datapoints among the workers, "
        "each once per pass",
        ClonesRepeatWarning,
        stacklevel=4,  # here, the runner's generator, ParallelBase.__iter__, the loop
    )

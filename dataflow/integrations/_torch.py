"""Feed PyTorch: a DataFlow as a ``torch.utils.data.IterableDataset``."""

from __future__ import annotations

import os
import warnings
from typing import Any, Dict, Iterator, Optional

import numpy as np

from .._checks import check_int
from .._optional import import_optional
from ..base import DataFlow, Datapoint
from ._prefetch import Prefetcher
from ._share import ShardReader, Share
from ._tree import is_numeric_array, map_leaves

__all__ = ["to_torch", "to_tensors"]

_STATE_VERSION = 1


def _torch() -> Any:
    return import_optional("torch", "dataflow.to_torch")


def to_tensors(dp: Any, *, int64: bool = True) -> Any:
    """*dp* with every numpy array (and numpy scalar) in it a ``torch.Tensor``.

    Lists, tuples and dicts are converted item by item; anything else (Python
    numbers, strings, tensors) is left as it is. A writable array becomes a
    tensor that shares its memory (no copy); a read-only one is copied, since
    a tensor cannot be read-only. With *int64*, signed integer arrays
    narrower than 64 bits become ``int64``, which PyTorch wants for class
    indices (``cross_entropy`` refuses ``int32`` targets). Arrays of a dtype
    PyTorch has no tensor type for (strings, objects) are left as arrays.

    Example:
        >>> to_tensors([np.array([1, 2], np.int32), "a"])
        [tensor([1, 2]), 'a']
    """
    return _to_tensors(dp, _torch(), int64)


def _to_tensors(dp: Any, torch: Any, int64: bool) -> Any:
    return map_leaves(dp, lambda x: _tensor(x, torch, int64))


def _tensor(x: Any, torch: Any, int64: bool) -> Any:
    """A numeric numpy array or scalar *x* as a tensor; anything else as it is."""
    if not is_numeric_array(x):
        return x
    arr = np.asarray(x)
    if int64 and arr.dtype.kind == "i" and arr.dtype.itemsize < 8:
        arr = arr.astype(np.int64)
    elif not arr.flags.writeable or not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))  # a writable, native copy
    return torch.from_numpy(arr)


def _moved(x: Any, pin: bool, device: Any) -> Any:
    """A tensor *x* pinned and/or moved to *device*; anything else as it is."""
    if not (hasattr(x, "pin_memory") and hasattr(x, "to")):
        return x
    if pin:
        x = pin_tensor(x)
    return x if device is None else x.to(device, non_blocking=pin)


def pin_tensor(tensor: Any) -> Any:
    """``tensor.pin_memory()`` (a module function, so tests can watch it)."""
    return tensor.pin_memory()


def to_torch(
    df: DataFlow,
    *,
    rank: Optional[int] = None,
    world_size: Optional[int] = None,
    pin_memory: bool = False,
    device: Any = None,
    prefetch: int = 2,
    seed: Optional[int] = None,
    int64: bool = True,
) -> Any:
    """*df* as a ``torch.utils.data.IterableDataset`` of tensors.

    The recommended use lets the pipeline's own runners do the parallel
    work and gives the ``DataLoader`` nothing to batch::

        loader = DataLoader(to_torch(df), batch_size=None, num_workers=0)

    **Sharding.** The pipeline is read in shares, so that one pass yields
    every datapoint once in all:

    * with ``DataLoader(num_workers=k)``, each of the *k* torch workers
      reads its own shard, as the workers of an exactly-once runner do
      (the sources must shard themselves: the library's sources and readers
      do; a pipeline whose length is unknown, or that starts worker
      processes of its own, is refused at once with what to do instead);
    * with *rank* and *world_size* (by default those of
      ``torch.distributed`` when it is initialized), each rank reads a
      disjoint share, and every rank yields **the same number of
      datapoints per pass** (the least any rank holds; the few above it
      are dropped, as ``DistributedSampler(drop_last=True)`` drops them),
      so a collective never waits at the end of an epoch for a rank that
      ran out. This needs ``len(df)``.

    Which indices each share holds is drawn anew every pass, from *seed*
    (default: fresh entropy with one rank, ``0`` with several, which must
    agree) and the pass number. Call :meth:`set_epoch` at the start of each
    epoch, as with ``DistributedSampler``, when the torch workers are not
    persistent: each epoch's new workers would otherwise all count it as
    their first pass.

    **Tensors.** Numpy arrays become tensors without a copy when they are
    writable (read-only ones are copied); signed integer arrays narrower
    than 64 bits become ``int64`` unless ``int64=False``. See
    :func:`dataflow.integrations.to_tensors`.

    **Memory and device** (with ``num_workers=0``): ``pin_memory=True`` pins
    each tensor (with a warning and no effect when there is no CUDA
    device); ``device=`` moves each datapoint there. Either one runs in a
    background thread that keeps *prefetch* datapoints ready. In torch
    workers, use the ``DataLoader``'s own ``pin_memory=True`` instead.

    **Resume.** ``state_dict()`` and ``load_state_dict()`` save and restore
    the position of the pipeline (see :doc:`checkpointing`), including what
    the background thread read ahead, when the dataset is read in the
    training process (``num_workers=0``). With that thread, the pipeline's
    state is taken after every datapoint it reads (for a pipeline that
    cannot save its position, ``state_dict()`` raises why, and reading is
    not affected).

    ``len()`` is the number of datapoints per pass for this rank, when the
    pipeline knows its length. The dataset calls ``df.reset_state()``
    itself, once in every process that reads it: do not call it first.

    Args:
        df: the pipeline; not reset yet.
        rank, world_size: this process's rank and the number of ranks; both
            or neither. Default: ``torch.distributed``'s, else one rank.
        pin_memory: pin the tensors (only with ``num_workers=0``).
        device: a ``torch.device`` (or its name) to move the tensors to.
        prefetch: how many datapoints the background thread keeps ready.
        seed: seeds the partition of the data among shares.
        int64: convert narrow signed integer arrays to ``int64``.

    Example:
        >>> import torch
        >>> ds = to_torch(BatchData(DataFromList([[i, 2 * i] for i in range(6)],
        ...                                      shuffle=False), 3))
        >>> loader = torch.utils.data.DataLoader(ds, batch_size=None)
        >>> [(x.tolist(), y.dtype) for x, y in loader]
        [([0, 1, 2], torch.int64), ([3, 4, 5], torch.int64)]
        >>> len(ds)
        2
    """
    torch = _torch()
    if not isinstance(df, DataFlow):
        raise TypeError(f"to_torch: df must be a DataFlow, got {type(df).__name__}")
    rank, world_size = _rank_and_world(torch, rank, world_size)
    prefetch = check_int("prefetch", prefetch, 1, "a positive int")
    if seed is not None:
        seed = check_int("seed", seed, 0, "a non-negative int or None")
    if (pin_memory or device is not None) and not isinstance(pin_memory, bool):
        raise TypeError(f"pin_memory must be a bool, got {type(pin_memory).__name__}")
    if device is not None:
        device = torch.device(device)
    share = Share(rank, world_size, seed, "to_torch")
    cls = _dataset_class(torch)
    return cls(df, share, bool(pin_memory), device, prefetch, bool(int64))


def _rank_and_world(torch: Any, rank: Any, world_size: Any) -> Any:
    if (rank is None) != (world_size is None):
        raise ValueError("to_torch: give both rank and world_size, or neither")
    if rank is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1
    world_size = check_int("world_size", world_size, 1, "a positive int")
    rank = check_int("rank", rank, 0, "an int in [0, world_size)")
    if rank >= world_size:
        raise ValueError(f"to_torch: rank={rank} is not below world_size={world_size}")
    return rank, world_size


_CLASSES: Dict[int, Any] = {}


def _dataset_class(torch: Any) -> Any:
    """The IterableDataset subclass, made once (torch is imported only when used)."""
    cls = _CLASSES.get(id(torch))
    if cls is None:
        cls = _CLASSES[id(torch)] = type(
            "DataFlowDataset", (_DatasetMixin, torch.utils.data.IterableDataset), {}
        )
        cls.__module__ = __name__
    return cls


class _DatasetMixin:
    """The body of ``DataFlowDataset``: see :func:`to_torch`."""

    def __init__(
        self, df: DataFlow, share: Share, pin: bool, device: Any, prefetch: int, int64: bool
    ) -> None:
        self.df, self.share = df, share
        self.pin, self.device, self.prefetch, self.int64 = pin, device, prefetch, int64
        self._reader: Optional[ShardReader] = None
        self._reader_key: Any = None
        self._reader_pid = 0
        self._epoch: Optional[int] = None  # set_epoch's
        self._passes = 0  # passes started in this process
        self._pending: Optional[Dict[str, Any]] = None  # a loaded state
        self._live: Optional[Dict[str, Any]] = None  # the pass being read here

    # -- torch's and the user's API ---------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """The number of the coming pass, which draws its partition (as
        ``DistributedSampler.set_epoch``): call it before each epoch when
        the ``DataLoader``'s workers are not persistent."""
        self._epoch = check_int("epoch", epoch, 0, "a non-negative int")

    def __len__(self) -> int:
        share = self.share
        if share.world_size == 1:
            return len(self.df)
        # One shard per rank (torch workers split a rank's shard further, which
        # leaves its total alone unless the pipeline batches within each).
        return min(ShardReader(share, self.df, 0, 1, False).lengths())

    def __iter__(self) -> Iterator[Datapoint]:
        torch = _torch()
        info = torch.utils.data.get_worker_info()
        if info is not None and (self.pin or self.device is not None):
            raise RuntimeError(
                "to_torch(pin_memory=..., device=...) works in the training process only; with "
                "DataLoader(num_workers>0) pass pin_memory=True to the DataLoader and move "
                "batches to the device in the training loop"
            )
        reader = self._reader_for(info)
        pending, self._pending = self._pending, None
        start = 0
        if pending is not None:
            with reader.context():
                self.df.load_state_dict(pending["df"])
            self._passes = pending["passes"]
            if pending["mid_pass"]:
                start = pending["count"]
            else:
                self._passes += 1
        else:
            self._passes += 1
        number = self._pass_number(info)
        passes, int64 = self._passes, self.int64
        pin = self.pin and _can_pin(torch)
        device = self.device

        def leaf(x: Any) -> Any:
            return _moved(_tensor(x, torch, int64), pin, device)

        def produce() -> Iterator[Any]:
            for dp in reader.iterate(number, start):
                yield map_leaves(dp, leaf)  # one walk: to tensors, pinned, moved

        if not (self.pin or device is not None):
            # A pass abandoned by the caller stays the live one: its state is where the
            # caller stopped, as for an abandoned pass of any dataflow.
            self._live = {"passes": passes, "prefetcher": None}
            yield from produce()
            self._live = None
            return
        # The state before the pass, for a checkpoint taken before its first datapoint.
        first = {"mid_pass": False, "passes": passes - 1, **self._snapshot(reader)}
        if pending is not None and start:
            first = {"mid_pass": True, "passes": passes, "count": start, "df": pending["df"]}

        def snapshot() -> Dict[str, Any]:
            return {"mid_pass": True, "passes": passes, **self._snapshot(reader)}

        prefetcher = Prefetcher(produce, self.prefetch, "dataflow.to_torch", snapshot)
        prefetcher.snapshot = first
        self._live = {"passes": passes, "prefetcher": prefetcher}
        try:
            yield from prefetcher
        finally:
            prefetcher.close()
        self._live = None

    def state_dict(self) -> Dict[str, Any]:
        """The position just after the last datapoint handed out, as JSON-compatible data.

        Only for a dataset read in the training process (``num_workers=0``).
        """
        if _torch().utils.data.get_worker_info() is not None or (
            self._reader is not None and self._reader.in_worker_process
        ):
            raise RuntimeError(_NO_STATE_IN_WORKERS)
        if self._pending is not None:  # loaded, not read yet: still that position
            return {"version": _STATE_VERSION, **self._pending}
        reader = self._reader_for(None)
        live = self._live
        if live is None:
            state = {"mid_pass": False, "passes": self._passes, **self._snapshot(reader)}
        elif live["prefetcher"] is not None:
            state = live["prefetcher"].snapshot
        else:
            state = {"mid_pass": True, "passes": live["passes"], **self._snapshot(reader)}
        if "error" in state:
            raise state["error"]
        return {"version": _STATE_VERSION, **state}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue from *state* (of :meth:`state_dict`) at the next ``iter()``:
        the rest of the pass it was taken in, then the passes after it."""
        keys = {"version", "mid_pass", "passes", "count", "df"}
        if not isinstance(state, dict) or set(state) != keys:
            raise ValueError(
                "load_state_dict: not a state of a to_torch dataset (expected a dict with the "
                f"keys {sorted(keys)}, as DataFlowDataset.state_dict() returns)"
            )
        if state["version"] != _STATE_VERSION:
            raise ValueError(
                f"load_state_dict: the state has version {state['version']!r}; this version of "
                f"dataflow reads version {_STATE_VERSION}"
            )
        if _torch().utils.data.get_worker_info() is not None:
            raise RuntimeError(_NO_STATE_IN_WORKERS)
        self._reader_for(None)
        self._pending = {k: state[k] for k in keys - {"version"}}

    def _reader_for(self, info: Any) -> ShardReader:
        key = None if info is None else (info.id, info.num_workers)
        if self._reader is not None and self._reader_pid != os.getpid():
            self._reader = None  # copied into a DataLoader worker: read anew there
        if self._reader is None or self._reader_key != key:
            if self._reader is not None:
                raise RuntimeError(
                    "to_torch: this dataset was read in one place and is now read in another "
                    "(the training process and DataLoader workers); make a new one with "
                    "to_torch(...) for each DataLoader"
                )
            worker, count = (0, 1) if info is None else (info.id, info.num_workers)
            reader = ShardReader(self.share, self.df, worker, count, info is not None)
            reader.reset()
            self._reader, self._reader_key, self._reader_pid = reader, key, os.getpid()
        return self._reader

    def _pass_number(self, info: Any) -> int:
        """The number that draws this pass's partition, alike in every reader.

        It mixes the epoch of :meth:`set_epoch` (workers made anew each epoch
        get it) and the passes this copy has started (persistent workers,
        and the training process, count them); with one rank and no
        ``set_epoch``, also torch's base seed, drawn per epoch alike in the
        workers of a ``DataLoader``.
        """
        words = [0 if self._epoch is None else self._epoch + 1, self._passes - 1]
        if info is not None and self.share.world_size == 1 and self._epoch is None:
            words.append(int(info.seed - info.id) % 2**63)
        if words == [0, self._passes - 1]:
            return self._passes - 1
        return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0])

    def _snapshot(self, reader: ShardReader) -> Dict[str, Any]:
        with reader.context():
            try:
                return {"count": reader.count, "df": self.df.state_dict()}
            except Exception as err:
                # Reading goes on; only state_dict() raises it, if it is ever called.
                return {"count": reader.count, "df": None, "error": err}

    def __reduce__(self) -> Any:
        # The class is made at run time (torch is imported only when used), so pickle
        # (spawn and forkserver workers) rebuilds it by this module's function.
        args = (self.df, self.share, self.pin, self.device, self.prefetch, self.int64)
        return _rebuild, (args, self._epoch)

    def __repr__(self) -> str:
        return f"DataFlowDataset({self.df!r})"


def _rebuild(args: Any, epoch: Optional[int]) -> Any:
    dataset = _dataset_class(_torch())(*args)
    dataset._epoch = epoch
    return dataset


def _can_pin(torch: Any) -> bool:
    if torch.cuda.is_available():
        return True
    if not _WARNED:
        _WARNED.append(True)
        warnings.warn(
            "to_torch(pin_memory=True) has no effect: no CUDA device is available",
            UserWarning,
            stacklevel=2,
        )
    return False


_WARNED: list = []

_NO_STATE_IN_WORKERS = (
    "to_torch: the position of a dataset read in DataLoader worker processes cannot be "
    "saved from the training process; read it with num_workers=0 (the pipeline's runners "
    "do the parallel work) to checkpoint it"
)

"""One reader's share of a pipeline's passes: rank *r* of *R*, framework worker *w* of *k*.

A framework's loader may read one pipeline from many places at once: the
ranks of a distributed job, the worker processes of a PyTorch
``DataLoader``, the hosts of a JAX job. Each of those readers is one shard,
``r * k + w`` of ``R * k``, and reads the pipeline inside a worker context
that says so (:mod:`dataflow._worker_state`): the sources shard themselves
exactly as they do in the workers of an exactly-once runner, and a runner
inside the pipeline splits the shard again among its own workers.

Collective operations (an all-reduce of gradients) hang when one rank runs
out of data before the others, so with more than one rank every rank yields
the same number of datapoints per pass: the least that any rank's shards
hold, computed by each reader from the lengths of all the shards, so all
readers agree without talking to each other. The few datapoints above that
are read and dropped, as ``DistributedSampler(drop_last=True)`` drops them.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, List, Optional

from .._rng import shared_seed as _shared_seed
from .._rng import worker_seeds
from .._worker_state import WorkerState, begin_pass, worker_context
from ..base import DataFlow, Datapoint, UnknownLengthError
from ..graph import parallel_stages
from ..worker import WorkerInfo

__all__ = ["Share", "ShardReader", "equal_quotas"]


class Share:
    """How a pipeline is divided among the ranks of a job: this is rank *rank*
    of *world_size*; *seed* seeds the partition every rank must agree on."""

    def __init__(self, rank: int, world_size: int, seed: Optional[int], user: str) -> None:
        self.rank, self.world_size, self.seed, self.user = rank, world_size, seed, user
        # Every reader of every rank must draw the same partition. With a seed or with
        # several ranks it is derived (ranks cannot share fresh entropy); with one rank,
        # fresh entropy drawn here, once, travels to the framework's workers with this object.
        base = seed if seed is not None or world_size == 1 else 0
        self.shared_seed = _shared_seed(base)

    def reader(
        self, df: DataFlow, worker: int, num_workers: int, *, in_worker_process: bool
    ) -> ShardReader:
        """The reader of shard ``rank * num_workers + worker``."""
        return ShardReader(self, df, worker, num_workers, in_worker_process)


class ShardReader:
    """Reads one shard of *df*'s passes: resets the pipeline inside its worker
    context, counts each pass, and stops a pass at the rank's quota."""

    def __init__(
        self, share: Share, df: DataFlow, worker: int, num_workers: int, in_worker_process: bool
    ) -> None:
        self.share, self.df = share, df
        self.num_shards = share.world_size * num_workers
        self.index = share.rank * num_workers + worker
        self.num_workers = num_workers
        self.in_worker_process = in_worker_process
        self.state: Optional[WorkerState] = None
        if self.num_shards > 1:
            seed = share.seed
            own_seed = None if seed is None else worker_seeds(seed, self.num_shards)[self.index]
            self.state = WorkerState(
                WorkerInfo(self.index, self.num_shards, own_seed, True, share.shared_seed)
            )
        self.quota: Optional[int] = None  # datapoints per pass, when ranks must agree
        self.count = 0  # datapoints of the current pass handed out

    def context(self) -> Any:
        """The block in which this thread reads as this shard (nothing with one shard)."""
        return worker_context(self.state) if self.state is not None else contextlib.nullcontext()

    def reset(self) -> None:
        """Check the pipeline can be read this way, reset it as this shard, and
        work out the quota."""
        self._check_stages()
        with self.context():
            self.df.reset_state()
        if self.num_shards > 1:
            lengths = self._shard_lengths()
            if self.share.world_size > 1:
                self.quota = equal_quotas(lengths, self.num_workers)[self.index]

    def _check_stages(self) -> None:
        for stage, kind, inputs_in_workers, _ in parallel_stages(self.df):
            name = type(stage).__name__
            if kind == "process" and self.in_worker_process:
                raise RuntimeError(
                    f"{self.share.user}: the pipeline starts worker processes ({name}) and is "
                    "read inside the worker processes of the framework's loader, which may not "
                    "start processes of their own. Let the pipeline do the parallel work: "
                    "DataLoader(ds, batch_size=None, num_workers=0)"
                )
            if self.num_shards > 1 and inputs_in_workers and not getattr(stage, "exactly_once", 0):
                raise ValueError(
                    f"{self.share.user}: {name} copies its whole input in each of its workers, so "
                    f"the {self.num_shards} readers of this pipeline would not read disjoint "
                    f"shares; give {name} exactly_once=True"
                )

    def lengths(self) -> List[int]:
        """``len()`` of the pipeline as read by each shard (may raise UnknownLengthError)."""
        lengths = []
        for i in range(self.num_shards):
            info = WorkerInfo(i, self.num_shards, None, True, self.share.shared_seed)
            with worker_context(info):
                lengths.append(len(self.df))
        return lengths

    def _shard_lengths(self) -> List[int]:
        try:
            total = len(self.df)
            lengths = self.lengths()
        except UnknownLengthError as err:
            raise ValueError(
                f"{self.share.user}: {self.num_shards} readers share this pipeline (ranks x "
                "loader workers), which needs its length to check that each reads only its own "
                "share and to give every rank the same number of datapoints per pass; but "
                f"len() is unknown ({err}). Read it from one loader worker per rank "
                "(num_workers=0; the pipeline's runners do the parallel work), or make len() "
                "known (e.g. DataFromGenerator(..., size=n))"
            ) from None
        if total > 1 and sum(lengths) > total and all(n == total for n in lengths):
            raise ValueError(
                f"{self.share.user}: the pipeline does not shard itself ({len(lengths)} readers "
                f"would each read all {total} datapoints). DataFromList, DataFromIterable, "
                "FakeData, the storage-format readers and the dataset readers shard; a source "
                "of your own can read get_worker_info().shard(n) of its n items"
            )
        return lengths

    def iterate(self, pass_number: Optional[int], start: int = 0) -> Iterator[Datapoint]:
        """One pass of this shard; *start*: datapoints of it handed out before
        (the rest of a pass, after a load)."""
        quota = self.quota
        self.count = start
        with self.context():
            if pass_number is not None:
                begin_pass(pass_number)
            it = iter(self.df)
        while True:
            with self.context():
                try:
                    dp = next(it)
                except StopIteration:
                    break
            # Past the quota, the rest of the pass is read and dropped rather than
            # abandoned: the pipeline then ends its pass as it would uninterrupted, so
            # a state saved at the last datapoint resumes into the same next pass.
            if quota is None or self.count < quota:
                self.count += 1
                yield dp
        if quota is not None and self.count < quota:
            raise RuntimeError(
                f"{self.share.user}: shard {self.index} of {self.num_shards} ended after "
                f"{self.count} datapoints, but its len() promised at least {quota}, and every "
                "rank must yield the same number or the last collective of the pass hangs. "
                "A dataflow in the pipeline reports a len() larger than it yields"
            )


def equal_quotas(lengths: List[int], per_rank: int) -> List[int]:
    """How many datapoints each shard yields so that every rank (*per_rank*
    consecutive shards) yields the same number: the least any rank holds.
    Each rank drops its excess from its longest shards first.

    Example:
        >>> equal_quotas([3, 3, 3, 2], 2)  # ranks hold 6 and 5
        [3, 2, 3, 2]
        >>> equal_quotas([5, 4, 4], 1)
        [4, 4, 4]
        >>> equal_quotas([10, 2, 4, 4], 2)
        [6, 2, 4, 4]
    """
    ranks = [lengths[i : i + per_rank] for i in range(0, len(lengths), per_rank)]
    least = min(sum(rank) for rank in ranks)
    return [n for rank in ranks for n in _capped(rank, least)]


def _capped(lengths: List[int], total: int) -> List[int]:
    """*lengths* cut down to add up to *total* (at most their sum), the longest first."""
    low, high = 0, max(lengths, default=0)
    while low < high:  # the least cap t with sum(min(n, t)) >= total
        middle = (low + high) // 2
        if sum(min(n, middle) for n in lengths) >= total:
            high = middle
        else:
            low = middle + 1
    capped = [min(n, low) for n in lengths]
    extra = sum(capped) - total  # fewer than the shards at the cap: one less for each
    for i in reversed(range(len(capped))):
        if extra and capped[i] == low:
            capped[i] -= 1
            extra -= 1
    return capped

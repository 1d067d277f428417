"""RayRunner: run the shards of a pipeline in Ray actors anywhere in a cluster.

The consumer is an exactly-once runner like
:class:`~dataflow.MultiProcessRunnerZMQ` (``runner._RunnerBase``: passes,
marks, ``state_dict()``), whose workers are Ray actors
(:mod:`._ray_worker`) held by a :class:`~._ray_group.RayActorGroup`, which
also receives their chunks and replaces lost actors. Ray itself is imported
only when a RayRunner is made; ``import dataflow`` never imports it.
"""

from __future__ import annotations

import importlib
import sys
import threading
import weakref
from typing import Any, Dict, List, Optional

import cloudpickle

from .._checks import check_int, check_timeout
from .._transport import Message
from .._worker_state import worker_context
from ..base import DataFlow, UnknownLengthError
from ..worker import WorkerInfo
from ._consumer import _nested_infos
from ._errors import worker_error
from ._ray_group import RayActorGroup, RaySettings
from ._ray_worker import RayWorker
from ._workers import run_finalizer
from .runner import _RunnerBase

__all__ = ["RayRunner"]

_DEFAULT_START_TIMEOUT_S = 120.0


def import_ray(user: str) -> Any:
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError as err:
        raise ImportError(
            f"{user} needs the 'ray' package: pip install 'dataflow-ml[ray]' "
            "(or pip install 'ray>=2.9')"
        ) from err


# ---- the connection to Ray ------------------------------------------------------------

# A RayRunner that found no Ray connection starts one (a local Ray, or the cluster
# RAY_ADDRESS names), and the last RayRunner that needed it shuts it down at close().
_CONNECTION = {"users": 0}
_CONNECTION_LOCK = threading.Lock()


def _connect(ray: Any) -> bool:
    """Make sure this process is connected to Ray; whether this library connected it."""
    with _CONNECTION_LOCK:
        if ray.is_initialized():
            if _CONNECTION["users"] == 0:
                return False  # the user's own connection: theirs to shut down
            _CONNECTION["users"] += 1
            return True
        ray.init()
        _CONNECTION["users"] = 1
        return True


def _disconnect(ray: Any) -> None:
    """One RayRunner that connected no longer needs Ray: shut it down after the last."""
    with _CONNECTION_LOCK:
        _CONNECTION["users"] -= 1
        if _CONNECTION["users"] <= 0:
            _CONNECTION["users"] = 0
            if ray.is_initialized():
                ray.shutdown()


_ACTOR_CLASSES: Dict[int, Any] = {}


def _actor_class(ray: Any) -> Any:
    cls = _ACTOR_CLASSES.get(id(ray))
    if cls is None:
        cls = _ACTOR_CLASSES[id(ray)] = ray.remote(RayWorker)
    return cls


def _rank_and_world(rank: Any, world_size: Any) -> Any:
    if (rank is None) != (world_size is None):
        raise ValueError(
            f"RayRunner: give both rank and world_size, or neither, got rank={rank!r} and "
            f"world_size={world_size!r}"
        )
    if rank is None:
        torch = sys.modules.get("torch")  # a job whose torch.distributed is up imported it
        dist = getattr(torch, "distributed", None)
        if dist is not None and dist.is_available() and dist.is_initialized():
            return int(dist.get_rank()), int(dist.get_world_size())
        return 0, 1
    world_size = check_int("world_size", world_size, 1, "a positive int")
    rank = check_int("rank", rank, 0, "an int in [0, world_size)")
    if rank >= world_size:
        raise ValueError(f"rank must be an int in [0, world_size), got {rank!r}")
    return rank, world_size


# Actor options that would break what the runner relies on: one call at a time, in the
# order sent, by actors of its own.
_REFUSED_OPTIONS = {
    "max_concurrency": "each actor must run one call at a time, in order",
    "concurrency_groups": "each actor must run one call at a time, in order",
    "allow_out_of_order_execution": "each actor must run its calls in the order sent",
    "name": "the runner makes several actors, and replaces lost ones",
    "get_if_exists": "the runner makes several actors, and replaces lost ones",
    "lifetime": "the runner's actors end with it",
}


def _check_options(options: Dict[str, Any]) -> None:
    for key, why in _REFUSED_OPTIONS.items():
        if key in options and not (key == "max_concurrency" and options[key] == 1):
            raise ValueError(
                f"worker_options must not set {key!r} ({why}), got {key}={options[key]!r}"
            )


class RayRunner(_RunnerBase):
    """Yield the merged output of *num_workers* Ray actors, each running its shard of *ds*.

    Each actor runs in a process of its own, on whichever node of the Ray
    cluster has room for it (``worker_options`` chooses). The dataflow is
    pickled once with cloudpickle, shipped through Ray's object store, and
    reset inside every actor with the same
    :class:`~dataflow.worker.WorkerInfo` a process worker gets, so the
    sources read their own shards and seed themselves as in
    :class:`~dataflow.MultiProcessRunnerZMQ`. Each actor returns its
    datapoints in chunks of up to *chunk_size* (fewer once a chunk holds
    32 MiB of arrays, or has waited 50 ms with at least one datapoint), and
    the consumer keeps at most *max_inflight* calls outstanding per actor:
    that bounds the data in flight. Chunks merge in the order they arrive.
    Numpy arrays travel inside the results through Ray's object store, not
    pickled into bytes by this library: on the consumer's node they arrive
    without a copy, as **read-only** arrays viewing the store's shared
    memory (``np.array(x)`` copies one to write to it).

    **Exactly-once** (the default). One pass yields every datapoint of
    ``ds`` exactly once (each actor reads its shard); ``len()`` is the sum
    of the shards' lengths. With *rank* and *world_size* (by default those
    of ``torch.distributed`` when it is initialized), each training process
    reads a disjoint share (shard ``rank * num_workers + i`` of
    ``world_size * num_workers`` in actor *i*), and every rank yields the
    same number of datapoints per pass: the least any rank holds, the few
    above it read and dropped (as ``DistributedSampler(drop_last=True)``);
    this needs ``len(ds)``, and the same *seed* on every rank (default
    ``0`` with several ranks). ``exactly_once=False`` runs clones instead
    (every actor repeats its copy of ``ds``; see MultiProcessRunnerZMQ).

    **Faults.** An actor lost during a pass (its process killed, the actor
    died, its node gone, a result lost with its node) is replaced by a new
    actor that continues the worker's part from the last datapoint the
    consumer received: it loads the last state of its dataflow that
    reached the consumer (sent with the chunks, after the first datapoint
    and then every 256 datapoints or second) and reproduces and drops the
    datapoints received after it, so nothing is lost and nothing repeats.
    For a dataflow that cannot save its state, the new actor iterates its
    part from the start of the pass and drops as many datapoints as were
    received, which is exact when a pass of its shard is the same every
    time (reading in order, or shuffling from the pass number). A worker is
    replaced at most *max_restarts* times per pass; after that, or when an
    actor does not start within *start_timeout*, the consumer raises
    :class:`~dataflow.WorkerDiedError` naming the worker and why. An
    exception in the dataflow reaches the consumer as
    :class:`~dataflow.WorkerError` (also an instance of the original type)
    with the worker index, pid, node and the actor's traceback. Every wait
    has a timeout; with *timeout*, a pass that gets no datapoint for that
    long raises ``TimeoutError``.

    **Ray.** The runner uses the Ray this process is connected to
    (``ray.init(address=...)`` before ``reset_state()``). If there is none,
    ``reset_state()`` calls ``ray.init()``, which connects to the cluster
    ``RAY_ADDRESS`` names or starts a local Ray; the runner then shuts that
    Ray down at ``close()`` (the last such runner does). ``close()``
    (idempotent; also ``with``, garbage collection and exit) asks every
    actor to close its dataflow, then kills it: nothing is left running.

    Args:
        ds: the dataflow to run; picklable with cloudpickle (lambdas work;
            open files, locks and sockets must be made in ``reset_state()``).
        num_workers: number of actors, >= 1.
        exactly_once: shard ``ds`` over the actors, one pass = each
            datapoint once (default ``True``); ``False``: i.i.d. clones.
        seed: seeds every actor's random streams differently but
            reproducibly (as MultiProcessRunnerZMQ's *seed*); ``None``: fresh
            entropy (with several ranks, the partition still uses ``0``).
        rank, world_size: this process's rank and the number of ranks;
            both or neither (default: ``torch.distributed``'s, else one rank).
        worker_options: passed to Ray's ``.options()`` of each actor, e.g.
            ``{"num_cpus": 2}``, ``{"resources": {"reader": 1}}``,
            ``{"scheduling_strategy": "SPREAD"}``, ``{"runtime_env": ...}``
            (default: one CPU per actor). Options that would let an actor
            run calls concurrently or out of order, name it, or let it
            outlive the runner are refused.
        chunk_size: most datapoints per call, >= 1 (default 256).
        max_inflight: most calls outstanding per actor, >= 1 (default 3:
            one being made while the consumer takes another).
        max_restarts: how many times per pass a lost worker is replaced,
            >= 0 (default 3; with clones, over the runner's life).
        start_timeout: seconds an actor may take to start (to be placed
            and running) before the consumer gives up (default 120).
        timeout: seconds to wait for the next datapoint before raising
            ``TimeoutError`` (default ``None``: wait, and warn after a
            minute of silence).

    Example:
        >>> import ray  # doctest: +SKIP
        >>> ray.init(num_cpus=2)  # doctest: +SKIP
        >>> items = DataFromList([[i] for i in range(6)], shuffle=False)
        >>> df = RayRunner(items, num_workers=2)  # doctest: +SKIP
        >>> df.reset_state()  # doctest: +SKIP
        >>> sorted(dp[0] for dp in df), len(df)  # doctest: +SKIP
        ([0, 1, 2, 3, 4, 5], 6)
        >>> df.close()  # doctest: +SKIP

    Note:
        Every node must be able to import ``dataflow`` and what the pipeline
        uses (install them there, or pass ``worker_options={"runtime_env":
        ...}``). Random choices drawn from the global ``random`` or
        ``numpy.random`` (not from the dataflows' own generators, which are
        part of the saved state) differ after a worker was replaced.
    """

    def __init__(
        self,
        ds: DataFlow,
        num_workers: int,
        *,
        exactly_once: bool = True,
        seed: Optional[int] = None,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        worker_options: Optional[Dict[str, Any]] = None,
        chunk_size: int = 256,
        max_inflight: int = 3,
        max_restarts: int = 3,
        start_timeout: float = _DEFAULT_START_TIMEOUT_S,
        timeout: Optional[float] = None,
    ) -> None:
        if not isinstance(ds, DataFlow):
            raise TypeError(f"ds must be a DataFlow, got {type(ds).__name__}")
        super().__init__(ds)
        self.num_workers = self._num_workers = check_int(
            "num_workers", num_workers, 1, "a positive int"
        )
        if worker_options is not None and not (
            isinstance(worker_options, dict) and all(isinstance(k, str) for k in worker_options)
        ):
            raise TypeError(
                f"worker_options must be a dict of Ray actor options or None, got "
                f"{worker_options!r}"
            )
        self.worker_options = worker_options
        self._options = {"max_restarts": 0, "max_task_retries": 0, "num_cpus": 1}
        self._options.update(worker_options or {})
        _check_options(self._options)
        self.chunk_size = check_int("chunk_size", chunk_size, 1, "a positive int")
        self.max_inflight = check_int("max_inflight", max_inflight, 1, "a positive int")
        self.max_restarts = check_int("max_restarts", max_restarts, 0, "a non-negative int")
        start = check_timeout("start_timeout", start_timeout)
        self.start_timeout = _DEFAULT_START_TIMEOUT_S if start is None else start
        self._rank, self._world_size = _rank_and_world(rank, world_size)
        self._setup_runner(exactly_once, seed, timeout)
        if self._world_size > 1:
            if not self._exactly_once:
                raise ValueError(
                    f"RayRunner with world_size={self._world_size} needs exactly_once=True: "
                    "clones repeat their whole dataflow, so the ranks would not read "
                    "disjoint shares"
                )
            from .._rng import shared_seed

            # Every rank must draw the same partition: derived, never fresh entropy.
            self._shared_seed = shared_seed(self._seed if self._seed is not None else 0)
        self._quota_cache: Optional[List[int]] = None
        self._ray: Any = import_ray("RayRunner")
        try:  # Ray checks the names and types of the options (no connection needed)
            _actor_class(self._ray).options(**self._options)
        except (TypeError, ValueError) as err:
            raise type(err)(f"worker_options: {err}") from None
        self._commands: List[Any] = []

    @property
    def rank(self) -> int:
        """This process's rank (0 with one rank)."""
        return int(self._rank)

    @property
    def world_size(self) -> int:
        """The number of ranks that share the dataflow (1 by default)."""
        return int(self._world_size)

    def _repr_args(self) -> Dict[str, Any]:
        args = super()._repr_args()
        if self._world_size > 1:
            args.update(rank=self._rank, world_size=self._world_size)
        return args

    # -- shards and shares -------------------------------------------------------------

    def _infos(self) -> List[WorkerInfo]:
        if self._world_size == 1:
            return super()._infos()
        outer = WorkerInfo(self._rank, self._world_size, None, True, self._shared_seed)
        return _nested_infos(outer, self._seed, self._shared_seed, self._num_workers)

    def _quotas(self) -> List[Optional[int]]:
        """How many datapoints each actor of this rank yields per pass (``None``: all)."""
        n = self._num_workers
        if self._world_size == 1:
            return [None] * n
        if self._quota_cache is None:
            from ..integrations._share import equal_quotas  # the rule to_torch uses

            shards = self._world_size * n
            lengths = []
            try:
                for j in range(shards):
                    with worker_context(WorkerInfo(j, shards, None, True, self._shared_seed)):
                        lengths.append(len(self.ds))
            except UnknownLengthError as err:
                raise ValueError(
                    f"RayRunner with world_size={self._world_size} needs len(ds) to give "
                    f"every rank the same number of datapoints per pass, but it is unknown "
                    f"({err}); make it known (e.g. DataFromGenerator(..., size=n))"
                ) from None
            self._quota_cache = equal_quotas(lengths, n)
        start = self._rank * n
        return list(self._quota_cache[start : start + n])

    def __len__(self) -> int:
        if self._world_size > 1:
            return sum(q or 0 for q in self._quotas())
        return super().__len__()

    # -- starting -----------------------------------------------------------------------

    def _start(self) -> None:
        self._check_shards(self.ds)
        quotas = self._quotas()
        try:
            pickled = cloudpickle.dumps(self.ds)
        except Exception as err:
            raise TypeError(
                f"RayRunner must pickle its dataflow (with cloudpickle) to send it to its "
                f"actors, which failed: {err}. Open files, locks, sockets, generators and the "
                "like must be created in reset_state(), not in __init__"
            ) from err
        ray = self._ray
        closers = []
        if _connect(ray):
            closers.append(lambda: _disconnect(ray))
        settings = RaySettings(
            self._name,
            self._exactly_once,
            self.chunk_size,
            self.max_inflight,
            self.max_restarts,
            self.start_timeout,
            self._options,
        )
        # The group stops the actors first, then the connection is released (if ours).
        group = RayActorGroup(ray, _actor_class(ray), None, self._infos(), quotas, settings)
        self._finalizer = weakref.finalize(self, run_finalizer, group, closers)
        self._workers = self._receiver = group
        group.pickled = ray.put(pickled)
        group.start()

    def _send_commands(self, epoch: int, resumes: List[Any]) -> None:
        self._workers.send_pass(epoch, resumes, self._shared_seed)

    def _raise_error(self, message: Message) -> None:
        group = self._workers
        index = message.worker
        pid, node = group.pid(index), group.node(index)
        if len(message.payload) >= 5:  # the actor says where it runs
            pid, node = message.payload[3], message.payload[4]
        err = worker_error(self._name, index, pid, message.payload[:3])
        if node is not None and pid is not None:
            text = str(err).replace(f"(pid {pid})", f"(pid {pid} on {node})", 1)
            err = type(err)(
                text,
                worker_index=index,
                pid=pid,
                exc_type=err.exc_type,
                remote_traceback=err.remote_traceback,
            )
        err.node = node  # type: ignore[attr-defined]
        raise err

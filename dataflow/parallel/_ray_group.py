"""The consumer's side of a RayRunner: its actors, as a worker group and a receiver.

:class:`RayActorGroup` is what :class:`~._consumer.ParallelBase` expects in
both ``self._workers`` (``dead``, ``died_error``, ``pid``, ``stacks``,
``stop``) and ``self._receiver`` (``recv``, ``close``): it starts one actor
per worker, keeps up to *inflight* calls outstanding on each (the bound on
data in flight), and turns the calls' results into
:class:`~dataflow._transport.Message` objects in the order each actor
produced them.

A lost actor (its process killed, the actor died, its node gone, or a result
of it lost with its node) is replaced here, without the consumer noticing:
the group remembers, per worker, the last state of its dataflow it received
(a ``MARK``) and how many datapoints it received since, and the new actor
loads that state and reproduces and drops those datapoints; so nothing is
lost and nothing repeats. After *max_restarts* replacements of one worker in
a pass (or an actor that does not start within *start_timeout*), the worker
counts as dead: :meth:`dead` names it and the consumer raises
:meth:`died_error`.

Every wait has a timeout: :meth:`recv` waits at most the time it is given.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Tuple

from .._transport import DATA, END, ERROR, MARK, Message
from ._errors import WorkerDiedError
from ._ray_worker import CHUNK_BYTES

__all__ = ["RayActorGroup", "RaySettings"]

# How long to wait for a result that ray.wait() said is ready (it is local by then).
_GET_TIMEOUT_S = 60.0
# Stopping: how long the actors get to close their dataflows before they are killed,
# and how long to wait for the processes of killed actors on this node to end.
_CLOSE_GRACE_S = 1.0
_EXIT_WAIT_S = 3.0


class RaySettings:
    """What the group needs to know to run and replace actors."""

    def __init__(
        self,
        owner: str,
        exactly_once: bool,
        chunk_size: int,
        inflight: int,
        max_restarts: int,
        start_timeout: float,
        options: Dict[str, Any],
    ) -> None:
        self.owner, self.exactly_once = owner, exactly_once
        self.chunk_size, self.inflight = chunk_size, inflight
        self.max_restarts, self.start_timeout = max_restarts, start_timeout
        self.options = options
        self.chunk_bytes = CHUNK_BYTES


class _Slot:
    """One worker: its current actor, its outstanding calls, and where its part stands."""

    def __init__(self, index: int, info: Any, quota: Optional[int]) -> None:
        self.index, self.info, self.quota = index, info, quota
        self.actor: Any = None
        self.hello: Any = None  # the ref of the actor's first call, until answered
        self.started = 0.0
        self.pid: Optional[int] = None
        self.node: Optional[str] = None
        self.calls: Deque[Any] = collections.deque()
        self.epoch = 0
        self.ended = False
        self.first: Any = None  # what the next call carries (the start of a part)
        self.restarts = 0  # actors replaced in this pass
        self.lost: List[str] = []  # why, each time
        self.dead: Optional[str] = None  # why it cannot go on
        # Where the part stands, as received: the last state and its count, and the
        # datapoints received in the pass; the state after the last whole pass.
        self.state: Any = None
        self.count = 0
        self.received = 0
        self.end_state: Any = None
        self.end_known = False
        self.ended_before = False  # the part had ended in the state this pass resumed

    def where(self) -> str:
        if self.pid is None:
            return "not started yet"
        return f"pid {self.pid} on {self.node}"


class RayActorGroup:
    """The actors of one RayRunner (see the module docstring)."""

    def __init__(
        self,
        ray: Any,
        actor_class: Any,
        pickled: Any,
        infos: List[Any],
        quotas: List[Optional[int]],
        settings: RaySettings,
    ) -> None:
        self.ray, self.actor_class, self.pickled = ray, actor_class, pickled
        self.settings = settings
        self.owner = settings.owner
        self.slots = [_Slot(i, info, quotas[i]) for i, info in enumerate(infos)]
        self.creator_pid = os.getpid()
        self.shared_seed: Optional[int] = None
        self._lock = threading.Lock()
        self._stopped = False
        self._pending: Deque[Message] = collections.deque()
        self._turn = 0

    # -- starting and replacing actors --------------------------------------------------

    def start(self) -> None:
        for slot in self.slots:
            self._new_actor(slot)
        if not self.settings.exactly_once:
            for slot in self.slots:
                self._fill(slot)

    def _new_actor(self, slot: _Slot) -> None:
        with self._lock:
            if self._stopped:
                return
            s = self.settings
            actor = self.actor_class.options(**s.options).remote(
                s.owner, self.pickled, slot.info, slot.quota
            )
            slot.actor, slot.pid, slot.node = actor, None, None
            slot.hello = actor.hello.remote()
            slot.started = time.monotonic()

    def _kill(self, actor: Any) -> None:
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:  # already gone, or Ray is shutting down
            pass

    def _fill(self, slot: _Slot) -> None:
        """Keep *inflight* calls outstanding on *slot*'s actor (none once its part ended)."""
        s = self.settings
        with self._lock:
            if self._stopped or slot.dead is not None:
                return
            # A resumed part that had ended needs one call (its end, sent again).
            most = 1 if slot.ended_before else s.inflight
            while not slot.ended and len(slot.calls) < most:
                first, slot.first = slot.first, None
                ref = slot.actor.next_chunk.remote(
                    slot.epoch, first, s.exactly_once, s.chunk_size, s.chunk_bytes
                )
                slot.calls.append(ref)

    def _restart_command(self, slot: _Slot) -> Optional[Dict[str, Any]]:
        """Where a new actor starts the part: the last state received, and the
        datapoints received after it (reproduced and dropped)."""
        if not self.settings.exactly_once:
            return None
        command = {
            "state": slot.state,
            "count": slot.count,
            "skip": slot.received - slot.count,
            "ended": slot.ended_before,
        }
        if self.shared_seed is not None:
            command["shared_seed"] = self.shared_seed
        return command

    def _lose(self, slot: _Slot, why: str) -> None:
        """*slot*'s actor is lost: replace it, or mark the worker dead."""
        if self._stopped:
            return
        old = slot.actor
        slot.lost.append(why)
        slot.calls.clear()
        slot.hello = None
        if old is not None:
            self._kill(old)
        if slot.restarts >= self.settings.max_restarts:
            slot.dead = why
            return
        slot.restarts += 1
        slot.first = self._restart_command(slot)
        self._new_actor(slot)
        self._fill(slot)

    # -- passes ---------------------------------------------------------------------

    def send_pass(self, epoch: int, commands: List[Any], shared_seed: Optional[int]) -> None:
        """Start pass *epoch* in every actor; *commands*: where each part starts
        (``None``: it goes on from the last pass)."""
        self.shared_seed = shared_seed
        self._pending.clear()
        for slot, command in zip(self.slots, commands):
            # The calls of the last pass are left to run (their results are dropped by
            # pass number): cancelling a queued actor call leaves a gap in the actor's
            # call order, which Ray waits 30 s for and then reports as a lost actor.
            with self._lock:
                slot.calls.clear()
            slot.epoch, slot.ended, slot.restarts, slot.lost = epoch, False, 0, []
            slot.ended_before = bool(command and command.get("ended"))
            if command is not None:
                slot.state, slot.count = command.get("state"), int(command.get("count", 0))
                slot.received = slot.count + int(command.get("skip", 0))
                slot.first = command  # a part that had ended: its end comes once more
            else:
                # Going on from the last pass: a replacement loads the state after it
                # (unknown after an abandoned pass: a new actor then starts its part
                # afresh, which is exact while nothing of it was received).
                slot.state = slot.end_state if slot.end_known else None
                slot.count = slot.received = 0
                slot.first = None
            self._fill(slot)

    # -- the receiver -------------------------------------------------------------------

    def recv(self, timeout_s: float) -> Optional[Message]:
        """The next message from any actor, or ``None`` after *timeout_s* without one."""
        if self._pending:
            return self._pending.popleft()
        if self._stopped:
            return None
        self._check_starts()
        self._take_hellos()
        live = [s for s in self.slots if s.dead is None and s.calls]
        if not live:
            time.sleep(min(timeout_s, 0.05))
            return None
        # Start the list at another worker each time: ray.wait() returns the first
        # ready results in list order, and a fast worker must not starve the others.
        self._turn = (self._turn + 1) % len(live)
        live = live[self._turn :] + live[: self._turn]
        heads = {slot.calls[0]: slot for slot in live}
        ready, _ = self.ray.wait(list(heads), num_returns=1, timeout=timeout_s)
        for ref in ready:
            self._took_chunk(heads[ref], ref)
        return self._pending.popleft() if self._pending else None

    def _take_hellos(self) -> None:
        """Note the pid and node of every actor that answered its first call."""
        hellos = {s.hello: s for s in self.slots if s.dead is None and s.hello is not None}
        if not hellos:
            return
        ready, _ = self.ray.wait(list(hellos), num_returns=len(hellos), timeout=0)
        for ref in ready:
            self._answered_hello(hellos[ref], ref)

    def _check_starts(self) -> None:
        limit = self.settings.start_timeout
        now = time.monotonic()
        for slot in self.slots:
            if slot.dead is None and slot.hello is not None and now - slot.started > limit:
                slot.dead = (
                    f"its actor did not start within {limit:g} s (start_timeout); Ray may have "
                    f"no node with the resources it asks for (Ray actor options "
                    f"{self.settings.options!r}): see `ray status`"
                )
                slot.calls.clear()
                slot.hello = None
                self._kill(slot.actor)

    def _answered_hello(self, slot: _Slot, ref: Any) -> None:
        try:
            slot.pid, slot.node = self.ray.get(ref, timeout=_GET_TIMEOUT_S)
        except Exception as err:
            self._lose(slot, _why_lost(err))
            return
        slot.hello = None

    def _took(self, slot: _Slot, ref: Any) -> bool:
        """Remove the answered call *ref* from *slot*'s outstanding calls; ``False`` if
        it is no longer there (the actors were stopped, or the pass restarted)."""
        with self._lock:
            if self._stopped or not slot.calls or slot.calls[0] is not ref:
                return False
            slot.calls.popleft()
            return True

    def _took_chunk(self, slot: _Slot, ref: Any) -> None:
        ray = self.ray
        try:
            messages = ray.get(ref, timeout=_GET_TIMEOUT_S)
        except ray.exceptions.RayTaskError as err:  # the call itself failed (not user code)
            if self._took(slot, ref):
                cause = err.cause if isinstance(err.cause, BaseException) else err
                report = [type(cause).__name__, str(cause), str(err)]
                self._pending.append(Message(ERROR, slot.index, slot.epoch, report))
            return
        except Exception as err:  # lost: the actor, its node, or the result
            if not self._stopped and slot.calls and slot.calls[0] is ref:
                self._lose(slot, _why_lost(err))
            return
        if not self._took(slot, ref):
            return
        for kind, payload in messages:
            if kind == DATA:
                slot.received += len(payload)
            elif kind == MARK and payload[2] is None:
                slot.state, slot.count = payload[1], payload[0]
            elif kind == END:
                slot.ended = True
                slot.end_known = True
                slot.end_state = payload[1] if len(payload) > 1 else None
            self._pending.append(Message(kind, slot.index, slot.epoch, payload))
        if slot.ended:
            with self._lock:
                slot.calls.clear()  # left to run; what they return is not read
        else:
            self._fill(slot)

    def close(self) -> None:
        """The receiver's close: the actors are stopped by :meth:`stop`."""
        self._pending.clear()

    # -- the worker group ---------------------------------------------------------------

    def dead(self) -> Optional[int]:
        for slot in self.slots:
            if slot.dead is not None:
                return slot.index
        return None

    def pid(self, index: int) -> Optional[int]:
        return self.slots[index].pid if 0 <= index < len(self.slots) else None

    def node(self, index: int) -> Optional[str]:
        return self.slots[index].node if 0 <= index < len(self.slots) else None

    def died_error(self, index: int) -> WorkerDiedError:
        slot = self.slots[index]
        lost = len(slot.lost)
        if slot.lost and slot.dead == slot.lost[-1]:
            when = "in this pass" if self.settings.exactly_once else "since the runner started"
            message = (
                f"{self.owner} worker {index} ({slot.where()}) was lost {lost} time(s) {when} "
                f"and is not restarted again (max_restarts="
                f"{self.settings.max_restarts}); the last time: {slot.dead}. A worker that "
                "dies at the same datapoint every time (out of memory, a crash in native "
                "code) dies again after each restart: look at that datapoint"
            )
        else:
            message = f"{self.owner} worker {index} cannot run: {slot.dead}"
        return WorkerDiedError(message, worker_index=index, pid=slot.pid)

    def stacks(self) -> List[Tuple[int, Optional[int], Optional[str]]]:
        """Ray actors' stacks are not read here (``ray stack`` on the node shows them)."""
        return [(s.index, s.pid, None if s.dead else "") for s in self.slots]

    def stop(self) -> None:
        """Ask each actor to close its dataflow, wait a little, then kill every actor."""
        if os.getpid() != self.creator_pid:
            return
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        actors = [s.actor for s in self.slots if s.actor is not None]
        try:  # the processes of this node's actors can be watched until they end
            here = self.ray.util.get_node_ip_address()
        except Exception:
            here = None
        pids = [s.pid for s in self.slots if s.pid is not None and s.node == here]
        for slot in self.slots:
            slot.calls.clear()
            slot.actor = slot.hello = None
        try:
            closing = [a.close.remote() for a in actors]
            if closing:
                self.ray.wait(closing, num_returns=len(closing), timeout=_CLOSE_GRACE_S)
        except Exception:  # Ray is shutting down: the kill below (or its end) stops them
            pass
        for actor in actors:
            self._kill(actor)
        _wait_for_exit(pids, _EXIT_WAIT_S)


def _why_lost(err: BaseException) -> str:
    """The first line of what Ray said, with the error's type."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _wait_for_exit(pids: List[int], timeout: float) -> None:
    """Wait until the processes *pids* of this node ended (others are not visible)."""
    deadline = time.monotonic() + timeout
    pending = [p for p in pids if _alive(p)]
    while pending and time.monotonic() < deadline:
        time.sleep(0.02)
        pending = [p for p in pending if _alive(p)]


def _alive(pid: int) -> bool:
    """Whether process *pid* runs on this machine (a zombie counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")

"""Large arrays through shared memory: one arena per parallel dataflow.

**The arena** is one anonymous shared-memory file (``memfd_create``; where
that is missing, a file in ``/dev/shm`` unlinked at once), made by the
consumer before it starts its workers, which inherit it (fork) or receive
its descriptor (spawn, forkserver). It has no name: when the last process
that maps it ends, however it ends (even by SIGKILL), the kernel frees it,
and nothing is ever left in ``/dev/shm``.

**Layout.** A header holds one byte per *ticket*: ``TICKETS`` tickets per
worker, one per array in flight. Then come the workers' regions, one each,
of equal size. Only worker *w* writes into region *w*, and it places arrays
there with its own first-fit allocator (:class:`ArenaWriter`).

**An array's life.** The worker allocates room in its region, copies the
array there, marks the ticket taken (1) and sends a descriptor (ticket,
offset, dtype and shape) in place of the array. The consumer makes a numpy
array that views that room (:class:`ArenaReader`); when the last array
viewing it is garbage collected, the consumer marks the ticket free (0).
These bytes in the header are the credits: the worker takes the room back
at its next allocation. Each byte has one writer at a time (the worker
sets it, the consumer clears it), so no lock is needed across processes.

**Backpressure in bytes.** A worker whose region is full waits until the
consumer releases arrays; it never fails. Memory is committed
(``posix_fallocate``) as the data needs it, in steps, before it is touched:
a full machine makes the allocation fail, and the worker sends that array
as frames instead, never a SIGBUS. An array larger than a region also
travels as frames; the consumer warns once, naming the reason.

**Kept arrays.** The consumer counts the bytes of the arrays it received and
that are still alive. Once they hold half of a worker's region (the user
keeps arrays, or a buffer downstream holds many), it copies new arrays out
of the arena and frees their room at once, and warns once.
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
import tempfile
import threading
import time
import warnings
import weakref
from multiprocessing import reduction
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .._arrays import DECODE_HEADERS, parse_header, remember

__all__ = [
    "DEFAULT_REGION_BYTES",
    "forget_other_arenas",
    "MIN_REGION_BYTES",
    "TICKETS",
    "Arena",
    "ArenaReader",
    "ArenaWriter",
    "SharedMemoryWarning",
    "create_arena",
]

#: Arrays in flight per worker at most (one ticket each).
TICKETS = 1024
#: A worker's region when the size is not given: address space only; memory is
#: committed as the data needs it.
DEFAULT_REGION_BYTES = 1 << 30
#: Below this per worker, shared memory is not used (frames instead).
MIN_REGION_BYTES = 16 << 20
# The default arena takes at most this share of the memory available.
_AVAILABLE_SHARE = 4
_PAGE = mmap.PAGESIZE
_ALIGN = 64  # arrays start on a cache line
_COMMIT_STEP = 16 << 20  # memory is committed in steps of this many bytes
# A full region: the worker looks again after this long, doubling up to _WAIT_MAX_S,
# and asks whether it should stop every _STOP_CHECK_S.
_WAIT_MIN_S = 0.0002
_WAIT_MAX_S = 0.005
_STOP_CHECK_S = 0.1
# The arrays of one message may take this share of a region and of the tickets; the
# consumer copies arrays out of the arena while the ones it holds take more than
# _COPY_ABOVE of either (so a message always finds room, with some to spare for room
# cut into pieces), and stops below _COPY_BELOW.
_MESSAGE_SHARE = 0.25
_COPY_ABOVE = 0.5
_COPY_BELOW = 0.25
# A worker waiting for room sends frames instead once the consumer has waited this
# long for a message: then the consumer holds all the room and frees none.
_STALEMATE_S = 0.05

DESCRIPTOR = struct.Struct("<IQ")  # ticket, offset in the worker's region

# Why a worker sent an array as frames (one status byte per worker in the header).
FITS, TOO_LARGE, OUT_OF_MEMORY, STALEMATE = 0, 1, 2, 3


def _copy(dst: np.ndarray, src: np.ndarray) -> None:
    np.copyto(dst, src, casting="no")


class SharedMemoryWarning(RuntimeWarning):
    """Shared memory could not be used for some arrays, or is held by kept arrays."""


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def _available_bytes(path: Optional[str]) -> Optional[int]:
    """Memory that shared memory may take: free space of *path* (a tmpfs), else the
    available memory of the machine and of this cgroup; ``None`` if unknown."""
    if path is not None:
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize
    found: List[int] = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except OSError:
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read())
        if limit != "max":
            found.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def _address_space() -> Optional[int]:
    """The address space this process may still map (``ulimit -v``), or ``None``: no limit."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * _PAGE
    except (ImportError, OSError, ValueError):
        return None
    return max(0, limit - used)


def _open_anonymous(size: int) -> Tuple[int, Optional[str]]:
    """A file descriptor of *size* bytes of unnamed shared memory, and the tmpfs it
    lives in (``None`` for memfd, which no tmpfs size limits)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("dataflow-arena", os.MFD_CLOEXEC)
        directory = None
    else:  # pragma: no cover - Linux has memfd_create
        directory = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        fd, path = tempfile.mkstemp(prefix="dataflow-arena-", dir=directory)
        os.unlink(path)  # unnamed from the start: nothing to clean up, ever
    try:
        os.ftruncate(fd, size)  # address space only: no memory is committed
    except BaseException:
        os.close(fd)
        raise
    return fd, directory


class Arena:
    """The shared memory of one parallel dataflow: a header of tickets and one
    region per worker (see the module's notes)."""

    def __init__(self, fd: int, workers: int, region: int, directory: Optional[str]) -> None:
        self.fd = fd
        self.workers = workers
        self.region = region
        self.directory = directory
        self.header = _header_bytes(workers)
        self.size = self.header + workers * region
        self.mm: Any = mmap.mmap(fd, self.size)
        self.tickets = np.ndarray((workers, TICKETS), np.uint8, self.mm)
        self.status = np.ndarray((workers,), np.uint8, self.mm, workers * TICKETS)
        #: since when the consumer waits for a message (``time.monotonic()``, which all
        #: processes share), or 0.0: a worker waiting for room then knows that none
        #: will come back (the consumer holds it all) and sends frames instead.
        self.waiting = np.ndarray((1,), np.float64, self.mm, _round_up(workers * (TICKETS + 1), 8))
        self.creator_pid = os.getpid()
        _ARENAS.add(self)

    def base(self, worker: int) -> int:
        """Where region *worker* starts in the arena."""
        return self.header + worker * self.region

    def __reduce__(self) -> Any:
        # Only while a process is being started (spawn, forkserver): the descriptor
        # goes to the child with it.
        return (_rebuild_arena, (reduction.DupFd(self.fd), self.workers, self.region))

    def close(self) -> None:
        """Release this process's descriptor and mapping; the mapping lives on while
        arrays view it (the kernel frees the memory once no process maps it)."""
        fd, self.fd = self.fd, -1
        if fd < 0:
            return
        os.close(fd)
        # Never mm.close(): arrays made with np.ndarray(buffer=mm) keep the mmap object
        # alive, but not a buffer export, so close() would unmap memory they still view.
        # Dropping the references unmaps it once the last array is gone.
        del self.tickets, self.status, self.waiting, self.mm


def _header_bytes(workers: int) -> int:
    return _round_up(_round_up(workers * (TICKETS + 1), 8) + 8, _PAGE)


_ARENAS: weakref.WeakSet[Arena] = weakref.WeakSet()


def forget_other_arenas(keep: Optional[Arena]) -> None:
    """In a new worker process: release the arenas of other dataflows it inherited
    from its parent by forking, so that they do not outlive their dataflows."""
    for arena in list(_ARENAS):
        if arena is not keep and arena.fd >= 0:
            arena.close()


def _rebuild_arena(dupfd: Any, workers: int, region: int) -> Arena:
    return Arena(dupfd.detach(), workers, region, None)


def create_arena(workers: int, size: Optional[int]) -> Tuple[Optional[Arena], str]:
    """A new arena for *workers*, of *size* bytes in all (``None``: chosen from the
    memory available), or ``None`` and why shared memory cannot be used."""
    if not hasattr(os, "memfd_create") and not os.path.isdir("/dev/shm"):
        return None, "this platform has no anonymous shared memory"
    directory = None if hasattr(os, "memfd_create") else "/dev/shm"
    available = _available_bytes(directory)
    where = "memory" if directory is None else f"space in {directory}"
    if size is None:
        region = DEFAULT_REGION_BYTES
        if available is not None:
            region = min(region, available // _AVAILABLE_SHARE // workers)
        space = _address_space()
        if space is not None and space // _AVAILABLE_SHARE // workers < region:
            region = space // _AVAILABLE_SHARE // workers  # every process maps all of it
            where = "address space (ulimit -v)"
    else:
        region = size // workers
        if available is not None and available < size:
            return None, (
                f"shm_bytes={size} is more than the {available >> 20} MiB of shared memory "
                "available"
            )
    region = region // _PAGE * _PAGE
    if region < MIN_REGION_BYTES:
        if size is not None:
            return None, (
                f"shm_bytes={size} gives each of the {workers} workers {region >> 20} MiB, "
                f"less than the {MIN_REGION_BYTES >> 20} MiB a worker needs"
            )
        return None, (
            f"only {region >> 20} MiB of shared memory per worker could be taken (a quarter "
            f"of the available {where}; at least {MIN_REGION_BYTES >> 20} MiB are needed)"
        )
    try:
        fd, directory = _open_anonymous(_header_bytes(workers) + workers * region)
    except OSError as err:
        return None, f"shared memory could not be created ({err})"
    try:
        return Arena(fd, workers, region, directory), ""
    except (OSError, ValueError) as err:  # no address space to map it (ulimit -v)
        os.close(fd)
        return None, f"shared memory could not be mapped ({err})"


# ---- the worker's end ----------------------------------------------------------------


class ArenaWriter:
    """Worker *worker*'s allocator in its region: places arrays, takes room back.

    *check_stop* is called while the region is full and the worker waits
    (it raises to end the wait when the worker should stop).
    """

    def __init__(self, arena: Arena, worker: int, check_stop: Callable[[], None]) -> None:
        self.arena = arena
        self.worker = worker
        self.check_stop = check_stop
        self.base = arena.base(worker)
        self.region = arena.region
        self.tickets = arena.tickets[worker]
        self.tickets[:] = 0
        self._free_tickets = list(range(TICKETS - 1, -1, -1))
        self._live: Dict[int, Tuple[int, int]] = {}  # ticket -> (offset, size)
        self._free: List[Tuple[int, int]] = [(0, self.region)]  # sorted extents
        self._committed = 0
        self.pending: List[int] = []  # tickets packed but not yet sent
        self._pending_bytes = 0
        # Arrays made in the region by place(), not yet sent: id -> (ticket, offset, size).
        self._placed: Dict[int, Tuple[int, int, int]] = {}
        # Tickets of placed arrays that were sent and are still alive here: their room
        # comes back only once the consumer has released it and this worker let go too
        # (a cache in the worker may yield the same batch again).
        self._kept: Dict[int, int] = {}  # ticket -> bytes
        self._kept_bytes = 0
        self._pid = os.getpid()
        self._thread = threading.get_ident()
        #: seconds spent waiting for the consumer to give room back
        self.blocked_s = 0.0

    def place(self, shape: Tuple[int, ...], dtype: np.dtype) -> Optional[np.ndarray]:
        """A new, uninitialised array in the region, for a batch to be filled in place
        and sent without a copy; ``None`` (make it elsewhere) when it should not be
        here: too large, no room without waiting for the consumer, another thread or
        process, or a quarter of the region held by placed batches this worker keeps
        after sending them (a cache in the worker, which would otherwise fill it).

        Its room is taken (its ticket is set) until it is sent, when it becomes the
        consumer's, or until it is garbage collected unsent.
        """
        if threading.get_ident() != self._thread or os.getpid() != self._pid:
            return None  # the allocator serves the thread that sends, in the worker
        dtype = np.dtype(dtype)
        size = _round_up(max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1), _ALIGN)
        if size > self.region * _MESSAGE_SHARE:
            return None
        kept = self._kept
        full = self.region * _COPY_BELOW
        if kept and (self._kept_bytes + size > full or len(kept) >= TICKETS * _COPY_BELOW):
            return None  # batches this worker keeps (a cache) hold enough of the region
        self._reclaim()
        offset = self._first_fit(size) if self._free_tickets else None
        if offset is None:
            return None  # no waiting here: the batch is made on the heap instead
        if not self._commit(offset + size):
            self._release(offset, size)
            return None
        ticket = self._free_tickets.pop()
        self._live[ticket] = (offset, size)
        self.tickets[ticket] = 1  # held by this worker: not to be reclaimed
        array = np.ndarray(shape, dtype, self.arena.mm, self.base + offset)
        key = id(array)
        self._placed[key] = (ticket, offset, size)
        weakref.finalize(array, self._unplace, key, ticket).atexit = False
        return array

    def _unplace(self, key: int, ticket: int) -> None:
        """A placed array was garbage collected: if it was never sent, free its room
        (only the ticket's byte: the next allocation takes the room back); if it was,
        its room is the consumer's alone now."""
        if os.getpid() != self._pid:
            return  # a process forked from the worker: the room is not its to free
        entry = self._placed.get(key)
        if entry is not None and entry[0] == ticket:
            del self._placed[key]
            self.tickets[ticket] = 0
        else:
            self._kept_bytes -= self._kept.pop(ticket, 0)

    def put(self, array: np.ndarray) -> Optional[bytes]:
        """Copy *array* into the region; its descriptor, or ``None`` when it must travel
        as frames: the arrays of one message may take a quarter of the region and
        of the tickets (the consumer may hold half), and memory must be left."""
        size = _round_up(max(array.nbytes, 1), _ALIGN)
        budget = self.region * _MESSAGE_SHARE
        if self._pending_bytes + size > budget or len(self.pending) >= TICKETS * _MESSAGE_SHARE:
            self.arena.status[self.worker] = TOO_LARGE
            return None
        placed = self._placed.pop(id(array), None) if self._placed else None
        if placed is not None:  # made here by place(): send it as it is, once
            ticket, offset, placed_size = placed
            self._kept[ticket] = placed_size
            self._kept_bytes += placed_size
            self._pending_bytes += size
            self.pending.append(ticket)
            return DESCRIPTOR.pack(ticket, offset)
        room = self._allocate(size)
        if room is None:
            return None
        offset = room
        self._pending_bytes += size
        ticket = self._free_tickets.pop()
        self._live[ticket] = (offset, size)
        dst = np.ndarray(array.shape, array.dtype, self.arena.mm, self.base + offset)
        _copy(dst, array)
        self.tickets[ticket] = 1
        self.pending.append(ticket)
        return DESCRIPTOR.pack(ticket, offset)

    def sent(self) -> None:
        """The pending arrays were sent: their room is the consumer's to release."""
        self.pending.clear()
        self._pending_bytes = 0

    def discard(self, since: int = 0) -> None:
        """Take back the room of the pending arrays after the first *since* (never sent)."""
        for ticket in self.pending[since:]:
            self.tickets[ticket] = 0
            self._pending_bytes -= self._live[ticket][1]
        del self.pending[since:]
        self._reclaim()

    def _allocate(self, size: int) -> Optional[int]:
        """Room for *size* bytes, waiting while the consumer will give some back;
        ``None`` when there is no memory to commit, or the consumer waits for a
        message while it holds the room (none will come back before it gets one)."""
        wait = _WAIT_MIN_S
        next_check = 0.0
        waiting = self.arena.waiting
        while True:
            self._reclaim()
            if self._free_tickets:
                offset = self._first_fit(size)
                if offset is not None:
                    if not self._commit(offset + size):
                        self._release(offset, size)
                        self.arena.status[self.worker] = OUT_OF_MEMORY
                        return None
                    return offset
            now = time.monotonic()
            since = float(waiting[0])
            if since and now - since > _STALEMATE_S:
                self.arena.status[self.worker] = STALEMATE
                return None
            if now >= next_check:
                self.check_stop()
                next_check = now + _STOP_CHECK_S
            time.sleep(wait)
            self.blocked_s += wait
            wait = min(2 * wait, _WAIT_MAX_S)

    def _commit(self, end: int) -> bool:
        """Commit the memory of the region up to *end* before it is touched."""
        if end <= self._committed:
            return True
        new = min(self.region, _round_up(end, _COMMIT_STEP))
        try:
            os.posix_fallocate(self.arena.fd, self.base + self._committed, new - self._committed)
        except OSError:
            return False
        self._committed = new
        return True

    def _first_fit(self, size: int) -> Optional[int]:
        free = self._free
        for i, (offset, length) in enumerate(free):
            if length >= size:
                if length == size:
                    del free[i]
                else:
                    free[i] = (offset + size, length - size)
                return offset
        return None

    def _reclaim(self) -> None:
        """Take back the room of every array the consumer released."""
        tickets, kept = self.tickets, self._kept
        done = [t for t in self._live if not tickets[t] and t not in kept]
        for ticket in done:
            offset, size = self._live.pop(ticket)
            self._release(offset, size)
            self._free_tickets.append(ticket)

    def _release(self, offset: int, size: int) -> None:
        free = self._free
        i = bisect.bisect(free, (offset, size))
        if i < len(free) and offset + size == free[i][0]:  # joins the next extent
            size += free[i][1]
            del free[i]
        if i > 0 and free[i - 1][0] + free[i - 1][1] == offset:  # and the previous one
            offset, size = free[i - 1][0], free[i - 1][1] + size
            del free[i - 1]
            i -= 1
        free.insert(i, (offset, size))


# ---- the consumer's end --------------------------------------------------------------


def _release_ticket(
    pid: int, held: np.ndarray, tickets: np.ndarray, worker: int, ticket: int
) -> None:
    if os.getpid() != pid:
        return  # a process forked from the consumer: the arrays still live in the consumer
    held[worker, ticket] = 0
    tickets[worker, ticket] = 0  # the credit: the worker takes the room back


_REASONS = {
    TOO_LARGE: "the large arrays of one datapoint came to more than a quarter of a worker's "
    "region of the arena ({share} MiB) or {tickets} arrays; pass a larger shm_bytes",
    OUT_OF_MEMORY: "the machine (or its cgroup) had no memory left to commit for shared memory",
    STALEMATE: "the loop waited for a datapoint while the arrays it held took a worker's "
    "whole region (a buffer downstream keeps them); copy the arrays you keep, or pass a "
    "larger shm_bytes",
}


class ArenaReader:
    """The consumer's view of an arena: arrays from descriptors, released at garbage
    collection. *owner* names the dataflow in warnings."""

    def __init__(self, arena: Arena, owner: str) -> None:
        self.arena = arena
        self.owner = owner
        self.held = np.zeros((arena.workers, TICKETS), np.int64)  # bytes per live array
        self._copying = [False] * arena.workers
        self._warned: Dict[int, bool] = {}
        self._pid = os.getpid()

    def array(self, worker: int, data: bytes) -> np.ndarray:
        """The array a worker described in *data* (descriptor + header)."""
        arena = self.arena
        ticket, offset = DESCRIPTOR.unpack_from(data)
        header = data[DESCRIPTOR.size :]
        spec = DECODE_HEADERS.get(header)
        if spec is None:
            spec = remember(DECODE_HEADERS, header, parse_header(header))
        dtype, shape, nbytes = spec
        inside = offset + nbytes <= arena.region
        if not (0 <= worker < arena.workers and ticket < TICKETS and inside):
            raise ValueError(
                f"corrupt message: shared-memory array at ticket {ticket}, offset {offset}, "
                f"{nbytes} bytes, from worker {worker}, is outside the arena"
            )
        array = np.ndarray(shape, dtype, arena.mm, arena.base(worker) + offset)
        held = self.held[worker]
        if self._copying[worker] or self._holds_much(held, nbytes, _COPY_ABOVE):
            return self._copy_out(worker, ticket, array)
        held[ticket] = nbytes
        done = weakref.finalize(
            array, _release_ticket, self._pid, self.held, arena.tickets, worker, ticket
        )
        done.atexit = False
        return array

    def _holds_much(self, held: np.ndarray, more: int, share: float) -> bool:
        """Whether the arrays held (and *more* bytes) take more than *share* of a region
        or of the tickets."""
        if held.sum() + more > share * self.arena.region:
            return True
        return bool(np.count_nonzero(held) + 1 > share * TICKETS)

    def _copy_out(self, worker: int, ticket: int, array: np.ndarray) -> np.ndarray:
        out = array.copy()
        self.arena.tickets[worker, ticket] = 0
        held = self.held[worker]
        kept = int(held.sum())
        self._copying[worker] = self._holds_much(held, 0, _COPY_BELOW)
        if not self._warned.get(-1):
            self._warned[-1] = True
            warnings.warn(
                f"{self.owner}: {np.count_nonzero(held)} arrays received earlier and still "
                f"alive hold {kept >> 20} MiB of worker {worker}'s {self.arena.region >> 20} MiB "
                f"of shared memory (with the next, of {array.nbytes >> 10} KiB, more than "
                f"{_COPY_ABOVE:.0%} of its room or tickets); new "
                "arrays are copied out of it (slower) until those are released. Copy the "
                "arrays you keep (array.copy()), or pass a larger shm_bytes",
                SharedMemoryWarning,
                stacklevel=2,
            )
        return out

    def wait_begins(self) -> None:
        """The consumer waits for a message (see ``Arena.waiting``): from now on,
        unless it already waited (it waits in slices)."""
        waiting = self.arena.waiting
        if not waiting[0]:
            waiting[0] = time.monotonic()

    def wait_ends(self) -> None:
        """A message arrived (or the consumer stopped receiving)."""
        if hasattr(self.arena, "waiting"):
            self.arena.waiting[0] = 0.0

    def frames_used(self, worker: int) -> None:
        """A worker sent an array as frames: warn once per reason."""
        if not 0 <= worker < self.arena.workers:
            return
        reason = int(self.arena.status[worker])
        if reason == FITS or self._warned.get(reason):
            return
        self._warned[reason] = True
        why = _REASONS.get(reason, "unknown").format(
            share=int(self.arena.region * _MESSAGE_SHARE) >> 20,
            tickets=int(TICKETS * _MESSAGE_SHARE),
        )
        warnings.warn(
            f"{self.owner}: some arrays travel through ZeroMQ frames instead of shared "
            f"memory: {why}",
            SharedMemoryWarning,
            stacklevel=2,
        )

"""The stack sampler of :func:`dataflow.profile`: a timer signal that looks at
the main thread's stack and gives the time since its last look to the stage
whose code runs there (see :mod:`dataflow._timing` for the two phases of a run).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import types
from typing import Any, Callable, Optional, Tuple

from ._timing import Run
from ._transport import set_pauser

__all__ = ["StackSampler"]

# How long a signal sent to the process may take to reach a thread and be caught.
_LAND_S = 0.0002


def _run_pending_handlers() -> None:
    """Nothing: calling a Python function lets Python run the handlers of the
    signals it has caught (it does so between two steps of Python code)."""


class StackSampler:
    """Looks at the stack of the main thread about every *interval* seconds,
    from a timer signal (``SIGALRM``, ``setitimer``), and gives the time since
    the last look to the stage whose frame is the innermost one on it.

    A signal, not a thread: a thread that wants to look needs the GIL, and a
    main thread that lets go of it briefly and often (numpy, OpenCV and file
    reads do) keeps it from getting it for as long as that goes on, so the
    looks would land only where the main thread waits longest. Python runs
    the handler in the main thread as soon as the code there lets it: after
    a long call in C, still in the frame that made it, so the time goes to
    the stage that made the call. Python restarts its own blocking calls after
    the handler, and the kernel most others (``siginterrupt``); ZeroMQ's would
    start over with their whole timeout, so the transport pauses the timer
    around its waits (``pause_signals``): the time of a wait goes to the stage
    that waited, measured, and the looks cover the time outside the waits.

    A timer the program had set for ``SIGALRM`` (an ``alarm()``, a test's
    timeout) keeps its time: its handler is put back, and its timer set to
    what remains, when the sampler stops, or when that time comes (the
    sampler then stops early).
    """

    def __init__(self, run: Run, interval: float) -> None:
        self.run = run
        self.interval = interval
        self.running = False
        self._paused = False
        self._old_handler: Any = None
        self._old_timer: Optional[Tuple[float, float]] = None  # (deadline, interval)
        self._last = 0.0  # the time of the last look
        self._waited = 0.0  # the time spent in waits since then (given already)
        self._left = 0.0  # what was left of the timer's interval when a wait began
        self._pause_start = 0.0

    def start(self) -> bool:
        """Start looking; ``False`` (and nothing changed) where it cannot:
        outside the main thread, without ``setitimer``, or when ``SIGALRM``
        has a handler that was not set from Python."""
        if not hasattr(signal, "setitimer") or threading.current_thread() is not (
            threading.main_thread()
        ):
            return False
        old = signal.getsignal(signal.SIGALRM)
        if old is None:
            return False
        self._old_handler = old
        # The program's timer is stopped (and read), its last signal reaches its
        # handler, and only then does this sampler's handler take over and its timer start.
        before = signal.getitimer(signal.ITIMER_REAL)[0]
        self._last = time.perf_counter()
        delay, every = signal.setitimer(signal.ITIMER_REAL, 0)
        if before > 0 and delay == 0:
            time.sleep(_LAND_S)  # it came due just now: its signal lands
        _run_pending_handlers()
        if delay > 0:
            self._old_timer = (self._last + delay, every)
        self.running = True
        signal.signal(signal.SIGALRM, self._look)
        signal.siginterrupt(signal.SIGALRM, False)
        signal.setitimer(signal.ITIMER_REAL, self.interval, self.interval)
        set_pauser(self._pause)
        return True

    def stop(self) -> None:
        """Stop looking: the program's own handler and timer are back."""
        if not self.running:
            return
        self.running = False
        set_pauser(None)
        signal.setitimer(signal.ITIMER_REAL, 0)
        # A signal of this timer sent just now may land in another thread, a moment
        # later: it must reach this sampler's handler (which ignores it now), not the
        # program's.
        time.sleep(_LAND_S)
        _run_pending_handlers()
        signal.signal(signal.SIGALRM, self._old_handler)
        if self._old_timer is not None:
            deadline, every = self._old_timer
            signal.setitimer(signal.ITIMER_REAL, max(deadline - time.perf_counter(), 1e-6), every)

    def _pause(self) -> Optional[Callable[[], None]]:
        """Stop the timer for a blocking wait of the main thread (see ``pause_signals``)."""
        if (
            not self.running
            or self._paused
            or threading.current_thread() is not (threading.main_thread())
        ):
            return None
        self._paused = True
        left, _ = signal.setitimer(signal.ITIMER_REAL, 0)
        self._left = left if left > 0 else self.interval
        self._pause_start = time.perf_counter()
        return self._resume

    def _resume(self) -> None:
        """The wait is over: its time, measured, goes to the stage that waited (not
        to the next look, which covers only the time outside waits); the timer goes
        on where it stopped, so the looks keep their pace outside the waits."""
        self._paused = False
        if not self.running:
            return
        now = time.perf_counter()
        waited = now - self._pause_start
        self._waited += waited
        self.run.sampled_wall += waited
        self.run.samples += 1
        self._give(sys._getframe(1), waited)
        if self._old_timer is not None and now >= self._old_timer[0]:
            self.stop()  # the program's timer is due: its handler runs next
            return
        signal.setitimer(signal.ITIMER_REAL, self._left, self.interval)

    def _look(self, signum: int, frame: Optional[types.FrameType]) -> None:
        if not self.running:
            return  # caught before the sampler stopped
        now = time.perf_counter()
        run = self.run
        dt = max(0.0, now - self._last - self._waited)  # the waits are given already
        self._last, self._waited = now, 0.0
        run.sampled_wall += dt
        run.samples += 1
        self._give(frame, dt)
        if self._old_timer is not None and now >= self._old_timer[0]:
            self.stop()  # the program's timer is due: its handler runs next

    def _give(self, frame: Optional[types.FrameType], seconds: float) -> None:
        """Add *seconds* to the stage whose frame is the innermost one from *frame* out."""
        frames = self.run.frames
        while frame is not None:
            entry = frames.get(id(frame))
            if entry is not None:
                gen = entry[0]()
                if gen is not None and gen.gi_frame is frame:
                    entry[1].sampled += seconds
                    return
            frame = frame.f_back

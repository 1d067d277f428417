"""Waits that a timer signal must not cut short.

A blocking ZeroMQ call that a signal interrupts, when the signal's handler
returns, starts again with its whole timeout (that is how pyzmq retries), so a
signal that comes every few milliseconds would keep a receive with a timeout
waiting for ever. Whoever runs such a timer (the stack sampler of
``dataflow.profile``) sets a pauser with :func:`set_pauser`: a function that
stops the timer and returns one that starts it again, or ``None`` if it did
not stop it. The transport's blocking waits call :func:`pause_signals` before
they wait and what it returned after.
"""

from __future__ import annotations

from typing import Callable, Optional

__all__ = ["pause_signals", "set_pauser"]

Resume = Callable[[], None]
_pauser: Optional[Callable[[], Optional[Resume]]] = None


def set_pauser(pauser: Optional[Callable[[], Optional[Resume]]]) -> None:
    """Make *pauser* the one :func:`pause_signals` calls (``None``: no timer runs)."""
    global _pauser
    _pauser = pauser


def pause_signals() -> Optional[Resume]:
    """Stop the timer signal, if one runs, for a blocking wait; call what this
    returns (if not ``None``) when the wait is over."""
    pauser = _pauser
    return None if pauser is None else pauser()

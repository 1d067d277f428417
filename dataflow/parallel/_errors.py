"""Worker errors: what the consumer raises when a worker fails or dies.

A worker sends an *error report* (:func:`error_report`: type name, message,
traceback); the consumer turns it into a :class:`WorkerError`
(:func:`worker_error`), which is also an instance of the worker's own
exception type where that type can be found and subclassed
(:func:`typed_error_class`). A worker process that ends without a report
becomes a :class:`WorkerDiedError` (:func:`died_error`), naming the signal.
"""

from __future__ import annotations

import builtins
import signal
import sys
import traceback
from typing import Any, Dict, Optional, Sequence, Tuple

__all__ = [
    "WorkerDiedError",
    "WorkerError",
    "died_error",
    "error_report",
    "resolve_type",
    "typed_error_class",
    "worker_error",
]


class WorkerError(RuntimeError):
    """A worker of a parallel dataflow failed; raised in the process that iterates.

    The message names the dataflow, the worker index and pid, the original
    exception type and message, and ends with the worker's traceback.

    Attributes:
        worker_index: index of the failed worker (``None`` if not known).
        pid: its process id (the consumer's for thread workers).
        exc_type: the name of the original exception type, e.g. ``'ValueError'``.
        remote_traceback: the traceback formatted in the worker, or ``""``.
    """

    def __init__(
        self,
        message: str,
        *,
        worker_index: Optional[int] = None,
        pid: Optional[int] = None,
        exc_type: str = "",
        remote_traceback: str = "",
    ) -> None:
        super().__init__(message)
        self.worker_index = worker_index
        self.pid = pid
        self.exc_type = exc_type
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> Any:
        kwargs = {
            "worker_index": self.worker_index,
            "pid": self.pid,
            "exc_type": self.exc_type,
            "remote_traceback": self.remote_traceback,
        }
        return (_rebuild_error, (type(self), str(self), kwargs))


class WorkerDiedError(WorkerError):
    """A worker process ended without reporting an error (killed by a signal, ``os._exit``).

    Attributes:
        exitcode: the process's exit code, negative ``-N`` when killed by signal ``N``.
    """

    def __init__(self, message: str, *, exitcode: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(message, exc_type="", **kwargs)
        self.exitcode = exitcode

    def __reduce__(self) -> Any:
        kwargs = {"worker_index": self.worker_index, "pid": self.pid, "exitcode": self.exitcode}
        return (_rebuild_error, (type(self), str(self), kwargs))


def _rebuild_error(cls: type, message: str, kwargs: Dict[str, Any]) -> WorkerError:
    return cls(message, **kwargs)  # type: ignore[no-any-return]


def _rebuild_typed_error(original: type, message: str, kwargs: Dict[str, Any]) -> WorkerError:
    return typed_error_class(original)(message, **kwargs)


# Types a worker's error is never also made an instance of: a StopIteration raised in a
# generator becomes a RuntimeError (PEP 479); SystemExit, KeyboardInterrupt and other
# BaseExceptions would end the consumer instead of reporting a worker's failure.
_NOT_MIRRORED = (StopIteration, StopAsyncIteration, WorkerError)
_TYPED_CLASSES: Dict[type, type] = {}


def typed_error_class(original: Optional[type]) -> type:
    """The subclass of both :class:`WorkerError` and *original* that the consumer raises,
    so that ``except FileNotFoundError:`` catches a worker's ``FileNotFoundError``.

    :class:`WorkerError` itself when *original* is unknown, is not an ``Exception``
    (``SystemExit``, ``KeyboardInterrupt``), is a ``StopIteration`` or cannot be
    subclassed (``bool``-like final types, layout conflicts).
    """
    if (
        not isinstance(original, type)
        or not issubclass(original, Exception)
        or issubclass(original, _NOT_MIRRORED)
    ):
        return WorkerError
    cls = _TYPED_CLASSES.get(original)
    if cls is None:
        namespace = {
            "__init__": WorkerError.__init__,
            "__str__": BaseException.__str__,  # KeyError's own would quote the message
            "__repr__": BaseException.__repr__,
            "__reduce__": _typed_reduce,
            "__module__": "dataflow.parallel",
            "__qualname__": f"WorkerError[{original.__qualname__}]",
            "original_type": original,
        }
        try:
            cls = type(f"WorkerError[{original.__name__}]", (WorkerError, original), namespace)
        except TypeError:  # a final type, or instance layouts that cannot be combined
            cls = WorkerError
        _TYPED_CLASSES[original] = cls
    return cls


def _typed_reduce(self: WorkerError) -> Any:
    kwargs = {
        "worker_index": self.worker_index,
        "pid": self.pid,
        "exc_type": self.exc_type,
        "remote_traceback": self.remote_traceback,
    }
    return (_rebuild_typed_error, (type(self).original_type, str(self), kwargs))  # type: ignore[attr-defined]


def resolve_type(name: str) -> Optional[type]:
    """The exception class a worker's error report names (``'ValueError'``,
    ``'pkg.mod.Error'``), if the consumer has it already: a module the consumer
    has not imported is not imported for this, and ``<locals>`` classes are not found."""
    if "." not in name:
        found = getattr(builtins, name, None)
        return found if isinstance(found, type) else None
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:split]))
        if module is None:
            continue
        obj: Any = module
        for attr in parts[split:]:
            obj = getattr(obj, attr, None)
        return obj if isinstance(obj, type) else None
    return None


# ---- errors as they travel -----------------------------------------------------


def error_report(exc: BaseException) -> Tuple[str, str, str]:
    """``(type name, message, formatted traceback)`` of *exc*, for sending to the consumer."""
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    try:
        message = str(exc)
    except Exception as err:  # an exception whose __str__ fails still reaches the consumer
        message = f"<str() of the {name} raised {type(err).__name__}>"
    try:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception as err:
        text = f"<the traceback could not be formatted: {type(err).__name__}>"
    return name, message, text


def worker_error(
    owner: str,
    index: Optional[int],
    pid: Optional[int],
    report: Sequence[str],
    original: Optional[type] = None,
) -> WorkerError:
    """The consumer-side exception for an error *report* from a worker.

    It is an instance of :class:`WorkerError` and, where possible, of the
    worker's exception type too (*original*, or the type the report names).
    """
    name, message, text = report
    where = f"{owner} worker {index}" if index is not None else f"{owner} worker"
    if pid is not None:
        where += f" (pid {pid})"
    body = f"{where} raised {name}: {message}" if message else f"{where} raised {name}"
    if text:
        body += f"\n\nTraceback in the worker:\n{text.rstrip()}"
    cls = typed_error_class(original if original is not None else resolve_type(name))
    return cls(body, worker_index=index, pid=pid, exc_type=name, remote_traceback=text)  # type: ignore[no-any-return]


def died_error(
    owner: str, index: int, pid: Optional[int], exitcode: Optional[int]
) -> WorkerDiedError:
    """The consumer-side exception for a worker process that ended without a report."""
    where = f"{owner} worker {index} (pid {pid})"
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        message = f"{where} was killed by {name} without reporting an error"
        if -exitcode == signal.SIGKILL:
            message += (
                "; the out-of-memory killer is the usual cause: use fewer workers, smaller "
                "buffers (hwm, buffer_size) or smaller datapoints"
            )
        elif -exitcode == signal.SIGSEGV:
            message += "; a crash in native code (e.g. an extension module) is the usual cause"
    else:
        message = (
            f"{where} exited with code {exitcode} without reporting an error; something in the "
            "worker called os._exit() or sys.exit()"
        )
    return WorkerDiedError(message, worker_index=index, pid=pid, exitcode=exitcode)


WorkerError.__module__ = WorkerDiedError.__module__ = "dataflow.parallel"

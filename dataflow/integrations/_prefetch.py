"""Read ahead in a background thread: datapoints ready (and placed) before they are asked for.

The thread runs ``produce()`` (an iterator), puts each item in a bounded
queue, and stops when the consumer closes it: at the end, on a ``break``, or
when the consumer is garbage collected. An exception in the thread is raised
in the consumer at the point where the item that failed would have come, with
its traceback. Each item may carry a snapshot (the pipeline's state just
after it was produced), so that a checkpoint taken between two items is the
position of the last item the caller received, not of the thread's.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator, Optional, Tuple

__all__ = ["Prefetcher"]

_POLL_S = 0.1  # how often a blocked thread looks whether it was told to stop

_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetcher:
    """Iterates ``produce()`` in a thread named *name*, at most *depth* items ahead.

    ``snapshot()``, when given, runs in the thread after each item; the last
    snapshot handed out with an item is :attr:`snapshot`.
    """

    def __init__(
        self,
        produce: Callable[[], Iterator[Any]],
        depth: int,
        name: str,
        snapshot: Optional[Callable[[], Any]] = None,
    ) -> None:
        self._queue: queue.Queue[Tuple[Any, Any]] = queue.Queue(depth)
        self._stop = threading.Event()
        self._produce, self._take_snapshot = produce, snapshot
        self.snapshot: Any = None
        self._done = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: Tuple[Any, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            it = self._produce()
            try:
                for item in it:
                    snap = self._take_snapshot() if self._take_snapshot is not None else None
                    if not self._put((item, snap)):
                        return
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
        except BaseException as err:  # raised in the consumer
            self._put((_Failure(err), None))
            return
        self._put((_END, None))

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        while True:
            try:
                item, snap = self._queue.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self.close()
                    raise RuntimeError("the prefetching thread ended without a word") from None
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, _Failure):
            self.close()
            raise item.error
        self.snapshot = snap
        return item

    def close(self) -> None:
        """Stop the thread and wait for it (idempotent)."""
        self._done = True
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def __del__(self) -> None:
        self._stop.set()

"""The DataFlow contract, stated once.

A :class:`DataFlow` is an iterable of *datapoints*. Each datapoint is a
``list`` (or a ``dict``) of *components*, usually numpy arrays or Python
scalars. The rules every dataflow in this library follows:

* ``reset_state()`` is called once, in the process that iterates, before the
  first ``iter(df)``. Processes, sockets, files and random generators are
  created there, so a dataflow can be forked or pickled until it is reset.
* ``iter(df)`` yields datapoints. A finite dataflow can be iterated again once
  a pass has ended (or was abandoned).
* ``len(df)`` is the number of datapoints one pass yields, or raises
  :class:`UnknownLengthError`, which is both a ``NotImplementedError`` (as
  tensorpack code expects) and a ``TypeError`` (so ``list(df)`` still works).
* ``close()`` releases what ``reset_state()`` acquired. A second call does
  nothing, and ``with df:`` calls it on exit.

Code written for tensorpack keeps working: ``get_data()`` and ``size()`` are
aliases of ``__iter__`` and ``__len__``, a subclass that defines only
``get_data()`` / ``size()`` behaves as if it defined ``__iter__`` /
``__len__``, and a ``__len__`` or ``size()`` that raises a plain
``NotImplementedError`` raises :class:`UnknownLengthError` instead.
"""

from __future__ import annotations

import functools
import inspect
import threading
from abc import ABCMeta, abstractmethod
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union, overload

import numpy as np

from ._checks import check_seed as _check_seed
from ._repr import call_repr as _call_repr
from ._repr import is_default as _is_default
from ._rng import seed_state as _seed_state
from ._state import abandon_by_iterating as _abandon_by_iterating
from ._state import load_state as _load_state
from ._state import save_state as _save_state

__all__ = [
    "DataFlow",
    "DataFlowReentrantGuard",
    "DataFlowTerminated",
    "Datapoint",
    "ProxyDataFlow",
    "ReentrancyError",
    "RNGDataFlow",
    "UnknownLengthError",
    "init_args",
    "was_reset",
]

#: One datapoint, a list of components or a dict of named components.
Datapoint = Union[List[Any], Dict[Any, Any]]


class UnknownLengthError(NotImplementedError, TypeError):
    """Raised by ``len(df)`` when a dataflow cannot tell how long one pass is.

    It is a ``NotImplementedError`` so that tensorpack-style code
    (``try: n = df.size() except NotImplementedError: ...``) keeps working, and
    a ``TypeError`` so that ``list(df)``, which asks for a length hint, treats
    the length as merely unknown.
    """


class DataFlowTerminated(BaseException):
    """Signals that a dataflow was stopped from outside while it was running.

    Raised inside worker threads when their runner is closed, so that user code
    in a source cannot swallow it with ``except Exception``.
    """


class ReentrancyError(RuntimeError):
    """Raised when a dataflow that cannot be iterated twice at once is."""


class DataFlowReentrantGuard:
    """A guard for ``__iter__`` of dataflows whose iteration is not re-entrant.

    Use it as ``with self._guard:`` around the body of ``__iter__``. A second
    iteration that starts while the first is still running (in another thread,
    or a nested loop in the same thread) gets a :class:`ReentrancyError` that
    names the dataflow and says how to fix the code, instead of silently
    sharing state with the first.

    Args:
        owner: what the error message calls the guarded dataflow.

    Example:
        >>> class Stream(DataFlow):
        ...     def __init__(self):
        ...         self._guard = DataFlowReentrantGuard("Stream")
        ...     def __iter__(self):
        ...         with self._guard:
        ...             yield from ([i] for i in range(3))
        >>> df = Stream()
        >>> outer = iter(df)
        >>> next(outer)
        [0]
        >>> next(iter(df))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        dataflow.base.ReentrancyError: Stream is already being iterated elsewhere ...
    """

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._lock = threading.Lock()

    def __enter__(self) -> DataFlowReentrantGuard:
        if not self._lock.acquire(blocking=False):
            raise ReentrancyError(
                f"{self._owner} is already being iterated elsewhere (another loop or "
                "thread) and cannot be iterated from two places at once; finish or "
                "break out of the first loop before starting a new one, or build a "
                "separate dataflow for each consumer"
            )
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()

    def __getstate__(self) -> Dict[str, Any]:
        return {"_owner": self._owner}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._owner = state["_owner"]
        self._lock = threading.Lock()


def _iter_from_get_data(self: DataFlow) -> Iterator[Datapoint]:
    return iter(self.get_data())


def _unknown_if_not_implemented(len_func: Callable[[Any], int]) -> Callable[[Any], int]:
    """*len_func*, except that a ``NotImplementedError`` it raises (tensorpack's
    way of saying "unknown length") becomes an :class:`UnknownLengthError`, which
    is also a ``TypeError``, so that ``list(df)`` and the wrappers that ask for
    ``len(ds)`` treat the length as unknown."""

    @functools.wraps(len_func)
    def __len__(self: DataFlow) -> int:
        try:
            return len_func(self)
        except UnknownLengthError:
            raise
        except NotImplementedError as err:
            raise UnknownLengthError(
                str(err)
                or f"{type(self).__name__} does not know how many datapoints one pass yields"
            ) from err

    __len__._converts_not_implemented = True  # type: ignore[attr-defined]
    return __len__


@_unknown_if_not_implemented
def _len_from_size(self: DataFlow) -> int:
    return int(self.size())


# Set in a dataflow's __dict__ when a reset_state() of it returns; see was_reset().
_WAS_RESET = "_dataflow_was_reset"


def _recording_reset(reset: Callable[[Any], None]) -> Callable[[Any], None]:
    """*reset*, recording on the dataflow that it returned (see :func:`was_reset`)."""

    @functools.wraps(reset)
    def reset_state(self: DataFlow) -> None:
        reset(self)
        self.__dict__[_WAS_RESET] = True

    reset_state._records_reset = True  # type: ignore[attr-defined]
    return reset_state


def was_reset(df: DataFlow) -> bool:
    """Whether ``df.reset_state()`` was called on *df* and returned.

    Every dataflow records it, whatever its class, so code that receives a
    dataflow (the helpers of :mod:`dataflow.debug`) can reset it only if it
    was not reset yet: a parallel dataflow refuses a second reset. The
    record is kept on the object (a copy of a reset dataflow counts as
    reset) and ``close()`` leaves it.

    Example:
        >>> df = DataFromList([[1]], shuffle=False)
        >>> was_reset(df)
        False
        >>> df.reset_state()
        >>> was_reset(df)
        True
    """
    return bool(getattr(df, "__dict__", {}).get(_WAS_RESET, False))


class _Parents:
    """The ``parents`` attribute of every dataflow: the dataflows it reads from.

    By default the dataflow in the attribute ``ds`` (where wrappers keep
    their input) followed by those in the list ``df_lists`` (where combiners
    keep theirs); ``()`` for a source. Only the instance's own attributes are
    read, so asking builds nothing and costs two dictionary lookups. A
    subclass that keeps its inputs elsewhere overrides ``parents`` with a
    property, a class attribute, or by assigning it in ``__init__``.
    """

    @overload
    def __get__(self, df: None, owner: Any = None) -> _Parents: ...

    @overload
    def __get__(self, df: DataFlow, owner: Any = None) -> Tuple[DataFlow, ...]: ...

    def __get__(self, df: Optional[DataFlow], owner: Any = None) -> Any:
        if df is None:
            return self
        stored = getattr(df, "__dict__", {})
        ds, lists = stored.get("ds"), stored.get("df_lists")
        parents: Tuple[DataFlow, ...] = (ds,) if isinstance(ds, DataFlow) else ()
        if isinstance(lists, (list, tuple)):
            parents += tuple(x for x in lists if isinstance(x, DataFlow))
        return parents


def pipeline_of(root: Any) -> Iterator[Tuple[Any, Tuple[Any, ...]]]:
    """Every dataflow of *root*'s pipeline once, depth first, with its ``parents``
    (``()`` when a user's ``parents`` property raises: a walk must not fail)."""
    seen = set()
    stack: List[Any] = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        try:
            parents = tuple(node.parents)
        except Exception:
            parents = ()
        yield node, parents
        stack.extend(reversed(parents))


@functools.lru_cache(maxsize=1024)
def _init_parameters(cls: type) -> Tuple[inspect.Parameter, ...]:
    try:
        params = inspect.signature(cls).parameters.values()  # of __init__, without self
    except (TypeError, ValueError):
        return ()
    return tuple(p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


def _is_input(value: Any) -> bool:
    """Whether *value* is a dataflow or a list of them (its first item tells, so
    that a list of a million datapoints costs nothing)."""
    if isinstance(value, DataFlow):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and isinstance(value[0], DataFlow)


def init_args(df: DataFlow, **values: Any) -> Dict[str, Any]:
    """The parameters of ``type(df).__init__`` that *df* keeps, by name: what its
    ``repr`` shows by default.

    A parameter counts when *values* gives its value, or else when the
    instance has an attribute of the same name, or (unless the default is
    ``None``, which a private attribute may hold resolved) of that name with
    a leading underscore. Left out: the input dataflows (``parents`` shows
    them), ``None`` unless the default is something else, and a
    keyword-only parameter (an option) at its default. A subclass that
    stores a parameter under another name overrides ``_repr_args()`` to
    return ``init_args(self, name=value)``.

    Example:
        >>> class Scale(ProxyDataFlow):
        ...     def __init__(self, ds, factor, clip=None, *, copy=False):
        ...         super().__init__(ds)
        ...         self.factor, self.clip, self._copy = factor, clip, copy
        >>> init_args(Scale(DataFromList([[1]]), 2))
        {'factor': 2}
        >>> Scale(DataFromList([[1]]), 2, clip=(0, 1), copy=True)
        Scale(factor=2, clip=(0, 1), copy=True)
    """
    stored = getattr(df, "__dict__", {})
    args = {}
    for param in _init_parameters(type(df)):
        name, default = param.name, param.default
        if name in values:
            value = values[name]
        elif name in stored:
            value = stored[name]
        elif default is not None and "_" + name in stored:
            value = stored["_" + name]
        else:
            continue
        if _is_input(value) or (value is None and (default is None or default is param.empty)):
            continue
        if param.kind is param.KEYWORD_ONLY and _is_default(value, default):
            continue
        args[name] = value
    return args


class DataFlow(metaclass=ABCMeta):
    """Base class of every dataflow: an iterable of datapoints.

    Subclass it and define ``__iter__`` (a generator is easiest) to write a
    source; define ``__len__`` when the number of datapoints in one pass is
    known. Define ``reset_state()`` to create what must not be shared between
    processes (random generators, open files, sockets), and ``close()`` to
    release it.

    Example:
        >>> class Squares(DataFlow):
        ...     def __iter__(self):
        ...         for i in range(3):
        ...             yield [i, i * i]
        ...     def __len__(self):
        ...         return 3
        >>> df = Squares()
        >>> df.reset_state()
        >>> list(df)
        [[0, 0], [1, 1], [2, 4]]

    Every dataflow also knows its inputs, ``df.parents`` (``()`` for a
    source), and its ``repr`` shows its key parameters (see
    :func:`~dataflow.describe` for the whole pipeline):

        >>> Squares().parents, Squares()
        ((), Squares())
    """

    parents = _Parents()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The tensorpack interface: a class that defines only get_data()/size()
        # gets __iter__/__len__ that call them. Its own methods win over the
        # ones it inherits, just as if it had defined __iter__/__len__.
        if "get_data" in cls.__dict__ and "__iter__" not in cls.__dict__:
            cls.__iter__ = _iter_from_get_data  # type: ignore[method-assign]
        len_func = cls.__dict__.get("__len__")
        if len_func is None:
            if "size" in cls.__dict__:
                cls.__len__ = _len_from_size  # type: ignore[method-assign]
        elif callable(len_func) and not hasattr(len_func, "_converts_not_implemented"):
            # A __len__ that raises NotImplementedError, as tensorpack's did, says
            # "unknown": make it the error that list(df) and the wrappers expect.
            cls.__len__ = _unknown_if_not_implemented(len_func)  # type: ignore[method-assign]
        reset = cls.__dict__.get("reset_state")
        if inspect.isfunction(reset) and not hasattr(reset, "_records_reset"):
            cls.reset_state = _recording_reset(reset)  # type: ignore[method-assign]

    @abstractmethod
    def __iter__(self) -> Iterator[Datapoint]:
        """Yield the datapoints of one pass."""
        raise NotImplementedError(f"{type(self).__name__} must define __iter__()")

    def __len__(self) -> int:
        """The number of datapoints one pass yields.

        Raises:
            UnknownLengthError: the dataflow does not know it.
        """
        raise UnknownLengthError(
            f"{type(self).__name__} does not know how many datapoints one pass yields"
        )

    @_recording_reset
    def reset_state(self) -> None:
        """Prepare to iterate; call once, in the process that iterates."""

    def close(self) -> None:
        """Release what ``reset_state()`` acquired. Calling it again does nothing."""

    def __enter__(self) -> DataFlow:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        """``ClassName(key=value, ...)`` with the key parameters, each value short."""
        try:
            return _call_repr(type(self).__name__, self._repr_args().items())
        except Exception:  # a repr must not fail, even on a half-built object
            return object.__repr__(self)

    def _repr_args(self) -> Dict[str, Any]:
        """The parameters ``repr()`` shows, by name; :func:`init_args` by default.
        Subclasses whose parameters are not stored under their own name override it."""
        return init_args(self)

    # ---- checkpointing (torch's Stateful protocol) -------------------------
    def state_dict(self) -> Dict[str, Any]:
        """The position of this pipeline, as JSON-compatible data.

        Call it after ``reset_state()``, between passes or between two
        datapoints of a pass (from the thread that iterates). The state
        describes the position just after the last datapoint the caller
        received: each dataflow's own part (:meth:`own_state_dict`) nested
        with its parents' states. It holds positions, counters and random
        states, never datapoints. See ``docs/checkpointing.md``.

        Raises:
            NotImplementedError: a dataflow of the pipeline cannot save its
                position; the message names it.

        Example:
            >>> def make():
            ...     df = DataFromList([[i] for i in range(5)], seed=1)
            ...     df.reset_state()
            ...     return df
            >>> df = make()
            >>> it = iter(df)
            >>> first_two = [next(it), next(it)]
            >>> state = df.state_dict()
            >>> rest = list(it)
            >>> resumed = make()
            >>> resumed.load_state_dict(state)
            >>> list(resumed) == rest
            True
        """
        return _save_state(self)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue from *state*, made by :meth:`state_dict` of the same pipeline.

        Call it on a freshly built pipeline after ``reset_state()`` and before
        the next ``iter(df)``: that pass continues exactly where the saved
        one stood, and later passes are those the uninterrupted run would
        have yielded.

        Raises:
            ValueError: *state* comes from another pipeline (another
                structure, class or key parameter); the message says what differs.
        """
        _load_state(self, state)

    def own_state_dict(self) -> Any:
        """This dataflow's own part of :meth:`state_dict`, without its parents'.

        Define it, with :meth:`load_own_state_dict`, to make a dataflow of
        your own resumable. Return JSON-compatible data: positions, counters,
        random states (``dataflow._state.rng_state``), never datapoints.
        """
        raise NotImplementedError(f"{type(self).__name__} must define own_state_dict()")

    def load_own_state_dict(self, state: Any) -> None:
        """Load what :meth:`own_state_dict` returned; the parents are loaded already."""
        raise NotImplementedError(f"{type(self).__name__} must define load_own_state_dict()")

    def _abandon_pass(self) -> None:
        # See dataflow._state.abandon: by default iter() consumes a loaded position.
        stored = self.__dict__
        if stored.get("_pending") is not None or "_pending_skip" in stored:
            _abandon_by_iterating(self)

    # ---- tensorpack names ------------------------------------------------
    def get_data(self) -> Iterator[Datapoint]:
        """Alias of ``iter(df)``, kept for code written for tensorpack."""
        # The nearest real __iter__, skipping the ones that call get_data(): so a
        # subclass's get_data() may call super().get_data() without recursing.
        for klass in type(self).__mro__:
            method = klass.__dict__.get("__iter__")
            if method is not None and method is not _iter_from_get_data:
                return method(self)
        raise AssertionError("unreachable: DataFlow defines __iter__")

    def size(self) -> int:
        """Alias of ``len(df)``, kept for code written for tensorpack."""
        # The nearest real __len__, skipping the one that calls size(): so a
        # subclass's size() may call super().size() without recursing.
        for klass in type(self).__mro__:
            method = klass.__dict__.get("__len__")
            if method is not None and method is not _len_from_size:
                return method(self)
        raise AssertionError("unreachable: DataFlow defines __len__")


class ProxyDataFlow(DataFlow):
    """A dataflow that wraps another one, ``self.ds``.

    ``reset_state``, ``__iter__``, ``__len__`` and ``close`` are forwarded to
    ``self.ds``; subclasses override the ones they change.

    Args:
        ds: the dataflow to wrap.

    Example:
        >>> class Negate(ProxyDataFlow):
        ...     def __iter__(self):
        ...         for dp in self.ds:
        ...             yield [-x for x in dp]
        >>> df = Negate(DataFromList([[1, 2], [3, 4]], shuffle=False))
        >>> df.reset_state()
        >>> list(df), len(df)
        ([[-1, -2], [-3, -4]], 2)
    """

    def __init__(self, ds: DataFlow) -> None:
        if not isinstance(ds, DataFlow):
            hint = (
                "; wrap a list in DataFromList(...) or any other iterable in DataFromIterable(...)"
                if hasattr(ds, "__iter__")
                else ""
            )
            raise TypeError(f"ds must be a DataFlow, got {type(ds).__name__}{hint}")
        self.ds = ds

    def reset_state(self) -> None:
        self.ds.reset_state()

    def __len__(self) -> int:
        return len(self.ds)

    def __iter__(self) -> Iterator[Datapoint]:
        return iter(self.ds)

    def close(self) -> None:
        self.ds.close()

    def own_state_dict(self) -> Any:
        """``None``: a wrapper that yields its input as it comes has no position of
        its own; its input's state is all there is."""
        return None

    def load_own_state_dict(self, state: Any) -> None:
        """Nothing to load (see :meth:`own_state_dict`)."""

    def _abandon_pass(self) -> None:
        for parent in self.parents:
            parent._abandon_pass()


class RNGDataFlow(DataFlow):
    """A dataflow that draws random numbers from its own ``self.rng``.

    ``self.rng`` is a ``numpy.random.RandomState`` created in
    ``reset_state()``. Without a seed, each ``reset_state()`` draws fresh
    entropy from the operating system, so copies of the dataflow in different
    processes never share a stream. With a seed (``set_seed(n)``, or the
    ``seed=`` argument of the built-in sources) every ``reset_state()`` starts
    the same stream, so runs are reproducible. Inside the workers of a
    parallel runner every copy gets a stream of its own: a seeded copy's
    stream also depends on the worker index, and an unseeded one follows
    the runner's ``seed`` (see :func:`dataflow.worker.get_worker_info`).

    Example:
        >>> class Coin(RNGDataFlow):
        ...     def __iter__(self):
        ...         for _ in range(3):
        ...             yield [int(self.rng.randint(2))]
        >>> a, b = Coin().set_seed(7), Coin().set_seed(7)
        >>> a.reset_state(); b.reset_state()
        >>> list(a) == list(b)
        True
    """

    #: The seed of ``self.rng``; ``None`` means fresh entropy at every reset.
    seed: Optional[int] = None
    _rng: Optional[np.random.RandomState] = None

    def set_seed(self, seed: Optional[int]) -> RNGDataFlow:
        """Seed ``self.rng`` at the next ``reset_state()``; returns ``self``."""
        self.seed = _check_seed(seed)
        return self

    @property
    def rng(self) -> np.random.RandomState:
        """The random generator of this dataflow (after ``reset_state()``)."""
        if self._rng is None:
            raise RuntimeError(
                f"{type(self).__name__}.rng does not exist before reset_state(); call "
                "reset_state() once, in the process that iterates, before iterating it or "
                "loading a state into it (load_state_dict)"
            )
        return self._rng

    @rng.setter
    def rng(self, value: np.random.RandomState) -> None:
        self._rng = value

    def reset_state(self) -> None:
        super().reset_state()
        self._rng = np.random.RandomState(_seed_state(self.seed))

"""See a pipeline as a tree: every dataflow, its key parameters, where it runs.

A pipeline is a graph of dataflows, each knowing its inputs (``df.parents``)
and showing its key parameters in its ``repr``. :func:`describe` walks that
graph from the dataflow you iterate down to the sources.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ._checks import check_int as _check_int
from .base import DataFlow, pipeline_of
from .parallel import (
    MultiProcessMapDataZMQ,
    MultiProcessRunner,
    MultiProcessRunnerZMQ,
    MultiThreadMapData,
    MultiThreadRunner,
)
from .parallel.ray import RayRunner  # Ray itself is imported only when one starts

__all__ = ["PipelineTree", "describe"]

_INDENT = "  "


class PipelineTree:
    """A pipeline drawn as an indented tree; ``str()`` (and ``print()``) show it.

    One line per dataflow, its ``repr``, with the dataflows it reads from
    indented below it, the outermost first. A dataflow read by two others
    is drawn once, tagged ``[#1]``, and later lines say ``[#1, see above]``.
    Parallel dataflows are tagged with what runs where (see
    :func:`describe`).

    Attributes:
        root: the dataflow the tree starts from.
        lines: the lines of the tree, without line ends.

    Example:
        >>> tree = describe(MapData(DataFromList([[1]], shuffle=False), abs))
        >>> tree.lines
        ('MapData(func=abs)', '  DataFromList(n=1, shuffle=False)')
        >>> tree.root
        MapData(func=abs)
    """

    def __init__(self, root: DataFlow, lines: Tuple[str, ...]) -> None:
        self.root = root
        self.lines = lines

    def __str__(self) -> str:
        return "\n".join(self.lines)

    def __repr__(self) -> str:
        return str(self)


def describe(df: DataFlow, *, max_depth: int = 100) -> PipelineTree:
    """The pipeline that ends in *df*, as a tree: ``print(describe(df))``.

    Walks ``parents`` from *df* down to the sources, one line per dataflow
    with its ``repr``, inputs indented below. Builds, resets and iterates
    nothing, so it works before and after ``reset_state()``, and costs a
    ``repr`` per dataflow. A dataflow reached twice (a diamond) is drawn once.

    Where each part runs: a runner (``MultiProcessRunnerZMQ``,
    ``MultiProcessRunner``, ``MultiThreadRunner``) is tagged ``[consumer]``
    and its input is drawn under a line ``in each of N worker processes:``
    (or threads), since every worker runs a copy of it (a shard with
    ``exactly_once=True``). A mapper reads its input in the consumer and
    only its ``map_func`` runs in the workers, which its tag says. A
    ``MultiThreadRunner`` builds its input in each thread with ``get_df()``,
    which ``describe`` does not call: it shows ``get_df=<name>``.

    Args:
        df: the dataflow to start from, usually the one you iterate.
        max_depth: most levels drawn below *df*, >= 0 (default 100); what
            is deeper is replaced by one line ``... (deeper than max_depth=N)``.

    Example:
        >>> def double(dp):
        ...     return [2 * dp[0]]
        >>> df = DataFromList([[i] for i in range(1000)], shuffle=True)
        >>> df = MultiProcessRunnerZMQ(MapData(df, double), num_proc=4)
        >>> print(describe(BatchData(df, 64)))
        BatchData(batch_size=64, remainder=False, use_list=False)
          MultiProcessRunnerZMQ(num_proc=4, hwm=50)  [consumer]
            in each of 4 worker processes:
              MapData(func=double)
                DataFromList(n=1000, shuffle=True)
    """
    if not isinstance(df, DataFlow):
        raise TypeError(f"df must be a DataFlow, got {type(df).__name__}")
    max_depth = _check_int("max_depth", max_depth, 0, "a non-negative int")
    return PipelineTree(df, tuple(_Drawing(max_depth).draw(df)))


def _workers(count: Any, kind: str, *, each: bool = False) -> str:
    """``"1 worker process"``, ``"4 worker threads"``, ``"each of 4 worker threads"``."""
    if count == 1:
        return f"1 worker {kind}"
    plural = f"{count} worker {'processes' if kind == 'process' else 'threads'}"
    return f"each of {plural}" if each else plural


def _parallelism(df: Any) -> Optional[Tuple[bool, Any, str]]:
    """For a parallel dataflow: whether its inputs run in its workers, how
    many workers, and whether they are processes or threads."""
    for classes, inputs_in_workers, count, kind in (
        ((MultiProcessRunnerZMQ, MultiProcessRunner), True, "num_proc", "process"),
        ((RayRunner,), True, "num_workers", "process"),  # Ray actors are processes
        ((MultiThreadRunner,), True, "num_thread", "thread"),
        ((MultiProcessMapDataZMQ,), False, "num_proc", "process"),
        ((MultiThreadMapData,), False, "num_thread", "thread"),
    ):
        if isinstance(df, classes):
            return inputs_in_workers, getattr(df, count, "?"), kind
    return None


def parallel_stages(df: DataFlow) -> List[Tuple[DataFlow, str, bool, Any]]:
    """Every parallel dataflow in the graph of *df*, each once, root first.

    Each as ``(dataflow, kind, inputs_in_workers, workers)``: *kind* is
    ``"process"`` or ``"thread"``; *inputs_in_workers* is true for a runner
    (its input pipeline runs in its workers) and false for a mapper (its
    input runs in the consumer, only ``map_func`` in the workers); *workers*
    is how many. A ``parents`` property that raises counts as no parents,
    as in :func:`describe`.
    """
    found: List[Tuple[DataFlow, str, bool, Any]] = []
    for node, _ in pipeline_of(df):
        parallel = _parallelism(node)
        if parallel is not None:
            found.append((node, parallel[2], parallel[0], parallel[1]))
    return found


def _one_line(df: Any) -> str:
    try:
        text = repr(df)
    except Exception as err:  # a repr of a user's class may fail; the tree must not
        text = f"<{type(df).__name__}: repr() raised {type(err).__name__}>"
    return " ".join(text.split())


class _Drawing:
    """One walk of the graph, depth first, without recursion."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.lines: List[str] = []
        self.first_line: Dict[int, int] = {}  # id(dataflow) -> index of its line
        self.tags: Dict[int, int] = {}  # id(dataflow) -> its number, once reached twice
        self.keep: List[Any] = []  # keeps every drawn dataflow alive, so ids stay unique

    def draw(self, root: Any) -> List[str]:
        # (a dataflow or a line of text, its indentation, its level below the root)
        stack: List[Tuple[Any, int, int]] = [(root, 0, 0)]
        while stack:
            item, indent, level = stack.pop()
            if isinstance(item, str):
                self.lines.append(_INDENT * indent + item)
            else:
                stack.extend(reversed(self._visit(item, indent, level)))
        for key, tag in self.tags.items():
            self.lines[self.first_line[key]] += f"  [#{tag}]"
        return self.lines

    def _visit(self, df: Any, indent: int, level: int) -> List[Tuple[Any, int, int]]:
        """Draw the line of *df*; return what to draw below it."""
        if id(df) in self.first_line:
            tag = self.tags.setdefault(id(df), len(self.tags) + 1)
            self.lines.append(f"{_INDENT * indent}{_one_line(df)}  [#{tag}, see above]")
            return []
        self.first_line[id(df)] = len(self.lines)
        self.keep.append(df)
        notes: List[str] = []
        try:
            parents = tuple(df.parents)
        except Exception as err:  # a user's parents property may fail; the tree must not
            parents = ()
            notes.append(f"parents raised {type(err).__name__}")
        below: List[Tuple[Any, int, int]] = []
        inner = indent + 1
        parallel = _parallelism(df)
        if parallel is not None:
            inputs_in_workers, count, kind = parallel
            if not inputs_in_workers:
                notes.append(f"consumer; map_func runs in {_workers(count, kind)}")
            elif parents:
                notes.append("consumer")
                below.append((f"in {_workers(count, kind, each=True)}:", inner, level))
                inner += 1
            else:
                notes.append(f"consumer; get_df() runs in {_workers(count, kind, each=True)}")
        self.lines.append(_INDENT * indent + _one_line(df) + "".join(f"  [{n}]" for n in notes))
        if parents and level >= self.max_depth:
            return below + [(f"... (deeper than max_depth={self.max_depth})", inner, level)]
        return below + [(parent, inner, level + 1) for parent in parents]

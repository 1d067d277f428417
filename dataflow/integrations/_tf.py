"""Feed TensorFlow: a DataFlow as a ``tf.data.Dataset``."""

from __future__ import annotations

from typing import Any, Iterator, List, Optional

import numpy as np

from .._optional import import_optional
from ..base import DataFlow

__all__ = ["to_tf"]


def to_tf(df: DataFlow, *, output_signature: Any = None) -> Any:
    """*df* as a ``tf.data.Dataset`` (``tf.data.Dataset.from_generator``).

    Without *output_signature*, the signature is inferred from the first
    datapoint: a tuple of ``tf.TensorSpec`` for a list datapoint, a dict
    for a dict datapoint, with each array's dtype and shape, its first
    dimension left unknown (the last batch of a pass may be smaller; images
    may differ in size). Python numbers and strings become scalars. The
    first datapoint is read once to infer it and still yielded first.

    Each iteration of the dataset is one pass of *df*, which is reset here
    (do not call ``reset_state()`` first).

    Limits: TensorFlow runs the generator in its own thread, in Python,
    holding the GIL, so ``num_parallel_calls`` and ``interleave`` cannot
    make it faster; do the parallel work with the pipeline's runners and
    mappers, and use ``.prefetch()`` on the dataset to overlap it with
    training.

    Args:
        df: the pipeline; not reset yet.
        output_signature: a nested structure of ``tf.TensorSpec``, as
            ``from_generator`` takes it, or ``None`` to infer it.

    Example:
        >>> ds = to_tf(BatchData(DataFromList([[i, 0.5] for i in range(4)]), 2))
        >>> [(spec.shape.as_list(), spec.dtype.name) for spec in ds.element_spec]
        [([None], 'int32'), ([None], 'float32')]
        >>> [len(x) for x, y in ds]
        [2, 2]
    """
    tf = import_optional("tensorflow", "dataflow.to_tf")
    if not isinstance(df, DataFlow):
        raise TypeError(f"to_tf: df must be a DataFlow, got {type(df).__name__}")
    df.reset_state()
    peeked: List[Any] = []
    if output_signature is None:
        it = iter(df)
        try:
            first = next(it)
        except StopIteration:
            raise ValueError(
                "to_tf: the pipeline yielded nothing, so there is no datapoint to infer the "
                "signature from; pass output_signature="
            ) from None
        output_signature = _signature(tf, first)
        peeked.append((first, it))

    def generator() -> Iterator[Any]:
        if peeked:  # the pass whose first datapoint was read to infer the signature
            first, rest = peeked.pop()
            yield _structure(first)
            for dp in rest:
                yield _structure(dp)
            return
        for dp in df:
            yield _structure(dp)

    return tf.data.Dataset.from_generator(generator, output_signature=output_signature)


def _structure(dp: Any) -> Any:
    return tuple(dp) if isinstance(dp, list) else dp


def _signature(tf: Any, dp: Any) -> Any:
    if isinstance(dp, dict):
        return {k: _spec(tf, v, repr(k)) for k, v in dp.items()}
    if isinstance(dp, (list, tuple)):
        return tuple(_spec(tf, v, str(i)) for i, v in enumerate(dp))
    raise TypeError(
        f"to_tf: a datapoint is a list or a dict, got {type(dp).__name__}; pass output_signature="
    )


def _spec(tf: Any, value: Any, where: str) -> Any:
    if isinstance(value, (str, bytes)):
        return tf.TensorSpec(shape=(), dtype=tf.string)
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        dtype: Optional[Any] = tf.string
    elif arr.dtype.kind in "biuf c".replace(" ", ""):
        dtype = tf.as_dtype(arr.dtype)
    else:
        raise TypeError(
            f"to_tf: component {where} of the first datapoint has dtype {arr.dtype}, which "
            "TensorFlow has no tensor type for; convert it in the pipeline or pass "
            "output_signature="
        )
    shape = (None,) + arr.shape[1:] if arr.ndim else ()
    return tf.TensorSpec(shape=shape, dtype=dtype)

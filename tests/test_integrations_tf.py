"""dataflow.to_tf: a pipeline as a tf.data.Dataset (run where TensorFlow is installed)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import dataflow as D

tf = pytest.importorskip("tensorflow")


def source(n=10):
    return D.DataFromList(
        [[np.full((2, 3), i, np.float32), i, f"s{i}"] for i in range(n)], shuffle=False
    )


def test_the_signature_is_inferred_and_the_first_datapoint_kept():
    ds = D.to_tf(D.BatchData(source(), 4, remainder=True))
    x, y, s = ds.element_spec
    assert (x.shape.as_list(), x.dtype) == ([None, 2, 3], tf.float32)
    assert (y.shape.as_list(), y.dtype) == ([None], tf.int32)
    assert s.dtype == tf.string
    for _ in range(2):  # every iteration is a pass, the first one included
        got = [yb.numpy().tolist() for _, yb, _ in ds]
        assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_dict_datapoints_and_an_explicit_signature():
    dicts = D.DataFromList([{"a": np.arange(3), "b": 1.5}], shuffle=False)
    ds = D.to_tf(dicts)
    assert set(ds.element_spec) == {"a", "b"}
    (dp,) = list(ds)
    assert dp["a"].numpy().tolist() == [0, 1, 2] and dp["b"].numpy() == 1.5
    signature = (
        tf.TensorSpec((2, 3), tf.float32),
        tf.TensorSpec((), tf.int64),
        tf.TensorSpec((), tf.string),
    )
    explicit = D.to_tf(source(3), output_signature=signature)
    assert [int(y) for _, y, _ in explicit] == [0, 1, 2]


def test_refusals():
    with pytest.raises(ValueError, match="yielded nothing"):
        D.to_tf(D.DataFromList([], shuffle=False))
    with pytest.raises(TypeError, match="no tensor type"):
        D.to_tf(D.DataFromList([[object()]], shuffle=False))
    with pytest.raises(TypeError, match="must be a DataFlow"):
        D.to_tf([[1]])


def test_a_missing_tensorflow_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ImportError, match=r"dataflow-ml\[tf\]"):
        D.to_tf(source())

"""Feed the training frameworks: PyTorch, JAX and TensorFlow.

Each adapter imports its framework only when called; a missing framework is
an ``ImportError`` naming the extra to install (``pip install
'dataflow-ml[torch]'``, ``[jax]``, ``[tf]``). See ``docs/integrations.md``.
"""

from ._jax import to_jax
from ._tf import to_tf
from ._torch import to_tensors, to_torch

__all__ = ["to_jax", "to_tensors", "to_tf", "to_torch"]

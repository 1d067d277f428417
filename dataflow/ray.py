"""Run a pipeline on a Ray cluster: :class:`RayRunner` (needs ``pip install 'dataflow-ml[ray]'``).

Importing this module does not import Ray; making a :class:`RayRunner` does,
and raises an ``ImportError`` that says how to install it when it is missing.
The guide is ``docs/ray.md``.
"""

from .parallel.ray import RayRunner

__all__ = ["RayRunner"]

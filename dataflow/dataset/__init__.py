"""Readers of standard datasets in their official on-disk formats.

Imported on first use (``dataflow.dataset`` or ``import dataflow.dataset``).
Every reader takes a directory, yields ``[image, label]``-style datapoints,
and has an exact ``len()``.
"""

# [exports: dataset.mnist]
# [exports: dataset.cifar]
# [exports: dataset.ilsvrc]
# [exports: dataset.others]

__all__ = [
    # [all: dataset.mnist]
    # [all: dataset.cifar]
    # [all: dataset.ilsvrc]
    # [all: dataset.others]
]

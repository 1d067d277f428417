"""Readers of standard datasets in their official on-disk formats.

Imported on first use (``dataflow.dataset`` or ``import dataflow.dataset``).
Every reader takes a directory, yields ``[image, label]``-style datapoints,
and has an exact ``len()``.
"""

from .mnist import (
    FashionMnist,
    Mnist,
)
from .cifar import (
    Cifar10,
    Cifar100,
    CifarBase,
)
from .ilsvrc import (
    ILSVRC12,
    ILSVRC12Files,
    ILSVRCMeta,
)
from .bsds500 import BSDS500
from .caltech101 import Caltech101Silhouettes
from .places365 import Places365Standard
from .svhn import SVHNDigit
from .tinyimagenet import TinyImageNet

__all__ = [
    # dataset.mnist
    "FashionMnist",
    "Mnist",
    # dataset.cifar
    "Cifar10",
    "Cifar100",
    "CifarBase",
    # dataset.ilsvrc
    "ILSVRC12",
    "ILSVRC12Files",
    "ILSVRCMeta",
    # dataset.others
    "BSDS500",
    "Caltech101Silhouettes",
    "Places365Standard",
    "SVHNDigit",
    "TinyImageNet",
]

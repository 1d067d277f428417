"""Dataflows for images: read image files, and augment image components with
the augmentors of :mod:`dataflow.imgaug`.

OpenCV (``pip install 'dataflow-ml[image]'``) is needed to read files and by
most augmentors; it is imported on first use.
"""

from .augment import AugmentImageComponent, AugmentImageComponents, AugmentImageCoordinates
from .source import ImageFromFile

__all__ = [
    "AugmentImageComponent",
    "AugmentImageComponents",
    "AugmentImageCoordinates",
    "ImageFromFile",
]

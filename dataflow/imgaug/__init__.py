"""Image augmentation: augmentors that draw random parameters and return
deterministic transforms for images, masks and coordinates.

``from dataflow import imgaug`` (imported on first use) and use the
augmentors on their own or through the dataflows of :mod:`dataflow.image`::

    from dataflow import imgaug
    from dataflow.image import AugmentImageComponent

    augs = [imgaug.ResizeShortestEdge(256), imgaug.RandomCrop(224),
            imgaug.Flip(horiz=True), imgaug.Brightness(30)]
    df = AugmentImageComponent(df, augs, index=0)

Most augmentors that resize, warp or convert colors need OpenCV
(``pip install 'dataflow-ml[image]'``); crops, flips, pastes and arithmetic on
pixel values work with numpy alone. OpenCV is imported on first use.
"""

from .base import Augmentor, AugmentorList, ImageAugmentor, PhotometricAugmentor
from .convert import ColorSpace, Grayscale, ToFloat32, ToUint8
from .crop import (
    CenterCrop,
    GoogleNetRandomCropAndResize,
    RandomCrop,
    RandomCropRandomShape,
    RandomCutout,
)
from .external import Albumentations, IAAugmentor
from .geometry import (
    Affine,
    Flip,
    RandomResize,
    Resize,
    ResizeShortestEdge,
    Rotation,
    RotationAndCropValid,
    Shift,
    Transpose,
)
from .meta import Identity, MapImage, RandomApplyAug, RandomChooseAug, RandomOrderAug
from .noise import GaussianNoise, JpegNoise, SaltPepperNoise
from .paste import BackgroundFiller, CenterPaste, ConstantBackgroundFiller, RandomPaste
from .photometric import (
    Brightness,
    BrightnessScale,
    Clip,
    Contrast,
    Gamma,
    GaussianBlur,
    Hue,
    Lighting,
    MeanVarianceNormalize,
    MinMaxNormalize,
    Saturation,
)
from .transform import (
    CropTransform,
    FlipTransform,
    NoOpTransform,
    PhotometricTransform,
    ResizeTransform,
    Transform,
    TransformFactory,
    TransformList,
    TransposeTransform,
    WarpAffineTransform,
)

__all__ = [
    # base
    "Augmentor",
    "AugmentorList",
    "ImageAugmentor",
    "PhotometricAugmentor",
    # transform
    "CropTransform",
    "FlipTransform",
    "NoOpTransform",
    "PhotometricTransform",
    "ResizeTransform",
    "Transform",
    "TransformFactory",
    "TransformList",
    "TransposeTransform",
    "WarpAffineTransform",
    # geometry
    "Affine",
    "Flip",
    "RandomResize",
    "Resize",
    "ResizeShortestEdge",
    "Rotation",
    "RotationAndCropValid",
    "Shift",
    "Transpose",
    # crop
    "CenterCrop",
    "GoogleNetRandomCropAndResize",
    "RandomCrop",
    "RandomCropRandomShape",
    "RandomCutout",
    # paste
    "BackgroundFiller",
    "CenterPaste",
    "ConstantBackgroundFiller",
    "RandomPaste",
    # photometric
    "Brightness",
    "BrightnessScale",
    "Clip",
    "Contrast",
    "Gamma",
    "GaussianBlur",
    "Hue",
    "Lighting",
    "MeanVarianceNormalize",
    "MinMaxNormalize",
    "Saturation",
    # noise
    "GaussianNoise",
    "JpegNoise",
    "SaltPepperNoise",
    # convert
    "ColorSpace",
    "Grayscale",
    "ToFloat32",
    "ToUint8",
    # meta
    "Identity",
    "MapImage",
    "RandomApplyAug",
    "RandomChooseAug",
    "RandomOrderAug",
    # external
    "Albumentations",
    "IAAugmentor",
]

"""Input normalisation of each model family, from 0..255 RGB crops to the network's input.

Conventions: images are (N, H, W, 3) NHWC, RGB, uint8 or float on the 0..255 scale.
`normalize` computes `((images * input_scale) - mean) / std` in float32:

    * VGG-M family (MatConvNet): input_scale 1, `mean` = the model's 224x224x3 `averageImage`
      (0..255 scale), no std.
    * EfficientNet-Lite0 (torchvision convention): input_scale 1/255, mean
      [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225].

A mean IMAGE whose size differs from the crop is resized to the crop size, as ECO does before
subtracting it. MATLAB's `imresize` defaults to bicubic with antialiasing; here it is
`jax.image.resize(..., "linear", antialias=True)` (bilinear, half-pixel centres, antialiased
when shrinking). The VGG-M mean image is smooth (per-channel std a few grey levels), so the two
differ by far less than one grey level. The size comes from static shapes, so `normalize`
traces once per crop size.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGGM_MEAN_RGB = (123.68, 116.78, 103.94)  # VGG-M mean colour (MatConvNet), 0..255 RGB


@dataclasses.dataclass(frozen=True, eq=False)
class Preprocessing:
    """How to normalise 0..255 RGB images for one model.

    Attributes:
        mean: (H, W, 3) mean image or (3,) mean colour, in the model's input scale
            (after `input_scale`).
        std: (3,) per-channel std in the model's input scale, or None (no division).
        input_scale: factor applied to the 0..255 RGB values first.
    """
    mean: np.ndarray
    std: np.ndarray | None = None
    input_scale: float = 1.0

    def __post_init__(self):
        mean = np.asarray(self.mean, np.float32)
        if not (mean.shape == (3,) or (mean.ndim == 3 and mean.shape[-1] == 3)):
            raise ValueError(f"mean must be (3,) or (H, W, 3), got shape {mean.shape}")
        object.__setattr__(self, "mean", mean)
        if self.std is not None:
            std = np.asarray(self.std, np.float32)
            if std.shape != (3,) or np.any(std <= 0):
                raise ValueError(f"std must be 3 positive values, got {self.std!r}")
            object.__setattr__(self, "std", std)


def vggm_preprocessing(mean_image: np.ndarray) -> Preprocessing:
    """MatConvNet VGG-M family: 0..255 RGB minus the mean image (or colour)."""
    return Preprocessing(mean=np.asarray(mean_image, np.float32), std=None, input_scale=1.0)


def imagenet_preprocessing() -> Preprocessing:
    """torchvision ImageNet normalisation on 0..1 RGB (EfficientNet-Lite0 weights)."""
    return Preprocessing(mean=np.array(IMAGENET_MEAN, np.float32),
                         std=np.array(IMAGENET_STD, np.float32), input_scale=1.0 / 255.0)


def resized_mean(mean: np.ndarray, hw: tuple[int, int]) -> Array:
    """The mean image resized to `hw` (bilinear, antialiased); a mean colour is returned as is."""
    mean = jnp.asarray(mean, jnp.float32)
    if mean.ndim == 1 or tuple(mean.shape[:2]) == tuple(hw):
        return mean
    return jax.image.resize(mean, (*hw, 3), method="linear", antialias=True)


def standardize(images, *, mean, std, input_scale) -> Array:
    """`(images * input_scale - mean) / std` in float32: the one normalisation arithmetic.

    `normalize` (distillation, model tests) and the trackers' `CNNExtractor` (whose mean,
    std and scale are params-pytree leaves, the mean pre-resized to the patch size by
    `ctjax.features.cnn.cnn_params`) both call this.

    Args:
        images: (N, H, W, 3) uint8 or float, RGB on the 0..255 scale.
        mean: (H, W, 3) mean image at the images' size, or (3,) mean colour.
        std: (3,) per-channel std, or None (no division).
        input_scale: scalar applied to the 0..255 values first.

    Returns:
        (N, H, W, 3) float32.
    """
    x = jnp.asarray(images).astype(jnp.float32) * input_scale
    x = x - mean
    if std is not None:
        x = x / jnp.asarray(std)
    return x


def normalize(images, prep: Preprocessing) -> Array:
    """Normalises a batch of RGB images for the model `prep` belongs to.

    Args:
        images: (N, H, W, 3) uint8 or float, RGB on the 0..255 scale.
        prep: the model's `Preprocessing`.

    Returns:
        (N, H, W, 3) float32 network input.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"normalize expects (N, H, W, 3) RGB images, got shape {images.shape}")
    return standardize(images, mean=resized_mean(prep.mean, images.shape[1:3]), std=prep.std,
                       input_scale=prep.input_scale)

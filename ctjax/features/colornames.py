"""Colour names, the intensity channel and the grey feature of ECO-HC / DeepSTRCF, in JAX.

Conventions:

* Images are NHWC with any leading axes, `(..., H, W, C)`, RGB (C = 3) or grey (C = 1), values
  0..255, uint8 or float. Outputs are `(..., H // cell, W // cell, D)` float32 cell averages;
  pixels past the last whole cell are dropped (ECO's `average_feature_region.m`).
* Lookup tables are host NumPy arrays loaded once by `load_colour_names_table` /
  `load_intensity_table` and passed into jitted code as arguments (never closed over, so
  they are not baked into the compiled program as constants).
* Table features need integer pixels, as in ECO where the patch is uint8: float input is
  rounded to the nearest integer (halves up) and clipped to 0..255, as a conversion to uint8
  would do.

ECO's conventions reproduced (martin-danelljan/ECO, `feature_extraction/`):

* `table_lookup.m`: an RGB pixel indexes row `R // 8 + 32 (G // 8) + 1024 (B // 8)` of the
  32768 x 10 colour-names table `CNnorm` (0-based here; MATLAB adds 1); a grey pixel indexes row
  `value` of the 256 x 5 `intensityChannelNorm6` table.
* `get_table_feature.m`: a table with `inputType` 'gray' (the intensity channel) sees an RGB
  patch through MATLAB's `rgb2gray` on uint8, i.e. `round(0.298936 R + 0.587043 G + 0.114021 B)`
  (here in float32, so a pixel whose weighted sum lies within ~1e-5 of a half may round the
  other way); a colour table refuses a grey patch.
* `get_colorspace.m` ('gray'): `rgb2gray(single(im) / 255) - 0.5`, no rounding.
* `average_feature_region.m`: the mean over each `cell x cell` block.

References: J. van de Weijer et al., "Learning Color Names for Real-World Applications", TIP
2009 (the table); M. Danelljan et al., "Adaptive Color Attributes for Real-Time Visual
Tracking", CVPR 2014; ECO (Danelljan et al., CVPR 2017).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import scipy.io

from ctjax import paths

COLOUR_NAMES_FILE = "CNnorm.mat"
INTENSITY_FILE = "intensityChannelNorm6.mat"
# MATLAB rgb2gray: the first row of the inverse of the NTSC (YIQ) transform.
_RGB_TO_GREY = (0.298936021293775, 0.587043074451121, 0.114020904255103)


def _load_table(file_name: str, variable: str, shape: tuple[int, int]) -> np.ndarray:
    path = paths.lookup_file(file_name)
    table = scipy.io.loadmat(str(path))[variable]
    if table.shape != shape:
        raise ValueError(f"{path}: expected {variable} of shape {shape}, got {table.shape}")
    return np.ascontiguousarray(table, dtype=np.float32)


def load_colour_names_table() -> np.ndarray:
    """ECO's colour-names table `CNnorm` from `<CTJAX_DATA>/lookup/CNnorm.mat`.

    Returns:
      `(32768, 10)` float32 NumPy array (host); pass it to `colour_names` as an argument.

    Raises:
      ctjax.paths.DataNotFoundError: the file is missing (the message names `CTJAX_DATA`).
    """
    return _load_table(COLOUR_NAMES_FILE, "CNnorm", (32768, 10))


def load_intensity_table() -> np.ndarray:
    """ECO's intensity-channel table from `<CTJAX_DATA>/lookup/intensityChannelNorm6.mat`.

    Returns:
      `(256, 5)` float32 NumPy array (host); pass it to `intensity_channel` as an argument.

    Raises:
      ctjax.paths.DataNotFoundError: the file is missing (the message names `CTJAX_DATA`).
    """
    return _load_table(INTENSITY_FILE, "intensityChannelNorm6", (256, 5))


def colour_names(image: jnp.ndarray, table: jnp.ndarray, *, cell: int = 4) -> jnp.ndarray:
    """Colour-name probabilities averaged over cells (ECO `cn` feature before normalisation).

    Args:
      image: `(..., H, W, 3)` RGB, uint8 or float 0..255.
      table: `(32768, 10)` colour-names table (`load_colour_names_table`).
      cell: cell size in pixels (static; ECO-HC uses 4).

    Returns:
      `(..., H // cell, W // cell, 10)` float32.
    """
    image = jnp.asarray(image)
    if image.shape[-1] != 3:
        raise ValueError(f"colour names need an RGB image (..., H, W, 3), got {image.shape}")
    rgb = _to_uint8_values(image)
    index = (rgb[..., 0] >> 3) + ((rgb[..., 1] >> 3) << 5) + ((rgb[..., 2] >> 3) << 10)
    return average_cells(jnp.take(jnp.asarray(table, jnp.float32), index, axis=0), cell=cell)


def intensity_channel(image: jnp.ndarray, table: jnp.ndarray, *, cell: int = 4) -> jnp.ndarray:
    """Intensity-channel feature averaged over cells (ECO `ic` feature before normalisation).

    Args:
      image: `(..., H, W, 3)` RGB or `(..., H, W, 1)` grey, uint8 or float 0..255. RGB goes
        through MATLAB's uint8 `rgb2gray` first.
      table: `(256, D)` intensity table (`load_intensity_table`, D = 5).
      cell: cell size in pixels (static; ECO-HC uses 4).

    Returns:
      `(..., H // cell, W // cell, D)` float32.
    """
    image = jnp.asarray(image)
    if image.shape[-1] == 3:
        values = rgb_to_grey(image)
    elif image.shape[-1] == 1:
        values = image[..., 0]
    else:
        raise ValueError(f"intensity channel needs (..., H, W, 3 or 1), got {image.shape}")
    index = _to_uint8_values(values)
    return average_cells(jnp.take(jnp.asarray(table, jnp.float32), index, axis=0), cell=cell)


def grey(image: jnp.ndarray, *, cell: int = 4) -> jnp.ndarray:
    """ECO's grey colour-space feature: `rgb2gray(image / 255) - 0.5`, averaged over cells.

    Args:
      image: `(..., H, W, 3)` RGB or `(..., H, W, 1)` grey, uint8 or float 0..255 (used as
        given, no rounding).
      cell: cell size in pixels (static; DeepSTRCF uses 4 with HOG).

    Returns:
      `(..., H // cell, W // cell, 1)` float32 in [-0.5, 0.5].
    """
    image = jnp.asarray(image).astype(jnp.float32) / np.float32(255)
    if image.shape[-1] == 3:
        values = rgb_to_grey(image)
    elif image.shape[-1] == 1:
        values = image[..., 0]
    else:
        raise ValueError(f"grey needs (..., H, W, 3 or 1), got {image.shape}")
    return average_cells((values - np.float32(0.5))[..., None], cell=cell)


def rgb_to_grey(rgb: jnp.ndarray) -> jnp.ndarray:
    """MATLAB `rgb2gray` weights without rounding: `(..., H, W, 3)` -> `(..., H, W)` float32."""
    rgb = jnp.asarray(rgb).astype(jnp.float32)
    r, g, b = (np.float32(c) for c in _RGB_TO_GREY)
    return rgb[..., 0] * r + rgb[..., 1] * g + rgb[..., 2] * b


def average_cells(x: jnp.ndarray, *, cell: int) -> jnp.ndarray:
    """Mean over `cell x cell` blocks (ECO `average_feature_region.m`).

    Args:
      x: `(..., H, W, D)` float.
      cell: block size (static); 1 returns `x` unchanged.

    Returns:
      `(..., H // cell, W // cell, D)`; rows and columns past the last whole block dropped.
    """
    if cell == 1:
        return x
    hb, wb = x.shape[-3] // cell, x.shape[-2] // cell
    if hb < 1 or wb < 1:
        raise ValueError(f"image {x.shape[-3:-1]} is smaller than one {cell}x{cell} cell")
    x = x[..., :hb * cell, :wb * cell, :]
    x = x.reshape(x.shape[:-3] + (hb, cell, wb, cell, x.shape[-1]))
    return jnp.sum(x, axis=(-4, -2)) * np.float32(1.0 / (cell * cell))


def _to_uint8_values(x: jnp.ndarray) -> jnp.ndarray:
    """Pixel values as int32 in 0..255: uint8 as is; float rounded (halves up) and clipped."""
    if x.dtype == jnp.uint8:
        return x.astype(jnp.int32)
    x = jnp.floor(x.astype(jnp.float32) + np.float32(0.5))
    return jnp.clip(x, 0, 255).astype(jnp.int32)

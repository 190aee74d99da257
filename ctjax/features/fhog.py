"""Felzenszwalb HOG (fHOG) as computed by Piotr Dollar's toolbox (`gradientMex`), in JAX.

This is the hand-crafted feature of ECO-HC and of the fECO / fDeepSTRCF HOG blocks. ECO calls
the toolbox's MEX (`get_fhog.m` -> `fhog.m` -> `gradientMag` + `fhog`, 9 orientations,
soft-bin -1, clip 0.2) on the uint8 patch converted to single, i.e. values in 0..255, and drops
the last (all-zero) of the 32 channels.

Conventions:

* Images are NHWC with any leading axes: `(..., H, W, C)`, C = 3 (RGB) or 1 (grey), values in
  0..255 (uint8 or float32). Magnitude and orientation maps are `(..., H, W)` float32.
* Orientation is in radians, `[0, 2 pi)`, measured from the +x (column) axis towards +y (row,
  downwards): `atan2(gy, gx)` with `gy` the derivative along rows.
* Outputs are `(..., H // cell, W // cell, 31)` float32: 18 contrast-sensitive orientation
  channels (bin `o` centred on `o * 20` degrees), 9 contrast-insensitive ones (`o` and `o + 9`
  summed) and 4 texture channels (the gradient energy normalised by each of the four 2x2-cell
  blocks around the cell: lower-right, upper-right, lower-left, upper-left). Pixels beyond the
  last whole cell are ignored, as in the C code; the gradient still sees them.

What the C code does, and how it is reproduced (Dollar, `gradient.cpp`, Toolbox 3.30):

* Gradients: `[-1 0 1] / 2` inside, one-sided differences (`x[1] - x[0]`) on the border rows
  and columns; per pixel the colour channel with the largest squared magnitude wins (the first
  one on ties). The C code uses SSE `rsqrt`/`rcp` approximations (relative error ~4e-4) and an
  `acos` table; here the arithmetic is exact, which moves a few pixels per patch into a
  neighbouring orientation bin (see `../shared/reference/README.md` for the tolerances).
* Orientation bins: `round(ori * 18 / 2pi)` with halves rounded up and bin 18 wrapped to 0.
  A pure vertical gradient (gx = 0) lies exactly on a boundary and goes to the upper bin
  (5 for gy > 0, 14 for gy < 0); `fhog` decides this explicitly from the signs of the
  gradient instead of relying on how `atan2` rounds.
* Soft-bin -1: no orientation interpolation, bilinear spatial interpolation of each pixel's
  magnitude (scaled by 1 / cell^2) into the four nearest cell centres; cells outside the grid
  lose their share, and the border cells are multiplied by 8/7 to make up for it. The cell
  coordinate of pixel `i` is `(i + 0.5) / cell - 0.5`, accumulated in float32 exactly as the C
  code steps it (with exact coordinates, cell-6 outputs differ from the C code by up to 1e-3
  relative; stepped, by ~4e-6).
* Normalisation: per cell, the contrast-insensitive energy; per 2x2 block, `1 / sqrt(sum + eps)`
  with `eps = 1e-4 / 4 / cell^4`; the block grid is padded by repeating its edge. Each channel
  is normalised by the four blocks around its cell, clipped at 0.2, and summed with weight 0.5
  (orientation channels) or 0.2357 (texture channels, summed over the 18 orientations).

Speed (ECO.md section 4): histogram binning by scatter/gather is slow on XLA CPU. Here the
bins come from comparisons of the gradient (no trigonometry), the rows are pooled by one-hot
products summed over strided row slices with static weights, and the columns by a matmul
with a static banded matrix; ~0.5 ms for a 200x200 RGB patch on one core
(`experiments/benchmark_features.py`).

References: P. Felzenszwalb et al., "Object Detection with Discriminatively Trained Part Based
Models", TPAMI 2010; P. Dollar, Piotr's Computer Vision Matlab Toolbox, `gradientMex.cpp`
(as shipped in ECO and in fengyang95/pyCFTrackers `lib/eco/features/gradient.cpp`).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
from jax import lax
import numpy as np

# Constants of the C code, in its float32 arithmetic.
_PI = np.float32(3.14159265)
_ORI_VERTICAL_UP = np.float32(np.arccos(0.0))                 # acos table at 0: gx = 0, gy >= 0
_ORI_VERTICAL_DOWN = np.float32(_ORI_VERTICAL_UP + _PI)       # gx = 0, gy < 0
_TEXTURE_WEIGHT = np.float32(0.2357)
_BORDER_FACTOR = np.float32(8.0) / np.float32(7.0)


def gradient_mag_ori(image: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Gradient magnitude and orientation, max over colour channels (Dollar's `gradientMag`).

    Args:
      image: `(..., H, W, C)` uint8 or float, values 0..255, H, W >= 2.

    Returns:
      `(mag, ori)`, each `(..., H, W)` float32: the magnitude of the channel with the largest
      gradient, and its orientation in `[0, 2 pi)` (see the module docstring). Pure vertical
      gradients and flat pixels get the C code's values (`acos(0)`, plus pi when gy < 0).
    """
    gx, gy, mag = _max_channel_gradient(image)
    theta = jnp.arctan2(gy, gx)
    two_pi = np.float32(2 * np.pi)
    ori = jnp.where(theta < 0, theta + two_pi, theta)
    ori = jnp.where(ori >= two_pi, np.float32(0), ori)     # -tiny + 2 pi rounds to 2 pi
    ori = jnp.where(gx == 0, jnp.where(gy < 0, _ORI_VERTICAL_DOWN, _ORI_VERTICAL_UP), ori)
    return mag, ori.astype(jnp.float32)


def fhog_from_mag_ori(mag: jnp.ndarray, ori: jnp.ndarray, *, cell: int, num_orients: int = 9,
                      clip: float = 0.2) -> jnp.ndarray:
    """fHOG of a given gradient magnitude and orientation (Dollar's `fhog` MEX, soft-bin -1).

    Args:
      mag: `(..., H, W)` float gradient magnitude (as from `gradient_mag_ori`).
      ori: `(..., H, W)` float orientation in `[0, 2 pi)`.
      cell: cell size in pixels (static); H // cell and W // cell must be >= 2.
      num_orients: contrast-insensitive orientations (static); 2x as many sensitive ones.
      clip: truncation of the normalised histogram values.

    Returns:
      `(..., H // cell, W // cell, 3 * num_orients + 4)` float32 (31 channels by default).
    """
    num_bins = 2 * num_orients
    # The C code's float32 quantisation: trunc(ori * n / (2 PI) + 0.5), bin n wraps to 0.
    o_mult = np.float32(num_bins) / (np.float32(2) * _PI)
    bins = jnp.floor(ori.astype(jnp.float32) * o_mult + np.float32(0.5)).astype(jnp.int32)
    bins = jnp.where(bins >= num_bins, 0, bins)
    mag, bins = _pad_cells(mag.astype(jnp.float32), cell), _pad_cells(bins, cell)
    return _normalise(_histogram(mag, bins, cell=cell, num_bins=num_bins), cell=cell,
                      num_orients=num_orients, clip=clip)


def fhog(image: jnp.ndarray, *, cell: int, num_orients: int = 9, clip: float = 0.2) -> jnp.ndarray:
    """fHOG of an image, as ECO's `get_fhog.m` (31 channels, the zero 32nd dropped).

    Orientation bins come straight from the signs and ratios of the gradient (no
    trigonometry); they equal the bins of `gradient_mag_ori` + `fhog_from_mag_ori` up to
    float rounding at bin boundaries.

    Args:
      image: `(..., H, W, C)` uint8 or float, 0..255, C = 3 (RGB) or 1; H // cell and
        W // cell must be >= 2.
      cell: cell size in pixels (static; ECO uses 4 and 6).
      num_orients: contrast-insensitive orientations (static).
      clip: truncation of the normalised histogram values.

    Returns:
      `(..., H // cell, W // cell, 3 * num_orients + 4)` float32.
    """
    gx, gy, mag = _max_channel_gradient(image)
    bins = _bins_from_gradient(gx, gy, mag, num_orients)
    mag, bins = _pad_cells(mag, cell), _pad_cells(bins, cell)
    return _normalise(_histogram(mag, bins, cell=cell, num_bins=2 * num_orients), cell=cell,
                      num_orients=num_orients, clip=clip)


def _central_difference(x: jnp.ndarray, axis: int) -> jnp.ndarray:
    """`(x[i+1] - x[i-1]) / 2` inside, one-sided differences on the two border lines."""
    n = x.shape[axis]
    part = functools.partial(lax.slice_in_dim, x, axis=axis)
    first = part(1, 2) - part(0, 1)
    inner = (part(2, n) - part(0, n - 2)) * np.float32(0.5)
    last = part(n - 1, n) - part(n - 2, n - 1)
    return jnp.concatenate([first, inner, last], axis=axis)


def _max_channel_gradient(image):
    """(gx, gy, mag) of the colour channel with the largest squared magnitude, first on ties."""
    image = jnp.asarray(image).astype(jnp.float32)
    if image.shape[-3] < 2 or image.shape[-2] < 2:
        raise ValueError(f"fHOG needs an image of at least 2x2 pixels, got {image.shape}")
    planes = jnp.moveaxis(image, -1, 0)   # channel planes: contiguous rows for XLA's loops
    gy = _central_difference(planes, axis=planes.ndim - 2)
    gx = _central_difference(planes, axis=planes.ndim - 1)
    m2 = gx * gx + gy * gy
    best_gx, best_gy, best_m2 = gx[0], gy[0], m2[0]
    for c in range(1, planes.shape[0]):   # strict '>' keeps the first channel on ties
        better = m2[c] > best_m2
        best_gx = jnp.where(better, gx[c], best_gx)
        best_gy = jnp.where(better, gy[c], best_gy)
        best_m2 = jnp.where(better, m2[c], best_m2)
    return best_gx, best_gy, jnp.sqrt(best_m2)


def _bins_from_gradient(gx, gy, mag, num_orients: int) -> jnp.ndarray:
    """Orientation bin in 0 .. 2 num_orients - 1 without trigonometry.

    In the half plane gy >= 0 the angle is acos(gx / mag) and its bin is the number of bin
    boundaries (k + 1/2) * pi / num_orients it has passed, i.e. of k with
    gx <= cos(boundary_k) * mag. For gy < 0 the same count on -gx, plus num_orients. The
    boundary at 90 degrees has cosine exactly 0, so gx = 0 goes to the upper bin, as in C.
    """
    k = np.arange(num_orients, dtype=np.float64)
    cosines = np.cos((k + 0.5) * np.pi / num_orients)
    cosines[np.abs(cosines) < 1e-9] = 0.0
    lower = gy < 0
    u = jnp.where(lower, -gx, gx)
    count = sum((u <= np.float32(t) * mag).astype(jnp.int32) for t in cosines)
    bins = count + jnp.where(lower, num_orients, 0)
    return jnp.where(bins >= 2 * num_orients, 0, bins)


@functools.lru_cache(maxsize=None)
def _pool_terms(num_cells: int, cell: int) -> tuple[tuple[int, int, np.ndarray], ...]:
    """Static bilinear pooling weights of one axis, as `(s, r, w)` terms.

    Cell `k` receives pixel `(k + s) * cell + r` (s in -1, 0, 1: its own or a neighbouring
    cell; r in 0 .. cell - 1: the offset in that cell) with weight `w[k]`, `w` float32
    `(num_cells,)`; all-zero terms are left out. The cell coordinate `(i + 0.5) / cell - 0.5`
    of pixel `i` is stepped in float32 as the C code does; shares falling outside the grid
    are dropped and the two border cells are scaled by 8/7.
    """
    s_inv = np.float32(1) / np.float32(cell)
    pos = np.empty(num_cells * cell, np.float32)
    p = np.float32(0.5) * s_inv - np.float32(0.5)
    for i in range(pos.size):
        pos[i] = p
        p = np.float32(p + s_inv)
    lo = np.floor(pos).astype(np.int64)                 # -1 for the leading half cell
    frac = (pos - lo.astype(np.float32)).astype(np.float32)
    factor = np.ones(num_cells, np.float32)
    factor[0] *= _BORDER_FACTOR
    factor[-1] *= _BORDER_FACTOR
    w = np.zeros((3, cell, num_cells), np.float32)     # [s + 1, r, k]
    for i in range(pos.size):
        for target, share in ((lo[i], np.float32(1) - frac[i]), (lo[i] + 1, frac[i])):
            if 0 <= target < num_cells:
                w[i // cell - target + 1, i % cell, target] += share * factor[target]
    return tuple((s, r, w[s + 1, r]) for s in (-1, 0, 1) for r in range(cell)
                 if np.any(w[s + 1, r]))


@functools.lru_cache(maxsize=None)
def _column_pool_matrix(num_cells: int, cell: int) -> np.ndarray:
    """`_pool_terms` as a `((num_cells + 2) * cell, num_cells)` matrix over padded columns."""
    m = np.zeros(((num_cells + 2) * cell, num_cells), np.float32)
    k = np.arange(num_cells)
    for s, r, w in _pool_terms(num_cells, cell):
        m[(1 + s + k) * cell + r, k] += w
    return m


def _pad_cells(x: jnp.ndarray, cell: int) -> jnp.ndarray:
    """`(..., H, W)` cut to whole cells and framed by one cell of zeros:
    `(..., (H // cell + 2) * cell, (W // cell + 2) * cell)`."""
    hb, wb = x.shape[-2] // cell, x.shape[-1] // cell
    if hb < 2 or wb < 2:
        raise ValueError(f"fHOG needs at least 2x2 cells: image {x.shape[-2:]}, cell {cell}")
    x = x[..., :hb * cell, :wb * cell]
    return jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(cell, cell), (cell, cell)])


def _histogram(mag, bins, *, cell: int, num_bins: int) -> jnp.ndarray:
    """Spatially interpolated orientation histograms `(..., num_bins, hb, wb)`.

    Args:
      mag, bins: gradient magnitude and orientation bin through `_pad_cells`.

    Rows: one-hot products summed over strided row slices with static weights (one fused,
    vectorised loop; scatters, gathers and weighted reductions are many times slower on XLA
    CPU). Columns: a matmul with the static banded pooling matrix, which also keeps XLA from
    fusing the row pass into the column pass, where it would be recomputed per term.
    """
    hb, wb = mag.shape[-2] // cell - 2, mag.shape[-1] // cell - 2
    weight = mag * (np.float32(1) / np.float32(cell) / np.float32(cell))
    orients = jnp.arange(num_bins, dtype=bins.dtype)[:, None, None]
    axis = mag.ndim - 2
    rows = 0.0                                 # (..., num_bins, hb, (wb + 2) * cell)
    for s, r, w in _pool_terms(hb, cell):
        start = (1 + s) * cell + r
        take = functools.partial(lax.slice_in_dim, start_index=start,
                                 limit_index=start + (hb - 1) * cell + 1, stride=cell, axis=axis)
        m, b = take(weight) * w[:, None], take(bins)
        rows = rows + jnp.where(b[..., None, :, :] == orients, m[..., None, :, :], np.float32(0))
    return jnp.matmul(rows, _column_pool_matrix(wb, cell), precision=lax.Precision.HIGHEST)


def _normalise(hist, *, cell: int, num_orients: int, clip: float) -> jnp.ndarray:
    """Block normalisation, clipping and channel sums of Dollar's `fhog` (`hogNormMatrix`,
    `hogChannels`): `(..., 2 num_orients, hb, wb)` -> `(..., hb, wb, 3 num_orients + 4)`."""
    sensitive = hist
    insensitive = hist[..., :num_orients, :, :] + hist[..., num_orients:, :, :]
    energy = jnp.sum(insensitive * insensitive, axis=-3)
    c = np.float32(cell)
    eps = np.float32(1e-4) / np.float32(4) / c / c / c / c
    block = (energy[..., :-1, :-1] + energy[..., 1:, :-1] + energy[..., :-1, 1:]
             + energy[..., 1:, 1:])
    norm = np.float32(1) / jnp.sqrt(block + eps)
    norm = jnp.pad(norm, [(0, 0)] * (norm.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    # The four blocks around each cell: lower-right, upper-right, lower-left, upper-left.
    around = (norm[..., None, 1:, 1:], norm[..., None, :-1, 1:], norm[..., None, 1:, :-1],
              norm[..., None, :-1, :-1])
    clip = np.float32(clip)
    t_sensitive = [jnp.minimum(sensitive * n, clip) for n in around]
    t_insensitive = [jnp.minimum(insensitive * n, clip) for n in around]
    out = jnp.concatenate([
        sum(t_sensitive) * np.float32(0.5),
        sum(t_insensitive) * np.float32(0.5),
        jnp.stack([jnp.sum(t, axis=-3) for t in t_sensitive], axis=-3) * _TEXTURE_WEIGHT,
    ], axis=-3)
    return jnp.moveaxis(out, -3, -1)

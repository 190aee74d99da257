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
  code steps it (it matters for cell 6 at the 1e-4 level).
* Normalisation: per cell, the contrast-insensitive energy; per 2x2 block, `1 / sqrt(sum + eps)`
  with `eps = 1e-4 / 4 / cell^4`; the block grid is padded by repeating its edge. Each channel
  is normalised by the four blocks around its cell, clipped at 0.2, and summed with weight 0.5
  (orientation channels) or 0.2357 (texture channels, summed over the 18 orientations).

Speed (ECO.md section 4): histogram binning by scatter/gather is slow on XLA CPU, so the
orientation histogram is a one-hot product reduced by reshape-sum pooling with static
per-position weights (no scatter, no dense pooling matrices).

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
    ori = jnp.where(theta < 0, theta + np.float32(2 * np.pi), theta)
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
    hist = _histogram(mag.astype(jnp.float32), bins, cell=cell, num_bins=num_bins)
    return _normalise(hist, cell=cell, num_orients=num_orients, clip=clip)


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
    # Padding the gradient, not the bins, keeps the binning one vectorised loop on XLA CPU.
    gx, gy, mag = (_pad_cells(a, a.ndim - 2, cell) for a in (gx, gy, mag))
    bins = _bins_from_gradient(gx, gy, mag, num_orients)
    hist = _histogram(mag, bins, cell=cell, num_bins=2 * num_orients, padded=True)
    return _normalise(hist, cell=cell, num_orients=num_orients, clip=clip)


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
def _pool_terms(num_cells: int, cell: int) -> tuple[tuple[int, np.ndarray], ...]:
    """Static bilinear pooling of one axis as a sum of strided slices.

    Cell `k` receives pixel `i = (k + s) * cell + r` (s in -1, 0, 1; r in 0 .. cell - 1) with
    a weight `w[k]`. Each term is `(start, w)` with `start = (s + 1) * cell + r`, an index
    into the axis padded by `cell` zeros on each side, `w` float32 `(num_cells,)`; all-zero
    terms are left out. The cell coordinate `(i + 0.5) / cell - 0.5` is stepped in float32
    as the C code does; shares outside the grid are dropped and the border cells get 8/7.
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
    return tuple(((s + 1) * cell + r, w[s + 1, r]) for s in (-1, 0, 1) for r in range(cell)
                 if np.any(w[s + 1, r]))


def _pool_axis(x: jnp.ndarray, axis: int, cell: int, padded: bool = False):
    """Yields `(slice, w)`: the terms of `_pool_terms` along `axis` as strided slices of `x`
    (one pixel per cell) with weights `w` shaped to broadcast against them.

    `x` is padded by `cell` zeros on each side of `axis`, unless `padded` says the caller
    already did (as `_pad_cells`).
    """
    x = x if padded else _pad_cells(x, axis, cell)
    n = (x.shape[axis] - 2 * cell) // cell
    expand = (slice(None),) + (None,) * (x.ndim - axis - 1)
    for start, w in _pool_terms(n, cell):
        part = lax.slice_in_dim(x, start, start + (n - 1) * cell + 1, stride=cell, axis=axis)
        yield part, jnp.asarray(w)[expand]


def _pad_cells(x: jnp.ndarray, axis: int, cell: int) -> jnp.ndarray:
    """`x` cut to whole cells along `axis` and padded by one cell of zeros on each side."""
    n = x.shape[axis] // cell
    pad = [(0, 0)] * x.ndim
    pad[axis] = (cell, cell)
    return jnp.pad(lax.slice_in_dim(x, 0, n * cell, axis=axis), pad)


def _histogram(mag, bins, *, cell: int, num_bins: int, padded: bool = False) -> jnp.ndarray:
    """Spatially interpolated orientation histograms `(..., H // cell, W // cell, num_bins)`.

    Written as sums of strided slices with static weights so that XLA CPU fuses the one-hot
    expansion into the row pooling; weighted reductions and scatters are many times slower.
    `padded`: `mag` and `bins` come already through `_pad_cells` along the rows.
    """
    rows_axis = mag.ndim - 2
    height = mag.shape[-2] - 2 * cell if padded else mag.shape[-2]
    if height // cell < 2 or mag.shape[-1] // cell < 2:
        raise ValueError(f"fHOG needs at least 2x2 cells: image {mag.shape[-2:]}, cell {cell}")
    weight = mag * (np.float32(1) / np.float32(cell) / np.float32(cell))
    orients = jnp.arange(num_bins, dtype=bins.dtype)
    rows = 0.0
    for (m, w), (b, _) in zip(_pool_axis(weight, rows_axis, cell, padded),
                              _pool_axis(bins, rows_axis, cell, padded)):
        rows = rows + jnp.where(b[..., None] == orients, (m * w)[..., None], np.float32(0))
    # Columns: shares from the neighbouring cells are padded after the sum, not before, so
    # no pad lands in the fused one-hot loop above.
    cols_axis = rows_axis + 1
    rows = lax.optimization_barrier(rows)
    n = rows.shape[cols_axis] // cell
    groups = {}
    for start, w in _pool_terms(n, cell):
        s, r = start // cell - 1, start % cell
        lo, count = max(-s, 0), n - abs(s)           # the cells that have this neighbour
        first = (lo + s) * cell + r
        part = lax.slice_in_dim(rows, first, first + (count - 1) * cell + 1, stride=cell,
                                axis=cols_axis)
        share = part * jnp.asarray(w[lo:lo + count])[:, None]
        groups[s] = share + groups[s] if s in groups else share
    hist = groups.pop(0)
    for s, share in groups.items():
        pad = [(0, 0)] * share.ndim
        pad[cols_axis] = (1, 0) if s < 0 else (0, 1)
        hist = hist + jnp.pad(share, pad)
    return hist


def _normalise(hist, *, cell: int, num_orients: int, clip: float) -> jnp.ndarray:
    """Block normalisation, clipping and channel sums of Dollar's `fhog` (`hogChannels`)."""
    sensitive = hist
    insensitive = hist[..., :num_orients] + hist[..., num_orients:]
    energy = jnp.sum(insensitive * insensitive, axis=-1)
    c = np.float32(cell)
    eps = np.float32(1e-4) / np.float32(4) / c / c / c / c
    block = (energy[..., :-1, :-1] + energy[..., 1:, :-1] + energy[..., :-1, 1:]
             + energy[..., 1:, 1:])
    norm = np.float32(1) / jnp.sqrt(block + eps)
    pad = [(0, 0)] * (norm.ndim - 2) + [(1, 1), (1, 1)]
    norm = jnp.pad(norm, pad, mode="edge")
    # The four blocks around each cell: lower-right, upper-right, lower-left, upper-left.
    around = (norm[..., 1:, 1:, None], norm[..., :-1, 1:, None], norm[..., 1:, :-1, None],
              norm[..., :-1, :-1, None])
    clip = np.float32(clip)
    t_sensitive = [jnp.minimum(sensitive * n, clip) for n in around]
    t_insensitive = [jnp.minimum(insensitive * n, clip) for n in around]
    return jnp.concatenate([
        sum(t_sensitive) * np.float32(0.5),
        sum(t_insensitive) * np.float32(0.5),
        jnp.stack([jnp.sum(t, axis=-1) for t in t_sensitive], axis=-1) * _TEXTURE_WEIGHT,
    ], axis=-1)

"""Differentiable discriminative correlation filter (DCF) with a linear kernel.

Conventions (see also `ctjax.ops.fourier`):

* `x` is the template (training) feature map, `z` the search (test) feature map, both real
  NHWC `(..., H, W, C)`; `xf`, `zf` are their `rfft2` spectra `(..., H, Wf, C)`, Wf = W//2 + 1,
  complex64. `y` is the `(H, W)` Gaussian label with its peak at index (0, 0) and `yf` its
  `rfft2_map` spectrum `(..., H, Wf)`. Leading axes are batch axes and broadcast.
* The response is the circular cross-correlation of the search features with the filter:
  r[τ] = Σ_{d,p} w_d[p] z_d[p + τ] (indices mod (H, W)), so r̂ = Σ_d ŵ_d* ⊙ ẑ_d. A peak at
  index (i, j) means the target moved by (i, j) cells (mod H, W) between x and z.
* Normalisation: with `normalize=True` the kernel carries the factor 1/(M N D) of DCFNet's
  MatConvNet layer (M, N = H, W of the real map, D = channels). The filter is then the exact
  minimiser of the spatial ridge regression
      min_w Σ_τ (Σ_{d,p} w_d[p] x_d[p + τ] - y[τ])² + λ' ||w||²   with   λ' = M N D · λ;
  with `normalize=False` (DCFNet_pytorch) λ' = λ. So λ = 1e-4 is a much weaker
  regulariser without normalisation.
* Because `Wf` does not determine whether W is even or odd, functions that need M N take the
  static real size `hw = (H, W)`.

Reference: DCFNet (Wang et al., arXiv:1704.04057), KCF (Henriques et al., TPAMI 2015),
PAPER.md §5.1.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ctjax.ops import fourier


class FilterTerms(NamedTuple):
    """Primal per-channel filter as numerator / denominator, interpolated over time.

    Attributes:
        numf: `(..., H, Wf, C)` complex, yf ⊙ conj(xf_d) (/ MND when normalised).
        denf: `(..., H, Wf)` complex (real-valued), Σ_d |xf_d|² (/ MND when normalised).
    """
    numf: jnp.ndarray
    denf: jnp.ndarray


def _normalizer(xf: jnp.ndarray, hw: tuple[int, int] | None, normalize: bool) -> float:
    """1 / (M N D) for a spectrum of a real (M, N, D) map, or 1 without normalisation."""
    if not normalize:
        return 1.0
    if hw is None:
        raise ValueError("normalize=True needs the real map size hw=(H, W): the spectrum "
                         f"width {xf.shape[-2]} could come from W={2 * xf.shape[-2] - 2} "
                         f"or W={2 * xf.shape[-2] - 1}")
    h, w = hw
    if xf.shape[-3] != h or xf.shape[-2] != w // 2 + 1:
        raise ValueError(f"spectrum of shape {xf.shape} (..., H, Wf, C) does not come from "
                         f"a real map of size hw={tuple(hw)}")
    return 1.0 / (h * w * xf.shape[-1])


def kernel_correlation(xf: jnp.ndarray, zf: jnp.ndarray, *, normalize: bool = True,
                       hw: tuple[int, int] | None = None) -> jnp.ndarray:
    """Linear-kernel correlation k̂^zx = (1/(M N D)) Σ_d ẑ_d ⊙ conj(x̂_d).

    Args:
        xf: `(..., H, Wf, C)` complex template spectrum.
        zf: `(..., H, Wf, C)` complex search spectrum (broadcasts with `xf`).
        normalize: apply the 1/(M N D) factor (DCFNet MatConvNet) or not (DCFNet_pytorch).
        hw: static `(H, W)` of the real maps; required when `normalize` is True.

    Returns:
        `(..., H, Wf)` complex64 spectrum of the kernel; its inverse is the cross-correlation
        k[τ] = Σ_{d,p} z_d[p + τ] x_d[p] (/ MND). Reference: DCFNet, PAPER.md §5.1.
    """
    return jnp.sum(zf * jnp.conj(xf), axis=-1) * _normalizer(xf, hw, normalize)


def dual_filter(xf: jnp.ndarray, yf: jnp.ndarray, *, lam: float = 1e-4, normalize: bool = True,
                hw: tuple[int, int] | None = None) -> jnp.ndarray:
    """Closed-form dual ridge-regression filter α̂ = ŷ / (k̂^xx + λ).

    Args:
        xf: `(..., H, Wf, C)` complex template spectrum.
        yf: `(..., H, Wf)` complex label spectrum (`rfft2_map(gaussian_label(...))`).
        lam: regulariser λ; the spatial ridge penalty is λ' = M N D λ when normalised.
        normalize: see `kernel_correlation`.
        hw: static `(H, W)` of the real maps; required when `normalize` is True.

    Returns:
        `alphaf`, `(..., H, Wf)` complex64. Reference: DCFNet / KCF, PAPER.md §5.1.
    """
    kxxf = kernel_correlation(xf, xf, normalize=normalize, hw=hw)
    return yf / (kxxf + lam)


def dual_response(alphaf: jnp.ndarray, xf: jnp.ndarray, zf: jnp.ndarray, *,
                  hw: tuple[int, int], normalize: bool = True) -> jnp.ndarray:
    """Correlation response r = F⁻¹(α̂ ⊙ k̂^zx) of a dual filter on search features.

    Args:
        alphaf: `(..., H, Wf)` complex, from `dual_filter`.
        xf: `(..., H, Wf, C)` complex template spectrum the filter was trained on.
        zf: `(..., H, Wf, C)` complex search spectrum.
        hw: static `(H, W)` of the real maps.
        normalize: must match the value used in `dual_filter`.

    Returns:
        Real `(..., H, W)` response; peak at (0, 0) for no motion. Reference: DCFNet.
    """
    kzxf = kernel_correlation(xf, zf, normalize=normalize, hw=hw)
    return fourier.irfft2_map(alphaf * kzxf, hw)


def filter_terms(xf: jnp.ndarray, yf: jnp.ndarray, *, normalize: bool = True,
                 hw: tuple[int, int] | None = None) -> FilterTerms:
    """Numerator and denominator of the equivalent per-channel (primal) filter.

    numf_d = ŷ ⊙ conj(x̂_d) / (M N D) and denf = Σ_d |x̂_d|² / (M N D), so for the same λ
    `primal_response` equals `dual_response` exactly:
    α̂ ⊙ k̂^zx = Σ_d numf_d ⊙ ẑ_d / (denf + λ).
    Keeping the two terms separate lets a tracker interpolate them over time (MOSSE/DSST).

    Args:
        xf: `(..., H, Wf, C)` complex template spectrum.
        yf: `(..., H, Wf)` complex label spectrum.
        normalize: apply the 1/(M N D) factor; see `kernel_correlation`.
        hw: static `(H, W)` of the real maps; required when `normalize` is True.

    Returns:
        `FilterTerms(numf (..., H, Wf, C), denf (..., H, Wf))`, complex64. Reference: DCFNet,
        PAPER.md §5.1.
    """
    scale = _normalizer(xf, hw, normalize)
    numf = yf[..., None] * jnp.conj(xf) * scale
    denf = kernel_correlation(xf, xf, normalize=normalize, hw=hw)
    return FilterTerms(numf=numf, denf=denf)


def primal_response(terms: FilterTerms, zf: jnp.ndarray, *, lam: float,
                    hw: tuple[int, int]) -> jnp.ndarray:
    """Response r = F⁻¹(Σ_d numf_d ⊙ ẑ_d / (denf + λ)) of a primal filter.

    Args:
        terms: `FilterTerms` from `filter_terms` (possibly interpolated over frames).
        zf: `(..., H, Wf, C)` complex search spectrum.
        lam: regulariser λ (same meaning as in `dual_filter`).
        hw: static `(H, W)` of the real maps.

    Returns:
        Real `(..., H, W)` response. Reference: DCFNet / DSST, PAPER.md §5.1.
    """
    rf = jnp.sum(terms.numf * zf, axis=-1) / (terms.denf + lam)
    return fourier.irfft2_map(rf, hw)


def spatial_filter(terms: FilterTerms, *, lam: float, hw: tuple[int, int]) -> jnp.ndarray:
    """The primal filter w in the spatial domain, for inspection and tests.

    Args:
        terms: `FilterTerms` from `filter_terms`.
        lam: regulariser λ.
        hw: static `(H, W)` of the real maps.

    Returns:
        Real `(..., H, W, C)` filter w with response r[τ] = Σ_{d,p} w_d[p] z_d[p + τ]; it
        solves (AᵀA + λ' I) w = Aᵀ y for the circulant data matrix A of the template (see the
        module docstring for λ'). Reference: KCF §4, PAPER.md §5.1.
    """
    wf = jnp.conj(terms.numf / (terms.denf + lam)[..., None])
    return fourier.irfft2(wf, hw)


def linear_update(old: Any, new: Any, *, rate: float) -> Any:
    """Model interpolation (1 - rate) · old + rate · new, leaf by leaf.

    Args:
        old: pytree of arrays (e.g. `FilterTerms`, or `(alphaf, xf)`).
        new: pytree with the same structure and shapes.
        rate: interpolation factor in [0, 1] (DCFNet tracking: 0.01).

    Returns:
        Pytree like `old`. Reference: DCFNet / KCF model update.
    """
    return jax.tree.map(lambda o, n: (1.0 - rate) * o + rate * n, old, new)


def subcell_peak(response: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Displacement of the response peak, refined to sub-cell precision.

    The integer argmax (i, j) is read as a circular displacement in (-H/2, H/2] × (-W/2, W/2]
    (index (0, 0) = no motion). Each axis is then refined by the vertex of the parabola
    through the peak and its two wrap-around neighbours, clipped to [-0.5, 0.5] cells.

    Args:
        response: real `(..., H, W)` response map.

    Returns:
        `(shift, value)`: `shift` float32 `(..., 2)` as (dy, dx) in cells, and `value`
        `(...,)` the response at the integer peak. Jit-compatible, no value-dependent branches.
    """
    h, w = response.shape[-2:]
    flat = response.reshape(response.shape[:-2] + (h * w,))
    idx = jnp.argmax(flat, axis=-1)
    iy, ix = idx // w, idx % w

    def at(y, x):
        return jnp.take_along_axis(flat, ((y % h) * w + x % w)[..., None], axis=-1)[..., 0]

    value = at(iy, ix)
    dy = _parabola_vertex(at(iy - 1, ix), value, at(iy + 1, ix))
    dx = _parabola_vertex(at(iy, ix - 1), value, at(iy, ix + 1))
    shift = jnp.stack([_signed(iy, h) + dy, _signed(ix, w) + dx], axis=-1)
    return shift.astype(jnp.float32), value


def grid_peak_offset(grid: jnp.ndarray, i, j) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Sub-cell refinement of a given peak (i, j) of a NON-periodic 2-D grid.

    The same parabola vertex as `subcell_peak`, but on a grid whose edges do not wrap
    around (e.g. responses sampled on a window of displacements with
    `ctjax.ops.fourier.sample_periodic`): a neighbour beyond the edge is the peak itself.

    Args:
        grid: real `(N, M)` map.
        i, j: integer peak indices (traced scalars allowed), usually its argmax.

    Returns:
        `(dy, dx)` float32 offsets in [-0.5, 0.5] grid steps. Reference: DSST / ECO
        sub-pixel peak refinement.
    """
    n, m = grid.shape
    dy = _parabola_vertex(grid[jnp.maximum(i - 1, 0), j], grid[i, j],
                          grid[jnp.minimum(i + 1, n - 1), j])
    dx = _parabola_vertex(grid[i, jnp.maximum(j - 1, 0)], grid[i, j],
                          grid[i, jnp.minimum(j + 1, m - 1)])
    return dy, dx


def _signed(i: jnp.ndarray, n: int) -> jnp.ndarray:
    """Index on a circle of n cells as a displacement in (-n/2, n/2]."""
    return jnp.where(i > n // 2, i - n, i).astype(jnp.float32)


def _parabola_vertex(left: jnp.ndarray, mid: jnp.ndarray, right: jnp.ndarray) -> jnp.ndarray:
    """Offset of the vertex of the parabola through (-1, left), (0, mid), (1, right)."""
    curvature = left - 2.0 * mid + right
    # At a maximum curvature <= 0; a flat neighbourhood (0) gives no refinement.
    safe = jnp.where(curvature < 0, curvature, -1.0)
    offset = jnp.where(curvature < 0, 0.5 * (left - right) / safe, 0.0)
    return jnp.clip(offset, -0.5, 0.5).astype(jnp.float32)


def response_loss(response: jnp.ndarray, label: jnp.ndarray) -> jnp.ndarray:
    """DCFNet tracking loss Σ_pixels (r - y)², per example.

    Args:
        response: real `(..., H, W)` response.
        label: real `(..., H, W)` target (broadcasts), e.g. `gaussian_label`.

    Returns:
        `(...,)` loss per example; the caller reduces over the batch. Reference: DCFNet
        `ResponseLossL2`, PAPER.md §5.1.
    """
    return jnp.sum(jnp.square(response - label), axis=(-2, -1))

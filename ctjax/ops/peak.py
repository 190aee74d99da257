"""Continuous peak search on a Fourier-series response (ECO's `optimize_scores.m`).

Conventions: the response of each scale is a centred half spectrum (`ctjax.ops.cfourier`)
`(S, Ho, Wh)` of the periodic score function
`s(y, x) = Re sum_{full k} c(ky, kx) exp(i (ky y + kx x))`, `y, x` in radians
(one period = `2 pi` = `Ho` resp. `Wo = 2 Wh - 1` output-grid cells), origin = sample index 0.
Displacements are returned in output-grid cells in `[-N/2, N/2)`, ECO's convention: a peak at
cell `+d` means the target moved by `+d` cells (times `img_support_sz / output_sz` pixels
per cell, times the scale factor, in ECO's `tracker.m`).

References: ECO (Danelljan et al., CVPR 2017) and C-COT (ECCV 2016, sec. 3.3: grid search,
then Newton's method on the Fourier series); MATLAB ECO `localization/optimize_scores.m`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ctjax.ops import cfourier


class Peak(NamedTuple):
    """The best scale's continuous maximum.

    Attributes:
      scale: `()` int32 index of the scale with the highest maximum.
      disp: `(2,)` `(dy, dx)` displacement of that maximum, output-grid cells.
      score: `()` the response at that maximum.
    """
    scale: jnp.ndarray
    disp: jnp.ndarray
    score: jnp.ndarray


def newton_peak(scores_fs: jnp.ndarray, *, iterations: int = 5) -> Peak:
    """Maximises a batch of Fourier-series responses: grid search, then Newton's method.

    For each scale: the maximum of the response sampled on its own `Ho x Wo` grid
    (`cfourier.sample_fs`, first in column-major order on ties, as MATLAB's `max`), then
    `iterations` Newton steps on the continuous series, with gradient and Hessian taken
    from the coefficients. A scale whose refined score is below (or not comparable to, e.g.
    NaN from a singular Hessian) its grid score keeps the grid maximum. The scale with the
    highest score wins (first on ties).

    ECO's Hessian adds `Re(i s)`, which vanishes for the Hermitian full spectra it uses;
    here the half spectrum stands for a Hermitian full one by construction, so the term is
    left out and gradient and Hessian are exactly those of the function `cfourier.sample_fs`
    samples.

    Args:
      scores_fs: `(S, Ho, Wh)` complex half spectra of the summed response per scale
        (`Ho` odd).
      iterations: Newton iterations (ECO's `newton_iterations`, 5). Static.

    Returns:
      `Peak(scale, disp, score)`; dtype of `disp` and `score` is the real dtype of
      `scores_fs`. Jit-compatible (`lax.fori_loop`, no host syncs).
    """
    if scores_fs.ndim != 3:
        raise ValueError(f"scores_fs must be (S, Ho, Wh), got shape {scores_fs.shape}")
    n_scales, ho, wh = scores_fs.shape
    wo = 2 * wh - 1
    rdtype = jnp.real(scores_fs).dtype

    # Grid search (MATLAB max: first over rows, then over columns).
    sampled = cfourier.sample_fs(scores_fs)
    flat = jnp.swapaxes(sampled, -1, -2).reshape(n_scales, -1)
    idx = jnp.argmax(flat, axis=-1)
    init_score = jnp.max(flat, axis=-1)
    row, col = idx % ho, idx // ho
    # Wrap to [-(N-1)/2, (N-1)/2] cells, then to radians.
    y0 = 2 * np.pi * ((row + (ho - 1) // 2) % ho - (ho - 1) // 2).astype(rdtype) / ho
    x0 = 2 * np.pi * ((col + (wo - 1) // 2) % wo - (wo - 1) // 2).astype(rdtype) / wo

    ky = jnp.asarray(np.arange(ho) - (ho - 1) // 2, rdtype)
    kx = jnp.asarray(np.arange(wh), rdtype)
    # Each kx > 0 column also stands for its mirror -kx: Re(c e) + Re(conj(c e)) = 2 Re(c e).
    cf = scores_fs * jnp.where(kx == 0, 1, 2).astype(rdtype)

    def expo(y, x):
        return jnp.exp(1j * ky * y[:, None]), jnp.exp(1j * kx * x[:, None])

    def value(y, x):
        ey, ex = expo(y, x)
        return jnp.real(jnp.einsum("sh,shw,sw->s", ey, cf, ex))

    def newton_step(_, pos):
        y, x = pos
        ey, ex = expo(y, x)
        resp_x = jnp.einsum("shw,sw->sh", cf, ex)      # sum over kx
        y_resp = jnp.einsum("sh,shw->sw", ey, cf)      # sum over ky
        grad_y = -jnp.imag(jnp.sum(ky * ey * resp_x, -1))
        grad_x = -jnp.imag(jnp.sum(y_resp * kx * ex, -1))
        h_yy = -jnp.real(jnp.sum(ky ** 2 * ey * resp_x, -1))
        h_xx = -jnp.real(jnp.sum(y_resp * kx ** 2 * ex, -1))
        h_xy = -jnp.real(jnp.einsum("sh,shw,sw->s", ky * ey, cf, kx * ex))
        det = h_yy * h_xx - h_xy * h_xy
        return (y - (h_xx * grad_y - h_xy * grad_x) / det,
                x - (h_yy * grad_x - h_xy * grad_y) / det)

    y, x = jax.lax.fori_loop(0, iterations, newton_step, (y0, x0))
    score = value(y, x)
    keep_grid = ~(score >= init_score)
    score = jnp.where(keep_grid, init_score, score)
    y = jnp.where(keep_grid, y0, y)
    x = jnp.where(keep_grid, x0, x)

    best = jnp.argmax(score).astype(jnp.int32)
    pos = jnp.stack([y[best], x[best]])
    disp = (jnp.mod(pos + np.pi, 2 * np.pi) - np.pi) / (2 * np.pi) * jnp.asarray([ho, wo], rdtype)
    return Peak(best, disp, score[best])

"""Centred half spectra: the Fourier-domain layout of the continuous-domain trackers (ECO).

Conventions (shared by `ctjax.ops.sample_space`, `ctjax.trackers.eco_filter`,
`ctjax.trackers.eco`):

* A feature block is a real map `x` of shape `(..., H, W, C)` (NHWC, leading batch axes).
* `cfft2(x)` is its centred half spectrum `xf` of shape `(..., Ho, Wh, C)`, complex64, with
  `Ho = H + 1 - H % 2` (always odd) and `Wh = W // 2 + 1`. Row `r` holds `ky = r - (Ho - 1) // 2`
  (centred, from `-(Ho-1)/2` to `(Ho-1)/2`); column `c` holds `kx = c` (the non-negative half,
  `kx = 0` first). The full spectrum it stands for is Hermitian and of odd size
  `(Ho, Wo = 2 Wh - 1)`.
* Even sizes follow ECO's `cfft2.m`: the spectrum is padded to odd size by repeating the
  Nyquist row at `ky = +H/2` (for a half spectrum: the last row equals the first), and the
  Nyquist column appears at both `kx = -W/2` and `+W/2` of the full spectrum, so it counts
  twice in inner products, exactly as in ECO.
* The DFT is unnormalised (`jnp.fft`, MATLAB `fft2`). MATLAB ECO keeps the `kx <= 0` half;
  pytracking and ctjax keep `kx >= 0`, which is its complex conjugate mirrored.
* Blocks of different sizes share the grid of the largest block: a block with `Ho` rows sits
  at rows `(Ho_max - Ho) // 2 ...` and columns `0 ... Wh - 1` (aligned at `kx = 0`).

References: ECO (Danelljan et al., CVPR 2017), MATLAB `cfft2.m`, `compact_fourier_coeff.m`,
`symmetrize_filter.m`; pytracking `libs/fourier.py`.
"""

from __future__ import annotations

import jax.numpy as jnp


def cfft2(x: jnp.ndarray) -> jnp.ndarray:
    """Centred half spectrum of a real NHWC map over its spatial axes.

    Args:
      x: real `(..., H, W, C)` array.

    Returns:
      `(..., Ho, W // 2 + 1, C)` complex spectrum, `Ho = H + 1 - H % 2`, rows centred on
      `ky = 0`, columns `kx = 0, 1, ...` (see the module docstring).
    """
    h = x.shape[-3]
    xf = jnp.fft.fftshift(jnp.fft.rfft2(x, axes=(-3, -2)), axes=-3)
    if h % 2 == 0:
        # ECO pads even sizes to odd by repeating the Nyquist row at +H/2.
        xf = jnp.concatenate([xf, xf[..., :1, :, :]], axis=-3)
    return xf


def full_inner(af: jnp.ndarray, bf: jnp.ndarray, axes=(-3, -2, -1)) -> jnp.ndarray:
    """Real inner product `<a, b>` of the full Hermitian spectra represented by two halves.

    Every column `kx > 0` stands for itself and its mirror `-kx`, so it counts twice;
    the `kx = 0` column counts once.

    Args:
      af, bf: half spectra of the same shape, `(..., Ho, Wh, C)` by default.
      axes: the axes summed over (the spatial axes and the channel axis by default); the
        second of the spatial axes must be the `kx` axis at position -2.

    Returns:
      Real array with `axes` summed out: `sum(Re(a conj(b)))` over the full spectrum.
    """
    prod = jnp.real(af * jnp.conj(bf))
    return 2 * jnp.sum(prod, axis=axes) - jnp.sum(prod[..., :, :1, :], axis=axes)


def symmetrize(hf: jnp.ndarray) -> jnp.ndarray:
    """Makes the `kx = 0` column Hermitian in `ky` (ECO `symmetrize_filter.m`).

    A solver working on half spectra leaves `X(-ky, 0) != conj X(ky, 0)`; this projects the
    column onto the spectra of real maps.

    Args:
      hf: `(..., Ho, Wh, C)` half spectrum with odd `Ho`.
    """
    col = hf[..., :, :1, :]
    col = 0.5 * (col + jnp.conj(jnp.flip(col, axis=-3)))
    return hf.at[..., :, :1, :].set(col)

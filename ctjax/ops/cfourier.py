"""Centred half spectra: the Fourier-domain layout of the continuous-domain trackers (ECO).

Conventions (shared by `ctjax.ops.sample_space`, `ctjax.ops.peak`, `ctjax.trackers.eco_filter`,
`ctjax.trackers.eco`):

* A feature block is a real map `x` of shape `(..., H, W, C)` (NHWC, leading batch axes).
* `cfft2(x)` is its centred half spectrum `xf` of shape `(..., Ho, Wh, C)`, complex64, with
  `Ho = H + 1 - H % 2` (always odd) and `Wh = W // 2 + 1`. Row `r` holds `ky = r - (Ho - 1) // 2`
  (centred, from `-(Ho-1)/2` to `(Ho-1)/2`); column `c` holds `kx = c` (the non-negative half,
  `kx = 0` first). The full spectrum it stands for is Hermitian and of odd size
  `(Ho, Wo = 2 Wh - 1)`. Sizes passed as `sz`, `hw`, `out_hw`, `output_sz` are these FULL odd
  sizes `(Ho, Wo)` (ECO's `filter_sz` / `output_sz`), never the half width `Wh`.
* Even sizes follow ECO's `cfft2.m`: the spectrum is padded to odd size by repeating the
  Nyquist row at `ky = +H/2` (for a half spectrum: the last row equals the first), and the
  Nyquist column appears at both `kx = -W/2` and `+W/2` of the full spectrum, so it counts
  twice in inner products, exactly as in ECO (which also zeroes one Nyquist corner when both
  sizes are even; see `cfft2`).
* The DFT is unnormalised (`jnp.fft`, MATLAB `fft2`). MATLAB ECO keeps the `kx <= 0` half;
  pytracking and ctjax keep `kx >= 0`, which is its complex conjugate mirrored
  (`ours(ky, kx) = conj(ECO(-ky, -kx))`). Every ECO formula written with `exp(i s k)` or
  a real even factor of `k` carries over unchanged.
* Fourier series. A half spectrum `c` also stands for the periodic function (period `T` in
  any unit; the sample grid has `Ho x Wo` cells over one period)
  `f(y, x) = Re sum_{full k} c(ky, kx) exp(i 2 pi (ky y / Ty + kx x / Tx))`, the full
  coefficients for `kx < 0` being the Hermitian mirror of those for `kx > 0`.
  `sample_fs` samples it on a grid with its origin at index 0 (ECO `sample_fs.m`); a map's
  cell `n` sits at `t = n` cells, after `interpolate` with centring at `t = n + 1/2`.
* Blocks of different sizes share the grid of the largest block: a block with `Ho` rows sits
  at rows `(Ho_max - Ho) // 2 ...` and columns `0 ... Wh - 1` (aligned at `kx = 0`): `pad_to`,
  `crop_from`.
* Everything here is jit-compatible with static shapes, except `reg_filter`'s size check,
  which runs on the host when its target size is concrete (see there).

References: ECO (Danelljan et al., CVPR 2017) and C-COT (ECCV 2016, continuous formulation);
MATLAB ECO `implementation/fourier_tools/*.m`, `initialization/get_interp_fourier.m`,
`initialization/get_reg_filter.m`, `tracker.m`; pytracking `libs/fourier.py`, `libs/dcf.py`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def cfft2(x: jnp.ndarray) -> jnp.ndarray:
    """Centred half spectrum of a real NHWC map over its spatial axes.

    Args:
      x: real `(..., H, W, C)` array.

    Returns:
      `(..., Ho, W // 2 + 1, C)` complex spectrum, `Ho = H + 1 - H % 2`, rows centred on
      `ky = 0`, columns `kx = 0, 1, ...` (see the module docstring). Equal to ECO's
      `compact_fourier_coeff(cfft2(x))` conjugated and mirrored, including its zero at the
      Nyquist corner `(ky, kx) = (-H/2, +W/2)` when both `H` and `W` are even (ECO fills the
      padded row before the padded column, so that corner copies a still-empty entry).
    """
    h, w = x.shape[-3], x.shape[-2]
    xf = jnp.fft.fftshift(jnp.fft.rfft2(x, axes=(-3, -2)), axes=-3)
    if h % 2 == 0:
        # ECO pads even sizes to odd by repeating the Nyquist row at +H/2.
        xf = jnp.concatenate([xf, xf[..., :1, :, :]], axis=-3)
        if w % 2 == 0:
            xf = xf.at[..., 0, -1, :].set(0)
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
    column onto the spectra of real maps (the average of the column and its Hermitian
    mirror, orthogonal for `full_inner`). ECO instead overwrites one half of the column with
    the mirror of the other and leaves the DC term's imaginary part; the two agree whenever
    the column is already Hermitian, as it is up to rounding after ECO's solver.

    Args:
      hf: `(..., Ho, Wh, C)` half spectrum with odd `Ho`.
    """
    col = hf[..., :, :1, :]
    col = 0.5 * (col + jnp.conj(jnp.flip(col, axis=-3)))
    return hf.at[..., :, :1, :].set(col)


def _check_odd(sz, name: str) -> tuple[int, int]:
    sz = tuple(int(s) for s in sz)
    if len(sz) != 2 or any(s < 1 or s % 2 == 0 for s in sz):
        raise ValueError(f"{name} must be two odd full spectrum sizes (Ho, Wo), got {sz}")
    return sz


def _at_axes(v: jnp.ndarray, ndim: int, axes) -> jnp.ndarray:
    """Reshapes a `(Ho, Wh)` array to broadcast over an `ndim` array at `axes`."""
    a0, a1 = (a % ndim for a in axes)
    if a0 >= a1:
        raise ValueError(f"axes must be increasing (rows, then kx), got {axes}")
    shape = [1] * ndim
    shape[a0], shape[a1] = v.shape
    return v.reshape(shape)


def _half_k(ho: int, wh: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer frequencies of the half layout: `ky` centred `(Ho,)`, `kx = 0..Wh-1`."""
    return np.arange(ho) - (ho - 1) // 2, np.arange(wh)


def _cubic_series(a: float, terms: int = 14) -> np.ndarray:
    """Taylor coefficients `c_n` of `B(f) = sum_n c_n f^(2n)`, from the kernel's even moments
    `m_j = 2 int_0^2 u^j k(u) du`: `c_n = (-1)^n (2 pi)^(2n) m_(2n) / (2n)!` (float64)."""
    out = []
    for n in range(terms):
        j = 2 * n
        inner = (a + 2) / (j + 4) - (a + 3) / (j + 3) + 1 / (j + 1)
        outer = a * ((2 ** (j + 4) - 1) / (j + 4) - 5 * (2 ** (j + 3) - 1) / (j + 3)
                     + 8 * (2 ** (j + 2) - 1) / (j + 2) - 4 * (2 ** (j + 1) - 1) / (j + 1))
        out.append((-1) ** n * (2 * np.pi) ** j * 2 * (inner + outer) / math.factorial(j))
    return np.asarray(out)


def cubic_spline_fourier(f, a: float = -0.75):
    """Continuous Fourier transform of Keys' cubic convolution kernel (ECO's bicubic kernel).

    The kernel is `k(u) = (a+2)|u|^3 - (a+3)|u|^2 + 1` for `|u| <= 1`,
    `a|u|^3 - 5a|u|^2 + 8a|u| - 4a` for `1 < |u| < 2`, zero beyond, and its transform
    `B(f) = int k(u) exp(-i 2 pi f u) du` is real and even, `B(0) = 1`. The closed form
    cancels catastrophically at small `f` (in float32 it is off by 2e-3 at `f = 0.02`, i.e.
    for the low frequencies of a 50-cell block), so `|f| < 0.3` uses its Taylor series.

    Args:
      f: frequency in cycles per grid cell, any shape. A NumPy array (or Python float) is
        evaluated in NumPy float64; a jax array in its own dtype (jit-compatible).
      a: the kernel parameter (ECO: -0.75), a Python float.

    Returns:
      `B(f)`, same shape as `f`.

    Reference: ECO `cubic_spline_fourier.m` (the same closed form, written with complex
    exponentials); Keys, IEEE TASSP 1981.
    """
    xp = jnp if isinstance(f, jax.Array) else np
    f = xp.asarray(f) if xp is jnp else np.asarray(f, np.float64)
    small = xp.abs(f) < 0.3
    g = xp.where(small, 1.0, f)
    c1, c2 = xp.cos(2 * np.pi * g), xp.cos(4 * np.pi * g)
    s1, s2 = xp.sin(2 * np.pi * g), xp.sin(4 * np.pi * g)
    closed = (6 * (1 - c1) + 3 * a * (1 - c2) - (6 + 8 * a) * np.pi * g * s1
              - 2 * a * np.pi * g * s2) / (4 * np.pi ** 4 * g ** 4)
    f2 = xp.where(small, f, 0.0) ** 2
    series = 0.0
    for c in _cubic_series(a)[::-1]:
        series = series * f2 + c
    return xp.where(small, series, closed)


def interp_fourier(sz, *, a: float = -0.75, centering: bool = True,
                   dtype=jnp.complex64) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Fourier coefficients of ECO's bicubic interpolation function for one feature block.

    Multiplying a block's spectrum by `interp_y * interp_x` (`interpolate`) turns the sampled
    map `x[n]` (`n` in cells) into the Fourier coefficients of the continuous periodic
    function `J{x}(t) = sum_n x[n] k(t - n - 1/2)` (period `Wo` cells per axis, `k` the cubic
    kernel), truncated to the block's `Ho x Wo` frequencies. Without centring the kernels sit
    at `t = n`.

    Args:
      sz: `(Ho, Wo)` odd full size of the block's spectrum (ECO's `filter_sz`, i.e.
        `cfft2`'s output rows and `2 Wh - 1`). Static.
      a: the cubic kernel's parameter (`interpolation_bicubic_a`, -0.75 in ECO's settings).
      centering: multiply by `exp(-i pi k / N)` (half a cell), ECO's
        `interpolation_centering`.
      dtype: complex dtype of the result.

    Returns:
      `interp_y` `(Ho, 1)` and `interp_x` `(1, Wh)`, complex: `B(k / N) / N` (times the
      centring phase) for `ky` centred and `kx = 0 .. Wh - 1`. Computed in float64 on the
      host (the sizes are static), then cast.

    Reference: ECO `get_interp_fourier.m` ('bicubic', without windowing), C-COT eq. (3).
    """
    ho, wo = _check_odd(sz, "sz")
    ky, kx = _half_k(ho, (wo + 1) // 2)
    iy = cubic_spline_fourier(ky / ho, a) / ho + 0j
    ix = cubic_spline_fourier(kx / wo, a) / wo + 0j
    if centering:
        iy = iy * np.exp(-1j * np.pi * ky / ho)
        ix = ix * np.exp(-1j * np.pi * kx / wo)
    return jnp.asarray(iy[:, None], dtype), jnp.asarray(ix[None, :], dtype)


def interpolate(xf: jnp.ndarray, interp_y: jnp.ndarray, interp_x: jnp.ndarray, *,
                axes=(-3, -2)) -> jnp.ndarray:
    """Interpolates a block's spectrum to the continuous domain (ECO `interpolate_dft.m`).

    Args:
      xf: half spectrum, `(..., Ho, Wh, C)` by default (NHWC, as from `cfft2`).
      interp_y, interp_x: `(Ho, 1)` and `(1, Wh)` from `interp_fourier`.
      axes: the `(ky, kx)` axes of `xf`; `(-2, -1)` for channel-less maps.

    Returns:
      `xf * interp_y * interp_x`, shape of `xf`.
    """
    weight = (interp_y * interp_x).reshape(interp_y.shape[0], interp_x.shape[-1])
    return xf * _at_axes(weight, xf.ndim, axes)


def gaussian_label_fs(sz, sigma, output_sz=None) -> jnp.ndarray:
    """ECO's Gaussian label as Fourier-series coefficients on one block's frequencies.

    The label is the periodic Gaussian `y(t) = sum_m exp(-|t - m T|^2 / (2 sigma^2))`
    (period `T = output_sz` cells, peak at `t = 0`), whose Fourier coefficients are, by the
    Poisson formula, `sqrt(2 pi) sigma / T exp(-2 (pi sigma k / T)^2)` per axis: real, no
    phase (ECO centres nothing; the filter takes the target from the sample centre to 0).
    Every block uses the same continuous label, truncated to its own frequencies, so a
    smaller block's label is the centre of the largest block's (`pad_to` agrees).

    ECO's sigma (`tracker.m`): `sigma = sqrt(prod(floor(base_target_sz))) *
    output_sigma_factor * output_sz / img_support_sz`, i.e. the target's geometric-mean size
    in sample pixels times the factor, converted to output-grid cells; only `sigma / T`
    matters (pytracking's per-block `filter_sz` scaling gives the same coefficients).

    Args:
      sz: `(Ho, Wo)` odd full size of the block (static).
      sigma: `(2,)` (or scalar) standard deviation `(sigma_y, sigma_x)` in output-grid
        cells; may be traced.
      output_sz: `(Ty, Tx)` period in output-grid cells (ECO's `output_sz`, the largest
        block's full size); defaults to `sz`.

    Returns:
      `(Ho, Wh)` real label coefficients, float32 (float64 for float64 `sigma`).
    """
    ho, wo = _check_odd(sz, "sz")
    period = sz if output_sz is None else output_sz
    sigma = jnp.asarray(sigma)
    dtype = jnp.promote_types(sigma.dtype, jnp.float32)
    sigma = jnp.broadcast_to(sigma.astype(dtype), (2,))
    period = jnp.asarray(period, sigma.dtype)
    ky, kx = _half_k(ho, (wo + 1) // 2)

    def axis(k, s, t):
        return np.sqrt(2 * np.pi) * s / t * jnp.exp(-2 * (np.pi * s * k / t) ** 2)

    return (axis(jnp.asarray(ky, sigma.dtype), sigma[0], period[0])[:, None]
            * axis(jnp.asarray(kx, sigma.dtype), sigma[1], period[1])[None, :])


def sample_fs(xf: jnp.ndarray, grid_sz=None, *, axes=(-2, -1)) -> jnp.ndarray:
    """Samples the Fourier series of a half spectrum on a regular grid (ECO `sample_fs.m`).

    `x[n] = Re sum_{full k} xf(k) exp(i 2 pi (ky ny / Gy + kx nx / Gx))`: the function of
    the module docstring at `t = n / G` periods, origin at index 0. With the default grid
    (the spectrum's own size) this is `Ho * Wo * ifft2` of the full spectrum; a larger grid
    zero-pads the spectrum (band-limited upsampling). A `kx = 0` column that is not
    Hermitian contributes its Hermitian part (the real part is taken).

    Args:
      xf: half spectrum, `(..., Ho, Wh)` by default.
      grid_sz: `(Gy, Gx)` output grid, each at least the full size `(Ho, 2 Wh - 1)`; odd or
        even. Static. Default: the full size.
      axes: the `(ky, kx)` axes of `xf`.

    Returns:
      Real samples with `(Gy, Gx)` in place of `(Ho, Wh)`.
    """
    xf = jnp.moveaxis(xf, axes, (-2, -1))
    ho, wh = xf.shape[-2:]
    if ho % 2 == 0:
        raise ValueError(f"sample_fs needs an odd number of rows (centred ky), got {ho}")
    gy, gx = (ho, 2 * wh - 1) if grid_sz is None else (int(g) for g in grid_sz)
    if gy < ho or gx < 2 * wh - 1:
        raise ValueError(f"grid_sz {(gy, gx)} is smaller than the spectrum {(ho, 2 * wh - 1)}")
    pad = [(0, 0)] * (xf.ndim - 2) + [(0, gy - ho), (0, gx // 2 + 1 - wh)]
    # Rows to FFT order: ky = 0 first, negative ky wrapped to the end.
    xf = jnp.roll(jnp.pad(xf, pad), -((ho - 1) // 2), axis=-2)
    x = jnp.fft.irfft2(xf, s=(gy, gx), axes=(-2, -1)) * (gy * gx)
    return jnp.moveaxis(x, (-2, -1), axes)


def pad_to(xf: jnp.ndarray, out_hw, *, axes=(-2, -1)) -> jnp.ndarray:
    """Places a block's half spectrum on a larger grid: rows centred, columns from `kx = 0`.

    Args:
      xf: half spectrum, `(..., Ho, Wh)` by default (e.g. a block's channel-summed response).
      out_hw: `(Ho_out, Wo_out)` odd FULL size of the larger grid (ECO's `output_sz`), at
        least `(Ho, 2 Wh - 1)`. Static.
      axes: the `(ky, kx)` axes of `xf`.

    Returns:
      `(..., Ho_out, (Wo_out + 1) // 2)` spectrum, zero outside the block's frequencies.
      Its adjoint (for `full_inner` and for the plain inner product) is `crop_from`.

    Reference: ECO `tracker.m` / `lhs_operation.m` (`pad_sz`), pytracking `fourier.sum_fs`.
    """
    out_h, out_w = _check_odd(out_hw, "out_hw")
    a0, a1 = (a % xf.ndim for a in axes)
    ho, wh = xf.shape[a0], xf.shape[a1]
    if ho % 2 == 0 or out_h < ho or (out_w + 1) // 2 < wh:
        raise ValueError(f"cannot pad a ({ho}, {wh}) half spectrum to full size {out_hw}")
    top = (out_h - ho) // 2
    pad = [(0, 0)] * xf.ndim
    pad[a0], pad[a1] = (top, top), (0, (out_w + 1) // 2 - wh)
    return jnp.pad(xf, pad)


def crop_from(xf: jnp.ndarray, hw, *, axes=(-2, -1)) -> jnp.ndarray:
    """The block's frequencies out of a larger half spectrum; the adjoint of `pad_to`.

    Args:
      xf: half spectrum on the larger grid, `(..., Ho_out, Wh_out)` by default.
      hw: `(Ho, Wo)` odd FULL size of the block. Static.
      axes: the `(ky, kx)` axes of `xf`.

    Returns:
      `(..., Ho, (Wo + 1) // 2)`: rows centred, columns `kx = 0 .. (Wo - 1) / 2`.
    """
    ho, wo = _check_odd(hw, "hw")
    a0, a1 = (a % xf.ndim for a in axes)
    out_h, out_wh = xf.shape[a0], xf.shape[a1]
    if out_h % 2 == 0 or out_h < ho or out_wh < (wo + 1) // 2:
        raise ValueError(f"cannot crop full size {hw} from a ({out_h}, {out_wh}) half spectrum")
    top = (out_h - ho) // 2
    xf = jax.lax.slice_in_dim(xf, top, top + ho, axis=a0)
    return jax.lax.slice_in_dim(xf, 0, (wo + 1) // 2, axis=a1)


def shift_sample(xf: jnp.ndarray, shift, sz=None, *, axes=(-3, -2)) -> jnp.ndarray:
    """Translates a Fourier series: multiplies by `exp(i (shift_y ky + shift_x kx))`.

    The function `f(t)` becomes `f(t + d)` with `d = shift / (2 pi)` periods: ECO passes
    `shift = 2 pi (pos - sample_pos) / (sample_scale * img_support_sz)` so the target, seen
    at `pos`, moves to the sample centre. For a map of `N` cells, `shift = 2 pi d / N` with
    integer `d` is `np.roll(x, -d)`.

    Args:
      xf: half spectrum, `(..., Ho, Wh, C)` by default (NHWC).
      shift: `(2,)` `(shift_y, shift_x)` in radians per unit frequency (ECO's normalised
        shift, one period = `2 pi`); may be traced.
      sz: optional `(Ho, Wo)` full size of the block (ECO's `filter_sz`, from which ECO
        builds `ky`, `kx`); checked against `xf`, else unused.
      axes: the `(ky, kx)` axes of `xf`; `(-2, -1)` for channel-less maps.

    Returns:
      The shifted spectrum, shape and dtype of `xf`.

    Reference: ECO `shift_sample.m`, pytracking `fourier.shift_fs`.
    """
    a0, a1 = (a % xf.ndim for a in axes)
    ho, wh = xf.shape[a0], xf.shape[a1]
    if sz is not None and tuple(int(s) for s in sz) != (ho, 2 * wh - 1):
        raise ValueError(f"sz {tuple(sz)} does not match the half spectrum ({ho}, {wh})")
    ky, kx = _half_k(ho, wh)
    shift = jnp.asarray(shift)
    rdtype = jnp.real(xf).dtype
    phase = (jnp.exp(1j * shift[0].astype(rdtype) * jnp.asarray(ky, rdtype))[:, None]
             * jnp.exp(1j * shift[1].astype(rdtype) * jnp.asarray(kx, rdtype))[None, :])
    return xf * _at_axes(phase.astype(xf.dtype), xf.ndim, axes)


class RegFilter(NamedTuple):
    """ECO's spatial regularisation in the Fourier domain.

    Attributes:
      kernel: `(Ky, Kx)` real float32 kernel, indexed by `(ky, kx)` with `ky = kx = 0` at the
        centre `(Ky // 2, Kx // 2)`; ECO's cropped `reg_filter` zero-padded, centred, to the
        static size. Real and even in `ky` and in `kx` (a cross: the window is a sum of a
        function of y and one of x).
      energy: `()` float32 `sum(kernel ** 2)` (ECO's `reg_energy`, for the preconditioner).
    """
    kernel: jnp.ndarray
    energy: jnp.ndarray


def reg_filter(support_sz, target_sz, *, reg_window_min: float = 1e-4,
               reg_window_edge: float = 1e-2, reg_window_power: float = 2,
               reg_sparsity_threshold: float = 0.05, max_kernel=(7, 7)) -> RegFilter:
    """ECO's spatial regularisation window as a small frequency-domain kernel.

    The window `w(y, x) = (edge - min) (|y / (0.5 h)|^p + |x / (0.5 w)|^p) + min` over the
    `support_sz` pixel grid centred on the sample (`y = -(H-1)/2 .. (H-1)/2`) is taken to the
    Fourier domain (`fft2 / (H W)`), coefficients below `reg_sparsity_threshold` times the
    largest magnitude are dropped, the DC term is corrected so the sparse window's minimum is
    `reg_window_min`, and the real part of the remaining (centred) coefficients is the kernel
    the solver convolves filter spectra with. With ECO's settings the support is at most
    7 x 7 (1 x 7 .. 7 x 3 .. 5 x 5, by aspect); it is zero-padded to `max_kernel` so the
    tracker compiles once.

    Host or traced. With a concrete `target_sz` (NumPy / Python / concrete jax values) this
    runs in NumPy float64 on the host, like ECO's init, and raises `ValueError` when the
    support exceeds `max_kernel`. With a traced `target_sz` (inside a jitted tracker init) it
    runs in jnp at the default float precision (threshold decisions can then differ from
    float64 for a coefficient within rounding of the threshold) and, since it cannot raise,
    returns an all-NaN kernel when the support exceeds `max_kernel`.

    Args:
      support_sz: `(H, W)` the sample grid in pixels (ECO's `img_support_sz`). Static.
      target_sz: `(2,)` target `(h, w)` in the same pixels (ECO's `base_target_sz`).
      reg_window_min, reg_window_edge, reg_window_power, reg_sparsity_threshold: ECO's
        parameters (defaults: its OTB settings; `reg_window_edge` may be set per block).
      max_kernel: `(Ky, Kx)` odd static kernel size.

    Returns:
      `RegFilter(kernel (Ky, Kx) float32, energy () float32)`; NumPy arrays on the host
      path, jax arrays on the traced path.

    Reference: ECO `get_reg_filter.m`, `tracker.m` (`reg_energy`); C-COT eq. (4)-(6).
    """
    ky_max, kx_max = _check_odd(max_kernel, "max_kernel")
    n0, n1 = (int(s) for s in support_sz)
    if ky_max > n0 or kx_max > n1:
        raise ValueError(f"max_kernel {max_kernel} is larger than the support {support_sz}")
    traced = isinstance(target_sz, jax.core.Tracer)
    xp = jnp if traced else np
    t = xp.asarray(target_sz) if traced else np.asarray(target_sz, np.float64)
    scale = 0.5 * t
    wr = xp.arange(n0) - (n0 - 1) / 2
    wc = xp.arange(n1) - (n1 - 1) / 2
    window = ((reg_window_edge - reg_window_min)
              * (xp.abs(wr[:, None] / scale[0]) ** reg_window_power
                 + xp.abs(wc[None, :] / scale[1]) ** reg_window_power) + reg_window_min)
    dft = xp.fft.fft2(window) / (n0 * n1)
    # |W(k)| = |W(-k)| for a real window; take the larger of the pair so the support is
    # exactly symmetric (ECO's crop is then centred on DC) whatever the FFT's rounding.
    mag = xp.abs(dft)
    mag = xp.maximum(mag, xp.roll(mag[::-1, ::-1], (1, 1), axis=(0, 1)))
    keep = mag >= reg_sparsity_threshold * xp.max(mag)
    dft = xp.where(keep, dft, 0)
    sparse_min = xp.min(xp.real(xp.fft.ifft2(dft))) * (n0 * n1)
    is_dc = (xp.arange(n0)[:, None] == 0) & (xp.arange(n1)[None, :] == 0)
    dft = xp.where(is_dc, dft - sparse_min + reg_window_min, dft)
    # Centred crop of the static size: DC at (n // 2) after fftshift.
    c0, c1 = n0 // 2, n1 // 2
    rows = slice(c0 - ky_max // 2, c0 + ky_max // 2 + 1)
    cols = slice(c1 - kx_max // 2, c1 + kx_max // 2 + 1)
    kernel = xp.real(xp.fft.fftshift(dft))[rows, cols].astype(np.float32)
    outside = xp.sum(keep) - xp.sum(xp.fft.fftshift(keep)[rows, cols])
    if traced:
        kernel = jnp.where(outside > 0, jnp.nan, kernel)
    elif outside > 0:
        sup = np.argwhere(np.fft.fftshift(keep)) - (c0, c1)
        got = tuple(int(2 * np.abs(sup[:, i]).max() + 1) for i in range(2))
        target = tuple(float(v) for v in t)
        raise ValueError(f"the regularisation kernel's support {got} exceeds max_kernel "
                         f"{max_kernel} (support_sz {support_sz}, target_sz {target}); "
                         "raise max_kernel")
    return RegFilter(kernel, xp.sum(kernel ** 2))

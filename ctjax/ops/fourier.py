"""Fourier-domain building blocks of the correlation filter: real 2-D DFTs, label, window.

Conventions (shared with `ctjax.ops.dcf`):

* Spatial feature maps are NHWC, i.e. real arrays `(..., H, W, C)`; single-channel maps
  (labels, responses) are `(..., H, W)`. Any leading axes are batch axes.
* The DFT is the unnormalised forward transform of `jnp.fft` (exp(-2πi k n / N), no 1/N),
  taken over the spatial axes only: `(-3, -2)` for NHWC maps (`rfft2`) and `(-2, -1)` for
  single-channel maps (`rfft2_map`). Only the non-negative half of the last spatial axis is
  kept, so a spectrum has width `Wf = W // 2 + 1`. Because `Wf` does not tell whether `W` was
  even or odd, every inverse transform takes the real size `hw = (H, W)` explicitly.
* Fourier-domain variables carry the suffix `f` (`xf`, `zf`, `yf`, `alphaf`). Their dtype is
  complex64 for float32 inputs (complex128 only when float64 is enabled, as in the gradient
  tests).
* Labels peak at index (0, 0) and wrap around circularly (KCF / DCFNet convention), so a
  response peak at index (i, j) means a displacement of (i, j) cells, taken modulo (H, W).

References: DCFNet (Wang et al., arXiv:1704.04057, MatConvNet `training/+dagnn/DCF.m`),
KCF (Henriques et al., TPAMI 2015), PAPER.md §5.1-5.3.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

_NHWC_AXES = (-3, -2)
_MAP_AXES = (-2, -1)


def rfft2(x: jnp.ndarray) -> jnp.ndarray:
    """Real 2-D DFT of an NHWC feature map over its spatial axes.

    Args:
        x: real `(..., H, W, C)` array.

    Returns:
        `(..., H, W // 2 + 1, C)` complex64 spectrum (complex128 for float64 input).
        Reference: DCFNet `torch.rfft(x, signal_ndim=2)`, PAPER.md §5.1.
    """
    return jnp.fft.rfft2(x, axes=_NHWC_AXES)


def irfft2(xf: jnp.ndarray, hw: tuple[int, int]) -> jnp.ndarray:
    """Inverse of `rfft2`.

    Args:
        xf: `(..., H, W // 2 + 1, C)` complex spectrum.
        hw: static `(H, W)`, the size of the real map (needed because `Wf` is ambiguous).

    Returns:
        Real `(..., H, W, C)` array.
    """
    return jnp.fft.irfft2(xf, s=tuple(hw), axes=_NHWC_AXES)


def rfft2_map(y: jnp.ndarray) -> jnp.ndarray:
    """Real 2-D DFT of a single-channel map (label, response) over its last two axes.

    Args:
        y: real `(..., H, W)` array.

    Returns:
        `(..., H, W // 2 + 1)` complex64 spectrum, e.g. `yf` of a `gaussian_label`.
    """
    return jnp.fft.rfft2(y, axes=_MAP_AXES)


def irfft2_map(yf: jnp.ndarray, hw: tuple[int, int]) -> jnp.ndarray:
    """Inverse of `rfft2_map`.

    Args:
        yf: `(..., H, W // 2 + 1)` complex spectrum.
        hw: static `(H, W)` of the real map.

    Returns:
        Real `(..., H, W)` array.
    """
    return jnp.fft.irfft2(yf, s=tuple(hw), axes=_MAP_AXES)


def _circular_offsets(n: int, *, centered: bool) -> np.ndarray:
    """Signed offset of each index from the peak: peak at 0 (wrapping) or at n // 2."""
    idx = np.arange(n)
    if centered:
        return idx - n // 2
    return (idx + n // 2) % n - n // 2


def gaussian_label(hw: tuple[int, int], sigma: float, *, centered: bool = False,
                   dtype=jnp.float32) -> jnp.ndarray:
    """Gaussian regression target exp(-(dr² + dc²) / (2σ²)) of the correlation filter.

    Args:
        hw: static `(H, W)` of the response grid.
        sigma: static standard deviation in cells (DCFNet: 0.1 × target size in cells); the
            label is built with NumPy at trace time, so it becomes a constant under jit.
        centered: if False (default) the peak is at index (0, 0) and distances wrap around
            circularly (KCF / DCFNet); if True the peak is at (H // 2, W // 2), for display.
        dtype: output dtype.

    Returns:
        `(H, W)` array of `dtype` with maximum 1 at the peak. Reference: PAPER.md §5.2.
    """
    h, w = hw
    dr = _circular_offsets(h, centered=centered)[:, None]
    dc = _circular_offsets(w, centered=centered)[None, :]
    label = np.exp(-(dr**2 + dc**2) / (2.0 * float(sigma) ** 2))
    return jnp.asarray(label, dtype=dtype)


def hann_window(hw: tuple[int, int], *, dtype=jnp.float32) -> jnp.ndarray:
    """Cosine (Hann) window: the outer product of two MATLAB `hanning(N)` windows.

    MATLAB's `hanning(N)` has no zero end-points: it is the (N+2)-point Hann window with its
    two zeros dropped, `0.5 - 0.5 cos(2π k / (N + 1))` for k = 1..N, i.e.
    `np.hanning(N + 2)[1:-1]`. (NumPy's `np.hanning(N)` instead ends in zeros.)

    Args:
        hw: static `(H, W)`.
        dtype: output dtype.

    Returns:
        `(H, W)` array of `dtype`, values in (0, 1]. Reference: DCFNet tracker, PAPER.md §5.3.
    """
    h, w = hw
    window = np.outer(np.hanning(h + 2)[1:-1], np.hanning(w + 2)[1:-1])
    return jnp.asarray(window, dtype=dtype)


def _upsample_axis(x: jnp.ndarray, n_out: int, axis: int) -> jnp.ndarray:
    """Band-limited upsampling of a periodic real signal along one axis."""
    n = x.shape[axis]
    if n_out < n:
        raise ValueError(f"interpolate only upsamples: axis {axis} has size {n} > {n_out}")
    if n_out == n:
        return x
    spec = jnp.fft.rfft(x, axis=axis)
    if n % 2 == 0:
        # The Nyquist bin of an even-length signal stands for both +n/2 and -n/2; on the finer
        # grid those are two distinct frequencies, so each gets half of it (keeps it real).
        weights = np.ones(n // 2 + 1)
        weights[-1] = 0.5
        spec = spec * jnp.asarray(weights.reshape((-1,) + (1,) * (-axis - 1)), spec.real.dtype)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, n_out // 2 + 1 - spec.shape[axis])
    spec = jnp.pad(spec, pad)
    return jnp.fft.irfft(spec, n=n_out, axis=axis) * (n_out / n)


def interpolate(r: jnp.ndarray, out_hw: tuple[int, int]) -> jnp.ndarray:
    """Band-limited (Fourier zero-padding) upsampling of a periodic real map.

    The map is treated as samples of a trigonometric polynomial on the circle; the output
    samples the same polynomial on a finer grid, so when H'/H and W'/W are integers the
    coarse samples are kept exactly: `out[..., i * H'/H, j * W'/W] == r[..., i, j]`. For even
    sizes the Nyquist bin is split evenly between +N/2 and -N/2, so the result stays real
    and symmetric. Index (0, 0) stays at (0, 0), matching the wrap-around label convention.

    Args:
        r: real `(..., H, W)` map, e.g. a correlation response.
        out_hw: static `(H', W')` with `H' >= H` and `W' >= W`.

    Returns:
        Real `(..., H', W')` map of the same dtype. Reference: the response interpolation of
        C-COT/ECO trackers (used to fuse layers of different strides and refine peaks).
    """
    out_h, out_w = out_hw
    r = _upsample_axis(r, out_h, -2)
    return _upsample_axis(r, out_w, -1)


def sample_periodic(r: jnp.ndarray, u: jnp.ndarray, v: jnp.ndarray) -> jnp.ndarray:
    """Evaluates periodic maps at fractional cells: band-limited (Fourier-series) sampling.

    Each map is read as the trigonometric polynomial through its samples (the inverse DFT
    evaluated off the grid), so maps of different strides can be compared at the same
    physical displacement, as ECO fuses its layers' responses. Unlike `interpolate`, the
    points need not lie on a finer regular grid.

    Args:
        r: real `(S, H, W)` maps (e.g. one response per scale), index (0, 0) = no motion.
        u: `(G,)` row positions in cells (any real values; the maps wrap around).
        v: `(G',)` column positions in cells.

    Returns:
        Real `(S, G, G')` values; integer positions reproduce the samples. For even sizes
        the Nyquist frequency is taken at -N/2 and only the real part is kept. Reference:
        ECO / C-COT response fusion (Danelljan et al., CVPR 2017, ECCV 2016).
    """
    h, w = r.shape[-2:]
    rf = jnp.fft.fft2(r)
    ky = jnp.fft.fftfreq(h) * h
    kx = jnp.fft.fftfreq(w) * w
    ey = jnp.exp(2j * jnp.pi * u[:, None] * ky[None, :] / h)
    ex = jnp.exp(2j * jnp.pi * v[:, None] * kx[None, :] / w)
    return jnp.real(jnp.einsum("gk,skl,hl->sgh", ey, rf, ex)) / (h * w)


def phase_shift(xf: jnp.ndarray, shift, hw: tuple[int, int]) -> jnp.ndarray:
    """Circularly shifts an `rfft2` spectrum by a fractional (dy, dx) via a phase ramp.

    The inverse transform of the result is the band-limited map translated by `shift`
    cells: `irfft2(phase_shift(rfft2(x), (dy, dx), hw), hw)[i, j] ~ x[i - dy, j - dx]`
    (exact for integer shifts). ECO's `shift_sample` in the rfft2 layout.

    Args:
        xf: `(H, W // 2 + 1, C)` complex spectrum of a real `(H, W, C)` map.
        shift: `(2,)` displacement (dy, dx) in cells (traced values allowed).
        hw: static `(H, W)` of the real map.

    Returns:
        Spectrum of the same shape and dtype as `xf`. Reference: ECO `shift_sample.m`.
    """
    h, w = hw
    ky = jnp.fft.fftfreq(h) * h
    kx = jnp.fft.rfftfreq(w) * w
    phase = ky[:, None] * shift[0] / h + kx[None, :] * shift[1] / w
    return xf * jnp.exp(-2j * jnp.pi * phase)[..., None].astype(xf.dtype)


def label_sigma(patch_size: float, search_area_scale: float, stride: float, *,
                factor: float) -> float:
    """Gaussian label sigma in cells: `factor` x the target size in cells.

    The target is `patch_size / search_area_scale` patch pixels wide (the window is
    `search_area_scale` x the target's geometric-mean size), i.e. that over `stride` cells.
    The tracker (ECO: factor 1/12) and the tracking loss (DCFNet: 0.1) both call this.

    Args:
        patch_size: side of the resampled window (tracker patch, training crop) in pixels.
        search_area_scale: window side / sqrt(target w h) (ECO: 4.5; training `context`).
        stride: patch pixels per feature cell.
        factor: sigma / target size (ECO `output_sigma_factor`).

    Returns:
        Static Python float. Reference: PAPER.md §5.2, DCFNet, ECO.
    """
    return factor * (patch_size / search_area_scale) / stride

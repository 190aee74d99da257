"""fDSST scale filter, as ECO uses it to estimate the target's scale change.

A one-dimensional correlation filter over scales (Danelljan et al., "Discriminative Scale Space
Tracking", TPAMI 2017, fDSST; ECO's `scale_filter/*.m`). Around the current target, `S` patches
of sizes `target x scale_factors(config)[i]` are resized to one fixed model size and described by
a feature vector each (ECO: fHOG, cell 4, 31 channels, flattened). The filter correlates the
stack of `S` vectors with a Gaussian label over the scale axis; the peak of the response,
upsampled to `num_interp_scales` by zero-padding its DFT (`resize_dft`) and refined by a
parabola, gives the scale change.

Conventions:

* Feature extraction stays with the caller: `xs` is a real `(S, D)` array, row `i` the features
  of the patch at `scale_factors(config)[i]` (ascending, `step ** e` with `e` from
  `-(S-1)/2 * Si/S` to `+(S-1)/2 * Si/S`, `Si = num_interp_scales`; the middle row is the current
  scale). DFTs run over the scale axis 0, unnormalised (MATLAB `fft`).
* `locate_scale` returns a multiplicative change: the new scale is `old * scale_change`.
* Projection: ECO projects the `D`-dimensional samples onto an orthonormal basis of the span of
  the model sample (`qr(s_num, 0)`, `s_num_compressed_dim = 'MAX'`), and the denominator's
  sample onto a basis of its own span. With the full ('MAX') basis both projections are
  lossless: `Q Q^T` fixes the projected matrix's columns, so numerator x test sample and the
  denominator are the same as without projection. This module therefore computes the
  unprojected form (the same numbers, without the two QR decompositions); the tests check it
  against a NumPy transcription of ECO with its QR projection.

References: ECO (Danelljan et al., CVPR 2017) MATLAB `init_scale_filter.m`,
`scale_filter_track.m`, `scale_filter_update.m`, `feature_projection_scale.m`, `resizeDFT.m`;
settings from `OTB_HC_settings.m` (ECO.md section 3).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class ScaleFilterConfig:
    """fDSST settings (ECO `OTB_HC_settings.m`; fECO uses the same).

    Attributes:
        num_scales: S, scale samples per frame (`number_of_scales_filter`).
        num_interp_scales: length the response is interpolated to (`number_of_interp_scales`).
        scale_step: ratio between neighbouring interpolated scales (`scale_step_filter`).
        sigma_factor: label width per interpolated scale (`scale_sigma_factor`).
        learning_rate: interpolation rate of the model (`scale_learning_rate`).
        reg_lambda: regulariser added to the denominator (`lambda` in the HC settings).
        model_factor: scale-model size relative to the target (`scale_model_factor`).
        model_max_area: largest scale-model area in pixels (`scale_model_max_area`).
        min_model_side: lower bound of each model side in pixels (8 in `init_scale_filter.m`).
        cell_size: fHOG cell of the scale features (the caller extracts them; ECO HOG4).
        poly_interp: refine the peak with a parabola through its neighbours (`do_poly_interp`).
    """
    num_scales: int = 17
    num_interp_scales: int = 33
    scale_step: float = 1.02
    sigma_factor: float = 1 / 16
    learning_rate: float = 0.025
    reg_lambda: float = 1e-2
    model_factor: float = 1.0
    model_max_area: float = 32 * 16
    min_model_side: int = 8
    cell_size: int = 4
    poly_interp: bool = True

    def __post_init__(self):
        if self.num_scales < 3 or self.num_interp_scales < self.num_scales:
            raise ValueError(f"need 3 <= num_scales ({self.num_scales}) <= num_interp_scales "
                             f"({self.num_interp_scales})")


class ScaleFilterState(NamedTuple):
    """The learnt scale filter (ECO `scale_filter.s_num`, `sf_num`, `sf_den`).

    Attributes:
        s_num: `(S, D)` real, the running average of the scale samples.
        sf_num: `(S, D)` complex, label DFT x conj(DFT over scales of the windowed `s_num`).
        sf_den: `(S,)` real, running average of the per-frequency sample energy.
    """
    s_num: jnp.ndarray
    sf_num: jnp.ndarray
    sf_den: jnp.ndarray


def _centred_range(n: int) -> np.ndarray:
    """MATLAB `-floor((n-1)/2):ceil((n-1)/2)`."""
    return np.arange(-((n - 1) // 2), (n - 1) - (n - 1) // 2 + 1, dtype=np.float64)


def _scale_exponents(config: ScaleFilterConfig) -> np.ndarray:
    """Exponents of the scale samples, in units of `scale_step` (ECO `scale_exp`)."""
    return _centred_range(config.num_scales) * config.num_interp_scales / config.num_scales


def scale_factors(config: ScaleFilterConfig) -> np.ndarray:
    """`(S,)` float64 relative sizes of the scale samples, ascending (ECO `scaleSizeFactors`).

    With the default config: `1.02 ** (k * 33 / 17)` for `k = -8 .. 8`.
    """
    return config.scale_step ** _scale_exponents(config)


def interp_scale_factors(config: ScaleFilterConfig) -> np.ndarray:
    """`(Si,)` float64 scale changes of the interpolated response bins (ECO
    `interpScaleFactors`): bin `j` is `step ** j` for `j <= (Si-1)/2`, then the negative
    exponents, so bin 0 is "no change"."""
    e = np.roll(_centred_range(config.num_interp_scales), -((config.num_interp_scales - 1) // 2))
    return config.scale_step ** e


def scale_label(config: ScaleFilterConfig) -> np.ndarray:
    """`(S,)` float64 Gaussian label over the scale samples, peak at index 0 (ECO `ys`).

    `exp(-e^2 / (2 sigma^2))` with `e` the circularly shifted sample exponents and
    `sigma = num_interp_scales * sigma_factor`, both in interpolated-scale steps.
    """
    e = np.roll(_scale_exponents(config), -((config.num_scales - 1) // 2))
    sigma = config.num_interp_scales * config.sigma_factor
    return np.exp(-0.5 * e ** 2 / sigma ** 2)


def scale_window(config: ScaleFilterConfig) -> np.ndarray:
    """`(S,)` float64 MATLAB `hann(S)` (zero at both ends) applied over the scale axis."""
    return np.hanning(config.num_scales)


def scale_model_size(base_target_hw, config: ScaleFilterConfig) -> tuple[int, int]:
    """Pixel size `(h, w)` every scale patch is resized to (ECO `init_scale_filter.m`).

    Host-side; computed once per sequence.

    Args:
        base_target_hw: `(h, w)` of the target at the first frame, in image pixels (ECO
            `params.init_sz`).
        config: the scale filter settings.

    Returns:
        `max(floor(hw * f), min_model_side)` per side, with `f = model_factor`, reduced so that
        the area is at most `model_max_area`.
    """
    h, w = (float(v) for v in base_target_hw)
    if h <= 0 or w <= 0:
        raise ValueError(f"target size must be positive, got {tuple(base_target_hw)}")
    factor = config.model_factor
    if factor ** 2 * h * w > config.model_max_area:
        factor = math.sqrt(config.model_max_area / (h * w))
    return (max(int(math.floor(h * factor)), config.min_model_side),
            max(int(math.floor(w * factor)), config.min_model_side))


def resize_dft(xf: jnp.ndarray, length: int) -> jnp.ndarray:
    """Zero-pads (or truncates) a 1-D DFT along axis 0 to `length` (ECO `resizeDFT.m`).

    Keeps the first `ceil(m/2)` and the last `floor((m-1)/2)` coefficients, `m = min(n,
    length)`, scaled by `length / n`, so the inverse DFT interpolates the signal.

    Args:
        xf: `(n, ...)` complex DFT over axis 0.
        length: the new number of coefficients.

    Returns:
        `(length, ...)` complex array.
    """
    n = xf.shape[0]
    m = min(n, length)
    head, tail = (m + 1) // 2, (m - 1) // 2
    scale = length / n
    pad = jnp.zeros((length - head - tail, *xf.shape[1:]), xf.dtype)
    return scale * jnp.concatenate([xf[:head], pad, xf[n - tail:]], axis=0)


def _windowed_dft(xs: jnp.ndarray, config: ScaleFilterConfig) -> jnp.ndarray:
    """DFT over scales of the Hann-windowed samples, `(S, D)` complex."""
    window = jnp.asarray(scale_window(config), xs.dtype)
    return jnp.fft.fft(window[:, None] * xs, axis=0)


def _check_samples(xs: jnp.ndarray, config: ScaleFilterConfig) -> jnp.ndarray:
    xs = jnp.asarray(xs)
    if xs.ndim != 2 or xs.shape[0] != config.num_scales:
        raise ValueError(f"xs must be (num_scales={config.num_scales}, D), got {xs.shape}")
    if not jnp.issubdtype(xs.dtype, jnp.floating):
        xs = xs.astype(jnp.float32)
    return xs


def _model(s_num: jnp.ndarray, xs: jnp.ndarray, config: ScaleFilterConfig):
    """Numerator from the model sample, new denominator term from the current sample."""
    yf = jnp.fft.fft(jnp.asarray(scale_label(config), s_num.dtype))
    sf_num = yf[:, None] * jnp.conj(_windowed_dft(s_num, config))
    xsf = _windowed_dft(xs, config)
    sf_den = jnp.sum(jnp.real(xsf * jnp.conj(xsf)), axis=1)
    return sf_num, sf_den


def init_scale_filter(xs: jnp.ndarray, config: ScaleFilterConfig) -> ScaleFilterState:
    """Trains the scale filter on the first frame (ECO `scale_filter_update.m`, first call).

    Args:
        xs: `(S, D)` real scale samples at `scale_factors(config)` around the initial box.
        config: the scale filter settings.

    Returns:
        The `ScaleFilterState` (float dtype of `xs`, float32 for integer input).
    """
    xs = _check_samples(xs, config)
    sf_num, sf_den = _model(xs, xs, config)
    return ScaleFilterState(xs, sf_num, sf_den)


def update_scale_filter(state: ScaleFilterState, xs: jnp.ndarray,
                        config: ScaleFilterConfig) -> ScaleFilterState:
    """Updates the model with the samples of the current frame (ECO `scale_filter_update.m`).

    `s_num` and `sf_den` move towards the new values by `config.learning_rate`; `sf_num` is
    recomputed from `s_num` (it is linear in it, so it interpolates in the same way).

    Args:
        state: the current `ScaleFilterState`.
        xs: `(S, D)` real scale samples at the new position and scale.
        config: the scale filter settings.

    Returns:
        The updated `ScaleFilterState`.
    """
    xs = _check_samples(xs, config).astype(state.s_num.dtype)
    lr = config.learning_rate
    s_num = (1 - lr) * state.s_num + lr * xs
    sf_num, new_den = _model(s_num, xs, config)
    return ScaleFilterState(s_num, sf_num, (1 - lr) * state.sf_den + lr * new_den)


def interp_scale_response(state: ScaleFilterState, xs: jnp.ndarray,
                          config: ScaleFilterConfig) -> jnp.ndarray:
    """Scale response interpolated to `num_interp_scales` bins (ECO `scale_filter_track.m`).

    Args:
        state: the learnt filter.
        xs: `(S, D)` real scale samples around the detected position at the current scale.
        config: the scale filter settings.

    Returns:
        `(Si,)` real response; bin `j` corresponds to `interp_scale_factors(config)[j]`.
    """
    xs = _check_samples(xs, config).astype(state.s_num.dtype)
    responsef = (jnp.sum(state.sf_num * _windowed_dft(xs, config), axis=1)
                 / (state.sf_den + config.reg_lambda))
    n = config.num_interp_scales
    # MATLAB ifft(..., 'symmetric') reads only the first n//2 + 1 coefficients: that is irfft.
    return jnp.fft.irfft(resize_dft(responsef, n)[:n // 2 + 1], n=n)


def locate_scale(state: ScaleFilterState, xs: jnp.ndarray,
                 config: ScaleFilterConfig) -> jnp.ndarray:
    """Estimates the scale change of the target (ECO `scale_filter_track.m`).

    Args:
        state: the learnt filter.
        xs: `(S, D)` real scale samples around the detected position at the current scale.
        config: the scale filter settings.

    Returns:
        Scalar (dtype of the state) multiplicative scale change. With `poly_interp`, the vertex
        of the parabola through the peak bin and its two circular neighbours, as a function of
        the bins' scale factors; if that parabola has no maximum (flat or convex, which a true
        peak between its neighbours never gives) the peak bin's factor is returned instead of
        ECO's inf / NaN.
    """
    response = interp_scale_response(state, xs, config)
    factors = jnp.asarray(interp_scale_factors(config), response.dtype)
    n = config.num_interp_scales
    peak = jnp.argmax(response)
    if not config.poly_interp:
        return factors[peak]
    prev, nxt = (peak - 1) % n, (peak + 1) % n
    # Same parabola as ECO's 3x3 Vandermonde solve, written around the peak to stay
    # well conditioned in float32 (the factors are all close to 1).
    x0, y0 = factors[peak], response[peak]
    d1, d3 = factors[prev] - x0, factors[nxt] - x0
    r1, r3 = response[prev] - y0, response[nxt] - y0
    det = d1 * d3 * (d1 - d3)
    a = (r1 * d3 - r3 * d1) / det
    b = (r3 * d1 ** 2 - r1 * d3 ** 2) / det
    vertex = x0 - b / (2 * a)
    return jnp.where((a < 0) & jnp.isfinite(vertex), vertex, x0)

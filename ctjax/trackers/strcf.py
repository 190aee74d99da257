"""STRCF / DeepSTRCF (Li et al., CVPR 2018) as pure `init_fn` / `step_fn` over a NamedTuple state.

Spatial-temporal regularised correlation filters: per feature block `k` the filter minimises

    E(f) = 1/(2T) ||sum_d x_d * f_d - y||^2 + 1/2 sum_d ||w . f_d||^2 + mu/2 ||f - f_prev||^2

(`*` circular correlation, `w` a binary spatial window: `reg_window_max` outside the target
box, `reg_window_min` inside; `f_prev` the previous frame's filter; `T` the pixel count of
the largest block, as `tracker.m` uses `prod(output_sz)` for every block). It is solved by
ADMM in the Fourier domain from zero each frame (`admm_solve`): the f-step is a per-frequency
Sherman-Morrison solve, the g-step a per-pixel shrinkage in the spatial domain, and the
penalty follows the published schedule (`gamma = 1`, then `min(10 gamma, 0.1)`; 2
iterations). The tracker keeps `f`, as the MATLAB code does. Detection sums the blocks'
responses as band-limited Fourier series on a common grid, searches a few scales and refines
the peak by Newton's method (`ctjax.ops.peak.newton_peak`).

fDeepSTRCF (PAPER.md §8) is this tracker with the distilled student's conv3 as its CNN block,
3 scales of 1.02 and no colour names on OTB. Feature blocks (`StrcfFeatures`): one hand-crafted
block (grey, fHOG cell 4, optional colour names; concatenated, not normalised) and optionally
one CNN block (min-max normalised per channel, `extract_features.m` of STRCF).

Compile once: the sample side (`StrcfFeatures.support`, STRCF's `img_support_sz`) is static,
so STRCF's clamp of the sample area becomes part of the scale factor; per-sequence values
(labels, regularisation windows, colour or grey) are traced arrays in the state.

Conventions: boxes are OTB x,y,w,h, 1-based; positions are 0-based (y, x) pixel centres,
sizes (h, w) in frame pixels; features are NHWC float32; filters and samples are `rfft2`
half spectra (`ctjax.ops.fourier`, unshifted, unnormalised DFT, suffix `f`); the summed
response goes to `ctjax.ops.cfourier`'s centred half spectrum for the peak search.

References: F. Li et al., "Learning Spatial-Temporal Regularized Correlation Filters for Visual
Tracking", CVPR 2018 (MATLAB lifeng9472/STRCF `implementation/tracker.m`, `argmin_g.m`,
`resp_newton.m`, `run_DeepSTRCF.m`); fDeepSTRCF settings: 594422814/CF-VGG
`fDeepSTRCF/run_DeepSTRCF.m`; ECO.md §3.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ctjax.boxes import center_size_to_xywh, xywh_to_center_size
from ctjax.features import colornames, fhog
from ctjax.features.cnn import avg_pool
from ctjax.models import preprocessing
from ctjax.ops import cfourier, fourier, peak
from ctjax.ops.crop import Frame, sample_window
from ctjax.trackers import Tracker

__all__ = ["AdmmState", "Geometry", "StrcfConfig", "StrcfFeatures", "StrcfState", "Tracker",
           "admm_solve", "centred_spectrum", "cos_window", "geometry", "init",
           "make_tracker", "min_max_channels", "penalty_schedule", "reg_window",
           "response_spectrum", "step", "strcf_label", "train"]

@dataclasses.dataclass(frozen=True)
class StrcfConfig:
    """STRCF's settings (names follow the MATLAB params; defaults: fDeepSTRCF's
    `run_DeepSTRCF.m`, ECO.md §3).

    Attributes:
      search_area_scale: support side / sqrt(target area).
      output_sigma_factor: label sigma / sqrt(target area), per block in its cells.
      temporal_reg: mu, the weight towards the previous filter (0 on the first frame).
      admm_iterations: ADMM iterations per frame.
      init_penalty, max_penalty, penalty_step: gamma starts at `init_penalty`, then
        `gamma = min(penalty_step * gamma, max_penalty)`.
      reg_window_min, reg_window_max: the binary spatial window inside / outside the target.
      cnn_reg_ratio: sample pixels per window cell of the target box in the CNN block
        (STRCF's `feature_downsample_ratio(2)`; the hand-crafted block uses its cell size).
      number_of_scales, scale_step: the scale search (scale factors `step ** k`).
      newton_iterations: Newton iterations of the peak search.
      clamp_position: keep the centre inside the frame (STRCF: off).
      reuse_detection_sample: train on the best scale's detection sample translated onto
        the new position in the Fourier domain (ECO's `shift_sample`: one feature
        extraction per scale and frame) instead of extracting a new sample there (STRCF).
      antialias: bilinear taps per axis and sample pixel when the window is downsampled
        (`ctjax.ops.crop.sample_window`; MATLAB's `imresize` antialiases).
      canvas_hw: static frame canvas.
    """
    search_area_scale: float = 4.5
    output_sigma_factor: float = 1.0 / 16.0
    temporal_reg: float = 15.0
    admm_iterations: int = 2
    init_penalty: float = 1.0
    max_penalty: float = 0.1
    penalty_step: float = 10.0
    reg_window_min: float = 1e-3
    reg_window_max: float = 1e5
    cnn_reg_ratio: float = 14.0
    number_of_scales: int = 3
    scale_step: float = 1.02
    newton_iterations: int = 5
    clamp_position: bool = False
    reuse_detection_sample: bool = False
    antialias: int = 1
    canvas_hw: tuple[int, int] = (720, 1280)

    def __post_init__(self):
        if self.number_of_scales < 1 or self.number_of_scales % 2 == 0:
            raise ValueError(f"number_of_scales must be odd and positive, got "
                             f"{self.number_of_scales}")
        if self.admm_iterations < 1:
            raise ValueError(f"admm_iterations must be >= 1, got {self.admm_iterations}")


@dataclasses.dataclass(frozen=True)
class StrcfFeatures:
    """STRCF's feature blocks over a square support (static, hashable).

    Block 0 is hand-crafted: grey (`colornames.grey`), fHOG (31 channels) and optionally colour
    names, concatenated at cell `cell`, without normalisation (STRCF: `normalize_power` empty).
    Block 1 (optional) is one CNN stage, cropped centrally to `support // stride` cells and
    min-max normalised per channel (`min_max_channels`).

    Attributes:
      support: sample side in pixels covered by every block (divisible by every cell).
      cell: the hand-crafted block's cell size.
      grey: include the grey channel.
      colour_names: include colour names (10 channels, zero on grey sequences: STRCF's
        `useForGray = false`); needs `params["cn"]` (`colornames.load_colour_names_table`).
      cnn: a `ctjax.features.cnn.CNNExtractor` with exactly one layer, or None.
      cnn_input: the network's input side (>= support, same parity), 0 without a CNN.
    """
    support: int = 208
    cell: int = 4
    grey: bool = True
    colour_names: bool = False
    cnn: Any = None
    cnn_input: int = 0

    def __post_init__(self):
        if self.support % self.cell:
            raise ValueError(f"support {self.support} is not a multiple of the cell {self.cell}")
        if self.cnn is not None:
            if len(self.cnn.layers) != 1:
                raise ValueError("STRCF takes exactly one CNN layer")
            if self.support % self.cnn_cell or self.cnn_input < self.support or \
                    (self.cnn_input - self.support) % 2:
                raise ValueError(f"support {self.support} must be a multiple of the CNN cell "
                                 f"{self.cnn_cell} and fit centrally in cnn_input "
                                 f"{self.cnn_input}")

    @property
    def cnn_cell(self) -> int:
        return self.cnn.cell_strides[0] if self.cnn is not None else 0

    @property
    def cells(self) -> tuple[int, ...]:
        """Sample pixels per cell of each block."""
        return (self.cell,) + ((self.cnn_cell,) if self.cnn is not None else ())

    @property
    def input_size(self) -> int:
        """Side of the one patch cropped per scale (the support is its centre)."""
        return max(self.support, self.cnn_input)

    @property
    def name(self) -> str:
        parts = ["grey"] * self.grey + ["hog"] + ["cn"] * self.colour_names
        return "+".join(parts + ([self.cnn.name] if self.cnn is not None else []))

    def __call__(self, params, patches, is_color) -> tuple:
        """Feature blocks of a batch of patches.

        Args:
          params: {"cn": (32768, 10) colour-name table or None, "cnn": CNN params or None}.
          patches: (N, input_size, input_size, 3) float32 RGB 0..255, centred on the sample.
          is_color: () bool, False on grey sequences.

        Returns:
          `(N, support // cell, support // cell, C_k)` float32 per block.
        """
        m = (self.input_size - self.support) // 2
        inner = patches[:, m:m + self.support, m:m + self.support]
        hand = []
        if self.grey:
            hand.append(colornames.grey(inner, cell=self.cell))
        hand.append(fhog.fhog(inner, cell=self.cell))
        if self.colour_names:
            cn = colornames.colour_names(inner, params["cn"], cell=self.cell)
            hand.append(jnp.where(is_color, cn, 0.0))
        blocks = [jnp.concatenate(hand, axis=-1)]
        if self.cnn is not None:
            blocks.append(self._cnn_block(params["cnn"], patches))
        return tuple(blocks)

    def _cnn_block(self, params, patches):
        m = (self.input_size - self.cnn_input) // 2
        x = patches[:, m:m + self.cnn_input, m:m + self.cnn_input]
        x = preprocessing.standardize(x, mean=params["mean"], std=params["std"],
                                      input_scale=params["scale"])
        layer = self.cnn.layers[0]
        x = self.cnn.module.apply(params["variables"], x, stages=(layer.name,))[layer.name]
        n = self.support // self.cnn.strides[0]
        top, left = (x.shape[1] - n) // 2, (x.shape[2] - n) // 2
        x = x[:, top:top + n, left:left + n]
        return min_max_channels(avg_pool(x, layer.pool))


class Geometry(NamedTuple):
    """Static sizes of a feature set.

    Attributes:
      support: sample side in pixels.
      block_hw: (h, w) of each block's map.
      output_hw: odd full size of the common Fourier grid (`ctjax.ops.cfourier`).
      T: pixel count of the largest block (STRCF's `prod(output_sz)`).
    """
    support: int
    block_hw: tuple
    output_hw: tuple
    T: float


class StrcfState(NamedTuple):
    """What STRCF carries between frames.

    Attributes:
      pos: (2,) target centre (y, x), 0-based frame pixels.
      scale: () frame pixels per sample pixel.
      base_size: (2,) target (h, w) in sample pixels (STRCF's `base_target_sz`).
      scale_range: (2,) min and max scale.
      is_color: () bool.
      filters: per block, (h, w // 2 + 1, C_k) complex filter half spectrum.
      yf: per block, (h, w // 2 + 1) label spectrum.
      reg: per block, (h, w) float32 spatial regularisation window.
    """
    pos: jnp.ndarray
    scale: jnp.ndarray
    base_size: jnp.ndarray
    scale_range: jnp.ndarray
    is_color: jnp.ndarray
    filters: tuple
    yf: tuple
    reg: tuple


# ---------------------------------------------------------------------------------------------
# Features


def min_max_channels(x, *, delta: float = 1e-7):
    """Per-sample, per-channel min-max normalisation of CNN maps (STRCF `extract_features.m`).

    Args:
      x: (N, h, w, C) float.

    Returns:
      `(x - min) / (max + delta - min)` over the spatial axes, (N, h, w, C) in [0, 1).
    """
    lo = jnp.min(x, axis=(1, 2), keepdims=True)
    hi = jnp.max(x, axis=(1, 2), keepdims=True) + delta
    return (x - lo) / (hi - lo)


def cos_window(hw) -> np.ndarray:
    """STRCF's window `hann(h) * hann(w)'` (MATLAB `hann`, zero end points), (h, w, 1)."""
    return np.outer(np.hanning(hw[0]), np.hanning(hw[1])).astype(np.float32)[..., None]


def geometry(features: StrcfFeatures) -> Geometry:
    """Block sizes, the common Fourier grid and `T` of a feature set (host-side, static)."""
    block_hw = tuple((features.support // c,) * 2 for c in features.cells)
    odd = [tuple(s + 1 - s % 2 for s in hw) for hw in block_hw]
    output_hw = tuple(max(hw[i] for hw in odd) for i in range(2))
    T = float(max(h * w for h, w in block_hw))
    return Geometry(features.support, block_hw, output_hw, T)


# ---------------------------------------------------------------------------------------------
# Per-sequence constants (traced)


def strcf_label(hw, sigma) -> jnp.ndarray:
    """STRCF's Gaussian label on a block's grid, peak at (0, 0), wrapping circularly.

    Args:
      hw: static (h, w).
      sigma: () standard deviation in cells (may be traced).

    Returns:
      (h, w) float32 `exp(-(dr^2 + dc^2) / (2 sigma^2))` (`tracker.m`, `rg` / `cg`).
    """
    def offsets(n):
        i = np.arange(n)
        return np.where(i <= (n - 1) // 2 + (n % 2 == 0), i, i - n).astype(np.float32)
    d2 = offsets(hw[0])[:, None] ** 2 + offsets(hw[1])[None, :] ** 2
    return jnp.exp(-0.5 * jnp.asarray(d2) / jnp.square(sigma))


def reg_window(hw, box_cells, *, w_min: float, w_max: float) -> jnp.ndarray:
    """STRCF's binary spatial regularisation window.

    `w_max` everywhere except a `box_cells` rectangle around the block's centre cell
    (`floor((n + 1) / 2) + mod(n + 1, 2)` 1-based, i.e. `n // 2` 0-based for even `n`,
    `(n - 1) // 2` for odd), where it is `w_min`.

    Args:
      hw: static (h, w) of the block.
      box_cells: (2,) target (h, w) in window cells, `floor(base_target_sz / ratio)`; traced.

    Returns:
      (h, w) float32.
    """
    def inside(n, s):
        centre = (n + 1) // 2 + (n + 1) % 2 - 1
        lo = centre - jnp.floor(s / 2)
        i = jnp.arange(n, dtype=jnp.float32)
        return (i >= lo) & (i <= lo + s - 1)
    mask = inside(hw[0], box_cells[0])[:, None] & inside(hw[1], box_cells[1])[None, :]
    return jnp.where(mask, w_min, w_max).astype(jnp.float32)


def penalty_schedule(config: StrcfConfig) -> tuple[float, ...]:
    """The ADMM penalties of each iteration: `gamma_0 = init`, `min(step gamma, max)` after."""
    out, gamma = [], config.init_penalty
    for _ in range(config.admm_iterations):
        out.append(gamma)
        gamma = min(config.penalty_step * gamma, config.max_penalty)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Learning and detection


class AdmmState(NamedTuple):
    """ADMM variables of one block, `rfft2` half spectra (h, wf, C).

    Attributes:
      ff: the unconstrained filter (what STRCF keeps and detects with).
      gf: the spatially regularised copy.
      hf: the Lagrange multiplier.
    """
    ff: jnp.ndarray
    gf: jnp.ndarray
    hf: jnp.ndarray


def admm_solve(xf, yf, reg, prev_f, *, mu, T: float, hw, penalties) -> AdmmState:
    """STRCF's ADMM for one block, from `f = g = h = 0` (`tracker.m`, `argmin_g.m`).

    Minimises `E(f)` of the module docstring through the augmented Lagrangian
    `1/(2T) ||r(f)||^2 + 1/2 ||w . g||^2 + mu/2 ||f - f_prev||^2 + <h, f - g> +
    gamma/2 ||f - g||^2`: the f-step solves `(x x^H / T + (gamma + mu) I) f = x conj(y) / T
    - h + gamma g + mu f_prev` per frequency by Sherman-Morrison, the g-step is
    `g = (gamma f + h) / (w^2 + gamma)` per pixel, then `h += gamma (f - g)`. ADMM is not a
    descent method: with the published drop of gamma to 0.1, `E(g)` can rise slightly at the
    second iteration; with a fixed penalty it converges to the minimiser of `E`.

    Args:
      xf: (h, wf, C) windowed training sample, `rfft2` half spectrum.
      yf: (h, wf) label spectrum.
      reg: (h, w) spatial window `w`.
      prev_f: (h, wf, C) previous filter (zeros on the first frame).
      mu: temporal weight (static or traced scalar).
      T: the data term's normaliser (STRCF: pixel count of the largest block).
      hw: static (h, w).
      penalties: static sequence of gamma, one per iteration (`penalty_schedule`).

    Returns:
      `AdmmState` after the last iteration.
    """
    sxx = jnp.sum(jnp.real(xf * jnp.conj(xf)), axis=-1, keepdims=True)
    xy = xf * jnp.conj(yf)[..., None] / T
    w2 = jnp.square(reg)[..., None]
    ff = gf = hf = jnp.zeros_like(xf)
    for gamma in penalties:
        b = xy - hf + gamma * gf + mu * prev_f
        xb = jnp.sum(jnp.conj(xf) * b, axis=-1, keepdims=True)
        ff = (b - xf * xb / (sxx + T * (gamma + mu))) / (gamma + mu)
        g = fourier.irfft2(gamma * ff + hf, hw) / (w2 + gamma)
        gf = fourier.rfft2(g)
        hf = hf + gamma * (ff - gf)
    return AdmmState(ff, gf, hf)


def centred_spectrum(rf, hw) -> jnp.ndarray:
    """A real map's `rfft2` half spectrum as Fourier-series coefficients (`ctjax.ops.cfourier`).

    The result `c` satisfies `Re sum_{full k} c(k) exp(2 pi i (ky n / h + kx m / w)) = r[n, m]`
    at every cell, so blocks of different sizes add as band-limited functions of one
    continuous position. Even sizes split the Nyquist row / column equally between `+N/2`
    and `-N/2` (the real trigonometric interpolant), giving odd full size `(h + 1, w + 1)`.

    Args:
      rf: (..., h, w // 2 + 1) complex half spectrum (`rfft2_map` of the map).
      hw: static (h, w).

    Returns:
      (..., Ho, Wh) centred half spectrum, `Ho = h + 1 - h % 2`, `Wh = w // 2 + 1`.
    """
    h, w = hw
    k = h // 2
    rows = np.arange(-k, k + 1) % h
    row_w = np.ones(2 * k + 1, np.float32)
    col_w = np.ones(w // 2 + 1, np.float32)
    if h % 2 == 0:
        row_w[[0, -1]] = 0.5
    if w % 2 == 0:
        col_w[-1] = 0.5
    weight = row_w[:, None] * col_w[None, :] / (h * w)
    return jnp.take(rf, rows, axis=-2) * weight


def response_spectrum(filters, xf, geo: Geometry) -> jnp.ndarray:
    """The summed response of all blocks as one centred half spectrum per sample.

    Args:
      filters: per block, (h, wf, C) filter spectra.
      xf: per block, (N, h, wf, C) windowed sample spectra.

    Returns:
      (N, Ho, Wh) on `geo.output_hw` (response `sum_d conj(f_d) x_d`, `tracker.m`).
    """
    total = 0.0
    for f, x, hw in zip(filters, xf, geo.block_hw):
        r = jnp.sum(jnp.conj(f) * x, axis=-1)
        total = total + cfourier.pad_to(centred_spectrum(r, hw), geo.output_hw)
    return total


def train(config: StrcfConfig, geo: Geometry, xf, yf, reg, prev, mu) -> tuple:
    """New filters of every block from one training sample (`admm_solve` per block)."""
    return tuple(admm_solve(x, y, r, p, mu=mu, T=geo.T, hw=hw,
                            penalties=penalty_schedule(config)).ff
                 for x, y, r, p, hw in zip(xf, yf, reg, prev, geo.block_hw))


def _blocks(config: StrcfConfig, features: StrcfFeatures, params, frame: Frame, pos, scales,
            is_color) -> tuple:
    """Feature blocks of the samples at `pos` and each scale, (N, h, w, C) per block.

    The crops are stacked from a Python loop over the (static) scales, not vmapped: on XLA
    CPU the vmapped gather made the fHOG that follows it about 3x slower (measured).
    """
    side = features.input_size
    patches = jnp.stack([sample_window(frame, pos, side * scales[i], out=side,
                                       antialias=config.antialias)
                         for i in range(scales.shape[0])])
    return features(params, patches, is_color)


def _windowed(geo: Geometry, blocks) -> tuple:
    """Cosine-windowed `rfft2` spectra of blocks, (..., h, wf, C)."""
    return tuple(fourier.rfft2(b * cos_window(hw)) for b, hw in zip(blocks, geo.block_hw))


def _recentred(features: StrcfFeatures, geo: Geometry, blocks, disp_px) -> tuple:
    """Blocks of one sample translated by `-disp_px` sample pixels (Fourier phase shift), so
    a target seen at `+disp_px` from the sample centre sits at the centre (ECO's
    `shift_sample`)."""
    return tuple(fourier.irfft2(fourier.phase_shift(fourier.rfft2(b), -disp_px / cell, hw), hw)
                 for b, cell, hw in zip(blocks, features.cells, geo.block_hw))


def _is_color(frame: Frame) -> jnp.ndarray:
    """STRCF's test: a frame whose red and green planes are equal is grey."""
    hc, wc = frame.pixels.shape[:2]
    valid = (jnp.arange(hc)[:, None] < frame.hw[0]) & (jnp.arange(wc)[None, :] < frame.hw[1])
    return jnp.any((frame.pixels[..., 0] != frame.pixels[..., 1]) & valid)


def init(config: StrcfConfig, features: StrcfFeatures, params, frame: Frame, box) -> StrcfState:
    """`init_fn`: labels, windows and the first filters (mu = 0) around `box` (OTB x,y,w,h)."""
    geo = geometry(features)
    pos, size = xywh_to_center_size(jnp.asarray(box, jnp.float32))
    scale = config.search_area_scale * jnp.sqrt(size[0] * size[1]) / geo.support
    base_size = size / scale
    is_color = _is_color(frame)
    ratios = (features.cell, config.cnn_reg_ratio)
    yf, reg = [], []
    for hw, cell, ratio in zip(geo.block_hw, features.cells, ratios):
        sigma = jnp.sqrt(jnp.prod(jnp.floor(base_size / cell))) * config.output_sigma_factor
        yf.append(fourier.rfft2_map(strcf_label(hw, jnp.maximum(sigma, 1e-3))))
        reg.append(reg_window(hw, jnp.floor(base_size / ratio), w_min=config.reg_window_min,
                              w_max=config.reg_window_max))
    blocks = _blocks(config, features, params, frame, pos, scale[None], is_color)
    xf = tuple(x[0] for x in _windowed(geo, blocks))
    filters = train(config, geo, xf, yf, reg, tuple(jnp.zeros_like(x) for x in xf), 0.0)
    frame_hw = frame.hw.astype(jnp.float32)
    scale_range = jnp.stack([5.0 / geo.support, jnp.min(frame_hw / base_size)])
    return StrcfState(pos=pos, scale=scale, base_size=base_size, scale_range=scale_range,
                      is_color=is_color, filters=filters, yf=tuple(yf), reg=tuple(reg))


def step(config: StrcfConfig, features: StrcfFeatures, params, state: StrcfState,
         frame: Frame):
    """`step_fn`: detect over scales, move, retrain on a sample at the new position and scale
    (or on the recentred detection sample, `reuse_detection_sample`).

    Returns:
      `(state, box, score)`: box (4,) float32 OTB x,y,w,h; score the refined peak.
    """
    geo = geometry(features)
    half = config.number_of_scales // 2
    factors = config.scale_step ** jnp.arange(-half, half + 1, dtype=jnp.float32)
    scales = state.scale * factors
    blocks = _blocks(config, features, params, frame, state.pos, scales, state.is_color)
    xtf = _windowed(geo, blocks)
    best = peak.newton_peak(response_spectrum(state.filters, xtf, geo),
                            iterations=config.newton_iterations)
    disp_px = best.disp * (geo.support / jnp.asarray(geo.output_hw, jnp.float32))
    pos = state.pos + disp_px * scales[best.scale]
    if config.clamp_position:
        pos = jnp.clip(pos, 0.0, frame.hw.astype(jnp.float32) - 1)
    scale = jnp.clip(scales[best.scale], state.scale_range[0], state.scale_range[1])
    if config.reuse_detection_sample:
        xlf = _windowed(geo, _recentred(features, geo, tuple(b[best.scale] for b in blocks),
                                        disp_px))
    else:
        blocks = _blocks(config, features, params, frame, pos, scale[None], state.is_color)
        xlf = tuple(x[0] for x in _windowed(geo, blocks))
    filters = train(config, geo, xlf, state.yf, state.reg, state.filters, config.temporal_reg)
    new = state._replace(pos=pos, scale=scale, filters=filters)
    return new, center_size_to_xywh(pos, state.base_size * scale), best.score


def make_tracker(config: StrcfConfig, features: StrcfFeatures) -> Tracker:
    """Binds `init` and `step` to a config and a `StrcfFeatures`.

    Returns:
      A `Tracker`; jit `init_fn` and `step_fn` once and reuse them for every sequence
      (`ctjax.trackers.run`): all shapes depend on the config and the features only.
    """
    geometry(features)  # validates the sizes on the host
    return Tracker(init_fn=functools.partial(init, config, features),
                   step_fn=functools.partial(step, config, features))

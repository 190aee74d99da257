"""A multi-layer deep correlation-filter tracker as pure `(init_fn, step_fn)` functions.

The design follows the CF trackers the paper accelerates (ECO, DeepSTRCF, DCFNet) in the
parts that matter for features: a square search window of `search_area_scale` x the target's
geometric-mean size is resampled to a static `patch_size`; each feature layer gets its own
single-sample ridge-regression DCF (`ctjax.ops.dcf`, primal numerator/denominator form, so the
model is updated by linear interpolation, PAPER.md §5.1, DCFNet); layer responses are fused on
a common grid of pixel displacements by evaluating each layer's band-limited (Fourier-series)
response there, as ECO does, so layers of different strides combine exactly; a few scales are
searched in one batched forward pass with a scale penalty (fDeepSTRCF: 3 scales, step 1.02);
the peak is refined to sub-pixel precision; the training sample of the new frame is the best
scale's search features shifted in the Fourier domain onto the new position (ECO's
`shift_sample`), so each frame costs one batched feature extraction.

Conventions: boxes are OTB x,y,w,h with 1-based top-left; internally centres are 0-based pixel
coordinates (y, x) with cy = y - 1 + (h - 1)/2, and sizes are (h, w) in frame pixels; features
are NHWC float32; Fourier-domain arrays end in `f`. All shapes are static given the config and
the extractor, so `step_fn` compiles once per configuration and canvas size.

Layout: `make_tracker` only binds the module-level functions `init` and `step`, which compose
`extract` (crop + features), `layer_constants`, `learn`, `locate`, `move` and `update`; every
numerical piece is a tested `ctjax.ops` / `ctjax.boxes` function (`crop.sample_window`,
`fourier.sample_periodic`, `fourier.phase_shift`, `fourier.label_sigma`,
`dcf.grid_peak_offset`, `boxes.xywh_to_center_size`, ...), so another tracker or an online
adaptation loop can reuse any of them.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ctjax import boxes
from ctjax.ops import crop, dcf, fourier
from ctjax.ops.crop import Frame
from ctjax.trackers import Tracker

__all__ = ["LayerConstants", "SearchGrid", "Tracker", "TrackerConfig", "TrackerState", "extract",
           "init", "layer_constants", "learn", "locate", "make_tracker", "move", "search_grid",
           "step", "update"]


@dataclasses.dataclass(frozen=True)
class TrackerConfig:
    """Static tracker settings; the defaults were tuned on the train split only.

    Attributes:
      patch_size: side of the resampled search window in pixels.
      search_area_scale: window side / sqrt(target w * h) (ECO OTB: 4.5).
      num_scales, scale_step: the scale search (odd count, geometric steps).
      scale_penalty: factor applied per scale step away from 1 to the fused response.
      scale_lr: how far the size follows the best scale each frame (0 = fixed size).
      output_sigma_factor: label sigma / target size (ECO: 1/12, DCFNet: 0.1).
      train_window_power: the training sample is windowed by hann**power (search samples by
        hann): a power > 1 narrows the training window around the target, so the filter
        relies less on the background it saw at training time (a cheap stand-in for ECO's
        spatial regularisation) [RECON, tuned on the train split].
      lam: ridge regularisation (with the 1/(MND) normalisation of `ctjax.ops.dcf`).
      learning_rate: filter interpolation rate per frame.
      grid_step: spacing of the fused response grid, in patch pixels.
      antialias: taps per axis when downsampling the window.
      canvas_hw: static frame canvas (larger frames are rejected with a clear error).
      min_size: smallest target side in frame pixels.
    """
    patch_size: int = 208
    search_area_scale: float = 4.5
    num_scales: int = 3
    scale_step: float = 1.02
    scale_penalty: float = 0.995
    scale_lr: float = 0.6
    output_sigma_factor: float = 1.0 / 12.0
    train_window_power: float = 2.0
    lam: float = 1e-4
    learning_rate: float = 0.006
    grid_step: float = 2.0
    antialias: int = 1
    canvas_hw: tuple[int, int] = (720, 1280)
    min_size: float = 6.0

    def __post_init__(self):
        if self.num_scales < 1 or self.num_scales % 2 == 0:
            raise ValueError(f"num_scales must be odd and positive, got {self.num_scales}")
        if self.patch_size < 32:
            raise ValueError(f"patch_size {self.patch_size} is too small for the feature strides")


class TrackerState(NamedTuple):
    """Everything the tracker carries from frame to frame.

    Attributes:
      center: (2,) float32 target centre (y, x), 0-based frame pixels.
      size: (2,) float32 target (h, w) in frame pixels.
      terms: one `dcf.FilterTerms` per feature layer.
    """
    center: jnp.ndarray
    size: jnp.ndarray
    terms: tuple


class SearchGrid(NamedTuple):
    """Constants of the search, built once per config by `search_grid` (outside jit).

    Attributes:
      scale_factors: (S,) float32 window scale of each searched scale.
      penalties: (S,) float32 factor on each scale's fused response.
      grid: (G,) float32 displacements (patch pixels) at which responses are fused.
    """
    scale_factors: jnp.ndarray
    penalties: jnp.ndarray
    grid: jnp.ndarray


class LayerConstants(NamedTuple):
    """Per-layer constants that depend only on the layer's static map size.

    Attributes:
      hann: (1, h, w, 1) search window (MATLAB `hanning`).
      yf: (h, w // 2 + 1) spectrum of the Gaussian label (peak at (0, 0)).
      hw: static (h, w).
      train_window: (1, h, w, 1) `hann ** train_window_power`.
    """
    hann: jnp.ndarray
    yf: jnp.ndarray
    hw: tuple
    train_window: jnp.ndarray


def search_grid(config: TrackerConfig) -> SearchGrid:
    """The scale factors, scale penalties and fusion grid of a config."""
    half = config.num_scales // 2
    scale_factors = config.scale_step ** jnp.arange(-half, half + 1, dtype=jnp.float32)
    penalties = config.scale_penalty ** jnp.abs(jnp.arange(-half, half + 1, dtype=jnp.float32))
    n_grid = int(config.patch_size / config.grid_step) // 2 * 2 + 1
    grid = (jnp.arange(n_grid, dtype=jnp.float32) - n_grid // 2) * config.grid_step
    return SearchGrid(scale_factors=scale_factors, penalties=penalties, grid=grid)


def layer_constants(config: TrackerConfig, strides, feats) -> tuple[LayerConstants, ...]:
    """Windows and label spectra of each layer, from the maps' static shapes.

    Args:
      config: static settings (label sigma via `ctjax.ops.fourier.label_sigma`).
      strides: patch pixels per cell of each layer.
      feats: the layers' (N, h, w, c) maps (only their shapes are used).
    """
    out = []
    for f, stride in zip(feats, strides):
        hw = f.shape[1:3]
        sigma = fourier.label_sigma(config.patch_size, config.search_area_scale, stride,
                                    factor=config.output_sigma_factor)
        label = fourier.gaussian_label(hw, sigma)
        yf = fourier.rfft2_map(label)
        hann = fourier.hann_window(hw)[None, :, :, None]
        out.append(LayerConstants(hann, yf, hw, hann ** config.train_window_power))
    return tuple(out)


def extract(config: TrackerConfig, extractor, params, frame: Frame, center, windows):
    """Features of square windows around `center`, one batch entry per window side.

    Args:
      config: static settings (patch size, antialiasing).
      extractor: a `ctjax.features` extractor, called as `extractor(params, patches)`.
      params: the extractor's params pytree.
      frame: the canvas frame.
      center: (2,) float32 window centre (y, x).
      windows: (S,) float32 window sides in frame pixels.

    Returns:
      Tuple of (S, h, w, c) float32 maps, one per layer.
    """
    patches = jax.vmap(lambda w: crop.sample_window(frame, center, w, out=config.patch_size,
                                                    antialias=config.antialias))(windows)
    return extractor(params, patches)


def learn(f, const: LayerConstants) -> dcf.FilterTerms:
    """Filter terms of one layer learned on a centred (1, h, w, c) sample."""
    xf = fourier.rfft2(f * const.train_window)[0]
    return dcf.filter_terms(xf, const.yf, hw=const.hw)


def locate(config: TrackerConfig, grid: SearchGrid, extractor, feats, terms, consts):
    """Fuses the layers' responses over scales and finds the best scale and displacement.

    Each layer's response is evaluated on the common displacement grid with
    `fourier.sample_periodic` (band-limited, so layers of different strides add exactly),
    weighted, summed, penalised per scale; the argmax is refined with
    `dcf.grid_peak_offset`.

    Returns:
      `(s, shift, score)`: the best scale index, (2,) float32 displacement (dy, dx) in patch
      pixels, and the fused response at the integer peak.
    """
    fused = 0.0
    for f, t, c, stride, layer in zip(feats, terms, consts, extractor.cell_strides,
                                      extractor.layers):
        zf = fourier.rfft2(f * c.hann)
        r = dcf.primal_response(t, zf, lam=config.lam, hw=c.hw)
        fused = fused + layer.weight * fourier.sample_periodic(r, grid.grid / stride,
                                                               grid.grid / stride)
    fused = fused * grid.penalties[:, None, None]
    flat = jnp.argmax(fused)
    s, i, j = jnp.unravel_index(flat, fused.shape)
    dy, dx = dcf.grid_peak_offset(fused[s], i, j)
    shift = jnp.stack([grid.grid[i] + dy * config.grid_step, grid.grid[j] + dx * config.grid_step])
    return s, shift, fused[s, i, j]


def move(config: TrackerConfig, grid: SearchGrid, state: TrackerState, frame: Frame, s, shift,
         window):
    """The new centre and size from the best scale `s` and displacement `shift` (patch px),
    kept inside the frame and above `min_size`."""
    scale = grid.scale_factors[s]
    frame_hw = frame.hw.astype(jnp.float32)
    center = state.center + shift * (window * scale / config.patch_size)
    center = jnp.clip(center, 0.0, frame_hw - 1)
    size = state.size * (1 - config.scale_lr + config.scale_lr * scale)
    size = jnp.clip(size, config.min_size, frame_hw)
    return center, size


def update(config: TrackerConfig, extractor, feats, s, shift, terms, consts) -> tuple:
    """Interpolates each layer's filter towards the one learned on this frame.

    The training sample is the best scale's search features shifted in the Fourier domain
    onto the new position (`fourier.phase_shift`, ECO's `shift_sample`), then windowed by
    `train_window`, so each frame costs one batched feature extraction.
    """
    new_terms = []
    for f, t, c, stride in zip(feats, terms, consts, extractor.cell_strides):
        centred = fourier.irfft2(fourier.phase_shift(fourier.rfft2(f[s]), -shift / stride, c.hw),
                                 c.hw)
        xf = fourier.rfft2(centred * c.train_window[0])
        new = dcf.filter_terms(xf, c.yf, hw=c.hw)
        new_terms.append(dcf.linear_update(t, new, rate=config.learning_rate))
    return tuple(new_terms)


def init(config: TrackerConfig, extractor, params, frame: Frame, box) -> TrackerState:
    """`init_fn`: learns each layer's filter on the window around `box` (OTB x,y,w,h)."""
    center, size = boxes.xywh_to_center_size(jnp.asarray(box, jnp.float32))
    window = config.search_area_scale * jnp.sqrt(size[0] * size[1])
    feats = extract(config, extractor, params, frame, center, window[None])
    consts = layer_constants(config, extractor.cell_strides, feats)
    terms = tuple(learn(f, c) for f, c in zip(feats, consts))
    return TrackerState(center=center, size=size, terms=terms)


def step(config: TrackerConfig, extractor, grid: SearchGrid, params, state: TrackerState,
         frame: Frame):
    """`step_fn`: locate the target over scales, move, update the filters.

    Returns:
      `(state, box, score)`, `box` (4,) float32 OTB x,y,w,h (1-based).
    """
    window = config.search_area_scale * jnp.sqrt(state.size[0] * state.size[1])
    feats = extract(config, extractor, params, frame, state.center, window * grid.scale_factors)
    consts = layer_constants(config, extractor.cell_strides, feats)
    s, shift, score = locate(config, grid, extractor, feats, state.terms, consts)
    center, size = move(config, grid, state, frame, s, shift, window)
    terms = update(config, extractor, feats, s, shift, state.terms, consts)
    new_state = TrackerState(center=center, size=size, terms=terms)
    return new_state, boxes.center_size_to_xywh(center, size), score


def make_tracker(config: TrackerConfig, extractor) -> Tracker:
    """Binds `init` and `step` to a config and a feature extractor.

    Args:
      config: static settings.
      extractor: a `ctjax.features` extractor (static, called as `extractor(params, patches)`
        -> tuple of (N, h, w, c) maps; `layers` with weights, `cell_strides`).

    Returns:
      A `Tracker`; jit `init_fn` and `step_fn` once and reuse them for every sequence.
    """
    grid = search_grid(config)

    def init_fn(params, frame: Frame, box) -> TrackerState:
        return init(config, extractor, params, frame, box)

    def step_fn(params, state: TrackerState, frame: Frame):
        return step(config, extractor, grid, params, state, frame)

    return Tracker(init_fn=init_fn, step_fn=step_fn)

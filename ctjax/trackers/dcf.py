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
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ctjax.ops import dcf, fourier
from ctjax.ops.crop import Frame, sample_window


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


class Tracker(NamedTuple):
    """`init_fn(params, frame, box) -> state`; `step_fn(params, state, frame) -> (state, box, score)`."""
    init_fn: Any
    step_fn: Any


def box_to_center_size(box):
    """OTB x,y,w,h (1-based) -> (centre (y, x) 0-based, size (h, w))."""
    box = jnp.asarray(box, jnp.float32)
    size = jnp.stack([box[3], box[2]])
    center = jnp.stack([box[1] - 1 + (box[3] - 1) / 2, box[0] - 1 + (box[2] - 1) / 2])
    return center, size


def center_size_to_box(center, size):
    """Inverse of `box_to_center_size`."""
    return jnp.stack([center[1] + 1 - (size[1] - 1) / 2, center[0] + 1 - (size[0] - 1) / 2,
                      size[1], size[0]])


def _sample_periodic(r, u, v):
    """Evaluates periodic maps r (S, H, W) at fractional cells (u[g], v[h]) -> (S, G, G').

    Band-limited (trigonometric) interpolation: the map is read as the Fourier series of its
    samples, so layers of different strides are compared at the same physical displacement.
    """
    h, w = r.shape[-2:]
    rf = jnp.fft.fft2(r)
    ky = jnp.fft.fftfreq(h) * h
    kx = jnp.fft.fftfreq(w) * w
    ey = jnp.exp(2j * jnp.pi * u[:, None] * ky[None, :] / h)
    ex = jnp.exp(2j * jnp.pi * v[:, None] * kx[None, :] / w)
    return jnp.real(jnp.einsum("gk,skl,hl->sgh", ey, rf, ex)) / (h * w)


def _refine(grid, i, j):
    """Parabola fit around the integer peak (i, j) of a 2-D grid; offsets in [-0.5, 0.5]."""
    n, m = grid.shape

    def offset(left, mid, right):
        curvature = left - 2 * mid + right
        step = jnp.where(curvature < 0, 0.5 * (left - right) / jnp.where(curvature < 0, curvature, -1.0), 0.0)
        return jnp.clip(step, -0.5, 0.5)

    dy = offset(grid[jnp.maximum(i - 1, 0), j], grid[i, j], grid[jnp.minimum(i + 1, n - 1), j])
    dx = offset(grid[i, jnp.maximum(j - 1, 0)], grid[i, j], grid[i, jnp.minimum(j + 1, m - 1)])
    return dy, dx


def _shift_features(xf, shift_cells, hw):
    """Circularly shifts spectra xf (H, Wf, C) by shift_cells (dy, dx) via a phase ramp."""
    h, w = hw
    ky = jnp.fft.fftfreq(h) * h
    kx = jnp.fft.rfftfreq(w) * w
    phase = ky[:, None] * shift_cells[0] / h + kx[None, :] * shift_cells[1] / w
    return xf * jnp.exp(-2j * jnp.pi * phase)[..., None].astype(xf.dtype)


def make_tracker(config: TrackerConfig, extractor) -> Tracker:
    """Builds the pure init/step functions for a config and a feature extractor.

    Args:
      config: static settings.
      extractor: a `ctjax.features.cnn` extractor (static, called as
        `extractor(params, patches)` -> tuple of (N, h, w, c) maps).

    Returns:
      A `Tracker`; jit `init_fn` and `step_fn` once and reuse them for every sequence.
    """
    p = config.patch_size
    strides = extractor.cell_strides
    weights = tuple(layer.weight for layer in extractor.layers)
    half = config.num_scales // 2
    scale_factors = config.scale_step ** jnp.arange(-half, half + 1, dtype=jnp.float32)
    penalties = config.scale_penalty ** jnp.abs(jnp.arange(-half, half + 1, dtype=jnp.float32))
    n_grid = int(p / config.grid_step) // 2 * 2 + 1
    grid = (jnp.arange(n_grid, dtype=jnp.float32) - n_grid // 2) * config.grid_step

    def windows_and_labels(feats):
        out = []
        for f, stride in zip(feats, strides):
            hw = f.shape[1:3]
            sigma = config.output_sigma_factor * (p / config.search_area_scale) / stride
            label = fourier.gaussian_label(hw, sigma)
            yf = fourier.rfft2_map(label)
            hann = fourier.hann_window(hw)[None, :, :, None]
            out.append((hann, yf, hw, hann ** config.train_window_power))
        return out

    def extract(params, frame, center, windows):
        patches = jax.vmap(lambda w: sample_window(frame, center, w, out=p,
                                                   antialias=config.antialias))(windows)
        return extractor(params, patches)

    def init_fn(params, frame: Frame, box) -> TrackerState:
        center, size = box_to_center_size(box)
        window = config.search_area_scale * jnp.sqrt(size[0] * size[1])
        feats = extract(params, frame, center, window[None])
        terms = []
        for f, (_, yf, hw, train_window) in zip(feats, windows_and_labels(feats)):
            xf = fourier.rfft2(f * train_window)[0]
            terms.append(dcf.filter_terms(xf, yf, hw=hw))
        return TrackerState(center=center, size=size, terms=tuple(terms))

    def step_fn(params, state: TrackerState, frame: Frame):
        window = config.search_area_scale * jnp.sqrt(state.size[0] * state.size[1])
        feats = extract(params, frame, state.center, window * scale_factors)
        consts = windows_and_labels(feats)
        fused = 0.0
        for f, terms, (hann, _, hw, _), stride, weight in zip(
                feats, state.terms, consts, strides, weights):
            zf = fourier.rfft2(f * hann)
            r = dcf.primal_response(terms, zf, lam=config.lam, hw=hw)
            fused = fused + weight * _sample_periodic(r, grid / stride, grid / stride)
        fused = fused * penalties[:, None, None]
        flat = jnp.argmax(fused)
        s, i, j = jnp.unravel_index(flat, fused.shape)
        dy, dx = _refine(fused[s], i, j)
        shift_patch = jnp.stack([grid[i] + dy * config.grid_step, grid[j] + dx * config.grid_step])
        scale = scale_factors[s]
        frame_hw = frame.hw.astype(jnp.float32)
        center = state.center + shift_patch * (window * scale / p)
        center = jnp.clip(center, 0.0, frame_hw - 1)
        size = state.size * (1 - config.scale_lr + config.scale_lr * scale)
        size = jnp.clip(size, config.min_size, frame_hw)
        new_terms = []
        for f, terms, (_, yf, hw, train_window), stride in zip(
                feats, state.terms, consts, strides):
            # Re-centre the best scale's features on the new position, then window them.
            centred = fourier.irfft2(_shift_features(fourier.rfft2(f[s]), -shift_patch / stride, hw), hw)
            xf = fourier.rfft2(centred * train_window[0])
            new = dcf.filter_terms(xf, yf, hw=hw)
            new_terms.append(dcf.linear_update(terms, new, rate=config.learning_rate))
        new_state = TrackerState(center=center, size=size, terms=tuple(new_terms))
        return new_state, center_size_to_box(center, size), fused[s, i, j]

    return Tracker(init_fn=init_fn, step_fn=step_fn)

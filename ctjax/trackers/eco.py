"""ECO (Danelljan et al., CVPR 2017) as pure `init_fn` / `step_fn` over a NamedTuple state.

The paper's fECO is this tracker, unmodified, with the distilled student as its CNN
(PAPER.md §8, ECO.md). Per frame: crop the sample(s), extract the feature blocks
(`ctjax.features.blocks`), project them with the factorized-convolution matrices, window,
take their centred half spectra and interpolate them to the continuous domain
(`ctjax.ops.cfourier`), sum the blocks' filter responses on the common Fourier grid, find
the continuous maximum by Newton's method (`ctjax.ops.peak`), estimate the scale (the fDSST
scale filter, `ctjax.ops.scale_filter`, or a multi-scale search), put the detection sample,
shifted onto the new position, into the generative sample space (`ctjax.ops.sample_space`)
and, every `train_gap` frames, run a few warm-started conjugate-gradient iterations on the
filter (`ctjax.trackers.eco_filter`). Frame 1 learns the filter and the projection jointly
by Gauss-Newton.

Compile once: the sample side (`FeatureSet.support`, ECO's `img_support_sz`) is static, so
ECO's clamp of the sample area to [min, max] becomes part of the scale factor; the
regularisation kernel is zero-padded to a static size; the sample memory has a fixed number
of slots; per-sequence values (label, regulariser, colour or grey) are traced arrays in the
state. `step_fn` compiles once per configuration and canvas size.

Conventions: boxes are OTB x,y,w,h, 1-based; positions are 0-based (y, x) pixel centres;
sizes (h, w) in frame pixels; spectra follow `ctjax.ops.cfourier` (suffix `f`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ctjax.boxes import center_size_to_xywh, xywh_to_center_size
from ctjax.features import fhog
from ctjax.ops import cfourier, peak, sample_space, scale_filter
from ctjax.ops.cg import cg_init
from ctjax.ops.crop import Frame, sample_window
from ctjax.trackers import eco_filter


@dataclasses.dataclass(frozen=True)
class EcoConfig:
    """ECO's settings (names follow the MATLAB params; defaults: fECO's `testing_ECO.m`).

    Attributes:
      search_area_scale: sample side / sqrt(target area).
      output_sigma_factor: label sigma / sqrt(target area).
      learning_rate: sample-space learning rate (weight of each new sample).
      num_samples: slots of the sample memory.
      train_gap: frames without training between sparse updates.
      skip_after_frame: train every frame before this frame number.
      newton_iterations: Newton iterations of the peak search.
      interp_a: the bicubic kernel's parameter.
      reg_window_min, reg_window_edge, reg_window_power, reg_sparsity_threshold: the
        spatial regularisation window (ECO `get_reg_filter.m`).
      reg_kernel_size: static (odd) side the sparse regularisation kernel is padded to.
      filter: the CG / Gauss-Newton settings.
      use_scale_filter: fDSST scale filter (translation searched at one scale) or a
        multi-scale search with `number_of_scales` x `scale_step`.
      scale: the fDSST scale filter's settings.
      scale_model_side: static side of the scale-filter patches (see `scale_samples`).
      canvas_hw: static frame canvas.
    """
    search_area_scale: float = 4.5
    output_sigma_factor: float = 1.0 / 12.0
    learning_rate: float = 0.011
    num_samples: int = 50
    train_gap: int = 5
    skip_after_frame: int = 1
    newton_iterations: int = 5
    interp_a: float = -0.75
    reg_window_min: float = 1e-4
    reg_window_edge: float = 1e-2
    reg_window_power: float = 2.0
    reg_sparsity_threshold: float = 0.05
    reg_kernel_size: int = 7
    filter: eco_filter.FilterSettings = eco_filter.FilterSettings()
    use_scale_filter: bool = True
    number_of_scales: int = 5
    scale_step: float = 1.02
    scale: scale_filter.ScaleFilterConfig = scale_filter.ScaleFilterConfig()
    scale_model_side: int = 24
    canvas_hw: tuple[int, int] = (720, 1280)


class EcoState(NamedTuple):
    """What ECO carries between frames.

    Attributes:
      pos: (2,) target centre (y, x), 0-based frame pixels.
      scale: () current scale factor (frame pixels per sample pixel).
      base_size: (2,) target (h, w) in sample pixels (ECO's `base_target_sz`).
      scale_range: (2,) min and max scale factor.
      is_color: () bool.
      projection: tuple of (C_d, Cp_d) projection matrices.
      hf: tuple of (Ho_d, Wh_d, Cp_d) filter spectra.
      cg: the warm-start state of the conjugate gradient.
      memory: the sample space (`ctjax.ops.sample_space`), blocks stored channels first:
        `samplesf[d]` is `(num_samples, Cp_d, Ho_d, Wh_d)`.
      sample_energy: tuple of (Ho_d, Wh_d, Cp_d) running mean |x|^2 (preconditioner).
      yf: tuple of (Ho_d, Wh_d) label spectra.
      reg, reg_energy: per block, the (K, K) regularisation kernel and its energy.
      scale_filter: the fDSST state (None-like zeros when unused).
      since_train: () int32 frames since the last filter update.
      frame: () int32 frame number (1 = the initial frame).
    """
    pos: jnp.ndarray
    scale: jnp.ndarray
    base_size: jnp.ndarray
    scale_range: jnp.ndarray
    is_color: jnp.ndarray
    projection: tuple
    hf: tuple
    cg: Any
    memory: Any
    sample_energy: tuple
    yf: tuple
    reg: tuple
    reg_energy: tuple
    scale_filter: Any
    since_train: jnp.ndarray
    frame: jnp.ndarray


class Tracker(NamedTuple):
    """`init_fn(params, frame, box) -> state`; `step_fn(params, state, frame) -> (state, box, score)`."""
    init_fn: Any
    step_fn: Any


class Geometry(NamedTuple):
    """Static sizes derived from the feature set (ECO's `filter_sz`, `output_sz`)."""
    support: int
    feature_hw: tuple
    filter_hw: tuple
    output_hw: tuple


def geometry(features) -> Geometry:
    """The block and output sizes of a feature set (host-side, static)."""
    feature_hw = tuple((features.support // cell,) * 2 for _, cell, _, _ in features.blocks)
    filter_hw = tuple(tuple(s + 1 - s % 2 for s in hw) for hw in feature_hw)
    output_hw = tuple(max(hw[i] for hw in filter_hw) for i in range(2))
    return Geometry(features.support, feature_hw, filter_hw, output_hw)


def cos_window(hw) -> jnp.ndarray:
    """ECO's window: `hann(n + 2)` with its zero ends removed, outer product, (h, w, 1)."""
    def hann(n):
        k = jnp.arange(1, n + 1, dtype=jnp.float32)
        return 0.5 - 0.5 * jnp.cos(2 * jnp.pi * k / (n + 1))
    return (hann(hw[0])[:, None] * hann(hw[1])[None, :])[..., None]


def initial_scale(config: EcoConfig, support: int, size) -> jnp.ndarray:
    """Frame pixels per sample pixel, so the square search area maps onto the support."""
    return config.search_area_scale * jnp.sqrt(size[0] * size[1]) / support


def samples_at(features, frame: Frame, pos, scales) -> dict:
    """Crops one sample per scale for every input size the feature set needs.

    Args:
      pos: (2,) centre; scales: (N,) frame pixels per sample pixel.

    Returns:
      {side: (N, side, side, 3) float32}.
    """
    out = {}
    for side in features.input_sizes:
        out[side] = jax.vmap(lambda s: sample_window(frame, pos, side * s, out=side))(scales)
    return out


def spectra(features, geo: Geometry, params, samples, is_color, projection, interp):
    """Projected, windowed, interpolated half spectra of every block, (N, Ho, Wh, Cp)."""
    blocks = features(params, samples, is_color)
    out = []
    for x, P, hw, (iy, ix) in zip(blocks, projection, geo.feature_hw, interp):
        x = jnp.einsum("nhwc,cd->nhwd", x, P)
        xf = cfourier.cfft2(x * cos_window(hw))
        out.append(cfourier.interpolate(xf, iy, ix))
    return tuple(out)


def response(hf, xf, output_hw) -> jnp.ndarray:
    """Fourier coefficients of the summed response on the output grid, (N, Ho, Wh)."""
    total = 0.0
    for h, x in zip(hf, xf):
        total = total + cfourier.pad_to(jnp.sum(h * x, axis=-1), output_hw)
    return total


def newton_locate(config: EcoConfig, geo: Geometry, scores_f):
    """Best scale, displacement in sample pixels (y, x) and score of a batch of responses."""
    best = peak.newton_peak(scores_f, iterations=config.newton_iterations)
    disp_px = best.disp * (geo.support / jnp.asarray(geo.output_hw, jnp.float32))
    return best.scale, disp_px, best.score


def make_tracker(config: EcoConfig, features) -> Tracker:
    """Builds ECO's pure init/step functions for a config and a `FeatureSet`.

    Returns:
      A `Tracker`; jit `init_fn` and `step_fn` once and reuse them for every sequence.
    """
    geo = geometry(features)
    interp = tuple(cfourier.interp_fourier(hw, a=config.interp_a) for hw in geo.filter_hw)
    compressed = tuple(d for _, _, _, d in features.blocks)
    if config.use_scale_filter:
        det_scales = jnp.ones((1,), jnp.float32)
    else:
        half = config.number_of_scales // 2
        det_scales = config.scale_step ** jnp.arange(-half, half + 1, dtype=jnp.float32)
    n_blocks = len(features.blocks)
    min_weight = config.learning_rate * (1 - config.learning_rate) ** (2 * config.num_samples)

    def scale_features(frame, pos, base_size, scale):
        return scale_samples(config, frame, pos, base_size, scale)

    def init_fn(params, frame: Frame, box) -> EcoState:
        pos, size = xywh_to_center_size(box)
        scale = initial_scale(config, geo.support, size)
        base_size = size / scale
        is_color = _is_color(frame, pos, size)
        samples = samples_at(features, frame, pos, scale[None])
        blocks = features(params, samples, is_color)
        projection = tuple(eco_filter.pca_projection(x[0], d) for x, d in zip(blocks, compressed))
        xlf = tuple(cfourier.interpolate(cfourier.cfft2(x * cos_window(hw)), iy, ix)[0]
                    for x, hw, (iy, ix) in zip(blocks, geo.feature_hw, interp))
        yf = labels(config, geo, base_size)
        rf = regulariser(config, geo, base_size)
        reg, reg_energy = (rf.kernel,) * n_blocks, (rf.energy,) * n_blocks
        proj_xf = tuple(jnp.einsum("hwc,cd->hwd", x, P) for x, P in zip(xlf, projection))
        energy = tuple(jnp.real(x * jnp.conj(x)) for x in proj_xf)
        hf, projection = eco_filter.train_joint(xlf, yf, _cross(reg), projection, energy,
                                                reg_energy, settings=config.filter)
        proj_xf = tuple(jnp.einsum("hwc,cd->hwd", x, P) for x, P in zip(xlf, projection))
        first = _channels_first(proj_xf)
        memory = sample_space.init_sample_space(tuple(x.shape for x in first), config.num_samples)
        memory, _ = sample_space.update_sample_space(
            memory, first, learning_rate=config.learning_rate, min_sample_weight=min_weight,
            channels_first=True)
        frame_hw = frame.hw.astype(jnp.float32)
        scale_range = scale_limits(config, geo, base_size, frame_hw)
        sf_state = (scale_filter.init_scale_filter(
            scale_features(frame, pos, base_size, scale), config.scale)
            if config.use_scale_filter else ())
        return EcoState(pos=pos, scale=scale, base_size=base_size, scale_range=scale_range,
                        is_color=is_color, projection=projection, hf=hf,
                        cg=cg_init(hf), memory=memory, sample_energy=energy,
                        yf=yf, reg=reg, reg_energy=reg_energy, scale_filter=sf_state,
                        since_train=jnp.int32(0), frame=jnp.int32(1))

    def step_fn(params, state: EcoState, frame: Frame):
        scales = state.scale * det_scales
        samples = samples_at(features, frame, state.pos, scales)
        xtf = spectra(features, geo, params, samples, state.is_color, state.projection, interp)
        scores_f = response(state.hf, xtf, geo.output_hw)
        s, disp_px, score = newton_locate(config, geo, scores_f)
        pos = state.pos + disp_px * scales[s]
        scale = state.scale * det_scales[s]
        if config.use_scale_filter:
            scale = scale * scale_filter.locate_scale(
                state.scale_filter, scale_features(frame, pos, state.base_size, scale),
                config.scale)
        scale = jnp.clip(scale, state.scale_range[0], state.scale_range[1])

        # The detection sample, shifted so the target sits at its centre.
        shift = 2 * jnp.pi * (pos - state.pos) / (scales[s] * geo.support)
        new_xf = tuple(cfourier.shift_sample(x[s], shift, hw)
                       for x, hw in zip(xtf, geo.filter_hw))
        memory, _ = sample_space.update_sample_space(
            state.memory, _channels_first(new_xf), learning_rate=config.learning_rate,
            min_sample_weight=min_weight, channels_first=True)
        frame_no = state.frame + 1
        lr = config.learning_rate
        energy = tuple((1 - lr) * e + lr * jnp.real(x * jnp.conj(x))
                       for e, x in zip(state.sample_energy, new_xf))
        # ECO trains when `frames_since_last_train >= train_gap`, counted before this frame:
        # with train_gap 5, every 6th frame.
        train_now = (frame_no < config.skip_after_frame) | (state.since_train >= config.train_gap)

        def train(_):
            return eco_filter.train_filter(state.hf, state.cg, memory.samplesf,
                                           memory.prior_weights, state.yf, _cross(state.reg),
                                           energy, state.reg_energy, settings=config.filter,
                                           channels_first=True)

        hf, cg = jax.lax.cond(train_now, train, lambda _: (state.hf, state.cg), None)
        energy = tuple(jnp.where(train_now, e, old) for e, old in zip(energy, state.sample_energy))
        sf_state = state.scale_filter
        if config.use_scale_filter:
            sf_state = scale_filter.update_scale_filter(
                sf_state, scale_features(frame, pos, state.base_size, scale), config.scale)
        since = jnp.where(train_now, 0, state.since_train + 1).astype(jnp.int32)
        new = state._replace(pos=pos, scale=scale, hf=hf, cg=cg, memory=memory,
                             sample_energy=energy, scale_filter=sf_state, since_train=since,
                             frame=frame_no)
        box = center_size_to_xywh(pos, state.base_size * scale)
        return new, box, score

    return Tracker(init_fn=init_fn, step_fn=step_fn)


def _channels_first(xf: tuple) -> tuple:
    """Spectra `(..., Ho, Wh, C)` -> `(..., C, Ho, Wh)`, the sample memory's layout (the
    solver's data term is 1.6x faster on it, `eco_filter.filter_lhs`)."""
    return tuple(jnp.moveaxis(x, -1, -3) for x in xf)


def _cross(reg: tuple) -> tuple:
    """The regularisation kernels as `eco_filter.CrossKernel`s: `cfourier.reg_filter`'s kernel
    is zero off its centre row and column, so the solver convolves with 13 taps, not 49."""
    return tuple(eco_filter.cross_kernel(k) for k in reg)


def _is_color(frame: Frame, pos, size) -> jnp.ndarray:
    """ECO's test: a frame whose red and green planes are equal is grey."""
    del pos, size
    hc, wc = frame.pixels.shape[:2]
    valid = (jnp.arange(hc)[:, None] < frame.hw[0]) & (jnp.arange(wc)[None, :] < frame.hw[1])
    differs = (frame.pixels[..., 0] != frame.pixels[..., 1]) & valid
    return jnp.any(differs)


def labels(config: EcoConfig, geo: Geometry, base_size) -> tuple:
    """ECO's Gaussian label as Fourier-series coefficients on each block's grid.

    sigma = sqrt(prod(floor(base_target_sz))) x output_sigma_factor, in output-grid cells
    (ECO `tracker.m`: the Poisson formula with period `output_sz`).
    """
    out_hw = jnp.asarray(geo.output_hw, jnp.float32)
    sigma = (jnp.sqrt(jnp.prod(jnp.floor(base_size))) * config.output_sigma_factor
             * out_hw / geo.support)
    return tuple(cfourier.gaussian_label_fs(hw, sigma, geo.output_hw) for hw in geo.filter_hw)


def regulariser(config: EcoConfig, geo: Geometry, base_size):
    """ECO's spatial regularisation kernel for this target (`cfourier.reg_filter`, traced)."""
    k = config.reg_kernel_size
    return cfourier.reg_filter(
        (geo.support, geo.support), base_size, reg_window_min=config.reg_window_min,
        reg_window_edge=config.reg_window_edge, reg_window_power=config.reg_window_power,
        reg_sparsity_threshold=config.reg_sparsity_threshold, max_kernel=(k, k))


def scale_limits(config: EcoConfig, geo: Geometry, base_size, frame_hw) -> jnp.ndarray:
    """ECO's bounds on the scale factor: the support at least 5 px, the target within the frame."""
    step = config.scale.scale_step if config.use_scale_filter else config.scale_step
    log_step = jnp.log(step)
    lo = step ** jnp.ceil(jnp.log(5.0 / geo.support) / log_step)
    hi = step ** jnp.floor(jnp.log(jnp.min(frame_hw / base_size)) / log_step)
    return jnp.stack([lo, hi])


def scale_samples(config: EcoConfig, frame: Frame, pos, base_size, scale) -> jnp.ndarray:
    """fDSST scale samples: fHOG (cell 4) of the target region at every scale of the filter.

    ECO resizes each region to `scale_model_sz` (the target's aspect, area <= 32 x 16 px);
    here every region is resampled to a static `scale_model_side`^2 patch so the step
    compiles once whatever the target's aspect (a deviation: the features are the same up
    to an anisotropic stretch that does not change with scale).

    Returns:
      (num_scales, D) float32.
    """
    factors = jnp.asarray(scale_filter.scale_factors(config.scale), jnp.float32)
    side = config.scale_model_side
    sizes = jnp.floor(base_size[None, :] * scale * factors[:, None])
    patches = jax.vmap(lambda hw: sample_window(frame, pos, hw, out=(side, side)))(sizes)
    feats = fhog.fhog(patches, cell=4)
    return feats.reshape(feats.shape[0], -1)

"""Background-aware online adaptation of the student CNN inside any tracker (issue 14).

The paper's third component (PAPER.md §7): after offline distillation the student is
fine-tuned online so that its features separate the target from the background around it.
The scheme is not published; this is the [RECON] of PAPER.md §7, as a wrapper that works
for every tracker whose params hold a `ctjax.features.cnn` params dict (ECO / fECO, the DCF
tracker):

* `make_adaptive(tracker, settings, extractor=..., cnn_index=...)` returns a `Tracker`
  whose state is `AdaptiveState(inner, params, ...)`. `init_fn` fine-tunes the last
  stage(s) of the CNN on frame 1 and then calls the inner `init_fn` with the adapted
  weights; `step_fn` runs the inner `step_fn` with the adapted weights and, every `every`
  frames (static; 0 = frame 1 only), adapts again from a small ring buffer of recent
  frames, labelled by the tracker's own boxes. The caller's params are never changed: the
  adapted stages live in the state and are merged into a copy of the params pytree inside
  the traced functions, so init and step still compile once.
* One adaptation (`adapt`) = a few Adam steps on the DCF tracking loss of DCFNet (PAPER.md
  §5.1 / §5.6): per stored frame, a ridge-regression DCF (`ctjax.ops.dcf`) is learned in
  closed form on the target-centred crop's features; its response on (a) crops shifted by a
  few whole cells is regressed onto the Gaussian label moved by the same shift, and (b) on
  background crops centred on boxes with low IoU to the target (shifted by >= 1 target size)
  is pushed to zero where such a box would put the target; plus `weight_decay` x the squared
  relative distance to the offline weights and, optionally, `fidelity` x the mean squared
  change of the (unit-energy) features. Only `stages` are updated.

Geometry: an adaptation sample is a *region*, a (R, R, 3) uint8 square centred on the target
at the crop resolution of the tracker (a window of `context` x sqrt(w h) frame pixels is
`input_size` pixels), wide enough to hold every shifted crop; crops are cut from it at whole
pixels (exact copies, `ctjax.ops.crop.sample_window`) and shifts are whole multiples of the
coarsest loss layer's cell, so shifted labels are exact. Steps are relative: the stage
`stage` moves as theta = theta_offline + rms(kernel_offline) * delta, so one learning rate
and one `weight_decay` fit students whose weights differ by 10x in scale.

Cost on one XLA CPU core: the Adam steps are unrolled (a `scan` over them ran ~10x slower,
and unrolled steps share one pass through the frozen stages), and when one stage is updated
its kernel gradient is written by hand (`last_stage`): inside the `lax.cond` of the periodic
update, autodiff's kernel-gradient convolution runs ~5-25x slower than at top level.

Conventions: boxes are OTB x,y,w,h (1-based); centres 0-based (y, x); shifts (dy, dx) in
crop pixels; feature maps NHWC float32; spectra end in `f` (`ctjax.ops.fourier`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ctjax import boxes
from ctjax.features.cnn import avg_pool, normalize_energy
from ctjax.models import preprocessing, vggm
from ctjax.ops import crop, dcf, fourier
from ctjax.trackers import Tracker

__all__ = ["AdaptSettings", "AdaptiveState", "Samples", "adapt", "adaptation_loss",
           "background_mask", "crops_from_region", "fast_stage", "last_stage", "loss_extractor",
           "loss_features", "make_adaptive", "merge_stages", "quantum", "region_at",
           "region_side", "sample_shifts", "shifted_label"]


@dataclasses.dataclass(frozen=True)
class AdaptSettings:
    """Static settings of the online adaptation ([RECON], chosen on the train split).

    Attributes:
      stages: CNN stages whose parameters are updated (the last ones).
      loss_layers: names of the extractor's layers the tracking loss is computed on (layers
        before the first updated stage do not change and are left out).
      input_size: crop side in pixels fed to the CNN (fECO: 217).
      context: crop side / sqrt(target w h) in frame pixels (fECO: 4.5 x 217 / 208).
      steps: Adam steps per adaptation on frame 1.
      update_steps: Adam steps per later adaptation.
      learning_rate: Adam step size, relative to each stage's kernel RMS.
      weight_decay: weight of mean(delta^2) per updated array (relative distance to the
        offline weights).
      fidelity: weight of the mean squared change of the loss layers' features.
      num_target: shifted target crops per frame.
      target_cells: target shifts are whole cells in [-target_cells, target_cells]^2.
      num_background: background crops per frame.
      background_distance: (min, max) shift of a background box in target sizes.
      max_iou: background boxes with a larger IoU to the target are ignored.
      background_weight: weight of the background term.
      output_sigma_factor: label sigma / target size (DCFNet: 0.1).
      lam: the DCF's ridge regulariser (with the 1/(MND) normalisation of `ctjax.ops.dcf`).
      every: adapt again every `every` frames (0: frame 1 only).
      recent: frames kept in the ring buffer for later adaptations (the last ones).
      keep_first: later adaptations also use frame 1 (the only box not estimated).
      seed: PRNG seed of the sample positions.
    """
    stages: tuple[str, ...] = ("conv5",)
    loss_layers: tuple[str, ...] = ("conv5",)
    input_size: int = 217
    context: float = 4.5 * 217 / 208
    steps: int = 10
    update_steps: int = 5
    learning_rate: float = 0.01
    weight_decay: float = 1.0
    fidelity: float = 0.0
    num_target: int = 4
    target_cells: int = 1
    num_background: int = 8
    background_distance: tuple[float, float] = (1.0, 2.0)
    max_iou: float = 0.3
    background_weight: float = 1.0
    output_sigma_factor: float = 0.1
    lam: float = 1e-4
    every: int = 0
    recent: int = 2
    keep_first: bool = True
    seed: int = 0

    def __post_init__(self):
        if not self.stages or not self.loss_layers:
            raise ValueError("AdaptSettings needs at least one stage and one loss layer")
        if self.every < 0 or (self.every and not 0 < self.recent <= self.every):
            raise ValueError(f"need every >= 0 and 0 < recent <= every, got every={self.every}"
                             f" recent={self.recent}")
        lo, hi = self.background_distance
        if not 0 < lo <= hi:
            raise ValueError(f"background_distance must be 0 < min <= max, got {lo, hi}")


class AdaptiveState(NamedTuple):
    """State of an adaptive tracker.

    Attributes:
      inner: the wrapped tracker's state.
      params: the adapted stages, {stage: {"kernel", "bias"}} (the offline ones are the
        params the caller passes to every call).
      regions: (B, R, R, 3) uint8 stored regions (B = 0 when `every` = 0).
      sizes: (B, 2) float32 target (h, w) in region pixels.
      weights: (B,) float32, 1 for a filled slot.
      frame: () int32 frame number (1 = the initial frame).
      stored: () int32 regions written to the ring so far.
    """
    inner: Any
    params: Any
    regions: jnp.ndarray
    sizes: jnp.ndarray
    weights: jnp.ndarray
    frame: jnp.ndarray
    stored: jnp.ndarray


class Samples(NamedTuple):
    """Where the crops of one region are cut (crop pixels, relative to the target)."""
    target: jnp.ndarray       # (Kt, 2) shifts of the target crops
    background: jnp.ndarray   # (Kb, 2) shifts of the background crops
    valid: jnp.ndarray        # (Kb,) bool, the background box's IoU < max_iou


# ---------------------------------------------------------------------------------------------
# Geometry


def quantum(extractor, settings: AdaptSettings) -> int:
    """Shift step in crop pixels: the largest cell of the loss layers (a multiple of all)."""
    return int(np.lcm.reduce([_layer_stride(extractor, n) for n in settings.loss_layers]))


def region_side(settings: AdaptSettings, q: int) -> int:
    """Static region side: the crop plus a margin for background shifts up to
    `background_distance[1]` target sizes on targets of aspect up to 2.25 (farther shifts
    are clipped), a whole number of cells; same parity as the crop, so crops are exact."""
    target = settings.input_size / settings.context
    margin = int(np.ceil(settings.background_distance[1] * target * 1.5 / q)) * q
    return settings.input_size + 2 * margin


def region_at(settings: AdaptSettings, side: int, frame: crop.Frame, box):
    """The region around a box, at the tracker's crop resolution.

    Args:
      side: static region side R (`region_side`).
      frame: the canvas frame.
      box: (4,) OTB x,y,w,h.

    Returns:
      `(region, size)`: (R, R, 3) uint8, the target (h, w) in region pixels (float32 (2,)).
    """
    center, size = boxes.xywh_to_center_size(jnp.asarray(box, jnp.float32))
    px = settings.context * jnp.sqrt(size[0] * size[1]) / settings.input_size
    patch = crop.sample_window(frame, center, px * side, out=side)
    region = jnp.clip(jnp.round(patch), 0, 255).astype(jnp.uint8)
    return region, size / px


def sample_shifts(settings: AdaptSettings, q: int, margin: int, size, key) -> Samples:
    """Random target and background shifts of one region, whole multiples of `q` pixels.

    Target shifts are uniform whole cells in [-target_cells, target_cells]^2. Background
    boxes sit at `r` target sizes (r uniform in `background_distance`) along evenly spread
    directions with a random rotation, (dy, dx) = r (h cos phi, w sin phi), rounded away from
    the target to whole cells and clipped to the region's `margin`; those whose IoU with the
    target is >= `max_iou` after clipping are marked invalid.

    Args:
      size: (2,) target (h, w) in crop pixels.
      key: PRNG key.
    """
    k1, k2, k3 = jax.random.split(key, 3)
    cells = jax.random.randint(k1, (settings.num_target, 2), -settings.target_cells,
                               settings.target_cells + 1)
    kb = settings.num_background
    lo, hi = settings.background_distance
    phi = 2 * jnp.pi * (jnp.arange(kb) + jax.random.uniform(k2)) / max(kb, 1)
    r = jax.random.uniform(k3, (kb,), minval=lo, maxval=hi)
    d = r[:, None] * size[None, :] * jnp.stack([jnp.cos(phi), jnp.sin(phi)], axis=-1)
    d = jnp.sign(d) * jnp.ceil(jnp.abs(d) / q) * q
    d = jnp.clip(d, -margin, margin)
    overlap = jnp.prod(jnp.maximum(size[None, :] - jnp.abs(d), 0.0), axis=-1)
    area = size[0] * size[1]
    iou = overlap / (2 * area - overlap)
    return Samples(target=(cells * q).astype(jnp.float32), background=d.astype(jnp.float32),
                   valid=iou < settings.max_iou)


def crops_from_region(region, shifts, out: int):
    """Crops of side `out` centred at the region centre + whole-pixel shifts.

    Args:
      region: (R, R, 3) uint8, R - out even.
      shifts: (K, 2) float32 whole-pixel (dy, dx).

    Returns:
      (K, out, out, 3) float32 RGB 0..255, exact copies of region pixels.
    """
    side = region.shape[0]
    frame = crop.Frame(pixels=region, hw=jnp.array([side, side], jnp.int32))
    center = (side - 1) / 2.0
    return jax.vmap(lambda s: crop.sample_window(frame, center + s, float(out), out=out))(shifts)


def shifted_label(hw: tuple[int, int], sigma: float, shift) -> jnp.ndarray:
    """The Gaussian label of `ctjax.ops.fourier.gaussian_label` with its peak moved to
    `shift` (dy, dx) cells, distances wrapping around the grid.

    Args:
      hw: static (H, W); sigma: static, in cells; shift: (..., 2) traced cells.

    Returns:
      (..., H, W) float32. Reference: DCFNet / KCF label, PAPER.md §5.2.
    """
    h, w = hw
    dy = jnp.arange(h, dtype=jnp.float32) - shift[..., 0, None]
    dx = jnp.arange(w, dtype=jnp.float32) - shift[..., 1, None]
    dy = jnp.mod(dy + h / 2, h) - h / 2
    dx = jnp.mod(dx + w / 2, w) - w / 2
    return jnp.exp(-(dy[..., :, None] ** 2 + dx[..., None, :] ** 2) / (2 * sigma ** 2))


def background_mask(hw: tuple[int, int], half) -> jnp.ndarray:
    """Cells of a response where a box centred on the crop would put the target:
    |wrapped offset| <= max(half, 1) per axis.

    Args:
      hw: static (H, W); half: (2,) half target size in cells.

    Returns:
      (H, W) float32 0/1.
    """
    h, w = hw
    oy = jnp.abs(jnp.mod(jnp.arange(h) + h // 2, h) - h // 2)
    ox = jnp.abs(jnp.mod(jnp.arange(w) + w // 2, w) - w // 2)
    half = jnp.maximum(half, 1.0)
    return ((oy[:, None] <= half[0]) & (ox[None, :] <= half[1])).astype(jnp.float32)


# ---------------------------------------------------------------------------------------------
# The loss and the optimisation


def _layer_stride(extractor, name: str) -> int:
    names = [l.name for l in extractor.layers]
    if name not in names:
        raise ValueError(f"loss layer {name!r} is not one of the extractor's layers {names}")
    return extractor.cell_strides[names.index(name)]


def loss_extractor(extractor, settings: AdaptSettings):
    """The extractor restricted to the loss layers (static)."""
    keep = [i for i, l in enumerate(extractor.layers) if l.name in settings.loss_layers]
    return dataclasses.replace(extractor, layers=tuple(extractor.layers[i] for i in keep),
                               strides=tuple(extractor.strides[i] for i in keep))


def merge_stages(cnn: dict, stages: dict) -> dict:
    """A copy of CNN params (`ctjax.features.cnn.cnn_params`) with some stages replaced."""
    variables = cnn["variables"]
    return {**cnn, "variables": {**variables, "params": {**variables["params"], **stages}}}


def _stage_scales(cnn: dict, names) -> dict:
    """RMS of each offline stage's kernel: the unit of the relative steps."""
    return {n: jnp.sqrt(jnp.mean(jnp.square(cnn["variables"]["params"][n]["kernel"])))
            for n in names}


def _kernel_grad(x, g, pad):
    """Gradient of a stride-1 cross-correlation's kernel, as one canonical convolution.

    dK[u, v, i, o] = sum_{n, y, x} xpad[n, y + u, x + v, i] g[n, y, x, o], computed with the
    input channels as the batch and the examples as features (the layout XLA CPU's fast
    convolution takes).

    Args:
      x: (N, H, W, Cin) the layer's input; g: (N, H', W', Cout) cotangent of its output
      before the ReLU; pad: (before, after) padding of both spatial axes.

    Returns:
      (kh, kw, Cin, Cout).
    """
    out = jax.lax.conv_general_dilated(
        jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3)), window_strides=(1, 1),
        padding=(tuple(pad), tuple(pad)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.transpose(out, (1, 2, 0, 3))


def fast_stage(extractor, settings: AdaptSettings) -> bool:
    """Whether the hand-written gradient of `last_stage` applies: one updated stage of a
    VGG-M-family network, a stride-1 conv followed by a ReLU only, which is also the only
    loss layer."""
    if not isinstance(extractor.module, vggm.VGGM) or len(settings.stages) != 1:
        return False
    stage = settings.stages[0]
    ops = dict(vggm.LAYERS)
    return (tuple(settings.loss_layers) == (stage,) and stage in ops and stage != "conv1"
            and stage.startswith("conv") and ops[stage].stride == 1
            and stage not in vggm.LRN_STAGES)


def last_stage(module, stage: str):
    """`f(theta, variables, x) -> stage output` of a VGG-M-family module whose `stage`
    weights are `theta`, with a hand-written gradient for `theta` only.

    Why: under `jax.lax.cond` (the periodic update of `make_adaptive`) XLA CPU leaves the
    autodiff kernel-gradient convolution in a layout its fast convolution does not take, and
    it runs about 5x slower than at top level; `_kernel_grad` computes the same gradient in
    the fast layout. The forward pass is the module's own; the input to `stage` and its
    pre-ReLU output come from the module (`capture_raw`), so nothing of the network is
    written twice. `variables` and `x` get zero cotangents (they are frozen).
    """
    prev = vggm.STAGES[vggm.STAGES.index(stage) - 1]
    pad = dict(vggm.LAYERS)[stage].pad

    def with_theta(variables, theta):
        return {**variables, "params": {**variables["params"], stage: theta}}

    @jax.custom_vjp
    def f(theta, variables, x):
        return module.apply(with_theta(variables, theta), x, stages=(stage,))[stage]

    def fwd(theta, variables, x):
        out = module.apply(with_theta(variables, theta), x, stages=(prev, stage),
                           capture_raw=True)
        return out[stage], (out[prev], out[f"{stage}_raw"], variables, x)

    def bwd(res, ct):
        xin, raw, variables, x = res
        g = jnp.where(raw > 0, ct, 0.0)
        dtheta = {"kernel": _kernel_grad(xin, g, pad), "bias": jnp.sum(g, axis=(0, 1, 2))}
        return dtheta, jax.tree.map(jnp.zeros_like, variables), jnp.zeros_like(x)

    f.defvjp(fwd, bwd)
    return f


def loss_features(settings: AdaptSettings, extractor, cnn: dict, theta: dict, patches):
    """The loss layers' unit-energy features of patches with `theta` as the updated stages.

    The same maps as `extractor(merge_stages(cnn, theta), patches)`
    (`ctjax.features.cnn.CNNExtractor`), through `last_stage` when `fast_stage` holds.

    Args:
      extractor: the loss extractor (`loss_extractor`).
      patches: (N, S, S, 3) float32 RGB 0..255.

    Returns:
      Tuple of (N, h, w, c) float32, one per loss layer.
    """
    if not fast_stage(extractor, settings):
        return extractor(merge_stages(cnn, theta), patches)
    stage = settings.stages[0]
    x = preprocessing.standardize(patches, mean=cnn["mean"], std=cnn["std"],
                                  input_scale=cnn["scale"])
    out = last_stage(extractor.module, stage)(theta[stage], cnn["variables"], x)
    return (normalize_energy(avg_pool(out, extractor.layers[0].pool)),)


def adaptation_loss(settings: AdaptSettings, extractor, cnn: dict, delta: dict, patches,
                    samples: Samples, sizes, weights, offline_feats=None):
    """The background-aware tracking loss of a batch of regions.

    Args:
      settings: static settings.
      extractor: the loss extractor (`loss_extractor`).
      cnn: the offline CNN params.
      delta: {stage: {"kernel", "bias"}} relative changes (theta = offline + rms * delta).
      patches: (B, 1 + Kt + Kb, S, S, 3) crops: the target-centred one, the shifted target
        crops, the background crops (`crops_from_region`).
      samples: `Samples` with a leading B axis.
      sizes: (B, 2) target (h, w) in crop pixels.
      weights: (B,) float32 per-region weights (0 for empty slots).
      offline_feats: the loss layers' offline features of `patches` (for `fidelity`).

    Returns:
      Scalar float32: the weighted mean over regions of [the squared error of the target
      crops' responses against the moved label + background_weight x the masked squared
      response of the background crops] (per layer, divided by the label energy, so an
      all-zero response scores 1 per target crop), plus weight_decay x the sum over updated
      arrays of mean(delta^2), plus fidelity x the mean squared change of the features.
      Reference: DCFNet tracking loss (PAPER.md §5.1), PAPER.md §7 [RECON].
    """
    b, n = patches.shape[:2]
    kt = samples.target.shape[1]
    scales = _stage_scales(cnn, delta)
    theta = {s: jax.tree.map(lambda p, d, s=s: p + scales[s] * d,
                             cnn["variables"]["params"][s], delta[s]) for s in delta}
    feats = loss_features(settings, extractor, cnn, theta,
                          patches.reshape((b * n,) + patches.shape[2:]))
    wsum = jnp.maximum(jnp.sum(weights), 1e-6)
    valid = samples.valid.astype(jnp.float32)
    total = 0.0
    for f, layer, stride in zip(feats, extractor.layers, extractor.cell_strides):
        f = f.reshape((b, n) + f.shape[1:])
        hw = f.shape[2:4]
        hann = fourier.hann_window(hw)[..., None]
        sigma = fourier.label_sigma(settings.input_size, settings.context, stride,
                                    factor=settings.output_sigma_factor)
        label = fourier.gaussian_label(hw, sigma)
        terms = dcf.filter_terms(fourier.rfft2(f[:, 0] * hann), fourier.rfft2_map(label),
                                 hw=hw)
        terms = dcf.FilterTerms(terms.numf[:, None], terms.denf[:, None])
        r = dcf.primal_response(terms, fourier.rfft2(f[:, 1:] * hann), lam=settings.lam, hw=hw)
        # A crop centred d pixels from the target sees it at -d: the label moves by -d.
        y = shifted_label(hw, sigma, -samples.target / stride)
        target = jnp.mean(jnp.sum(jnp.square(r[:, :kt] - y), axis=(-2, -1)), axis=1)
        mask = jax.vmap(lambda s: background_mask(hw, s / (2 * stride)))(sizes)
        bg = jnp.sum(jnp.square(r[:, kt:]) * mask[:, None], axis=(-2, -1))
        bg = jnp.sum(bg * valid, axis=1) / jnp.maximum(jnp.sum(valid, axis=1), 1.0)
        per_region = (target + settings.background_weight * bg) / jnp.sum(jnp.square(label))
        total = total + layer.weight * jnp.sum(per_region * weights) / wsum
    if settings.fidelity and offline_feats is not None:
        change = sum(jnp.mean(jnp.square(a - o), axis=(1, 2, 3)).reshape(b, n).mean(axis=1)
                     for a, o in zip(feats, offline_feats))
        total = total + settings.fidelity * jnp.sum(change * weights) / wsum
    decay = sum(jnp.mean(jnp.square(leaf)) for leaf in jax.tree.leaves(delta))
    return total + settings.weight_decay * decay


def adapt(settings: AdaptSettings, extractor, cnn: dict, theta: dict, regions, sizes, weights,
          key, *, steps: int):
    """Fine-tunes `settings.stages` on stored regions with a few Adam steps.

    Args:
      settings: static settings.
      extractor: the tracker's `ctjax.features.cnn.CNNExtractor` (static).
      cnn: the offline CNN params (`cnn_params`; never modified).
      theta: {stage: {"kernel", "bias"}} the starting weights (offline or adapted before).
      regions: (B, R, R, 3) uint8 regions (`region_at`).
      sizes: (B, 2) float32 target (h, w) in region pixels.
      weights: (B,) float32 per-region weights (0 = empty slot).
      key: PRNG key of the sample positions.
      steps: static number of Adam steps.

    Returns:
      `(theta, losses)`: the adapted stages and the (steps,) loss before each step.
      Reference: PAPER.md §7 [RECON].
    """
    lx = loss_extractor(extractor, settings)
    q = quantum(extractor, settings)
    margin = (regions.shape[1] - settings.input_size) // 2
    b = regions.shape[0]
    samples = jax.vmap(lambda s, k: sample_shifts(settings, q, margin, s, k))(
        sizes, jax.random.split(key, b))
    shifts = jnp.concatenate([jnp.zeros((b, 1, 2), jnp.float32), samples.target,
                              samples.background], axis=1)
    patches = jax.vmap(lambda r, s: crops_from_region(r, s, settings.input_size))(regions, shifts)
    offline_feats = None
    if settings.fidelity:
        offline_feats = jax.lax.stop_gradient(
            lx(cnn, patches.reshape((-1,) + patches.shape[2:])))
    offline = {s: cnn["variables"]["params"][s] for s in settings.stages}
    scales = _stage_scales(cnn, settings.stages)
    delta = {s: jax.tree.map(lambda t, p, s=s: (t - p) / scales[s], theta[s], offline[s])
             for s in settings.stages}
    opt = optax.adam(settings.learning_rate)

    def loss_fn(d):
        return adaptation_loss(settings, lx, cnn, d, patches, samples, sizes, weights,
                               offline_feats)

    def body(carry, _):
        d, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(d)
        updates, opt_state = opt.update(grads, opt_state)
        return (optax.apply_updates(d, updates), opt_state), loss

    # Unrolled: on XLA CPU a while loop around the convolutions ran ~10x slower per step, and
    # unrolling lets XLA compute the frozen stages once for all steps.
    (delta, _), losses = jax.lax.scan(body, (delta, opt.init(delta)), None, length=steps,
                                      unroll=True)
    theta = {s: jax.tree.map(lambda p, d, s=s: p + scales[s] * d, offline[s], delta[s])
             for s in settings.stages}
    return theta, losses


# ---------------------------------------------------------------------------------------------
# The wrapper


def make_adaptive(tracker: Tracker, settings: AdaptSettings, *, extractor,
                  cnn_index: int | None) -> Tracker:
    """Wraps a tracker so that its CNN adapts online (see the module docstring).

    Args:
      tracker: any `Tracker` whose params contain `ctjax.features.cnn.cnn_params`.
      settings: static `AdaptSettings`.
      extractor: the `CNNExtractor` of those params (for fECO the `CnnPart`'s extractor).
      cnn_index: where the CNN params sit in the params tuple (fECO: 0), or None when the
        params are the CNN params themselves (the DCF `cfvggm` preset).

    Returns:
      A `Tracker` with `AdaptiveState`; `init_fn` / `step_fn` take the caller's (offline)
      params, which are never modified, and compile once like the inner tracker's.
    """
    q = quantum(extractor, settings)
    side = region_side(settings, q)
    n_first = 1 if settings.keep_first else 0
    slots = n_first + settings.recent if settings.every else 0

    def cnn_of(params):
        return params if cnn_index is None else params[cnn_index]

    def with_stages(params, theta):
        cnn = merge_stages(cnn_of(params), theta)
        if cnn_index is None:
            return cnn
        return tuple(cnn if i == cnn_index else p for i, p in enumerate(params))

    def init_fn(params, frame, box) -> AdaptiveState:
        cnn = cnn_of(params)
        mean_hw = tuple(jnp.shape(cnn["mean"])[:2]) if jnp.ndim(cnn["mean"]) == 3 else None
        if mean_hw not in (None, (settings.input_size,) * 2):
            raise ValueError(f"AdaptSettings.input_size {settings.input_size} differs from the "
                             f"CNN params' mean image {mean_hw}: use the tracker's CNN input "
                             "size (fECO: 217, the DCF tracker: its patch_size)")
        region, size = region_at(settings, side, frame, box)
        theta = {s: cnn["variables"]["params"][s] for s in settings.stages}
        if settings.steps:
            theta, _ = adapt(settings, extractor, cnn, theta, region[None], size[None],
                             jnp.ones((1,), jnp.float32), jax.random.PRNGKey(settings.seed),
                             steps=settings.steps)
        inner = tracker.init_fn(with_stages(params, theta), frame, box)
        regions = jnp.zeros((slots, side, side, 3), jnp.uint8)
        sizes = jnp.ones((slots, 2), jnp.float32)
        weights = jnp.zeros((slots,), jnp.float32)
        if slots and n_first:
            regions, sizes = regions.at[0].set(region), sizes.at[0].set(size)
            weights = weights.at[0].set(1.0)
        return AdaptiveState(inner=inner, params=theta, regions=regions, sizes=sizes,
                             weights=weights, frame=jnp.int32(1), stored=jnp.int32(0))

    def step_fn(params, state: AdaptiveState, frame):
        inner, box, score = tracker.step_fn(with_stages(params, state.params), state.inner,
                                            frame)
        frame_no = state.frame + 1
        state = state._replace(inner=inner, frame=frame_no)
        if not settings.every:
            return state, box, score
        phase = frame_no % settings.every
        store = (phase == 0) | (phase > settings.every - settings.recent)

        # Only the buffers go through the conds: every operand of a cond is copied.
        def write(buffers):
            regions, sizes, weights, stored = buffers
            region, size = region_at(settings, side, frame, box)
            slot = n_first + stored % settings.recent
            return (regions.at[slot].set(region), sizes.at[slot].set(size),
                    weights.at[slot].set(1.0), stored + 1)

        buffers = (state.regions, state.sizes, state.weights, state.stored)
        regions, sizes, weights, stored = jax.lax.cond(store, write, lambda b: b, buffers)
        theta = state.params
        if settings.update_steps:
            def update(theta):
                key = jax.random.fold_in(jax.random.PRNGKey(settings.seed), frame_no)
                return adapt(settings, extractor, cnn_of(params), theta, regions, sizes,
                             weights, key, steps=settings.update_steps)[0]

            theta = jax.lax.cond(phase == 0, update, lambda t: t, theta)
        state = state._replace(params=theta, regions=regions, sizes=sizes, weights=weights,
                               stored=stored)
        return state, box, score

    return Tracker(init_fn=init_fn, step_fn=step_fn)

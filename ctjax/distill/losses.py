"""Offline distillation losses: multi-layer feature fidelity and the DCF tracking loss.

Both are per-example functions (the caller reduces over the batch) on NHWC float32 feature
maps `(N, H, W, C)` keyed by stage name, as the models return them (`ctjax.models`).

Fidelity (PAPER.md §4, [RECON] FitNets-style hint loss). For a layer pair (student stage s,
teacher stage t), a trainable 1x1 adapter A (C_s -> C_t, with bias, dropped after training)
maps the student map onto the teacher's channels, the teacher map is resampled onto the
student's grid (`grid_alignment`), and

    L_fid,l = mean_{cells, channels} (A(S_s) - T_t)² / scale_l,

where `scale_l` is the mean of T_t² over training data (`teacher_scale`, computed once at the
start of training), so layers of very different magnitude weigh comparably: with A = 0 every
layer's loss is about 1.

Tracking (PAPER.md §5.1/§5.6, DCFNet form, [RECON] on the student's own layers). For a layer,
a ridge-regression DCF is learned in closed form on the template's features with a Gaussian
label peaked at (0, 0) (`ctjax.ops.dcf.dual_filter`, λ with the 1/(MND) factor), applied to
the search crop's features (`dual_response`), and scored by Σ_cells (r - y)² against the label
centred on where the target sits in the search crop. [RECON] choices, on by default:
features are scaled to unit mean energy per example before the DCF by the trackers' own
`ctjax.features.cnn.normalize_energy`, which makes λ relative and the loss invariant to
feature scale; and the loss is divided by the label energy Σ y², so predicting zeros scores 1 on every
layer whatever its grid size.

Geometry: cell i of a stage is centred on crop pixel `offset + i * stride` (0-based pixel
centres, `ctjax.models.registry.stage_info`). Shifts are (dy, dx) in cells of the layer.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ctjax.features.cnn import normalize_energy
from ctjax.models import registry
from ctjax.ops import dcf, fourier

Array = jax.Array


class LayerPair(NamedTuple):
    """A distilled layer: the student stage and the teacher stage it imitates."""
    student: str
    teacher: str


# ---------------------------------------------------------------------------------------------
# Spatial alignment of teacher maps to the student's grid


def interpolation_matrix(n_out: int, out_offset: float, out_stride: float, n_in: int,
                         in_offset: float, in_stride: float) -> np.ndarray:
    """Linear-interpolation weights that sample an input grid at the output cells' centres.

    Output cell i is centred on pixel `out_offset + i * out_stride`, which lies at fractional
    input index u = (pixel - in_offset) / in_stride; u is clamped to [0, n_in - 1] (border
    replication) and split between its two neighbours.

    Returns:
        (n_out, n_in) float32 matrix; each row sums to 1.
    """
    u = (out_offset + np.arange(n_out) * out_stride - in_offset) / in_stride
    u = np.clip(u, 0.0, n_in - 1.0)
    i0 = np.minimum(np.floor(u).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = u - i0
    matrix = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    np.add.at(matrix, (rows, i0), 1.0 - frac)
    np.add.at(matrix, (rows, i1), frac)
    return matrix.astype(np.float32)


class GridAlignment(NamedTuple):
    """Row and column interpolation matrices from a teacher grid to a student grid."""
    rows: np.ndarray  # (H_s, H_t)
    cols: np.ndarray  # (W_s, W_t)


def grid_alignment(student: registry.ModelConfig, student_stage: str,
                   teacher: registry.ModelConfig, teacher_stage: str,
                   input_hw: tuple[int, int]) -> GridAlignment:
    """Bilinear resampling of a teacher stage onto a student stage's cell centres.

    Both networks see the same crop. The student (VGG-M, VALID conv1) and the teacher
    (EfficientNet, TF 'SAME') place their cells differently, e.g. on a 160 px crop student
    conv1 is 77x77 cells centred at 3 + 2i while teacher stride2 is 80x80 centred at 1 + 2i;
    the exact offsets come from `registry.stage_offsets`.

    Args:
        student, student_stage: the student model and stage.
        teacher, teacher_stage: the teacher model and stage.
        input_hw: static crop size (H, W).

    Returns:
        `GridAlignment` (static NumPy matrices) for `align_to_grid`.
    """
    mats = []
    s_stride = registry.stage_info(student, student_stage).stride
    t_stride = registry.stage_info(teacher, teacher_stage).stride
    s_hw = registry.output_hw(student, student_stage, input_hw)
    t_hw = registry.output_hw(teacher, teacher_stage, input_hw)
    s_off = registry.stage_offsets(student, student_stage, input_hw)
    t_off = registry.stage_offsets(teacher, teacher_stage, input_hw)
    for axis in range(2):
        mats.append(interpolation_matrix(s_hw[axis], s_off[axis], s_stride,
                                         t_hw[axis], t_off[axis], t_stride))
    return GridAlignment(rows=mats[0], cols=mats[1])


def align_to_grid(features: Array, alignment: GridAlignment) -> Array:
    """Resamples (N, H_t, W_t, C) features to (N, H_s, W_s, C) with a `GridAlignment`."""
    return jnp.einsum("ia,jb,nabc->nijc", jnp.asarray(alignment.rows),
                      jnp.asarray(alignment.cols), features)


# ---------------------------------------------------------------------------------------------
# Fidelity


def init_adapter(rng: Array, c_in: int, c_out: int) -> dict:
    """A 1x1 conv C_in -> C_out as {"kernel": (C_in, C_out), "bias": (C_out,)}, LeCun-normal
    kernel, zero bias."""
    kernel = jax.random.normal(rng, (c_in, c_out), jnp.float32) / np.sqrt(c_in)
    return {"kernel": kernel, "bias": jnp.zeros((c_out,), jnp.float32)}


def apply_adapter(adapter: Mapping[str, Array], features: Array) -> Array:
    """1x1 conv: (N, H, W, C_in) -> (N, H, W, C_out)."""
    return features @ adapter["kernel"] + adapter["bias"]


def feature_fidelity(student: Array, teacher: Array, adapter: Mapping[str, Array], *,
                     scale: Array | float = 1.0) -> Array:
    """Normalised hint loss of one layer, per example.

    Args:
        student: (N, H, W, C_s) student features.
        teacher: (N, H, W, C_t) teacher features already on the student's grid.
        adapter: 1x1 conv params mapping C_s -> C_t (see `init_adapter`).
        scale: the layer's normaliser, the mean of teacher² over data (`teacher_scale`).

    Returns:
        (N,) mean over cells and channels of (A(S) - T)², divided by `scale`.
        Reference: PAPER.md §4 ([RECON], FitNets hint loss).
    """
    diff = apply_adapter(adapter, student) - jax.lax.stop_gradient(teacher)
    return jnp.mean(jnp.square(diff), axis=(1, 2, 3)) / scale


def teacher_scale(teacher: Array) -> Array:
    """Mean of teacher² over a batch: the per-layer fidelity normaliser (scalar)."""
    return jnp.mean(jnp.square(teacher))


def teacher_targets(teacher_features: Mapping[str, Array], *, pairs: Sequence[LayerPair],
                    alignments: Mapping[str, GridAlignment]) -> dict[str, Array]:
    """The teacher's maps resampled onto the student's grids, keyed by student stage.

    Args:
        teacher_features: teacher stage -> (N, H_t, W_t, C_t).
        pairs: the distilled layer pairs.
        alignments: student stage -> `GridAlignment` (teacher grid -> student grid).

    Returns:
        student stage -> (N, H_s, W_s, C_t).
    """
    return {p.student: align_to_grid(teacher_features[p.teacher], alignments[p.student])
            for p in pairs}


def fidelity_losses(student_features: Mapping[str, Array], targets: Mapping[str, Array],
                    adapters: Mapping[str, Mapping[str, Array]], *,
                    scales: Mapping[str, Array]) -> dict[str, Array]:
    """Per-layer fidelity losses, keyed by student stage.

    Args:
        student_features: stage -> (N, H, W, C_s) student maps.
        targets: student stage -> (N, H, W, C_t) teacher maps on the student's grid
            (`teacher_targets`); one loss per key.
        adapters: student stage -> adapter params.
        scales: student stage -> normaliser (mean teacher² on the student grid).

    Returns:
        student stage -> (N,) loss.
    """
    return {stage: feature_fidelity(student_features[stage], target, adapters[stage],
                                    scale=scales[stage])
            for stage, target in targets.items()}


# ---------------------------------------------------------------------------------------------
# Tracking


def shifted_gaussian_label(hw: tuple[int, int], sigma: float, shift: Array) -> Array:
    """Circular Gaussian labels peaked at a per-example (dy, dx) shift, in cells.

    Args:
        hw: static (H, W) grid.
        sigma: standard deviation in cells.
        shift: (N, 2) float shifts (dy, dx); (0, 0) gives `fourier.gaussian_label(hw, sigma)`.

    Returns:
        (N, H, W) float32; distances wrap around (index (0, 0) = no motion).
    """
    h, w = hw
    dy = jnp.arange(h, dtype=jnp.float32)[None, :] - shift[:, :1]
    dx = jnp.arange(w, dtype=jnp.float32)[None, :] - shift[:, 1:]
    dy = (dy + h / 2) % h - h / 2  # nearest circular distance
    dx = (dx + w / 2) % w - w / 2
    return jnp.exp(-(dy[:, :, None] ** 2 + dx[:, None, :] ** 2) / (2.0 * sigma ** 2))


def dcf_tracking_loss(template: Array, search: Array, search_label: Array, *, sigma: float,
                      lam: float = 1e-4, window: bool = False, unit: bool = True,
                      normalize_label: bool = True) -> Array:
    """DCF tracking loss of one layer, per example.

    Args:
        template: (N, H, W, C) features of the template crop (target centred).
        search: (N, H, W, C) features of the search crop.
        search_label: (N, H, W) desired response on the search crop (peak where the target is,
            e.g. `shifted_gaussian_label`).
        sigma: label σ in cells of the filter-learning label (peak at (0, 0)).
        lam: ridge regulariser λ, with DCFNet's 1/(MND) kernel normalisation.
        window: multiply both maps by a Hann window before the DFT (CFNet / trackers);
            DCFNet trains without one.
        unit: scale each map to unit mean energy first with the trackers' own
            `ctjax.features.cnn.normalize_energy` ([RECON]).
        normalize_label: divide by Σ y² of `search_label` ([RECON]; 1 = predicting zeros).

    Returns:
        (N,) Σ_cells (r - y)² (optionally / Σ y²). Reference: DCFNet `DCF.m` +
        `ResponseLossL2`, PAPER.md §5.1.
    """
    hw = template.shape[1:3]
    if unit:
        template, search = normalize_energy(template), normalize_energy(search)
    if window:
        hann = fourier.hann_window(hw)[None, :, :, None]
        template, search = template * hann, search * hann
    xf, zf = fourier.rfft2(template), fourier.rfft2(search)
    yf = fourier.rfft2_map(fourier.gaussian_label(hw, sigma))
    alphaf = dcf.dual_filter(xf, yf, lam=lam, normalize=True, hw=hw)
    response = dcf.dual_response(alphaf, xf, zf, hw=hw, normalize=True)
    loss = dcf.response_loss(response, search_label)
    if normalize_label:
        loss = loss / jnp.sum(jnp.square(search_label), axis=(-2, -1))
    return loss


def tracking_losses(template_features: Mapping[str, Array], search_features: Mapping[str, Array],
                    search_shift: Array, *, stages: Sequence[str], strides: Mapping[str, int],
                    sigmas: Mapping[str, float], lam: float = 1e-4, window: bool = False,
                    unit: bool = True, normalize_label: bool = True) -> dict[str, Array]:
    """Per-layer DCF tracking losses, keyed by stage.

    Args:
        template_features, search_features: stage -> (N, H, W, C) maps.
        search_shift: (N, 2) target centre in the search crop minus the crop centre, in crop
            pixels (dy, dx); the target moved by this much from template to search.
        stages: layers to score.
        strides: stage -> crop pixels per cell.
        sigmas: stage -> label σ in cells (`ctjax.ops.fourier.label_sigma`, the trackers'
            formula).
        lam, window, unit, normalize_label: see `dcf_tracking_loss`.

    Returns:
        stage -> (N,) loss.
    """
    out = {}
    for stage in stages:
        x, z = template_features[stage], search_features[stage]
        label = shifted_gaussian_label(x.shape[1:3], sigmas[stage], search_shift / strides[stage])
        out[stage] = dcf_tracking_loss(x, z, label, sigma=sigmas[stage], lam=lam, window=window,
                                       unit=unit, normalize_label=normalize_label)
    return out

"""Distillation steps: static set-up, train state, optimiser and the jitted-step factories.

The objective (PAPER.md §4-6, [RECON] where the paper is silent) is, per pair of a template
and a search crop,

    L = w_fid · Σ_l L_fid,l + w_track · Σ_l L_track,l

with the layer losses of `ctjax.distill.losses` (fidelity on both crops, averaged; DCF
tracking loss learned on the template, scored on the search crop). The student sees its
crops through `ctjax.models.preprocessing.normalize` (the trackers' `standardize`
arithmetic) and the tracking loss normalises its features with the trackers'
`ctjax.features.cnn.normalize_energy`.

Jit boundaries: the train step, the eval step and the teacher's feature function, each built
by a factory here and jitted once by the caller (`ctjax.distill.loop`). The teacher's
variables are an argument of every step, never closed over.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ctjax.distill import losses
from ctjax.distill.config import DistillConfig
from ctjax.models import preprocessing, registry
from ctjax.models.preprocessing import Preprocessing
from ctjax.models.student import student_preprocessing
from ctjax.ops import fourier


class Setup(NamedTuple):
    """Static (hashable or host-side) pieces the steps are built from."""
    student_config: registry.ModelConfig
    teacher_config: registry.ModelConfig
    student: Any
    teacher: Any
    student_prep: Preprocessing
    teacher_prep: Preprocessing
    pairs: tuple
    alignments: dict
    strides: dict
    sigmas: dict


def make_setup(config: DistillConfig, teacher_prep: Preprocessing | None = None) -> Setup:
    """Builds modules and the static geometry for a config."""
    student_config = registry.get_config(config.student)
    teacher_config = registry.get_config(config.teacher)
    hw = (config.pairs.crop_size, config.pairs.crop_size)
    pairs = tuple(losses.LayerPair(s, t) for s, t in config.layers)
    alignments = {p.student: losses.grid_alignment(student_config, p.student, teacher_config,
                                                   p.teacher, hw) for p in pairs}
    strides = {s: registry.stage_info(student_config, s).stride for s in config.track_layers}
    sigmas = {s: fourier.label_sigma(config.pairs.crop_size, config.pairs.context, strides[s],
                                     factor=config.sigma_factor) for s in config.track_layers}
    return Setup(student_config, teacher_config, registry.build_module(student_config),
                 registry.build_module(teacher_config), student_preprocessing(),
                 teacher_prep or preprocessing.imagenet_preprocessing(), pairs, alignments,
                 strides, sigmas)


def student_stages(config: DistillConfig) -> tuple[str, ...]:
    stages = set(config.track_layers) if config.tracking_weight > 0 else set()
    if config.fidelity_weight > 0:
        stages |= {s for s, _ in config.layers}
    return tuple(sorted(stages))


# ---------------------------------------------------------------------------------------------
# State, optimiser, steps


class TrainState(NamedTuple):
    """Everything that changes during training.

    Attributes:
        step: () int32, number of updates done.
        params: {"student": student variables, "adapters": {stage: 1x1 adapter}}.
        opt_state: optax state of `params`.
        scales: {stage: () float32} fidelity normalisers (mean teacher² on the student grid),
            fixed at the start of training.
    """
    step: jax.Array
    params: dict
    opt_state: Any
    scales: dict


def make_schedule(config: DistillConfig) -> optax.Schedule:
    """The learning-rate schedule of a config (with an optional linear warm-up)."""
    lr, end = config.learning_rate, config.learning_rate * config.final_lr_fraction
    decay_steps = max(config.steps - config.warmup_steps, 1)
    if config.schedule == "cosine":
        main = optax.cosine_decay_schedule(lr, decay_steps, alpha=config.final_lr_fraction)
    elif config.schedule == "exponential":
        main = optax.exponential_decay(lr, decay_steps, config.final_lr_fraction, end_value=end)
    else:
        main = optax.constant_schedule(lr)
    if config.warmup_steps <= 0:
        return main
    warm = optax.linear_schedule(0.0, lr, config.warmup_steps)
    return optax.join_schedules([warm, main], [config.warmup_steps])


def make_optimizer(config: DistillConfig) -> optax.GradientTransformation:
    """AdamW or SGD-momentum on the config's schedule, after global-norm clipping."""
    schedule = make_schedule(config)
    if config.optimizer == "adam":
        opt = optax.adamw(schedule, weight_decay=config.weight_decay)
    else:
        opt = optax.chain(optax.add_decayed_weights(config.weight_decay),
                          optax.sgd(schedule, momentum=config.momentum))
    if config.grad_clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(config.grad_clip), opt)
    return opt


def _he_normal(shapes: dict, rng: np.random.Generator) -> dict:
    """Kernels ~ N(0, 2 / fan_in) (MSRA / He), biases 0, drawn on the host.

    On the host because compiling JAX's threefry sampler for every kernel shape takes longer
    than a smoke run's training on a small CPU.
    """
    out = {}
    for path, shape in sorted(shapes.items()):
        if path[-1] == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            out[path] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        else:
            out[path] = np.zeros(shape, np.float32)
    return out


def init_params(config: DistillConfig, setup: Setup, seed: int) -> dict:
    """Random student ({"params": ...}) and one 1x1 adapter per fidelity layer (He normal)."""
    import flax.traverse_util as traverse

    hw = (config.pairs.crop_size, config.pairs.crop_size)
    abstract = jax.eval_shape(setup.student.init, jax.random.PRNGKey(0),
                              jax.ShapeDtypeStruct((1, *hw, 3), jnp.float32))
    shapes = {("student",) + k: v.shape for k, v in traverse.flatten_dict(abstract).items()}
    for pair in setup.pairs:
        c_in = registry.stage_info(setup.student_config, pair.student).channels
        c_out = registry.stage_info(setup.teacher_config, pair.teacher).channels
        shapes[("adapters", pair.student, "kernel")] = (c_in, c_out)
        shapes[("adapters", pair.student, "bias")] = (c_out,)
    params = traverse.unflatten_dict(_he_normal(shapes, np.random.default_rng([seed, 17])))
    params.setdefault("adapters", {})
    return jax.tree.map(jnp.asarray, params)


def init_state(config: DistillConfig, setup: Setup, optimizer, seed: int,
               scales: dict) -> TrainState:
    """Fresh training state: `init_params`, optimiser state, the fidelity normalisers."""
    params = init_params(config, setup, seed)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=jax.jit(optimizer.init)(params),
                      scales={k: jnp.asarray(v, jnp.float32) for k, v in scales.items()})


def make_teacher_fn(setup: Setup) -> Callable:
    """`teacher_fn(teacher_variables, images) -> {student stage: (N, h, w, C_t)}`: the frozen
    teacher's features of uint8 crops, resampled onto the student's grid (jit it)."""
    stages = tuple(sorted({p.teacher for p in setup.pairs}))

    def teacher_fn(teacher_variables, images):
        x = preprocessing.normalize(images, setup.teacher_prep)
        out = setup.teacher.apply(teacher_variables, x, stages=stages)
        return losses.teacher_targets(out, pairs=setup.pairs, alignments=setup.alignments)

    return teacher_fn


def _per_example_losses(params, scales, batch, targets, *, setup: Setup, config: DistillConfig):
    """Per-example component losses {name: (N,)} of one batch."""
    stages = student_stages(config)
    both = jnp.concatenate([batch["template"], batch["search"]], axis=0)
    x = preprocessing.normalize(both, setup.student_prep)
    feats = setup.student.apply(params["student"], x, stages=stages)
    n = batch["template"].shape[0]
    template = {k: v[:n] for k, v in feats.items()}
    search = {k: v[n:] for k, v in feats.items()}
    out = {}
    if config.fidelity_weight > 0:
        fid_t = losses.fidelity_losses(template, targets["template"], params["adapters"],
                                       scales=scales)
        fid = fid_t
        if config.fidelity_on_search:
            fid_s = losses.fidelity_losses(search, targets["search"], params["adapters"],
                                           scales=scales)
            fid = {k: 0.5 * (fid_t[k] + fid_s[k]) for k in fid_t}
        out.update({f"fid/{k}": v for k, v in fid.items()})
    if config.tracking_weight > 0:
        track = losses.tracking_losses(template, search, batch["shift"],
                                       stages=config.track_layers, strides=setup.strides,
                                       sigmas=setup.sigmas, lam=config.lam,
                                       window=config.track_window, unit=config.track_unit_energy)
        out.update({f"track/{k}": v for k, v in track.items()})
    return out


def _aligned_targets(batch):
    """Targets from a batch: already aligned teacher features (precomputed pool)."""
    return {"template": batch["teacher_template"], "search": batch.get("teacher_search")}


def _targets(teacher_fn, teacher_variables, batch, config: DistillConfig, cached: bool):
    if config.fidelity_weight <= 0:
        return None
    if cached:
        return jax.tree.map(lambda a: a.astype(jnp.float32), _aligned_targets(batch))
    targets = {"template": teacher_fn(teacher_variables, batch["template"])}
    targets["search"] = teacher_fn(teacher_variables, batch["search"]) \
        if config.fidelity_on_search else None
    return jax.lax.stop_gradient(targets)


def _total(components: dict, config: DistillConfig) -> jax.Array:
    """Per-example total loss (N,) from per-example components."""
    fid = sum((v for k, v in components.items() if k.startswith("fid/")), 0.0)
    track = sum((v for k, v in components.items() if k.startswith("track/")), 0.0)
    return config.fidelity_weight * fid + config.tracking_weight * track


def make_train_step(*, setup: Setup, config: DistillConfig,
                    optimizer: optax.GradientTransformation, cached: bool) -> Callable:
    """Builds `train_step(state, teacher_variables, batch) -> (state, metrics)`.

    Only the student's parameters and the adapters are differentiated; the teacher's
    variables are an argument (None when the targets come cached in the batch or fidelity is
    off). Jit the result once: it has no Python branches on traced values.

    Args:
        setup: static modules and geometry (`make_setup`).
        config: the run's config.
        optimizer: from `make_optimizer`.
        cached: the batch carries aligned teacher features ("teacher_template",
            "teacher_search") instead of the teacher being run in the step.

    Returns:
        The step function; metrics are batch means of every loss component plus "loss",
        "grad_norm" and "lr".
    """
    teacher_fn = make_teacher_fn(setup)
    schedule = make_schedule(config)

    def train_step(state: TrainState, teacher_variables, batch):
        targets = _targets(teacher_fn, teacher_variables, batch, config, cached)

        def loss_fn(params):
            comps = _per_example_losses(params, state.scales, batch, targets, setup=setup,
                                        config=config)
            return jnp.mean(_total(comps, config)), comps

        (loss, comps), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {k: jnp.mean(v) for k, v in comps.items()}
        metrics.update(loss=loss, grad_norm=optax.tree.norm(grads), lr=schedule(state.step))
        new_state = state._replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    return train_step


def make_eval_step(*, setup: Setup, config: DistillConfig, cached: bool) -> Callable:
    """Builds `eval_step(params, scales, teacher_variables, batch) -> metrics` (sums over the
    batch, so the caller can average over a whole validation set)."""
    teacher_fn = make_teacher_fn(setup)

    def eval_step(params, scales, teacher_variables, batch):
        targets = _targets(teacher_fn, teacher_variables, batch, config, cached)
        comps = _per_example_losses(params, scales, batch, targets, setup=setup, config=config)
        metrics = {k: jnp.sum(v) for k, v in comps.items()}
        metrics["loss"] = jnp.sum(_total(comps, config))
        return metrics

    return eval_step

"""Offline distillation of a CF-VGGM student from a frozen teacher (fidelity + tracking loss).

The objective (PAPER.md §4-6, [RECON] where the paper is silent) is, per pair of a template
and a search crop,

    L = w_fid · Σ_l L_fid,l + w_track · Σ_l L_track,l

with the layer losses of `ctjax.losses` (fidelity on both crops, averaged; DCF tracking loss
learned on the template, scored on the search crop). Defaults are in `DistillConfig`; the
experiments in `experiments/distill_*.py` change a few of them.

Jit boundaries: the train step, the eval step and the teacher's feature function, each built
by a factory here and jitted once by the caller. The teacher's variables are an argument of
every step, never closed over. Data: either fresh pairs each step with the teacher run inside
the step (`pool_pairs = 0`; the GPU setting), or a fixed pool of pairs whose teacher targets
are computed once and cached in the work folder (`pool_pairs > 0`; on one CPU core the
teacher costs about ten times the student's forward and backward pass). Batches are pure
functions of (seed, step), so a killed run resumes where it stopped with the same data.

Batches are sharded over all devices along the batch axis; parameters are replicated.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import ctjax
from ctjax.distill import checkpoint, losses
from ctjax.models import preprocessing, registry
from ctjax.models.preprocessing import Preprocessing



@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """Everything a distillation run depends on (saved as `config.json` in the work folder).

    Models: `student` / `teacher` are `ctjax.models.registry` names; `teacher_weights` is a
    path, "" for the default EfficientNet-Lite0 file, or "random" (a random teacher, for tests
    without data). `layers` pairs (student stage, teacher stage) for the fidelity loss;
    `track_layers` are the student stages of the tracking loss.
    Losses: `fidelity_weight`, `tracking_weight` (w_fid, w_track); `lam` (λ of the DCF, with
    1/(MND)); `sigma_factor` (label σ / target size); `track_window` (Hann window before the
    DFT); `track_unit_energy`; `fidelity_on_search` (fidelity on both crops, else template).
    Data: `data_kind` ("otb", "got10k", "ilsvrc_vid"); `sequences` (None = the train split;
    on the command line `sequences=Woman+Surfer`);
    `manual_dir` ("" = the shared sequence folder); crop and pair settings as in
    `ctjax.data.pairs.PairConfig`; `pool_pairs` (0 = fresh pairs, teacher in the step);
    `val_pairs` (held-out pairs from the same training sequences, another seed).
    Optimisation: `optimizer` "adam" (AdamW) or "sgd" (momentum); `schedule` "cosine",
    "exponential" (DCFNet's logspace) or "constant", from `learning_rate` to
    `learning_rate * final_lr_fraction`; `grad_clip` (global norm, 0 = off).
    Loop: `log_every`, `eval_every`, `checkpoint_every` steps; `keep_checkpoints` newest kept.
    """
    name: str = "distill"
    student: str = "cf_vggm_r64"
    teacher: str = "efficientnet_lite0"
    teacher_weights: str = ""
    layers: tuple = (("conv1", "stride2"), ("conv3", "stride8"), ("conv5", "stride16"))
    track_layers: tuple = ("conv1", "conv3", "conv5")
    fidelity_weight: float = 1.0
    tracking_weight: float = 1.0
    lam: float = 1e-4
    sigma_factor: float = 0.1
    track_window: bool = False
    track_unit_energy: bool = True
    fidelity_on_search: bool = True
    data_kind: str = "otb"
    sequences: tuple | None = None
    manual_dir: str = ""
    crop_size: int = 160
    context: float = 4.5
    max_gap: int = 10
    max_jitter: int = 16
    jitter_step: int = 16
    pool_pairs: int = 2000
    val_pairs: int = 64
    batch_size: int = 16
    steps: int = 2500
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "cosine"
    final_lr_fraction: float = 0.01
    warmup_steps: int = 100
    momentum: float = 0.9
    weight_decay: float = 0.0
    grad_clip: float = 10.0
    seed: int = 0
    log_every: int = 10
    eval_every: int = 500
    checkpoint_every: int = 250
    keep_checkpoints: int = 3

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(tuple(p) for p in self.layers))
        object.__setattr__(self, "track_layers", tuple(self.track_layers))
        if isinstance(self.sequences, str):  # "Woman+Surfer" from a command-line override
            object.__setattr__(self, "sequences", tuple(self.sequences.split("+")))
        elif self.sequences is not None:
            object.__setattr__(self, "sequences", tuple(self.sequences))
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "exponential", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}")
        if self.fidelity_weight <= 0 and self.tracking_weight <= 0:
            raise ValueError("at least one of fidelity_weight, tracking_weight must be > 0")

    @property
    def uses_teacher(self) -> bool:
        return self.fidelity_weight > 0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "DistillConfig":
        return cls(**data)


def override(config: DistillConfig, arg: str, *, presets: dict[str, dict] | None = None) -> DistillConfig:
    """Applies a config-file argument: comma-separated preset names and key=value pairs.

    Example: `"smoke"`, `"r32,smoke"`, `"steps=500,learning_rate=3e-4"`. Values are parsed as
    Python literals when possible (numbers, tuples, None, True), else kept as strings.

    Raises:
        ValueError: an unknown preset or an unknown config key.
    """
    import ast

    presets = presets or {}
    fields = {f.name for f in dataclasses.fields(DistillConfig)}
    for token in filter(None, (t.strip() for t in arg.split(","))):
        if "=" not in token:
            if token not in presets:
                raise ValueError(f"unknown config variant {token!r}; known: {sorted(presets)}")
            changes = presets[token]
        else:
            key, value = token.split("=", 1)
            try:
                changes = {key.strip(): ast.literal_eval(value)}
            except (ValueError, SyntaxError):
                changes = {key.strip(): value}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}; known: {sorted(fields)}")
        config = dataclasses.replace(config, **changes)
    return config


# Small enough for CI: tiny crops, a tiny pool, a handful of steps (see the experiments).
SMOKE = dict(crop_size=80, batch_size=2, pool_pairs=2, val_pairs=2, steps=6,
             learning_rate=3e-3, warmup_steps=0, schedule="constant", sequences=("Woman",),
             log_every=1, eval_every=4, checkpoint_every=4, keep_checkpoints=2)


def load_config(spec: str) -> DistillConfig:
    """Loads `path/to/experiment.py[:arg]` by calling its `get_config(arg)`."""
    path, _, arg = spec.partition(":")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    module_spec = importlib.util.spec_from_file_location(f"ctjax_experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg)
    if not isinstance(config, DistillConfig):
        raise TypeError(f"{path}: get_config must return a DistillConfig, got {type(config)}")
    return config


# ---------------------------------------------------------------------------------------------
# Static set-up: modules, geometry, label widths


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


def student_preprocessing() -> Preprocessing:
    """Input normalisation of trained students: 0..255 RGB minus the VGG-M mean colour."""
    return preprocessing.vggm_preprocessing(np.asarray(preprocessing.VGGM_MEAN_RGB, np.float32))


def make_setup(config: DistillConfig, teacher_prep: Preprocessing | None = None) -> Setup:
    """Builds modules and the static geometry for a config."""
    student_config = registry.get_config(config.student)
    teacher_config = registry.get_config(config.teacher)
    hw = (config.crop_size, config.crop_size)
    pairs = tuple(losses.LayerPair(s, t) for s, t in config.layers)
    alignments = {p.student: losses.grid_alignment(student_config, p.student, teacher_config,
                                                   p.teacher, hw) for p in pairs}
    strides = {s: registry.stage_info(student_config, s).stride for s in config.track_layers}
    sigmas = {s: losses.label_sigma(config.crop_size, config.context, strides[s],
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

    hw = (config.crop_size, config.crop_size)
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


# ---------------------------------------------------------------------------------------------
# Data: pair pools with cached teacher targets, or fresh pairs


def _fingerprint(config: DistillConfig, which: str) -> str:
    # Only the student's family matters (its grid geometry): every VGG-M width shares a pool.
    keys = ("teacher", "teacher_weights", "layers", "data_kind", "sequences",
            "manual_dir", "crop_size", "context", "max_gap", "max_jitter", "jitter_step",
            "pool_pairs", "val_pairs", "seed", "fidelity_on_search", "fidelity_weight")
    data = {k: getattr(config, k) for k in keys}
    data.update(which=which, fidelity_weight=config.fidelity_weight > 0,
                student_family=registry.get_config(config.student).family)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_pool(sampler, n: int, *, seed: int, teacher_fn, teacher_variables, config: DistillConfig,
               cache_dir: Path | None, desc: str) -> dict[str, np.ndarray]:
    """`n` pairs with their aligned teacher targets (float16), cached in `cache_dir`.

    The pool is a pure function of (config, seed), so a cached copy is reused on resume.
    """
    from tqdm import tqdm

    if cache_dir is not None:
        folder = cache_dir / f"{desc}_{_fingerprint(config, desc)}"
        if (folder / "complete").is_file():
            return {p.stem: np.load(p, mmap_mode="r") for p in folder.glob("*.npy")}
    chunk = 32
    parts: dict[str, list] = {}
    for start in tqdm(range(0, n, chunk), desc=f"{desc} pool: pairs + teacher", unit="chunk"):
        batch = sampler.sample(np.random.default_rng([seed, start]), min(chunk, n - start))
        batch.pop("index")
        if config.uses_teacher:
            batch["teacher_template"] = teacher_fn(teacher_variables, batch["template"])
            if config.fidelity_on_search:
                batch["teacher_search"] = teacher_fn(teacher_variables, batch["search"])
        for key, value in batch.items():
            if key.startswith("teacher_"):
                for stage, arr in value.items():
                    parts.setdefault(f"{key}.{stage}", []).append(np.asarray(arr, np.float16))
            else:
                parts.setdefault(key, []).append(np.asarray(value))
    pool = {k: np.concatenate(v) for k, v in parts.items()}
    if cache_dir is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for key, value in pool.items():
            np.save(folder / f"{key}.npy", value)
        (folder / "complete").write_text("ok\n")
    return pool


def pool_batch(pool: dict[str, np.ndarray], index: np.ndarray) -> dict:
    """Rows `index` of a pool, with teacher targets regrouped as {"teacher_template": {...}}."""
    batch: dict = {}
    for key, value in pool.items():
        rows = np.asarray(value[np.sort(index)])
        if "." in key:
            group, stage = key.split(".", 1)
            batch.setdefault(group, {})[stage] = rows
        else:
            batch[key] = rows
    return batch


def estimate_scales(config: DistillConfig, pool: dict | None, sample_targets: Callable) -> dict:
    """Fidelity normalisers: mean of teacher² per layer over the pool (or a few batches)."""
    if not config.uses_teacher:
        return {}
    if pool is not None:
        return {stage: float(np.mean(np.square(pool[f"teacher_template.{stage}"],
                                               dtype=np.float32)))
                for stage, _ in config.layers}
    targets = sample_targets()
    return {stage: float(np.mean(np.square(np.asarray(v)))) for stage, v in targets.items()}


# ---------------------------------------------------------------------------------------------
# The training loop


def _load_teacher(config: DistillConfig, setup_hw):
    from ctjax.models import weights

    if not config.uses_teacher:
        return None, None
    if config.teacher_weights == "random":
        cfg = registry.get_config(config.teacher)
        variables = registry.init_variables(cfg, jax.random.PRNGKey(config.seed + 7),
                                            input_hw=setup_hw)
        return variables, "random init"
    if config.teacher != "efficientnet_lite0":
        raise ValueError(f"no weight loader for teacher {config.teacher!r}")
    loaded = weights.load_efficientnet_lite0(config.teacher_weights or None)
    return loaded.variables, Path(loaded.source).name  # no machine paths in shipped metadata


class _Data(NamedTuple):
    """The training frames, the pair sampler and the pools (None when not used)."""
    names: list
    sampler: Any
    pool: dict | None
    val_pool: dict | None


def _prepare_data(config: DistillConfig, workdir: Path, cache_dir, teacher_fn,
                  teacher_variables) -> _Data:
    from ctjax.data import pairs

    source = pairs.training_source(config.sequences, data_dir=workdir / "tfds",
                                   manual_dir=config.manual_dir or None, kind=config.data_kind)
    sampler = pairs.PairSampler(source, pairs.PairConfig(
        crop_size=config.crop_size, context=config.context, max_gap=config.max_gap,
        max_jitter=config.max_jitter, jitter_step=config.jitter_step))
    args = dict(teacher_fn=teacher_fn, teacher_variables=teacher_variables, config=config,
                cache_dir=Path(cache_dir) if cache_dir else workdir / "pools")
    pool = build_pool(sampler, config.pool_pairs, seed=config.seed, desc="train",
                      **args) if config.pool_pairs > 0 else None
    val_pool = build_pool(sampler, config.val_pairs, seed=config.seed + 1_000_003, desc="val",
                          **args) if config.val_pairs > 0 else None
    return _Data(list(source.names), sampler, pool, val_pool)


def _check_workdir(config: DistillConfig, workdir: Path):
    """Writes `config.json`, or checks that a resumed run has the same config."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "config.json"
    if config_file.is_file():
        saved = DistillConfig.from_json(json.loads(config_file.read_text()))
        if saved != config:
            raise ValueError(f"{workdir} holds a run with a different config ({config_file}); "
                             "use another --workdir")
    else:
        config_file.write_text(json.dumps(config.to_json(), indent=1) + "\n")


def _batch_fn(config: DistillConfig, data: _Data, sharding) -> Callable[[int], dict]:
    """`batch(step)`: the step's training batch (a pure function of seed and step)."""
    def batch(step: int) -> dict:
        if data.pool is not None:
            rng = np.random.default_rng([config.seed, 1, step])
            out = pool_batch(data.pool, rng.choice(config.pool_pairs, config.batch_size,
                                                   replace=False))
        else:
            out = data.sampler.batch(config.seed, step, config.batch_size)
            out.pop("index")
        return jax.device_put(out, sharding)

    return batch


def _evaluator(config: DistillConfig, eval_step, teacher_variables, val_pool) -> Callable:
    """`evaluate(params, scales) -> metrics`: means over the validation pool."""
    def evaluate(params, scales) -> dict:
        if val_pool is None:
            return {}
        sums: dict = {}
        for lo in range(0, config.val_pairs, config.batch_size):
            idx = np.arange(lo, min(lo + config.batch_size, config.val_pairs))
            metrics = eval_step(params, scales, teacher_variables, pool_batch(val_pool, idx))
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        return {k: v / config.val_pairs for k, v in sums.items()}

    return evaluate


def _mean_metrics(history: list[dict]) -> dict:
    return {k: float(np.mean([h[k] for h in history])) for k in history[0]} if history else {}


def train_and_evaluate(config: DistillConfig, workdir, *, stop_after: int | None = None,
                       progress: bool = True, cache_dir=None) -> dict:
    """Runs (or resumes) a distillation run in `workdir`; returns the training summary.

    Args:
        config: the run's config; must equal `workdir/config.json` when resuming.
        workdir: output folder: config.json, checkpoints/, log.jsonl (one JSON record per
            logged step, "split" train or val), summary.json, pools/, tfds/ (the prepared
            training frames).
        stop_after: stop (as if killed) once this many steps are done in total; the last
            step is checkpointed. None = run to `config.steps`.
        progress: show a tqdm bar.
        cache_dir: where pair pools with teacher targets are cached (default
            `workdir/pools`); runs with the same data settings can share one.

    Returns:
        The summary (also written to `workdir/summary.json` when training is complete).
        "wall_time_s" adds up every process of the run, set-up included.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    workdir = Path(workdir)
    _check_workdir(config, workdir)
    setup = make_setup(config)
    teacher_variables, teacher_source = _load_teacher(config, (config.crop_size,) * 2)
    optimizer = make_optimizer(config)
    teacher_fn = jax.jit(make_teacher_fn(setup))
    cached = config.pool_pairs > 0
    data = _prepare_data(config, workdir, cache_dir, teacher_fn, teacher_variables)

    devices = jax.devices()
    if config.batch_size % len(devices):
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the "
                         f"{len(devices)} devices")
    mesh = Mesh(np.asarray(devices), ("data",))
    train_batch = _batch_fn(config, data, NamedSharding(mesh, PartitionSpec("data")))
    scales = estimate_scales(config, data.pool,
                             lambda: teacher_fn(teacher_variables, train_batch(0)["template"]))
    ckpt = checkpoint.Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints)
    fresh = init_state(config, setup, optimizer, config.seed, scales)
    restored = ckpt.restore_latest(fresh)
    state, meta = restored if restored is not None else (fresh, {"wall_time": 0.0})
    state = jax.device_put(state, NamedSharding(mesh, PartitionSpec()))
    start, wall0 = int(state.step), float(meta.get("wall_time", 0.0))

    traces = []
    raw_step = make_train_step(setup=setup, config=config, optimizer=optimizer, cached=cached)

    def counted(*args):
        traces.append(1)  # runs at trace time only
        return raw_step(*args)

    train_step = jax.jit(counted, donate_argnums=(0,))
    evaluate = _evaluator(config, jax.jit(make_eval_step(setup=setup, config=config,
                                                         cached=cached)),
                          teacher_variables, data.val_pool)
    end = config.steps if stop_after is None else min(stop_after, config.steps)
    history: list[dict] = []
    last_val: dict = dict(meta.get("last_val", {}))
    with (workdir / "log.jsonl").open("a") as log, tqdm(
            range(start, end), initial=start, total=config.steps, disable=not progress,
            desc=config.name, unit="step") as bar:
        for step in bar:
            state, metrics = train_step(state, None if cached else teacher_variables,
                                        train_batch(step))
            done = step + 1
            if done % config.log_every == 0 or done == end:
                history.append({k: float(v) for k, v in jax.device_get(metrics).items()})
                log.write(json.dumps({"step": done, "split": "train",
                                      "time": wall0 + time.perf_counter() - t0,
                                      **history[-1]}) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
            if done % config.eval_every == 0 or done == config.steps:
                last_val = evaluate(state.params, state.scales)
                log.write(json.dumps({"step": done, "split": "val", **last_val}) + "\n")
                log.flush()
            if done % config.checkpoint_every == 0 or done == end:
                ckpt.save(done, state, {"wall_time": wall0 + time.perf_counter() - t0,
                                        "last_val": last_val})
    ckpt.wait()
    if len(traces) > 1:
        raise RuntimeError(f"the train step was traced {len(traces)} times (expected once)")
    summary = {
        "name": config.name, "steps": int(state.step), "complete": int(state.step) >= config.steps,
        "wall_time_s": round(wall0 + time.perf_counter() - t0, 1),
        "train_step_traces": len(traces),
        "final_train": _mean_metrics(history[-max(1, 50 // config.log_every):]),
        "final_val": last_val, "teacher": config.teacher if config.uses_teacher else None,
        "teacher_weights": teacher_source, "student": config.student,
        "data": {"kind": config.data_kind, "sequences": data.names,
                 "pool_pairs": config.pool_pairs, "crop_size": config.crop_size},
        "devices": [str(d) for d in devices], "ctjax_version": ctjax.__version__,
    }
    if summary["complete"]:
        (workdir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


# ---------------------------------------------------------------------------------------------
# Command line (`ctjax distill`)


def add_distill_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `ctjax distill`."""
    parser.description = ("Offline distillation of a student (fidelity + tracking loss). "
                          "Resumes when --workdir holds a checkpoint.")
    parser.add_argument("--config", required=True,
                        help="experiments/<name>.py[:arg], e.g. experiments/distill_fid_track.py:smoke")
    parser.add_argument("--workdir", required=True, help="output folder (checkpoints, logs)")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop once this many steps are done (resume later)")
    parser.add_argument("--cache-dir", default=None,
                        help="folder for cached pair pools + teacher targets (default "
                             "WORKDIR/pools); runs with the same data settings can share it")
    parser.add_argument("--single-core", action="store_true",
                        help="pin the process to one CPU core (ctjax.runtime.configure)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def run_distill(args) -> int:
    """Entry point of `ctjax distill`."""
    if args.single_core:
        from ctjax import runtime
        print(runtime.configure(single_thread=True).summary())
    config = load_config(args.config)
    summary = train_and_evaluate(config, args.workdir, stop_after=args.stop_after,
                                 progress=not args.no_progress, cache_dir=args.cache_dir)
    print(json.dumps({k: summary[k] for k in ("name", "steps", "complete", "wall_time_s",
                                              "final_train", "final_val")}, indent=1))
    return 0

"""Training checkpoints (Orbax) and exported students: the only module that imports Orbax.

* `Checkpointer`: saves the whole `ctjax.distill.loop.TrainState` plus a small JSON record (wall
  time, last validation metrics) every few steps under `<workdir>/checkpoints/<step>/`,
  keeps the newest N, and restores the newest into an abstract target of the same structure
  (bit-exact on CPU).
* Exported student: a folder, small enough to ship (about 0.4 MB for CF-VGGM r64):

      student.json   {"format": "ctjax-student", "format_version": 1, "ctjax_version",
                      "model": {"name", "family", "widths"}, "preprocessing": {"mean", "std",
                      "input_scale"}, "params_sha256", "training": {summary of the run}}
      params.npz     the student's Flax params, flattened as "conv1/kernel", "conv1/bias", ...

  `load_student(path)` validates it (format marker and version, model config, every array's
  shape against the architecture, the checksum) and returns a
  `ctjax.models.weights.LoadedModel` for `ctjax track --weights PATH`. Adapters, the teacher
  and the optimiser state are not exported.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

import ctjax
from ctjax.models import registry
from ctjax.models.preprocessing import Preprocessing
from ctjax.models.weights import LoadedModel

STUDENT_FORMAT = "ctjax-student"
STUDENT_FORMAT_VERSION = 1
STUDENT_JSON = "student.json"
STUDENT_PARAMS = "params.npz"


class StudentFileError(ValueError):
    """An exported student is missing, not a ctjax student, corrupt, or inconsistent."""


class Checkpointer:
    """Keeps the newest `keep` checkpoints of a run in `directory` (Orbax CheckpointManager)."""

    def __init__(self, directory, *, keep: int = 3):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

    def save(self, step: int, state: Any, meta: dict | None = None):
        """Saves `state` (any pytree) and a JSON-serialisable `meta` as checkpoint `step`."""
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {})))

    def wait(self):
        """Blocks until asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def steps(self) -> list[int]:
        """Steps of the checkpoints on disk, oldest first."""
        return sorted(self._manager.all_steps())

    def restore(self, step: int, target: Any) -> tuple[Any, dict]:
        """Restores checkpoint `step` into the structure, shapes and dtypes of `target`."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return out.state, dict(out.meta or {})

    def restore_latest(self, target: Any) -> tuple[Any, dict] | None:
        """`restore` of the newest checkpoint, or None when there is none."""
        step = self._manager.latest_step()
        return None if step is None else self.restore(step, target)


# ---------------------------------------------------------------------------------------------
# Exported students


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def export_student(output, variables: dict, *, config: registry.ModelConfig,
                   preprocessing: Preprocessing, training: dict | None = None) -> Path:
    """Writes a student folder (`student.json` + `params.npz`, see the module docstring).

    Args:
        output: the folder to create (an existing student there is replaced).
        variables: the student's Flax variables `{"params": {...}}`.
        config: its `ModelConfig` (a VGG-M-family config).
        preprocessing: the input normalisation it was trained with.
        training: JSON-serialisable summary of how it was trained.

    Returns:
        The folder.
    """
    output = Path(output)
    if output.exists() and not (output / STUDENT_JSON).is_file():
        raise FileExistsError(f"{output} exists and is not a ctjax student export; refusing "
                              "to overwrite it")
    flat = flax.traverse_util.flatten_dict(dict(variables["params"]), sep="/")
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v, np.float32) for k, v in sorted(flat.items())})
    data = buffer.getvalue()
    meta = {
        "format": STUDENT_FORMAT, "format_version": STUDENT_FORMAT_VERSION,
        "ctjax_version": ctjax.__version__,
        "model": {"name": config.name, "family": config.family,
                  "widths": list(config.widths) if config.widths else None},
        "preprocessing": {"mean": np.asarray(preprocessing.mean).tolist(),
                          "std": None if preprocessing.std is None
                          else np.asarray(preprocessing.std).tolist(),
                          "input_scale": float(preprocessing.input_scale)},
        "params_sha256": _sha256(data), "training": training or {},
    }
    output.mkdir(parents=True, exist_ok=True)
    (output / STUDENT_PARAMS).write_bytes(data)
    (output / STUDENT_JSON).write_text(json.dumps(meta, indent=1) + "\n")
    return output


def _read_meta(path: Path) -> dict:
    if not path.exists():
        raise StudentFileError(f"student not found: {path}")
    if not path.is_dir() or not (path / STUDENT_JSON).is_file():
        raise StudentFileError(f"{path} is not a ctjax student export: expected a folder with "
                               f"{STUDENT_JSON} and {STUDENT_PARAMS} (made by `ctjax export`)")
    try:
        meta = json.loads((path / STUDENT_JSON).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StudentFileError(f"{path / STUDENT_JSON} is corrupt (not JSON): {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != STUDENT_FORMAT:
        raise StudentFileError(f"{path / STUDENT_JSON} is not a ctjax student description "
                               f"(format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("format_version") != STUDENT_FORMAT_VERSION:
        raise StudentFileError(f"{path}: student format version {meta.get('format_version')!r} "
                               f"is not supported by ctjax {ctjax.__version__} (expects "
                               f"{STUDENT_FORMAT_VERSION})")
    return meta


def _model_config(path: Path, model: dict) -> registry.ModelConfig:
    try:
        config = registry.ModelConfig(model["name"], model["family"], model.get("widths"))
    except (KeyError, TypeError, ValueError) as e:
        raise StudentFileError(f"{path}: invalid model description {model!r}: {e}") from e
    if config.family != "vggm":
        raise StudentFileError(f"{path}: only VGG-M-family students are supported, got "
                               f"family {config.family!r}")
    known = registry.MODEL_CONFIGS.get(config.name)
    if known is not None and known != config:
        raise StudentFileError(f"{path}: model {config.name!r} has widths {config.widths}, but "
                               f"the registered {config.name!r} has {known.widths}")
    return config


def load_student(path) -> LoadedModel:
    """Loads a student exported by `export_student` / `ctjax export`.

    Raises:
        StudentFileError: missing path; not a student folder; corrupt JSON or arrays; checksum,
            format version, model config or array shapes that do not match.
    """
    path = Path(path)
    meta = _read_meta(path)
    config = _model_config(path, meta.get("model", {}))
    params_file = path / STUDENT_PARAMS
    if not params_file.is_file():
        raise StudentFileError(f"{path}: {STUDENT_PARAMS} is missing")
    data = params_file.read_bytes()
    if _sha256(data) != meta.get("params_sha256"):
        raise StudentFileError(f"{params_file} is corrupt: its checksum does not match "
                               f"{STUDENT_JSON}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            flat = {k: archive[k] for k in archive.files}
    except Exception as e:
        raise StudentFileError(f"{params_file} is not a readable .npz ({type(e).__name__}: {e})") from e
    abstract = jax.eval_shape(registry.build_module(config).init, jax.random.key(0),
                              jnp.zeros((1, 96, 96, 3), jnp.float32))["params"]
    expected = flax.traverse_util.flatten_dict(dict(abstract), sep="/")
    if set(flat) != set(expected):
        raise StudentFileError(f"{params_file}: arrays {sorted(flat)} do not match the "
                               f"{config.name} architecture {sorted(expected)}")
    for key, spec in expected.items():
        if flat[key].shape != spec.shape:
            raise StudentFileError(f"{params_file}: {key} has shape {flat[key].shape}, "
                                   f"{config.name} needs {spec.shape}")
    params = flax.traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()},
                                               sep="/")
    prep_meta = meta.get("preprocessing", {})
    try:
        prep = Preprocessing(mean=np.asarray(prep_meta["mean"], np.float32),
                             std=None if prep_meta.get("std") is None
                             else np.asarray(prep_meta["std"], np.float32),
                             input_scale=float(prep_meta.get("input_scale", 1.0)))
    except (KeyError, TypeError, ValueError) as e:
        raise StudentFileError(f"{path}: invalid preprocessing {prep_meta!r}: {e}") from e
    return LoadedModel(config=config, variables={"params": params}, preprocessing=prep,
                       source=str(path))


def student_info(path) -> dict:
    """The validated `student.json` of an exported student (its training summary etc.)."""
    return _read_meta(Path(path))


# ---------------------------------------------------------------------------------------------
# Command line (`ctjax export`)


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `ctjax export`."""
    parser.description = ("Export the student of a distillation run (newest checkpoint) as a "
                          "folder that `ctjax track --weights` loads.")
    parser.add_argument("--workdir", required=True, help="the run's folder (ctjax distill --workdir)")
    parser.add_argument("--output", required=True, help="student folder to write")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default newest)")
    return parser


def export_run(workdir, output, *, step: int | None = None) -> Path:
    """Exports the student of checkpoint `step` (default newest) of a run folder."""
    from ctjax.distill import loop as train

    workdir = Path(workdir)
    config_file = workdir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{workdir} is not a distillation run folder (no config.json)")
    config = train.DistillConfig.from_json(json.loads(config_file.read_text()))
    ckpt = Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints)
    steps = ckpt.steps()
    if not steps:
        raise FileNotFoundError(f"{workdir / 'checkpoints'} holds no checkpoint")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise ValueError(f"no checkpoint for step {step}; available: {steps}")
    setup = train.make_setup(config)
    optimizer = train.make_optimizer(config)
    scales = {s: 1.0 for s, _ in config.layers} if config.uses_teacher else {}
    target = train.init_state(config, setup, optimizer, 0, scales)
    state, meta = ckpt.restore(step, target)
    summary_file = workdir / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    training = {"checkpoint_step": step, "config": config.to_json(), "summary": summary,
                "wall_time_s": meta.get("wall_time"), "last_val": meta.get("last_val")}
    return export_student(output, state.params["student"], config=setup.student_config,
                          preprocessing=setup.student_prep, training=training)


def run_export(args) -> int:
    """Entry point of `ctjax export`."""
    out = export_run(args.workdir, args.output, step=args.step)
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"exported {out} ({size / 1024:.0f} KiB); use: ctjax track --weights {out}")
    return 0

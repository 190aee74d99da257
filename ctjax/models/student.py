"""Students on disk: the exported-student format and the one loader the trackers use.

An exported student is a folder, small enough to ship (about 0.4 MB for CF-VGGM r64), written
by distillation (`ctjax export`) and read here with NumPy and JSON only (no Orbax, no
training code):

    student.json   {"format": "ctjax-student", "format_version": 1, "ctjax_version",
                    "model": {"name", "family", "widths"}, "preprocessing": {"mean", "std",
                    "input_scale"}, "params_sha256", "training": {summary of the run}}
    params.npz     the student's Flax params, flattened as "conv1/kernel", "conv1/bias", ...

`read_student(path)` validates a folder (format marker and version, model config, every
array's shape against the architecture, the checksum); `load_student(weights)` resolves what a
user names (nothing = the shipped student, "released" = the authors' `CF_VGGM.mat`, a `.mat`
file, or an exported folder) into a `ctjax.models.weights.LoadedModel`. Adapters, the teacher
and the optimiser state are never exported.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

import ctjax
from ctjax import paths
from ctjax.models import preprocessing, registry
from ctjax.models.preprocessing import Preprocessing
from ctjax.models.weights import LoadedModel, load_matconvnet_simplenn

STUDENT_FORMAT = "ctjax-student"
STUDENT_FORMAT_VERSION = 1
STUDENT_JSON = "student.json"
STUDENT_PARAMS = "params.npz"
SHIPPED_STUDENT = paths.ASSETS / "students" / "ctjax_cfvggm_r64"


class StudentFileError(ValueError):
    """An exported student is missing, not a ctjax student, corrupt, or inconsistent."""


def student_preprocessing() -> Preprocessing:
    """Input normalisation of students trained here: 0..255 RGB minus the VGG-M mean colour."""
    return preprocessing.vggm_preprocessing(np.asarray(preprocessing.VGGM_MEAN_RGB, np.float32))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_student(output, variables: dict, *, config: registry.ModelConfig,
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

    Raises:
        FileExistsError: `output` exists and is not a student folder.
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


def read_student(path) -> LoadedModel:
    """Loads a student folder written by `write_student` / `ctjax export`.

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


def load_student(weights: str | Path | None = None) -> LoadedModel:
    """Loads a CF-VGGM-family student, whatever form it comes in.

    Args:
      weights: None for the shipped ctjax student; "released" for the authors'
        `CF_VGGM.mat` under `$CTJAX_DATA/weights`; a `.mat` path (MatConvNet simplenn);
        or the folder of a student exported by `ctjax export`.

    Returns:
      `ctjax.models.weights.LoadedModel`.

    Raises:
      FileNotFoundError: the weights do not exist (a `DataNotFoundError` naming
        `CTJAX_DATA` for "released").
      StudentFileError, WeightFileError: the file is not a valid student.
    """
    if weights is None:
        if not SHIPPED_STUDENT.exists():
            raise FileNotFoundError(
                f"the shipped student is missing ({SHIPPED_STUDENT}); pass --weights released "
                "(needs $CTJAX_DATA/weights/CF_VGGM.mat) or --weights PATH")
        weights = SHIPPED_STUDENT
    if str(weights) == "released":
        weights = paths.released_student()
    weights = Path(weights)
    if not weights.exists():
        raise FileNotFoundError(f"weights not found: {weights}")
    if weights.suffix == ".mat":
        return load_matconvnet_simplenn(weights)
    return read_student(weights)

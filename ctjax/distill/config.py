"""The distillation run's config: a frozen dataclass nesting the pair sampler's config.

Experiment files (`experiments/distill_*.py`) expose `get_config(arg="")`, which builds a
`DistillConfig` and applies `override(config, arg, presets=...)`: comma-separated preset names
(e.g. `smoke`) and `key=value` pairs, with dotted keys for the nested pair config
(`pairs.crop_size=96`). Unknown keys are errors, and so are values of the wrong type
(`steps=abc`, `pairs.crop_size=1.5`) or out of range (`steps=0`): every value is checked when
a config is made, so a bad override fails before anything is written. The config is saved as
`config.json` in the run's work folder and must match on resume.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import types
import typing
from pathlib import Path

from ctjax.data.pairs import PairConfig

# Fields of the first config format (pair settings at top level), read by `from_json`.
_LEGACY_PAIR_FIELDS = ("crop_size", "context", "max_gap", "max_jitter", "jitter_step")


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """Everything a distillation run depends on (saved as `config.json` in the work folder).

    Models: `student` / `teacher` are `ctjax.models.registry` names; `teacher_weights` is a
    path, "" for the default EfficientNet-Lite0 file, or "random" (a random teacher, for tests
    without data). `layers` pairs (student stage, teacher stage) for the fidelity loss;
    `track_layers` are the student stages of the tracking loss.
    Losses: `fidelity_weight`, `tracking_weight` (w_fid, w_track); `lam` (λ of the DCF, with
    1/(MND)); `sigma_factor` (label σ / target size); `track_window` (Hann window before the
    DFT); `track_unit_energy` (the trackers' `normalize_energy` first); `fidelity_on_search`
    (fidelity on both crops, else template).
    Data: `data_kind` ("otb", "got10k", "ilsvrc_vid"); `sequences` (None = the train split;
    on the command line `sequences=Woman+Surfer`); `manual_dir` ("" = the shared sequence
    folder); `pairs`, the `ctjax.data.pairs.PairConfig` (crop size, context, frame gap,
    jitter, antialiasing); `pool_pairs` (0 = fresh pairs, teacher in the step); `val_pairs`
    (held-out pairs from the same training sequences, another seed).
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
    pairs: PairConfig = PairConfig()
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
        for name, value in check_types(DistillConfig, vars(self)).items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "layers", tuple(tuple(p) for p in self.layers))
        object.__setattr__(self, "track_layers", tuple(self.track_layers))
        if isinstance(self.pairs, dict):
            object.__setattr__(self, "pairs", PairConfig(**self.pairs))
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
        if self.data_kind not in DATA_KINDS:
            raise ValueError(f"data_kind must be one of {DATA_KINDS}, got {self.data_kind!r}")
        for name, low in _AT_LEAST.items():
            if getattr(self, name) < low:
                raise ValueError(f"config key {name} must be >= {low}, got {getattr(self, name)!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if any(len(p) != 2 or not all(isinstance(s, str) for s in p) for p in self.layers):
            raise ValueError(f"layers must be (student stage, teacher stage) name pairs, got "
                             f"{self.layers!r}")

    @property
    def uses_teacher(self) -> bool:
        return self.fidelity_weight > 0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "DistillConfig":
        """Reads `to_json` output; also the first format, whose pair settings were top-level.

        Raises:
          ValueError: not a JSON object, unknown keys, or values of the wrong type or range.
        """
        if not isinstance(data, dict):
            raise ValueError(f"a config must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        legacy = {k: data.pop(k) for k in _LEGACY_PAIR_FIELDS if k in data}
        pairs = data.pop("pairs", {})
        if not isinstance(pairs, dict):
            raise ValueError(f"config key pairs must be an object, got {pairs!r}")
        pairs = dict(pairs, **legacy)
        _check_known(data, pairs)
        return cls(**data, pairs=_make_pairs(pairs))


DATA_KINDS = ("otb", "got10k", "ilsvrc_vid")
# Lower bounds of the integer settings (a 0 here would divide by zero or never stop).
_AT_LEAST = {"batch_size": 1, "steps": 1, "pool_pairs": 0, "val_pairs": 0, "warmup_steps": 0,
             "log_every": 1, "eval_every": 1, "checkpoint_every": 1, "keep_checkpoints": 1}


def _accepts(kind, value):
    """(ok, value): whether `value` fits the annotation `kind`; ints become floats for float."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        for option in typing.get_args(kind):
            ok, out = _accepts(option, value)
            if ok:
                return ok, out
        return False, value
    if kind is type(None):
        return value is None, value
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is tuple:  # JSON gives lists; "A+B" strings are split by the caller
        return isinstance(value, (tuple, list, str)), value
    if kind is PairConfig:
        return isinstance(value, (PairConfig, dict)), value
    return isinstance(value, kind), value


def check_types(cls, values: dict, *, prefix: str = "") -> dict:
    """Checks `values` against the field annotations of the dataclass `cls`.

    Returns:
      The values, with ints given for float fields turned into floats.

    Raises:
      ValueError: naming the first key whose value has the wrong type.
    """
    hints = typing.get_type_hints(cls)
    out = {}
    for name, value in values.items():
        ok, out[name] = _accepts(hints[name], value)
        if not ok:
            expected = getattr(hints[name], "__name__", str(hints[name]))
            raise ValueError(f"config key {prefix}{name}: expected {expected}, got {value!r} "
                             f"({type(value).__name__})")
    return out


def _make_pairs(values: dict, base: PairConfig | None = None) -> PairConfig:
    """A `PairConfig` from (dotted-key) values, types checked before it is made."""
    values = check_types(PairConfig, values, prefix="pairs.")
    return dataclasses.replace(base, **values) if base is not None else PairConfig(**values)


def _check_known(top: dict, nested: dict) -> None:
    fields = {f.name for f in dataclasses.fields(DistillConfig)}
    pair_fields = {f.name for f in dataclasses.fields(PairConfig)}
    unknown = sorted(set(top) - fields) + sorted(f"pairs.{k}" for k in set(nested) - pair_fields)
    if unknown:
        known = sorted(fields - {"pairs"}) + sorted(f"pairs.{k}" for k in pair_fields)
        raise ValueError(f"unknown config key(s) {unknown}; known: {known}")


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _apply(config: DistillConfig, changes: dict) -> DistillConfig:
    """`dataclasses.replace` with dotted keys for the nested pair config."""
    top, nested = {}, {}
    for key, value in changes.items():
        if key.startswith("pairs."):
            nested[key[len("pairs."):]] = value
        else:
            top[key] = value
    _check_known(top, nested)
    if nested:
        top["pairs"] = _make_pairs(nested, base=top.get("pairs", config.pairs))
    return dataclasses.replace(config, **top)


def override(config: DistillConfig, arg: str, *,
             presets: dict[str, dict] | None = None) -> DistillConfig:
    """Applies a config-file argument: comma-separated preset names and key=value pairs.

    Example: `"smoke"`, `"r32,smoke"`, `"steps=500,learning_rate=3e-4"`,
    `"pairs.max_gap=5"`. Values are parsed as Python literals when possible (numbers,
    tuples, None, True), else kept as strings.

    Raises:
        ValueError: an unknown preset, an unknown config key, or a value of the wrong type or
          range (checked before any file is written).
    """
    presets = presets or {}
    for token in filter(None, (t.strip() for t in arg.split(","))):
        if "=" not in token:
            if token not in presets:
                raise ValueError(f"unknown config variant {token!r}; known: {sorted(presets)}")
            changes = presets[token]
        else:
            key, value = token.split("=", 1)
            changes = {key.strip(): _parse_value(value)}
        config = _apply(config, changes)
    return config


def read_json(path: Path, what: str):
    """A JSON file's contents, or a `ValueError` in one line naming the file and the fault
    (empty, e.g. after an interrupted write; not JSON; unreadable)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} {path} is unreadable: {e}") from None
    if not text.strip():
        raise ValueError(f"{what} {path} is empty (an interrupted write?); restore or delete it")
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"{what} {path} is not valid JSON ({e}); restore or delete it") from None


def read_config(workdir) -> DistillConfig:
    """The config saved in a run folder (`config.json`), checked; one-line errors."""
    config_file = Path(workdir) / "config.json"
    try:
        return DistillConfig.from_json(read_json(config_file, "run config"))
    except (TypeError, ValueError) as e:
        if str(e).startswith("run config"):
            raise
        raise ValueError(f"run config {config_file} is invalid: {e}") from None


# Small enough for CI: tiny crops, a tiny pool, a handful of steps (see the experiments).
SMOKE = {"pairs.crop_size": 80, "batch_size": 2, "pool_pairs": 2, "val_pairs": 2, "steps": 6,
         "learning_rate": 3e-3, "warmup_steps": 0, "schedule": "constant",
         "sequences": ("Woman",), "log_every": 1, "eval_every": 4, "checkpoint_every": 4,
         "keep_checkpoints": 2}


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

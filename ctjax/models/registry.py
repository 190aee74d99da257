"""Named model configurations, module construction and the feature contract of each stage.

The compression-ratio study of the paper (PAPER.md 9.1) names students by the ratio of teacher
to student parameters: 1, 16, 32, 64 (the released CF-VGGM) and 96. Conv parameters scale with
width squared, so a ratio `r` student has every VGG-M width divided by `sqrt(r)`.
**Rounding rule:** `width = floor(teacher_width / sqrt(r) + 0.5)` (nearest integer, halves up),
which gives exactly 24/64/128 for r=16 and 12/32/64 for r=64 (the released model), 17/45/91 for
r=32 and 10/26/52 for r=96. The parameter ratio then is only approximately `r` (62.9 for r=64).

Feature contract (`stage_info`): cell `(i, j)` of a stage's map is centred on input pixel
`(offset + i * stride, offset + j * stride)`, 0-based with pixel centres at integers, and sees
`receptive_field` x `receptive_field` input pixels (less near the borders, where padding is).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from ctjax.models import efficientnet, vggm
from ctjax.models.efficientnet import EfficientNetLite0
from ctjax.models.geometry import trace
from ctjax.models.vggm import VGGM

FAMILIES = ("vggm", "efficientnet_lite0")
# conv1 widths whose direct XLA conv is slow on CPU (r32, r16): see `build_module`
SPACE_TO_DEPTH_CONV1_WIDTHS = (17, 24)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A named network.

    Attributes:
        name: registry key (or a descriptive name for unregistered widths).
        family: "vggm" or "efficientnet_lite0".
        widths: conv1..conv5 widths for the "vggm" family; None for EfficientNet.
        include_head: EfficientNet only: build the classifier head ("logits" stage).
    """
    name: str
    family: str
    widths: tuple[int, ...] | None = None
    include_head: bool = False

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown model family {self.family!r}; known: {FAMILIES}")
        if self.family == "vggm":
            if self.widths is None or len(self.widths) != 5 or min(self.widths) < 1:
                raise ValueError(f"a vggm config needs 5 positive widths, got {self.widths!r}")
            object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        elif self.widths is not None:
            raise ValueError(f"family {self.family!r} has fixed widths; got {self.widths!r}")


def student_widths(ratio: float) -> tuple[int, int, int, int, int]:
    """VGG-M widths divided by sqrt(ratio), rounded to the nearest integer (halves up)."""
    if ratio < 1:
        raise ValueError(f"compression ratio must be >= 1, got {ratio}")
    return tuple(int(math.floor(w / math.sqrt(ratio) + 0.5)) for w in vggm.TEACHER_WIDTHS)


def _registry() -> dict[str, ModelConfig]:
    configs = [ModelConfig("vggm", "vggm", vggm.TEACHER_WIDTHS)]
    configs += [ModelConfig(f"cf_vggm_r{r}", "vggm", student_widths(r))
                for r in (1, 16, 32, 64, 96)]
    configs += [ModelConfig("efficientnet_lite0", "efficientnet_lite0"),
                ModelConfig("efficientnet_lite0_classifier", "efficientnet_lite0",
                            include_head=True)]
    return {c.name: c for c in configs}


MODEL_CONFIGS: dict[str, ModelConfig] = _registry()


def get_config(name: str) -> ModelConfig:
    """The registered config `name`; a clear `KeyError` listing the known names otherwise."""
    try:
        return MODEL_CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {sorted(MODEL_CONFIGS)}") from None


def config_for_widths(widths) -> ModelConfig:
    """The registered VGG-M-family config with these conv1..conv5 widths (the first in
    `MODEL_CONFIGS` order, so teacher widths give "vggm"), else a new unregistered one named
    `vggm_w<w1>-<w2>-<w3>-<w4>-<w5>`."""
    widths = tuple(int(w) for w in widths)
    for config in MODEL_CONFIGS.values():
        if config.family == "vggm" and config.widths == widths:
            return config
    return ModelConfig("vggm_w" + "-".join(map(str, widths)), "vggm", widths)


def build_module(config: ModelConfig) -> nn.Module:
    """The Flax module for a config (use as `module.apply(variables, x, stages=...)`).

    VGG-M-family modules whose conv1 has 17 or 24 outputs (the r32 and r16 students) compute
    conv1 as a space-to-depth conv (`VGGM.conv1_impl`, the same maths), the others with XLA's
    direct conv. Measured on one core (median of 11-15 jitted conv1+conv5 calls): r32 at 217 px
    3.6 ms against 12.7 ms direct, r32 3 x 208 px 9.9 against 33.5 ms; but r64 3 x 208 px (the
    DCF tracker's batch) 6.2 against 4.5 ms direct, and within 15% either way for r64, r96 and
    VGG-M elsewhere. XLA's CPU conv is erratic for a 3-channel input with 17 or 24 outputs.
    """
    if config.family == "vggm":
        impl = "space_to_depth" if config.widths[0] in SPACE_TO_DEPTH_CONV1_WIDTHS else "direct"
        return VGGM(widths=config.widths, conv1_impl=impl)
    return EfficientNetLite0(include_head=config.include_head)


def init_variables(config: ModelConfig, rng: jax.Array, *,
                   input_hw: tuple[int, int] = (224, 224)) -> dict:
    """Randomly initialised variables (`{"params": ...}`, plus `"batch_stats"` for EfficientNet).

    The distributions are Flax's defaults for these layers: kernels LeCun normal (normal
    truncated at 2 sigma, rescaled to variance 1/fan_in, fan_in = kh*kw*cin/groups or the Dense
    input size), biases 0, BatchNorm scale 1 / bias 0 / mean 0 / var 1. They are drawn here from
    ONE truncated-normal sample split across the kernels instead of through `module.init`,
    whose per-parameter RNG programs take XLA:CPU seconds to compile. Parameter shapes do not
    depend on `input_hw`; it only has to be large enough for the network (checked).
    """
    dummy = jax.ShapeDtypeStruct((1, *input_hw, 3), jnp.float32)
    abstract = jax.eval_shape(build_module(config).init, rng, dummy)
    flat = flax.traverse_util.flatten_dict(dict(abstract))
    kernels = [path for path in flat if path[-1] == "kernel"]
    sizes = [math.prod(flat[path].shape) for path in kernels]
    # 0.8796 = std of a standard normal truncated at +-2 (as jax.nn.initializers.variance_scaling).
    unit = np.asarray(jax.random.truncated_normal(rng, -2.0, 2.0, (sum(sizes),))) / 0.87962566
    values, start = {}, 0
    for path, size in zip(kernels, sizes):
        shape = flat[path].shape
        values[path] = unit[start:start + size].reshape(shape) / math.sqrt(math.prod(shape[:-1]))
        start += size
    for path, spec in flat.items():
        if path not in values:
            fill = 1.0 if path[-1] in ("scale", "var") else 0.0
            values[path] = np.full(spec.shape, fill, np.float32)
    return {k: jax.tree_util.tree_map(jnp.asarray, v)
            for k, v in flax.traverse_util.unflatten_dict(values).items()}


def param_count(variables) -> int:
    """Number of trainable parameters: the leaves of `variables["params"]` (BatchNorm running
    statistics are not counted), or of `variables` itself if it has no "params" key. Works on
    abstract trees too (`jax.eval_shape(module.init, ...)`)."""
    tree = variables.get("params", variables) if hasattr(variables, "get") else variables
    return int(sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


def stage_names(config: ModelConfig) -> tuple[str, ...]:
    """Feature stages of a config, in network order."""
    if config.family == "vggm":
        return vggm.STAGES
    return efficientnet.STAGES + (("logits",) if config.include_head else ())


class StageInfo(NamedTuple):
    """Where a stage's cells sit on the input (see module docstring)."""
    stride: int            # input pixels per cell
    offset: float          # 0-based input coordinate of the receptive-field centre of cell 0
    channels: int
    receptive_field: int   # input pixels per side


def _ops(config: ModelConfig, stage: str):
    if stage not in stage_names(config) or stage == "logits":
        raise ValueError(f"{config.name} has no spatial stage {stage!r}; stages: "
                         f"{[s for s in stage_names(config) if s != 'logits']}")
    if config.family == "vggm":
        names = [name for name, _ in vggm.LAYERS]
        return tuple(op for _, op in vggm.LAYERS[:names.index(stage) + 1])
    return efficientnet.spatial_ops(stage)


def _channels(config: ModelConfig, stage: str) -> int:
    if config.family == "vggm":
        conv = {"pool1": "conv1", "pool2": "conv2"}.get(stage, stage)
        return config.widths[int(conv[-1]) - 1]
    return efficientnet.BLOCKS[efficientnet.STAGE_BLOCKS[stage]].cout


def stage_offsets(config: ModelConfig, stage: str,
                  input_hw: tuple[int, int]) -> tuple[float, float]:
    """Exact (row, column) offsets of cell 0 for an input of size `input_hw`."""
    return tuple(trace(_ops(config, stage), int(n)).offset for n in input_hw)


def stage_info(config: ModelConfig, stage: str, *,
               input_hw: tuple[int, int] | None = None) -> StageInfo:
    """Stride, cell-0 centre, channels and receptive field of a feature stage.

    Args:
        config: the model.
        stage: a spatial stage name (not "logits").
        input_hw: the input size. VGG-M offsets never depend on it. EfficientNet offsets do
            ('SAME' padding): by default they are given for sides divisible by the stage stride
            (offset = stride - 1); pass `input_hw` for the exact value (both sides must then give
            the same offset, else use `stage_offsets`).

    Returns:
        `StageInfo`.
    """
    ops = _ops(config, stage)
    if input_hw is None:
        # Any side divisible by the total stride keeps every 'SAME' layer's input even.
        geometry = trace(ops, 64 * math.prod(op.stride for op in ops))
        offset = geometry.offset
    else:
        geometry = trace(ops, int(input_hw[0]))
        offsets = stage_offsets(config, stage, input_hw)
        if offsets[0] != offsets[1]:
            raise ValueError(f"{config.name} {stage}: offsets differ along rows and columns for "
                             f"input {tuple(input_hw)} ({offsets}); use stage_offsets")
        offset = offsets[0]
    return StageInfo(stride=geometry.stride, offset=float(offset),
                     channels=_channels(config, stage), receptive_field=geometry.receptive_field)


def output_hw(config: ModelConfig, stage: str, input_hw: tuple[int, int]) -> tuple[int, int]:
    """Exact (H, W) of a stage's feature map for an input of size `input_hw`.

    Raises:
        ValueError: unknown stage, or an input too small to reach the stage.
    """
    ops = _ops(config, stage)
    return tuple(trace(ops, int(n)).size for n in input_hw)

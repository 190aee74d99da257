"""EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant for mobile CPUs) as a feature trunk.

Used as the one ImageNet-trained CNN available offline (the VGG-M teacher's weights are not;
see SOURCES.md). Lite0 differs from EfficientNet-B0 by: no squeeze-excite, ReLU6 everywhere,
stem (32 ch) and head (1280 ch) not scaled.

Conventions:
    * input: (N, H, W, 3) float32 NHWC, RGB scaled to 0..1 then normalised with the ImageNet
      mean [0.485, 0.456, 0.406] and std [0.229, 0.224, 0.225] (`ctjax.models.preprocessing`).
    * TensorFlow 'SAME' padding (extra pixel bottom/right), BatchNorm in inference mode with
      eps 1e-3, variables `{"params": ..., "batch_stats": ...}`.
    * returned stages, each the output of the LAST block at that stride (blocks numbered 0..15
      as in `efficientnet_pytorch` `_blocks.i`):

      | stage | block | channels | receptive field (px) |
      |---|---|---|---|
      | "stride2" | 0 | 16 | 7 |
      | "stride4" | 2 | 24 | 19 |
      | "stride8" | 4 | 40 | 67 |
      | "stride16" | 10 | 112 | 339 |
      | "stride32" | 15 | 320 | 851 |
      | "logits" (include_head only) | head conv 1280 -> avg pool -> fc | 1000 | |

    * geometry: cell i is centred on input pixel `offset + i * stride` (0-based). Because of
      'SAME' padding the offset depends on the input size: for sides divisible by the stage
      stride it is `stride - 1` (1, 3, 7, 15, 31); see `registry.stage_info(..., input_hw=)`
      for other sizes.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ctjax.models.geometry import SpatialOp
from ctjax.models.layers import depthwise_conv2d, relu6
from ctjax.models.vggm import resolve_stages

Array = jax.Array

BN_EPSILON = 1e-3
STEM_WIDTH = 32
HEAD_WIDTH = 1280


class BlockSpec(NamedTuple):
    """One inverted-residual (MBConv) block."""
    kernel: int
    stride: int
    expand: int   # expansion ratio; 1 means no expand conv (block 0)
    cin: int
    cout: int


def _stage(n: int, kernel: int, stride: int, expand: int, cin: int, cout: int):
    """`n` blocks; only the first one strides and changes the width."""
    return tuple(BlockSpec(kernel, stride if i == 0 else 1, expand, cin if i == 0 else cout, cout)
                 for i in range(n))


BLOCKS: tuple[BlockSpec, ...] = (
    _stage(1, 3, 1, 1, 32, 16) + _stage(2, 3, 2, 6, 16, 24) + _stage(2, 5, 2, 6, 24, 40)
    + _stage(3, 3, 2, 6, 40, 80) + _stage(3, 5, 1, 6, 80, 112) + _stage(4, 5, 2, 6, 112, 192)
    + _stage(1, 3, 1, 6, 192, 320))
STAGE_BLOCKS = {"stride2": 0, "stride4": 2, "stride8": 4, "stride16": 10, "stride32": 15}
STAGES = tuple(STAGE_BLOCKS)
STEM = SpatialOp(kernel=3, stride=2, pad=None)


def spatial_ops(stage: str) -> tuple[SpatialOp, ...]:
    """The chain of grid-changing ops (stem + depthwise convs) up to a feature stage."""
    last = STAGE_BLOCKS[stage]
    return (STEM,) + tuple(SpatialOp(b.kernel, b.stride, None) for b in BLOCKS[:last + 1])


DEPTHWISE_IMPLS = ("shifted", "grouped")


class DepthwiseConv(nn.Module):
    """Bias-free depthwise conv ('SAME'); param `kernel` (kh, kw, 1, C) as a grouped `nn.Conv`.

    `impl="shifted"` uses `layers.depthwise_conv2d` (fast on CPU); `"grouped"` uses XLA's
    grouped convolution (the reference; slow on CPU).
    """
    kernel_size: int
    stride: int = 1
    impl: str = "shifted"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        channels = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (self.kernel_size, self.kernel_size, 1, channels), jnp.float32)
        if self.impl == "shifted":
            return depthwise_conv2d(x, kernel, stride=self.stride)
        if self.impl == "grouped":
            return jax.lax.conv_general_dilated(
                x, kernel, (self.stride, self.stride), "SAME",
                dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels)
        raise ValueError(f"depthwise impl must be one of {DEPTHWISE_IMPLS}, got {self.impl!r}")


class ConvBN(nn.Module):
    """Bias-free conv ('SAME') + inference BatchNorm (+ ReLU6). Params `conv/kernel`,
    `bn/{scale,bias}`; batch stats `bn/{mean,var}`. `depthwise` makes the conv depthwise."""
    features: int
    kernel: int = 1
    stride: int = 1
    depthwise: bool = False
    activate: bool = True
    depthwise_impl: str = "shifted"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.depthwise:
            x = DepthwiseConv(self.kernel, self.stride, self.depthwise_impl, name="conv")(x)
        else:
            x = nn.Conv(self.features, (self.kernel, self.kernel),
                        strides=(self.stride, self.stride), padding="SAME", use_bias=False,
                        name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name="bn")(x)
        return relu6(x) if self.activate else x


class MBConv(nn.Module):
    """Inverted residual without squeeze-excite: [1x1 expand] -> depthwise -> 1x1 project,
    identity skip when the stride is 1 and the width is unchanged (drop-connect is training only
    and not implemented)."""
    spec: BlockSpec
    depthwise_impl: str = "shifted"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        s = self.spec
        hidden = s.cin * s.expand
        y = ConvBN(hidden, name="expand")(x) if s.expand != 1 else x
        y = ConvBN(hidden, kernel=s.kernel, stride=s.stride, depthwise=True,
                   depthwise_impl=self.depthwise_impl, name="depthwise")(y)
        y = ConvBN(s.cout, activate=False, name="project")(y)
        return x + y if s.stride == 1 and s.cin == s.cout else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 returning named stride stages (and ImageNet logits with the head).

    Attributes:
        include_head: build the 1280-wide head conv and the 1000-way classifier; enables the
            "logits" stage.
        num_classes: classifier outputs.
        depthwise_impl: "shifted" (default; k*k shifted multiply-adds, 20-50x faster on XLA
            CPU) or "grouped" (XLA grouped convolution). Same parameters, same outputs up to
            float rounding.
    """
    include_head: bool = False
    num_classes: int = 1000
    depthwise_impl: str = "shifted"

    @nn.compact
    def __call__(self, x: Array, *, stages: Sequence[str] | None = None) -> dict[str, Array]:
        """Runs the network up to the deepest requested stage.

        Args:
            x: (N, H, W, 3) float32, normalised (see module docstring).
            stages: names to return; default all of "stride2".."stride32" (+ "logits" with the
                head).

        Returns:
            dict stage -> (N, H_s, W_s, C_s) float32 features; "logits" is (N, num_classes).
        """
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"EfficientNetLite0 expects (N, H, W, 3) input, got shape {x.shape}")
        valid = STAGES + (("logits",) if self.include_head else ())
        if stages is not None and "logits" in stages and not self.include_head:
            raise ValueError("stage 'logits' needs EfficientNetLite0(include_head=True)")
        wanted = resolve_stages(stages, valid)
        features = {}
        x = ConvBN(STEM_WIDTH, kernel=STEM.kernel, stride=STEM.stride, name="stem")(x)
        for i, spec in enumerate(BLOCKS):
            x = MBConv(spec, self.depthwise_impl, name=f"block{i}")(x)
            stage = next((s for s, b in STAGE_BLOCKS.items() if b == i), None)
            if stage in wanted:
                features[stage] = x
            if stage == wanted[-1]:
                return features
        x = ConvBN(HEAD_WIDTH, name="head")(x)
        features["logits"] = nn.Dense(self.num_classes, name="classifier")(jnp.mean(x, axis=(1, 2)))
        return features

"""VGG-M conv trunk (Chatfield et al. 2014) and its width-scaled students (CF-VGGM).

The teacher of Wang et al. (TIP 2020) is MatConvNet's `imagenet-vgg-m-2048` up to relu5; the
released student `CF_VGGM.mat` is the same trunk with every width divided by 8 (PAPER.md
sections 2-3). Both are `VGGM(widths=...)`.

Conventions:
    * input: (N, H, W, 3) float32 NHWC, RGB on the 0..255 scale minus the mean image
      (see `ctjax.models.preprocessing`); any H, W >= 25 (the smallest input with a 1x1 conv5).
    * layers follow MatConvNet semantics exactly: convolution is cross-correlation with
      kernels stored (kh, kw, cin, cout) as in the `.mat` file, LRN is `layers.lrn`
      (alpha not divided by N), max pools pad [0 1 0 1] with -inf.
    * returned stages (MatConvNet simplenn layer index in brackets):
      "conv1" = norm1 [3] (conv1 -> relu -> LRN, before pool1), "pool1" [4],
      "conv2" = norm2 [7], "pool2" [8], "conv3" = relu3 [10], "conv4" = relu4 [12],
      "conv5" = relu5 [14].
    * geometry (see `ctjax.models.registry.stage_info`): cell i of a stage is centred on input
      pixel `offset + i * stride` (0-based, pixel centres at integers): conv1 2/3, pool1 4/5,
      conv2 8/9, pool2 16/17, conv3-5 16/17 (stride/offset); receptive fields 7, 11, 27, 43,
      75, 107, 139 px. These do not depend on input size.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ctjax.models.geometry import SpatialOp
from ctjax.models.layers import lrn, max_pool_matconvnet, space_to_depth_conv

Array = jax.Array

TEACHER_WIDTHS = (96, 256, 512, 512, 512)
STAGES = ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5")

# One row per spatial layer, in order: (stage it ends, spatial op). Single source of truth for
# the module and for `registry.stage_info` / `cost.conv_macs`.
LAYERS: tuple[tuple[str, SpatialOp], ...] = (
    ("conv1", SpatialOp(kernel=7, stride=2, pad=(0, 0))),
    ("pool1", SpatialOp(kernel=3, stride=2, pad=(0, 1))),
    ("conv2", SpatialOp(kernel=5, stride=2, pad=(1, 1))),
    ("pool2", SpatialOp(kernel=3, stride=2, pad=(0, 1))),
    ("conv3", SpatialOp(kernel=3, stride=1, pad=(1, 1))),
    ("conv4", SpatialOp(kernel=3, stride=1, pad=(1, 1))),
    ("conv5", SpatialOp(kernel=3, stride=1, pad=(1, 1))),
)
LRN_STAGES = ("conv1", "conv2")  # conv followed by relu + LRN (norm1, norm2)
CONV1_IMPLS = ("direct", "space_to_depth")


def resolve_stages(stages: Sequence[str] | None, valid: Sequence[str]) -> tuple[str, ...]:
    """Validates requested stage names; `None` means all of `valid`, in network order."""
    if stages is None:
        return tuple(valid)
    if isinstance(stages, str):
        raise TypeError(f"stages must be a sequence of names, got the string {stages!r}")
    unknown = [s for s in stages if s not in valid]
    if unknown or not stages:
        raise ValueError(f"unknown or empty stages {list(stages)!r}; valid: {list(valid)}")
    return tuple(s for s in valid if s in stages)


class SpaceToDepthConv(nn.Module):
    """An unpadded strided conv with `nn.Conv`'s parameters (`kernel` (k, k, cin, out), `bias`)
    computed by `layers.space_to_depth_conv`."""
    features: int
    kernel_size: int
    stride: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (k, k, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return space_to_depth_conv(x, kernel, stride=self.stride) + bias


class VGGM(nn.Module):
    """VGG-M conv1-conv5 trunk with configurable widths.

    Attributes:
        widths: output channels of conv1..conv5. Teacher (96, 256, 512, 512, 512); the released
            CF-VGGM student (12, 32, 64, 64, 64).
        conv1_impl: "direct" (XLA conv) or "space_to_depth" (the same conv as a 4x4 stride-1
            conv on 2x2 blocks; same parameters and outputs up to float rounding). On XLA CPU
            the direct conv1 is ~7x slower for 17 or 24 outputs (cf_vggm_r32/r16) than for 12,
            while space_to_depth scales with the width; for 96 outputs direct is faster.
    """
    widths: tuple[int, int, int, int, int] = TEACHER_WIDTHS
    conv1_impl: str = "direct"

    @nn.compact
    def __call__(self, x: Array, *, stages: Sequence[str] | None = None,
                 capture_raw: bool = False) -> dict[str, Array]:
        """Runs the trunk up to the deepest requested stage.

        Args:
            x: (N, H, W, 3) float32, normalised (RGB 0..255 minus mean image).
            stages: names to return (subset of `STAGES`); default all. Only the layers up to the
                deepest requested stage are computed.
            capture_raw: also return "<conv>_raw", the conv output before ReLU, for each conv
                layer computed (a debugging aid, e.g. for MatConvNet's layer-1 output).

        Returns:
            dict stage name -> (N, H_s, W_s, C_s) float32 features.
        """
        if len(self.widths) != 5:
            raise ValueError(f"VGGM needs 5 widths (conv1..conv5), got {self.widths!r}")
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"VGGM expects (N, H, W, 3) input, got shape {x.shape}")
        if self.conv1_impl not in CONV1_IMPLS:
            raise ValueError(f"conv1_impl must be one of {CONV1_IMPLS}, got {self.conv1_impl!r}")
        height, width = x.shape[1:3]
        wanted = resolve_stages(stages, STAGES)
        last = wanted[-1]
        widths = dict(zip(("conv1", "conv2", "conv3", "conv4", "conv5"), self.widths))
        features = {}
        for name, op in LAYERS:
            if name.startswith("pool"):
                x = max_pool_matconvnet(x, window=op.kernel, stride=op.stride,
                                        pad=op.pad + op.pad)
            else:
                if name == "conv1" and self.conv1_impl == "space_to_depth":  # conv1 is unpadded
                    x = SpaceToDepthConv(widths[name], op.kernel, op.stride, name=name)(x)
                else:
                    x = nn.Conv(widths[name], (op.kernel, op.kernel),
                                strides=(op.stride, op.stride), padding=(op.pad, op.pad),
                                name=name)(x)
                if capture_raw:
                    features[f"{name}_raw"] = x
                x = nn.relu(x)
                if name in LRN_STAGES:
                    x = lrn(x)
            if min(x.shape[1:3]) < 1:
                raise ValueError(f"input {height}x{width} is too small: {name} would be empty "
                                 f"(VGG-M needs at least 25x25 for pool2..conv5)")
            if name in wanted:
                features[name] = x
            if name == last:
                break
        return features


def conv_shapes(widths: Sequence[int]) -> dict[str, tuple[int, int, int, int]]:
    """Kernel shapes (kh, kw, cin, cout) of conv1..conv5 for the given widths."""
    cins = (3,) + tuple(widths[:-1])
    kernels = [op.kernel for name, op in LAYERS if name.startswith("conv")]
    return {f"conv{i + 1}": (k, k, cin, cout)
            for i, (k, cin, cout) in enumerate(zip(kernels, cins, widths))}


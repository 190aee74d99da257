"""Feature blocks for the continuous-domain trackers (ECO, STRCF).

A *feature set* is a static, hashable description of several parts, each producing one or
more feature blocks from an image sample: fHOG, colour names (or ECO's intensity channel
on grey sequences), grey, and CNN stages. Every block has a cell size in sample pixels, so
blocks of different resolutions cover the same *support* (the sample's extent in pixels,
ECO's `img_support_sz`), and is normalised as ECO's `extract_features.m` does with
`normalize_power = 2, normalize_size = normalize_dim = true` (unit mean energy per sample,
the same function the DCF tracker and the distillation losses use).

Conventions: samples are float32 RGB 0..255, `(N, S, S, 3)`; blocks are `(N, h, w, c)`
float32 with `h = w = support // cell`; CNN parts take their own (larger) input size, whose
stage maps are cropped centrally to the support before pooling, as ECO's
`get_cnn_layers.m` does (`start_ind` / `end_ind`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from ctjax.features import fhog
from ctjax.features.cnn import avg_pool, normalize_energy
from ctjax.models import preprocessing


@dataclasses.dataclass(frozen=True)
class HogPart:
    """fHOG (31 channels: ECO drops Felzenszwalb's all-zero 32nd) at one cell size."""
    cell: int
    compressed_dim: int = 10

    @property
    def blocks(self):
        return (("hog", self.cell, 31, self.compressed_dim),)

    def input_px(self, support: int) -> int:
        return support

    def __call__(self, params, samples, is_color):
        del params, is_color
        return (fhog.fhog(samples, cell=self.cell),)


@dataclasses.dataclass(frozen=True)
class ColourPart:
    """ECO-HC's colour block: colour names (10) on colour sequences, ECO's intensity
    channel (5, zero-padded to 10) on grey ones, chosen per sequence by a traced flag so one
    compiled step serves both (ECO's `useForColor` / `useForGray`). The padded channels
    have zero variance, so the PCA projection ignores them."""
    cell: int = 4
    compressed_dim: int = 3

    @property
    def blocks(self):
        return (("cn", self.cell, 10, self.compressed_dim),)

    def input_px(self, support: int) -> int:
        return support

    def __call__(self, params, samples, is_color):
        from ctjax.features import colornames
        cn = colornames.colour_names(samples, params["cn"], cell=self.cell)
        ic = colornames.intensity_channel(samples, params["ic"], cell=self.cell)
        ic = jnp.pad(ic, ((0, 0), (0, 0), (0, 0), (0, cn.shape[-1] - ic.shape[-1])))
        return (jnp.where(is_color, cn, ic),)


@dataclasses.dataclass(frozen=True)
class GreyPart:
    """The grey image averaged over cells (STRCF's `grayscale` feature)."""
    cell: int = 4

    @property
    def blocks(self):
        return (("grey", self.cell, 1, 1),)

    def input_px(self, support: int) -> int:
        return support

    def __call__(self, params, samples, is_color):
        del params, is_color
        from ctjax.features import colornames
        return (colornames.grey(samples, cell=self.cell),)


@dataclasses.dataclass(frozen=True)
class CnnPart:
    """Stages of a CNN (`ctjax.features.cnn.CNNExtractor`), each cropped to the support and
    average-pooled by its pooling factor (ECO's `downsample_factor`).

    Attributes:
      extractor: a `CNNExtractor` whose layers give the stage names, pooling and strides.
      input_size: the network's input side in pixels (ECO's `img_sample_sz`, larger than
        the support when the deepest stage does not cover the whole input).
      compressed_dims: one projection size per stage.
    """
    extractor: Any
    input_size: int
    compressed_dims: tuple[int, ...]

    @property
    def blocks(self):
        ex = self.extractor
        return tuple((l.name, s * l.pool, None, d) for l, s, d in
                     zip(ex.layers, ex.strides, self.compressed_dims))

    def input_px(self, support: int) -> int:
        del support
        return self.input_size

    def __call__(self, params, samples, is_color, *, support: int):
        del is_color
        stages = _cnn_stages(self.extractor, params, samples)
        out = []
        for (name, stride_pool, _, _), layer, stride, x in zip(
                self.blocks, self.extractor.layers, self.extractor.strides, stages):
            n = support // stride
            top = (x.shape[1] - n) // 2
            left = (x.shape[2] - n) // 2
            x = x[:, top:top + n, left:left + n]
            out.append(avg_pool(x, layer.pool))
        return tuple(out)


@dataclasses.dataclass(frozen=True)
class FeatureSet:
    """Several parts side by side, sampled over one support.

    Attributes:
      parts: `HogPart`, `ColourPart`, `GreyPart`, `CnnPart` instances.
      support: the sample's side in pixels (ECO's `img_support_sz`).
    """
    parts: tuple
    support: int

    @property
    def blocks(self) -> tuple:
        """`(name, cell, dim or None, compressed_dim)` for every block, in output order."""
        return tuple(b for p in self.parts for b in p.blocks)

    @property
    def input_sizes(self) -> tuple[int, ...]:
        """The distinct sample sides the parts need (the support, and CNN input sizes)."""
        return tuple(sorted({p.input_px(self.support) for p in self.parts}))

    @property
    def name(self) -> str:
        return "+".join(getattr(p, "name", type(p).__name__) for p in self.parts)

    def __call__(self, params, samples: dict, is_color) -> tuple:
        """Feature blocks of a batch of samples.

        Args:
          params: one entry per part (a dict for the colour tables, the CNN params, {}).
          samples: {input side: (N, side, side, 3) float32 RGB 0..255}, one per
            `input_sizes`, all centred on the same point at the same scale.
          is_color: scalar bool, False on grey sequences.

        Returns:
          One `(N, support // cell, support // cell, dim)` float32 map per block, each
          with unit mean energy per sample.
        """
        out = []
        for part, prm in zip(self.parts, params):
            x = samples[part.input_px(self.support)]
            if isinstance(part, CnnPart):
                maps = part(prm, x, is_color, support=self.support)
            else:
                maps = part(prm, x, is_color)
            out.extend(normalize_energy(m) for m in maps)
        return tuple(out)


def _cnn_stages(extractor, params, patches):
    x = preprocessing.standardize(patches, mean=params["mean"], std=params["std"],
                                  input_scale=params["scale"])
    out = extractor.module.apply(params["variables"], x,
                                 stages=tuple(l.name for l in extractor.layers))
    return tuple(out[l.name] for l in extractor.layers)

"""Feature extractors for the correlation-filter tracker.

An `Extractor` is a static (hashable) description: which network, which named stages, how
each is pooled, and how its responses are weighted. Its `__call__(params, patches)` is a pure
function of a params pytree (network variables plus preprocessing arrays), so one compiled
tracker step serves any weights of the same architecture.

Conventions: patches are (N, S, S, 3) float32 RGB in 0..255; each returned layer is
(N, h, w, c) float32, average-pooled by the layer's `pool` factor (ECO's "downsample
factor") and scaled so that its mean square over cells and channels is 1 (ECO's
normalize_power=2, normalize_size, normalize_dim), which makes one regularisation weight
fit every layer. `stride` is crop pixels per (pooled) cell.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class LayerSpec(NamedTuple):
    """One feature layer of the tracker.

    Attributes:
      name: stage name of the model ("conv1", "conv5", "stride16", ...).
      pool: average-pooling factor applied to the stage output.
      weight: weight of this layer's response in the fused response.
    """
    name: str
    pool: int = 1
    weight: float = 1.0


def _avg_pool(x, factor):
    if factor == 1:
        return x
    n, h, w, c = x.shape
    h2, w2 = h // factor, w // factor
    x = x[:, :h2 * factor, :w2 * factor]
    return x.reshape(n, h2, factor, w2, factor, c).mean(axis=(2, 4))


def _unit_energy(x):
    energy = jnp.mean(jnp.square(x), axis=(1, 2, 3), keepdims=True)
    return x * jax.lax.rsqrt(energy + 1e-12)


@dataclasses.dataclass(frozen=True)
class CNNExtractor:
    """Features from a Flax model returning named stages (see `ctjax.models`).

    Attributes:
      name: label used in reports.
      module: the Flax module (hashable, static).
      layers: the layers to use.
      strides: input pixels per cell of each stage before pooling (from the model's
        feature contract).
    """
    name: str
    module: Any
    layers: tuple[LayerSpec, ...]
    strides: tuple[int, ...]

    @property
    def cell_strides(self) -> tuple[int, ...]:
        """Crop pixels per pooled cell, one per layer."""
        return tuple(s * l.pool for s, l in zip(self.strides, self.layers))

    def __call__(self, params, patches):
        """Returns one (N, h, w, c) unit-energy feature map per layer.

        Args:
          params: {"variables": model variables, "mean": (S,S,3) or (3,), "std": (3,),
            "scale": ()} with the mean already at the patch size.
          patches: (N, S, S, 3) float32 RGB 0..255.
        """
        x = (patches * params["scale"] - params["mean"]) / params["std"]
        stages = tuple(l.name for l in self.layers)
        out = self.module.apply(params["variables"], x, stages=stages)
        return tuple(_unit_energy(_avg_pool(out[l.name], l.pool)) for l in self.layers)


@dataclasses.dataclass(frozen=True)
class GradientHistogramExtractor:
    """A classic hand-crafted baseline: grayscale plus 9 soft-binned unsigned gradient
    orientations, summed over 4x4-pixel cells (HOG without block normalisation).
    Needs no weights; `params` is an empty dict.
    """
    name: str = "gradhist"
    bins: int = 9
    cell: int = 4
    layers: tuple[LayerSpec, ...] = (LayerSpec("gradhist", 1, 1.0),)

    @property
    def cell_strides(self) -> tuple[int, ...]:
        return (self.cell,)

    def __call__(self, params, patches):
        del params
        gray = jnp.mean(patches, axis=-1) / 255.0
        gy = jnp.pad(gray[:, 2:] - gray[:, :-2], ((0, 0), (1, 1), (0, 0)), mode="edge") / 2
        gx = jnp.pad(gray[:, :, 2:] - gray[:, :, :-2], ((0, 0), (0, 0), (1, 1)), mode="edge") / 2
        magnitude = jnp.sqrt(gy ** 2 + gx ** 2)
        angle = jnp.mod(jnp.arctan2(gy, gx), jnp.pi) / jnp.pi * self.bins  # in [0, bins)
        centres = jnp.arange(self.bins, dtype=jnp.float32)
        dist = jnp.abs(angle[..., None] - centres)
        dist = jnp.minimum(dist, self.bins - dist)  # orientation is circular
        hist = magnitude[..., None] * jnp.maximum(1.0 - dist, 0.0)
        feats = jnp.concatenate([hist, gray[..., None] - 0.5], axis=-1)
        return (_unit_energy(_avg_pool(feats, self.cell)),)


def cnn_params(loaded, patch_size: int) -> dict:
    """The params pytree of a `CNNExtractor` for a loaded model at a patch size.

    The mean image (if any) is resized to the patch size once, here, on the host.

    Args:
      loaded: a `ctjax.models.weights.LoadedModel`.
      patch_size: the tracker's static patch side in pixels.
    """
    from ctjax.models.preprocessing import resized_mean

    prep = loaded.preprocessing
    mean = np.asarray(resized_mean(prep.mean, (patch_size, patch_size)))
    std = np.ones(3, np.float32) if prep.std is None else np.asarray(prep.std, np.float32)
    return {"variables": loaded.variables, "mean": mean, "std": std,
            "scale": np.float32(prep.input_scale)}


def cnn_extractor(loaded, layers: tuple[LayerSpec, ...], *, name: str | None = None):
    """A `CNNExtractor` for a `LoadedModel`, strides taken from the model's contract."""
    from ctjax.models import registry

    module = registry.build_module(loaded.config)
    strides = tuple(registry.stage_info(loaded.config, l.name).stride for l in layers)
    return CNNExtractor(name=name or loaded.config.name, module=module, layers=tuple(layers),
                        strides=strides)


@dataclasses.dataclass(frozen=True)
class CompositeExtractor:
    """Several extractors side by side (e.g. hand-crafted + CNN, as fECO uses HOG + conv1 +
    conv5). `params` is a tuple with one entry per part; layers are concatenated in order."""
    parts: tuple

    @property
    def name(self) -> str:
        return "+".join(p.name for p in self.parts)

    @property
    def layers(self) -> tuple[LayerSpec, ...]:
        return tuple(l for p in self.parts for l in p.layers)

    @property
    def cell_strides(self) -> tuple[int, ...]:
        return tuple(s for p in self.parts for s in p.cell_strides)

    def __call__(self, params, patches):
        return tuple(f for part, prm in zip(self.parts, params) for f in part(prm, patches))

"""CNN features shared by the trackers and by distillation: preprocessing, named stages,
pooling and the per-layer normalisation.

An extractor is a static (hashable) description: which network, which named stages, how
each is pooled, and how its responses are weighted. Its `__call__(params, patches)` is a pure
function of a params pytree (network variables plus preprocessing arrays), so one compiled
tracker step serves any weights of the same architecture.

Conventions: patches are (N, S, S, 3) float32 RGB in 0..255; each returned layer is
(N, h, w, c) float32, average-pooled by the layer's `pool` factor (ECO's "downsample
factor") and scaled by `normalize_energy` so that its mean square over cells and channels
is 1 (ECO's normalize_power=2, normalize_size, normalize_dim), which makes one
regularisation weight fit every layer. `stride` is crop pixels per (pooled) cell. The
distillation losses (`ctjax.distill.losses`) use the same `normalize_energy` and the same
preprocessing (`ctjax.models.preprocessing.standardize`), so the tracking loss sees the
features the tracker sees.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ctjax.models import preprocessing, registry


class LayerSpec(NamedTuple):
    """One feature layer of a tracker.

    Attributes:
      name: stage name of the model ("conv1", "conv5", "stride16", ...).
      pool: average-pooling factor applied to the stage output.
      weight: weight of this layer's response in the fused response.
    """
    name: str
    pool: int = 1
    weight: float = 1.0


def avg_pool(x, factor: int):
    """Non-overlapping `factor` x `factor` average pooling of (N, H, W, C) maps; trailing
    rows and columns that do not fill a cell are dropped (ECO's downsampling)."""
    if factor == 1:
        return x
    n, h, w, c = x.shape
    h2, w2 = h // factor, w // factor
    x = x[:, :h2 * factor, :w2 * factor]
    return x.reshape(n, h2, factor, w2, factor, c).mean(axis=(2, 4))


def normalize_energy(x):
    """Scales each example of (N, H, W, C) maps to mean square 1 over cells and channels.

    The per-layer normalisation of every tracker and of the tracking loss (ECO
    `extract_features.m` with normalize_power = 2, normalize_size = normalize_dim = true).

    Args:
      x: (N, H, W, C) float features.

    Returns:
      (N, H, W, C) `x * rsqrt(mean(x²) + 1e-12)`, per example.
    """
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
          params: from `cnn_params`: {"variables": model variables, "mean": (S,S,3) or (3,),
            "std": (3,), "scale": ()} with the mean already at the patch size.
          patches: (N, S, S, 3) float32 RGB 0..255.
        """
        x = preprocessing.standardize(patches, mean=params["mean"], std=params["std"],
                                      input_scale=params["scale"])
        stages = tuple(l.name for l in self.layers)
        out = self.module.apply(params["variables"], x, stages=stages)
        return tuple(normalize_energy(avg_pool(out[l.name], l.pool)) for l in self.layers)


def cnn_params(loaded, patch_size: int) -> dict:
    """The params pytree of a `CNNExtractor` for a loaded model at a patch size.

    The mean image (if any) is resized to the patch size once, here, on the host, exactly as
    `ctjax.models.preprocessing.normalize` resizes it for a batch of that size.

    Args:
      loaded: a `ctjax.models.weights.LoadedModel`.
      patch_size: the tracker's static patch side in pixels.
    """
    prep = loaded.preprocessing
    mean = np.asarray(preprocessing.resized_mean(prep.mean, (patch_size, patch_size)))
    std = np.ones(3, np.float32) if prep.std is None else np.asarray(prep.std, np.float32)
    return {"variables": loaded.variables, "mean": mean, "std": std,
            "scale": np.float32(prep.input_scale)}


def cnn_extractor(loaded, layers: tuple[LayerSpec, ...], *, name: str | None = None):
    """A `CNNExtractor` for a `LoadedModel`, strides taken from the model's contract."""
    module = registry.build_module(loaded.config)
    strides = tuple(registry.stage_info(loaded.config, l.name).stride for l in layers)
    return CNNExtractor(name=name or loaded.config.name, module=module, layers=tuple(layers),
                        strides=strides)

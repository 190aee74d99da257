"""A hand-crafted baseline extractor: soft-binned gradient-orientation histograms and grey.

Same contract as `ctjax.features.cnn.CNNExtractor`: a static description whose
`__call__(params, patches)` maps (N, S, S, 3) float32 RGB 0..255 patches to a tuple of
(N, h, w, c) float32 maps normalised by `normalize_energy`.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from ctjax.features.cnn import LayerSpec, avg_pool, normalize_energy


@dataclasses.dataclass(frozen=True)
class GradientHistogramExtractor:
    """Grayscale plus 9 soft-binned unsigned gradient orientations, summed over 4x4-pixel
    cells (HOG without block normalisation). Needs no weights; `params` is an empty dict.
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
        return (normalize_energy(avg_pool(feats, self.cell)),)

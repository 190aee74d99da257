"""Several extractors side by side (e.g. hand-crafted + CNN, as fECO uses HOG + conv1 + conv5)."""

from __future__ import annotations

import dataclasses

from ctjax.features.cnn import LayerSpec


@dataclasses.dataclass(frozen=True)
class CompositeExtractor:
    """Extractors concatenated layer by layer. `params` is a tuple with one entry per part;
    layers (and their maps) come in the order of the parts."""
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

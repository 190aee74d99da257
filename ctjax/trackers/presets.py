"""Named tracker presets: a registry of builders, used by `ctjax track`, `ctjax eval`, the
benchmarks and any Python caller.

| preset | features | layers (pooling) |
|---|---|---|
| `cfvggm` | a CF-VGGM-family student (shipped, released `CF_VGGM.mat`, or a path) | conv1 (2x2 avg) + conv5, ECO's OTB setting [3 14] |
| `effnet` | EfficientNet-Lite0 ImageNet teacher (the offline-available teacher) | stride4 + stride16 |
| `vggm` | VGG-M trunk, random weights (the paper's teacher cost; speed only) | conv1 (2x2 avg) + conv5 |
| `cfvggm-random` | the student architecture with random weights (an ablation floor) | conv1 (2x2 avg) + conv5 |
| `gradhist` | hand-crafted gradient-orientation histograms + grey (no CNN) | 4x4-pixel cells |

All of these are the DCF tracker (`ctjax.trackers.dcf`) with `TrackerConfig` defaults, so
differences in results come from the features.

A new tracker plugs in with one call, `register(name, description, builder)`, where
`builder(*, weights=None, **opts) -> BuiltTracker`, made at import time by a module named
`ctjax/trackers/<family>_presets.py` (e.g. `eco_presets`): such modules are found and
imported by `available()` and by `build()` for a name not registered yet (a plug-in
registry: this module never imports them by name). `ctjax.trackers.run` runs any
`BuiltTracker`.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any, Callable, NamedTuple

from ctjax.features.cnn import LayerSpec, cnn_extractor, cnn_params
from ctjax.features.composite import CompositeExtractor
from ctjax.features.gradhist import GradientHistogramExtractor
from ctjax.models import registry, weights as model_weights
from ctjax.models.student import SHIPPED_STUDENT, load_student, student_preprocessing
from ctjax.trackers import Tracker
from ctjax.trackers.dcf import TrackerConfig, make_tracker

__all__ = ["BuiltTracker", "EFFNET_LAYERS", "PRESETS", "SHIPPED_STUDENT", "VGGM_LAYERS",
           "available", "build", "load_student", "register"]

VGGM_LAYERS = (LayerSpec("conv1", pool=2, weight=1.0), LayerSpec("conv5", pool=1, weight=1.0))
EFFNET_LAYERS = (LayerSpec("stride4", pool=1, weight=1.0), LayerSpec("stride16", pool=1, weight=1.0))


class BuiltTracker(NamedTuple):
    """A preset made concrete: pure functions, their params and a description.

    Attributes:
      name: the preset name.
      tracker: the `Tracker` (init_fn, step_fn).
      params: the params pytree both functions take.
      config: the tracker's config (its `canvas_hw` is what `ctjax.trackers.run` needs).
      extractor: the feature extractor.
      weights: where the weights came from ("none" without weights), for reports.
    """
    name: str
    tracker: Tracker
    params: Any
    config: Any
    extractor: Any
    weights: str


PRESETS: dict[str, str] = {}  # name -> one-line description, in registration order
_BUILDERS: dict[str, Callable[..., BuiltTracker]] = {}


def register(name: str, description: str, builder: Callable[..., BuiltTracker]) -> None:
    """Adds a preset: `builder(*, weights=None, **opts) -> BuiltTracker`.

    Raises:
      ValueError: `name` is already registered by another builder (the same builder again,
        e.g. a plug-in module imported a second time after a failed import, is accepted).
    """
    old = _BUILDERS.get(name)
    if old is not None and _origin(old) != _origin(builder):
        raise ValueError(f"tracker preset {name!r} is already registered (by {_origin(old)})")
    PRESETS[name] = description
    _BUILDERS[name] = builder


def _origin(builder) -> str:
    return f"{getattr(builder, '__module__', '?')}.{getattr(builder, '__qualname__', '?')}"


def _import_plugins() -> None:
    """Imports every `ctjax.trackers.*_presets` module (each registers its presets)."""
    import ctjax.trackers as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name.endswith("_presets"):
            importlib.import_module(f"{package.__name__}.{info.name}")


def available() -> dict[str, str]:
    """Every preset, plug-ins included: name -> one-line description."""
    _import_plugins()
    return dict(PRESETS)


def build(name: str, *, weights: str | Path | None = None, **opts) -> BuiltTracker:
    """Builds a registered preset by name (see `PRESETS`).

    Args:
      name: the preset.
      weights: for presets with weights: None for the default, or what the preset accepts
        (for `cfvggm`: see `ctjax.models.student.load_student`).
      **opts: preset options, e.g. `config=TrackerConfig(...)`, `with_handcrafted=True` for
        the DCF presets.

    Raises:
      ValueError: unknown preset.
    """
    if name not in _BUILDERS:
        _import_plugins()
    if name not in _BUILDERS:
        raise ValueError(f"unknown tracker {name!r}; choose one of {sorted(available())}")
    return _BUILDERS[name](weights=weights, **opts)


# ---------------------------------------------------------------------------------------------
# The DCF presets


def _random(config_name: str, patch_size: int, seed: int = 0) -> model_weights.LoadedModel:
    import jax

    config = registry.MODEL_CONFIGS[config_name]
    variables = registry.init_variables(config, jax.random.PRNGKey(seed),
                                        input_hw=(patch_size, patch_size))
    return model_weights.LoadedModel(config=config, variables=variables,
                                     preprocessing=student_preprocessing(),
                                     source=f"random init (seed {seed})")


def _dcf(name: str, loaded, layers, config: TrackerConfig | None,
         with_handcrafted: bool) -> BuiltTracker:
    """The DCF tracker on a loaded CNN's layers (optionally beside gradient histograms)."""
    config = config or TrackerConfig()
    extractor = cnn_extractor(loaded, layers, name=name)
    params = cnn_params(loaded, config.patch_size)
    if with_handcrafted:
        extractor = CompositeExtractor((GradientHistogramExtractor(), extractor))
        params = ({}, params)
    return BuiltTracker(name, make_tracker(config, extractor), params, config, extractor,
                        loaded.source)


def _cfvggm(*, weights=None, config=None, with_handcrafted=False):
    return _dcf("cfvggm", load_student(weights), VGGM_LAYERS, config, with_handcrafted)


def _effnet(*, weights=None, config=None, with_handcrafted=False):
    return _dcf("effnet", model_weights.load_efficientnet_lite0(weights), EFFNET_LAYERS, config,
                with_handcrafted)


def _random_preset(name: str, model: str):
    def builder(*, weights=None, config=None, with_handcrafted=False):
        if weights is not None:
            raise ValueError(f"preset {name!r} uses random weights; it takes no --weights")
        config = config or TrackerConfig()
        return _dcf(name, _random(model, config.patch_size), VGGM_LAYERS, config,
                    with_handcrafted)
    return builder


def _gradhist(*, weights=None, config=None):
    if weights is not None:
        raise ValueError("preset 'gradhist' is hand-crafted; it takes no --weights")
    config = config or TrackerConfig()
    extractor = GradientHistogramExtractor()
    return BuiltTracker("gradhist", make_tracker(config, extractor), {}, config, extractor, "none")


register("cfvggm", "CF-VGGM student features (default weights: the shipped ctjax student)", _cfvggm)
register("effnet", "EfficientNet-Lite0 ImageNet teacher features", _effnet)
register("vggm", "VGG-M trunk with random weights (teacher cost, speed only)",
         _random_preset("vggm", "vggm"))
register("cfvggm-random", "CF-VGGM architecture with random weights",
         _random_preset("cfvggm-random", "cf_vggm_r64"))
register("gradhist", "hand-crafted gradient histograms (no CNN)", _gradhist)

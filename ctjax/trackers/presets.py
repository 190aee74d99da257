"""Named tracker presets: which features, which layers, which settings.

| preset | features | layers (pooling) |
|---|---|---|
| `cfvggm` | a CF-VGGM-family student (shipped, released `CF_VGGM.mat`, or a path) | conv1 (2x2 avg) + conv5, ECO's OTB setting [3 14] |
| `effnet` | EfficientNet-Lite0 ImageNet teacher (the offline-available teacher) | stride4 + stride16 |
| `vggm` | VGG-M trunk, random weights (the paper's teacher cost; speed only) | conv1 (2x2 avg) + conv5 |
| `cfvggm-random` | the student architecture with random weights (an ablation floor) | conv1 (2x2 avg) + conv5 |
| `gradhist` | hand-crafted gradient-orientation histograms + grey (no CNN) | 4x4-pixel cells |

All presets share `TrackerConfig` defaults, so differences in results come from the features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from ctjax import paths
from ctjax.features.cnn import (CompositeExtractor, GradientHistogramExtractor, LayerSpec,
                                     cnn_extractor, cnn_params)
from ctjax.trackers.dcf import Tracker, TrackerConfig, make_tracker

SHIPPED_STUDENT = paths.ASSETS / "students" / "ctjax_cfvggm_r64"

VGGM_LAYERS = (LayerSpec("conv1", pool=2, weight=1.0), LayerSpec("conv5", pool=1, weight=1.0))
EFFNET_LAYERS = (LayerSpec("stride4", pool=1, weight=1.0), LayerSpec("stride16", pool=1, weight=1.0))

PRESETS = {
    "cfvggm": "CF-VGGM student features (default weights: the shipped ctjax student)",
    "effnet": "EfficientNet-Lite0 ImageNet teacher features",
    "vggm": "VGG-M trunk with random weights (teacher cost, speed only)",
    "cfvggm-random": "CF-VGGM architecture with random weights",
    "gradhist": "hand-crafted gradient histograms (no CNN)",
}


class BuiltTracker(NamedTuple):
    """A preset made concrete: pure functions, their params and a description."""
    name: str
    tracker: Tracker
    params: Any
    config: TrackerConfig
    extractor: Any
    weights: str


def load_student(weights: str | Path | None):
    """Loads a CF-VGGM-family student.

    Args:
      weights: None for the shipped ctjax student; "released" for the authors'
        `CF_VGGM.mat` under `$CTJAX_DATA/weights`; a `.mat` path (MatConvNet simplenn);
        or the path of a student exported by `ctjax export`.

    Returns:
      `ctjax.models.weights.LoadedModel`.
    """
    from ctjax.models import weights as model_weights

    if weights is None:
        if not SHIPPED_STUDENT.exists():
            raise FileNotFoundError(
                f"the shipped student is missing ({SHIPPED_STUDENT}); pass --weights released "
                "(needs $CTJAX_DATA/weights/CF_VGGM.mat) or --weights PATH")
        weights = SHIPPED_STUDENT
    if str(weights) == "released":
        weights = paths.released_student()
    weights = Path(weights)
    if not weights.exists():
        raise FileNotFoundError(f"weights not found: {weights}")
    if weights.suffix == ".mat":
        return model_weights.load_matconvnet_simplenn(weights)
    from ctjax.distill import checkpoint
    return checkpoint.load_student(weights)


def _random(config_name: str, patch_size: int, seed: int = 0):
    import jax
    from ctjax.models import preprocessing, registry, weights as model_weights

    config = registry.MODEL_CONFIGS[config_name]
    variables = registry.init_variables(config, jax.random.PRNGKey(seed),
                                        input_hw=(patch_size, patch_size))
    prep = preprocessing.vggm_preprocessing(preprocessing.VGGM_MEAN_RGB)
    return model_weights.LoadedModel(config=config, variables=variables, preprocessing=prep,
                                     source=f"random init (seed {seed})")


def build(name: str, *, weights: str | Path | None = None,
          config: TrackerConfig | None = None, with_handcrafted: bool = False) -> BuiltTracker:
    """Builds a preset by name (see `PRESETS`)."""
    config = config or TrackerConfig()
    if name == "cfvggm":
        loaded = load_student(weights)
        extractor = cnn_extractor(loaded, VGGM_LAYERS, name="cfvggm")
    elif name == "effnet":
        from ctjax.models import weights as model_weights
        loaded = model_weights.load_efficientnet_lite0(weights)
        extractor = cnn_extractor(loaded, EFFNET_LAYERS, name="effnet")
    elif name in ("vggm", "cfvggm-random"):
        loaded = _random("vggm" if name == "vggm" else "cf_vggm_r64", config.patch_size)
        extractor = cnn_extractor(loaded, VGGM_LAYERS, name=name)
    elif name == "gradhist":
        extractor = GradientHistogramExtractor()
        return BuiltTracker(name, make_tracker(config, extractor), {}, config, extractor, "none")
    else:
        raise ValueError(f"unknown tracker {name!r}; choose one of {sorted(PRESETS)}")
    params = cnn_params(loaded, config.patch_size)
    if with_handcrafted:
        extractor = CompositeExtractor((GradientHistogramExtractor(), extractor))
        params = ({}, params)
    return BuiltTracker(name, make_tracker(config, extractor), params, config, extractor,
                        loaded.source)

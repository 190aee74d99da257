"""The STRCF presets: STRCF (hand-crafted), DeepSTRCF on the ImageNet teacher, and fDeepSTRCF.

| preset | features | settings |
|---|---|---|
| `strcf` | grey + fHOG + colour names, cell 4 | STRCF `run_STRCF.m` (search 5x, 5 scales x 1.01) |
| `deepstrcf` | EfficientNet-Lite0 stride16 + grey + fHOG + colour names | STRCF `run_DeepSTRCF.m` (5 scales x 1.01) |
| `fdeepstrcf` | CF-VGGM student conv3 + grey + fHOG (no colour names, as on OTB) | CF-VGG `fDeepSTRCF/run_DeepSTRCF.m` (3 scales x 1.02) |

All three: temporal weight 15, ADMM 2 iterations with gamma 1 -> 0.1, binary window 1e5 / 1e-3
(target box in cells of 4 px for the hand-crafted block, of 14 px for the CNN block), label
sigma 1/16, Newton 5 (ECO.md §3, PAPER.md §8). `fdeepstrcf` takes the shipped ctjax student by
default, `released` for the authors' `CF_VGGM.mat`, or the path of any exported student or
simplenn `.mat`; `deepstrcf` uses the EfficientNet-Lite0 teacher, the ImageNet network ctjax
has offline (the paper's DeepSTRCF uses VGG-M conv3).

Sample size: STRCF picks the sample side per sequence from the target's area (clamped to
[200^2, 250^2] px^2 with a CNN, which gives supports of 208 to 256 px, [150^2, 200^2] without);
here one static side per preset so each compiles once: a 240 px support for both CNN presets
(a 256 px network input whose conv3, or stride-16 stage, gives 15 x 15 cells of 16 px; the
hand-crafted block is 60 x 60 cells of 4 px) and 200 px for `strcf`. On the train split
(released student) a 240 px support gave fdeepstrcf a mean AUC of 0.721 against 0.692 with
208 px (deepstrcf: 0.660 against 0.725, one sequence, Girl2, lost at 240 px).

`fdeepstrcf` also trains on the recentred detection sample (`reuse_detection_sample`, see
`FDEEPSTRCF`), for speed; `deepstrcf` and `strcf` extract a new training sample as STRCF does.
"""

from __future__ import annotations

from ctjax.features import colornames
from ctjax.features.cnn import LayerSpec, cnn_extractor, cnn_params
from ctjax.models import weights as model_weights
from ctjax.models.student import load_student
from ctjax.trackers import strcf
from ctjax.trackers.presets import BuiltTracker, register

CNN_SUPPORT = 240
CNN_INPUT = 256
HC_SUPPORT = 200

# Training on the recentred detection sample (one feature extraction per scale and frame,
# ECO's `shift_sample`) instead of a fresh sample at the new position: train split, released
# student, 208 px support: mean AUC 0.692 vs 0.686, about 30% less time per frame.
FDEEPSTRCF = strcf.StrcfConfig(reuse_detection_sample=True)
DEEPSTRCF = strcf.StrcfConfig(number_of_scales=5, scale_step=1.01)
STRCF_HC = strcf.StrcfConfig(search_area_scale=5.0, number_of_scales=5, scale_step=1.01)


def colour_table():
    """ECO's colour-name table from `$CTJAX_DATA/lookup` (STRCF's `CNnorm`)."""
    return colornames.load_colour_names_table()


def deep_strcf(name: str, loaded, config: strcf.StrcfConfig, *,
               colour_names: bool) -> BuiltTracker:
    """STRCF on one stride-16 stage of a loaded CNN (conv3 of the VGG-M family, stride16 of
    EfficientNet-Lite0) beside grey + fHOG (+ colour names)."""
    stage = "conv3" if loaded.config.family == "vggm" else "stride16"
    extractor = cnn_extractor(loaded, (LayerSpec(stage),), name=name)
    features = strcf.StrcfFeatures(support=CNN_SUPPORT, colour_names=colour_names,
                                   cnn=extractor, cnn_input=CNN_INPUT)
    params = {"cn": colour_table() if colour_names else None,
              "cnn": cnn_params(loaded, CNN_INPUT)}
    return BuiltTracker(name, strcf.make_tracker(config, features), params, config, features,
                        loaded.source)


def _fdeepstrcf(*, weights=None, config=None):
    return deep_strcf("fdeepstrcf", load_student(weights), config or FDEEPSTRCF,
                      colour_names=False)


def _deepstrcf(*, weights=None, config=None):
    return deep_strcf("deepstrcf", model_weights.load_efficientnet_lite0(weights),
                      config or DEEPSTRCF, colour_names=True)


def _strcf(*, weights=None, config=None):
    if weights is not None:
        raise ValueError("preset 'strcf' is hand-crafted; it takes no --weights")
    config = config or STRCF_HC
    features = strcf.StrcfFeatures(support=HC_SUPPORT, colour_names=True)
    return BuiltTracker("strcf", strcf.make_tracker(config, features),
                        {"cn": colour_table(), "cnn": None}, config, features,
                        "none (colour names from $CTJAX_DATA/lookup)")


register("strcf", "STRCF: grey + fHOG + colour names (STRCF's run_STRCF settings)", _strcf)
register("deepstrcf", "DeepSTRCF on the EfficientNet-Lite0 teacher (stride16 + hand-crafted)",
         _deepstrcf)
register("fdeepstrcf", "fDeepSTRCF: STRCF on a CF-VGGM student's conv3 (default: the shipped "
         "student)", _fdeepstrcf)

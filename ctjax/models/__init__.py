"""Feature networks: the VGG-M teacher, its CF-VGGM students and EfficientNet-Lite0.

All models are Flax Linen modules used as pure functions,
`build_module(config).apply(variables, normalize(images, prep), stages=(...))`, returning a
dict of named NHWC float32 stage features. `registry` names the configs and states where each
stage's cells sit on the input (`stage_info`); `weights` reads the real weight files.
"""

from ctjax.models.efficientnet import EfficientNetLite0
from ctjax.models.layers import lrn, max_pool_matconvnet
from ctjax.models.preprocessing import Preprocessing, normalize
from ctjax.models.registry import (MODEL_CONFIGS, ModelConfig, StageInfo, build_module,
                                   config_for_widths, get_config, init_variables, output_hw,
                                   param_count, stage_info, stage_names, stage_offsets)
from ctjax.models.vggm import VGGM
from ctjax.models.weights import (LoadedModel, WeightFileError, load_efficientnet_lite0,
                                  load_matconvnet_simplenn, write_matconvnet_simplenn)

__all__ = [
    "EfficientNetLite0", "LoadedModel", "MODEL_CONFIGS", "ModelConfig", "Preprocessing",
    "StageInfo", "VGGM", "WeightFileError", "build_module", "config_for_widths", "get_config",
    "init_variables", "load_efficientnet_lite0", "load_matconvnet_simplenn", "lrn",
    "max_pool_matconvnet", "normalize", "output_hw", "param_count", "stage_info", "stage_names",
    "stage_offsets", "write_matconvnet_simplenn",
]

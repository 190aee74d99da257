"""Distillation with fidelity + tracking loss: the paper's full offline objective (main run).

EfficientNet-Lite0 (ImageNet, the teacher available offline) -> CF-VGGM r64 (12/32/64/64/64)
on the shared train split (Girl2, Woman, Human3, ball1, Surfer), 160 px crops, a pool of 2000
pairs with cached teacher targets, Adam 1e-3 cosine, 2500 steps of 16 pairs.

    ctjax distill --config experiments/distill_fid_track.py --workdir runs/fid_track --single-core
    ctjax export --workdir runs/fid_track --output runs/fid_track/student

Expected: on one CPU core about 25 min; the loss falls from about 6 to about 2 (see
ctjax/assets/students/ctjax_cfvggm_r64/README.md for the measured run).
Smoke (CI, seconds): `--config experiments/distill_fid_track.py:smoke`; the loss falls.
"""

from ctjax.train import SMOKE, DistillConfig, override


def get_config(arg: str = "") -> DistillConfig:
    config = DistillConfig(name="fid_track", fidelity_weight=1.0, tracking_weight=1.0)
    return override(config, arg, presets={"smoke": SMOKE})

"""Distillation with fidelity + tracking loss: the paper's full offline objective (main run).

EfficientNet-Lite0 (ImageNet, the teacher available offline) -> CF-VGGM r64 (12/32/64/64/64)
on the shared train split (Girl2, Woman, Human3, ball1, Surfer), 160 px crops, a pool of 2000
pairs with cached teacher targets, Adam 1e-3 cosine, 2500 steps of 16 pairs.

    ctjax distill --config experiments/distill_fid_track.py --workdir runs/fid_track --single-core
    ctjax export --workdir runs/fid_track --output runs/fid_track/student

Expected (measured, one core of a loaded 2-core VM, add `--cache-dir runs/pools` to share
the teacher cache with distill_fidelity.py): 34 min (6 min pool + teacher, 28 min training);
total loss 8.7 -> 2.15 (train and held-out pairs alike); see
ctjax/assets/students/ctjax_cfvggm_r64/README.md.
Smoke (CI, seconds): `--config experiments/distill_fid_track.py:smoke`; the loss falls.
"""

from ctjax.distill.config import SMOKE, DistillConfig, override


def get_config(arg: str = "") -> DistillConfig:
    config = DistillConfig(name="fid_track", fidelity_weight=1.0, tracking_weight=1.0)
    return override(config, arg, presets={"smoke": SMOKE})

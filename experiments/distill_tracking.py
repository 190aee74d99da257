"""Ablation: tracking loss only (no teacher at all); otherwise as distill_fid_track.py.

    ctjax distill --config experiments/distill_tracking.py --workdir runs/tracking --single-core

Expected: the DCF tracking terms fall below the main run's (nothing pulls the features toward
the teacher); no teacher targets are computed, so the pool is built in about a minute.
Smoke (CI): `--config experiments/distill_tracking.py:smoke`; the loss falls.
"""

from ctjax.distill.config import SMOKE, DistillConfig, override


def get_config(arg: str = "") -> DistillConfig:
    config = DistillConfig(name="tracking", fidelity_weight=0.0, tracking_weight=1.0)
    return override(config, arg, presets={"smoke": SMOKE})

"""Ablation: fidelity loss only (no tracking loss); otherwise as distill_fid_track.py.

    ctjax distill --config experiments/distill_fidelity.py --workdir runs/fidelity --single-core

Expected: the fidelity terms fall as in the main run; no tracking term is computed.
Smoke (CI): `--config experiments/distill_fidelity.py:smoke`; the loss falls.
"""

from ctjax.distill.config import SMOKE, DistillConfig, override


def get_config(arg: str = "") -> DistillConfig:
    config = DistillConfig(name="fidelity", fidelity_weight=1.0, tracking_weight=0.0)
    return override(config, arg, presets={"smoke": SMOKE})

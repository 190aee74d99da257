"""Compression-ratio sweep (PAPER.md 9.1): the fidelity + tracking run for students of ratio
16, 32, 64 and 96 (VGG-M widths / sqrt(ratio): 24/64/128, 17/45/91, 12/32/64, 10/26/52).

    for r in r16 r32 r64 r96; do
      ctjax distill --config experiments/distill_ratio.py:$r --workdir runs/ratio_$r \
          --cache-dir runs/pools --single-core
    done

All ratios (and distill_fid_track.py) share one cached pool of pairs + teacher targets.
Measured here (one core each, two runs at a time on the 2-core VM, 2,500 steps): r96 10.4 min
(including the 1 min pool), r64 10.5 min, r32 30 min (core shared with test jobs part of the
time), r16: see the README's compression study. Final validation losses fall with width:
r96 2.47, r64 2.38, r32 2.17 (README "Compression study" has the table).

The argument picks the ratio (default r64) and may add `smoke` (e.g. `:r96,smoke`) or
key=value overrides. Expected: lower final losses for wider students (r16 best, r96 worst).
"""

from ctjax.distill.config import SMOKE, DistillConfig, override

RATIOS = ("r16", "r32", "r64", "r96")


def get_config(arg: str = "") -> DistillConfig:
    tokens = [t.strip() for t in arg.split(",") if t.strip()]
    ratios = [t for t in tokens if t in RATIOS]
    if len(ratios) > 1:
        raise ValueError(f"pick one ratio, got {ratios}")
    ratio = ratios[0] if ratios else "r64"
    config = DistillConfig(name=f"ratio_{ratio}", student=f"cf_vggm_{ratio}")
    rest = ",".join(t for t in tokens if t not in RATIOS)
    return override(config, rest, presets={"smoke": SMOKE})

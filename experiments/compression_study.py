"""The paper's compression-ratio study and ablation (PAPER.md 9.1), reproduced with fECO.

    python experiments/compression_study.py --output results/compression_study \\
        [--split eval] [--workers 2] [--students r16=runs/ratio_r16/student ...]

One `ctjax eval` run (the same command-line path as every other accuracy claim; resumable)
tracks the split with `feco` on every student, then writes `table.md` / `table.json` in the
output folder: per student its compression ratio, conv1-5 parameters, size on disk, MACs of
one frame's CNN pass at fECO's 217 px input (conv1-5, `ctjax.models.cost.conv_macs`), success
AUC, P@20 and median FPS per sequence (one core per worker, as `ctjax eval` measures it).

Students (LABEL=WEIGHTS, WEIGHTS as `feco` takes them), by default:
- compression study: `r16`, `r32`, `r96` from `runs/ratio_<r>/student` (trained by
  `experiments/distill_ratio.py`, exported by `ctjax export`) when they exist, `r64` = the
  shipped student (`ctjax/assets/students/ctjax_cfvggm_r64`), `r64_rerun` = the same recipe
  rerun by `distill_ratio.py:r64` beside the other ratios (same code and pool as they),
  `released` = the authors' `CF_VGGM.mat` (ratio 64);
- ablation (all ratio 64): `random` (`feco-random`), `fidelity_only`, `tracking_only`, the
  shipped fidelity + tracking student (`r64`), `+online` (`feco-online` on it), `released`.
Missing student folders are reported and left out, never replaced.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDENTS = ROOT / "ctjax" / "assets" / "students"
VGGM_CONV_PARAMS = 6_528_640  # VGG-M conv1-5 weights + biases (tests/test_models.py golden count)


def default_students(runs: Path) -> list[tuple[str, str, str]]:
    """(label, preset, weights) of the default study; weights '' for the preset's default."""
    rows = []
    for r in ("r16", "r32"):
        rows.append((r, "feco", str(runs / f"ratio_{r}" / "student")))
    rows.append(("r64", "feco", str(STUDENTS / "ctjax_cfvggm_r64")))
    rows.append(("r64_rerun", "feco", str(runs / "ratio_r64" / "student")))
    rows.append(("r96", "feco", str(runs / "ratio_r96" / "student")))
    rows.append(("released", "feco", "released"))
    rows.append(("random", "feco-random", ""))
    rows.append(("fidelity_only", "feco", str(STUDENTS / "ctjax_cfvggm_r64_fidelity_only")))
    rows.append(("tracking_only", "feco", str(STUDENTS / "ctjax_cfvggm_r64_tracking_only")))
    rows.append(("online", "feco-online", str(STUDENTS / "ctjax_cfvggm_r64")))
    return rows


def parse_student(text: str) -> tuple[str, str, str]:
    """`LABEL=[PRESET:]WEIGHTS` -> (label, preset, weights); the preset defaults to feco."""
    label, sep, rest = text.partition("=")
    if not sep or not label or not rest:
        raise argparse.ArgumentTypeError(f"expected LABEL=[PRESET:]WEIGHTS, got {text!r}")
    preset, sep, weights = rest.partition(":")
    if not sep:
        preset, weights = "feco", rest
    return label, preset, weights


def student_cost(preset: str, weights: str) -> dict:
    """Parameters (conv1-5), size on disk (bytes of the weight file or folder) and MACs of one
    fECO CNN pass, for a student given as `feco` takes it."""
    import jax

    from ctjax.models import cost, registry
    from ctjax.models.student import load_student
    from ctjax.trackers.eco_presets import VGGM_INPUT

    if preset == "feco-random":
        config = registry.get_config("cf_vggm_r64")
        params = registry.param_count(registry.init_variables(config, jax.random.PRNGKey(0)))
        size = None
    else:
        loaded = load_student(weights or None)
        config = loaded.config
        params = registry.param_count(loaded.variables)
        source = Path(loaded.source)
        size = (sum(f.stat().st_size for f in source.rglob("*") if f.is_file())
                if source.is_dir() else source.stat().st_size)
    return {"widths": list(config.widths), "params": params, "size_bytes": size,
            "ratio": VGGM_CONV_PARAMS / params,
            "macs": cost.conv_macs(config, (VGGM_INPUT, VGGM_INPUT), stages=("conv5",))}


def table(rows: list[dict]) -> str:
    head = ["| student | widths | ratio (params) | conv1-5 params | size on disk | MACs / frame "
            "| AUC | P@20 | median FPS |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines = []
    for r in rows:
        size = "-" if r["size_bytes"] is None else f"{r['size_bytes'] / 1e6:.2f} MB"
        lines.append(f"| {r['label']} | {'/'.join(map(str, r['widths']))} | {r['ratio']:.0f} | "
                     f"{r['params']:,} | {size} | {r['macs'] / 1e6:.1f} M | {r['auc']:.3f} | "
                     f"{r['precision20']:.3f} | {r['median_fps']:.1f} |")
    return "\n".join(head + lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output", required=True, help="results folder (the ctjax eval output)")
    p.add_argument("--split", default="eval")
    p.add_argument("--workers", default="2")
    p.add_argument("--runs", default=str(ROOT / "runs"),
                   help="where experiments/distill_ratio.py runs live (default ./runs)")
    p.add_argument("--students", nargs="+", type=parse_student, default=None,
                   help="LABEL=[PRESET:]WEIGHTS (default: the study and ablation rows)")
    p.add_argument("--max-frames", default=None, help="passed to ctjax eval (smoke runs)")
    args = p.parse_args(argv)

    students = args.students or default_students(Path(args.runs))
    present = []
    for label, preset, weights in students:
        if weights and weights != "released" and not Path(weights).exists():
            print(f"{label}: {weights} does not exist (not trained or not exported yet): left out")
            continue
        present.append((label, preset, weights))
    if not present:
        print("no student to evaluate", file=sys.stderr)
        return 2
    trackers = [f"{label}={preset}" + (f":{weights}" if weights else "")
                for label, preset, weights in present]
    cmd = [sys.executable, "-m", "ctjax", "eval", "--trackers", *trackers, "--split", args.split,
           "--workers", args.workers, "--output", args.output]
    if args.max_frames:
        cmd += ["--max-frames", args.max_frames]
    print(" ".join(cmd), flush=True)
    if subprocess.run(cmd).returncode:
        return 1
    summary = json.loads((Path(args.output) / "summary.json").read_text())
    rows = []
    for label, preset, weights in present:
        r = {"label": label, "preset": preset, "weights": weights, **student_cost(preset, weights)}
        s = summary[label]
        r.update(auc=s["auc"], precision20=s["precision20"], median_fps=s["median_fps"])
        rows.append(r)
    text = table(rows)
    out = Path(args.output)
    (out / "table.json").write_text(json.dumps(rows, indent=1))
    (out / "table.md").write_text(f"# fECO compression study ({args.split} split)\n\n"
                                  f"    {' '.join(cmd[1:])}\n\n{text}\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

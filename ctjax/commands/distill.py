"""`ctjax distill`: offline distillation of a student (fidelity + tracking loss); resumes when
--workdir holds a checkpoint."""

from __future__ import annotations

import argparse
import json

HELP = "offline distillation (see --help)"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `ctjax distill`."""
    parser.add_argument("--config", required=True,
                        help="experiments/<name>.py[:arg], e.g. experiments/distill_fid_track.py:smoke")
    parser.add_argument("--workdir", required=True, help="output folder (checkpoints, logs)")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop once this many steps are done (resume later)")
    parser.add_argument("--cache-dir", default=None,
                        help="folder for cached pair pools + teacher targets (default "
                             "WORKDIR/pools); runs with the same data settings can share it")
    parser.add_argument("--single-core", action="store_true",
                        help="pin the process to one CPU core (ctjax.runtime.configure)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def run(args) -> int:
    """Runs `ctjax distill`; returns the exit status."""
    if args.stop_after is not None and args.stop_after <= 0:
        raise ValueError(f"--stop-after must be a positive number of steps, got {args.stop_after}")
    if args.single_core:  # before jax is imported, so the XLA flags take effect
        from ctjax import runtime
        print(runtime.configure(single_thread=True).summary())
    from ctjax.distill.config import load_config
    from ctjax.distill.loop import train_and_evaluate

    config = load_config(args.config)
    summary = train_and_evaluate(config, args.workdir, stop_after=args.stop_after,
                                 progress=not args.no_progress, cache_dir=args.cache_dir)
    print(json.dumps({k: summary[k] for k in ("name", "steps", "complete", "wall_time_s",
                                              "final_train", "final_val")}, indent=1))
    return 0

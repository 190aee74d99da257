"""`ctjax export`: write the student of a distillation run (newest checkpoint) as a folder
that `ctjax track --weights` loads."""

from __future__ import annotations

import argparse

HELP = "export a trained student (see --help)"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `ctjax export`."""
    parser.add_argument("--workdir", required=True, help="the run's folder (ctjax distill --workdir)")
    parser.add_argument("--output", required=True, help="student folder to write")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default newest)")
    return parser


def run(args) -> int:
    """Runs `ctjax export`; returns the exit status."""
    from ctjax.distill.export import export_run

    out = export_run(args.workdir, args.output, step=args.step)
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"exported {out} ({size / 1024:.0f} KiB); use: ctjax track --weights {out}")
    return 0

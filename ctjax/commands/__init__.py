"""The `ctjax` command line: track, eval, distill, export.

Single-threaded CPU settings (`ctjax.runtime.configure`) are applied before jax is imported
for the commands whose speed is reported: here for `track`, in each worker for `eval`;
distill and export leave the backend to jax so a GPU is used when present.
"""

from __future__ import annotations

import argparse
import sys


def _parse_box(text: str):
    try:
        values = [float(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--box must be x,y,w,h numbers, got {text!r}") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"--box must have 4 values x,y,w,h, got {text!r}")
    return values


def _track_parser(sub):
    p = sub.add_parser("track", help="track one sequence folder or video file",
                       description="Track an OTB-format folder (img/ + groundtruth_rect.txt) or a "
                                   "video file from an initial box; writes one x,y,w,h line per "
                                   "frame (1-based, first line = initial box).")
    p.add_argument("path", nargs="?", help="OTB-format sequence folder or video file")
    p.add_argument("--demo", action="store_true",
                   help="track the demo clip shipped with the package instead of PATH")
    p.add_argument("--box", type=_parse_box,
                   help="initial box x,y,w,h (1-based); default: first ground-truth box")
    p.add_argument("--tracker", default="cfvggm", help="tracker preset (see `ctjax track --list`)")
    p.add_argument("--weights", help="student weights: an exported ctjax student, a MatConvNet "
                                     "simplenn .mat (e.g. CF_VGGM.mat), or 'released' for "
                                     "$CTJAX_DATA/weights/CF_VGGM.mat; default: the shipped student")
    p.add_argument("--output", help="result file (x,y,w,h per line); required unless --list")
    p.add_argument("--video", help="also write an annotated .gif (or .mp4 with ctjax[video])")
    p.add_argument("--list", action="store_true", help="list tracker presets and exit")
    p.add_argument("--no-progress", action="store_true")
    return p


def _eval_parser(sub):
    p = sub.add_parser("eval", help="evaluate trackers on a list of sequences (OTB protocol)")
    from ctjax.commands import evaluate as evaluate_cli
    evaluate_cli.add_arguments(p)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="ctjax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _track_parser(sub)
    _eval_parser(sub)
    distill = sub.add_parser("distill", help="offline distillation (see --help)")
    export = sub.add_parser("export", help="export a trained student (see --help)")
    train = checkpoint = None
    if argv and argv[0] in ("distill", "export"):
        # Imported only here: they import jax, which must not happen before `track` and
        # `eval` have applied the single-thread settings.
        from ctjax.distill import checkpoint
        from ctjax.distill import loop as train
        train.add_distill_arguments(distill)
        checkpoint.add_export_arguments(export)
    args = parser.parse_args(argv)

    if args.command == "track":
        from ctjax import runtime
        report = runtime.configure(single_thread=True)
        from ctjax.commands import track as track_cli
        return track_cli.run(args, report)
    if args.command == "eval":  # the workers pin themselves, one core each
        from ctjax.commands import evaluate as evaluate_cli
        return evaluate_cli.run(args)
    if args.command == "distill":
        return train.run_distill(args) or 0
    return checkpoint.run_export(args) or 0


if __name__ == "__main__":
    sys.exit(main())

"""`ctjax track`: track an OTB-format folder (img/ + groundtruth_rect.txt), a video file or
the shipped demo clip from an initial box; writes one x,y,w,h line per frame (1-based, first
line = initial box)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HELP = "track one sequence folder or video file"
BOX_MIN_INSIDE = 0.5  # fraction of a --box's area that must lie inside the first frame


def _parse_box(text: str):
    try:
        values = [float(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--box must be x,y,w,h numbers, got {text!r}") from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"--box must have 4 values x,y,w,h, got {text!r}")
    return values


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `ctjax track`."""
    p.add_argument("path", nargs="?", help="OTB-format sequence folder or video file")
    p.add_argument("--demo", action="store_true",
                   help="track the demo clip shipped with the package instead of PATH")
    p.add_argument("--box", type=_parse_box,
                   help="initial box x,y,w,h (1-based; at least half of it inside the first "
                        "frame); default: first ground-truth box")
    p.add_argument("--tracker", default="cfvggm", help="tracker preset (see `ctjax track --list`)")
    p.add_argument("--weights", help="student weights: an exported ctjax student, a MatConvNet "
                                     "simplenn .mat (e.g. CF_VGGM.mat), or 'released' for "
                                     "$CTJAX_DATA/weights/CF_VGGM.mat; default: the shipped student")
    p.add_argument("--output", help="result file (x,y,w,h per line); required unless --list")
    p.add_argument("--video", help="also write an annotated .gif (or .mp4 with ctjax[video])")
    p.add_argument("--list", action="store_true", help="list tracker presets and exit")
    p.add_argument("--no-progress", action="store_true")
    return p


def _open_sequence(args):
    from ctjax.data import sequences

    if args.demo:
        return sequences.demo_sequence()
    if not args.path:
        raise SystemExit("ctjax track: give a sequence folder or video file, or --demo")
    path = Path(args.path)
    if path.is_dir():
        return sequences.load_sequence(path)
    if path.is_file():
        if args.box is None:
            raise SystemExit("ctjax track: a video file needs --box x,y,w,h")
        return sequences.load_video(path, args.box)
    raise SystemExit(f"ctjax track: {path} is neither a sequence folder nor a video file")


def run(args) -> int:
    """Runs `ctjax track` on one core (settings applied before jax loads); returns the exit
    status."""
    from ctjax import runtime
    report = runtime.configure(single_thread=True)
    from ctjax.trackers import presets

    if args.list:
        for name, text in presets.available().items():
            print(f"{name:15s} {text}")
        return 0
    if not args.output:
        raise SystemExit("ctjax track: --output BOXES.txt is required")

    from ctjax import boxes as box_ops
    from ctjax import evaluation
    from ctjax.trackers.run import check_outputs, compile_tracker, track_frames
    from tqdm import tqdm

    check_outputs(args.output, args.video)  # before anything is loaded, compiled or tracked
    sequence = _open_sequence(args)
    if args.box is not None:  # typed by hand: most of it must lie inside the first frame
        init_box = box_ops.validate_box(args.box, sequence.image_hw, what="--box",
                                        min_inside=BOX_MIN_INSIDE)
    else:
        init_box = sequence.init_box
    built = presets.build(args.tracker, weights=args.weights)
    compiled = compile_tracker(built.tracker, built.config, built.params)
    bar = tqdm(total=len(sequence), desc=f"{sequence.name} [{built.name}]", unit="frame",
               disable=args.no_progress, file=sys.stderr)
    result = track_frames(compiled, built.params, sequence.frames(), init_box,
                          progress=lambda n: bar.update(1))
    bar.close()
    evaluation.write_boxes(args.output, result.boxes)
    print(f"tracked {len(result.boxes)} frames of {sequence.name} with {built.name} "
          f"(weights: {built.weights})")
    print(f"speed: {result.fps:.1f} FPS (median frame {1e3 * np.median(result.frame_seconds[1:]):.2f} ms; "
          f"compile {result.compile_seconds:.1f} s and JPEG decoding excluded)")
    print(runtime.probe(report, seconds=0.3).summary())
    gt = np.asarray(sequence.boxes, np.float64)
    if args.box is None and gt.shape[0] == len(result.boxes) and np.isfinite(gt[1:]).any():
        metrics = evaluation.evaluate_sequence(result.boxes, gt)
        print(f"vs ground truth: success AUC {metrics.auc:.3f}, precision@20px {metrics.precision20:.3f}")
    if args.video:
        from ctjax import visualize
        visualize.write_annotated(args.video, sequence.frames(), result.boxes,
                                  ground_truth=gt if args.box is None else None)
        print(f"annotated video: {args.video}")
    print(f"boxes written to {args.output}")
    return 0

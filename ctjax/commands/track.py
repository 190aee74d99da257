"""`ctjax track`: track one sequence folder, video file or the shipped demo clip."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


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


def run(args, report) -> int:
    """Runs the `track` command; returns the exit status."""
    from ctjax.trackers import presets

    if args.list:
        for name, text in presets.PRESETS.items():
            print(f"{name:15s} {text}")
        return 0
    if not args.output:
        raise SystemExit("ctjax track: --output BOXES.txt is required")

    from ctjax import boxes as box_ops
    from ctjax import runtime
    from ctjax import evaluation
    from ctjax.trackers.run import compile_tracker, track_frames
    from tqdm import tqdm

    sequence = _open_sequence(args)
    init_box = np.asarray(args.box if args.box is not None else sequence.init_box, np.float64)
    box_ops.validate_box(init_box, sequence.image_hw)
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

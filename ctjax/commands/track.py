"""`ctjax track`: track one sequence from an initial box: an OTB-format folder, a sequence of
a benchmark folder (stock OTB-100, UAV123, GOT-10k, LaSOT, VOT; `--layout`, detected by
default), a video file (decoded as a stream, one frame in memory at a time) or the shipped
demo clip. Writes one x,y,w,h line per frame (1-based, first line = initial box) and, beside
it, a per-frame score file (`<output stem>.scores.csv`: the relative score and the ok/lost
flag of `ctjax.Tracker`, the raw peak, the seconds of each frame). Tracker settings can be
changed with `--set key=value` (fields of the preset's config dataclass, e.g.
`--set learning_rate=0.01`, `--set filter.cg_iter=3`; typed and applied by
`ctjax.trackers.settings`). A frame larger than the preset's canvas gets a canvas that holds
it (`ctjax.ops.crop.canvas_for`) unless `canvas_hw` is set. Folders are resolved to sequences
by `ctjax.data.sources` (`--layout`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ctjax.data.sources import LAYOUT_CHOICES, resolve_sources
from ctjax.trackers.settings import build_tracker, parse_setting

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
    p.add_argument("path", nargs="?", help="sequence folder, benchmark folder (with "
                                           "--sequence) or video file")
    p.add_argument("--demo", action="store_true",
                   help="track the demo clip shipped with the package instead of PATH")
    p.add_argument("--box", type=_parse_box,
                   help="initial box x,y,w,h (1-based; at least half of it inside the first "
                        "frame); default: first ground-truth box")
    p.add_argument("--tracker", default="cfvggm", help="tracker preset (see `ctjax track --list`)")
    p.add_argument("--weights", help="student weights: an exported ctjax student, a MatConvNet "
                                     "simplenn .mat (e.g. CF_VGGM.mat), or 'released' for "
                                     "$CTJAX_DATA/weights/CF_VGGM.mat; default: the shipped student")
    add_setting_arguments(p)
    p.add_argument("--sequence", metavar="NAME",
                   help="with a benchmark folder (or a folder of several targets, e.g. OTB's "
                        "Jogging): the sequence to track")
    p.add_argument("--output", help="result file (x,y,w,h per line); required unless --list")
    p.add_argument("--scores", help="per-frame score file (CSV: frame,score,ok,peak,seconds); "
                                    "default: beside --output, <stem>.scores.csv")
    p.add_argument("--video", help="also write an annotated .gif (or .mp4 with ctjax[video])")
    p.add_argument("--list", action="store_true", help="list tracker presets and exit")
    p.add_argument("--no-progress", action="store_true")
    return p


def add_setting_arguments(p: argparse.ArgumentParser, *, labels: bool = False) -> None:
    """`--set` and `--layout`, shared by `track` and `eval`."""
    p.add_argument("--set", action="append", default=[], metavar="[LABEL:]KEY=VALUE" if labels
                   else "KEY=VALUE", dest="settings",
                   help="set a field of the tracker's config dataclass (typed from the field; "
                        "nested fields with dots, e.g. filter.cg_iter=3; tuples as 720,1280)"
                        + ("; LABEL: applies it to one tracker only" if labels else ""))
    p.add_argument("--layout", choices=LAYOUT_CHOICES, default="auto",
                   help="benchmark layout of the sequence folders (default: detected): otb = "
                        "ctjax's OTB-format folders, otb100 = stock OTB-100 (frame ranges, "
                        "two-target sequences), uav123, got10k, lasot, vot")


# ---------------------------------------------------------------------------------------------
# The command


def scores_path_for(output) -> Path:
    """The default score file beside a box file: `b.txt` -> `b.scores.csv`."""
    return Path(output).with_suffix(".scores.csv")


def _open_sequence(args):
    from ctjax.data import sequences

    if args.demo:
        return sequences.demo_sequence()
    if not args.path:
        raise ValueError("give a sequence folder or video file, or --demo")
    path = Path(args.path)
    if path.is_file():
        if args.box is None:
            raise ValueError("a video file needs --box x,y,w,h")
        return sequences.open_video(path, args.box)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is neither a sequence folder nor a video file")
    found = resolve_sources(path, args.layout)
    if args.sequence:
        chosen = [s for s in found if args.sequence in (s.label, s.name)]
        if not chosen:
            names = ", ".join(s.label for s in found[:8]) + (", ..." if len(found) > 8 else "")
            raise ValueError(f"--sequence {args.sequence!r} is not in {path} ({found[0].layout}"
                             f" layout; it holds {names})")
        found = chosen[:1]
    if len(found) > 1:
        names = ", ".join(s.label for s in found[:8]) + (", ..." if len(found) > 8 else "")
        raise ValueError(f"{path} holds {len(found)} {found[0].layout} sequences ({names}); "
                         "choose one with --sequence NAME")
    return found[0].load()


def _check_scores_path(args) -> Path:
    from ctjax import paths

    scores = Path(args.scores) if args.scores else scores_path_for(args.output)
    others = [Path(p).resolve() for p in (args.output, args.video) if p]
    if scores.resolve() in others:
        raise ValueError(f"the score file {scores} would overwrite --output or --video; give "
                         "--scores another name")
    return paths.check_writable(scores, "score file")


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
        raise ValueError("--output BOXES.txt is required")

    from ctjax import boxes as box_ops
    from ctjax import evaluation
    from ctjax.api import score_flags
    from ctjax.data.sequences import VideoStream
    from ctjax.trackers.run import check_outputs, compile_tracker, track_frames
    from tqdm import tqdm

    settings = [parse_setting(t)[1:] for t in args.settings]
    check_outputs(args.output, args.video)  # before anything is loaded, compiled or tracked
    scores_file = _check_scores_path(args)
    sequence = _open_sequence(args)
    video = isinstance(sequence, VideoStream)
    if args.box is not None:  # typed by hand: most of it must lie inside the first frame
        init_box = box_ops.validate_box(args.box, sequence.image_hw, what="--box",
                                        min_inside=BOX_MIN_INSIDE)
    else:
        init_box = sequence.init_box
    built = build_tracker(args.tracker, weights=args.weights, settings=settings,
                          image_hw=sequence.image_hw)
    compiled = compile_tracker(built.tracker, built.config, built.params)
    if not video:
        total = len(sequence)
    else:  # a stream's length comes from the container's metadata, when it has it
        total = None if args.no_progress else sequence.frame_count()
    bar = tqdm(total=total, desc=f"{sequence.name} [{built.name}]", unit="frame",
               disable=args.no_progress, file=sys.stderr)
    result = track_frames(compiled, built.params, sequence.frames(), init_box,
                          progress=lambda n: bar.update(1))
    bar.close()
    evaluation.write_boxes(args.output, result.boxes)
    relative, ok = score_flags(result.scores, args.tracker)
    evaluation.write_frame_scores(scores_file, evaluation.FrameScores(
        score=relative, ok=ok, peak=result.scores, seconds=result.frame_seconds))
    print(f"tracked {len(result.boxes)} frames of {sequence.name} with {built.name} "
          f"(weights: {built.weights})" + (f"; settings: {', '.join(args.settings)}"
                                           if settings else ""))
    print(f"speed: {result.fps:.1f} FPS (median frame {1e3 * np.median(result.frame_seconds[1:]):.2f} ms; "
          f"compile {result.compile_seconds:.1f} s and JPEG decoding excluded)")
    print(runtime.probe(report, seconds=0.3).summary())
    gt = None if video else np.asarray(sequence.boxes, np.float64)
    if args.box is None and gt is not None and gt.shape[0] == len(result.boxes) and \
            np.isfinite(gt[1:]).any():
        metrics = evaluation.evaluate_sequence(result.boxes, gt)
        print(f"vs ground truth: success AUC {metrics.auc:.3f}, precision@20px "
              f"{metrics.precision20:.3f}, OP50 {metrics.op50:.3f}")
    if args.video:
        from ctjax import visualize
        visualize.write_annotated(args.video, sequence.frames(), result.boxes,
                                  ground_truth=gt if args.box is None else None)
        print(f"annotated video: {args.video}")
    print(f"boxes written to {args.output}; per-frame scores (ok=0 on {int((~ok).sum())} of "
          f"{len(ok)} frames) to {scores_file}")
    return 0

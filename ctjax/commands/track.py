"""`ctjax track`: track one sequence from an initial box: an OTB-format folder, a sequence of
a benchmark folder (stock OTB-100, UAV123, GOT-10k, LaSOT, VOT; `--layout`, detected by
default), a video file (decoded as a stream, one frame in memory at a time) or the shipped
demo clip. Writes one x,y,w,h line per frame (1-based, first line = initial box) and, beside
it, a per-frame score file (`<output stem>.scores.csv`: the relative score and the ok/lost
flag of `ctjax.Tracker`, the raw peak, the seconds of each frame). Tracker settings can be
changed with `--set key=value` (fields of the preset's config dataclass, e.g.
`--set learning_rate=0.01`, `--set filter.cg_iter=3`).

This module also holds what `ctjax eval` shares with `track`: settings from the command line
(`parse_setting`, `apply_settings`, `tracker_config`, `build_tracker`) and sequences found in
benchmark folders (`SequenceSource`, `resolve_sources`). A frame larger than the preset's
canvas gets a canvas that holds it (`ctjax.ops.crop.canvas_for`) unless `canvas_hw` is set.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path

import numpy as np

HELP = "track one sequence folder or video file"
BOX_MIN_INSIDE = 0.5  # fraction of a --box's area that must lie inside the first frame
# `otb`: ctjax's own OTB-format folder (img/ + groundtruth_rect.txt, all frames, strict frame
# name checks); `otb100`: the stock OTB-100 layout (frame ranges, two-target sequences); the
# rest as `ctjax.data.layouts` reads them.
LAYOUT_CHOICES = ("auto", "otb", "otb100", "uav123", "got10k", "lasot", "vot")
_LAYOUTS_NAME = {"otb100": "otb", "uav123": "uav123", "got10k": "got10k", "lasot": "lasot",
                 "vot": "vot"}


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
# --set: tracker settings from the command line


def parse_setting(text: str, *, labels: bool = False) -> tuple[str | None, str, str]:
    """`[LABEL:]KEY=VALUE` -> (label or None, key, value text).

    Raises:
      ValueError: no `=`, an empty key, or a label where `labels` is False.
    """
    key, sep, value = str(text).partition("=")
    label, _, key = key.strip().rpartition(":")
    if not sep or not key.strip():
        raise ValueError(f"--set {text!r}: expected {'[LABEL:]' if labels else ''}KEY=VALUE, "
                         "e.g. --set learning_rate=0.01")
    if label and not labels:
        raise ValueError(f"--set {text!r}: a LABEL: prefix names one of eval's trackers; "
                         "track takes KEY=VALUE")
    return label or None, key.strip(), value.strip()


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(text: str, tp, key: str):
    """The value `text` as the field type `tp` (bool, int, float, str, tuples, Optional,
    Literal); ValueError naming the key and the expected type otherwise."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = ValueError(f"--set {key}={text}: {key} must be {_type_name(tp)}, got {text!r}")
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.lower() == "none":
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(text, option, key)
            except ValueError:
                continue
        raise bad
    if origin is typing.Literal:
        for option in args:
            try:
                if _convert(text, type(option), key) == option:
                    return option
            except ValueError:
                continue
        raise ValueError(f"--set {key}={text}: {key} must be one of {list(args)}")
    if origin is tuple:
        parts = [p.strip() for p in text.strip().strip("()[]").split(",") if p.strip()]
        kinds = [args[0]] * len(parts) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(kinds) != len(parts):
            raise ValueError(f"--set {key}={text}: {key} must be {len(kinds)} comma-separated "
                             f"values ({_type_name(tp)}), got {len(parts)}")
        return tuple(_convert(p, k, key) for p, k in zip(parts, kinds))
    if tp is bool:
        value = {"true": True, "1": True, "yes": True, "on": True,
                 "false": False, "0": False, "no": False, "off": False}.get(text.lower())
        if value is None:
            raise ValueError(f"--set {key}={text}: {key} must be true or false, got {text!r}")
        return value
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise bad from None
    if tp is float:
        try:
            value = float(text)
        except ValueError:
            raise bad from None
        if not np.isfinite(value):
            raise bad
        return value
    if tp is str:
        return text
    if dataclasses.is_dataclass(tp):
        fields = ", ".join(f"{key}.{f.name}" for f in dataclasses.fields(tp) if f.init)
        raise ValueError(f"--set {key}: {key} is a group of settings; set its fields: {fields}")
    raise ValueError(f"--set {key}: {key} ({_type_name(tp)}) cannot be set from the command line")


def _set_field(obj, parts: list[str], text: str, key: str):
    fields = {f.name: f for f in dataclasses.fields(obj) if f.init}
    name = parts[0]
    if name not in fields:
        raise ValueError(f"--set {key}: {type(obj).__name__} has no field {name!r}; its "
                         f"fields: {', '.join(fields)}")
    current = getattr(obj, name)
    if len(parts) > 1:
        if not dataclasses.is_dataclass(current):
            raise ValueError(f"--set {key}: {'.'.join(parts[:1])} is a single value, not a "
                             "group of settings")
        value = _set_field(current, parts[1:], text, key)
    else:
        try:
            field_type = typing.get_type_hints(type(obj))[name]
        except Exception:  # an annotation that cannot be resolved at run time
            field_type = fields[name].type
        value = _convert(text, field_type, key)
    try:
        return dataclasses.replace(obj, **{name: value})
    except (TypeError, ValueError) as e:  # the config's own checks (__post_init__)
        raise ValueError(f"--set {key}={text}: {' '.join(str(e).split())}") from None


def apply_settings(config, settings) -> typing.Any:
    """A frozen config dataclass with `--set` settings applied.

    Args:
      config: the preset's config (e.g. `TrackerConfig`, `EcoConfig`, `StrcfConfig`).
      settings: (key, value text) pairs; a key is a field name, or a dotted path into a
        nested config (`filter.cg_iter`); values are typed from the fields' annotations.

    Returns:
      `config` itself when there is no setting, else a new config (its `__post_init__`
      checks run).

    Raises:
      ValueError: an unknown field (the message lists the fields), a value of the wrong
        type, a key given twice, or a value the config refuses.
    """
    settings = list(settings)
    if not settings:
        return config
    if not dataclasses.is_dataclass(config):
        raise ValueError(f"--set: this tracker's config ({type(config).__name__}) has no "
                         "settings to change")
    keys = [k for k, _ in settings]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ValueError(f"--set {twice[0]} is given more than once")
    for key, text in settings:
        config = _set_field(config, key.split("."), text, key)
    return config


def fit_canvas(config, image_hw):
    """`config` with a `canvas_hw` that holds frames of `image_hw` (`canvas_for`'s bucket)
    when its own canvas is too small; `config` itself otherwise, or without a canvas."""
    canvas = getattr(config, "canvas_hw", None)
    if canvas is None or (image_hw[0] <= canvas[0] and image_hw[1] <= canvas[1]):
        return config
    from ctjax.ops.crop import canvas_for
    return dataclasses.replace(config, canvas_hw=tuple(canvas_for(image_hw)))


def tracker_config(default_config, settings=(), image_hw=None):
    """The config a tracker runs with: the preset's default, `--set` settings applied, then
    a canvas fitted to `image_hw` (unless `canvas_hw` was set explicitly)."""
    settings = list(settings)
    config = apply_settings(default_config, settings)
    if image_hw is not None and "canvas_hw" not in {k for k, _ in settings}:
        config = fit_canvas(config, image_hw)
    return config


def build_tracker(preset: str, *, weights=None, settings=(), image_hw=None, default=None):
    """A preset built with `--set` settings and a canvas for `image_hw`.

    Args:
      preset, weights: as `ctjax.trackers.presets.build`.
      settings: (key, value text) pairs (see `apply_settings`).
      image_hw: the frames' (height, width), or None to keep the config's canvas.
      default: the preset's default build, if already made (saves reading weights again).

    Returns:
      A `BuiltTracker` (the default build itself when nothing changes).

    Raises:
      ValueError: what `presets.build` and `apply_settings` raise; a preset that takes no
        config while settings are given.
    """
    from ctjax.trackers import presets

    default = default or presets.build(preset, weights=weights)
    config = tracker_config(default.config, settings, image_hw)
    if config is default.config:
        return default
    try:
        return presets.build(preset, weights=weights, config=config)
    except TypeError as e:
        if "config" not in str(e):
            raise
        raise ValueError(f"tracker preset {preset!r} takes no config, so --set cannot change "
                         "it") from None


# ---------------------------------------------------------------------------------------------
# --layout: sequences in benchmark folders


@dataclasses.dataclass(frozen=True)
class SequenceSource:
    """One sequence as the command line found it; picklable (sent to eval's workers).

    Attributes:
      layout: one of `LAYOUT_CHOICES` but "auto".
      root: the sequence folder for "otb"; the benchmark folder the layout reads otherwise.
      name: the sequence's name within `root` (as `ctjax.data.layouts.sequence_names` gives
        it); None for "otb".
    """
    layout: str
    root: Path
    name: str | None = None

    @property
    def path(self) -> Path:
        """What identifies the sequence in result keys: its folder, or root/name."""
        return self.root if self.name is None else self.root / self.name

    @property
    def label(self) -> str:
        """The name the loaded sequence will have."""
        if self.name is None:
            return self.root.name
        return Path(self.name).name if self.layout in ("got10k", "uav123") else self.name

    def load(self, max_frames: int | None = None):
        """The `ctjax.data.sequences.Sequence`, frames aligned with boxes by the layout, cut
        to the first `max_frames` frames when given."""
        from ctjax.data import layouts, sequences

        if self.layout == "otb":
            seq = sequences.load_sequence(self.root)
        else:
            seq = layouts.load_sequence(self.root, self.name, layout=_LAYOUTS_NAME[self.layout])
        if max_frames is not None:
            seq = dataclasses.replace(seq, frame_paths=seq.frame_paths[:max_frames],
                                      boxes=seq.boxes[:max_frames])
        return seq

    def describe(self) -> list:
        """JSON-able form (`from_description` reads it back)."""
        return [self.layout, str(self.root), self.name]

    @classmethod
    def from_description(cls, value) -> "SequenceSource":
        layout, root, name = value
        return cls(layout, Path(root), name)


def _sequence_folder_layout(d: Path) -> str | None:
    """The layout of `d` when it is one sequence's own folder, else None."""
    from ctjax.data.layouts import OTB_RANGES

    if (d / "img").is_dir():
        if (d / "groundtruth.txt").is_file() and (d / "full_occlusion.txt").is_file():
            return "lasot"
        box_files = [p.name for p in d.glob("groundtruth_rect*.txt")]
        if box_files == ["groundtruth_rect.txt"] and \
                d.name.lower() not in {k.lower() for k in OTB_RANGES}:
            return "otb"
        if box_files:
            return "otb100"
    if (d / "groundtruth.txt").is_file():
        numbered = (d / "00000001.jpg").is_file()
        if numbered and (d.name.startswith("GOT-10k") or (d / "absence.label").is_file() or
                         (d / "meta_info.ini").is_file()):
            return "got10k"
        if numbered or (d / "color").is_dir():
            return "vot"
    return None


def _folder_sources(folder: Path, layout: str) -> list[SequenceSource]:
    from ctjax.data import layouts, sequences

    if layout == "otb":
        return [SequenceSource("otb", folder)]
    if layout == "otb100":  # one folder may hold two targets (Jogging -> Jogging-1, -2)
        names = [n for n in layouts.sequence_names(folder.parent, layout="otb")
                 if n == folder.name or n.rsplit("-", 1)[0] == folder.name]
        if not names:
            raise sequences.SequenceError(f"{folder} holds no OTB sequence (img/ and a "
                                          "non-empty groundtruth_rect[.k].txt)")
        return [SequenceSource("otb100", folder.parent, n) for n in names]
    return [SequenceSource(layout, folder.parent, folder.name)]


def _root_sources(root: Path, layout: str) -> list[SequenceSource]:
    from ctjax.data import layouts, sequences

    if layout == "otb":
        found = [SequenceSource("otb", root / n) for n in sequences.list_sequences(root)]
    else:
        found = [SequenceSource(layout, root, n)
                 for n in layouts.sequence_names(root, layout=_LAYOUTS_NAME[layout])]
    if not found:
        raise sequences.SequenceError(f"{root} holds no {layout} sequence (is --layout "
                                      f"{layout} right? default: auto-detected)")
    return found


def resolve_sources(folder, layout: str = "auto") -> list[SequenceSource]:
    """The sequences a folder on the command line stands for.

    Args:
      folder: one sequence's folder, or a benchmark folder holding many.
      layout: one of `LAYOUT_CHOICES`. "auto": a sequence folder's own layout (a folder with
        `img/` and one `groundtruth_rect.txt` is "otb" unless its name is one of OTB-100's
        ranged sequences, then "otb100", as is a folder of several targets), else the
        benchmark folder's (`ctjax.data.layouts.detect_layout`; its OTB folders are taken
        one by one as above).

    Returns:
      The sources, in the layout's order.

    Raises:
      SequenceError: not a folder, no sequence found, an undetectable layout.
    """
    from ctjax.data import layouts, sequences

    folder = Path(folder)
    if not folder.is_dir():
        raise sequences.SequenceError(f"sequence folder {folder} does not exist (or is not "
                                      "a folder)")
    if layout not in LAYOUT_CHOICES:
        raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUT_CHOICES}")
    own = _sequence_folder_layout(folder)
    if layout != "auto":
        if own is not None and layout != "uav123":
            return _folder_sources(folder, layout)
        return _root_sources(folder, layout)
    if own is not None:
        return _folder_sources(folder, own)
    detected = layouts.detect_layout(folder)
    if detected != "otb":
        return _root_sources(folder, detected)
    return [s for d in sorted(p for p in folder.iterdir() if p.is_dir())
            if _sequence_folder_layout(d) in ("otb", "otb100")
            for s in _folder_sources(d, _sequence_folder_layout(d))]


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

"""Benchmark folder layouts: stock OTB-100, UAV123, GOT-10k, LaSOT and VOT, read as `Sequence`s.

Every layout yields `ctjax.data.sequences.Sequence` objects (lazily decoded frames, (N, 4)
float64 boxes x,y,w,h with a **1-based** top-left, NaN rows where a frame has no valid ground
truth), so `ctjax.trackers.run` and `ctjax.evaluation` treat them alike. Frame i (0-based) of
a sequence is row i of its boxes; building that alignment is this module's job:

* `otb`: `<seq>/img/0001.jpg` (`Board`: 5 digits) and `groundtruth_rect.txt`; frames from
  the sequence config's range (`OTB_RANGES`), else all; two targets as
  `groundtruth_rect.1.txt` / `.2.txt` give sequences `<seq>-1` and `<seq>-2`.
* `uav123`: `data_seq/<subset>/<video>/000001.jpg` and `anno/<subset>/<name>.txt`;
  sub-sequences `<video>_<k>` take their frames from `UAV123_RANGES` (UAV123_10fps: the same
  ranges at a third).
* `got10k`: `[<split>/]<seq>/00000001.jpg` and `groundtruth.txt` (test split: the first row
  only); frames flagged in `absence.label` get NaN rows.
* `lasot`: `[<class>/]<class>-<n>/img/00000001.jpg` and `groundtruth.txt`; frames flagged in
  `full_occlusion.txt` or `out_of_view.txt` get NaN rows.
* `vot`: `<seq>/color/00000001.jpg` or `<seq>/00000001.jpg` and `groundtruth.txt`: 0-based
  rectangles, or polygons turned into their axis-aligned enclosing boxes (+1 pixel).

Absent-target rows become NaN (as the GOT-10k toolkit and pysot's LaSOT benchmark score
only frames with a visible target) unless `keep_absent=True`. Box rows with non-positive
width or height are NaN (no valid ground truth) in every layout. The ctjax data folder's own
flat layout (`$CTJAX_DATA/sequences`, renumbered frames, one `groundtruth_rect.txt`) is read as
`otb` (sequences already renumbered to their range, e.g. `David`, are taken as they are).

Frame ranges: OTB-100 from its toolkit's sequence configs (`configSeqs100.m`, as in
pytracking's `otbdataset.py`); UAV123 from its toolkit's `configSeqs.m` (the 10 fps ranges
are `(f - 1) // 3 + 1` of the 30 fps ones, which reproduces `UAV123_10fps/configSeqs.m`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ctjax import boxes as boxlib
from ctjax.data.sequences import FRAME_SUFFIXES, Sequence, SequenceError

__all__ = ["LAYOUTS", "OTB_RANGES", "UAV123_RANGES", "detect_layout", "load_sequence",
           "load_sequences", "sequence_names"]

LAYOUTS = ("otb", "uav123", "got10k", "lasot", "vot")

# OTB-100 sequences whose frames are not simply "all images, one per box row" (first, last).
OTB_RANGES = {"David": (300, 770), "BlurCar1": (247, 988), "BlurCar3": (3, 359),
              "BlurCar4": (18, 397), "Diving": (1, 215), "Football1": (1, 74),
              "Freeman3": (1, 460), "Freeman4": (1, 283), "Tiger1": (6, 354)}

# UAV123 (30 fps) sub-sequences: frames (first, last) of data_seq/UAV123/<video> for each
# anno/UAV123/<video>_<k>.txt. Sequences not listed start at frame 1.
UAV123_RANGES = {
    "bird1": ((1, 253), (775, 1477), (1573, 2437)),
    "car1": ((1, 751), (751, 1627), (1627, 2629)),
    "car6": ((1, 487), (487, 1807), (1807, 2953), (2953, 3925), (3925, 4861)),
    "car8": ((1, 1357), (1357, 2575)), "car16": ((1, 415), (415, 1993)),
    "group1": ((1, 1333), (1333, 2515), (2515, 3925), (3925, 4873)),
    "group2": ((1, 907), (907, 1771), (1771, 2683)),
    "group3": ((1, 1567), (1567, 2827), (2827, 4369), (4369, 5527)),
    "person2": ((1, 1189), (1189, 2623)), "person4": ((1, 1501), (1501, 2743)),
    "person5": ((1, 877), (877, 2101)), "person7": ((1, 1249), (1249, 2065)),
    "person8": ((1, 1075), (1075, 1525)), "person12": ((1, 601), (601, 1621)),
    "person14": ((1, 847), (847, 1813), (1813, 2923)), "person17": ((1, 1501), (1501, 2347)),
    "person19": ((1, 1243), (1243, 2791), (2791, 4357)), "truck4": ((1, 577), (577, 1261)),
    "uav1": ((1, 1555), (1555, 2377), (2473, 3469)),
}

_OTB_BOX = re.compile(r"^groundtruth_rect(?:\.(\d+))?\.txt$")
_SUBSEQ = re.compile(r"^(.+)_(\d+)$")


# ---------------------------------------------------------------------------------------------
# Shared pieces


def _numbered_frames(folder: Path, name: str) -> dict[int, Path]:
    """Frame number -> image file of a folder of numbered frames."""
    if not folder.is_dir():
        raise SequenceError(f"sequence {name}: frame folder {folder} does not exist")
    frames = {int(p.stem): p for p in folder.iterdir()
              if p.suffix.lower() in FRAME_SUFFIXES and p.stem.isdigit()}
    if not frames:
        raise SequenceError(f"sequence {name}: {folder} holds no numbered "
                            f"{'/'.join(FRAME_SUFFIXES)} frames")
    return frames


def _frame_run(frames: dict[int, Path], first: int, last: int, name: str) -> list[Path]:
    missing = [n for n in range(first, last + 1) if n not in frames]
    if missing:
        raise SequenceError(f"sequence {name}: frames {first}..{last} needed, "
                            f"{len(missing)} missing (first: {missing[0]})")
    return [frames[n] for n in range(first, last + 1)]


def _read_text(path: Path, name: str) -> str:
    if not path.is_file():
        raise SequenceError(f"sequence {name}: box file {path} does not exist")
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise SequenceError(f"box file {path} is unreadable: {e}") from e


def _valid_rows(gt: np.ndarray) -> np.ndarray:
    """NaN rows where a box is not finite or has non-positive width or height."""
    gt = np.array(gt, np.float64)
    bad = ~np.isfinite(gt).all(axis=1) | ~(gt[:, 2] > 0) | ~(gt[:, 3] > 0)
    gt[bad] = np.nan
    return gt


def _read_boxes(path: Path, name: str) -> np.ndarray:
    try:
        return _valid_rows(boxlib.parse_boxes(_read_text(path, name), source=f"box file {path}"))
    except boxlib.BoxError as e:
        raise SequenceError(str(e)) from None


def _read_flags(path: Path, n: int, name: str) -> np.ndarray:
    """(n,) bool from a file of 0/1 flags (comma- or line-separated); missing file: all False."""
    if not path.is_file():
        return np.zeros(n, bool)
    fields = [f for f in re.split(r"[,\s]+", _read_text(path, name).strip()) if f]
    try:
        flags = np.array([int(float(f)) for f in fields], np.int64) != 0
    except ValueError:
        raise SequenceError(f"sequence {name}: {path} must hold 0/1 flags") from None
    if flags.size != n:
        raise SequenceError(f"sequence {name}: {path} has {flags.size} flags for {n} frames")
    return flags


def _sequence(name: str, frame_paths, gt: np.ndarray, *, absent=None,
              keep_absent: bool = False) -> Sequence:
    if len(gt) != len(frame_paths):
        raise SequenceError(f"sequence {name}: {len(frame_paths)} frames but {len(gt)} boxes")
    if absent is not None and not keep_absent:
        gt = gt.copy()
        gt[absent] = np.nan
    return Sequence(name=name, frame_paths=tuple(frame_paths), boxes=gt)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


# ---------------------------------------------------------------------------------------------
# OTB


def _otb_targets(folder: Path) -> dict[str, Path]:
    """Sequence name -> box file of one OTB folder (`Jogging` -> `Jogging-1`, `Jogging-2`)."""
    found = {}
    for p in (folder.iterdir() if (folder / "img").is_dir() else ()):
        m = _OTB_BOX.match(p.name)
        if m and p.stat().st_size > 0:
            found[m.group(1)] = p
    numbered = {k: v for k, v in found.items() if k is not None}
    if numbered:
        return {f"{folder.name}-{k}": v for k, v in sorted(numbered.items())}
    return {folder.name: found[None]} if None in found else {}


def _otb_names(root: Path) -> list[str]:
    return [n for d in _subdirs(root) for n in _otb_targets(d)]


def _otb_load(root: Path, name: str, keep_absent: bool) -> Sequence:
    folder_name = re.sub(r"-\d+$", "", name) if not (root / name).is_dir() else name
    folder = root / folder_name
    targets = _otb_targets(folder) if folder.is_dir() else {}
    if name not in targets:
        raise SequenceError(f"OTB sequence {name!r} not found under {root} (need "
                            f"{folder}/img/ and groundtruth_rect[.k].txt)")
    gt = _read_boxes(targets[name], name)
    frames = _numbered_frames(folder / "img", name)
    key = {k.lower(): k for k in OTB_RANGES}.get(folder_name.lower())
    first, last = OTB_RANGES[key] if key else (None, None)
    if key and all(n in frames for n in range(first, last + 1)):
        if len(gt) == last:            # rows indexed by absolute frame number (Tiger1)
            gt = gt[first - 1:]
        elif len(gt) != last - first + 1:
            raise SequenceError(f"sequence {name}: {len(gt)} boxes for its frame range "
                                f"{first}..{last}")
        paths = _frame_run(frames, first, last, name)
    else:                              # all frames, one per box row
        paths = [frames[n] for n in sorted(frames)]
        if len(paths) != len(gt):
            raise SequenceError(
                f"sequence {name}: {len(gt)} boxes but {len(paths)} frames in {folder / 'img'}, "
                "and no known frame range (ctjax.data.layouts.OTB_RANGES)")
    return _sequence(name, paths, gt)


# ---------------------------------------------------------------------------------------------
# UAV123


def _uav_subsets(root: Path) -> list[str]:
    return [d.name for d in _subdirs(root / "anno") if any(d.glob("*.txt"))]


def _uav_names(root: Path) -> list[str]:
    subsets = _uav_subsets(root)
    return [n if len(subsets) == 1 else f"{s}/{n}" for s in subsets
            for n in sorted(p.stem for p in (root / "anno" / s).glob("*.txt"))]


def _uav_load(root: Path, name: str, keep_absent: bool) -> Sequence:
    subsets = _uav_subsets(root)
    subset, _, stem = name.rpartition("/")
    subset = subset or (subsets[0] if len(subsets) == 1 else "UAV123")
    gt = _read_boxes(root / "anno" / subset / f"{stem}.txt", name)
    video, first = stem, 1
    m = _SUBSEQ.match(stem)
    if not (root / "data_seq" / subset / stem).is_dir() and m:
        video, k = m.group(1), int(m.group(2))
        ranges = UAV123_RANGES.get(video, ())
        if not 1 <= k <= len(ranges):
            raise SequenceError(f"UAV123 sub-sequence {name!r} has no known frame range "
                                "(ctjax.data.layouts.UAV123_RANGES)")
        first, last = ranges[k - 1]
        if "10fps" in subset.lower():
            first, last = (first - 1) // 3 + 1, (last - 1) // 3 + 1
        if last - first + 1 != len(gt):
            raise SequenceError(f"sequence {name}: {len(gt)} boxes for its frame range "
                                f"{first}..{last}")
    frames = _numbered_frames(root / "data_seq" / subset / video, name)
    return _sequence(stem, _frame_run(frames, first, first + len(gt) - 1, name), gt)


# ---------------------------------------------------------------------------------------------
# GOT-10k, LaSOT, VOT: one folder per sequence, all frames


def _got10k_dirs(root: Path) -> dict[str, Path]:
    def is_seq(d):
        return (d / "groundtruth.txt").is_file() and (d / "00000001.jpg").is_file()
    direct = {d.name: d for d in _subdirs(root) if is_seq(d)}
    if direct:
        return direct
    return {f"{s.name}/{d.name}": d for s in _subdirs(root) for d in _subdirs(s) if is_seq(d)}


def _got10k_load(root: Path, name: str, keep_absent: bool) -> Sequence:
    folder = root / name
    if not (folder / "groundtruth.txt").is_file():
        raise SequenceError(f"GOT-10k sequence {name!r} not found under {root} (need "
                            f"{folder}/groundtruth.txt)")
    frames = _numbered_frames(folder, name)
    paths = [frames[n] for n in sorted(frames)]
    gt = _read_boxes(folder / "groundtruth.txt", name)
    if len(gt) == 1 < len(paths):      # the test split gives the first box only
        gt = np.vstack([gt, np.full((len(paths) - 1, 4), np.nan)])
    absent = _read_flags(folder / "absence.label", len(paths), name)
    return _sequence(Path(name).name, paths, gt, absent=absent, keep_absent=keep_absent)


def _lasot_dirs(root: Path) -> dict[str, Path]:
    def is_seq(d):
        return (d / "img").is_dir() and (d / "groundtruth.txt").is_file() and \
            (d / "full_occlusion.txt").is_file()
    direct = {d.name: d for d in _subdirs(root) if is_seq(d)}
    return direct or {d.name: d for c in _subdirs(root) for d in _subdirs(c) if is_seq(d)}


def _lasot_load(root: Path, name: str, keep_absent: bool) -> Sequence:
    folder = next((f for f in (root / name, root / name.rsplit("-", 1)[0] / name)
                   if (f / "groundtruth.txt").is_file()), None)
    if folder is None:
        raise SequenceError(f"LaSOT sequence {name!r} not found under {root}")
    frames = _numbered_frames(folder / "img", name)
    paths = [frames[n] for n in sorted(frames)]
    gt = _read_boxes(folder / "groundtruth.txt", name)
    absent = _read_flags(folder / "full_occlusion.txt", len(paths), name) | \
        _read_flags(folder / "out_of_view.txt", len(paths), name)
    return _sequence(name, paths, gt, absent=absent, keep_absent=keep_absent)


def _vot_dirs(root: Path) -> dict[str, Path]:
    return {d.name: d for d in _subdirs(root) if (d / "groundtruth.txt").is_file() and
            ((d / "color").is_dir() or (d / "00000001.jpg").is_file())}


def vot_region_to_box(values) -> np.ndarray:
    """A VOT region (0-based rectangle x,y,w,h or polygon x1,y1,x2,y2,...) as an OTB box.

    Returns:
      (4,) float64 x,y,w,h, 1-based: a rectangle shifted by one pixel, or a polygon's
      axis-aligned enclosing box (min..max of its corners) shifted by one pixel; NaN if any
      value is NaN.
    """
    v = np.asarray(values, np.float64)
    if v.size == 4:
        return v + np.array([1.0, 1.0, 0.0, 0.0])
    if v.size < 6 or v.size % 2:
        raise ValueError(f"a VOT region has 4 (rectangle) or an even number >= 6 (polygon) "
                         f"values, got {v.size}")
    xs, ys = v[0::2], v[1::2]
    return np.array([xs.min() + 1.0, ys.min() + 1.0, xs.max() - xs.min(), ys.max() - ys.min()])


def _vot_load(root: Path, name: str, keep_absent: bool) -> Sequence:
    folder = root / name
    if not (folder / "groundtruth.txt").is_file():
        raise SequenceError(f"VOT sequence {name!r} not found under {root}")
    frames = _numbered_frames(folder / "color" if (folder / "color").is_dir() else folder, name)
    paths = [frames[n] for n in sorted(frames)]
    path = folder / "groundtruth.txt"
    rows = []
    for i, line in enumerate(_read_text(path, name).rstrip().splitlines()):
        if line.strip().startswith("m"):
            raise SequenceError(f"{path}, line {i + 1}: segmentation masks (VOT2020+) are not "
                                "supported; ctjax reads rectangles and polygons")
        try:
            rows.append(vot_region_to_box([float(f) for f in re.split(r"[,\s]+", line.strip())
                                           if f]))
        except ValueError as e:
            raise SequenceError(f"{path}, line {i + 1}: {e}: {line!r}") from None
    return _sequence(name, paths, _valid_rows(np.array(rows).reshape(-1, 4)))


# ---------------------------------------------------------------------------------------------
# Detection and the public functions

_NAMES = {"otb": _otb_names, "uav123": _uav_names, "got10k": lambda r: list(_got10k_dirs(r)),
          "lasot": lambda r: list(_lasot_dirs(r)), "vot": lambda r: list(_vot_dirs(r))}
_LOADERS = {"otb": _otb_load, "uav123": _uav_load, "got10k": _got10k_load,
            "lasot": _lasot_load, "vot": _vot_load}


def _root(root) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise SequenceError(f"benchmark folder {root} does not exist (or is not a folder)")
    return root


def detect_layout(root) -> str:
    """Which of `LAYOUTS` a benchmark folder has.

    Checked in this order: `anno/` + `data_seq/` (uav123); sequence folders with
    `groundtruth.txt` and `00000001.jpg` named `GOT-10k_*` or holding `absence.label` /
    `meta_info.ini` (got10k); `img/` + `groundtruth.txt` + `full_occlusion.txt` (lasot);
    `groundtruth.txt` beside `color/` or numbered frames (vot); `img/` +
    `groundtruth_rect[.k].txt` (otb).

    Raises:
      SequenceError: the folder is missing or matches none of them.
    """
    root = _root(root)
    if (root / "anno").is_dir() and (root / "data_seq").is_dir():
        return "uav123"
    got = _got10k_dirs(root)
    if any(Path(n).name.startswith("GOT-10k") or (d / "absence.label").is_file() or
           (d / "meta_info.ini").is_file() for n, d in got.items()):
        return "got10k"
    if _lasot_dirs(root):
        return "lasot"
    if _vot_dirs(root):
        return "vot"
    if _otb_names(root):
        return "otb"
    raise SequenceError(
        f"cannot tell the benchmark layout of {root}: expected OTB (<seq>/img + "
        "groundtruth_rect.txt), UAV123 (anno/ + data_seq/), GOT-10k (<seq>/00000001.jpg + "
        "groundtruth.txt + absence.label), LaSOT (<class>/<class>-N/img + full_occlusion.txt) "
        "or VOT (<seq>/color + groundtruth.txt)")


def _layout(root: Path, layout: str | None) -> str:
    if layout is None:
        return detect_layout(root)
    if layout not in LAYOUTS:
        raise SequenceError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
    return layout


def sequence_names(root, *, layout: str | None = None) -> list[str]:
    """The names of a benchmark folder's sequences (sub-sequences and targets included).

    Args:
      root: the benchmark folder.
      layout: one of `LAYOUTS`; detected when None.
    """
    root = _root(root)
    return _NAMES[_layout(root, layout)](root)


def load_sequence(root, name: str, *, layout: str | None = None,
                  keep_absent: bool = False) -> Sequence:
    """One sequence of a benchmark folder, frames aligned with boxes.

    Args:
      root: the benchmark folder.
      name: a name from `sequence_names`.
      layout: one of `LAYOUTS`; detected when None.
      keep_absent: keep GOT-10k / LaSOT boxes of frames flagged absent instead of NaN.

    Raises:
      SequenceError: unknown sequence, missing frames or box file, a box count that matches
        neither the frames nor the known frame range, malformed flags or regions.
    """
    root = _root(root)
    return _LOADERS[_layout(root, layout)](root, name, keep_absent)


def load_sequences(root, *, layout: str | None = None, names=None,
                   keep_absent: bool = False) -> Iterator[Sequence]:
    """Yields the sequences of a benchmark folder one by one (see `load_sequence`).

    Args:
      names: a subset of `sequence_names(root)`, in the order to yield; all when None.
    """
    root = _root(root)
    layout = _layout(root, layout)
    for name in _NAMES[layout](root) if names is None else names:
        yield _LOADERS[layout](root, name, keep_absent)

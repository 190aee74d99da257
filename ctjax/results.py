"""The result store of `ctjax eval`: what produced a result (its key), whether a stored result
is still valid for a key, writing and copying one result, the summary, and exports.

One result is three files in `DIR/<label>/` (`DIR` an eval output folder, `<label>` a
tracker's folder):

    <sequence>.txt          boxes, one x,y,w,h line per frame (1-based, OTB format;
                            `ctjax.evaluation.write_boxes`)
    <sequence>.scores.csv   per frame: relative score, ok/lost flag, raw peak, seconds
                            (`ctjax.evaluation.write_frame_scores`)
    <sequence>.json         metadata: frames, FPS, times, weights, runtime report, the
                            **key** and the SHA-256 of the two other files

The key (`result_key`) is the tracker's fingerprint (preset, weights or their SHA-256, the
config it ran with, `--set` settings: `tracker_fingerprint`), the sequence's (full path,
layout, frame count, initial box, frame file names and sizes: `sequence_fingerprint`) and
the code's (ctjax version with the jax and jaxlib versions, a SHA-256 of ctjax's Python
sources: `code_version`). A result is reused only when its stored key equals the wanted
one field by field (as canonical JSON) and its box and score files are intact
(`result_status`). The metadata file is removed before new box and score files are written
and written last, so no old metadata ever vouches for new files; every file is written
atomically (`ctjax.paths.atomic_write`).

`write_summary` writes `DIR/summary.md`, `summary.json` and the success and precision
plots; `export_results` writes the results again in the GOT-10k toolkit's and pysot's
layouts, in each benchmark's own coordinates (the inverse of the layout's reader: 0-based
for VOT).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np

from ctjax import evaluation, paths
from ctjax.data.sources import as_source
from ctjax.trackers.settings import tracker_config

__all__ = ["SCORES_SUFFIX", "RESULT_SUFFIXES", "TrackerSpec", "benchmark_coords", "canonical",
           "code_version", "copy_result", "export_results", "result_key", "result_status",
           "sequence_fingerprint", "tracker_fingerprint", "write_result", "write_summary"]

_ROOT = Path(__file__).resolve().parent  # the ctjax package
SCORES_SUFFIX = ".scores.csv"
RESULT_SUFFIXES = (".txt", SCORES_SUFFIX, ".json")  # the files of one result, metadata last


@dataclasses.dataclass(frozen=True)
class TrackerSpec:
    """One tracker of an evaluation: its results folder (label), preset, weights and
    settings ((key, value text) pairs, see `ctjax.trackers.settings`)."""
    label: str
    preset: str
    weights: str | None = None
    settings: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "TrackerSpec":
        """`LABEL=PRESET[:WEIGHTS]` or `PRESET[:WEIGHTS]`; the label names a results folder.

        Raises:
          ValueError: no preset, or a label that is not a usable folder name.
        """
        label, _, rest = text.rpartition("=")
        preset, _, weights = (rest or text).partition(":")
        label = label or preset
        if not preset or label in (".", "..") or label.startswith(".") or \
                any(c in label for c in "/\\\0"):
            raise ValueError(f"--trackers {text!r}: expected LABEL=PRESET[:WEIGHTS], with a "
                             "label usable as a folder name")
        return cls(label, preset, weights or None)


# ---------------------------------------------------------------------------------------------
# What produced a result: its key


def code_version() -> dict:
    """The ctjax version, a SHA-256 of its Python sources, the jax and jaxlib versions (XLA's
    numerics are part of a result), and the git commit (informative only, or None).

    Returns:
      {"ctjax_version": str, "source_sha256": hex str, "git_commit": str or None}.
    """
    from importlib import metadata

    h = hashlib.sha256()
    for f in sorted(_ROOT.rglob("*.py")):
        h.update(str(f.relative_to(_ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    try:
        commit = subprocess.run(["git", "-C", str(_ROOT), "rev-parse", "HEAD"], timeout=10,
                                capture_output=True, text=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    import ctjax
    jax_versions = []
    for package in ("jax", "jaxlib"):
        try:
            jax_versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            jax_versions.append(f"{package} missing")
    return {"ctjax_version": f"{ctjax.__version__} ({', '.join(jax_versions)})",
            "source_sha256": h.hexdigest(), "git_commit": commit}


def tracker_fingerprint(spec: TrackerSpec, built=None, image_hw=None) -> dict:
    """Preset, weights (checksum when they are a file or folder), settings and config of a
    tracker.

    Args:
      spec: the tracker.
      built: its preset's default build (`presets.build(preset, weights=...)`); built here
        (no compilation) when None.
      image_hw: the frames' size: the config's canvas is fitted to it, as the tracker will
        run (`ctjax.trackers.settings.tracker_config`).

    Returns:
      {"preset", "weights", "weights_sha256", "config"[, "settings"]}, JSON-able.

    For `csrt` checks that OpenCV is installed. Raises what `presets.build` and
    `apply_settings` raise (unknown preset, weights for a preset that takes none, missing
    weights, an unknown setting or a bad value), before any sequence is tracked.
    """
    if spec.preset == "csrt":
        if spec.weights:
            raise ValueError(f"tracker {spec.label}: csrt (OpenCV) takes no weights, got "
                             f"{spec.weights!r}")
        try:
            import cv2
        except ImportError as e:
            raise ImportError("the csrt tracker needs OpenCV: pip install "
                              "'ctjax[baselines]'") from e
        if spec.settings:
            raise ValueError(f"tracker {spec.label}: csrt (OpenCV) has no settings to --set; "
                             "give the other trackers' settings as LABEL:KEY=VALUE")
        return {"preset": "csrt", "weights": "none", "weights_sha256": None,
                "config": f"OpenCV {cv2.__version__} TrackerCSRT defaults"}
    if built is None:
        from ctjax.trackers import presets
        built = presets.build(spec.preset, weights=spec.weights)
    source = str(built.weights)
    sha = paths.digest(source) if source not in ("", "none") and Path(source).exists() else None
    try:
        config = tracker_config(built.config, spec.settings, image_hw)
    except ValueError as e:
        raise ValueError(f"tracker {spec.label}: {e}") from None
    out = {"preset": spec.preset, "weights": source, "weights_sha256": sha,
           "config": repr(config)}
    if spec.settings:
        out["settings"] = [f"{k}={v}" for k, v in spec.settings]
    return out


def sequence_fingerprint(seq, source) -> dict:
    """Full path (root/name for a benchmark layout), layout (when not ctjax's OTB folders),
    frame count, initial box and a checksum of frame file names and sizes.

    Args:
      seq: the loaded `ctjax.data.sequences.Sequence`.
      source: its `SequenceSource`, or the folder of an OTB-format sequence.

    Returns:
      {"sequence_path", "frames", "init_box", "frame_files_sha256"[, "layout"]}, JSON-able.
    """
    source = as_source(source)
    h = hashlib.sha256()
    for f in seq.frame_paths:
        h.update(f"{f.name}:{f.stat().st_size}\n".encode())
    out = {"sequence_path": str(source.path.resolve()), "frames": len(seq),
           "init_box": [float(v) for v in seq.boxes[0]], "frame_files_sha256": h.hexdigest()}
    if source.layout != "otb":
        out["layout"] = source.layout
    return out


def result_key(tracker: dict, sequence: dict, code: dict) -> dict:
    """The key stored with a result; equal keys mean the same tracker, sequence and code
    (the weights path is left out when their checksum is known, so a moved file matches).

    Args:
      tracker: `tracker_fingerprint`'s dict.
      sequence: `sequence_fingerprint`'s dict.
      code: `code_version`'s dict (its git commit is left out: informative only).
    """
    tracker = dict(tracker)
    if tracker.get("weights_sha256"):
        tracker.pop("weights")
    return {**tracker, **sequence, "ctjax_version": code["ctjax_version"],
            "source_sha256": code["source_sha256"]}


def canonical(value) -> str:
    """`value` as canonical JSON (sorted keys): how key fields are compared."""
    return json.dumps(value, sort_keys=True)


def _short(value) -> str:
    text = value if isinstance(value, str) else canonical(value)
    return text if len(text) <= 40 else text[:18] + "..." + text[-18:]


def result_status(out_dir: Path, name: str, key: dict) -> str | None:
    """Whether `out_dir/<name>.*` is a valid result for `key`.

    Args:
      out_dir: a tracker's results folder.
      name: the sequence's name.
      key: the wanted `result_key` (its "frames" is the expected box and score count).

    Returns:
      None when the result is valid, else one line saying why not ("no result yet", a key
      field that differs with its old and new value, a damaged or changed file).
    """
    meta_file, box_file = out_dir / f"{name}.json", out_dir / f"{name}.txt"
    if not meta_file.exists() and not box_file.exists():
        return "no result yet"
    try:
        meta = json.loads(meta_file.read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        return f"its metadata {meta_file.name} is missing or unreadable ({' '.join(str(e).split())})"
    old = meta.get("key")
    if not isinstance(old, dict):
        return f"{meta_file.name} has no result key (written by an older ctjax)"
    changed = [k for k in key if canonical(old.get(k)) != canonical(key[k])]
    if changed:
        return "it was made by a different " + "; ".join(
            f"{k} ({_short(old.get(k))} -> {_short(key[k])})" for k in changed)
    try:
        text = box_file.read_bytes()
        evaluation.read_boxes(box_file, num_frames=key["frames"])
    except (OSError, ValueError) as e:
        return f"its box file is damaged: {' '.join(str(e).split())}"
    if hashlib.sha256(text).hexdigest() != meta.get("boxes_sha256"):
        return f"{box_file.name} changed since it was written (checksum differs)"
    scores_file = out_dir / f"{name}{SCORES_SUFFIX}"
    if "scores_sha256" not in meta:
        return f"{meta_file.name} names no score file (written by an older ctjax)"
    try:
        evaluation.read_frame_scores(scores_file, num_frames=key["frames"])
        scores = scores_file.read_bytes()
    except (OSError, ValueError) as e:
        return f"its score file is damaged: {' '.join(str(e).split())}"
    if hashlib.sha256(scores).hexdigest() != meta["scores_sha256"]:
        return f"{scores_file.name} changed since it was written (checksum differs)"
    return None


# ---------------------------------------------------------------------------------------------
# Writing and copying results


def write_result(out_dir: Path, name: str, boxes, scores: evaluation.FrameScores,
                 meta: dict) -> dict:
    """Writes one result: `<name>.txt`, `<name>.scores.csv`, then `<name>.json`.

    Args:
      out_dir: the tracker's results folder (exists).
      name: the sequence's name.
      boxes: (N, 4) x,y,w,h, 1-based.
      scores: the per-frame record (N rows).
      meta: the metadata (its "key" is what `result_status` checks); the files' checksums
        are added as "boxes_sha256" and "scores_sha256".

    Returns:
      The metadata written.
    """
    # No old metadata may ever vouch for the new result files, even if we are killed in between.
    (out_dir / f"{name}.json").unlink(missing_ok=True)
    box_file = evaluation.write_boxes(out_dir / f"{name}.txt", boxes)
    scores_file = evaluation.write_frame_scores(out_dir / f"{name}{SCORES_SUFFIX}", scores)
    meta = {**meta, "boxes_sha256": hashlib.sha256(box_file.read_bytes()).hexdigest(),
            "scores_sha256": hashlib.sha256(scores_file.read_bytes()).hexdigest()}
    paths.atomic_write(out_dir / f"{name}.json", json.dumps(meta, indent=1))
    return meta


def copy_result(source_dir: Path, dest_dir: Path, name: str) -> None:
    """Copies one result's files byte for byte (metadata removed first, written last); does
    nothing when both folders are the same."""
    if source_dir.resolve() == dest_dir.resolve():
        return
    (dest_dir / f"{name}.json").unlink(missing_ok=True)  # no stale metadata vouching
    for suffix in RESULT_SUFFIXES:
        paths.atomic_write(dest_dir / f"{name}{suffix}",
                           (source_dir / f"{name}{suffix}").read_bytes())


# ---------------------------------------------------------------------------------------------
# Summary and exports


def write_summary(specs, seqs, keys, root: Path, *, gt_rule: str = "ctjax") -> str:
    """Scores every result and writes `root/summary.md`, `summary.json`, `success.png` and
    `precision.png`.

    Args:
      specs: the `TrackerSpec`s (results in `root/<label>/`).
      seqs: the `Sequence`s (their ground truth is scored; names are result names).
      keys: {(label, sequence name): result key}; every result must be valid for its key.
      root: the evaluation's output folder.
      gt_rule: `ctjax.evaluation.GT_RULES` (rescoring, not part of the key).

    Returns:
      The comparison table (markdown) and the ground-truth rule line.

    Raises:
      ResultFileError: a result missing, damaged or not matching its key.
    """
    overall, lines = {}, []
    for spec in specs:
        d = root / spec.label
        results = []
        for s in seqs:
            problem = result_status(d, s.name, keys[spec.label, s.name])
            if problem is not None:
                raise evaluation.ResultFileError(f"result {d / s.name}: {problem}")
            meta = json.loads((d / f"{s.name}.json").read_text())
            boxes = evaluation.read_boxes(d / f"{s.name}.txt", num_frames=len(s))
            results.append(evaluation.evaluate_sequence(boxes, s.boxes, name=s.name,
                                                        fps=meta["fps"], gt_rule=gt_rule))
        overall[spec.label] = evaluation.aggregate(results, name=spec.label)
        settings = (f"; --set {' '.join(f'{k}={v}' for k, v in spec.settings)}"
                    if spec.settings else "")
        lines += [f"## {spec.label} ({spec.preset}{':' + spec.weights if spec.weights else ''}"
                  f"{settings})", "", evaluation.summary_table(overall[spec.label]), ""]
    head = ["| tracker | AUC | OP50 | OP75 | P@20 | NormP@0.2 | median FPS per sequence |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    rows = [f"| {k} | {v.auc:.3f} | {v.op50:.3f} | {v.op75:.3f} | {v.precision20:.3f} | "
            f"{v.norm_precision:.3f} | {np.median([r.fps for r in v.sequences]):.1f} |"
            for k, v in overall.items()]
    evaluation.plot_success(overall, root / "success.png")
    evaluation.plot_precision(overall, root / "precision.png")
    summary = {k: {"auc": v.auc, "op50": v.op50, "op75": v.op75, "precision20": v.precision20,
                   "norm_precision": v.norm_precision, "gt_rule": gt_rule,
                   "median_fps": float(np.median([r.fps for r in v.sequences])),
                   "sequences": {r.name: {"auc": r.auc, "op50": r.op50, "op75": r.op75,
                                          "precision20": r.precision20, "fps": r.fps}
                                 for r in v.sequences}} for k, v in overall.items()}
    rule = f"Invalid ground truth: {evaluation.GT_RULE_TEXT[gt_rule]} (`--gt-rule {gt_rule}`)."
    paths.atomic_write(root / "summary.json", json.dumps(summary, indent=1))
    paths.atomic_write(root / "summary.md", "\n".join(["# Evaluation summary", "", rule, "",
                                                       *head, *rows, "", *lines]))
    return "\n".join(head + rows + ["", rule])


def benchmark_coords(boxes: np.ndarray, layout: str) -> np.ndarray:
    """ctjax's 1-based boxes in the benchmark's own coordinates: the inverse of the layout's
    reader (VOT's files are 0-based; the others are read as they are).

    Args:
      boxes: (N, 4) x,y,w,h, 1-based.
      layout: a `ctjax.data.sources.LAYOUT_CHOICES` layout.
    """
    return boxes - np.array([1.0, 1.0, 0.0, 0.0]) if layout == "vot" else boxes


def export_results(specs, seqs, sources, root: Path, result_layouts) -> list[Path]:
    """Writes the results again in the GOT-10k toolkit's and pysot's layouts.

    Args:
      specs: the `TrackerSpec`s (results in `root/<label>/`).
      seqs: the `Sequence`s.
      sources: their `SequenceSource`s (or OTB-format folders): the layout gives the
        coordinates written.
      root: the evaluation's output folder; exports go to `root/got10k/`, `root/pysot/`.
      result_layouts: `ctjax.evaluation.RESULT_LAYOUTS` to write ("ctjax" is skipped: it is
        the results themselves); repeats are written once.

    Returns:
      The folders written, in `result_layouts` order.
    """
    written = []
    for layout in dict.fromkeys(result_layouts):
        if layout == "ctjax":
            continue
        for spec in specs:
            d = root / spec.label
            for s, src in zip(seqs, sources):
                boxes = benchmark_coords(
                    evaluation.read_boxes(d / f"{s.name}.txt", num_frames=len(s)),
                    as_source(src).layout)
                if layout == "got10k":
                    seconds = evaluation.read_frame_scores(d / f"{s.name}{SCORES_SUFFIX}",
                                                           num_frames=len(s)).seconds
                    evaluation.write_got10k_result(root / layout, spec.label, s.name, boxes,
                                                   seconds)
                else:
                    evaluation.write_pysot_result(root / layout, spec.label, s.name, boxes)
        written.append(root / layout)
    return written

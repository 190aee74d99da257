"""OTB one-pass evaluation (OPE): per-frame scores, curves, aggregation, result files, plots.

Conventions (Wu, Lim, Yang, "Object Tracking Benchmark", TPAMI 2015, and its toolkit's
`calcSeqErrRobust.m` / `perfPlot.m`):

* Boxes are `x, y, w, h`, 1-based top-left (`ctjax.boxes`), float64 arrays of shape (N, 4),
  one row per frame; prediction row i is scored against ground-truth row i.
* **Overlap** is the toolkit's `calcRectInt` IoU (continuous widths, `ctjax.boxes.iou`);
  **centre error** is the distance between centres `x + (w - 1) / 2`, `y + (h - 1) / 2`, in pixels.
* **Normalised centre error** (TrackingNet / LaSOT style, as in pytracking): the centre
  offset divided by the ground-truth size, `||((cx_p - cx_g) / w_g, (cy_p - cy_g) / h_g)||`.
* **Invalid ground truth**, two rules (`GT_RULES`, `gt_rule=`):
  - `"ctjax"` (default): a frame whose ground-truth row holds NaN/inf or has w <= 0 or
    h <= 0 is excluded from **every** metric (numerators and denominators); boxes that stick
    out past the top-left edge (x <= 0 or y <= 0) are kept.
  - `"otb"`: the OTB toolkit's `calcSeqErrRobust.m`: a ground-truth row is valid only when
    all four values are > 0 (so x <= 0 or y <= 0 is invalid too, and NaN is); an invalid
    frame stays in the denominator with overlap -1 and centre error -1, i.e. a failure at
    every success threshold and a success at every precision threshold. The rest of that
    function comes with it: a predicted box that is all NaN or has w <= 0 or h <= 0 (on a
    frame whose ground truth holds no NaN) is replaced by the previous frame's box, and the
    first frame's prediction by the ground truth. (Non-finite ground truth is invalid under
    both rules; the toolkit would pass +inf.)
* **Invalid predictions** (NaN/inf, w <= 0 or h <= 0) score as failures: overlap 0 and
  infinite centre error, and are counted in `SequenceResult.num_invalid_pred`. With
  `carry_forward_invalid=True` they are replaced by the previous frame's box first, as the
  toolkit does. The first frame is scored as given (the toolkit overwrites it with the ground
  truth; trackers here report the initial box there, so both agree).
* **Success curve**: fraction of valid frames whose overlap is strictly **greater** than each
  of the 21 thresholds `np.linspace(0, 1, 21)`; **AUC** is the curve's mean. As in the
  toolkit, no overlap exceeds 1, so a perfect tracker scores AUC = 20/21 ~= 0.952.
* **OP50 / OP75** (overlap precision, as pytracking and the ECO paper report it): the
  fraction of valid frames with overlap > 0.5 / > 0.75, i.e. the success curve at those two
  thresholds (both exact in `SUCCESS_THRESHOLDS`); over sequences, the mean of the
  per-sequence values.
* **Precision curve**: fraction of valid frames with centre error **<=** each threshold
  0, 1, ..., 50 px; **P@20** is its value at 20 px.
* **Normalised precision curve**: fraction with normalised error <= each of
  `np.linspace(0, 0.5, 51)`; we report its **value at 0.2** (pytracking's "Norm Precision"),
  not its AUC.
* **Aggregation over sequences** (`aggregate`): the mean of the per-sequence curves, each
  sequence weighing the same whatever its length, as `perfPlot.m` does; AUC, P@20 and the
  normalised precision of the mean curve equal the means of the per-sequence values. (The
  toolkit's plot code also drops sequences whose curve is all zero, to skip missing results;
  we do not: a total failure counts as 0, and missing results are an error.) FPS over
  sequences is total frames / total time.
* Result files: one `x,y,w,h` line per frame, the OTB/got-10k per-sequence text format;
  beside it a per-frame record `<name>.scores.csv` (`write_frame_scores`: relative score,
  ok/lost flag, raw peak, seconds). `write_got10k_result` and `write_pysot_result` write the
  GOT-10k toolkit's and pysot's folder layouts. Result files and plots are written
  atomically (`ctjax.paths.atomic_write`: unique temporary name, then rename; normal
  permissions).
* Sharded evaluation (`ctjax eval --shard K/N`, `--merge`): `assign_shards` splits the
  (tracker, sequence) tasks over N jobs (longest first to the least-loaded shard, a function
  of the task list only), each finished shard describes itself in a manifest
  (`shard_manifest`), and `merge_shards` checks that a set of manifests is one run with every
  shard exactly once.

NumPy and matplotlib (Agg, no pyplot state) only.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ctjax import boxes as boxlib
from ctjax import paths

SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, 21)
PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64)
NORM_PRECISION_THRESHOLDS = np.linspace(0.0, 0.5, 51)
PRECISION_INDEX = 20  # PRECISION_THRESHOLDS[20] == 20 px
NORM_PRECISION_INDEX = 20  # NORM_PRECISION_THRESHOLDS[20] == 0.2
OP50_INDEX, OP75_INDEX = 10, 15  # SUCCESS_THRESHOLDS[10] == 0.5, [15] == 0.75, exactly
GT_RULES = ("ctjax", "otb")
GT_RULE_TEXT = {
    "ctjax": "ctjax rule: frames whose ground truth is NaN or has w <= 0 or h <= 0 are left "
             "out of every metric",
    "otb": "OTB toolkit rule (calcSeqErrRobust.m): frames whose ground truth is not all > 0 "
           "count with overlap -1 and centre error -1; invalid predicted boxes take the "
           "previous frame's box; frame 1 is scored as the ground truth",
}


class EvaluationError(ValueError):
    """Predictions and ground truth cannot be scored (shape, length, no valid frame)."""


class ResultFileError(ValueError):
    """A result file is missing, malformed, or its length differs from the sequence."""


class _Scores:
    """Summary numbers of the curves `success`, `precision`, `norm_precision`."""

    @property
    def auc(self) -> float:
        """Area under the success curve: the mean over the 21 overlap thresholds."""
        return float(np.mean(self.success))

    @property
    def precision20(self) -> float:
        """Precision at 20 px."""
        return float(self.precision[PRECISION_INDEX])

    @property
    def norm_precision(self) -> float:
        """Normalised precision at 0.2."""
        return float(self.norm_precision_curve[NORM_PRECISION_INDEX])

    @property
    def op50(self) -> float:
        """Overlap precision: fraction of valid frames with overlap > 0.5."""
        return float(self.success[OP50_INDEX])

    @property
    def op75(self) -> float:
        """Overlap precision: fraction of valid frames with overlap > 0.75."""
        return float(self.success[OP75_INDEX])


@dataclasses.dataclass(frozen=True, eq=False)
class SequenceResult(_Scores):
    """Scores of one tracker on one sequence.

    Attributes:
      name: the sequence's name.
      overlaps: (N,) per-frame IoU; on frames with invalid ground truth NaN (rule "ctjax")
        or -1 (rule "otb").
      center_errors: (N,) per-frame centre error in pixels; NaN or -1 likewise.
      normalized_errors: (N,) per-frame normalised centre error; NaN or -1 likewise.
      success: (21,) success curve over `SUCCESS_THRESHOLDS`.
      precision: (51,) precision curve over `PRECISION_THRESHOLDS`.
      norm_precision_curve: (51,) curve over `NORM_PRECISION_THRESHOLDS`.
      num_valid: the curves' denominator: frames with valid ground truth (rule "ctjax"), all
        frames (rule "otb").
      num_invalid_pred: frames with valid ground truth whose predicted box was invalid
        (scored as failures, or carried forward when asked or under rule "otb").
      fps: the tracker's speed on this sequence, if known.
      gt_rule: the invalid-ground-truth rule scored with, one of `GT_RULES`.
    """

    name: str
    overlaps: np.ndarray
    center_errors: np.ndarray
    normalized_errors: np.ndarray
    success: np.ndarray
    precision: np.ndarray
    norm_precision_curve: np.ndarray
    num_valid: int
    num_invalid_pred: int = 0
    fps: float | None = None
    gt_rule: str = "ctjax"

    @property
    def num_frames(self) -> int:
        return len(self.overlaps)


@dataclasses.dataclass(frozen=True, eq=False)
class OverallResult(_Scores):
    """Scores of one tracker over several sequences: the mean of the per-sequence curves.

    Attributes:
      name: the tracker's name.
      sequences: the per-sequence results averaged.
      success, precision, norm_precision_curve: mean curves, shapes (21,), (51,), (51,).
      fps: total frames / total time over all sequences, if every sequence has an fps.
      gt_rule: the invalid-ground-truth rule every sequence was scored with.
    """

    name: str
    sequences: tuple[SequenceResult, ...]
    success: np.ndarray
    precision: np.ndarray
    norm_precision_curve: np.ndarray
    fps: float | None = None
    gt_rule: str = "ctjax"


def valid_ground_truth(gt, *, gt_rule: str = "ctjax") -> np.ndarray:
    """(N,) bool: the rows of (N, 4) ground truth that are scored as valid.

    Rule "ctjax": finite with w > 0 and h > 0. Rule "otb" (`calcSeqErrRobust.m`'s
    `sum(rect_anno > 0, 2) == 4`): finite with all of x, y, w, h > 0.
    """
    gt = np.asarray(gt, dtype=np.float64)
    finite = np.isfinite(gt).all(axis=-1)
    if gt_rule == "otb":
        with np.errstate(invalid="ignore"):
            return finite & (gt > 0).all(axis=-1)
    _check_rule(gt_rule)
    return finite & (gt[..., 2] > 0) & (gt[..., 3] > 0)


def _check_rule(gt_rule: str) -> None:
    if gt_rule not in GT_RULES:
        raise ValueError(f"unknown ground-truth rule {gt_rule!r}; choose one of {GT_RULES}")


def normalized_center_error(pred, gt) -> np.ndarray:
    """Centre error divided by the ground-truth size per axis (TrackingNet / LaSOT).

    Args:
      pred: (..., 4) predicted boxes x,y,w,h.
      gt: (..., 4) ground-truth boxes x,y,w,h with w, h > 0.

    Returns:
      (...) float64 `||((cx_p - cx_g) / w_g, (cy_p - cy_g) / h_g)||`.
    """
    cp, _ = boxlib.xywh_to_center_size(pred)
    cg, sg = boxlib.xywh_to_center_size(gt)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(np.sum(((cp - cg) / sg) ** 2, axis=-1))


def success_curve(overlaps, *, thresholds=SUCCESS_THRESHOLDS) -> np.ndarray:
    """Fraction of frames with overlap strictly greater than each threshold (OTB).

    Args:
      overlaps: (M,) IoU of the frames to score (no NaN).
      thresholds: (T,) overlap thresholds.

    Returns:
      (T,) float64 success rates in [0, 1].
    """
    overlaps = np.asarray(overlaps, dtype=np.float64)
    return np.mean(overlaps[:, None] > np.asarray(thresholds)[None, :], axis=0)


def precision_curve(errors, *, thresholds=PRECISION_THRESHOLDS) -> np.ndarray:
    """Fraction of frames with error at most each threshold (OTB precision plot).

    Args:
      errors: (M,) centre errors of the frames to score (no NaN; inf for a failure).
      thresholds: (T,) error thresholds.

    Returns:
      (T,) float64 precisions in [0, 1].
    """
    errors = np.asarray(errors, dtype=np.float64)
    return np.mean(errors[:, None] <= np.asarray(thresholds)[None, :], axis=0)


def _as_track(boxes, what: str) -> np.ndarray:
    try:
        b = np.array(boxes, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise EvaluationError(f"{what} must be numbers, got {type(boxes).__name__}") from e
    if b.ndim != 2 or b.shape[1] != 4:
        raise EvaluationError(f"{what} must have shape (N, 4) (x,y,w,h per frame), got {b.shape}")
    return b


def evaluate_sequence(pred, gt, *, name: str = "sequence", fps: float | None = None,
                      carry_forward_invalid: bool = False,
                      gt_rule: str = "ctjax") -> SequenceResult:
    """Scores one tracker's boxes on one sequence (OTB one-pass evaluation).

    Args:
      pred: (N, 4) predicted boxes x,y,w,h, one per frame.
      gt: (N, 4) ground truth x,y,w,h; invalid rows are treated by `gt_rule`.
      name: the sequence's name, for results and error messages.
      fps: the tracker's speed on this sequence, stored in the result.
      carry_forward_invalid: replace an invalid predicted box by the previous frame's box
        (the OTB toolkit's rule) instead of scoring it as a failure; rule "otb" always does.
      gt_rule: "ctjax" (invalid ground-truth frames excluded) or "otb" (the toolkit's
        `calcSeqErrRobust.m`); see the module docstring.

    Returns:
      A `SequenceResult`.

    Raises:
      EvaluationError: wrong shapes, different lengths, or no frame with valid ground truth.
      ValueError: an unknown `gt_rule`.
    """
    _check_rule(gt_rule)
    pred, gt = _as_track(pred, f"{name}: predictions"), _as_track(gt, f"{name}: ground truth")
    if len(pred) != len(gt):
        raise EvaluationError(
            f"{name}: {len(pred)} predicted boxes but {len(gt)} ground-truth boxes")
    if gt_rule == "otb":
        return _evaluate_otb(pred, gt, name=name, fps=fps)
    valid = valid_ground_truth(gt)
    if not valid.any():
        raise EvaluationError(f"{name}: no frame has valid ground truth (all NaN or w/h <= 0)")
    pred_ok = valid_ground_truth(pred)
    num_invalid_pred = int(np.sum(~pred_ok & valid))
    if carry_forward_invalid:
        for i in np.flatnonzero(~pred_ok):
            if i > 0:
                pred[i] = pred[i - 1]
        pred_ok = valid_ground_truth(pred)
    with np.errstate(invalid="ignore"):
        overlaps = np.where(pred_ok, boxlib.iou(pred, gt), 0.0)
        errors = np.where(pred_ok, boxlib.center_error(pred, gt), np.inf)
        norm_errors = np.where(pred_ok, normalized_center_error(pred, gt), np.inf)
    for a in (overlaps, errors, norm_errors):
        a[~valid] = np.nan
    return SequenceResult(
        name=name, overlaps=overlaps, center_errors=errors, normalized_errors=norm_errors,
        success=success_curve(overlaps[valid]),
        precision=precision_curve(errors[valid]),
        norm_precision_curve=precision_curve(
            norm_errors[valid], thresholds=NORM_PRECISION_THRESHOLDS),
        num_valid=int(valid.sum()), num_invalid_pred=num_invalid_pred,
        fps=None if fps is None else float(fps))


def _evaluate_otb(pred: np.ndarray, gt: np.ndarray, *, name: str,
                  fps: float | None) -> SequenceResult:
    """`evaluate_sequence` under the OTB toolkit's rule (`calcSeqErrRobust.m` and
    `perfPlot.m`: every frame in the denominator, -1 scores on invalid ground truth)."""
    valid = valid_ground_truth(gt, gt_rule="otb")
    if not valid.any():
        raise EvaluationError(f"{name}: no frame has valid ground truth (all NaN or <= 0)")
    num_invalid_pred = int(np.sum(~valid_ground_truth(pred) & valid))
    pred = pred.copy()
    anno_has_nan = np.isnan(gt).any(axis=1)
    for i in range(1, len(pred)):
        r = pred[i]
        # MATLAB's `if (isnan(r) | r(3)<=0 | r(4)<=0) & ~isnan(r_anno)` holds only when all
        # four elements are true: an all-NaN box, or w <= 0 or h <= 0, on a NaN-free row.
        if (np.isnan(r).all() or r[2] <= 0 or r[3] <= 0) and not anno_has_nan[i]:
            pred[i] = pred[i - 1]
    pred[0] = gt[0]
    with np.errstate(invalid="ignore"):
        overlaps = boxlib.iou(pred, gt)
        errors = boxlib.center_error(pred, gt)
        norm_errors = normalized_center_error(pred, gt)
    for a in (overlaps, errors, norm_errors):
        a[~valid] = -1.0
    # NaN left in a prediction compares false: a failure for success and precision alike.
    return SequenceResult(
        name=name, overlaps=overlaps, center_errors=errors, normalized_errors=norm_errors,
        success=success_curve(overlaps), precision=precision_curve(errors),
        norm_precision_curve=precision_curve(norm_errors,
                                             thresholds=NORM_PRECISION_THRESHOLDS),
        num_valid=len(gt), num_invalid_pred=num_invalid_pred,
        fps=None if fps is None else float(fps), gt_rule="otb")


def aggregate(results: Iterable[SequenceResult], *, name: str = "tracker") -> OverallResult:
    """Averages per-sequence curves, each sequence weighing the same (OTB `perfPlot.m`).

    Args:
      results: per-sequence results of one tracker.
      name: the tracker's name.

    Returns:
      An `OverallResult` whose AUC / P@20 / normalised precision are the per-sequence means.
    """
    results = tuple(results)
    if not results:
        raise EvaluationError(f"{name}: no sequence results to aggregate")
    rules = {r.gt_rule for r in results}
    if len(rules) > 1:
        raise EvaluationError(f"{name}: sequences scored with different ground-truth rules "
                              f"{sorted(rules)} cannot be averaged")
    fps = None
    if all(r.fps for r in results):
        fps = sum(r.num_frames for r in results) / sum(r.num_frames / r.fps for r in results)
    return OverallResult(
        name=name, sequences=results,
        success=np.mean([r.success for r in results], axis=0),
        precision=np.mean([r.precision for r in results], axis=0),
        norm_precision_curve=np.mean([r.norm_precision_curve for r in results], axis=0),
        fps=fps, gt_rule=rules.pop())


def write_boxes(path, boxes) -> Path:
    """Writes one `x,y,w,h` line per frame, atomically (`ctjax.paths.atomic_write`).

    An interrupted or failed write leaves any existing file at `path` untouched and no
    temporary file behind; concurrent writers use unique temporary names; the file gets
    normal permissions (0666 & ~umask). Values are written in the shortest form that reads
    back exactly.

    Args:
      path: the result file, e.g. `results/<tracker>/<sequence>.txt`; parents are created.
      boxes: (N, 4) boxes x,y,w,h.

    Returns:
      `path` as a `Path`.
    """
    path = Path(path)
    b = _as_track(boxes, f"boxes for {path}")
    text = "".join(
        ",".join(np.format_float_positional(v, trim="-") for v in row) + "\n" for row in b)
    return paths.atomic_write(path, text)


def read_boxes(path, *, num_frames: int | None = None) -> np.ndarray:
    """Reads a result file: one box per line, separated by commas, tabs or spaces.

    Args:
      path: the result file.
      num_frames: if given, the number of frames of the sequence the file belongs to.

    Returns:
      (N, 4) float64 boxes x,y,w,h.

    Raises:
      ResultFileError: the file is missing or unreadable, a line is malformed (named by
        number), or it holds a number of boxes other than `num_frames`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ResultFileError(f"result file {path} is missing or unreadable: {e}") from e
    try:
        b = boxlib.parse_boxes(text, source=f"result file {path}")
    except boxlib.BoxError as e:
        raise ResultFileError(str(e)) from None
    if num_frames is not None and len(b) != num_frames:
        raise ResultFileError(
            f"result file {path} holds {len(b)} boxes but the sequence has {num_frames} frames")
    return b


class FrameScores(NamedTuple):
    """The per-frame record of a tracked sequence (a `<name>.scores.csv` file).

    Attributes:
      score: (N,) float64 the step's score relative to its early median, as
        `ctjax.Tracker.update` returns it (`ctjax.api.score_flags`); NaN on the init frame
        and for trackers without a score.
      ok: (N,) bool, False where the target is judged lost (True on the init frame).
      peak: (N,) float64 the raw response peak; NaN on the init frame.
      seconds: (N,) float64 tracking time of each frame (row 0: the init frame), decoding
        excluded, as `ctjax.trackers.run.TrackResult.frame_seconds`.
    """
    score: np.ndarray
    ok: np.ndarray
    peak: np.ndarray
    seconds: np.ndarray


SCORE_COLUMNS = ("frame", "score", "ok", "peak", "seconds")


def write_frame_scores(path, record: FrameScores) -> Path:
    """Writes a per-frame record as CSV, atomically: a header `frame,score,ok,peak,seconds`,
    then one line per frame (frame numbers 1-based, ok as 1/0, floats in their shortest
    round-trip form, NaN as `nan`).

    Returns:
      `path` as a `Path`.
    """
    columns = [np.asarray(c, np.float64).reshape(-1) for c in record]
    n = len(columns[0])
    if any(len(c) != n for c in columns):
        raise ValueError(f"per-frame record for {path}: columns of different lengths "
                         f"{[len(c) for c in columns]}")
    lines = [",".join(SCORE_COLUMNS)]
    for i in range(n):
        score, ok, peak, seconds = (float(c[i]) for c in columns)
        lines.append(f"{i + 1},{score!r},{int(bool(ok))},{peak!r},{seconds!r}")
    return paths.atomic_write(Path(path), "\n".join(lines) + "\n")


def read_frame_scores(path, *, num_frames: int | None = None) -> FrameScores:
    """Reads a file of `write_frame_scores`.

    Raises:
      ResultFileError: missing, unreadable or malformed (the line is named), frames out of
        order, or a number of frames other than `num_frames`.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ResultFileError(f"score file {path} is missing or unreadable: {e}") from e
    if lines[0].strip() != ",".join(SCORE_COLUMNS):
        raise ResultFileError(f"score file {path}: first line must be "
                              f"{','.join(SCORE_COLUMNS)!r}, got {lines[0][:60]!r}")
    rows = []
    for i, line in enumerate(lines[1:], start=2):
        fields = line.split(",")
        try:
            if len(fields) != len(SCORE_COLUMNS) or int(fields[0]) != i - 1 or \
                    fields[2] not in ("0", "1"):
                raise ValueError
            rows.append([float(f) for f in fields[1:]])
        except ValueError:
            raise ResultFileError(f"score file {path}, line {i}: expected frame {i - 1},"
                                  f"score,ok (0/1),peak,seconds, got {line[:60]!r}") from None
    a = np.array(rows, np.float64).reshape(-1, 4)
    if num_frames is not None and len(a) != num_frames:
        raise ResultFileError(f"score file {path} holds {len(a)} frames but the sequence has "
                              f"{num_frames}")
    return FrameScores(score=a[:, 0], ok=a[:, 1] > 0, peak=a[:, 2], seconds=a[:, 3])


# ---------------------------------------------------------------------------------------------
# Other toolkits' result layouts

RESULT_LAYOUTS = ("ctjax", "got10k", "pysot")


def _csv_boxes(boxes) -> str:
    b = _as_track(boxes, "boxes")
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in b)


def write_got10k_result(root, tracker: str, name: str, boxes, seconds) -> list[Path]:
    """Writes one sequence's result in the GOT-10k toolkit's layout (`ExperimentGOT10k`):
    `<root>/<tracker>/<name>/<name>_001.txt` (one comma-separated x,y,w,h line per frame;
    one repetition: the trackers are deterministic) and `<name>_time.txt` (the seconds of
    each frame, the init frame first, as the toolkit's `Tracker.track` times them: decoding
    excluded).

    Args:
      root: the toolkit's result folder (its `result_dir/GOT-10k`).
      tracker, name: the tracker's and the sequence's names (folder names).
      boxes: (N, 4) boxes in the benchmark's own coordinates.
      seconds: (N,) seconds per frame.

    Returns:
      The two files written.
    """
    folder = Path(root) / tracker / name
    seconds = np.asarray(seconds, np.float64).reshape(-1)
    if len(seconds) != len(np.asarray(boxes)):
        raise ValueError(f"{name}: {len(seconds)} frame times for {len(boxes)} boxes")
    times = "".join(f"{t:.8f}\n" for t in seconds)
    return [paths.atomic_write(folder / f"{name}_001.txt", _csv_boxes(boxes)),
            paths.atomic_write(folder / f"{name}_time.txt", times)]


def write_pysot_result(root, tracker: str, name: str, boxes) -> Path:
    """Writes one sequence's result in pysot's one-pass layout (OTB, UAV, LaSOT, ...):
    `<root>/<tracker>/<name>.txt`, one comma-separated x,y,w,h line per frame.

    Args:
      root: pysot's result folder for the dataset (`results/<dataset>`).
      tracker, name: the tracker's and the sequence's names.
      boxes: (N, 4) boxes in the benchmark's own coordinates.
    """
    return paths.atomic_write(Path(root) / tracker / f"{name}.txt", _csv_boxes(boxes))


def evaluate_results(result_dir, sequences, *, name: str | None = None,
                     carry_forward_invalid: bool = False,
                     gt_rule: str = "ctjax") -> OverallResult:
    """Scores a folder of result files `<result_dir>/<sequence name>.txt`.

    Args:
      result_dir: one tracker's result folder.
      sequences: the sequences scored (anything with `.name` and `.boxes`), e.g.
        `ctjax.data.sequences.load_split("eval")`.
      name: the tracker's name; defaults to the folder name.
      carry_forward_invalid, gt_rule: see `evaluate_sequence`.

    Returns:
      The tracker's `OverallResult`; a missing or short result file is a `ResultFileError`.
    """
    result_dir = Path(result_dir)
    results = [
        evaluate_sequence(read_boxes(result_dir / f"{s.name}.txt", num_frames=len(s.boxes)),
                          s.boxes, name=s.name, carry_forward_invalid=carry_forward_invalid,
                          gt_rule=gt_rule)
        for s in sequences]
    return aggregate(results, name=name or result_dir.name)


def summary_table(results, *, name: str = "tracker") -> str:
    """A Markdown table: one row per sequence and a mean row (the `aggregate` scores).

    Args:
      results: per-sequence `SequenceResult`s of one tracker, or its `OverallResult`.
      name: the tracker's name in the mean row (when `results` is not an `OverallResult`).

    Returns:
      The table; columns frames, AUC, OP50, OP75, P@20, NormP@0.2, and FPS when any result
      has one.
    """
    overall = results if isinstance(results, OverallResult) else aggregate(results, name=name)
    show_fps = any(r.fps for r in overall.sequences)
    header = ["sequence", "frames", "AUC", "OP50", "OP75", "P@20", "NormP@0.2"] + \
        (["FPS"] if show_fps else [])

    def row(label, frames, r):
        cells = [label, str(frames), f"{r.auc:.3f}", f"{r.op50:.3f}", f"{r.op75:.3f}",
                 f"{r.precision20:.3f}", f"{r.norm_precision:.3f}"]
        return cells + ([f"{r.fps:.1f}" if r.fps else "-"] if show_fps else [])

    rows = [row(r.name, r.num_frames, r) for r in overall.sequences]
    total = sum(r.num_frames for r in overall.sequences)
    rows.append(row(f"mean of {len(overall.sequences)} ({overall.name})", total, overall))
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]

    def fmt(cells):
        padded = (c.ljust(w) if i == 0 else c.rjust(w)
                  for i, (c, w) in enumerate(zip(cells, widths)))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 2)) if i == 0 else ("-" * (w + 1) + ":")
                          for i, w in enumerate(widths)) + "|"
    return "\n".join([fmt(header), rule] + [fmt(r) for r in rows])


def _overall(name: str, value) -> OverallResult:
    if isinstance(value, OverallResult):
        return value
    if isinstance(value, SequenceResult):
        return aggregate([value], name=name)
    return aggregate(value, name=name)


def _plot(trackers, path, *, kind: str, title: str) -> Path:
    """Draws one OTB plot for several trackers, legend sorted by score as the toolkit does."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not trackers:
        raise EvaluationError("no tracker to plot")
    overall = [(n, _overall(n, v)) for n, v in trackers.items()]
    if kind == "success":
        x, curve, score = SUCCESS_THRESHOLDS, "success", "auc"
        xlabel, ylabel, loc = "Overlap threshold", "Success rate", "lower left"
    else:
        x, curve, score = PRECISION_THRESHOLDS, "precision", "precision20"
        xlabel, ylabel, loc = "Location error threshold (px)", "Precision", "lower right"
    fig = Figure(figsize=(6.0, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (n, r) in enumerate(sorted(overall, key=lambda nr: -getattr(nr[1], score))):
        ax.plot(x, getattr(r, curve), lw=2, ls="-" if i < 10 else "--",
                label=f"{n} [{getattr(r, score):.3f}]")
    ax.set(xlim=(x[0], x[-1]), ylim=(0.0, 1.0), xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, alpha=0.4)
    ax.legend(loc=loc, fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return paths.atomic_write(path, buffer.getvalue())


def plot_success(trackers: Mapping, path, *, title: str = "Success plots of OPE") -> Path:
    """Writes the OTB success plot (legend: AUC) of several trackers as a PNG.

    Args:
      trackers: tracker name -> its `OverallResult`, a list of `SequenceResult`s, or one
        `SequenceResult`.
      path: the PNG file to write; parents are created.
      title: the plot's title.

    Returns:
      `path` as a `Path`.
    """
    return _plot(trackers, path, kind="success", title=title)


def plot_precision(trackers: Mapping, path, *, title: str = "Precision plots of OPE") -> Path:
    """Writes the OTB precision plot (legend: P@20) of several trackers as a PNG.

    Args:
      trackers: as for `plot_success`.
      path: the PNG file to write; parents are created.
      title: the plot's title.

    Returns:
      `path` as a `Path`.
    """
    return _plot(trackers, path, kind="precision", title=title)


# ---------------------------------------------------------------------------------------------
# Sharded evaluation: the (tracker, sequence) tasks split over jobs, and merged back


class ShardError(ValueError):
    """The shards of a sharded evaluation do not make up one whole run, each shard once."""


SHARD_FORMAT = "ctjax-eval-shard/1"


def parse_shard(text: str) -> tuple[int, int]:
    """`"K/N"` -> (K, N), shard K of N, 1 <= K <= N.

    Raises:
      ValueError: not of that form or out of range.
    """
    k, _, n = str(text).partition("/")
    try:
        k, n = int(k), int(n)
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise ValueError(f"--shard must be K/N with 1 <= K <= N (e.g. 2/3), got {text!r}")
    return k, n


def assign_shards(costs: Sequence[float], n: int) -> list[int]:
    """The shard (1..n) of each task: longest first, each to the least-loaded shard.

    Deterministic: it depends only on the costs (e.g. frames per task) and their order,
    never on which results already exist, so N jobs started with the same arguments split
    the tasks exactly (ties go to the earlier task and the lower shard). Longest-processing-
    time-first keeps the largest shard within 4/3 of the best possible (Graham, SIAM J. Appl.
    Math. 1969).

    Args:
      costs: (T,) non-negative cost of each task, in the run's task order.
      n: number of shards, >= 1.

    Returns:
      T shard numbers in 1..n.
    """
    if n < 1:
        raise ValueError(f"the number of shards must be >= 1, got {n}")
    load = [0.0] * n
    shard = [0] * len(costs)
    for t in sorted(range(len(costs)), key=lambda t: (-float(costs[t]), t)):
        k = min(range(n), key=lambda s: (load[s], s))
        shard[t], load[k] = k + 1, load[k] + float(costs[t])
    return shard


def shard_manifest(*, shard: int, shards: int, run: dict, plan: Sequence,
                   results: Sequence) -> dict:
    """What a finished shard writes beside its results (`<output>/shard-K-of-N.json`).

    Args:
      shard, shards: K and N.
      run: JSON-able description of the whole run that every shard must share (trackers,
        sequences, frame limit, code version).
      plan: every task of the run as [tracker label, sequence name, shard].
      results: this shard's tasks as [tracker label, sequence name, result key].
    """
    return {"format": SHARD_FORMAT, "shard": shard, "shards": shards, "run": run,
            "plan": [list(p) for p in plan], "results": [list(r) for r in results]}


def shard_file_name(shard: int, shards: int) -> str:
    return f"shard-{shard}-of-{shards}.json"


def merge_shards(manifests: Sequence[tuple[str, dict]]) -> tuple[dict, dict]:
    """Checks that shard manifests make up one run, each shard and task exactly once.

    Args:
      manifests: (where it was read, manifest) pairs, e.g. ("runs/a/shard-1-of-3.json", {...}).

    Returns:
      (run, tasks): the shared run description, and {(label, sequence): (where, key)} for
      every task of the plan, in plan order.

    Raises:
      ShardError: no manifest; manifests of different runs (arguments, number of shards,
        plan or code differ); a shard given twice or missing; a shard whose results are not
        exactly its share of the plan. The message names the shards and files.
    """
    if not manifests:
        raise ShardError("no shard manifest (shard-K-of-N.json) to merge")
    first_where, first = manifests[0]
    by_shard: dict[int, str] = {}
    for where, m in manifests:
        if not isinstance(m, dict) or m.get("format") != SHARD_FORMAT:
            raise ShardError(f"{where} is not a ctjax eval shard manifest")
        label = f"shard {m['shard']}/{m['shards']} ({where})"
        for field in ("shards", "run", "plan"):
            if m[field] != first[field]:
                what = {"shards": "numbers of shards", "run": "arguments or code",
                        "plan": "task plans"}[field]
                raise ShardError(f"{label} and shard {first['shard']}/{first['shards']} "
                                 f"({first_where}) are from different runs (their {what} "
                                 "differ); every shard must be run with the same arguments "
                                 "and code")
        if m["shard"] in by_shard:
            raise ShardError(f"shard {m['shard']}/{m['shards']} is given twice: "
                             f"{by_shard[m['shard']]} and {where}")
        by_shard[m["shard"]] = where
        mine = sorted((l, s) for l, s, k in m["plan"] if k == m["shard"])
        if sorted((l, s) for l, s, _ in m["results"]) != mine:
            raise ShardError(f"{label}: its results are not exactly its share of the plan")
    missing = sorted(set(range(1, first["shards"] + 1)) - set(by_shard))
    if missing:
        n = first["shards"]
        raise ShardError(f"shard(s) {', '.join(f'{k}/{n}' for k in missing)} missing (have "
                         f"{', '.join(f'{k}/{n}' for k in sorted(by_shard))}); a shard writes "
                         "its manifest only when all its tasks succeeded")
    keys = {(l, s): (where, key) for where, m in manifests for l, s, key in m["results"]}
    return first["run"], {(l, s): keys[l, s] for l, s, _ in first["plan"]}

"""Tests for ctjax.evaluation: OTB one-pass evaluation, result files, table and plots."""

import os

import numpy as np
import pytest
from PIL import Image

from ctjax import evaluation as ev

THR = ev.SUCCESS_THRESHOLDS


def _track(n=40, seed=0):
    rng = np.random.default_rng(seed)
    xy = np.cumsum(rng.normal(0, 2, (n, 2)), axis=0) + 100
    wh = np.full((n, 2), [30.0, 40.0]) + rng.uniform(-3, 3, (n, 2))
    # Integer boxes, like OTB ground truth, so offsets give exact errors and overlaps.
    return np.round(np.concatenate([xy, wh], axis=1))


def _otb_reference(pred, gt):
    """Loop implementation of the OTB toolkit formulas (calcRectInt with inclusive right
    edges, centre x + (w-1)/2), for ground truth without invalid rows."""
    overlaps, errors = [], []
    for p, g in zip(pred, gt):
        right = min(p[0] + p[2] - 1, g[0] + g[2] - 1)
        bottom = min(p[1] + p[3] - 1, g[1] + g[3] - 1)
        inter = max(0, right - max(p[0], g[0]) + 1) * max(0, bottom - max(p[1], g[1]) + 1)
        overlaps.append(inter / (p[2] * p[3] + g[2] * g[3] - inter))
        dx = (p[0] + (p[2] - 1) / 2) - (g[0] + (g[2] - 1) / 2)
        dy = (p[1] + (p[3] - 1) / 2) - (g[1] + (g[3] - 1) / 2)
        errors.append((dx * dx + dy * dy) ** 0.5)
    success = [sum(o > t for o in overlaps) / len(gt) for t in np.arange(0, 21) * 0.05]
    precision = [sum(e <= t for e in errors) / len(gt) for t in range(51)]
    return np.array(overlaps), np.array(errors), np.array(success), np.array(precision)


def test_matches_loop_reference_of_otb_formulas():
    gt = _track(60, seed=1)
    pred = gt + np.random.default_rng(2).normal(0, 6, gt.shape) * [1, 1, 0.5, 0.5]
    r = ev.evaluate_sequence(pred, gt, name="x")
    overlaps, errors, success, precision = _otb_reference(pred, gt)
    np.testing.assert_allclose(r.overlaps, overlaps, atol=1e-12)
    np.testing.assert_allclose(r.center_errors, errors, atol=1e-12)
    np.testing.assert_allclose(r.success, success)
    np.testing.assert_allclose(r.precision, precision)
    assert r.auc == pytest.approx(np.mean(success))
    assert r.precision20 == precision[20]


def test_perfect_tracking():
    gt = _track()
    r = ev.evaluate_sequence(gt, gt, name="perfect")
    np.testing.assert_array_equal(r.overlaps, 1.0)
    np.testing.assert_array_equal(r.center_errors, 0.0)
    np.testing.assert_array_equal(r.precision, 1.0)
    assert r.precision20 == 1.0 and r.norm_precision == 1.0
    # Success is 1 at every threshold below 1; no overlap is strictly greater than 1 (OTB), so
    # the OTB AUC of perfect tracking is 20/21.
    np.testing.assert_array_equal(r.success[:-1], 1.0)
    assert r.success[-1] == 0.0
    assert r.auc == pytest.approx(20 / 21)
    assert r.num_frames == r.num_valid == 40 and r.num_invalid_pred == 0
    # Non-integer boxes: rounding must not push an identical box's overlap above 1.
    r = ev.evaluate_sequence(gt * 1.37 + 0.1, gt * 1.37 + 0.1)
    assert r.success[-1] == 0.0 and r.auc == pytest.approx(20 / 21)


def test_fixed_offset_gives_error_five_and_precision_step():
    gt = _track()
    r = ev.evaluate_sequence(gt + [3, 4, 0, 0], gt)
    np.testing.assert_allclose(r.center_errors, 5.0)
    expected = (ev.PRECISION_THRESHOLDS >= 5).astype(float)
    np.testing.assert_array_equal(r.precision, expected)
    assert r.precision20 == 1.0
    # Normalised by the ground-truth size: ||(3 / w, 4 / h)||.
    np.testing.assert_allclose(r.normalized_errors, np.hypot(3 / gt[:, 2], 4 / gt[:, 3]))


def test_precision_threshold_is_inclusive_at_20():
    gt = np.tile([10.0, 10, 20, 20], (4, 1))
    pred = gt + [[20, 0, 0, 0], [20.0001, 0, 0, 0], [0, 0, 0, 0], [12, 16, 0, 0]]
    r = ev.evaluate_sequence(pred, gt)
    assert r.precision[20] == 0.75  # errors 20, 20.0001, 0, 20
    assert r.precision[19] == 0.25


def test_half_overlap_iou_is_one_third():
    gt = np.tile([1.0, 1, 10, 10], (5, 1))
    r = ev.evaluate_sequence(gt + [5, 0, 0, 0], gt)
    np.testing.assert_allclose(r.overlaps, 1 / 3)
    np.testing.assert_array_equal(r.success, (THR < 1 / 3).astype(float))


def test_strict_greater_at_thresholds_zero_half_and_one():
    gt = np.tile([1.0, 1, 10, 10], (4, 1))
    pred = np.array([[1, 1, 10, 10],      # overlap exactly 1
                     [11, 1, 10, 10],     # touching: overlap exactly 0
                     [1, 1, 10, 10 / 3],  # overlap 1/3
                     [6, 1, 10, 10]], dtype=float)
    pred[2] = [1, 1, 10, 5]               # overlap exactly 0.5
    r = ev.evaluate_sequence(pred, gt)
    np.testing.assert_allclose(r.overlaps, [1.0, 0.0, 0.5, 1 / 3])
    assert r.success[0] == 0.75    # overlap 0 is not > 0
    assert r.success[10] == 0.25   # threshold 0.5: overlap 0.5 is not > 0.5
    assert r.success[20] == 0.0    # overlap 1 is not > 1
    assert THR[10] == 0.5


def test_invalid_ground_truth_rows_are_excluded():
    gt = _track(30, seed=3)
    pred = gt + np.random.default_rng(4).normal(0, 8, gt.shape) * [1, 1, 0.3, 0.3]
    bad = np.array([2, 7, 8, 20])
    gt_bad = gt.copy()
    gt_bad[bad[:2]] = np.nan
    gt_bad[bad[2], 2] = 0.0     # w <= 0
    gt_bad[bad[3], 3] = -1.0    # h <= 0
    keep = np.setdiff1d(np.arange(30), bad)
    r = ev.evaluate_sequence(pred, gt_bad)
    ref = ev.evaluate_sequence(pred[keep], gt[keep])
    assert r.num_valid == 26 and r.num_frames == 30
    for curve in ("success", "precision", "norm_precision_curve"):
        np.testing.assert_array_equal(getattr(r, curve), getattr(ref, curve))
    for score in ("auc", "precision20", "norm_precision"):
        assert getattr(r, score) == getattr(ref, score)
    assert np.isnan(r.overlaps[bad]).all() and np.isnan(r.center_errors[bad]).all()
    np.testing.assert_array_equal(r.overlaps[keep], ref.overlaps)


def test_invalid_predictions_fail_or_carry_forward():
    gt = np.tile([10.0, 10, 20, 20], (4, 1))
    pred = gt.copy()
    pred[2] = np.nan
    r = ev.evaluate_sequence(pred, gt)
    assert r.num_invalid_pred == 1
    assert r.overlaps[2] == 0.0 and r.center_errors[2] == np.inf
    assert r.precision20 == 0.75
    carried = ev.evaluate_sequence(pred, gt, carry_forward_invalid=True)
    assert carried.overlaps[2] == 1.0 and carried.precision20 == 1.0
    assert carried.num_invalid_pred == 1


def test_bad_inputs_are_clear_errors():
    gt = _track(5)
    with pytest.raises(ev.EvaluationError, match="seqA: 4 predicted boxes but 5"):
        ev.evaluate_sequence(gt[:4], gt, name="seqA")
    with pytest.raises(ev.EvaluationError, match="shape"):
        ev.evaluate_sequence(gt[:, :3], gt)
    with pytest.raises(ev.EvaluationError, match="no frame has valid ground truth"):
        ev.evaluate_sequence(gt, np.full_like(gt, np.nan))
    with pytest.raises(ev.EvaluationError, match="no sequence results"):
        ev.aggregate([])


def test_aggregate_averages_per_sequence_curves():
    short = _track(10, seed=5)
    long = _track(30, seed=6)
    r1 = ev.evaluate_sequence(short, short, name="short", fps=100.0)
    r2 = ev.evaluate_sequence(long + [1000, 0, 0, 0], long, name="long", fps=50.0)
    overall = ev.aggregate([r1, r2], name="T")
    np.testing.assert_allclose(overall.success, (r1.success + r2.success) / 2)
    # Per-sequence mean; pooling all 40 frames would give 10/40 * 20/21 instead.
    assert overall.auc == pytest.approx((20 / 21 + 0.0) / 2)
    assert overall.precision20 == pytest.approx(0.5)
    assert overall.norm_precision == pytest.approx((r1.norm_precision + r2.norm_precision) / 2)
    assert overall.fps == pytest.approx(40 / (10 / 100 + 30 / 50))
    assert ev.aggregate([r1, ev.evaluate_sequence(short, short)]).fps is None


def test_write_read_round_trip(tmp_path):
    b = _track(7) * np.pi
    b[3] = np.nan
    path = ev.write_boxes(tmp_path / "res" / "seq.txt", b)
    lines = path.read_text().splitlines()
    assert len(lines) == 7 and lines[3] == "nan,nan,nan,nan"
    back = ev.read_boxes(path, num_frames=7)
    np.testing.assert_array_equal(back, b)  # exact: shortest round-trip formatting
    ev.write_boxes(path, [[1, 2, 3, 4]])
    assert path.read_text() == "1,2,3,4\n"


def test_read_boxes_tolerates_separators_and_checks_length(tmp_path):
    path = tmp_path / "r.txt"
    path.write_text("1,2,3,4\n5\t6\t7\t8\n9 10 11 12\n")
    np.testing.assert_array_equal(ev.read_boxes(path)[:, 0], [1, 5, 9])
    with pytest.raises(ev.ResultFileError, match="holds 3 boxes but the sequence has 4 frames"):
        ev.read_boxes(path, num_frames=4)
    path.write_text("1,2,3,4\n1,2\n")
    with pytest.raises(ev.ResultFileError, match="line 2"):
        ev.read_boxes(path)
    with pytest.raises(ev.ResultFileError, match="missing"):
        ev.read_boxes(tmp_path / "none.txt")


def test_write_boxes_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "seq.txt"
    ev.write_boxes(path, [[1, 2, 3, 4], [5, 6, 7, 8]])
    before = path.read_bytes()
    with pytest.raises(ev.EvaluationError, match="shape"):
        ev.write_boxes(path, np.ones((3, 5)))           # fails to format
    with pytest.raises(ev.EvaluationError):
        ev.write_boxes(path, [[1, 2, 3, 4], [1, 2]])     # ragged rows
    assert path.read_bytes() == before

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("interrupted before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        ev.write_boxes(path, np.zeros((100, 4)))        # interrupted after the temp file is written
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq.txt"]  # no temp file left


def test_evaluate_results_folder(tmp_path):
    class Seq:
        def __init__(self, name, boxes):
            self.name, self.boxes = name, boxes

    seqs = [Seq("a", _track(10, 7)), Seq("b", _track(12, 8))]
    ev.write_boxes(tmp_path / "trk" / "a.txt", seqs[0].boxes)
    ev.write_boxes(tmp_path / "trk" / "b.txt", seqs[1].boxes + [3, 4, 0, 0])
    overall = ev.evaluate_results(tmp_path / "trk", seqs)
    assert overall.name == "trk" and [r.name for r in overall.sequences] == ["a", "b"]
    assert overall.precision20 == 1.0
    ev.write_boxes(tmp_path / "trk" / "b.txt", seqs[1].boxes[:11])
    with pytest.raises(ev.ResultFileError, match="b.txt holds 11 boxes but the sequence has 12"):
        ev.evaluate_results(tmp_path / "trk", seqs)


def test_summary_table_rows_and_mean():
    a, b = _track(10, 1), _track(20, 2)
    results = [ev.evaluate_sequence(a, a, name="Alpha", fps=120.0),
               ev.evaluate_sequence(b + [3, 4, 0, 0], b, name="Beta", fps=60.0)]
    table = ev.summary_table(results, name="ours")
    lines = table.splitlines()
    assert len(lines) == 5
    assert len({len(line) for line in lines}) == 1  # aligned columns
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == [
        "sequence", "frames", "AUC", "OP50", "OP75", "P@20", "NormP@0.2", "FPS"]
    alpha = [c.strip() for c in lines[2].split("|")[1:-1]]
    assert alpha == ["Alpha", "10", f"{20 / 21:.3f}", "1.000", "1.000", "1.000", "1.000",
                     "120.0"]
    mean = [c.strip() for c in lines[4].split("|")[1:-1]]
    overall = ev.aggregate(results)
    assert mean[0] == "mean of 2 (ours)" and mean[1] == "30"
    assert mean[2:7] == [f"{overall.auc:.3f}", f"{overall.op50:.3f}", f"{overall.op75:.3f}",
                         "1.000", f"{overall.norm_precision:.3f}"]
    assert mean[7] == f"{overall.fps:.1f}"
    assert "FPS" not in ev.summary_table([ev.evaluate_sequence(a, a)])


def test_plots_write_pngs(tmp_path):
    gt = _track(30, 9)
    good = [ev.evaluate_sequence(gt + [1, 1, 0, 0], gt, name="s")]
    bad = ev.evaluate_sequence(gt + [15, 10, 0, 0], gt, name="s")
    trackers = {"good": good, "bad": bad, "agg": ev.aggregate(good, name="ignored")}
    for plot, name in ((ev.plot_success, "success.png"), (ev.plot_precision, "precision.png")):
        path = plot(trackers, tmp_path / "plots" / name)
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] > 300
    with pytest.raises(ev.EvaluationError, match="no tracker"):
        ev.plot_success({}, tmp_path / "x.png")


# --------------------------------------------------------------------------------------------
# OP50 / OP75, the OTB toolkit's ground-truth rule, per-frame records, other toolkits' layouts


def test_op50_op75_match_a_loop_count_and_average_per_sequence():
    ops = []
    results = []
    for seed in (11, 12):
        gt = _track(50, seed=seed)
        pred = gt + np.random.default_rng(seed).normal(0, 7, gt.shape) * [1, 1, 0.4, 0.4]
        overlaps, _, _, _ = _otb_reference(pred, gt)
        ops.append((sum(o > 0.5 for o in overlaps) / 50, sum(o > 0.75 for o in overlaps) / 50))
        results.append(ev.evaluate_sequence(pred, gt, name=str(seed)))
        assert results[-1].op50 == pytest.approx(ops[-1][0])
        assert results[-1].op75 == pytest.approx(ops[-1][1])
    assert 0 < ops[0][1] < ops[0][0] < 1  # the case is not degenerate
    overall = ev.aggregate(results)
    assert overall.op50 == pytest.approx((ops[0][0] + ops[1][0]) / 2)
    assert overall.op75 == pytest.approx((ops[0][1] + ops[1][1]) / 2)
    # Exactly 0.5 is not > 0.5 (strict, as the success curve).
    gt = np.tile([1.0, 1, 10, 10], (2, 1))
    assert ev.evaluate_sequence(gt + [[0, 0, 0, 0], [0, 0, 0, -5]], gt).op50 == 0.5


# Hand-computed case. Frame 2's box has x = 0 (invalid for the OTB toolkit, valid for us),
# frame 3 has no ground truth, frame 4's prediction is lost (NaN).
GT5 = np.array([[10, 10, 10, 10], [0, 10, 10, 10], [np.nan] * 4, [20, 20, 10, 10],
                [20, 20, 10, 10]], float)
PRED5 = np.array([[12, 10, 10, 10], [0, 10, 10, 10], [5, 5, 10, 10], [np.nan] * 4,
                  [25, 20, 10, 10]], float)


def test_otb_rule_by_hand():
    r = ev.evaluate_sequence(PRED5, GT5, gt_rule="otb")
    # Frame 1 is scored as the ground truth (IoU 1); frames 2, 3 count with -1; frame 4
    # carries frame 3's box [5,5,10,10]: IoU 0, centres (9.5, 9.5) vs (24.5, 24.5); frame 5:
    # [25,30) vs [20,30) -> 50 / 150.
    np.testing.assert_allclose(r.overlaps, [1, -1, -1, 0, 1 / 3])
    np.testing.assert_allclose(r.center_errors, [0, -1, -1, 15 * np.sqrt(2), 5])
    assert r.num_valid == 5 and r.gt_rule == "otb" and r.num_invalid_pred == 1
    # Every frame in the denominator: overlap > t for t <= 0.30 on frames 1 and 5, then frame
    # 1 only, none at 1.0; -1 errors pass every precision threshold.
    expected_success = np.where(THR < 1 / 3, 0.4, 0.2)
    expected_success[-1] = 0.0
    np.testing.assert_allclose(r.success, expected_success)
    assert r.auc == pytest.approx((7 * 0.4 + 13 * 0.2) / 21)
    assert r.op50 == 0.2 and r.op75 == 0.2
    assert r.precision[0] == 0.6 and r.precision[5] == 0.8 and r.precision20 == 0.8
    assert r.precision[21] == 0.8 and r.precision[22] == 1.0  # 21.21 px


def test_ctjax_rule_on_the_same_case():
    r = ev.evaluate_sequence(PRED5, GT5)
    # Frames 1, 2, 4, 5 are valid: IoU 2/3 (x 12..22 vs 10..20), 1, 0 (lost), 1/3.
    np.testing.assert_allclose(r.overlaps[[0, 1, 3, 4]], [2 / 3, 1, 0, 1 / 3])
    assert np.isnan(r.overlaps[2]) and r.num_valid == 4
    assert r.op50 == 0.5 and r.op75 == 0.25 and r.precision20 == 0.75
    overall = ev.aggregate([r])
    assert overall.gt_rule == "ctjax"
    with pytest.raises(ev.EvaluationError, match="different ground-truth rules"):
        ev.aggregate([r, ev.evaluate_sequence(PRED5, GT5, gt_rule="otb")])
    with pytest.raises(ValueError, match="unknown ground-truth rule"):
        ev.evaluate_sequence(PRED5, GT5, gt_rule="vot")


def test_otb_rule_carries_only_what_the_toolkit_carries():
    gt = np.tile([10.0, 10, 20, 20], (4, 1))
    pred = gt.copy()
    pred[1] = [10, 10, 0, 20]           # w <= 0: carried (frame 1's box)
    pred[2] = [np.nan, 10, 20, 20]      # one NaN only: MATLAB's all-of `if` is false
    gt[3] = [10, 10, np.nan, 20]        # ground truth with a NaN: nothing carried there
    pred[3] = [np.nan] * 4
    r = ev.evaluate_sequence(pred, gt, gt_rule="otb")
    assert r.overlaps[1] == 1.0
    assert np.isnan(r.overlaps[2]) and np.isnan(r.center_errors[2])  # fails every threshold
    assert r.overlaps[3] == -1.0
    assert r.success[0] == 0.5 and r.precision[50] == 0.75


def test_frame_scores_round_trip_and_errors(tmp_path):
    rec = ev.FrameScores(score=np.array([np.nan, 1.0, 0.2]), ok=np.array([True, True, False]),
                         peak=np.array([np.nan, 0.123456789, 0.02]),
                         seconds=np.array([0.5, 0.01, 0.0125]))
    path = ev.write_frame_scores(tmp_path / "a.scores.csv", rec)
    assert path.read_text().splitlines() == [
        "frame,score,ok,peak,seconds", "1,nan,1,nan,0.5", "2,1.0,1,0.123456789,0.01",
        "3,0.2,0,0.02,0.0125"]
    back = ev.read_frame_scores(path, num_frames=3)
    for a, b in zip(back, rec):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ev.ResultFileError, match="holds 3 frames but the sequence has 4"):
        ev.read_frame_scores(path, num_frames=4)
    path.write_text("frame,score,ok,peak,seconds\n1,nan,1,nan,0.5\n3,1,1,1,1\n")
    with pytest.raises(ev.ResultFileError, match="line 3: expected frame 2"):
        ev.read_frame_scores(path)
    path.write_text("x\n")
    with pytest.raises(ev.ResultFileError, match="first line"):
        ev.read_frame_scores(path)
    with pytest.raises(ValueError, match="different lengths"):
        ev.write_frame_scores(path, rec._replace(ok=np.ones(2, bool)))


def test_got10k_and_pysot_layouts(tmp_path):
    boxes = _track(6) + 0.25
    seconds = np.array([0.25, 0.01, 0.011, 0.012, 0.013, 0.0125])
    box_file, time_file = ev.write_got10k_result(tmp_path / "GOT-10k", "ours",
                                                 "GOT-10k_Val_000001", boxes, seconds)
    folder = tmp_path / "GOT-10k" / "ours" / "GOT-10k_Val_000001"
    assert box_file == folder / "GOT-10k_Val_000001_001.txt"
    assert time_file == folder / "GOT-10k_Val_000001_time.txt"
    # As the GOT-10k toolkit reads them (np.loadtxt with delimiter ',').
    np.testing.assert_array_equal(np.loadtxt(box_file, delimiter=","), boxes)
    np.testing.assert_allclose(np.loadtxt(time_file, delimiter=","), seconds, atol=1e-8)
    pysot = ev.write_pysot_result(tmp_path / "OTB100", "ours", "Basketball", boxes)
    assert pysot == tmp_path / "OTB100" / "ours" / "Basketball.txt"
    lines = pysot.read_text().splitlines()
    assert len(lines) == 6 and [float(v) for v in lines[0].split(",")] == list(boxes[0])
    with pytest.raises(ValueError, match="5 frame times for 6 boxes"):
        ev.write_got10k_result(tmp_path, "ours", "x", boxes, seconds[:5])

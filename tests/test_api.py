"""Tests of ctjax.api (the `ctjax.Tracker` object), ctjax.ops.crop.canvas_for and the got10k
adapter (against a stand-in for the toolkit's base class, written here from its source).

Most tests use the `gradhist` preset (no data, compiles in seconds); `feco`, the default, is
exercised by a slow test. Frames of any size are made by placing the shipped demo clip (OTB
Woman, 352x288, with its ground truth) on larger grey frames, so the ground truth moves with it.
"""

import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import ctjax
from ctjax import api, boxes
from ctjax.data import sequences
from ctjax.ops import crop

N = 12
RULE = api.ConfidenceRule(threshold=0.3)   # fixed here, so retuning a preset changes no test


@pytest.fixture(scope="module")
def demo():
    seq = sequences.demo_sequence()
    return [seq.frame(i) for i in range(N)], seq.boxes[:N]


def placed(frames, gt, hw, at):
    """The clip's frames on grey (h, w) frames with their top-left at `at` (y, x)."""
    out = []
    for f in frames:
        big = np.full((*hw, 3), 110, np.uint8)
        big[at[0]:at[0] + f.shape[0], at[1]:at[1] + f.shape[1]] = f
        out.append(big)
    return out, gt + [at[1], at[0], 0, 0]


def run(tracker, frames, box):
    tracker.init(frames[0], box)
    return [tracker.update(f) for f in frames[1:]]


# ----------------------------------------------------------------------------- canvas buckets

@pytest.mark.parametrize("hw, canvas", [
    ((288, 352), (480, 640)), ((480, 640), (480, 640)), ((640, 480), (640, 480)),
    ((481, 500), (720, 1280)), ((720, 1280), (720, 1280)), ((1280, 720), (1280, 720)),
    ((1080, 1920), (1088, 1920)), ((1920, 1080), (1920, 1088)), ((1200, 1200), (1280, 1280)),
    ((2160, 3840), (2304, 3840)), ((1, 1), (480, 640))])
def test_canvas_for(hw, canvas):
    assert crop.canvas_for(hw) == canvas


def test_canvas_for_rejects_bad_sizes():
    for bad in [(0, 10), (10, -1), "ab", (1,)]:
        with pytest.raises(ValueError, match="frame size"):
            crop.canvas_for(bad)


# ----------------------------------------------------------------------------- frames

def test_as_rgb_channel_orders_and_grey():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(api.as_rgb(rgb[..., ::-1], "bgr"), rgb)
    np.testing.assert_array_equal(api.as_rgb(rgb), rgb)
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], axis=2)
    np.testing.assert_array_equal(api.as_rgb(rgba), rgb)
    grey = rgb[..., 0]
    for g in (grey, grey[..., None]):
        np.testing.assert_array_equal(api.as_rgb(g, "bgr"), np.stack([grey] * 3, axis=2))
    np.testing.assert_array_equal(api.as_rgb(Image.fromarray(rgb)), rgb)


@pytest.mark.parametrize("frame, match", [
    (np.zeros((5, 7, 3), np.float32), "uint8"), (np.zeros((5, 7, 2), np.uint8), "shape"),
    (np.zeros((5,), np.uint8), "shape"), (np.zeros((0, 7, 3), np.uint8), "empty")])
def test_as_rgb_rejects_bad_frames(frame, match):
    with pytest.raises(ValueError, match=match):
        api.as_rgb(frame)


# ----------------------------------------------------------------------------- the tracker

def test_any_frame_size_tracks_and_compiles_once_per_bucket(demo):
    frames, gt = demo
    before = dict(api._COMPILED)
    results = {}
    for hw, at in [((1080, 1920), (400, 900)), ((1920, 1080), (1200, 300))]:
        big, big_gt = placed(frames, gt, hw, at)
        tracker = ctjax.Tracker("gradhist", confidence=RULE)
        updates = run(tracker, big, big_gt[0])
        assert tracker.canvas_hw == crop.canvas_for(hw)
        ious = boxes.iou(np.array([u.box for u in updates]), big_gt[1:])
        assert ious.mean() > 0.6 and ious.min() > 0.4, (hw, ious)
        assert all(u.ok for u in updates)
        results[hw] = np.array([u.box for u in updates]) - [at[1], at[0], 0, 0]
        # A second tracker of the same configuration and bucket reuses the compiled steps.
        again = ctjax.Tracker("gradhist", confidence=RULE)
        again.init(big[0], big_gt[0])
        assert again._steps is tracker._steps
    new = set(api._COMPILED) - set(before)
    assert {k[3] for k in new} <= {(1088, 1920), (1920, 1088)}
    assert len([k for k in api._COMPILED if k[0] == "gradhist" and k[3] == (1088, 1920)]) == 1
    # The same content at another place in another frame gives the same track.
    np.testing.assert_allclose(results[(1080, 1920)], results[(1920, 1080)], atol=1e-3)


def test_canvas_size_does_not_change_the_track(demo):
    frames, gt = demo
    small = run(ctjax.Tracker("gradhist"), frames, gt[0])           # 480x640 bucket
    steps = api.compiled_steps("gradhist", canvas_hw=(1088, 1920))   # compiled above
    state = steps.init(steps.built.params, crop.to_canvas(frames[0], (1088, 1920)),
                       np.float32(gt[0]))
    carry = (state, api.confidence.confidence_init(api.DEFAULT_CONFIDENCE.warmup))
    for f, u in zip(frames[1:], small):
        carry, box, *_ = steps.step(steps.built.params, carry, crop.to_canvas(f, (1088, 1920)),
                                    np.float32(0.3))
        np.testing.assert_allclose(box, u.box, atol=1e-4)


def test_bgr_and_grey_frames_give_the_rgb_boxes(demo):
    frames, gt = demo
    frames = frames[:6]
    rgb = run(ctjax.Tracker("cfvggm"), frames, gt[0])                # CNN: colour matters
    bgr = run(ctjax.Tracker("cfvggm", color="bgr"), [f[..., ::-1].copy() for f in frames],
              list(gt[0]))
    for a, b in zip(rgb, bgr):
        np.testing.assert_array_equal(a.box, b.box)
        assert (a.ok, a.score) == (b.ok, b.score)
    # Swapped channels are not silently the same frames: a different track.
    wrong = run(ctjax.Tracker("cfvggm"), [f[..., ::-1].copy() for f in frames], gt[0])
    assert any(not np.array_equal(a.box, b.box) for a, b in zip(rgb, wrong))
    grey = [f[..., 1] for f in frames]
    as_grey = run(ctjax.Tracker("gradhist"), grey, gt[0])
    as_rgb = run(ctjax.Tracker("gradhist"), [np.stack([g] * 3, axis=2) for g in grey], gt[0])
    for a, b in zip(as_grey, as_rgb):
        np.testing.assert_array_equal(a.box, b.box)


def test_update_unpacks_and_flags_a_lost_target(demo):
    frames, gt = demo
    tracker = ctjax.Tracker("gradhist", confidence=RULE)
    tracker.init(frames[0], tuple(gt[0]))
    ok, box, score = tracker.update(frames[1])
    assert ok is True and box.shape == (4,) and box.dtype == np.float64
    assert 0.5 < score < 2.0 and np.isfinite(tracker.last_peak)
    peaks, decisions = [np.nan, tracker.last_peak], [True, ok]
    for f in frames[2:]:
        decisions.append(tracker.update(f).ok)
        peaks.append(tracker.last_peak)
    assert all(decisions)
    gone = np.full_like(frames[0], 110)                              # the target vanished
    for _ in range(3):
        u = tracker.update(gone)
        assert not u.ok and u.score < 0.3
        decisions.append(u.ok)
        peaks.append(tracker.last_peak)
    # The host rule (for result files) reproduces the api's decisions from the raw peaks.
    relative, flags = api.score_flags(peaks, "gradhist", rule=RULE)
    assert list(flags) == decisions and np.isnan(relative[0])


def test_bad_input_errors_name_the_problem(demo):
    frames, gt = demo
    tracker = ctjax.Tracker("gradhist")
    with pytest.raises(RuntimeError, match="init"):
        tracker.update(frames[0])
    for box, match in [((1, 2, 3), "4 numbers|shape"), ((1, 2, np.nan, 4), "NaN"),
                       ((10, 10, -5, 20), "non-positive"), ((900, 900, 5, 5), "outside"),
                       ("a,b,c,d", "numbers")]:
        with pytest.raises(ValueError, match=match):
            tracker.init(frames[0], box)
    with pytest.raises(ValueError, match="uint8"):
        tracker.init(frames[0].astype(np.float32), gt[0])
    tracker.init(frames[0], gt[0])
    with pytest.raises(ValueError, match="initialised on a 288x352"):
        tracker.update(frames[1][:200])
    with pytest.raises(ValueError, match="unknown tracker preset"):
        ctjax.Tracker("no-such-preset")
    with pytest.raises(ValueError, match="color"):
        ctjax.Tracker("gradhist", color="hsv")
    with pytest.raises((ValueError, FileNotFoundError), match="no_such_student"):
        ctjax.Tracker("cfvggm", weights="/nowhere/no_such_student")      # before any frame
    with pytest.raises(ValueError, match="weights must be"):
        ctjax.Tracker("cfvggm", weights=3)


def test_import_ctjax_does_not_import_jax():
    code = ("import sys, ctjax; assert 'jax' not in sys.modules; "
            "ctjax.Tracker; assert 'jax' in sys.modules; print(ctjax.Update._fields)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "('ok', 'box', 'score')"


@pytest.mark.slow
def test_default_preset_tracks_1080p(demo):
    frames, gt = demo
    big, big_gt = placed(frames, gt, (1080, 1920), (300, 700))
    updates = run(ctjax.Tracker(), big, big_gt[0])
    assert boxes.iou(np.array([u.box for u in updates]), big_gt[1:]).mean() > 0.6


# ----------------------------------------------------------------------------- got10k

class FakeGot10kTracker:
    """got10k.trackers.Tracker as in got-10k/toolkit (got10k/trackers/__init__.py), including
    its `track` loop, which opens frames with PIL and discards its own RGB conversion."""

    def __init__(self, name, is_deterministic=False):
        self.name, self.is_deterministic = name, is_deterministic

    def track(self, img_files, box, visualize=False):
        out = np.zeros((len(img_files), 4))
        out[0] = box
        times = np.zeros(len(img_files))
        for f, img_file in enumerate(img_files):
            image = Image.open(img_file)
            if not image.mode == "RGB":
                image.convert("RGB")
            start = time.time()
            if f == 0:
                self.init(image, box)
            else:
                out[f, :] = self.update(image)
            times[f] = time.time() - start
        return out, times


@pytest.fixture
def fake_got10k(monkeypatch):
    package, trackers = type(sys)("got10k"), type(sys)("got10k.trackers")
    trackers.Tracker = FakeGot10kTracker
    package.trackers = trackers
    monkeypatch.setitem(sys.modules, "got10k", package)
    monkeypatch.setitem(sys.modules, "got10k.trackers", trackers)


def test_got10k_tracker_runs_the_toolkit_loop(fake_got10k, demo, tmp_path):
    from ctjax.integrations.got10k import got10k_tracker

    frames, gt = demo
    files = []
    for i, f in enumerate(frames):   # palette PNGs: the toolkit hands them over unconverted
        files.append(tmp_path / f"{i:08d}.png")
        Image.fromarray(f).convert("P", palette=Image.ADAPTIVE, colors=256).save(files[-1])
    decoded = [np.asarray(Image.open(p).convert("RGB")) for p in files]
    tracker = got10k_tracker("gradhist")
    assert isinstance(tracker, FakeGot10kTracker)
    assert (tracker.name, tracker.is_deterministic) == ("ctjax-gradhist", True)
    out, times = tracker.track([str(p) for p in files], gt[0])
    expect = run(ctjax.Tracker("gradhist"), decoded, gt[0])
    np.testing.assert_array_equal(out[0], gt[0])
    np.testing.assert_array_equal(out[1:], np.array([u.box for u in expect]))
    assert times.shape == (N,) and tracker.last_update.box.shape == (4,)


def test_got10k_missing_is_a_clear_import_error(monkeypatch):
    from ctjax.integrations import got10k

    monkeypatch.setitem(sys.modules, "got10k", None)
    monkeypatch.setitem(sys.modules, "got10k.trackers", None)
    with pytest.raises(ImportError, match="pip install got10k"):
        got10k.got10k_tracker("gradhist")


def test_confidence_table_names_real_presets_and_sane_thresholds():
    from ctjax.trackers import presets

    assert set(api.CONFIDENCE) <= set(presets.available())
    for name, rule in api.CONFIDENCE.items():
        assert 0 < rule.threshold < 1 and rule.warmup >= 1 and "train split" in rule.source
    assert api.confidence_rule("no-such-preset") == api.DEFAULT_CONFIDENCE

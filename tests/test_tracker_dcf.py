"""Tests of the DCF tracker (`ctjax.trackers.dcf`), its presets and the host driver:
tracking, compilation, determinism, bad input, and that it is built from the tested ops."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctjax import boxes
from ctjax.boxes import BoxError
from ctjax.features.gradhist import GradientHistogramExtractor
from ctjax.ops import crop, dcf, fourier
from ctjax.ops.crop import to_canvas
from ctjax.trackers import dcf as dcf_tracker
from ctjax.trackers import presets
from ctjax.trackers.dcf import TrackerConfig, make_tracker
from ctjax.trackers.run import compile_tracker, track_frames

SMALL = TrackerConfig(patch_size=96, canvas_hw=(160, 224))


def _texture(rng, h, w, smooth=2):
    img = rng.uniform(0, 255, (h, w, 3))
    for _ in range(smooth):  # cheap blur so gradients are not pure noise
        img = (img + np.roll(img, 1, 0) + np.roll(img, 1, 1) + np.roll(img, (1, 1), (0, 1))) / 4
    return img


def moving_texture_sequence(n=24, hw=(144, 192), size=(24, 32), seed=0):
    """A textured target moving over a textured background; returns frames and true boxes."""
    rng = np.random.default_rng(seed)
    background = _texture(rng, *hw) * 0.5
    target = _texture(rng, *size, smooth=1)
    frames, boxes = [], []
    for t in range(n):
        y = int(50 + 20 * np.sin(t / 5))
        x = int(60 + 2.5 * t)
        frame = background.copy()
        frame[y:y + size[0], x:x + size[1]] = target
        frames.append(frame.astype(np.uint8))
        boxes.append([x + 1, y + 1, size[1], size[0]])  # OTB 1-based
    return frames, np.array(boxes, np.float64)


def _centre_errors(pred, gt):
    c = lambda b: b[:, :2] + (b[:, 2:] - 1) / 2
    return np.linalg.norm(c(pred) - c(gt), axis=1)


@pytest.fixture(scope="module")
def gradhist_tracker():
    extractor = GradientHistogramExtractor()
    tracker = make_tracker(SMALL, extractor)
    return tracker, compile_tracker(tracker, SMALL, {})


def test_the_tracker_is_built_from_the_tested_ops_functions(monkeypatch):
    """init and step call the `ctjax.ops` / `ctjax.boxes` functions the tests cover (no
    private copies): each is replaced by a counting wrapper, then both are traced."""
    targets = [(crop, "sample_window"), (fourier, "sample_periodic"), (fourier, "phase_shift"),
               (fourier, "label_sigma"), (fourier, "gaussian_label"), (fourier, "hann_window"),
               (dcf, "filter_terms"), (dcf, "primal_response"), (dcf, "grid_peak_offset"),
               (dcf, "linear_update"), (boxes, "xywh_to_center_size"),
               (boxes, "center_size_to_xywh")]
    called = set()
    for module, name in targets:
        def wrapper(*args, _fn=getattr(module, name), _key=f"{module.__name__}.{name}", **kw):
            called.add(_key)
            return _fn(*args, **kw)
        monkeypatch.setattr(module, name, wrapper)
    tracker = make_tracker(SMALL, GradientHistogramExtractor())
    frame = to_canvas(np.zeros((100, 120, 3), np.uint8), SMALL.canvas_hw)
    state = jax.eval_shape(tracker.init_fn, {}, frame, jnp.array([20.0, 30, 24, 32]))
    jax.eval_shape(tracker.step_fn, {}, state, frame)
    assert called == {f"{m.__name__}.{n}" for m, n in targets}


def test_tracks_moving_texture_within_a_cell(gradhist_tracker):
    _, compiled = gradhist_tracker
    frames, gt = moving_texture_sequence()
    result = track_frames(compiled, {}, frames, gt[0])
    errors = _centre_errors(result.boxes, gt)
    cell = GradientHistogramExtractor().cell
    assert errors.max() <= cell, errors
    np.testing.assert_allclose(result.boxes[0], gt[0])


def test_step_traces_once_over_many_frames_and_sizes():
    extractor = GradientHistogramExtractor()
    tracker = make_tracker(SMALL, extractor)
    step = jax.jit(chex.assert_max_traces(tracker.step_fn, n=1))
    init = jax.jit(tracker.init_fn)
    frames, gt = moving_texture_sequence(n=12)
    state = init({}, to_canvas(frames[0], SMALL.canvas_hw), jnp.asarray(gt[0], jnp.float32))
    for i, frame in enumerate(frames[1:]):
        if i % 2:  # frames of another size reuse the same compiled step (same canvas)
            frame = frame[:120, :180]
        state, box, score = step({}, state, to_canvas(frame, SMALL.canvas_hw))
    assert np.all(np.isfinite(np.asarray(box)))


def test_results_identical_run_to_run(gradhist_tracker):
    _, compiled = gradhist_tracker
    frames, gt = moving_texture_sequence(n=10, seed=3)
    a = track_frames(compiled, {}, frames, gt[0])
    b = track_frames(compiled, {}, frames, gt[0])
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores[1:], b.scores[1:])


@pytest.mark.parametrize("box, message", [
    ([500, 500, 20, 20], "outside"),
    ([10, 10, 0, 20], "width"),
    ([10, 10, 20, -3], "height"),
    ([np.nan, 10, 20, 20], "NaN|finite"),
])
def test_bad_initial_box_is_a_clear_error(gradhist_tracker, box, message):
    _, compiled = gradhist_tracker
    frames, _ = moving_texture_sequence(n=2)
    with pytest.raises(BoxError, match=message):
        track_frames(compiled, {}, frames, box)


def test_empty_sequence_is_a_clear_error(gradhist_tracker):
    _, compiled = gradhist_tracker
    with pytest.raises(ValueError, match="no frames"):
        track_frames(compiled, {}, [], [1, 1, 5, 5])


def test_missing_weights_are_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights not found"):
        presets.load_student(tmp_path / "nope.mat")
    with pytest.raises(FileNotFoundError, match="weights not found"):
        presets.build("cfvggm", weights=tmp_path / "nope")


def test_presets_registry():
    assert list(presets.PRESETS)[:5] == ["cfvggm", "effnet", "vggm", "cfvggm-random", "gradhist"]
    # Plug-ins: every ctjax/trackers/*_presets.py is imported and its presets listed.
    import pkgutil
    import sys

    import ctjax.trackers
    plugins = [f"ctjax.trackers.{m.name}" for m in pkgutil.iter_modules(ctjax.trackers.__path__)
               if m.name.endswith("_presets")]
    listed = presets.available()
    assert all(p in sys.modules for p in plugins) and set(listed) == set(presets.PRESETS)
    with pytest.raises(ValueError, match="unknown tracker"):
        presets.build("nope")
    with pytest.raises(ValueError, match="already registered"):
        presets.register("gradhist", "again", lambda **kw: None)
    with pytest.raises(ValueError, match="no --weights"):
        presets.build("gradhist", weights="released")
    built = presets.build("gradhist", config=SMALL)
    assert built.name == "gradhist" and built.weights == "none" and built.config is SMALL
    assert isinstance(built.tracker, dcf_tracker.Tracker)


def test_config_rejects_even_scale_count():
    with pytest.raises(ValueError, match="num_scales"):
        TrackerConfig(num_scales=2)


def test_handcrafted_plus_cnn_composite_tracks():
    built = presets.build("cfvggm-random", config=SMALL, with_handcrafted=True)
    assert [l.name for l in built.extractor.layers] == ["gradhist", "conv1", "conv5"]
    compiled = compile_tracker(built.tracker, built.config, built.params)
    frames, gt = moving_texture_sequence(n=8)
    result = track_frames(compiled, built.params, frames, gt[0])
    assert _centre_errors(result.boxes, gt).max() <= 8

"""Tests of the correlation-filter tracker: geometry, compilation, determinism, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctjax.boxes import BoxError
from ctjax.features import cnn as features
from ctjax.trackers import presets
from ctjax.ops.crop import sample_window, to_canvas
from ctjax.trackers.run import compile_tracker, track_frames
from ctjax.trackers.dcf import (TrackerConfig, _sample_periodic, box_to_center_size,
                                center_size_to_box, make_tracker)

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
    extractor = features.GradientHistogramExtractor()
    tracker = make_tracker(SMALL, extractor)
    return tracker, compile_tracker(tracker, SMALL, {})


def test_box_conversion_round_trip():
    box = jnp.array([10.0, 20.0, 31.0, 40.0])
    center, size = box_to_center_size(box)
    np.testing.assert_allclose(center, [20 - 1 + 39 / 2, 10 - 1 + 30 / 2])
    np.testing.assert_allclose(center_size_to_box(center, size), box, rtol=1e-6)


def test_sample_window_identity_and_border():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    frame = to_canvas(image, (64, 64))
    # A 16-px window at the same resolution reproduces the pixels exactly.
    patch = sample_window(frame, jnp.array([19.5, 24.5]), 16.0, out=16, antialias=1)
    np.testing.assert_allclose(patch, image[12:28, 17:33], atol=1e-4)
    # Outside the frame the border is replicated, never the canvas padding.
    patch = sample_window(frame, jnp.array([0.0, 49.0]), 8.0, out=8, antialias=1)
    np.testing.assert_allclose(patch[0, -1], image[0, -1], atol=1e-4)


def test_sample_periodic_hits_samples_and_interpolates_cosines():
    h = w = 12
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    r = np.cos(2 * np.pi * 2 * yy / h) + np.sin(2 * np.pi * 1 * xx / w)
    u = jnp.array([0.0, 3.0, 2.5, -1.25])
    out = _sample_periodic(jnp.asarray(r[None], jnp.float32), u, u)[0]
    expect = np.cos(2 * np.pi * 2 * u[:, None] / h) + np.sin(2 * np.pi * u[None, :] / w)
    np.testing.assert_allclose(out, expect, atol=1e-4)


def test_tracks_moving_texture_within_a_cell(gradhist_tracker):
    _, compiled = gradhist_tracker
    frames, gt = moving_texture_sequence()
    result = track_frames(compiled, {}, frames, gt[0])
    errors = _centre_errors(result.boxes, gt)
    cell = features.GradientHistogramExtractor().cell
    assert errors.max() <= cell, errors
    np.testing.assert_allclose(result.boxes[0], gt[0])


def test_step_traces_once_over_many_frames_and_sizes():
    extractor = features.GradientHistogramExtractor()
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


def test_frame_larger_than_canvas_is_rejected():
    with pytest.raises(ValueError, match="larger than the tracker canvas"):
        to_canvas(np.zeros((300, 300, 3), np.uint8), (160, 224))
    with pytest.raises(ValueError, match="uint8"):
        to_canvas(np.zeros((30, 30, 3), np.float32), (160, 224))


def test_empty_sequence_is_a_clear_error(gradhist_tracker):
    _, compiled = gradhist_tracker
    with pytest.raises(ValueError, match="no frames"):
        track_frames(compiled, {}, [], [1, 1, 5, 5])


def test_missing_weights_are_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights not found"):
        presets.load_student(tmp_path / "nope.mat")


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

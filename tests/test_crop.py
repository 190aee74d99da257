"""Tests for ctjax.ops.crop: geometry, border replication, rectangular windows, and that the
distillation pairs are cut by the trackers' own crop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctjax import boxes
from ctjax.data import pairs, sequences
from ctjax.ops import crop


def _reference(image, center, window_hw, out_hw, antialias):
    """NumPy float64: average over antialias² taps of bilinear samples, border replicated."""
    def coords(c, window, out):
        step = window / out
        base = (np.arange(out) + 0.5) * step - window / 2
        taps = (np.arange(antialias) + 0.5) / antialias - 0.5
        return [c + base + max(step - 1.0, 0.0) * t for t in taps]

    def bilinear(ys, xs):
        h, w = image.shape[:2]
        ys, xs = np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)
        y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
        y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
        wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
        img = image.astype(np.float64)
        top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
        bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
        return top * (1 - wy) + bottom * wy

    rows = coords(center[0], window_hw[0], out_hw[0])
    cols = coords(center[1], window_hw[1], out_hw[1])
    return np.mean([bilinear(r, c) for r in rows for c in cols], axis=0)


def test_sample_window_identity_and_border():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    frame = crop.to_canvas(image, (64, 64))
    # A 16-px window at the same resolution reproduces the pixels exactly.
    patch = crop.sample_window(frame, jnp.array([19.5, 24.5]), 16.0, out=16, antialias=1)
    np.testing.assert_allclose(patch, image[12:28, 17:33], atol=1e-4)
    # Outside the frame the border is replicated, never the canvas padding.
    patch = crop.sample_window(frame, jnp.array([0.0, 49.0]), 8.0, out=8, antialias=1)
    np.testing.assert_allclose(patch[0, -1], image[0, -1], atol=1e-4)


@pytest.mark.parametrize("window, out, antialias", [
    ((30.0, 52.0), (12, 20), 2), ((9.5, 9.5), (16, 8), 1), ((61.0, 17.0), (10, 10), 3)])
def test_rectangular_window_matches_numpy_reference(window, out, antialias):
    image = np.random.default_rng(2).integers(0, 255, (45, 70, 3), dtype=np.uint8)
    frame = crop.to_canvas(image, (64, 96))
    center = np.array([20.3, 33.7])
    patch = jax.jit(crop.sample_window, static_argnames=("out", "antialias"))(
        frame, jnp.asarray(center, jnp.float32), jnp.asarray(window, jnp.float32), out=out,
        antialias=antialias)
    assert patch.shape == (*out, 3) and patch.dtype == jnp.float32
    np.testing.assert_allclose(patch, _reference(image, center, window, out, antialias),
                               atol=2e-3)


def test_square_calls_are_bit_identical_in_every_form():
    image = np.random.default_rng(3).integers(0, 255, (80, 90, 3), dtype=np.uint8)
    frame = crop.to_canvas(image, (96, 96))
    center = jnp.array([31.2, 47.9])
    fn = jax.jit(crop.sample_window, static_argnames=("out", "antialias"))
    square = fn(frame, center, jnp.float32(57.3), out=24, antialias=2)
    np.testing.assert_allclose(square, _reference(image, np.asarray(center), (57.3, 57.3),
                                                  (24, 24), 2), atol=2e-3)
    for window in (jnp.array([57.3, 57.3]), jnp.float32(57.3)):
        for out in (24, (24, 24)):
            np.testing.assert_array_equal(fn(frame, center, window, out=out, antialias=2), square)


def test_to_canvas_rejects_large_and_non_uint8_frames():
    with pytest.raises(ValueError, match="larger than the tracker canvas"):
        crop.to_canvas(np.zeros((300, 300, 3), np.uint8), (160, 224))
    with pytest.raises(ValueError, match="uint8"):
        crop.to_canvas(np.zeros((30, 30, 3), np.float32), (160, 224))


def test_training_crop_is_the_tracker_crop_on_a_real_frame():
    """The distillation pair sampler cuts its crops with the trackers' function: on a real
    frame (the shipped demo clip, OTB Woman) its template crop equals the tracker's window
    around the same box, rounded to uint8."""
    seq = sequences.demo_sequence()
    image = seq.frame(0)
    config = pairs.PairConfig(crop_size=160, context=4.5, antialias=2)
    sampler = pairs.PairSampler(pairs.SequenceFrames([seq]), config)
    training = sampler._crop(0, 0, (0, 0))
    # The tracker's window: centre and side from the same box, in float32 (dcf.init).
    center, size = boxes.xywh_to_center_size(jnp.asarray(seq.boxes[0], jnp.float32))
    window = config.context * jnp.sqrt(size[0] * size[1])
    tracker = crop.sample_window(crop.to_canvas(image, (720, 1280)), center, window,
                                 out=config.crop_size, antialias=config.antialias)
    assert training.shape == tracker.shape and training.dtype == np.uint8
    diff = np.abs(training.astype(np.float32) - np.asarray(tracker))
    # Rounding to uint8 (<= 0.5), plus the sampler's float64 box geometry vs the tracker's
    # float32 (a few 1e-3 grey levels).
    assert diff.max() <= 0.51 and diff.mean() < 0.26, (diff.max(), diff.mean())
    # Same centre and window in: identical bytes out, whatever the canvas.
    same = pairs.crop_window(image, np.asarray(center), float(window), out=160, antialias=2)
    np.testing.assert_array_equal(same, np.clip(np.rint(np.asarray(tracker)), 0, 255))

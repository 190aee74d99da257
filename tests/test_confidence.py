"""Tests of ctjax.ops.confidence against NumPy re-derivations written here."""

import jax
import numpy as np
import pytest

from ctjax.ops import confidence


def _psr_numpy(r, exclude=11):
    """MOSSE's PSR by brute force: mask a wrapped window around the argmax, float64."""
    h, w = r.shape
    py, px = np.unravel_index(np.argmax(r), r.shape)
    mask = np.ones((h, w), bool)
    half = exclude // 2
    for dy in range(-half, half + 1):
        for dx in range(-half, half + 1):
            mask[(py + dy) % h, (px + dx) % w] = False
    side = r[mask].astype(np.float64)
    return (r.max() - side.mean()) / side.std()


def _apce_numpy(r):
    r = r.astype(np.float64)
    return (r.max() - r.min()) ** 2 / np.mean((r - r.min()) ** 2)


@pytest.mark.parametrize("peak_at", [(20, 30), (0, 0), (47, 1)])
def test_psr_and_apce_match_numpy(peak_at):
    rng = np.random.default_rng(sum(peak_at))
    r = rng.normal(0, 0.1, (48, 64)).astype(np.float32)
    r[peak_at] = 3.0                  # a peak at the border tests the wrapped window
    np.testing.assert_allclose(confidence.psr(r), _psr_numpy(r), rtol=1e-4)
    np.testing.assert_allclose(confidence.apce(r), _apce_numpy(r), rtol=1e-4)
    batch = np.stack([r, r[::-1]])
    np.testing.assert_allclose(confidence.psr(batch), [_psr_numpy(b) for b in batch], rtol=1e-4)


def test_sharp_peak_scores_higher_than_flat_or_twin_peaks():
    y, x = np.mgrid[:50, :50]
    sharp = np.exp(-((y - 25) ** 2 + (x - 25) ** 2) / 8.0).astype(np.float32)
    twin = sharp + np.roll(sharp, 20, axis=1)
    noise = np.random.default_rng(0).normal(0, 0.05, (50, 50)).astype(np.float32)
    assert confidence.psr(sharp + noise) > 1.5 * confidence.psr(twin + noise)
    assert confidence.apce(sharp + noise) > 1.1 * confidence.apce(twin + noise)


def _rule_numpy(scores, warmup, threshold):
    """The rule spelled out: reference = median of the first min(k, warmup) scores."""
    rel, ok = [], []
    for k in range(1, len(scores) + 1):
        ref = float(np.median(scores[:min(k, warmup)]))
        rel.append(scores[k - 1] / ref)
        ok.append(rel[-1] >= threshold)
    return np.array(rel), np.array(ok)


def test_step_rule_matches_numpy_and_host_version():
    rng = np.random.default_rng(3)
    scores = np.concatenate([rng.uniform(0.8, 1.2, 15), [0.2, 0.1], rng.uniform(0.8, 1.2, 5)])
    scores = scores.astype(np.float32)
    ref_rel, ref_ok = _rule_numpy(scores.astype(np.float64), 10, 0.5)
    step = jax.jit(confidence.confidence_step)
    state = confidence.confidence_init(10)
    rel, ok = [], []
    for s in scores:
        state, r, o = step(state, s, np.float32(0.5))
        rel.append(float(r))
        ok.append(bool(o))
    np.testing.assert_allclose(rel, ref_rel, rtol=1e-5)
    assert ok == list(ref_ok) and ok[15:17] == [False, False] and all(ok[:15])
    host = confidence.relative_scores(np.concatenate([[np.nan], scores]), warmup=10)
    assert np.isnan(host[0])
    np.testing.assert_allclose(host[1:], ref_rel, rtol=1e-5)
    assert int(state.count) == 10


def test_non_positive_reference_gives_zero_and_warmup_checked():
    state = confidence.confidence_init(3)
    state, rel, ok = confidence.confidence_step(state, np.float32(-1.0), np.float32(0.5))
    assert float(rel) == 0.0 and not bool(ok)
    with pytest.raises(ValueError, match="warmup"):
        confidence.confidence_init(0)


def test_lost_precision_recall_counts():
    ok = np.array([True, False, False, True, False, True])
    iou = np.array([0.7, 0.0, 0.4, 0.0, np.nan, 0.0])
    p, r, n_flagged, n_lost = confidence.lost_precision_recall(ok, iou)
    # flagged with ground truth: frames 1, 2 (frame 4 has none); lost: 1, 3, 5.
    assert (n_flagged, n_lost) == (2, 3)
    assert p == pytest.approx(0.5) and r == pytest.approx(1 / 3)

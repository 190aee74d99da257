"""Tracking confidence: response-map sharpness measures and a lost/ok rule on the step's score.

Two families of measures:

* **Response-map measures** (need the correlation response itself): the peak-to-sidelobe
  ratio `psr` of MOSSE (Bolme et al., "Visual Object Tracking using Adaptive Correlation
  Filters", CVPR 2010: (peak - mean of the sidelobe) / std of the sidelobe, the sidelobe being
  the map without an 11 x 11 window around the peak) and the average peak-to-correlation
  energy `apce` of LMCF (Wang, Liu, Huang, "Large Margin Object Tracking with Circulant
  Feature Maps", CVPR 2017: |max - min|^2 / mean((F - min)^2)).
* **A score rule** (needs only the scalar each tracker step returns, its response peak): the
  score relative to the median of the scores of the first `warmup` tracked frames, and
  `ok = relative >= threshold`. Response peaks have no absolute scale (they depend on the
  features, the target and the filter's regularisation), but a lost or occluded target drops
  its peak well below the peaks the same filter gave while it was tracking (the reasoning
  behind LMCF's and MOSSE's thresholds, applied to the peak the trackers expose). Thresholds
  are calibrated per tracker preset on the train split (`ctjax.api.CONFIDENCE`).

`confidence_init` / `confidence_step` are the rule as a pure `(init, step)` pair over a
NamedTuple state, jit-compatible, composed into a tracker's jitted step (`ctjax.api`);
`relative_scores` is the same rule over a whole sequence of scores on the host (NumPy), for
result files written after tracking. Response maps are (..., H, W) real arrays in the spatial
domain; scores are float32.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

__all__ = ["ConfidenceState", "apce", "confidence_init", "confidence_step", "psr",
           "relative_scores", "lost_precision_recall"]

_TINY = 1e-12


def psr(response, *, exclude: int = 11):
    """Peak-to-sidelobe ratio of a response map (MOSSE, Bolme et al. 2010).

    Args:
      response: (..., H, W) real response map(s), spatial domain.
      exclude: static side of the square window around the peak left out of the sidelobe
        (MOSSE: 11); the window wraps around the borders, as the map is periodic.

    Returns:
      (...) float32 `(peak - mean(sidelobe)) / std(sidelobe)`.
    """
    response = jnp.asarray(response, jnp.float32)
    h, w = response.shape[-2:]
    flat = response.reshape(*response.shape[:-2], h * w)
    idx = jnp.argmax(flat, axis=-1)
    py, px = idx // w, idx % w
    half = exclude // 2
    dy = (jnp.arange(h) - py[..., None] + h // 2) % h - h // 2      # wrapped distances
    dx = (jnp.arange(w) - px[..., None] + w // 2) % w - w // 2
    near = (jnp.abs(dy)[..., :, None] <= half) & (jnp.abs(dx)[..., None, :] <= half)
    side = ~near
    n = jnp.maximum(side.sum(axis=(-2, -1)), 1)
    mean = jnp.where(side, response, 0.0).sum(axis=(-2, -1)) / n
    var = jnp.where(side, (response - mean[..., None, None]) ** 2, 0.0).sum(axis=(-2, -1)) / n
    peak = jnp.max(flat, axis=-1)
    return (peak - mean) / jnp.sqrt(jnp.maximum(var, _TINY))


def apce(response):
    """Average peak-to-correlation energy of a response map (LMCF, Wang et al. 2017).

    Args:
      response: (..., H, W) real response map(s), spatial domain.

    Returns:
      (...) float32 `|max - min|^2 / mean((F - min)^2)`; large for one sharp peak, small for
      a flat or multi-modal map.
    """
    response = jnp.asarray(response, jnp.float32)
    hi = jnp.max(response, axis=(-2, -1))
    lo = jnp.min(response, axis=(-2, -1))
    energy = jnp.mean((response - lo[..., None, None]) ** 2, axis=(-2, -1))
    return (hi - lo) ** 2 / jnp.maximum(energy, _TINY)


class ConfidenceState(NamedTuple):
    """The score rule's memory.

    Attributes:
      history: (warmup,) float32 scores of the first tracked frames, NaN where not seen yet.
      count: () int32 number of tracked frames seen (saturates at warmup).
    """
    history: jnp.ndarray
    count: jnp.ndarray


def confidence_init(warmup: int) -> ConfidenceState:
    """An empty rule state remembering the first `warmup` (static, >= 1) scores."""
    if warmup < 1:
        raise ValueError(f"warmup must be at least 1 frame, got {warmup}")
    return ConfidenceState(history=jnp.full((int(warmup),), jnp.nan, jnp.float32),
                           count=jnp.zeros((), jnp.int32))


def confidence_step(state: ConfidenceState, score, threshold):
    """Scores one tracked frame against the median of the first tracked frames.

    Args:
      state: from `confidence_init` or the previous call.
      score: () float32, the tracker step's score (the response peak).
      threshold: () float32; the frame is ok when `score / reference >= threshold`.

    Returns:
      `(state, relative, ok)`: the new state; () float32 `score / reference`, where the
      reference is the median of the scores of the first `warmup` tracked frames (this frame
      included while fewer have been seen; a non-positive reference gives 0); () bool ok.
    """
    warmup = state.history.shape[0]
    score = jnp.asarray(score, jnp.float32)
    history = jnp.where((jnp.arange(warmup) == state.count) & (state.count < warmup), score,
                        state.history)
    reference = jnp.nanmedian(history)
    relative = jnp.where(reference > 0, score / jnp.maximum(reference, _TINY), 0.0)
    new = ConfidenceState(history=history, count=jnp.minimum(state.count + 1, warmup))
    return new, relative, relative >= threshold


def relative_scores(scores, *, warmup: int) -> np.ndarray:
    """`confidence_step`'s relative score over a whole sequence, on the host.

    Args:
      scores: (N,) scores of one tracked sequence in frame order; a NaN first entry (the
        init frame, as `ctjax.trackers.run.TrackResult.scores` has it) is skipped.
      warmup: frames whose median is the reference.

    Returns:
      (N,) float64 relative scores (NaN where the score is NaN); `relative >= threshold` is
      the ok decision.
    """
    s = np.asarray(scores, np.float64)
    out = np.full(s.shape, np.nan)
    first = 1 if s.size and np.isnan(s[0]) else 0
    tracked = s[first:]
    for i, value in enumerate(tracked):
        reference = np.median(tracked[:min(i + 1, warmup)])
        out[first + i] = value / reference if reference > 0 else 0.0
    return out


def lost_precision_recall(ok, iou) -> tuple[float, float, int, int]:
    """How well `ok=False` predicts a lost target (IoU = 0) over frames with ground truth.

    Args:
      ok: (N,) bool decisions.
      iou: (N,) IoU with the ground truth; NaN frames (no ground truth) are ignored.

    Returns:
      `(precision, recall, n_flagged, n_lost)`: precision = P(IoU = 0 | ok=False), recall =
      P(ok=False | IoU = 0) (NaN when undefined), and the two counts.
    """
    ok = np.asarray(ok, bool)
    iou = np.asarray(iou, np.float64)
    valid = ~np.isnan(iou)
    flagged, lost = ~ok & valid, (iou == 0) & valid
    hits = int((flagged & lost).sum())
    n_flagged, n_lost = int(flagged.sum()), int(lost.sum())
    precision = hits / n_flagged if n_flagged else float("nan")
    recall = hits / n_lost if n_lost else float("nan")
    return precision, recall, n_flagged, n_lost

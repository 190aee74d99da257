"""Tracker families, one module each (`dcf`, ...), every one a pure
`make_tracker(config, extractor) -> Tracker(init_fn, step_fn)` over its own NamedTuple state,
built from small module-level functions. `presets` names concrete trackers (features, weights,
settings) and `run` is the one host driver that times any of them over a sequence.

Trackers read students through `ctjax.models`; they never import `ctjax.distill`.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Tracker(NamedTuple):
    """A tracker as two pure functions, jitted once by the caller (`ctjax.trackers.run`).

    Attributes:
      init_fn: `init_fn(params, frame, box) -> state`; `frame` a `ctjax.ops.crop.Frame`,
        `box` (4,) float32 OTB x,y,w,h (1-based).
      step_fn: `step_fn(params, state, frame) -> (state, box, score)`; `box` (4,) float32
        OTB x,y,w,h, `score` a float32 scalar (the peak of the response).
    """
    init_fn: Any
    step_fn: Any

"""Host-side driver: runs any jitted `Tracker` over a sequence and times it honestly.

Works for every tracker family whose `init_fn(params, frame, box) -> state` and
`step_fn(params, state, frame) -> (state, box, score)` take a `ctjax.ops.crop.Frame` canvas
and whose config has a static `canvas_hw`.

The step is compiled ahead of time (`jax.jit(...).lower(...).compile()`) before the first
frame, so compile time is measured and reported separately and can never leak into the
per-frame times. A frame's time covers putting the decoded frame on the canvas, the
jitted step (crop, features, filters, update) and bringing the box back to the host; JPEG
decoding is timed separately (`decode_seconds`) because it depends on the disk and codec,
not on the tracker. Only the box and the score come back to the host each frame.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterable

import jax
import numpy as np

from ctjax.boxes import validate_box
from ctjax.ops.crop import to_canvas
from ctjax.trackers import Tracker


@dataclasses.dataclass(frozen=True)
class TrackResult:
    """Output of one tracked sequence.

    Attributes:
      boxes: (N, 4) float64 OTB x,y,w,h (1-based); row 0 is the initial box.
      scores: (N,) float32 peak of the fused response (row 0 is NaN).
      frame_seconds: (N,) time per frame excluding decoding; row 0 is the init frame.
      decode_seconds: (N,) JPEG/video decode time per frame.
      compile_seconds: time to compile init and step (once per configuration).
    """
    boxes: np.ndarray
    scores: np.ndarray
    frame_seconds: np.ndarray
    decode_seconds: np.ndarray
    compile_seconds: float

    @property
    def fps(self) -> float:
        """Frames per second over the tracked frames (init frame excluded), decode excluded."""
        steps = self.frame_seconds[1:]
        return float(len(steps) / steps.sum()) if len(steps) else float("nan")


@dataclasses.dataclass
class CompiledTracker:
    """Compiled init and step for one (config, extractor, canvas) combination."""
    init: Callable
    step: Callable
    config: Any
    compile_seconds: float


def compile_tracker(tracker: Tracker, config, params) -> CompiledTracker:
    """AOT-compiles `tracker` for the params' structure and the config's canvas.

    Args:
      tracker: any `Tracker`.
      config: its config; only `config.canvas_hw` (static frame canvas) is read here.
      params: the params pytree the tracker will be called with.
    """
    frame = to_canvas(np.zeros((8, 8, 3), np.uint8), config.canvas_hw)
    box = np.array([1, 1, 4, 4], np.float32)
    t0 = time.perf_counter()
    init = jax.jit(tracker.init_fn).lower(params, frame, box).compile()
    state = jax.eval_shape(tracker.init_fn, params, frame, box)
    step = jax.jit(tracker.step_fn).lower(params, state, frame).compile()
    return CompiledTracker(init, step, config, time.perf_counter() - t0)


def timed_loop(frames: Iterable[np.ndarray], init: Callable, step: Callable, init_box, *,
               progress: Callable[[int], None] | None = None,
               compile_seconds: float = 0.0) -> TrackResult:
    """Runs `init(image)` on the first frame and `step(image) -> (box, score)` on the rest.

    Times each call (decoding excluded, timed separately) and collects the boxes; shared
    by the JAX trackers and the OpenCV baseline so both are timed the same way.
    """
    boxes, scores, times, decodes = [], [], [], []
    it = iter(frames)
    while True:
        t0 = time.perf_counter()
        try:
            image = next(it)
        except StopIteration:
            break
        t1 = time.perf_counter()
        if not boxes:
            init(image)
            box, score = np.asarray(init_box, np.float64), np.nan
        else:
            box, score = step(image)
        t2 = time.perf_counter()
        boxes.append(np.asarray(box, np.float64))
        scores.append(score)
        decodes.append(t1 - t0)
        times.append(t2 - t1)
        if progress is not None:
            progress(len(boxes))
    if not boxes:
        raise ValueError("the sequence has no frames")
    return TrackResult(boxes=np.stack(boxes), scores=np.asarray(scores, np.float32),
                       frame_seconds=np.asarray(times), decode_seconds=np.asarray(decodes),
                       compile_seconds=compile_seconds)


def track_frames(compiled: CompiledTracker, params, frames: Iterable[np.ndarray], init_box,
                 *, progress: Callable[[int], None] | None = None) -> TrackResult:
    """Tracks an iterable of (H, W, 3) uint8 RGB frames from `init_box` (x,y,w,h, 1-based).

    Args:
      compiled: from `compile_tracker`.
      params: the extractor's params pytree.
      frames: decoded lazily; the first is the init frame.
      init_box: (4,) initial box; `ctjax.boxes.BoxError` if it is not a valid box inside the
        first frame.
      progress: called with the number of frames done.
    """
    canvas = compiled.config.canvas_hw
    state = {}

    def init(image):
        box = validate_box(init_box, image.shape[:2])
        state["s"] = compiled.init(params, to_canvas(image, canvas), np.asarray(box, np.float32))
        jax.block_until_ready(state["s"])

    def step(image):
        state["s"], box, score = compiled.step(params, state["s"], to_canvas(image, canvas))
        return np.asarray(box, np.float64), float(score)

    return timed_loop(frames, init, step, init_box, progress=progress,
                      compile_seconds=compiled.compile_seconds)

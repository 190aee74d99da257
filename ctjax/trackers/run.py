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

Before a frame reaches a tracker it is checked (outside the timed part): (H, W, 3) uint8,
and the first frame's size throughout; a frame of another size is a `FrameError` naming its
index, since the tracker's boxes would silently be in the wrong coordinates. `check_outputs`
checks the output files of a run before any frame is tracked.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import jax
import numpy as np

from ctjax import paths
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


# What `ctjax.visualize.write_annotated` can write: GIF with Pillow, the rest with imageio's
# ffmpeg plugin (pip install 'ctjax[video]').
VIDEO_SUFFIXES = (".gif", ".mp4", ".avi", ".mov", ".mkv", ".webm")


class FrameError(ValueError):
    """A frame given to a tracker is not (H, W, 3) uint8, or its size differs from the first."""


def check_frame(image, index: int, first_hw: tuple[int, int] | None) -> np.ndarray:
    """Checks frame `index` of a stream: (H, W, 3) uint8 and, after the first, of size
    `first_hw`; returns it as an array or raises `FrameError` naming the frame."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise FrameError(f"frame {index}: expected an (H, W, 3) uint8 RGB image, got shape "
                         f"{image.shape} dtype {image.dtype}")
    if first_hw is not None and image.shape[:2] != tuple(first_hw):
        raise FrameError(
            f"frame {index} is {image.shape[1]}x{image.shape[0]} (WxH) but frame 0 is "
            f"{first_hw[1]}x{first_hw[0]}; frame sizes must not change within a sequence")
    return image


def check_outputs(boxes_path=None, video_path=None) -> None:
    """Checks a run's outputs before any frame is tracked, so that a bad path fails at once.

    Args:
      boxes_path: the box file to write (`ctjax track --output`), or None.
      video_path: the annotated video to write (`--video`), or None: its suffix must be one
        of `VIDEO_SUFFIXES` and, for all but `.gif`, imageio with ffmpeg must be installed.

    Raises:
      ValueError: an unknown video suffix, or both outputs are the same file.
      ImportError: the video needs imageio / imageio-ffmpeg, which are missing.
      OSError: a path is a folder, or its folder cannot be created or written.
    """
    if boxes_path is not None:
        paths.check_writable(boxes_path, "box file")
    if video_path is None:
        return
    video = Path(video_path)
    if video.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"video {video}: unknown suffix {video.suffix or '(none)'!r}; use one "
                         f"of {', '.join(VIDEO_SUFFIXES)}")
    if video.suffix.lower() != ".gif" and not all(
            importlib.util.find_spec(m) for m in ("imageio", "imageio_ffmpeg")):
        raise ImportError(f"writing {video.suffix} video needs imageio and imageio-ffmpeg: "
                          "pip install 'ctjax[video]' (or write a .gif)")
    if boxes_path is not None and video.resolve() == Path(boxes_path).resolve():
        raise ValueError(f"the box file and the video are the same file {video}")
    paths.check_writable(video, "video")


def timed_loop(frames: Iterable[np.ndarray], init: Callable, step: Callable, init_box, *,
               progress: Callable[[int], None] | None = None,
               compile_seconds: float = 0.0) -> TrackResult:
    """Runs `init(image)` on the first frame and `step(image) -> (box, score)` on the rest.

    Times each call (decoding and `check_frame` excluded, timed separately) and collects the
    boxes; shared by the JAX trackers and the OpenCV baseline so both are timed the same way.

    Raises:
      FrameError: a frame is not (H, W, 3) uint8 or its size differs from the first frame's.
      ValueError: there is no frame.
    """
    boxes, scores, times, decodes = [], [], [], []
    it = iter(frames)
    first_hw = None
    while True:
        t0 = time.perf_counter()
        try:
            image = next(it)
        except StopIteration:
            break
        image = check_frame(image, len(boxes), first_hw)
        first_hw = image.shape[:2]
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

"""OpenCV's CSRT tracker (opencv-contrib), the classic baseline of the evaluation.

Run single-threaded (`cv2.setNumThreads(1)`) through the same `TrackResult` as the JAX
trackers so the evaluation code treats both alike. OpenCV boxes are 0-based (x, y, w, h);
OTB boxes are 1-based, so x and y shift by one. Install with `pip install ctjax[baselines]`.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from ctjax.trackers.run import TrackResult, timed_loop


def _cv2():
    try:
        import cv2
    except ImportError as err:
        raise ImportError("the CSRT baseline needs OpenCV: pip install 'ctjax[baselines]'") from err
    if not hasattr(cv2, "TrackerCSRT"):
        raise ImportError("this OpenCV build has no CSRT tracker: install opencv-contrib-python-headless")
    cv2.setNumThreads(1)
    return cv2


def track_frames_csrt(frames: Iterable[np.ndarray], init_box, *,
                      progress: Callable[[int], None] | None = None) -> TrackResult:
    """Tracks (H, W, 3) uint8 RGB frames with OpenCV CSRT from an OTB box (1-based)."""
    cv2 = _cv2()
    tracker = cv2.TrackerCSRT.create()
    last = {"box": np.asarray(init_box, np.float64)}

    def init(image):
        x, y, w, h = last["box"]
        tracker.init(np.ascontiguousarray(image[..., ::-1]),
                     (int(round(x - 1)), int(round(y - 1)), int(round(w)), int(round(h))))

    def step(image):
        ok, rect = tracker.update(np.ascontiguousarray(image[..., ::-1]))
        if ok:  # on failure CSRT reports no box: keep the previous one (OTB rule)
            last["box"] = np.array([rect[0] + 1, rect[1] + 1, rect[2], rect[3]], np.float64)
        return last["box"], np.nan

    return timed_loop(frames, init, step, init_box, progress=progress)

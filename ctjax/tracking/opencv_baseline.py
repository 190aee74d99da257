"""OpenCV's CSRT tracker (opencv-contrib), the classic baseline of the evaluation.

Run single-threaded (`cv2.setNumThreads(1)`) through the same `TrackResult` as the JAX
trackers so the evaluation code treats both alike. OpenCV boxes are 0-based (x, y, w, h);
OTB boxes are 1-based, so x and y shift by one. Install with `pip install ctjax[baselines]`.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

import numpy as np

from ctjax.tracking.run import TrackResult


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
    box = np.asarray(init_box, np.float64)
    boxes, times, decodes = [], [], []
    it = iter(frames)
    while True:
        t0 = time.perf_counter()
        try:
            image = next(it)
        except StopIteration:
            break
        t1 = time.perf_counter()
        bgr = np.ascontiguousarray(image[..., ::-1])
        if not boxes:
            x, y, w, h = box
            tracker.init(bgr, (int(round(x - 1)), int(round(y - 1)), int(round(w)), int(round(h))))
        else:
            ok, rect = tracker.update(bgr)
            if ok:  # on failure CSRT reports no box: keep the previous one (OTB rule)
                box = np.array([rect[0] + 1, rect[1] + 1, rect[2], rect[3]], np.float64)
        t2 = time.perf_counter()
        boxes.append(box.copy())
        times.append(t2 - t1)
        decodes.append(t1 - t0)
        if progress is not None:
            progress(len(boxes))
    if not boxes:
        raise ValueError("the sequence has no frames")
    return TrackResult(boxes=np.stack(boxes), scores=np.full(len(boxes), np.nan, np.float32),
                       frame_seconds=np.asarray(times), decode_seconds=np.asarray(decodes),
                       compile_seconds=0.0)

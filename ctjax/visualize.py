"""Annotated tracking videos: predicted (green) and ground-truth (red) boxes on the frames.

`.gif` is written with Pillow (frames downscaled to at most `max_side` px); other suffixes
(`.mp4`, ...) need imageio with ffmpeg (`pip install ctjax[video]`). Boxes are OTB x,y,w,h,
1-based.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw


def draw_boxes(frame: np.ndarray, boxes: dict[str, np.ndarray], *, scale: float = 1.0) -> Image.Image:
    """Draws {colour: box} on an (H, W, 3) uint8 frame, resized by `scale`."""
    image = Image.fromarray(frame)
    if scale != 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    draw = ImageDraw.Draw(image)
    for colour, box in boxes.items():
        if box is None or not np.all(np.isfinite(box)):
            continue
        x, y, w, h = (np.asarray(box, np.float64) - [1, 1, 0, 0]) * scale
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=colour, width=2)
    return image


def write_annotated(path, frames: Iterable[np.ndarray], boxes: np.ndarray, *,
                    ground_truth: np.ndarray | None = None, fps: float = 25.0,
                    max_side: int = 360) -> Path:
    """Writes an annotated video or GIF of a tracked sequence and returns its path.

    Video (any suffix but `.gif`, through imageio with `ctjax[video]`) is written one frame at a
    time, so a long video is never held in memory; a GIF is assembled in memory from frames
    shrunk to `max_side` pixels.
    """
    path = Path(path)
    gif = path.suffix == ".gif"

    def annotated():
        for i, frame in enumerate(frames):
            scale = min(1.0, max_side / max(frame.shape[:2])) if gif else 1.0
            marks = {"lime": boxes[i]}
            if ground_truth is not None and i < len(ground_truth):
                marks["red"] = ground_truth[i]
            yield draw_boxes(frame, marks, scale=scale)

    if gif:
        images = list(annotated())
        if not images:
            raise ValueError("no frames to write")
        images[0].save(path, save_all=True, append_images=images[1:],
                       duration=int(1000 / fps), loop=0)
        return path
    try:
        import imageio.v2 as imageio
    except ImportError as err:
        raise ImportError("writing video needs imageio: pip install 'ctjax[video]'") from err
    count = 0
    with imageio.get_writer(path, fps=fps) as writer:
        for image in annotated():
            writer.append_data(np.asarray(image))
            count += 1
    if not count:
        path.unlink(missing_ok=True)
        raise ValueError("no frames to write")
    return path

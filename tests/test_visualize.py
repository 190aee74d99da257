"""Annotated videos: boxes drawn where they belong; videos written one frame at a time."""

import numpy as np
import pytest
from PIL import Image

from ctjax import visualize


def _frames(n, log=None):
    for i in range(n):
        if log is not None:
            log.append(i)
        yield np.full((48, 64, 3), 10 * i, np.uint8)


def test_draw_boxes_marks_the_box_outline_one_based():
    frame = np.zeros((40, 50, 3), np.uint8)
    image = np.asarray(visualize.draw_boxes(frame, {"lime": np.array([11, 6, 20, 10])}))
    # x,y 1-based (11, 6) -> pixel column 10, row 5; outline 2 px wide, interior untouched
    assert tuple(image[5, 10]) == (0, 255, 0)
    assert tuple(image[5 + 9, 10 + 19]) == (0, 255, 0)
    assert tuple(image[10, 20]) == (0, 0, 0)
    assert image[:5].max() == 0 and image[:, :9].max() == 0


def test_gif_has_every_frame(tmp_path):
    boxes = np.tile([5.0, 5.0, 10.0, 10.0], (4, 1))
    path = visualize.write_annotated(tmp_path / "a.gif", _frames(4), boxes)
    with Image.open(path) as gif:
        assert gif.n_frames == 4


def test_video_is_written_frame_by_frame(tmp_path, monkeypatch):
    imageio = pytest.importorskip("imageio.v2", reason="needs ctjax[video] (imageio)")
    pytest.importorskip("imageio_ffmpeg", reason="needs ctjax[video] (imageio-ffmpeg)")
    consumed, written = [], []
    real = imageio.get_writer

    def spy_writer(*args, **kwargs):
        writer = real(*args, **kwargs)
        append = writer.append_data

        def append_data(image):
            written.append(len(consumed))  # frames pulled from the source when this one is written
            return append(image)
        writer.append_data = append_data
        return writer

    monkeypatch.setattr(imageio, "get_writer", spy_writer)
    boxes = np.tile([5.0, 5.0, 10.0, 10.0], (6, 1))
    path = visualize.write_annotated(tmp_path / "a.mp4", _frames(6, consumed), boxes, fps=10)
    assert written == [1, 2, 3, 4, 5, 6]  # never more than the frame being written was read
    assert len(imageio.mimread(path)) == 6


def test_no_frames_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        visualize.write_annotated(tmp_path / "a.gif", iter(()), np.zeros((0, 4)))

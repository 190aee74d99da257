"""Tests for ctjax.data.sequences: OTB folders, videos, splits and the demo clip."""

import json
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import need_data
from ctjax import boxes, paths
from ctjax.data import sequences


def _real(name):
    """A sequence from the shared data folder; skipped where the data is not installed."""
    return sequences.load_sequence(need_data(paths.sequence_dir, name))


def _make_sequence(root, n=3, box_text=None, *, mode="RGB", suffix=".jpg", hw=(24, 32)):
    """Writes a small OTB-format folder with `n` frames and returns its path."""
    (root / "img").mkdir(parents=True)
    for i in range(n):
        value = 40 * i if mode == "L" else (40 * i, 10, 200) + ((128,) if mode == "RGBA" else ())
        Image.new(mode, hw[::-1], value).save(root / "img" / f"{i + 1:04d}{suffix}")
    if box_text is None:
        box_text = "".join(f"{2 + i},3,10,8\n" for i in range(n))
    (root / "groundtruth_rect.txt").write_text(box_text)
    return root


def test_loads_real_crossing_sequence():
    seq = _real("Crossing")
    assert seq.name == "Crossing" and len(seq) == 120
    assert seq.boxes.shape == (120, 4) and seq.boxes.dtype == np.float64
    assert seq.image_hw == (240, 360)
    np.testing.assert_array_equal(seq.init_box, [205, 151, 17, 50])
    for i in (0, 60, -1):
        frame = seq.frame(i)
        assert frame.shape == (240, 360, 3) and frame.dtype == np.uint8
    assert frame.std() > 0  # a real image, not a blank array
    assert [p.name for p in seq.frame_paths[:2]] == ["0001.jpg", "0002.jpg"]
    with pytest.raises(IndexError, match="out of range"):
        seq.frame(120)
    with pytest.raises(ValueError):
        seq.boxes[0, 0] = 1.0  # read-only


@pytest.mark.parametrize("text", [
    "2,3,10,8\n3,3,10,8\nNaN,NaN,NaN,NaN\n",
    "2\t3\t10\t8\n3\t3\t10\t8\nNaN\tNaN\tNaN\tNaN\n",
    "2 3 10 8\n3  3 10 8\nnan nan nan nan\n\n",
])
def test_separators_and_nan_rows(tmp_path, text):
    seq = sequences.load_sequence(_make_sequence(tmp_path / "toy", box_text=text))
    assert seq.name == "toy" and len(seq) == 3
    np.testing.assert_array_equal(seq.boxes[:2], [[2, 3, 10, 8], [3, 3, 10, 8]])
    assert np.isnan(seq.boxes[2]).all()
    assert [f.shape for f in seq.frames()] == [(24, 32, 3)] * 3


@pytest.mark.parametrize("mode, suffix", [("L", ".png"), ("RGBA", ".png"), ("RGB", ".jpg")])
def test_frames_are_rgb_uint8(tmp_path, mode, suffix):
    root = _make_sequence(tmp_path / "s", mode=mode, suffix=suffix)
    seq = sequences.load_sequence(root, name="x")
    frame = seq.frame(2)
    assert seq.name == "x"
    assert frame.shape == (24, 32, 3) and frame.dtype == np.uint8
    if mode == "L":
        assert (frame == 80).all()
    if mode == "RGBA":
        assert (frame == [80, 10, 200]).all()


def test_frames_sorted_numerically(tmp_path):
    root = tmp_path / "s"
    (root / "img").mkdir(parents=True)
    for i in range(1, 11):
        Image.new("L", (8, 8), i).save(root / "img" / f"{i}.png")
    (root / "groundtruth_rect.txt").write_text("1,1,2,2\n" * 10)
    seq = sequences.load_sequence(root)
    assert [p.name for p in seq.frame_paths] == [f"{i}.png" for i in range(1, 11)]
    assert seq.frame(9)[0, 0, 0] == 10
    assert seq.frame(1)[0, 0, 0] == 2


def test_missing_folder_img_and_box_file(tmp_path):
    with pytest.raises(sequences.SequenceError, match="does not exist"):
        sequences.load_sequence(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    with pytest.raises(sequences.SequenceError, match="frame folder"):
        sequences.load_sequence(tmp_path / "a")
    (tmp_path / "a" / "img").mkdir()
    with pytest.raises(sequences.SequenceError, match="holds no"):
        sequences.load_sequence(tmp_path / "a")
    root = _make_sequence(tmp_path / "b")
    (root / "groundtruth_rect.txt").unlink()
    with pytest.raises(sequences.SequenceError, match="box file .* does not exist"):
        sequences.load_sequence(root)


def test_box_file_length_differs_from_frame_count(tmp_path):
    root = _make_sequence(tmp_path / "s", n=3, box_text="1,1,5,5\n1,1,5,5\n")
    with pytest.raises(sequences.SequenceError, match="2 boxes but .* 3 frames"):
        sequences.load_sequence(root)


def test_non_positive_box_names_the_line(tmp_path):
    root = _make_sequence(tmp_path / "s", box_text="1,1,5,5\n1,1,5,5\n1,1,0,5\n")
    with pytest.raises(sequences.SequenceError, match="line 3.*non-positive"):
        sequences.load_sequence(root)


def test_malformed_line_names_the_line(tmp_path):
    root = _make_sequence(tmp_path / "s", box_text="1,1,5,5\n1;1;5;5\n1,1,5,5\n")
    with pytest.raises(sequences.SequenceError, match="line 2"):
        sequences.load_sequence(root)


def test_corrupt_frame_is_a_clear_error(tmp_path):
    root = _make_sequence(tmp_path / "s")
    bad = root / "img" / "0002.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg " * 10)
    seq = sequences.load_sequence(root)  # frames are decoded lazily
    assert seq.frame(0).shape == (24, 32, 3)
    with pytest.raises(sequences.SequenceError, match="0002.jpg.*unreadable"):
        seq.frame(1)
    with pytest.raises(sequences.SequenceError, match="unreadable"):
        list(seq.frames())


def test_truncated_jpeg_is_a_clear_error(tmp_path):
    root = _make_sequence(tmp_path / "s")
    path = root / "img" / "0001.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(sequences.SequenceError, match="0001.jpg"):
        sequences.load_sequence(root).frame(0)


def test_init_box_is_validated(tmp_path):
    seq = sequences.load_sequence(_make_sequence(tmp_path / "s", box_text="NaN,NaN,NaN,NaN\n" * 3))
    with pytest.raises(boxes.BoxError, match="initial box of s"):
        seq.init_box


def test_demo_clip_loads_without_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path / "no_such_data"))
    with pytest.raises(paths.DataNotFoundError):
        sequences.list_sequences()
    seq = sequences.demo_sequence()
    assert len(seq) == 100 and seq.boxes.shape == (100, 4)
    assert seq.image_hw == (288, 352)
    assert not np.isnan(seq.boxes).any()
    np.testing.assert_array_equal(seq.init_box, [213, 121, 21, 95])
    frame = seq.frame(99)
    assert frame.shape == (288, 352, 3) and frame.dtype == np.uint8
    assert (sequences.DEMO_DIR / "SOURCE.md").is_file()
    size = sum(p.stat().st_size for p in sequences.DEMO_DIR.rglob("*") if p.is_file())
    assert size < 2.5e6


def test_demo_clip_is_a_train_split_sequence():
    splits = json.loads(need_data(paths.splits_file).read_text())
    assert "Woman" in splits["train"] and "Woman" not in splits["eval"]
    full = _real("Woman")
    demo = sequences.demo_sequence()
    np.testing.assert_array_equal(demo.boxes, full.boxes[:100])
    for i in (0, 99):
        assert demo.frame_paths[i].read_bytes() == full.frame_paths[i].read_bytes()


def test_list_sequences_and_load_split(tmp_path):
    for name in ("a", "b", "c"):
        _make_sequence(tmp_path / name, n=2)
    (tmp_path / "not_a_sequence").mkdir()
    (tmp_path / "splits.json").write_text(json.dumps({"train": ["c", "a"], "eval": ["b"]}))
    assert sequences.list_sequences(tmp_path) == ["a", "b", "c"]
    train = sequences.load_split("train", root=tmp_path)
    assert [s.name for s in train] == ["c", "a"]
    with pytest.raises(sequences.SequenceError, match="known splits: \\['eval', 'train'\\]"):
        sequences.load_split("test", root=tmp_path)


def test_real_splits_are_disjoint_and_loadable():
    splits = json.loads(need_data(paths.splits_file).read_text())
    assert not set(splits["train"]) & set(splits["eval"])
    seqs = sequences.load_split("eval")
    assert [s.name for s in seqs] == splits["eval"]
    assert all(len(s) == len(s.boxes) > 0 for s in seqs)


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_load_video_reads_written_video(tmp_path, suffix):
    iio = pytest.importorskip("imageio.v2")
    if suffix == ".mp4":
        pytest.importorskip("imageio_ffmpeg")
    rng = np.random.default_rng(0)
    frames = [np.full((48, 64, 3), 30 * i, np.uint8) + rng.integers(0, 5, (48, 64, 3), np.uint8)
              for i in range(6)]
    path = tmp_path / f"clip{suffix}"
    iio.mimwrite(path, frames, **({"fps": 10, "macro_block_size": 16} if suffix == ".mp4" else {}))
    video = sequences.load_video(path, [5, 6, 20, 10])
    assert video.name == "clip" and len(video) == 6 and video.image_hw == (48, 64)
    np.testing.assert_array_equal(video.init_box, [5, 6, 20, 10])
    assert video.boxes.shape == (6, 4) and np.isnan(video.boxes[1:]).all()
    got = list(video.frames())
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in got)
    # Lossy codecs: frame means still follow the written ramp closely.
    np.testing.assert_allclose([f.mean() for f in got], [f.mean() for f in frames], atol=4)
    assert len(sequences.load_video(path, [5, 6, 20, 10], max_frames=2)) == 2
    with pytest.raises(boxes.BoxError, match="initial box of clip"):
        sequences.load_video(path, [100, 6, 20, 10])


def test_load_video_errors(tmp_path, monkeypatch):
    with pytest.raises(sequences.SequenceError, match="does not exist"):
        sequences.load_video(tmp_path / "missing.mp4", [1, 1, 2, 2])
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(sequences.SequenceError, match="junk.mp4 is unreadable"):
        sequences.load_video(junk, [1, 1, 2, 2])
    monkeypatch.setitem(sys.modules, "imageio", None)
    monkeypatch.setitem(sys.modules, "imageio.v2", None)
    with pytest.raises(ImportError, match=r"pip install ctjax\[video\]"):
        sequences.load_video(junk, [1, 1, 2, 2])

"""Bad-input corpus, part 1: sequence folders, frames, boxes, splits, file writing (issue 11).

Every case is built here (renamed, resized, truncated, corrupt, empty, NaN, wrong type) and
must give either a clear error naming the problem or a correct result, never a silent wrong
one. References are independent: NumPy arithmetic on the pixel values written, hashlib over
the bytes written, `os.stat` for permissions. No jax is needed except in the frame-stream
checks of `ctjax.trackers.run`.
"""

import hashlib
import json
import os
import stat
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctjax import boxes, paths
from ctjax.data import sequences
from ctjax.data.sequences import SequenceError


def _frame(value, hw=(16, 24)):
    """An RGB frame whose red channel is `value` everywhere (identifies the frame)."""
    a = np.zeros(hw + (3,), np.uint8)
    a[..., 0], a[..., 1], a[..., 2] = value, 7, 200
    return a


def _folder(root: Path, names, *, boxes_text=None, hw=(16, 24)) -> Path:
    """An OTB folder whose frame k (in `names` order) has red value 10 * (k + 1)."""
    (root / "img").mkdir(parents=True)
    for k, name in enumerate(names):
        Image.fromarray(_frame(10 * (k + 1), hw)).save(root / "img" / name)
    if boxes_text is None:
        boxes_text = "".join(f"{2 + k},3,6,5\n" for k in range(len(names)))
    (root / "groundtruth_rect.txt").write_text(boxes_text)
    return root


# --------------------------------------------------------------------------------------------
# Frame names and order


def test_frame1_to_frame12_are_tracked_in_numeric_order(tmp_path):
    names = [f"frame{i}.png" for i in range(1, 13)]
    root = _folder(tmp_path / "s", names)
    seq = sequences.load_sequence(root)
    assert [p.name for p in seq.frame_paths] == names  # 1, 2, ..., 10, 11, 12
    # Frame i holds red value 10 * i (written above), so order errors show in the pixels.
    assert [int(f[0, 0, 0]) for f in seq.frames()] == [10 * i for i in range(1, 13)]
    # Line i of the box file goes with frame i.
    np.testing.assert_array_equal(seq.boxes[:, 0], np.arange(2, 14))


def test_zero_padded_names_sort_numerically(tmp_path):
    names = [f"img_{i:03d}_left.png" for i in (9, 10, 11, 8)]
    root = _folder(tmp_path / "s", names)
    seq = sequences.load_sequence(root)
    assert [p.name for p in seq.frame_paths] == [f"img_{i:03d}_left.png" for i in (8, 9, 10, 11)]


def test_a_missing_frame_number_is_an_error_naming_it(tmp_path):
    names = [f"{i:04d}.jpg" for i in range(1, 14) if i != 5]  # 12 frames, 12 boxes: counts agree
    root = _folder(tmp_path / "s", names)
    with pytest.raises(SequenceError, match=r"from 1 to 13 with 1 missing \(5\)"):
        sequences.load_sequence(root)


def test_many_missing_frames_are_summarised(tmp_path):
    root = _folder(tmp_path / "s", [f"{i}.png" for i in (1, 30)])
    with pytest.raises(SequenceError, match=r"28 missing \(2, 3, 4, 5, 6, 7, 8, 9, 10, 11, \.\.\.\)"):
        sequences.load_sequence(root)


@pytest.mark.parametrize("names, pattern", [
    (["0001.jpg", "0002.jpg", "frame3.jpg"], "mixes 2 frame name patterns"),
    (["0001.jpg", "0002.png", "0003.jpg"], "mixes 2 frame name patterns"),
    (["0001.jpg", "0002.jpg", "cover.jpg"], "cover.jpg has no frame number"),
    (["1.png", "0001.png", "2.png"], "frame number 1 appears more than once .*0001.png, 1.png"),
])
def test_mixed_unnumbered_and_repeated_names_are_errors(tmp_path, names, pattern):
    root = _folder(tmp_path / "s", names)
    with pytest.raises(SequenceError, match=pattern):
        sequences.load_sequence(root)


def test_hidden_files_and_non_images_are_ignored(tmp_path):
    root = _folder(tmp_path / "s", ["0001.png", "0002.png"])
    (root / "img" / "._0001.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS fork
    (root / "img" / "Thumbs.db").write_bytes(b"junk")
    (root / "img" / "notes.txt").write_text("x")
    seq = sequences.load_sequence(root)
    assert [p.name for p in seq.frame_paths] == ["0001.png", "0002.png"]


# --------------------------------------------------------------------------------------------
# Frame contents: renamed, resized, truncated, empty, 16-bit


def test_a_png_renamed_to_jpg_decodes_to_its_pixels(tmp_path):
    root = _folder(tmp_path / "s", ["0001.png", "0002.png"])
    (root / "img" / "0002.png").rename(root / "img" / "0002.jpg")
    (root / "img" / "0001.png").rename(root / "img" / "0001.jpg")
    seq = sequences.load_sequence(root)
    np.testing.assert_array_equal(seq.frame(1), _frame(20))  # lossless PNG bytes, any name


def test_a_text_file_renamed_to_jpg_is_named(tmp_path):
    root = _folder(tmp_path / "s", ["0001.jpg", "0002.jpg"])
    (root / "img" / "0002.jpg").write_text("not an image at all")
    with pytest.raises(SequenceError, match="0002.jpg is unreadable"):
        list(sequences.load_sequence(root).frames())


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_empty_and_truncated_frames_are_named(tmp_path, damage):
    root = _folder(tmp_path / "s", ["0001.png", "0002.png", "0003.png"], hw=(64, 64))
    f = root / "img" / "0003.png"
    noisy = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    Image.fromarray(noisy).save(f)
    f.write_bytes(b"" if damage == "empty" else f.read_bytes()[:200])
    seq = sequences.load_sequence(root)
    with pytest.raises(SequenceError, match="0003.png is unreadable"):
        list(seq.frames())


def test_a_resized_frame_mid_sequence_is_an_error_naming_it(tmp_path):
    root = _folder(tmp_path / "s", [f"{i:04d}.png" for i in range(1, 8)])
    Image.fromarray(_frame(99, (20, 24))).save(root / "img" / "0005.png")
    seq = sequences.load_sequence(root)
    frames = seq.frames()
    for _ in range(4):  # frames 1-4 are fine
        assert next(frames).shape == (16, 24, 3)
    with pytest.raises(SequenceError, match=r"0005.png is 24x20 \(WxH\) but the sequence's "
                                            r"first frame is 24x16"):
        next(frames)
    with pytest.raises(SequenceError, match="0005.png"):
        seq.frame(4)


def _png16(path: Path, values: np.ndarray) -> None:
    """Writes a 16-bit PNG by hand (zlib + CRC), grey (H, W) or RGB (H, W, 3), so the test
    does not rely on the decoder it checks."""
    colour = 2 if values.ndim == 3 else 0
    h, w = values.shape[:2]
    rows = values.reshape(h, -1).astype(">u2")
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("channels", [1, 3])
def test_16bit_png_frames_keep_their_high_byte(tmp_path, channels):
    root = _folder(tmp_path / "s", ["0001.png"], hw=(8, 12))
    rng = np.random.default_rng(channels)
    v = rng.integers(0, 65536, (8, 12) + ((3,) if channels == 3 else ()), dtype=np.uint32)
    v.flat[:4] = [0, 255, 256, 65535]
    _png16(root / "img" / "0001.png", v)
    frame = sequences.load_sequence(root).frame(0)
    expect = (v >> 8).astype(np.uint8)
    if channels == 1:
        expect = np.repeat(expect[..., None], 3, axis=-1)
    np.testing.assert_array_equal(frame, expect)  # not white (the old clipped decode)
    assert frame.max() < 255 or v.max() >= 65280


# --------------------------------------------------------------------------------------------
# Box files, folders and splits


@pytest.mark.parametrize("text, pattern", [
    ("", "0 boxes but .* 2 frames"),
    ("NaN,NaN,NaN,NaN\n2,3,6,5\n", "initial box of s .* holds NaN"),
    ("2,3,6,5\n2,3,-6,5\n", "line 2: .* non-positive"),
    ("2,3,6,5\n2,3,6\n", "line 2: expected 4 numbers"),
    ("2,3,6,5\n\n2,3,6,5\n", "line 2: expected 4 numbers"),
])
def test_bad_box_files_name_the_line(tmp_path, text, pattern):
    root = _folder(tmp_path / "s", ["0001.png", "0002.png"], boxes_text=text)
    with pytest.raises((SequenceError, boxes.BoxError), match=pattern):
        sequences.load_sequence(root).init_box


def test_binary_box_file_and_wrong_types(tmp_path):
    root = _folder(tmp_path / "s", ["0001.png"])
    (root / "groundtruth_rect.txt").write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(SequenceError, match="box file .* is unreadable"):
        sequences.load_sequence(root)
    (root / "groundtruth_rect.txt").unlink()
    (root / "groundtruth_rect.txt").mkdir()
    with pytest.raises(SequenceError, match="box file .* is not a file"):
        sequences.load_sequence(root)
    other = tmp_path / "t"
    other.mkdir()
    (other / "img").write_text("a file where a folder belongs")
    with pytest.raises(SequenceError, match="frame folder .* is not a folder"):
        sequences.load_sequence(other)


@pytest.mark.parametrize("content, pattern", [
    ("", "split file .* is unreadable"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"train": ["a"]}', "split 'eval' not in .* known splits: \\['train'\\]"),
])
def test_bad_split_files(tmp_path, content, pattern):
    (tmp_path / "splits.json").write_text(content)
    with pytest.raises(SequenceError, match=pattern):
        sequences.load_split("eval", root=tmp_path)


# --------------------------------------------------------------------------------------------
# Boxes typed by a user


@pytest.mark.parametrize("box, pattern", [
    ([1, 1, 100000, 100000], "mostly outside the 24x16 .* 3.8e-06% of its area is inside"),
    ([30, 1, 5, 5], "entirely outside"),
    ([1, 1, np.nan, 4], "NaN"),
    ([1, 1, 0, 4], "non-positive"),
    ([1, 1, 4], "shape"),
    (["a", 1, 2, 3], "must be numbers"),
])
def test_user_boxes_are_held_to_the_frame(box, pattern):
    with pytest.raises(boxes.BoxError, match=pattern):
        boxes.validate_box(box, (16, 24), what="--box", min_inside=0.5)


def test_min_inside_counts_the_area_inside():
    # 8x8 box at x=21: columns 21..24 of 24 are inside, i.e. 4 of 8 columns = 50%.
    np.testing.assert_array_equal(
        boxes.validate_box([21, 1, 8, 8], (16, 24), min_inside=0.5), [21, 1, 8, 8])
    with pytest.raises(boxes.BoxError, match="38% of its area"):  # 3 of 8 columns
        boxes.validate_box([22, 1, 8, 8], (16, 24), min_inside=0.5)
    # Ground truth (min_inside=0) may stick out past a border.
    boxes.validate_box([22, 1, 8, 8], (16, 24))


# --------------------------------------------------------------------------------------------
# Frames reaching a tracker


def test_frame_stream_checks_name_the_frame():
    from ctjax.trackers.run import FrameError, timed_loop

    def run(frames):
        return timed_loop(frames, lambda im: None, lambda im: ([1, 1, 2, 2], 0.0), [1, 1, 2, 2])

    ok = [np.zeros((10, 12, 3), np.uint8)] * 3
    assert run(ok).boxes.shape == (3, 4)
    with pytest.raises(FrameError, match=r"frame 2 is 12x11 \(WxH\) but frame 0 is 12x10"):
        run(ok[:2] + [np.zeros((11, 12, 3), np.uint8)])
    with pytest.raises(FrameError, match="frame 1: expected an \\(H, W, 3\\) uint8 .* float32"):
        run([ok[0], np.zeros((10, 12, 3), np.float32)])
    with pytest.raises(FrameError, match="frame 0: .* shape \\(10, 12\\)"):
        run([np.zeros((10, 12), np.uint8)])
    with pytest.raises(ValueError, match="no frames"):
        run([])


# --------------------------------------------------------------------------------------------
# Writing files


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_have_normal_permissions(tmp_path, umask):
    from ctjax import evaluation

    old = os.umask(umask)
    try:
        a = paths.atomic_write(tmp_path / "a.json", "{}")
        b = evaluation.write_boxes(tmp_path / "b.txt", [[1, 2, 3, 4]])
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what open(path, "w") gives: the reference
    finally:
        os.umask(old)
    expect = stat.S_IMODE(plain.stat().st_mode)
    assert expect == 0o666 & ~umask
    assert stat.S_IMODE(a.stat().st_mode) == expect
    assert stat.S_IMODE(b.stat().st_mode) == expect


def test_concurrent_writers_never_share_a_temporary_file(tmp_path):
    target, errors = tmp_path / "r.json", []
    payloads = [json.dumps({"writer": w, "pad": "x" * 5000}) for w in range(8)]

    def writer(w):
        try:
            for _ in range(25):
                paths.atomic_write(target, payloads[w])
        except Exception as e:  # the old fixed temp name raised FileNotFoundError here
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_text() in payloads  # whole, never a mix
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_an_interrupted_atomic_write_leaves_the_old_file(tmp_path):
    target = paths.atomic_write(tmp_path / "r.txt", "old")
    with pytest.raises(KeyboardInterrupt):
        with paths.atomic_open(target) as f:
            f.write(b"new, half written")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.txt"]


def test_outputs_are_checked_before_work(tmp_path):
    from ctjax.trackers.run import check_outputs

    (tmp_path / "afile").write_text("x")
    with pytest.raises(IsADirectoryError, match="box file .* is a folder"):
        check_outputs(tmp_path)
    with pytest.raises(NotADirectoryError, match="cannot write box file"):
        check_outputs(tmp_path / "afile" / "boxes.txt")
    with pytest.raises(ValueError, match="unknown suffix '.avi2'"):
        check_outputs(tmp_path / "b.txt", tmp_path / "v.avi2")
    with pytest.raises(ValueError, match="unknown suffix '\\(none\\)'"):
        check_outputs(tmp_path / "b.txt", tmp_path / "video")
    with pytest.raises(ValueError, match="same file"):
        check_outputs(tmp_path / "b.gif", tmp_path / "b.gif")
    check_outputs(tmp_path / "new" / "b.txt", tmp_path / "new" / "v.gif")  # creates folders
    assert (tmp_path / "new").is_dir() and list((tmp_path / "new").iterdir()) == []
    with pytest.raises(NotADirectoryError, match="--output folder .* is not a folder"):
        paths.check_writable_dir(tmp_path / "afile", "--output folder")


def test_mp4_output_needs_imageio_before_tracking(tmp_path, monkeypatch):
    import importlib.util

    from ctjax.trackers import run

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "imageio_ffmpeg" else real(name, *a))
    with pytest.raises(ImportError, match="imageio-ffmpeg"):
        run.check_outputs(tmp_path / "b.txt", tmp_path / "v.mp4")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores folder permissions")
def test_a_read_only_folder_fails_before_work(tmp_path):
    from ctjax.trackers.run import check_outputs

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="cannot write box file"):
            check_outputs(ro / "b.txt")
    finally:
        ro.chmod(0o755)


def test_digest_of_files_and_folders(tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "a.npz").write_bytes(b"abc")
    (tmp_path / "w" / "b.json").write_bytes(b"{}")
    (tmp_path / "w" / ".hidden").write_bytes(b"ignored")
    assert paths.digest(tmp_path / "w" / "a.npz") == hashlib.sha256(b"abc").hexdigest()
    expect = hashlib.sha256(b"a.npz\0abcb.json\0{}").hexdigest()
    assert paths.digest(tmp_path / "w") == expect
    (tmp_path / "w" / "b.json").write_bytes(b"{ }")
    assert paths.digest(tmp_path / "w") != expect
    with pytest.raises(FileNotFoundError, match="does not exist"):
        paths.digest(tmp_path / "nope")

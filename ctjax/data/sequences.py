"""Tracking sequences: OTB-format folders, video files (streamed or in memory), the data splits
and the demo clip.

Conventions:

* An OTB-format sequence folder holds `img/0001.jpg ...` (`.jpg`, `.jpeg` or `.png`) and
  `groundtruth_rect.txt`; frame i (0-based here) is line i + 1 of the box file. Frames are
  ordered by the number in their names, naturally (`frame2` before `frame10`); the names must
  share one pattern (prefix, suffix, extension) and their numbers must run without a gap or
  a repeat, since a missing frame would pair every later frame with the wrong box: anything
  else is a `SequenceError` naming the files (hidden files such as `._0001.jpg` are ignored).
* Boxes are `x, y, w, h` with a **1-based** top-left pixel (OTB convention, see `ctjax.boxes`),
  float64 arrays of shape (N, 4). A row of NaN marks a frame without valid ground truth; such
  rows are kept (evaluation skips them) but a finite row must have positive width and height.
* Frames are decoded lazily, on each `frame(i)` call, with Pillow, as (H, W, 3) uint8 **RGB**
  (grayscale, palette and RGBA frames are converted; alpha is dropped; 16-bit frames keep
  their high byte, `v >> 8`, as Pillow does for 16-bit RGB; 32-bit float images are refused).
  Every frame must have the first frame's size: a frame of another size is a `SequenceError`
  naming it, not a box silently in the wrong coordinates.
* Image sizes are `(height, width)`.
* Videos: `open_video` streams a file (`VideoStream`: one decoded frame in memory at a time,
  what `ctjax track VIDEO` uses); `load_video` decodes a short clip into memory
  (`VideoSequence`, random access). Both need imageio (`pip install ctjax[video]`).

Data that is not shipped is found through `ctjax.paths` (`CTJAX_DATA`); the demo clip
(`demo_sequence`) ships in `ctjax/assets/demo/` and needs no data folder.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from ctjax import boxes as boxlib
from ctjax import paths

BOX_FILE = "groundtruth_rect.txt"
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
DEMO_DIR = paths.ASSETS / "demo"
DEMO_NAME = "Woman_demo"
VIDEO_HINT = "pip install ctjax[video]"


class SequenceError(ValueError):
    """A sequence folder, box file, frame or video is missing, malformed or unreadable."""


class TrackingSequence(Protocol):
    """What trackers and the evaluation need from a sequence (`Sequence`, `VideoSequence`)."""

    name: str
    boxes: np.ndarray

    def __len__(self) -> int: ...
    def frame(self, i: int) -> np.ndarray: ...
    def frames(self) -> Iterator[np.ndarray]: ...
    @property
    def init_box(self) -> np.ndarray: ...
    @property
    def image_hw(self) -> tuple[int, int]: ...


def _check_boxes(boxes, n_frames: int, name: str) -> np.ndarray:
    """Returns `boxes` as a read-only (N, 4) float64 copy, or raises `SequenceError`."""
    b = np.array(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise SequenceError(f"{name}: boxes must have shape (N, 4), got {b.shape}")
    if b.shape[0] != n_frames:
        raise SequenceError(f"{name}: {n_frames} frames but {b.shape[0]} boxes")
    if n_frames == 0:
        raise SequenceError(f"{name}: the sequence has no frames")
    b.setflags(write=False)
    return b


def _index(i: int, n: int, name: str) -> int:
    """Checks a frame index (negative indices count from the end)."""
    if not -n <= i < n:
        raise IndexError(f"{name}: frame index {i} out of range for {n} frames")
    return i % n


def _unreadable(path: Path, e: Exception) -> SequenceError:
    return SequenceError(f"frame {path} is unreadable (missing, corrupt or not an image): {e}")


def _to_8bit_rgb(im: Image.Image, path: Path) -> np.ndarray:
    """A Pillow image as (H, W, 3) uint8 RGB; 16-bit grey (`I;16*`, or `I` within 0..65535)
    keeps its high byte (Pillow's `convert("RGB")` would clip it to white)."""
    if im.mode.startswith("I;16") or im.mode == "I":
        v = np.asarray(im).astype(np.int64)
        if v.size and (v.min() < 0 or v.max() > 65535):
            raise SequenceError(f"frame {path}: {im.mode} image with values outside 0..65535 "
                                "(not a 16-bit frame); convert it to 8-bit")
        return np.repeat((v >> 8).astype(np.uint8)[..., None], 3, axis=-1)
    if im.mode == "F":
        raise SequenceError(f"frame {path}: 32-bit float image; convert it to 8-bit")
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _decode(path: Path, expect_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Decodes one image file to (H, W, 3) uint8 RGB, or raises `SequenceError` (also when
    its size is not `expect_hw`)."""
    try:
        with Image.open(path) as im:
            frame = _to_8bit_rgb(im, path)
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, SequenceError):
            raise
        raise _unreadable(path, e) from e
    if expect_hw is not None and frame.shape[:2] != tuple(expect_hw):
        raise SequenceError(
            f"frame {path} is {frame.shape[1]}x{frame.shape[0]} (WxH) but the sequence's first "
            f"frame is {expect_hw[1]}x{expect_hw[0]}; frame sizes must not change within a "
            "sequence")
    return frame


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Sequence:
    """An image sequence with ground truth; frames are decoded on demand.

    Attributes:
      name: the sequence's name (its folder name unless given).
      frame_paths: N image files, in frame order.
      boxes: (N, 4) float64 ground truth x,y,w,h (1-based top-left); NaN rows where the
        ground truth is invalid or absent. Read-only.
    """

    name: str
    frame_paths: tuple[Path, ...]
    boxes: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "frame_paths", tuple(Path(p) for p in self.frame_paths))
        gt = _check_boxes(self.boxes, len(self.frame_paths), self.name)
        object.__setattr__(self, "boxes", gt)

    def __repr__(self) -> str:
        return f"Sequence(name={self.name!r}, frames={len(self)})"

    def __len__(self) -> int:
        return len(self.frame_paths)

    def frame(self, i: int) -> np.ndarray:
        """Frame `i` (0-based) as (H, W, 3) uint8 RGB; `SequenceError` if it is unreadable
        or its size differs from the first frame's (`image_hw`)."""
        return _decode(self.frame_paths[_index(i, len(self), self.name)], self.image_hw)

    def frames(self) -> Iterator[np.ndarray]:
        """Yields every frame in order, as `frame(i)` does."""
        for path in self.frame_paths:
            yield _decode(path, self.image_hw)

    @property
    def init_box(self) -> np.ndarray:
        """The first frame's box, (4,) float64, checked by `ctjax.boxes.validate_box`."""
        return boxlib.validate_box(self.boxes[0], self.image_hw, what=f"initial box of {self.name}")

    @functools.cached_property
    def image_hw(self) -> tuple[int, int]:
        """`(height, width)` of the first frame, read from its header only."""
        path = self.frame_paths[0]
        try:
            with Image.open(path) as im:
                width, height = im.size
        except (OSError, SyntaxError, ValueError) as e:
            raise _unreadable(path, e) from e
        return height, width


_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")


def _list_frames(img_dir: Path, name: str) -> list[Path]:
    """The frame files of `img_dir` in frame order, checked to be one numbered series.

    Frames are ordered by the last number in their names (`frame2.jpg` before `frame10.jpg`,
    `0002.jpg` before `0010.jpg`). All names must share the pattern around that number
    (prefix, suffix and extension) and the numbers must be consecutive and distinct.

    Raises:
      SequenceError: no frames; an unnumbered name or names of different patterns ("mixed
        names"); a repeated number (`1.jpg` and `0001.jpg`); a gap (missing numbers are
        named).
    """
    files = [p for p in img_dir.iterdir()
             if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".") and p.is_file()]
    if not files:
        raise SequenceError(
            f"sequence {name}: {img_dir} holds no {'/'.join(FRAME_SUFFIXES)} frames")
    numbered, patterns = [], {}
    for p in files:
        m = _NUMBERED.match(p.stem)
        if m is None:
            raise SequenceError(f"sequence {name}: frame {p} has no frame number in its name; "
                                f"{img_dir} must hold one numbered series (e.g. 0001.jpg ...)")
        pattern = (m.group(1), m.group(3), p.suffix.lower())
        patterns.setdefault(pattern, p.name)
        numbered.append((int(m.group(2)), p))
    if len(patterns) > 1:
        examples = ", ".join(sorted(patterns.values())[:4])
        raise SequenceError(
            f"sequence {name}: {img_dir} mixes {len(patterns)} frame name patterns (e.g. "
            f"{examples}); keep one numbered series (prefix, number, extension)")
    numbered.sort(key=lambda t: (t[0], t[1].name))
    numbers = [n for n, _ in numbered]
    repeats = sorted({n for n, m in zip(numbers, numbers[1:]) if n == m})
    if repeats:
        dup = [p.name for n, p in numbered if n == repeats[0]]
        raise SequenceError(f"sequence {name}: frame number {repeats[0]} appears more than "
                            f"once in {img_dir} ({', '.join(dup)})")
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise SequenceError(
            f"sequence {name}: frame numbers in {img_dir} run from {numbers[0]} to "
            f"{numbers[-1]} with {len(missing)} missing ({shown}); every later frame would be "
            "paired with the wrong ground-truth box")
    return [p for _, p in numbered]


def _read_box_file(path: Path, name: str) -> np.ndarray:
    """Reads and checks a ground-truth box file; raises `SequenceError` naming the line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise SequenceError(f"box file {path} is unreadable: {e}") from e
    try:
        gt = boxlib.parse_boxes(text, source=f"box file {path}")
    except boxlib.BoxError as e:
        raise SequenceError(str(e)) from None
    nan_row = np.isnan(gt).any(axis=1)
    bad = ~nan_row & (~np.isfinite(gt).all(axis=1) | (gt[:, 2] <= 0) | (gt[:, 3] <= 0))
    if bad.any():
        line = int(np.flatnonzero(bad)[0])
        raise SequenceError(
            f"box file {path}, line {line + 1}: box {gt[line].tolist()} has infinite values or "
            f"non-positive width/height ({int(bad.sum())} such line(s)); mark frames without "
            "ground truth with NaN,NaN,NaN,NaN")
    return gt


def load_sequence(path, *, name: str | None = None) -> Sequence:
    """Reads an OTB-format sequence folder (`img/`, `groundtruth_rect.txt`).

    Args:
      path: the sequence folder.
      name: the sequence's name; defaults to the folder name.

    Returns:
      A `Sequence` whose frames are decoded lazily.

    Raises:
      SequenceError: the folder, `img/` or the box file is missing, `img/` holds no frames,
        frame names are mixed or their numbers have a gap or a repeat (see `_list_frames`), a
        box line is malformed or has non-positive size (the message names the line), or the
        box file's length differs from the frame count.
    """
    path = Path(path)
    name = name or path.name
    if not path.is_dir():
        raise SequenceError(f"sequence folder {path} does not exist (or is not a folder)")
    img_dir = path / "img"
    if not img_dir.is_dir():
        state = "is not a folder" if img_dir.exists() else "does not exist"
        raise SequenceError(f"sequence {name}: frame folder {img_dir} {state}")
    frame_paths = _list_frames(img_dir, name)
    box_path = path / BOX_FILE
    if not box_path.is_file():
        state = "is not a file" if box_path.exists() else "does not exist"
        raise SequenceError(f"sequence {name}: box file {box_path} {state}")
    gt = _read_box_file(box_path, name)
    if len(gt) != len(frame_paths):
        raise SequenceError(
            f"sequence {name}: {box_path} has {len(gt)} boxes but {img_dir} has "
            f"{len(frame_paths)} frames; line i of the box file must be frame i")
    return Sequence(name=name, frame_paths=tuple(frame_paths), boxes=gt)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class VideoSequence:
    """A decoded video with an initial box; same interface as `Sequence`.

    Attributes:
      name: the video's name (its file stem unless given).
      path: the video file.
      boxes: (N, 4) float64: the initial box on row 0, NaN afterwards. Read-only.
      video: (N, H, W, 3) uint8 RGB frames. Read-only.
    """

    name: str
    path: Path
    boxes: np.ndarray
    video: np.ndarray

    def __post_init__(self):
        video = np.asarray(self.video)
        if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
            raise SequenceError(f"{self.name}: video must be (N, H, W, 3) uint8, got "
                                f"{video.shape} {video.dtype}")
        video.setflags(write=False)
        object.__setattr__(self, "video", video)
        object.__setattr__(self, "boxes", _check_boxes(self.boxes, len(video), self.name))

    def __repr__(self) -> str:
        return f"VideoSequence(name={self.name!r}, frames={len(self)})"

    def __len__(self) -> int:
        return len(self.video)

    def frame(self, i: int) -> np.ndarray:
        """Frame `i` (0-based) as (H, W, 3) uint8 RGB."""
        return self.video[_index(i, len(self), self.name)]

    def frames(self) -> Iterator[np.ndarray]:
        """Yields every frame in order."""
        yield from self.video

    @property
    def init_box(self) -> np.ndarray:
        """The initial box, (4,) float64."""
        return boxlib.validate_box(self.boxes[0], self.image_hw, what=f"initial box of {self.name}")

    @property
    def image_hw(self) -> tuple[int, int]:
        """`(height, width)` of the frames."""
        return int(self.video.shape[1]), int(self.video.shape[2])


def _to_rgb(frame: np.ndarray, path: Path) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 -> (H, W, 3) uint8."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise SequenceError(f"video {path}: expected 8-bit frames, got {frame.dtype}")
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3 or frame.shape[-1] not in (1, 3, 4):
        raise SequenceError(f"video {path}: unexpected frame shape {frame.shape}")
    if frame.shape[-1] == 1:
        return np.repeat(frame, 3, axis=-1)
    return frame[..., :3]


def _imageio():
    try:
        import imageio.v2 as iio
    except ImportError as e:
        raise ImportError(f"reading videos needs imageio and imageio-ffmpeg: {VIDEO_HINT}") from e
    return iio


def _video_frames(path: Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Decodes a video file one frame at a time: (H, W, 3) uint8 RGB frames, each of the
    first frame's size; the reader is closed when the iteration ends or is abandoned.

    Raises:
      ImportError: imageio / imageio-ffmpeg are missing.
      SequenceError: the file is missing or unreadable, or a frame's size or type differs.
    """
    iio = _imageio()
    if not path.is_file():
        raise SequenceError(f"video file {path} does not exist")
    try:
        reader = iio.get_reader(path)
    except ImportError as e:
        raise ImportError(f"reading {path.suffix} videos needs imageio-ffmpeg: {VIDEO_HINT}") from e
    except Exception as e:  # imageio's plugins raise many exception types for a bad file.
        raise SequenceError(f"video file {path} is unreadable: {type(e).__name__}: {e}") from e
    first_shape = None
    with reader:
        it = iter(reader)
        count = 0
        while max_frames is None or count < max_frames:
            try:
                raw = next(it)
            except StopIteration:
                return
            except Exception as e:
                raise SequenceError(f"video file {path} is unreadable at frame {count}: "
                                    f"{type(e).__name__}: {e}") from e
            frame = _to_rgb(raw, path)
            if first_shape is None:
                first_shape = frame.shape
            elif frame.shape != first_shape:
                raise SequenceError(f"video {path}: frame {count} is {frame.shape[1]}x"
                                    f"{frame.shape[0]} (WxH) but frame 0 is {first_shape[1]}x"
                                    f"{first_shape[0]}; frame sizes change within the video")
            count += 1
            yield frame


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class VideoStream:
    """A video file decoded as a stream: frames are read one at a time, never held together.

    What `ctjax track VIDEO` tracks: memory stays that of one frame whatever the video's
    length. Each `frames()` call decodes the file again from the start.

    Attributes:
      name: the video's name (its file stem unless given).
      path: the video file.
      box: the target's box on the first frame, x,y,w,h 1-based top-left (as given; checked
        by `init_box`).
      max_frames: read at most this many frames from the start (None: all).
    """

    name: str
    path: Path
    box: tuple
    max_frames: int | None = None

    def __repr__(self) -> str:
        return f"VideoStream(name={self.name!r}, path={str(self.path)!r})"

    def frames(self) -> Iterator[np.ndarray]:
        """Yields the frames in order as (H, W, 3) uint8 RGB; see `_video_frames`."""
        yield from _video_frames(self.path, self.max_frames)

    @functools.cached_property
    def image_hw(self) -> tuple[int, int]:
        """`(height, width)` of the first frame (decodes that frame only)."""
        for frame in _video_frames(self.path, 1):
            return int(frame.shape[0]), int(frame.shape[1])
        raise SequenceError(f"video file {self.path} holds no frames")

    @property
    def init_box(self) -> np.ndarray:
        """The initial box, (4,) float64, checked against the first frame."""
        return boxlib.validate_box(self.box, self.image_hw, what=f"initial box of {self.name}")

    def frame_count(self) -> int | None:
        """The number of frames from the container's metadata (ffmpeg counts packets without
        decoding them), capped by `max_frames`; None when it cannot be told cheaply."""
        iio = _imageio()
        try:
            with iio.get_reader(self.path) as reader:
                n = reader.get_length()
                if not np.isfinite(n) and hasattr(reader, "count_frames"):
                    n = reader.count_frames()
        except Exception:  # only a progress bar's total depends on it
            return None
        if n is None or not np.isfinite(n):
            return None
        return int(n) if self.max_frames is None else min(int(n), self.max_frames)


def open_video(path, init_box, *, name: str | None = None,
               max_frames: int | None = None) -> VideoStream:
    """Opens a video file (mp4, avi, gif, ... via imageio) for streaming.

    Checks now what can be checked without decoding the whole file: imageio is installed,
    the file exists and its first frame decodes, and `init_box` is valid for that frame.

    Args:
      path: the video file.
      init_box: the target's box on the first frame, x,y,w,h 1-based top-left.
      name: the sequence's name; defaults to the file stem.
      max_frames: track at most this many frames from the start.

    Returns:
      A `VideoStream`.

    Raises:
      ImportError: imageio / imageio-ffmpeg are not installed (`pip install ctjax[video]`).
      SequenceError: the file is missing, unreadable or holds no frames.
      ctjax.boxes.BoxError: `init_box` is invalid for the video's frames.
    """
    path = Path(path)
    stream = VideoStream(name=name or path.stem, path=path,
                         box=tuple(np.asarray(init_box, np.float64).reshape(-1).tolist()),
                         max_frames=max_frames)
    stream.init_box  # decodes the first frame: a bad file or box fails before any tracking
    return stream


def load_video(path, init_box, *, name: str | None = None, max_frames: int | None = None,
               max_bytes: int = 2**31) -> VideoSequence:
    """Decodes a video file (mp4, avi, gif, ... via imageio) into memory.

    All frames are decoded at once, for short clips that need random access (`frame(i)`);
    to track a video of any length, stream it with `open_video`. `max_bytes` guards against
    exhausting memory on a long video.

    Args:
      path: the video file.
      init_box: the target's box on the first frame, x,y,w,h 1-based top-left.
      name: the sequence's name; defaults to the file stem.
      max_frames: keep at most this many frames from the start.
      max_bytes: fail instead of holding more than this many bytes of decoded frames.

    Returns:
      A `VideoSequence` with `boxes[0] = init_box` and NaN rows after it.

    Raises:
      ImportError: imageio / imageio-ffmpeg are not installed (`pip install ctjax[video]`).
      SequenceError: the file is missing or unreadable, holds no frames or is too large.
      ctjax.boxes.BoxError: `init_box` is invalid for the video's frames.
    """
    path = Path(path)
    name = name or path.stem
    frames, nbytes = [], 0
    for frame in _video_frames(path, max_frames):
        frames.append(frame)
        nbytes += frame.nbytes
        if nbytes > max_bytes:
            raise SequenceError(
                f"video {path}: more than {max_bytes} bytes of decoded frames after "
                f"{len(frames)} frames; pass max_frames or a larger max_bytes, or stream it "
                "with open_video")
    if not frames:
        raise SequenceError(f"video file {path} holds no frames")
    video = np.stack(frames)
    init = boxlib.validate_box(init_box, video.shape[1:3], what=f"initial box of {name}")
    gt = np.full((len(video), 4), np.nan)
    gt[0] = init
    return VideoSequence(name=name, path=path, boxes=gt, video=video)


def _sequences_root(root) -> Path:
    return paths.sequences_dir() if root is None else paths.require(root, "sequence folder")


def list_sequences(root=None) -> list[str]:
    """Names of the OTB-format sequences under `root`.

    Args:
      root: folder holding sequence folders; defaults to `ctjax.paths.sequences_dir()`.

    Returns:
      Sorted names of subfolders that hold `img/` and `groundtruth_rect.txt`.
    """
    root = _sequences_root(root)
    return sorted(p.name for p in root.iterdir()
                  if (p / "img").is_dir() and (p / BOX_FILE).is_file())


def load_split(split: str, *, root=None) -> list[Sequence]:
    """Loads the sequences of one split of `<root>/splits.json`.

    Args:
      split: a key of `splits.json`: "train" (may be used for training and tuning) or "eval"
        (evaluation only).
      root: folder holding `splits.json` and the sequence folders; defaults to
        `ctjax.paths.sequences_dir()`.

    Returns:
      The split's sequences, in the order `splits.json` lists them.
    """
    root = _sequences_root(root)
    split_file = paths.require(root / "splits.json", "split file splits.json")
    try:
        splits = json.loads(split_file.read_text())
    except (OSError, ValueError) as e:
        raise SequenceError(f"split file {split_file} is unreadable: {e}") from e
    if not isinstance(splits, dict):
        raise SequenceError(f"split file {split_file} must hold a JSON object of name lists")
    names = splits.get(split)
    if not isinstance(names, list):
        known = sorted(k for k, v in splits.items() if isinstance(v, list))
        raise SequenceError(f"split {split!r} not in {split_file}; known splits: {known}")
    return [load_sequence(root / n) for n in names]


def demo_sequence() -> Sequence:
    """The demo clip shipped with the package: frames 1-100 of OTB `Woman` (train split).

    Needs no data folder. Provenance: `ctjax/assets/demo/SOURCE.md`.
    """
    return load_sequence(DEMO_DIR, name=DEMO_NAME)

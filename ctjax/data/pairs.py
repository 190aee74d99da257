"""Template/search pair sampling for offline distillation, as NumPy batches.

A pair is two frames of one sequence, `t` and `s = t + k` with k ~ U{1..max_gap} (DCFNet,
PAPER.md §5.4), both valid (finite box, sides >= `min_side` px). Sequences are drawn
uniformly, then the template frame uniformly within the sequence ([RECON]: short sequences
are not drowned by long ones). Each frame is cropped to a square window of side
`context * sqrt(w h)` (ECO's search area 4.5, PAPER.md §5.6) centred on its ground-truth box
and resampled to `crop_size` px. The search window is moved so that the target sits `shift`
crop pixels from the crop centre, shift = jitter_step * U{-m..m} per axis with
m = max_jitter // jitter_step ([RECON]: with jitter a label at (0, 0) cannot be met by
features that only encode position in the crop, which zero-padded convs can).

Crops are made by the trackers' own `ctjax.ops.crop.sample_window` (0-based pixel centres,
output pixel i samples the image at c - window/2 + (i + 0.5) window/out, bilinear, border
replicated, `antialias`² taps per pixel when shrinking), rounded to uint8. Box conventions:
`ctjax.boxes` (1-based OTB x,y,w,h in, 0-based (y, x) centres inside).

Batches are pure functions of `(seed, index)`, so a resumed run sees the same data, and each
row of a batch is a pure function of `(seed, index, row)`, so the hosts of a multi-host run each
draw their own rows of the same global batch (`PairSampler.batch(..., rows=)`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Protocol, Sequence

import jax
import numpy as np

from ctjax import boxes as boxlib
from ctjax.ops import crop


@dataclasses.dataclass(frozen=True)
class PairConfig:
    """How pairs are drawn and cropped.

    Attributes:
        crop_size: side of both crops in pixels.
        context: window side / sqrt(target w h).
        max_gap: the search frame is 1..max_gap frames after the template.
        max_jitter: largest |shift| of the target in the search crop, crop pixels per axis.
        jitter_step: shifts are multiples of this (16 = the coarsest student stride, so every
            layer's label shift is a whole number of cells).
        min_side: frames whose box has a side below this many frame pixels are not used.
        antialias: taps per axis and output pixel when shrinking.
    """
    crop_size: int = 160
    context: float = 4.5
    max_gap: int = 10
    max_jitter: int = 16
    jitter_step: int = 16
    min_side: float = 8.0
    antialias: int = 2

    def __post_init__(self):
        if self.crop_size < 32 or self.context <= 1 or self.max_gap < 1:
            raise ValueError(f"invalid PairConfig {self}")
        if self.jitter_step < 1 or self.max_jitter < 0:
            raise ValueError("jitter_step must be >= 1 and max_jitter >= 0")


class FrameSource(Protocol):
    """What the sampler needs: sequence boxes (N, 4) 1-based with NaN rows, and frames."""
    names: list[str]
    boxes: list[np.ndarray]

    def frame(self, seq: int, i: int) -> np.ndarray: ...


class SequenceFrames:
    """A `FrameSource` over `ctjax.data.sequences.Sequence` objects (no tfds), for tests and
    small runs."""

    def __init__(self, sequences):
        self._seqs = list(sequences)
        self.names = [s.name for s in self._seqs]
        self.boxes = [np.asarray(s.boxes, np.float64) for s in self._seqs]

    def frame(self, seq: int, i: int) -> np.ndarray:
        return self._seqs[seq].frame(i)


@functools.lru_cache(maxsize=None)
def _jitted_crop(out: int, antialias: int):
    return jax.jit(functools.partial(crop.sample_window, out=out, antialias=antialias))


def _canvas_hw(hw, multiple: int = 64) -> tuple[int, int]:
    """Frame size rounded up, so frames of similar sizes share one compiled crop."""
    return tuple(-(-int(n) // multiple) * multiple for n in hw)


def crop_window(image: np.ndarray, center_yx, window: float, *, out: int,
                antialias: int = 2) -> np.ndarray:
    """Resamples a square window of an image to an `out` x `out` uint8 crop.

    This is the trackers' own crop, `ctjax.ops.crop.sample_window` (same geometry, bilinear
    taps, border replication and antialiasing), jitted once per crop setting and canvas
    size, and rounded to uint8 so pools stay small.

    Args:
        image: (H, W, 3) uint8 RGB.
        center_yx: window centre, 0-based pixel coordinates (y, x).
        window: window side in image pixels.
        out: crop side in pixels.
        antialias: taps per axis and output pixel when shrinking.

    Returns:
        (out, out, 3) uint8 RGB crop.
    """
    frame = crop.to_canvas(image, _canvas_hw(np.shape(image)[:2]))
    patch = _jitted_crop(int(out), int(antialias))(
        frame, np.asarray(center_yx, np.float32), np.float32(window))
    return np.clip(np.rint(np.asarray(patch)), 0, 255).astype(np.uint8)


def valid_frames(boxes: np.ndarray, min_side: float) -> np.ndarray:
    """Boolean (N,) mask of frames with a finite box whose sides are >= `min_side`."""
    finite = np.all(np.isfinite(boxes), axis=1)
    sides = np.where(finite[:, None], boxes[:, 2:], 0.0)
    return finite & np.all(sides >= min_side, axis=1)


class PairSampler:
    """Draws template/search pairs from a `FrameSource` (see module docstring)."""

    def __init__(self, source: FrameSource, config: PairConfig):
        self.source, self.config = source, config
        self._valid = [np.flatnonzero(valid_frames(b, config.min_side)) for b in source.boxes]
        # Template candidates: valid frames with a valid frame 1..max_gap later.
        self._templates = []
        for valid in self._valid:
            later = [np.any((valid > t) & (valid <= t + config.max_gap)) for t in valid]
            self._templates.append(valid[np.asarray(later, bool)] if len(valid) else valid)
        self._usable = [i for i, t in enumerate(self._templates) if len(t)]
        if not self._usable:
            raise ValueError("no sequence has two valid frames within max_gap of each other")

    def sample_indices(self, rng: np.random.Generator):
        """(sequence, template frame, search frame) of one random pair."""
        seq = self._usable[rng.integers(len(self._usable))]
        t = int(rng.choice(self._templates[seq]))
        valid = self._valid[seq]
        later = valid[(valid > t) & (valid <= t + self.config.max_gap)]
        return seq, t, int(rng.choice(later))

    def _crop(self, seq: int, i: int, shift_yx) -> np.ndarray:
        c = self.config
        center, size = boxlib.xywh_to_center_size(self.source.boxes[seq][i])
        window = c.context * float(np.sqrt(size[0] * size[1]))
        center = np.asarray(center, np.float64) - np.asarray(shift_yx) * window / c.crop_size
        return crop_window(self.source.frame(seq, i), center, window, out=c.crop_size,
                           antialias=c.antialias)

    def sample(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """A batch of `n` pairs.

        Returns:
            dict with "template", "search": (n, S, S, 3) uint8 RGB crops; "shift": (n, 2)
            float32 target centre minus crop centre in the search crop, crop px (dy, dx);
            "index": (n, 3) int32 (sequence, template frame, search frame).
        """
        c = self.config
        m = c.max_jitter // c.jitter_step
        out = {"template": [], "search": [], "shift": [], "index": []}
        for _ in range(n):
            seq, t, s = self.sample_indices(rng)
            shift = c.jitter_step * rng.integers(-m, m + 1, size=2)
            out["template"].append(self._crop(seq, t, (0, 0)))
            out["search"].append(self._crop(seq, s, shift))
            out["shift"].append(shift)
            out["index"].append((seq, t, s))
        return {"template": np.stack(out["template"]), "search": np.stack(out["search"]),
                "shift": np.asarray(out["shift"], np.float32),
                "index": np.asarray(out["index"], np.int32)}

    def batch(self, seed: int, index: int, n: int,
              rows: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """Rows `rows` (default all) of the batch number `index` of stream `seed`.

        Row i is drawn from its own generator, seeded by (seed, index, i), so it is a pure
        function of those three numbers: a host of a multi-host run draws only the rows its
        devices hold (`ctjax.distill.parallel.local_rows`), and the global batch is the same
        whatever the number of hosts.

        Returns:
            `sample`'s dict with len(rows) entries, in the order of `rows`.
        """
        rows = range(n) if rows is None else [int(i) for i in rows]
        if any(not 0 <= i < n for i in rows):
            raise ValueError(f"rows must lie in 0..{n - 1}, got {list(rows)}")
        parts = [self.sample(np.random.default_rng([seed, index, i]), 1) for i in rows]
        if not parts:
            return {k: v[:0] for k, v in self.sample(np.random.default_rng(0), 1).items()}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def training_source(names: Sequence[str] | None, *, data_dir, manual_dir=None, kind: str = "otb"):
    """Builds (once) and opens the training frames as a `FrameSource`, refusing eval names.

    Args:
        names: OTB sequence folder names (None = the `train` list of `splits.json`).
        data_dir: work folder for the array_record files (never ../shared).
        manual_dir: the raw data; default `ctjax.paths.sequences_dir()` for "otb".
        kind: "otb", "got10k" or "ilsvrc_vid" (see `ctjax.data.tfds_builders`).

    Returns:
        `tfds_builders.FrameRecords`.

    Raises:
        TrainingDataError: a requested name is in the eval split, or the data is malformed.
    """
    from ctjax import paths
    from ctjax.data import tfds_builders

    if kind == "otb":
        manual_dir = manual_dir or paths.sequences_dir()
        if names is not None:
            tfds_builders.refuse_eval_sequences(
                names, eval_names=tfds_builders.eval_split_names(manual_dir)
                | tfds_builders.eval_split_names())
    if manual_dir is None:
        raise ValueError(f"kind {kind!r} needs manual_dir")
    builder = tfds_builders.prepare(kind, manual_dir, data_dir, sequences=names)
    return tfds_builders.FrameRecords(builder)

"""Sequences named by a folder: one sequence's own folder, or a benchmark folder holding many,
resolved to picklable `SequenceSource`s (what `ctjax track` and `ctjax eval` load, and what
eval sends to its workers and records in result keys and shard manifests).

Layouts (`LAYOUT_CHOICES`): `otb` is ctjax's own OTB-format folder (`img/` +
`groundtruth_rect.txt`, all frames, strict frame-name checks, read by
`ctjax.data.sequences.load_sequence`); `otb100` is the stock OTB-100 layout (frame ranges,
two-target sequences) and `uav123`, `got10k`, `lasot`, `vot` the other benchmarks, all read by
`ctjax.data.layouts` (where stock OTB-100 is called "otb"). `auto` detects the layout: a
sequence folder's own, else the benchmark folder's (`layouts.detect_layout`).

This lives beside `layouts` rather than in it because it is a different question: `layouts`
reads the sequences of a benchmark root whose layout is known, while this module decides
what a path typed by a user stands for (one sequence or many, which layout, ctjax's own
folders versus stock OTB-100) and keeps the answer as a small description to load later.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ctjax.data import layouts, sequences
from ctjax.data.sequences import SequenceError

__all__ = ["LAYOUT_CHOICES", "SequenceSource", "as_source", "resolve_sources"]

LAYOUT_CHOICES = ("auto", "otb", "otb100", "uav123", "got10k", "lasot", "vot")
# The `ctjax.data.layouts` name of each layout it reads.
_LAYOUTS_NAME = {"otb100": "otb", "uav123": "uav123", "got10k": "got10k", "lasot": "lasot",
                 "vot": "vot"}


@dataclasses.dataclass(frozen=True)
class SequenceSource:
    """One sequence as a folder on the command line stands for it; picklable.

    Attributes:
      layout: one of `LAYOUT_CHOICES` but "auto".
      root: the sequence folder for "otb"; the benchmark folder the layout reads otherwise.
      name: the sequence's name within `root` (as `ctjax.data.layouts.sequence_names` gives
        it); None for "otb".
    """
    layout: str
    root: Path
    name: str | None = None

    @property
    def path(self) -> Path:
        """What identifies the sequence in result keys: its folder, or root/name."""
        return self.root if self.name is None else self.root / self.name

    @property
    def label(self) -> str:
        """The name the loaded sequence will have."""
        if self.name is None:
            return self.root.name
        return Path(self.name).name if self.layout in ("got10k", "uav123") else self.name

    def load(self, max_frames: int | None = None) -> sequences.Sequence:
        """The `ctjax.data.sequences.Sequence`, frames aligned with boxes by the layout, cut
        to the first `max_frames` frames when given.

        Raises:
          SequenceError: what the layout's reader raises (missing frames or boxes, ...).
        """
        if self.layout == "otb":
            seq = sequences.load_sequence(self.root)
        else:
            seq = layouts.load_sequence(self.root, self.name, layout=_LAYOUTS_NAME[self.layout])
        if max_frames is not None:
            seq = dataclasses.replace(seq, frame_paths=seq.frame_paths[:max_frames],
                                      boxes=seq.boxes[:max_frames])
        return seq

    def describe(self) -> list:
        """JSON-able form [layout, root, name] (`from_description` reads it back)."""
        return [self.layout, str(self.root), self.name]

    @classmethod
    def from_description(cls, value) -> "SequenceSource":
        """The source `describe` wrote."""
        layout, root, name = value
        return cls(layout, Path(root), name)


def as_source(source) -> SequenceSource:
    """`source` itself when it is a `SequenceSource`, else an OTB-format folder's source."""
    return source if isinstance(source, SequenceSource) else SequenceSource("otb", Path(source))


def _sequence_folder_layout(d: Path) -> str | None:
    """The layout of `d` when it is one sequence's own folder, else None."""
    if (d / "img").is_dir():
        if (d / "groundtruth.txt").is_file() and (d / "full_occlusion.txt").is_file():
            return "lasot"
        box_files = [p.name for p in d.glob("groundtruth_rect*.txt")]
        if box_files == ["groundtruth_rect.txt"] and \
                d.name.lower() not in {k.lower() for k in layouts.OTB_RANGES}:
            return "otb"
        if box_files:
            return "otb100"
    if (d / "groundtruth.txt").is_file():
        numbered = (d / "00000001.jpg").is_file()
        if numbered and (d.name.startswith("GOT-10k") or (d / "absence.label").is_file() or
                         (d / "meta_info.ini").is_file()):
            return "got10k"
        if numbered or (d / "color").is_dir():
            return "vot"
    return None


def _folder_sources(folder: Path, layout: str) -> list[SequenceSource]:
    """The sources of one sequence's own folder read as `layout`."""
    if layout == "otb":
        return [SequenceSource("otb", folder)]
    if layout == "otb100":  # one folder may hold two targets (Jogging -> Jogging-1, -2)
        names = [n for n in layouts.sequence_names(folder.parent, layout="otb")
                 if n == folder.name or n.rsplit("-", 1)[0] == folder.name]
        if not names:
            raise SequenceError(f"{folder} holds no OTB sequence (img/ and a "
                                "non-empty groundtruth_rect[.k].txt)")
        return [SequenceSource("otb100", folder.parent, n) for n in names]
    return [SequenceSource(layout, folder.parent, folder.name)]


def _root_sources(root: Path, layout: str) -> list[SequenceSource]:
    """The sources of a benchmark folder read as `layout`."""
    if layout == "otb":
        found = [SequenceSource("otb", root / n) for n in sequences.list_sequences(root)]
    else:
        found = [SequenceSource(layout, root, n)
                 for n in layouts.sequence_names(root, layout=_LAYOUTS_NAME[layout])]
    if not found:
        raise SequenceError(f"{root} holds no {layout} sequence (is --layout "
                            f"{layout} right? default: auto-detected)")
    return found


def resolve_sources(folder, layout: str = "auto") -> list[SequenceSource]:
    """The sequences a folder stands for.

    Args:
      folder: one sequence's folder, or a benchmark folder holding many.
      layout: one of `LAYOUT_CHOICES`. "auto": a sequence folder's own layout (a folder with
        `img/` and one `groundtruth_rect.txt` is "otb" unless its name is one of OTB-100's
        ranged sequences, then "otb100", as is a folder of several targets), else the
        benchmark folder's (`ctjax.data.layouts.detect_layout`; its OTB folders are taken
        one by one as above).

    Returns:
      The sources, in the layout's order.

    Raises:
      SequenceError: not a folder, no sequence found, an undetectable layout.
      ValueError: an unknown `layout`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SequenceError(f"sequence folder {folder} does not exist (or is not "
                            "a folder)")
    if layout not in LAYOUT_CHOICES:
        raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUT_CHOICES}")
    own = _sequence_folder_layout(folder)
    if layout != "auto":
        if own is not None and layout != "uav123":
            return _folder_sources(folder, layout)
        return _root_sources(folder, layout)
    if own is not None:
        return _folder_sources(folder, own)
    detected = layouts.detect_layout(folder)
    if detected != "otb":
        return _root_sources(folder, detected)
    return [s for d in sorted(p for p in folder.iterdir() if p.is_dir())
            if _sequence_folder_layout(d) in ("otb", "otb100")
            for s in _folder_sources(d, _sequence_folder_layout(d))]

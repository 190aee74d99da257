"""tensorflow-datasets builders of training frames, read from a manual directory (no download).

Three layouts share one record format, so one pair sampler (`ctjax.data.pairs`) reads all:

* `OtbFrames`: OTB-format sequence folders (`<name>/img/0001.jpg`, `groundtruth_rect.txt`),
  e.g. the shared train split. Builder config "train" = the `train` list of `splits.json`;
  sequences of the `eval` list are refused.
* `Got10kFrames`: GOT-10k, `<manual>/train/GOT-10k_Train_000001/00000001.jpg ...` with
  `groundtruth.txt` (x,y,w,h per line) and optional `absence.label` (1 = target absent).
* `ImagenetVidFrames`: ILSVRC2015-VID, `<manual>/Data/VID/train/<snippet path>/000000.JPEG` and
  `<manual>/Annotations/VID/train/<snippet path>/000000.xml`; each object track of a snippet is
  one sequence named `<snippet path>/<trackid>` (frames without the object get NaN boxes).

Record (one per frame, in generation order: `disable_shuffling=True`, so the frames of a
sequence are consecutive): `image` (encoded bytes as stored on disk, decoded to (H, W, 3)
uint8 RGB on read), `box` (4,) float32 x,y,w,h **1-based** (OTB convention, NaN = no valid
ground truth), `sequence` (bytes name), `frame` (0-based index). `info.metadata["sequences"]`
lists `[name, first record, number of frames]` and `info.metadata["boxes"]` every sequence's
boxes, so a sampler plans pairs without decoding any image.

Written as array_record and read with `as_data_source` (random access, NumPy out); no
TensorFlow is needed. This module and `ctjax.data.pairs` are the only users of
tensorflow-datasets. GOT-10k boxes are taken as 0-based (its toolkit draws them so) and
converted with +1; ILSVRC xmin/ymin/xmax/ymax become x = xmin + 1, w = xmax - xmin + 1.
These two conversions are documented assumptions, not tested against the real datasets here.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from ctjax.data import sequences as seqlib

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPEG")


class TrainingDataError(ValueError):
    """Training data is missing, malformed, or includes sequences reserved for evaluation."""


class RawSequence(NamedTuple):
    """One sequence found in a manual directory: frame files and (N, 4) 1-based boxes."""
    name: str
    frame_paths: tuple[Path, ...]
    boxes: np.ndarray


def eval_split_names(root: Path | None = None) -> frozenset[str]:
    """Names listed under "eval" in `<root>/splits.json` (default the data folder's)."""
    from ctjax import paths
    split_file = (Path(root) if root else paths.data_root() / "sequences") / "splits.json"
    if not split_file.is_file():
        return frozenset()
    return frozenset(json.loads(split_file.read_text()).get("eval", ()))


def refuse_eval_sequences(names, *, eval_names: frozenset[str] | None = None):
    """Raises `TrainingDataError` if any of `names` belongs to the evaluation split."""
    eval_names = eval_split_names() if eval_names is None else eval_names
    bad = sorted(set(names) & set(eval_names))
    if bad:
        raise TrainingDataError(f"sequences {bad} belong to the eval split (splits.json); "
                                "never train or tune on them")


class _FramesBuilder(tfds.core.GeneratorBasedBuilder):
    """Shared record format and generation; subclasses list the sequences of a layout."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    # No checksums file or metadata folder beside this module: looking for one makes tfds
    # touch `importlib_resources`, which tfds does not install.
    code_path = None

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "box": tfds.features.Tensor(shape=(4,), dtype=np.float32),
                "sequence": tfds.features.Text(),
                "frame": np.int32,
            }),
            disable_shuffling=True,  # frames of a sequence stay consecutive (see metadata)
            metadata=tfds.core.MetadataDict(),
        )

    def _list_sequences(self, manual_dir: Path) -> list[RawSequence]:
        raise NotImplementedError

    def _split_generators(self, dl_manager):
        manual_dir = Path(dl_manager.manual_dir)
        if not manual_dir.is_dir():
            raise TrainingDataError(f"manual directory {manual_dir} does not exist")
        found = self._list_sequences(manual_dir)
        if not found:
            raise TrainingDataError(f"no sequences found under {manual_dir} for {self.name}")
        starts = np.cumsum([0] + [len(s.frame_paths) for s in found])[:-1]
        self.info.metadata["sequences"] = [[s.name, int(a), len(s.frame_paths)]
                                           for s, a in zip(found, starts)]
        self.info.metadata["boxes"] = {s.name: np.round(s.boxes, 3).tolist() for s in found}
        return {"train": self._generate_examples(found)}

    def _generate_examples(self, found: list[RawSequence]):
        for s_index, seq in enumerate(found):
            for i, (path, box) in enumerate(zip(seq.frame_paths, seq.boxes)):
                yield f"{s_index:06d}_{i:07d}", {
                    "image": path.read_bytes(), "box": np.asarray(box, np.float32),
                    "sequence": seq.name, "frame": i}


class OtbFramesConfig(tfds.core.BuilderConfig):
    """Which OTB-format folders to read: `sequences` names, or None = splits.json "train"."""

    def __init__(self, *, sequences: tuple[str, ...] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.sequences = sequences


class OtbFrames(_FramesBuilder):
    """OTB-format sequence folders under the manual directory (e.g. ../shared/data/sequences)."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = ("Pass the folder holding the OTB-format sequence folders "
                                    "(and splits.json) as the manual directory.")
    BUILDER_CONFIGS = [OtbFramesConfig(name="train", description="splits.json train list")]

    def _list_sequences(self, manual_dir):
        names = self.builder_config.sequences
        eval_names = eval_split_names(manual_dir)
        if names is None:
            split_file = manual_dir / "splits.json"
            if not split_file.is_file():
                raise TrainingDataError(f"{split_file} not found: name the sequences explicitly")
            names = json.loads(split_file.read_text())["train"]
        refuse_eval_sequences(names, eval_names=eval_names)
        out = []
        for name in names:
            seq = seqlib.load_sequence(manual_dir / name)
            out.append(RawSequence(name, tuple(seq.frame_paths), np.asarray(seq.boxes)))
        return out


def otb_config(sequences) -> OtbFramesConfig:
    """A builder config for an explicit list of OTB-format sequence folder names."""
    sequences = tuple(sequences)
    tag = "-".join(sequences)
    return OtbFramesConfig(name=f"seqs-{abs(hash(tag)) % 10**8:08d}" if len(tag) > 60 else
                           f"seqs-{tag}", sequences=sequences,
                           description=f"OTB folders {list(sequences)}")


def _sorted_frames(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(p for p in folder.iterdir() if p.suffix in FRAME_SUFFIXES))


class Got10kFrames(_FramesBuilder):
    """GOT-10k train (or val) folders: `<manual>/train/<sequence>/`."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the GOT-10k root (holding train/) as the manual directory."

    def _list_sequences(self, manual_dir):
        root = manual_dir / "train"
        if not root.is_dir():
            raise TrainingDataError(f"GOT-10k layout expected: {root} does not exist")
        out = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            frames = _sorted_frames(folder)
            boxes = np.loadtxt(folder / "groundtruth.txt", delimiter=",", ndmin=2).astype(np.float64)
            if len(boxes) != len(frames):
                raise TrainingDataError(f"{folder}: {len(boxes)} boxes for {len(frames)} frames")
            boxes[:, :2] += 1.0  # 0-based top-left -> OTB 1-based
            absent = folder / "absence.label"
            if absent.is_file():
                boxes[np.loadtxt(absent, ndmin=1).astype(bool)] = np.nan
            boxes[(boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)] = np.nan
            out.append(RawSequence(folder.name, frames, boxes))
        return out


def _vid_objects(xml_path: Path) -> dict[str, tuple[float, float, float, float]]:
    """trackid -> (xmin, ymin, xmax, ymax) of one ILSVRC VID annotation file."""
    root = ET.parse(xml_path).getroot()
    out = {}
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        out[obj.findtext("trackid")] = tuple(float(box.findtext(k))
                                             for k in ("xmin", "ymin", "xmax", "ymax"))
    return out


class ImagenetVidFrames(_FramesBuilder):
    """ILSVRC2015-VID train snippets, one sequence per object track."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = ("Pass the ILSVRC2015 root (holding Data/VID/train and "
                                    "Annotations/VID/train) as the manual directory.")

    def _list_sequences(self, manual_dir):
        data_root = manual_dir / "Data" / "VID" / "train"
        ann_root = manual_dir / "Annotations" / "VID" / "train"
        if not data_root.is_dir() or not ann_root.is_dir():
            raise TrainingDataError(f"ILSVRC2015-VID layout expected under {manual_dir}")
        out = []
        for ann_dir in sorted({p.parent for p in ann_root.rglob("*.xml")}):
            snippet = ann_dir.relative_to(ann_root)
            frames = _sorted_frames(data_root / snippet)
            per_frame = [_vid_objects(ann_dir / (f.stem + ".xml")) for f in frames]
            for track in sorted({t for objs in per_frame for t in objs}):
                boxes = np.full((len(frames), 4), np.nan)
                for i, objs in enumerate(per_frame):
                    if track in objs:
                        x0, y0, x1, y1 = objs[track]
                        boxes[i] = (x0 + 1, y0 + 1, x1 - x0 + 1, y1 - y0 + 1)
                out.append(RawSequence(f"{snippet.as_posix()}/{track}", frames, boxes))
        return out


BUILDERS = {"otb": OtbFrames, "got10k": Got10kFrames, "ilsvrc_vid": ImagenetVidFrames}


class FrameRecords:
    """Random access to the frames of a prepared builder, by (sequence index, frame index).

    Attributes:
        names: sequence names, in record order.
        boxes: per sequence, (N, 4) float64 1-based x,y,w,h with NaN rows.
    """

    def __init__(self, builder: tfds.core.DatasetBuilder, split: str = "train"):
        meta = builder.info.metadata
        self._source = builder.as_data_source(split)
        self.names = [name for name, _, _ in meta["sequences"]]
        self._starts = [start for _, start, _ in meta["sequences"]]
        self.boxes = [np.asarray(meta["boxes"][name], np.float64).reshape(-1, 4)
                      for name in self.names]
        total = sum(n for _, _, n in meta["sequences"])
        if total != len(self._source):
            raise TrainingDataError(f"{builder.data_dir}: metadata lists {total} frames but the "
                                    f"split holds {len(self._source)} records; rebuild it")

    def __len__(self) -> int:
        return len(self.names)

    def record(self, seq: int, i: int) -> dict:
        """The decoded record of frame `i` of sequence `seq` (checked against the index)."""
        rec = self._source[self._starts[seq] + i]
        name = rec["sequence"].decode() if isinstance(rec["sequence"], bytes) else rec["sequence"]
        if name != self.names[seq] or int(rec["frame"]) != i:
            raise TrainingDataError(f"record order mismatch: expected {self.names[seq]}[{i}], "
                                    f"found {name}[{int(rec['frame'])}]; rebuild the dataset")
        return rec

    def frame(self, seq: int, i: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB frame `i` (0-based) of sequence `seq`."""
        image = np.asarray(self.record(seq, i)["image"])
        return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def prepare(kind: str, manual_dir, data_dir, *, sequences=None) -> tfds.core.DatasetBuilder:
    """Builds (once; later calls reuse it) a frames dataset from a manual directory.

    Args:
        kind: "otb", "got10k" or "ilsvrc_vid".
        manual_dir: the folder holding the raw data (never downloaded).
        data_dir: where the array_record files are written (a work folder, never ../shared).
        sequences: OTB only: folder names; None = the `train` list of `splits.json`.

    Returns:
        The prepared builder (`FrameRecords(builder)` reads it).
    """
    if kind not in BUILDERS:
        raise ValueError(f"unknown training data kind {kind!r}; known: {sorted(BUILDERS)}")
    kwargs = {}
    if kind == "otb" and sequences is not None:
        refuse_eval_sequences(sequences, eval_names=eval_split_names(manual_dir))
        kwargs["config"] = otb_config(sequences)
    builder = BUILDERS[kind](data_dir=str(data_dir), file_format="array_record", **kwargs)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(manual_dir)))
    return builder


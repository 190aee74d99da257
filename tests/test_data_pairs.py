"""Tests for ctjax.data.tfds_builders and ctjax.data.pairs on small synthetic OTB folders."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import need_data
from ctjax import paths
from ctjax.data import pairs, tfds_builders

HW = (90, 120)


def _frame(center_yx, size_hw, rng):
    """Dark noisy background with a white rectangle (the target)."""
    image = rng.integers(0, 60, (*HW, 3)).astype(np.uint8)
    cy, cx = center_yx
    h, w = size_hw
    image[int(cy - h / 2 + 0.5):int(cy + h / 2 + 0.5), int(cx - w / 2 + 0.5):int(cx + w / 2 + 0.5)] = 255
    return image


def _write_sequence(root, name, n, *, nan_rows=(), seed=0):
    """An OTB folder of `n` PNG frames; the target moves right 2 px per frame."""
    rng = np.random.default_rng(seed)
    folder = root / name
    (folder / "img").mkdir(parents=True)
    lines, frames = [], []
    for i in range(n):
        cy, cx, h, w = 40.0, 30.0 + 2 * i, 12, 16
        frame = _frame((cy, cx), (h, w), rng)
        Image.fromarray(frame).save(folder / "img" / f"{i + 1:04d}.png")
        frames.append(frame)
        # OTB 1-based top-left of the pixel block drawn above (rows 34..45, cols x0..x0+15).
        x0, y0 = int(cx - w / 2 + 0.5), int(cy - h / 2 + 0.5)
        lines.append("NaN,NaN,NaN,NaN" if i in nan_rows else f"{x0 + 1},{y0 + 1},{w},{h}")
    (folder / "groundtruth_rect.txt").write_text("\n".join(lines) + "\n")
    return frames


@pytest.fixture(scope="module")
def otb_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("otb")
    frames = {"seqA": _write_sequence(root, "seqA", 12, nan_rows=(5,), seed=1),
              "seqB": _write_sequence(root, "seqB", 8, seed=2)}
    _write_sequence(root, "evalSeq", 4, seed=3)
    (root / "splits.json").write_text(json.dumps({"train": ["seqA", "seqB"], "eval": ["evalSeq"]}))
    return root, frames


@pytest.fixture(scope="module")
def records(otb_root, tmp_path_factory):
    root, _ = otb_root
    builder = tfds_builders.prepare("otb", root, tmp_path_factory.mktemp("tfds"))
    return tfds_builders.FrameRecords(builder)


def test_builder_reads_the_train_list_and_round_trips_frames_and_boxes(otb_root, records):
    root, frames = otb_root
    assert records.names == ["seqA", "seqB"]
    assert [len(b) for b in records.boxes] == [12, 8]
    np.testing.assert_array_equal(records.frame(0, 3), frames["seqA"][3])  # PNG: lossless
    np.testing.assert_array_equal(records.frame(1, 7), frames["seqB"][7])
    assert np.all(np.isnan(records.boxes[0][5])) and np.isfinite(records.boxes[0][4]).all()
    expected = np.loadtxt(root / "seqB" / "groundtruth_rect.txt", delimiter=",")
    np.testing.assert_allclose(records.boxes[1], expected)
    rec = records.record(0, 2)
    assert rec["sequence"] == b"seqA" and int(rec["frame"]) == 2


def test_eval_split_names_are_refused(otb_root, tmp_path):
    root, _ = otb_root
    with pytest.raises(tfds_builders.TrainingDataError, match="eval split"):
        tfds_builders.prepare("otb", root, tmp_path, sequences=["seqA", "evalSeq"])
    with pytest.raises(tfds_builders.TrainingDataError, match="eval split"):
        pairs.training_source(["seqB", "evalSeq"], data_dir=tmp_path, manual_dir=root)
    # The shared data's eval list is refused even for a folder without splits.json.
    need_data(paths.splits_file)
    with pytest.raises(tfds_builders.TrainingDataError, match="Bird2"):
        pairs.training_source(["Bird2"], data_dir=tmp_path, manual_dir=tmp_path)


def _centroid(crop):
    mask = crop.mean(axis=-1) > 180
    ys, xs = np.nonzero(mask)
    return np.array([ys.mean(), xs.mean()]) + 0.5 - np.array(crop.shape[:2]) / 2  # from centre


def test_pairs_are_centred_on_the_target_shifted_by_the_jitter_and_respect_the_gap(records):
    config = pairs.PairConfig(crop_size=64, context=3.0, max_gap=3, max_jitter=8, jitter_step=4,
                              min_side=4)
    sampler = pairs.PairSampler(records, config)
    batch = sampler.batch(seed=0, index=0, n=24)
    assert batch["template"].shape == (24, 64, 64, 3) and batch["template"].dtype == np.uint8
    for i in range(24):
        seq, t, s = batch["index"][i]
        assert 1 <= s - t <= 3
        assert not (seq == 0 and 5 in (t, s))  # the NaN frame is never used
        # Target 16x12 px in a window of 3 * sqrt(16 * 12) = 41.6 px -> 1.54 crop px per px.
        np.testing.assert_allclose(_centroid(batch["template"][i]), 0.0, atol=1.0)
        np.testing.assert_allclose(_centroid(batch["search"][i]), batch["shift"][i], atol=1.0)
    assert set(np.unique(batch["shift"])) <= {-8.0, -4.0, 0.0, 4.0, 8.0}
    assert np.any(batch["shift"] != 0)
    again = sampler.batch(seed=0, index=0, n=24)
    np.testing.assert_array_equal(again["search"], batch["search"])  # a pure function of (seed, index)
    assert not np.array_equal(sampler.batch(seed=0, index=1, n=24)["index"], batch["index"])


def test_sequence_frames_source_matches_tfds_source(otb_root, records):
    from ctjax.data import sequences

    root, _ = otb_root
    direct = pairs.SequenceFrames([sequences.load_sequence(root / n) for n in ("seqA", "seqB")])
    config = pairs.PairConfig(crop_size=48, context=3.0, max_gap=2, min_side=4)
    a = pairs.PairSampler(direct, config).batch(3, 0, 4)
    b = pairs.PairSampler(records, config).batch(3, 0, 4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_crop_window_geometry_and_border_replication():
    yy, xx = np.mgrid[0:50, 0:60]
    image = np.stack([yy * 4, xx * 4, np.zeros_like(yy)], -1).astype(np.uint8)
    crop = pairs.crop_window(image, (20.0, 30.0), 16.0, out=16, antialias=1)
    # Unit scale: output pixel i samples image point 20 - 8 + i + 0.5 - ... = 12.5 + i - 0.5.
    np.testing.assert_allclose(crop[:, 0, 0], np.rint((12 + np.arange(16) + 0.5) * 4), atol=1)
    corner = pairs.crop_window(image, (0.0, 0.0), 40.0, out=20)
    assert corner[0, 0, 0] == 0 and corner[0, 0, 1] == 0  # outside: border replicated


def test_sampler_rejects_sequences_without_a_usable_pair():
    class Empty:
        names = ["x"]
        boxes = [np.full((3, 4), np.nan)]

        def frame(self, seq, i):
            raise AssertionError("no frame should be read")

    with pytest.raises(ValueError, match="valid frames"):
        pairs.PairSampler(Empty(), pairs.PairConfig())


def _png(path, value=100, hw=(20, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", hw[::-1], (value, value, value)).save(path)


def test_got10k_layout_with_absence_labels(tmp_path):
    seq = tmp_path / "raw" / "train" / "GOT-10k_Train_000001"
    for i in range(3):
        _png(seq / f"{i + 1:08d}.jpg".replace(".jpg", ".png"), 50 * i)
    (seq / "groundtruth.txt").write_text("0,1,10,8\n2,3,10,8\n4,5,10,8\n")
    (seq / "absence.label").write_text("0\n1\n0\n")
    records = tfds_builders.FrameRecords(
        tfds_builders.prepare("got10k", tmp_path / "raw", tmp_path / "tfds"))
    assert records.names == ["GOT-10k_Train_000001"]
    np.testing.assert_allclose(records.boxes[0][0], [1, 2, 10, 8])  # 0-based -> OTB 1-based
    assert np.all(np.isnan(records.boxes[0][1]))  # absent
    assert records.frame(0, 2)[0, 0, 0] == 100


def test_ilsvrc_vid_layout_one_sequence_per_track(tmp_path):
    snippet = "ILSVRC2015_VID_train_0000/ILSVRC2015_train_00000000"
    data = tmp_path / "raw" / "Data" / "VID" / "train" / snippet
    ann = tmp_path / "raw" / "Annotations" / "VID" / "train" / snippet
    ann.mkdir(parents=True)
    for i in range(2):
        _png(data / f"{i:06d}.JPEG", 10 * i)
        objects = "".join(
            f"<object><trackid>{t}</trackid><bndbox><xmin>{x}</xmin><ymin>2</ymin>"
            f"<xmax>{x + 9}</xmax><ymax>11</ymax></bndbox></object>"
            for t, x in ((0, 1), (1, 5)) if not (t == 1 and i == 0))
        (ann / f"{i:06d}.xml").write_text(f"<annotation>{objects}</annotation>")
    records = tfds_builders.FrameRecords(
        tfds_builders.prepare("ilsvrc_vid", tmp_path / "raw", tmp_path / "tfds"))
    assert records.names == [f"{snippet}/0", f"{snippet}/1"]
    np.testing.assert_allclose(records.boxes[0], [[2, 3, 10, 10], [2, 3, 10, 10]])
    assert np.all(np.isnan(records.boxes[1][0])) and np.isfinite(records.boxes[1][1]).all()
    np.testing.assert_array_equal(records.frame(1, 1), records.frame(0, 1))

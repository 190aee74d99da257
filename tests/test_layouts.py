"""Tests of ctjax.data.layouts: each benchmark layout built in tmp_path from the shared
sequences (frames as symlinks, renumbered as each benchmark numbers them), then loaded and
checked frame by frame: row i of the boxes must belong to the image file that frame i reads.

The references are the shared OTB-format folders themselves (frame k of a shared sequence is
line k of its box file, checked by eye when the data was collected, SOURCES.md) and, for
VOT polygons, the data folder's own conversion `groundtruth_rect.txt` beside
`groundtruth_polygon_vot.txt` (SOURCES.md).
"""

import numpy as np
import pytest

from conftest import need_data
from ctjax import paths
from ctjax.data import layouts, sequences
from ctjax.data.sequences import SequenceError


def shared(name):
    folder = need_data(paths.sequence_dir, name)
    return folder, sequences.load_sequence(folder)


def link_frames(dst_dir, src_paths, numbers, digits, ext=".jpg"):
    """dst_dir/<number, zero-padded>.jpg -> src for each pair."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    for n, src in zip(numbers, src_paths):
        (dst_dir / f"{n:0{digits}d}{ext}").symlink_to(src)


def write_boxes(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(",".join(f"{v:g}" for v in r) + "\n" for r in rows))


def assert_aligned(seq, src_paths, src_boxes):
    """Frame i of `seq` is the file `src_paths[i]` and row i its box."""
    assert len(seq) == len(src_paths)
    assert [p.resolve() for p in seq.frame_paths] == [p.resolve() for p in src_paths]
    np.testing.assert_array_equal(seq.boxes, src_boxes)


def test_shared_data_folder_is_otb_and_loads_as_before():
    root = need_data(paths.sequences_dir)
    assert layouts.detect_layout(root) == "otb"
    names = layouts.sequence_names(root)
    assert {"David", "Jogging2", "bag", "boat1"} <= set(names)
    for name in ("David", "bag"):
        ref = sequences.load_sequence(root / name)
        assert_aligned(layouts.load_sequence(root, name), ref.frame_paths, ref.boxes)


def test_stock_otb_frame_ranges_and_two_targets(tmp_path):
    david_dir, david = shared("David")       # shared: OTB frames 300..770 renumbered 1..471
    _, bolt = shared("Bolt")
    jog_dir, jog = shared("Jogging2")
    _, girl = shared("Girl2")
    root = tmp_path / "OTB100"
    # David as shipped by OTB: 770 images, boxes for 300..770 only.
    link_frames(root / "David/img", [bolt.frame_paths[0]] * 299, range(1, 300), 4)
    link_frames(root / "David/img", david.frame_paths, range(300, 771), 4)
    write_boxes(root / "David/groundtruth_rect.txt", david.boxes)
    # Diving: 231 images, 215 boxes.
    link_frames(root / "Diving/img", bolt.frame_paths[:231], range(1, 232), 4)
    write_boxes(root / "Diving/groundtruth_rect.txt", bolt.boxes[:215])
    # Tiger1: 354 images and 354 boxes, tracked from frame 6 (rows by absolute frame).
    link_frames(root / "Tiger1/img", girl.frame_paths[:354], range(1, 355), 4)
    write_boxes(root / "Tiger1/groundtruth_rect.txt", girl.boxes[:354])
    # Jogging: two targets, one image folder.
    other = jog.boxes + [5, 0, 0, 0]
    link_frames(root / "Jogging/img", jog.frame_paths, range(1, 308), 4)
    write_boxes(root / "Jogging/groundtruth_rect.1.txt", other)
    write_boxes(root / "Jogging/groundtruth_rect.2.txt", jog.boxes)
    # Board: five-digit frame names.
    link_frames(root / "Board/img", bolt.frame_paths[:20], range(1, 21), 5)
    write_boxes(root / "Board/groundtruth_rect.txt", bolt.boxes[:20])

    assert layouts.detect_layout(root) == "otb"
    assert layouts.sequence_names(root) == ["Board", "David", "Diving", "Jogging-1",
                                            "Jogging-2", "Tiger1"]
    assert_aligned(layouts.load_sequence(root, "David"), david.frame_paths, david.boxes)
    assert_aligned(layouts.load_sequence(root, "Diving"), bolt.frame_paths[:215],
                   bolt.boxes[:215])
    assert_aligned(layouts.load_sequence(root, "Tiger1"), girl.frame_paths[5:354],
                   girl.boxes[5:354])
    assert_aligned(layouts.load_sequence(root, "Jogging-2"), jog.frame_paths, jog.boxes)
    assert_aligned(layouts.load_sequence(root, "Jogging-1"), jog.frame_paths, other)
    assert_aligned(layouts.load_sequence(root, "Board"), bolt.frame_paths[:20], bolt.boxes[:20])
    # Pixels too: the decoded frame 0 of stock David is the shared David's frame 0.
    np.testing.assert_array_equal(layouts.load_sequence(root, "David").frame(0), david.frame(0))
    assert [s.name for s in layouts.load_sequences(root, names=["Jogging-2", "Board"])] == \
        ["Jogging-2", "Board"]


def test_otb_mismatch_without_known_range_is_an_error(tmp_path):
    _, bolt = shared("Bolt")
    link_frames(tmp_path / "Mystery/img", bolt.frame_paths[:12], range(1, 13), 4)
    write_boxes(tmp_path / "Mystery/groundtruth_rect.txt", bolt.boxes[:10])
    with pytest.raises(SequenceError, match=r"10 boxes but 12 frames.*no known frame range"):
        layouts.load_sequence(tmp_path, "Mystery")
    with pytest.raises(SequenceError, match="not found"):
        layouts.load_sequence(tmp_path, "Nothing")


def test_uav123_subsequences_both_frame_rates(tmp_path):
    _, girl = shared("Girl2")                # 1500 frames stand in for one long UAV video
    boat_dir, boat = shared("boat1")         # a real UAV123@10fps sequence
    root = tmp_path / "UAV123"
    link_frames(root / "data_seq/UAV123/bird1", girl.frame_paths, range(1, 1501), 6)
    rows = girl.boxes[774:1477].copy()       # bird1_2 = frames 775..1477 (configSeqs.m)
    write_boxes(root / "anno/UAV123/bird1_2.txt", rows)
    link_frames(root / "data_seq/UAV123_10fps/car1", girl.frame_paths[:877], range(1, 878), 6)
    write_boxes(root / "anno/UAV123_10fps/car1_2.txt", girl.boxes[250:543])  # 251..543
    link_frames(root / "data_seq/UAV123_10fps/boat1", boat.frame_paths, range(1, 302), 6)
    with_nan = boat.boxes.copy()
    with_nan[3] = np.nan
    (root / "anno/UAV123_10fps").mkdir(parents=True, exist_ok=True)
    (root / "anno/UAV123_10fps/boat1.txt").write_text("".join(
        "NaN,NaN,NaN,NaN\n" if np.isnan(r).any() else ",".join(map(str, r)) + "\n"
        for r in with_nan))

    assert layouts.detect_layout(root) == "uav123"
    assert layouts.sequence_names(root) == ["UAV123/bird1_2", "UAV123_10fps/boat1",
                                            "UAV123_10fps/car1_2"]
    assert_aligned(layouts.load_sequence(root, "UAV123/bird1_2"), girl.frame_paths[774:1477],
                   rows)
    car = layouts.load_sequence(root, "UAV123_10fps/car1_2")
    assert car.name == "car1_2"
    assert_aligned(car, girl.frame_paths[250:543], girl.boxes[250:543])
    assert_aligned(layouts.load_sequence(root, "UAV123_10fps/boat1"), boat.frame_paths, with_nan)


def test_uav123_10fps_ranges_are_the_published_ones():
    # UAV123_10fps/configSeqs.m (vision4robotics/OMAL-tracker), a few sub-sequences.
    published = {("bird1", 2): (259, 493), ("bird1", 3): (525, 813), ("uav1", 3): (825, 1157),
                 ("car6", 5): (1309, 1621), ("group3", 4): (1457, 1843)}
    for (video, k), expect in published.items():
        first, last = layouts.UAV123_RANGES[video][k - 1]
        assert ((first - 1) // 3 + 1, (last - 1) // 3 + 1) == expect


def test_got10k_absence_and_test_split(tmp_path):
    _, cross = shared("Crossing")
    root = tmp_path / "GOT-10k"
    val = root / "val/GOT-10k_Val_000001"
    link_frames(val, cross.frame_paths, range(1, 121), 8)
    write_boxes(val / "groundtruth.txt", cross.boxes)
    absent = np.zeros(120, int)
    absent[[10, 11, 50]] = 1
    (val / "absence.label").write_text("\n".join(map(str, absent)) + "\n")
    test = root / "test/GOT-10k_Test_000001"
    link_frames(test, cross.frame_paths[:30], range(1, 31), 8)
    write_boxes(test / "groundtruth.txt", cross.boxes[:1])

    assert layouts.detect_layout(root) == "got10k"
    assert layouts.sequence_names(root) == ["test/GOT-10k_Test_000001", "val/GOT-10k_Val_000001"]
    expect = cross.boxes.copy()
    expect[[10, 11, 50]] = np.nan
    seq = layouts.load_sequence(root, "val/GOT-10k_Val_000001")
    assert seq.name == "GOT-10k_Val_000001"
    assert_aligned(seq, cross.frame_paths, expect)
    kept = layouts.load_sequence(root, "val/GOT-10k_Val_000001", keep_absent=True)
    np.testing.assert_array_equal(kept.boxes, cross.boxes)
    first_only = np.vstack([cross.boxes[:1], np.full((29, 4), np.nan)])
    assert_aligned(layouts.load_sequence(root, "test/GOT-10k_Test_000001"),
                   cross.frame_paths[:30], first_only)
    # A split folder on its own is a GOT-10k root too.
    assert layouts.sequence_names(root / "val") == ["GOT-10k_Val_000001"]
    (val / "absence.label").write_text("0\n1\n")
    with pytest.raises(SequenceError, match="2 flags for 120 frames"):
        layouts.load_sequence(root, "val/GOT-10k_Val_000001")


def test_lasot_occlusion_and_out_of_view(tmp_path):
    _, ski = shared("Skiing")
    seq_dir = tmp_path / "LaSOT/person/person-3"
    link_frames(seq_dir / "img", ski.frame_paths, range(1, 82), 8)
    write_boxes(seq_dir / "groundtruth.txt", ski.boxes)
    occ, oov = np.zeros(81, int), np.zeros(81, int)
    occ[[5, 6]] = 1
    oov[[40]] = 1
    (seq_dir / "full_occlusion.txt").write_text(",".join(map(str, occ)))
    (seq_dir / "out_of_view.txt").write_text(",".join(map(str, oov)))
    root = tmp_path / "LaSOT"
    assert layouts.detect_layout(root) == "lasot"
    assert layouts.sequence_names(root) == ["person-3"]
    expect = ski.boxes.copy()
    expect[[5, 6, 40]] = np.nan
    assert_aligned(layouts.load_sequence(root, "person-3"), ski.frame_paths, expect)
    np.testing.assert_array_equal(
        layouts.load_sequence(root, "person-3", keep_absent=True).boxes, ski.boxes)


def test_vot_polygons_and_rectangles(tmp_path):
    bag_dir, bag = shared("bag")
    _, cross = shared("Crossing")
    root = tmp_path / "vot2016"
    link_frames(root / "bag/color", bag.frame_paths, range(1, 197), 8)
    (root / "bag/groundtruth.txt").write_text(
        (bag_dir / "groundtruth_polygon_vot.txt").read_text())
    link_frames(root / "crossing", cross.frame_paths[:10], range(1, 11), 8)  # frames in place
    write_boxes(root / "crossing/groundtruth.txt", cross.boxes[:10] - [1, 1, 0, 0])
    (root / "list.txt").write_text("bag\ncrossing\n")

    assert layouts.detect_layout(root) == "vot"
    assert layouts.sequence_names(root) == ["bag", "crossing"]
    seq = layouts.load_sequence(root, "bag")
    assert [p.resolve() for p in seq.frame_paths] == [p.resolve() for p in bag.frame_paths]
    # The data folder's conversion was written with 2 decimals.
    np.testing.assert_allclose(seq.boxes, bag.boxes, atol=0.006)
    assert_aligned(layouts.load_sequence(root, "crossing"), cross.frame_paths[:10],
                   cross.boxes[:10])
    (root / "crossing/groundtruth.txt").write_text("m1,2,3\n" * 10)
    with pytest.raises(SequenceError, match="masks"):
        layouts.load_sequence(root, "crossing")


def test_unknown_layout_is_a_clear_error(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(SequenceError, match="cannot tell the benchmark layout"):
        layouts.detect_layout(tmp_path)
    with pytest.raises(SequenceError, match="does not exist"):
        layouts.sequence_names(tmp_path / "nope")
    with pytest.raises(SequenceError, match="unknown layout"):
        layouts.sequence_names(tmp_path, layout="trackingnet")

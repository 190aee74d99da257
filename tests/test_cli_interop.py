"""The command line's interoperability parts (issue 12): `--set`, `--layout`, per-frame score
files, `--gt-rule`, `--result-layout got10k/pysot`, the eval progress bar, large frames and
streamed video.

References are independent of the code under test: scores are checked against a run of
`ctjax.Tracker` on the same frames and against a NumPy re-derivation of the relative-score
rule; benchmark folders are built here from the shipped demo clip (OTB Woman) and their
ground truth read back with NumPy; exported files are read as the GOT-10k toolkit and pysot
read them (`np.loadtxt(..., delimiter=",")`). Evaluations run in this process with the
worker pool replaced by a serial loop (the pool has its own tests, one here for its progress
events); everything tracks with `gradhist`, a few frames per sequence.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctjax import api
from ctjax import commands as cli
from ctjax import evaluation
from ctjax import results
from ctjax.commands import evaluate, workers
from ctjax.data import sequences, sources
from ctjax.trackers import settings
from ctjax.trackers.dcf import TrackerConfig

DEMO = sequences.demo_sequence()
CODE = {"ctjax_version": "test", "source_sha256": "0" * 64, "git_commit": None}


def _tiny(root: Path, n=8, hw=(48, 64), boxes_files=("groundtruth_rect.txt",)) -> Path:
    """An OTB-format folder: a bright square moving right one pixel per frame."""
    (root / "img").mkdir(parents=True)
    for i in range(n):
        a = np.full(hw + (3,), 40, np.uint8)
        a[16:32, 20 + i:36 + i] = 220
        Image.fromarray(a).save(root / "img" / f"{i + 1:04d}.png")
    for k, name in enumerate(boxes_files):
        (root / name).write_text("".join(f"{21 + i + k},{17 + k},16,16\n" for i in range(n)))
    return root


def _one_line(capsys, argv, command):
    code = cli.main(argv, one_line_errors=True)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"ctjax {command}: error: "), err
    return err


_COMPILED: dict = {}  # trackers compiled by the serial "workers", kept across tests


@pytest.fixture
def in_process(monkeypatch):
    """Eval tasks run serially in this process; the code part of result keys is fixed."""
    def serial_pool(tasks, cores, run_task, on_event, *, initializer=None):
        for i, args in enumerate(tasks):
            try:
                on_event(i, "done", run_task(*args))
            except Exception as e:
                on_event(i, "failed", f"{type(e).__name__}: {e}")

    _COMPILED.setdefault("probe", "in-process test")
    monkeypatch.setattr(evaluate, "_WORKER", _COMPILED)
    monkeypatch.setattr(workers, "run_pool", serial_pool)
    monkeypatch.setattr(results, "code_version", lambda: dict(CODE))


# --------------------------------------------------------------------------------------------
# --set


def test_settings_are_typed_from_the_config_fields():
    from ctjax.trackers.eco import EcoConfig

    base = TrackerConfig()
    c = settings.apply_settings(base, [("patch_size", "160"), ("learning_rate", "0.01"),
                                    ("canvas_hw", "480,640")])
    assert (c.patch_size, c.learning_rate, c.canvas_hw) == (160, 0.01, (480, 640))
    assert type(c.patch_size) is int and type(c.canvas_hw[0]) is int
    assert settings.apply_settings(base, []) is base
    eco = settings.apply_settings(EcoConfig(), [("filter.cg_iter", "3"),
                                             ("use_scale_filter", "false"),
                                             ("scale.num_scales", "9")])
    assert eco.filter.cg_iter == 3 and eco.use_scale_filter is False
    assert eco.scale.num_scales == 9 and eco.filter.init_cg_iter == EcoConfig().filter.init_cg_iter
    assert settings.parse_setting("b:learning_rate = 0.02", labels=True) == \
        ("b", "learning_rate", "0.02")
    assert settings.parse_setting("lam=1e-3") == (None, "lam", "1e-3")


@pytest.mark.parametrize("pairs, message", [
    ([("nope", "1")], "TrackerConfig has no field 'nope'; its fields: patch_size, "),
    ([("patch_size", "1.5")], "patch_size must be int, got '1.5'"),
    ([("learning_rate", "fast")], "learning_rate must be float"),
    ([("learning_rate", "nan")], "learning_rate must be float"),
    ([("canvas_hw", "1,2,3")], "canvas_hw must be 2 comma-separated values"),
    ([("num_scales", "2")], "--set num_scales=2: num_scales must be odd and positive"),
    ([("lam", "1"), ("lam", "2")], "--set lam is given more than once"),
    ([("lam.x", "1")], "lam is a single value, not a group of settings"),
])
def test_bad_settings_name_the_problem(pairs, message):
    with pytest.raises(settings.SettingError, match=message.replace("(", r"\(")):
        settings.apply_settings(TrackerConfig(), pairs)


def test_nested_groups_and_flags():
    from ctjax.trackers.eco import EcoConfig

    with pytest.raises(settings.SettingError, match="filter is a group of settings; set its "
                                                    "fields: filter.cg_iter"):
        settings.apply_settings(EcoConfig(), [("filter", "3")])
    with pytest.raises(settings.SettingError, match="use_scale_filter must be true or false"):
        settings.apply_settings(EcoConfig(), [("use_scale_filter", "maybe")])
    with pytest.raises(settings.SettingError, match="expected KEY=VALUE"):
        settings.parse_setting("learning_rate")
    with pytest.raises(settings.SettingError, match="track takes KEY=VALUE"):
        settings.parse_setting("a:lam=1")
    assert issubclass(settings.SettingError, ValueError)  # the commands' one-line errors


def test_a_preset_without_a_config_refuses_settings(monkeypatch):
    """`build_tracker` turns a builder's TypeError about `config` into a SettingError;
    nothing changes (the default build itself) without settings."""
    from ctjax.trackers import presets

    calls = []

    def builder(*, weights=None):  # a plug-in preset that takes no config
        calls.append(weights)
        return presets.BuiltTracker(name="noconfig", tracker=None, params=None,
                                    config=TrackerConfig(), extractor=None, weights="none")

    monkeypatch.setitem(presets.PRESETS, "noconfig", "a preset without a config")
    monkeypatch.setitem(presets._BUILDERS, "noconfig", builder)
    default = settings.build_tracker("noconfig")
    assert settings.build_tracker("noconfig", default=default) is default
    with pytest.raises(settings.SettingError, match="'noconfig' takes no config"):
        settings.build_tracker("noconfig", settings=[("lam", "1")], default=default)
    assert calls == [None]


def test_set_errors_are_one_line_with_exit_2(tmp_path, capsys):
    out = str(tmp_path / "b.txt")
    err = _one_line(capsys, ["track", "--demo", "--tracker", "gradhist", "--set", "nope=1",
                             "--output", out], "track")
    assert "TrackerConfig has no field 'nope'" in err
    err = _one_line(capsys, ["track", "--demo", "--tracker", "gradhist", "--set",
                             "patch_size=abc", "--output", out], "track")
    assert "patch_size must be int, got 'abc'" in err
    base = ["eval", "--sequences", str(_tiny(tmp_path / "s")), "--output", str(tmp_path / "o")]
    err = _one_line(capsys, base + ["--trackers", "a=gradhist", "--set", "b:lam=1"], "eval")
    assert "no tracker is labelled 'b' (labels: a)" in err
    err = _one_line(capsys, base + ["--trackers", "gradhist", "--set", "lam"], "eval")
    assert "expected [LABEL:]KEY=VALUE" in err
    err = _one_line(capsys, base + ["--trackers", "gradhist", "--set", "lam=x"], "eval")
    assert "tracker gradhist: --set lam=x: lam must be float" in err
    err = _one_line(capsys, base + ["--trackers", "got10k=gradhist", "--result-layout",
                                    "got10k"], "eval")
    assert "label 'got10k' would share its folder" in err
    assert not (tmp_path / "b.txt").exists() and not any((tmp_path / "o").rglob("*.txt"))


# --------------------------------------------------------------------------------------------
# track: score files, large frames, layouts


def test_track_scores_are_those_of_ctjax_tracker(tmp_path, capsys):
    seq_dir = _tiny(tmp_path / "s", n=14)
    out = tmp_path / "res" / "b.txt"
    assert cli.main(["track", str(seq_dir), "--tracker", "gradhist", "--output", str(out),
                     "--no-progress"]) == 0
    assert "per-frame scores" in capsys.readouterr().out
    boxes = evaluation.read_boxes(out, num_frames=14)
    rec = evaluation.read_frame_scores(tmp_path / "res" / "b.scores.csv", num_frames=14)
    # The same frames through the Python tracker object.
    seq = sequences.load_sequence(seq_dir)
    tracker = api.Tracker("gradhist")
    tracker.init(seq.frame(0), seq.boxes[0])
    updates = [tracker.update(seq.frame(i)) for i in range(1, 14)]
    np.testing.assert_allclose(boxes[1:], [u.box for u in updates], atol=1e-3)
    np.testing.assert_allclose(rec.score[1:], [u.score for u in updates], rtol=1e-4)
    np.testing.assert_array_equal(rec.ok[1:], [u.ok for u in updates])
    # The rule re-derived: peak / median of the first (up to) 10 tracked peaks.
    peaks = rec.peak[1:]
    ref = [peaks[k] / np.median(peaks[:min(k + 1, 10)]) for k in range(13)]
    np.testing.assert_allclose(rec.score[1:], ref, rtol=1e-6)
    assert np.isnan(rec.score[0]) and rec.ok[0] and (rec.seconds > 0).all()
    threshold = api.CONFIDENCE["gradhist"].threshold
    np.testing.assert_array_equal(rec.ok[1:], np.asarray(ref) >= threshold)


def test_track_refuses_a_score_file_over_its_outputs(tmp_path, capsys):
    out = str(tmp_path / "b.txt")
    err = _one_line(capsys, ["track", "--demo", "--tracker", "gradhist", "--output", out,
                             "--scores", out], "track")
    assert "would overwrite --output or --video" in err


def test_frames_larger_than_the_canvas_get_one_that_holds_them(tmp_path):
    from ctjax.ops.crop import canvas_for

    base = TrackerConfig()
    assert settings.fit_canvas(base, (480, 640)) is base
    assert settings.fit_canvas(base, (1080, 1920)).canvas_hw == canvas_for((1080, 1920))
    assert settings.fit_canvas(base, (800, 64)).canvas_hw == canvas_for((800, 64))
    kept = settings.tracker_config(base, [("canvas_hw", "720,1280")], (1080, 1920))
    assert kept.canvas_hw == (720, 1280)  # set explicitly: left alone
    # A portrait sequence taller than the default 720-row canvas tracks end to end.
    seq = _tiny(tmp_path / "tall", n=4, hw=(800, 64))
    assert cli.main(["track", str(seq), "--tracker", "gradhist", "--output",
                     str(tmp_path / "b.txt"), "--no-progress"]) == 0
    assert evaluation.read_boxes(tmp_path / "b.txt").shape == (4, 4)


def test_track_picks_one_target_of_a_stock_otb_folder(tmp_path, capsys):
    root = tmp_path / "OTB100"
    jog = _tiny(root / "Jogging", n=5, boxes_files=("groundtruth_rect.1.txt",
                                                    "groundtruth_rect.2.txt"))
    _tiny(root / "Flat", n=4)
    found = sources.resolve_sources(root)
    assert [(s.layout, s.label) for s in found] == [
        ("otb", "Flat"), ("otb100", "Jogging-1"), ("otb100", "Jogging-2")]
    gt2 = np.loadtxt(jog / "groundtruth_rect.2.txt", delimiter=",")
    np.testing.assert_array_equal(found[2].load().boxes, gt2)
    assert [s.label for s in sources.resolve_sources(root, "otb")] == ["Flat"]
    out = str(tmp_path / "b.txt")
    err = _one_line(capsys, ["track", str(jog), "--tracker", "gradhist", "--output", out],
                    "track")
    assert "holds 2 otb100 sequences (Jogging-1, Jogging-2); choose one with --sequence" in err
    err = _one_line(capsys, ["track", str(root), "--sequence", "Nope", "--tracker",
                             "gradhist", "--output", out], "track")
    assert "--sequence 'Nope' is not in" in err and "Jogging-2" in err
    assert cli.main(["track", str(root), "--sequence", "Jogging-2", "--tracker", "gradhist",
                     "--output", out, "--no-progress"]) == 0
    np.testing.assert_array_equal(evaluation.read_boxes(out)[0], gt2[0])


# --------------------------------------------------------------------------------------------
# eval over benchmark folders, exports, the ground-truth rule, settings in the key


def _got10k_root(root: Path) -> tuple[Path, dict]:
    """Two GOT-10k sequences from demo frames; frame 5 of the first flagged absent."""
    gts = {}
    for name, start, n in (("GOT-10k_Val_000001", 0, 8), ("GOT-10k_Val_000002", 30, 6)):
        d = root / name
        d.mkdir(parents=True)
        for i in range(n):
            shutil.copy(DEMO.frame_paths[start + i], d / f"{i + 1:08d}.jpg")
        gt = DEMO.boxes[start:start + n]
        np.savetxt(d / "groundtruth.txt", gt, fmt="%.4f", delimiter=",")
        absent = np.zeros(n, int)
        if start == 0:
            absent[4] = 1
        np.savetxt(d / "absence.label", absent, fmt="%d")
        gts[name] = (np.loadtxt(d / "groundtruth.txt", delimiter=","), absent)
    return root, gts


def test_eval_over_a_got10k_folder_with_exports(tmp_path, in_process, capsys):
    root, gts = _got10k_root(tmp_path / "GOT-10k")
    out = tmp_path / "out"
    args = ["eval", "--sequences", str(root), "--layout", "got10k", "--trackers", "gradhist",
            "--output", str(out), "--result-layout", "got10k", "pysot", "--no-progress"]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "2 to run" in text and "ETA" in text and "OP50" in text
    summary = json.loads((out / "summary.json").read_text())["gradhist"]
    for name, (gt, absent) in gts.items():
        boxes = evaluation.read_boxes(out / "gradhist" / f"{name}.txt", num_frames=len(gt))
        rec = evaluation.read_frame_scores(out / "gradhist" / f"{name}.scores.csv")
        meta = json.loads((out / "gradhist" / f"{name}.json").read_text())
        assert meta["key"]["layout"] == "got10k" and meta["frames"] == len(gt)
        # Scored on the visible frames only (the GOT-10k rule), frame i against box i.
        visible = gt.copy()
        visible[absent == 1] = np.nan
        ref = evaluation.evaluate_sequence(boxes, visible)
        assert summary["sequences"][name]["auc"] == pytest.approx(ref.auc)
        assert summary["sequences"][name]["op50"] == pytest.approx(ref.op50)
        got = out / "got10k" / "gradhist" / name
        np.testing.assert_allclose(np.loadtxt(got / f"{name}_001.txt", delimiter=","), boxes)
        np.testing.assert_allclose(np.loadtxt(got / f"{name}_time.txt", delimiter=","),
                                   rec.seconds, atol=1e-8)
        np.testing.assert_allclose(
            np.loadtxt(out / "pysot" / "gradhist" / f"{name}.txt", delimiter=","), boxes)
    md = (out / "summary.md").read_text()
    assert "| tracker | AUC | OP50 | OP75 |" in md and "--gt-rule ctjax" in md
    # Detected layout: the same keys, nothing rerun; the OTB rule rescored, nothing rerun.
    assert cli.main(["eval", "--sequences", str(root), "--trackers", "gradhist", "--output",
                     str(out), "--gt-rule", "otb", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "0 to run, 2 already done" in text
    assert "OTB toolkit rule" in (out / "summary.md").read_text()
    assert json.loads((out / "summary.json").read_text())["gradhist"]["gt_rule"] == "otb"
    # A setting is part of the key: both results are rerun, and say why.
    assert cli.main(["eval", "--sequences", str(root), "--trackers", "gradhist", "--output",
                     str(out), "--set", "learning_rate=0.02", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "2 to run" in text and "it was made by a different config" in text
    meta = json.loads((out / "gradhist" / "GOT-10k_Val_000001.json").read_text())
    assert meta["key"]["settings"] == ["learning_rate=0.02"]
    assert "learning_rate=0.02" in meta["key"]["config"]
    assert "## gradhist (gradhist; --set learning_rate=0.02)" in (out / "summary.md").read_text()
    err = _one_line(capsys, ["eval", "--sequences", str(root), "--layout", "lasot",
                             "--output", str(out)], "eval")
    assert "holds no lasot sequence" in err


def test_eval_settings_per_label_and_vot_coordinates(tmp_path, in_process, capsys):
    root = tmp_path / "vot"
    d = root / "clip"
    (d / "color").mkdir(parents=True)
    for i in range(5):
        shutil.copy(DEMO.frame_paths[i], d / "color" / f"{i + 1:08d}.jpg")
    zero_based = DEMO.boxes[:5] - [1, 1, 0, 0]
    np.savetxt(d / "groundtruth.txt", zero_based, fmt="%.2f", delimiter=",")
    out = tmp_path / "out"
    assert cli.main(["eval", "--sequences", str(root), "--trackers", "a=gradhist",
                     "b=gradhist", "--set", "b:learning_rate=0.02", "--output", str(out),
                     "--result-layout", "pysot", "--no-progress"]) == 0
    key_a = json.loads((out / "a" / "clip.json").read_text())["key"]
    key_b = json.loads((out / "b" / "clip.json").read_text())["key"]
    assert key_a["layout"] == "vot" and "settings" not in key_a
    assert "learning_rate=0.006" in key_a["config"] and key_b["settings"] == [
        "learning_rate=0.02"]
    ours = evaluation.read_boxes(out / "a" / "clip.txt")
    np.testing.assert_allclose(ours[0], np.loadtxt(d / "groundtruth.txt", delimiter=",")[0] +
                               [1, 1, 0, 0])  # read 0-based, tracked 1-based
    exported = np.loadtxt(out / "pysot" / "a" / "clip.txt", delimiter=",")
    np.testing.assert_allclose(exported, ours - [1, 1, 0, 0])  # back in VOT's coordinates
    np.testing.assert_allclose(exported[0], zero_based[0], atol=0.006)
    # Two shards and their merge: the layout and the settings travel in the manifests.
    for k in (1, 2):
        assert cli.main(["eval", "--sequences", str(root), "--trackers", "a=gradhist",
                         "b=gradhist", "--set", "b:learning_rate=0.02", "--output",
                         str(tmp_path / f"s{k}"), "--shard", f"{k}/2", "--no-progress"]) == 0
    capsys.readouterr()
    assert cli.main(["eval", "--merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--output",
                     str(tmp_path / "merged"), "--result-layout", "pysot"]) == 0
    for label in ("a", "b"):
        for f in (f"{label}/clip.txt", f"pysot/{label}/clip.txt"):
            assert (tmp_path / "merged" / f).read_bytes() == (out / f).read_bytes(), f
        merged, whole = (evaluation.read_frame_scores(d / label / "clip.scores.csv")
                         for d in (tmp_path / "merged", out))
        np.testing.assert_array_equal(merged.score, whole.score)  # times differ, scores not
        np.testing.assert_array_equal(merged.ok, whole.ok)
    assert "b (gradhist; --set learning_rate=0.02)" in (tmp_path / "merged" / "summary.md"
                                                         ).read_text()
    err = _one_line(capsys, ["eval", "--merge", str(tmp_path / "s1"), "--layout", "vot",
                             "--output", str(tmp_path / "m2")], "eval")
    assert "drop --layout" in err


# --------------------------------------------------------------------------------------------
# Progress


def test_frame_progress_counts_frames_and_estimates_the_time_left():
    now = [100.0]
    p = evaluate.FrameProgress([10, 30], clock=lambda: now[0], status_seconds=30)
    assert p.eta() is None and p.status() == "0/40 frames, elapsed 0 s, ETA ?"
    now[0] = 110.0
    p.update(0, 5)
    assert p.eta() == pytest.approx(10 * 35 / 5)
    assert p.status() == "5/40 frames, elapsed 10 s, ETA 1 min 10 s"
    p.update(0, 3)                       # never goes back
    p.update(1, 100)                     # never past a task's frames
    assert p.done == [5, 30]
    p.finish(0)
    assert p.eta() == 0.0
    assert not p.status_due()            # 10 s since the start
    now[0] = 131.0
    assert p.status_due() and not p.status_due()
    assert evaluate._duration(3725) == "1 h 02 min"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_eval_shows_a_bar_on_a_terminal_only(tmp_path, in_process, monkeypatch, capsys):
    seq = _tiny(tmp_path / "s", n=6)
    args = ["eval", "--sequences", str(seq), "--trackers", "gradhist"]
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli.main(args + ["--output", str(tmp_path / "o1")]) == 0
    assert "eval: 100%" in terminal.getvalue() and "6/6" in terminal.getvalue()
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli.main(args + ["--output", str(tmp_path / "o2"), "--no-progress"]) == 0
    assert terminal.getvalue() == ""
    # Not a terminal: no bar; the per-task line carries the frame count and ETA.
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert cli.main(args + ["--output", str(tmp_path / "o3")]) == 0
    assert sys.stderr.getvalue() == ""
    assert "(6/6 frames, elapsed" in capsys.readouterr().out


def _stepper(n):
    for k in range(1, n + 1):
        time.sleep(workers.PROGRESS_SECONDS + 0.05)
        workers.report_progress(k)
    return n


def test_workers_report_progress_before_done():
    events = []
    workers.run_pool([(3,)], [0], _stepper, lambda i, kind, value: events.append((kind, value)))
    assert events[-1] == ("done", 3)
    progress = [v for kind, v in events[:-1] if kind == "progress"]
    assert len(progress) >= 2 and progress == sorted(progress) and progress[-1] <= 3
    workers.report_progress(1)  # outside a worker: nothing happens


# --------------------------------------------------------------------------------------------
# Streamed video


def _moving_square_video(path: Path, n=20, hw=(64, 96)):
    iio = pytest.importorskip("imageio.v2", reason="video tests need the optional video "
                                                   "dependency: pip install 'ctjax[video]'")
    pytest.importorskip("imageio_ffmpeg", reason="mp4 needs the optional video dependency: "
                                                 "pip install 'ctjax[video]' (imageio-ffmpeg)")
    frames = []
    for i in range(n):
        a = np.full(hw + (3,), 40, np.uint8)
        a[24:40, 20 + 2 * i:36 + 2 * i] = 220
        frames.append(a)
    iio.mimwrite(path, frames, fps=10, macro_block_size=16)
    return frames


def test_a_video_is_decoded_one_frame_at_a_time(tmp_path, monkeypatch):
    path = tmp_path / "clip.mp4"
    written = _moving_square_video(path)
    import imageio.v2 as iio

    pulled = []
    real = iio.get_reader

    class Spy:
        def __init__(self, reader):
            self.reader = reader

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.reader.close()

        def __iter__(self):
            for frame in self.reader:
                pulled.append(1)
                yield frame

    monkeypatch.setattr(iio, "get_reader", lambda *a, **k: Spy(real(*a, **k)))
    stream = sequences.open_video(path, [21, 25, 16, 16])
    assert stream.image_hw == (64, 96)
    pulled.clear()
    frames = stream.frames()
    for k in range(1, 4):
        next(frames)
        assert len(pulled) == k  # nothing read ahead: one decoded frame at a time
    frames.close()
    monkeypatch.setattr(iio, "get_reader", real)
    got = list(stream.frames())
    assert len(got) == 20 and stream.frame_count() == 20
    np.testing.assert_allclose([f.mean() for f in got], [f.mean() for f in written], atol=4)
    assert len(list(sequences.open_video(path, [21, 25, 16, 16], max_frames=5).frames())) == 5


def test_track_a_video_stream(tmp_path, capsys):
    path = tmp_path / "clip.mp4"
    _moving_square_video(path)
    out = tmp_path / "b.txt"
    assert cli.main(["track", str(path), "--box", "21,25,16,16", "--tracker", "gradhist",
                     "--output", str(out), "--no-progress"]) == 0
    boxes = evaluation.read_boxes(out, num_frames=20)
    assert evaluation.read_frame_scores(tmp_path / "b.scores.csv", num_frames=20).ok[0]
    # The square moves 2 px per frame; the tracker follows it within a few pixels.
    assert np.abs(boxes[:, 0] - (21 + 2 * np.arange(20))).max() < 4, boxes
    err = _one_line(capsys, ["track", str(path), "--box", "500,25,16,16", "--tracker",
                             "gradhist", "--output", str(out)], "track")
    assert "lies entirely outside" in err

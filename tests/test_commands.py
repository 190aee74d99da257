"""End-to-end tests of the command line (`ctjax track`, `ctjax eval`, `python -m ctjax`) on
small inputs. Distill and export are exercised in tests/test_distill.py."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ctjax import commands as cli
from ctjax import evaluation
from ctjax.data import sequences
from ctjax.models.student import SHIPPED_STUDENT


def test_track_demo_with_the_shipped_student(tmp_path, capsys):
    assert SHIPPED_STUDENT.exists(), "the package must ship a student"
    out = tmp_path / "boxes.txt"
    gif = tmp_path / "demo.gif"
    assert cli.main(["track", "--demo", "--output", str(out), "--video", str(gif),
                     "--no-progress"]) == 0
    boxes = evaluation.read_boxes(out)
    demo = sequences.demo_sequence()
    assert boxes.shape == (len(demo), 4)
    np.testing.assert_allclose(boxes[0], demo.boxes[0])
    scores = evaluation.read_frame_scores(tmp_path / "boxes.scores.csv", num_frames=len(demo))
    assert np.isnan(scores.score[0]) and scores.ok[0] and (scores.seconds > 0).all()
    text = capsys.readouterr().out
    assert "FPS" in text and "success AUC" in text and "cpu/wall=" in text
    auc = float(text.split("success AUC ")[1].split(",")[0])
    assert auc > 0.5, text  # the demo clip is easy: a broken tracker scores far lower
    assert gif.stat().st_size > 0


def test_track_video_needs_a_box(tmp_path, capsys):
    video = tmp_path / "clip.gif"
    video.write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="--box"):
        cli.main(["track", str(video), "--output", str(tmp_path / "b.txt")])
    assert cli.main(["track", "--tracker", "gradhist", "--output", str(tmp_path / "b.txt")],
                    one_line_errors=True) == 2
    assert capsys.readouterr().err == ("ctjax track: error: give a sequence folder or video "
                                       "file, or --demo\n")


def test_track_rejects_a_bad_box(tmp_path):
    from ctjax.boxes import BoxError
    with pytest.raises(BoxError, match="width"):
        cli.main(["track", "--demo", "--tracker", "gradhist", "--box", "10,10,0,20",
                  "--output", str(tmp_path / "b.txt"), "--no-progress"])


def test_track_unknown_tracker_and_missing_weights(tmp_path):
    with pytest.raises(ValueError, match="unknown tracker"):
        cli.main(["track", "--demo", "--tracker", "nope", "--output", str(tmp_path / "b.txt")])
    with pytest.raises(FileNotFoundError, match="weights not found"):
        cli.main(["track", "--demo", "--weights", str(tmp_path / "missing.mat"),
                  "--output", str(tmp_path / "b.txt")])


def test_eval_runs_resumes_and_reports(tmp_path, capsys):
    demo = sequences.demo_sequence()
    seq_dir = demo.frame_paths[0].parents[1]
    args = ["eval", "--trackers", "gradhist", "--sequences", str(seq_dir), "--max-frames", "12",
            "--workers", "1", "--output", str(tmp_path)]
    assert cli.main(args) == 0
    meta = json.loads((tmp_path / "gradhist" / f"{seq_dir.name}.json").read_text())
    assert meta["frames"] == 12 and meta["fps"] > 0
    scores = evaluation.read_frame_scores(tmp_path / "gradhist" / f"{seq_dir.name}.scores.csv",
                                          num_frames=12)
    assert meta["lost_frames"] == int((~scores.ok).sum())
    summary = json.loads((tmp_path / "summary.json").read_text())["gradhist"]
    assert summary["gt_rule"] == "ctjax" and 0 <= summary["op75"] <= summary["op50"] <= 1
    assert (tmp_path / "success.png").exists() and (tmp_path / "summary.md").exists()
    capsys.readouterr()
    assert cli.main(args) == 0  # second run: everything is already done
    assert "0 to run, 1 already done" in capsys.readouterr().out


def test_track_configures_the_runtime_before_jax_is_imported():
    code = ("from ctjax import commands as cli, runtime\n"
            "orig = runtime.configure\n"
            "def spy(**kw):\n"
            "    r = orig(**kw); print('jax_was_imported', r.jax_was_imported); return r\n"
            "runtime.configure = spy\n"
            "cli.main(['track', '--list'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "jax_was_imported False" in out.stdout, out.stdout + out.stderr


def test_python_m_ctjax_help_lists_every_command_without_importing_jax():
    code = ("import runpy, sys\n"
            "sys.argv = ['ctjax', '--help']\n"
            "try:\n    runpy.run_module('ctjax', run_name='__main__')\n"
            "except SystemExit as e:\n    print('exit', e.code)\n"
            "print('jax imported', 'jax' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for command in ("track", "eval", "distill", "export"):
        assert command in out.stdout
    assert "exit 0" in out.stdout and "jax imported False" in out.stdout, out.stdout + out.stderr
    for command in ("track", "eval", "distill", "export"):
        sub = subprocess.run([sys.executable, "-m", "ctjax", command, "--help"],
                             capture_output=True, text=True)
        assert sub.returncode == 0 and "usage: ctjax " + command in sub.stdout, sub.stderr

"""Bad-input corpus, part 2: `ctjax eval` (issue 11).

Result keys (a result is reused only when preset, weights checksum, config, sequence path,
frame count and code all match, and its files are intact), arguments refused before any
work, damaged results rerun byte-identically, and the worker pool: task failures, a dying
worker, Ctrl-C and `kill -9` of the parent end every worker promptly. The pool tests use
trivial tasks in plain Python workers (no jax), so they are fast; the whole-command
kill-and-resume tests are marked slow.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ctjax import commands as cli
from ctjax import evaluation, results
from ctjax.commands import workers
from ctjax.data import sequences, sources

DEMO = sequences.demo_sequence()
DEMO_DIR = DEMO.frame_paths[0].parents[1]
NAME = DEMO_DIR.name  # eval names a sequence after its folder
CODE = {"ctjax_version": "test", "source_sha256": "0" * 64, "git_commit": None}
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def stable_code(monkeypatch):
    """Fixes the code part of result keys, so that other people editing ctjax while the
    tests run cannot invalidate the results between two evaluations of one test."""
    monkeypatch.setattr(results, "code_version", lambda: dict(CODE))


def _key(spec_text, seq_dir=DEMO_DIR, frames=12, code=CODE):
    spec = results.TrackerSpec.parse(spec_text)
    seq = sources.as_source(seq_dir).load(frames)
    return results.result_key(results.tracker_fingerprint(spec),
                              results.sequence_fingerprint(seq, seq_dir), code)


def _write_result(out_dir: Path, name: str, key: dict, boxes):
    """A result as a worker writes it: boxes, scores, then metadata with key and checksums."""
    box_file = evaluation.write_boxes(out_dir / f"{name}.txt", boxes)
    n = len(boxes)
    record = evaluation.FrameScores(score=np.r_[np.nan, np.ones(n - 1)], ok=np.ones(n, bool),
                                    peak=np.r_[np.nan, np.ones(n - 1)], seconds=np.full(n, 0.01))
    scores_file = evaluation.write_frame_scores(out_dir / f"{name}.scores.csv", record)
    meta = {"key": key, "fps": 100.0, "frames": n,
            "boxes_sha256": hashlib.sha256(box_file.read_bytes()).hexdigest(),
            "scores_sha256": hashlib.sha256(scores_file.read_bytes()).hexdigest()}
    (out_dir / f"{name}.json").write_text(json.dumps(meta))


# --------------------------------------------------------------------------------------------
# Result keys


def test_a_result_is_reused_only_for_the_same_tracker_sequence_and_code(tmp_path):
    name = NAME
    key = _key("gradhist")
    _write_result(tmp_path, name, key, np.tile(DEMO.boxes[0], (12, 1)))
    assert results.result_status(tmp_path, name, key) is None

    def why(other):
        return results.result_status(tmp_path, name, other)

    assert "preset (gradhist -> cfvggm-random)" in why(_key("cfvggm-random"))
    assert "frames (12 -> 10)" in why(_key("gradhist", frames=10))
    assert "source_sha256" in why(_key("gradhist", code=dict(CODE, source_sha256="1" * 64)))
    assert "config" in why({**key, "config": key["config"].replace("208", "160")})
    copy = tmp_path / "elsewhere" / DEMO_DIR.name  # the same name in another folder
    shutil.copytree(DEMO_DIR, copy)
    assert "sequence_path" in why(_key("gradhist", seq_dir=copy))
    changed = copy / "img" / "0003.jpg"
    changed.write_bytes(changed.read_bytes() + b"\0")  # same names, one file differs
    assert "frame_files_sha256" in why(_key("gradhist", seq_dir=copy))
    assert results.result_status(tmp_path, "Other", key) == "no result yet"


def test_weights_are_keyed_by_checksum_not_path(tmp_path):
    from ctjax.models.student import SHIPPED_STUDENT

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(SHIPPED_STUDENT, a)
    shutil.copytree(SHIPPED_STUDENT, b)
    key_a, key_b = _key(f"cfvggm:{a}"), _key(f"cfvggm:{b}")
    assert key_a == key_b  # moved weights match: the key holds their checksum
    assert "weights" not in key_a and len(key_a["weights_sha256"]) == 64
    (b / "student.json").write_text((b / "student.json").read_text().replace('"', '"', 1) + " ")
    _write_result(tmp_path, NAME, key_a, np.tile(DEMO.boxes[0], (12, 1)))
    assert "weights_sha256" in results.result_status(tmp_path, NAME, _key(f"cfvggm:{b}"))
    # Hand-crafted presets have no weight file: their source string is the key.
    assert _key("gradhist")["weights"] == "none"


@pytest.mark.parametrize("damage, reason", [
    ("truncate", "box file is damaged: result file .* holds 6 boxes but the sequence has 12"),
    ("edit", "changed since it was written"),
    ("empty_meta", "metadata .* is missing or unreadable"),
    ("no_meta", "metadata .* is missing or unreadable"),
    ("list_meta", "metadata .*not a JSON object"),
    ("old_meta", "no result key"),
    ("nan_box", "changed since it was written"),
    ("no_scores", "score file is damaged: score file .* is missing"),
    ("short_scores", "score file is damaged: .* holds 11 frames but the sequence has 12"),
    ("edited_scores", "demo.scores.csv changed since it was written"),
    ("unnamed_scores", "names no score file"),
])
def test_damaged_results_are_not_counted_as_done(tmp_path, damage, reason):
    import re

    key = _key("gradhist")
    _write_result(tmp_path, NAME, key, np.tile(DEMO.boxes[0], (12, 1)))
    txt, meta = tmp_path / f"{NAME}.txt", tmp_path / f"{NAME}.json"
    scores = tmp_path / f"{NAME}.scores.csv"
    if damage == "no_scores":
        scores.unlink()
    elif damage == "short_scores":
        scores.write_text("".join(scores.read_text().splitlines(keepends=True)[:-1]))
    elif damage == "edited_scores":
        scores.write_text(scores.read_text().replace(",1,1.0,", ",0,1.0,", 1))
    elif damage == "unnamed_scores":
        meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items()
                                    if k != "scores_sha256"}))
    lines = txt.read_text().splitlines(keepends=True)
    if damage == "truncate":
        txt.write_text("".join(lines[:6]))
    elif damage == "edit":
        txt.write_text("".join(lines[:-1]) + lines[-1].replace(",", ",1", 1))
    elif damage == "nan_box":
        txt.write_text("".join(lines[:-1]) + "NaN,NaN,NaN,NaN\n")
    elif damage == "empty_meta":
        meta.write_text("")
    elif damage == "no_meta":
        meta.unlink()
    elif damage == "list_meta":
        meta.write_text("[]")
    elif damage == "old_meta":
        meta.write_text(json.dumps({"frames": 12, "fps": 1.0}))
    assert re.search(reason, results.result_status(tmp_path, NAME, key))


def _record(n):
    return evaluation.FrameScores(score=np.r_[np.nan, np.full(n - 1, 0.5)], ok=np.ones(n, bool),
                                  peak=np.r_[np.nan, np.full(n - 1, 2.0)],
                                  seconds=np.full(n, 0.02))


def test_write_result_writes_files_that_its_metadata_vouches_for(tmp_path):
    key = _key("gradhist")
    boxes = np.tile(DEMO.boxes[0], (12, 1)) + np.arange(12)[:, None]
    meta = results.write_result(tmp_path, NAME, boxes, _record(12), {"fps": 50.0, "key": key})
    on_disk = json.loads((tmp_path / f"{NAME}.json").read_text())
    assert on_disk == meta and list(meta)[:2] == ["fps", "key"]  # given fields first
    for suffix, field in ((".txt", "boxes_sha256"), (".scores.csv", "scores_sha256")):
        data = (tmp_path / f"{NAME}{suffix}").read_bytes()
        assert meta[field] == hashlib.sha256(data).hexdigest()
    np.testing.assert_array_equal(np.loadtxt(tmp_path / f"{NAME}.txt", delimiter=","), boxes)
    assert results.result_status(tmp_path, NAME, key) is None
    # Old metadata goes first: a write that fails halfway leaves no metadata vouching.
    with pytest.raises(ValueError):
        results.write_result(tmp_path, NAME, boxes[:, :3], _record(12), {"key": key})
    assert not (tmp_path / f"{NAME}.json").exists()
    assert "missing or unreadable" in results.result_status(tmp_path, NAME, key)


def test_copy_result_copies_byte_for_byte_and_replaces_stale_metadata(tmp_path):
    key = _key("gradhist")
    src, dest = tmp_path / "a", tmp_path / "b"
    src.mkdir(), dest.mkdir()
    _write_result(src, NAME, key, np.tile(DEMO.boxes[0], (12, 1)))
    (dest / f"{NAME}.json").write_text("stale")
    results.copy_result(src, dest, NAME)
    for suffix in (".txt", ".scores.csv", ".json"):
        assert (dest / f"{NAME}{suffix}").read_bytes() == (src / f"{NAME}{suffix}").read_bytes()
    assert results.result_status(dest, NAME, key) is None
    results.copy_result(src, src, NAME)  # the same folder: left as it is
    assert results.result_status(src, NAME, key) is None


def test_exports_are_in_the_benchmarks_own_coordinates():
    boxes = np.array([[10.0, 20.0, 30.0, 40.0]])
    np.testing.assert_array_equal(results.benchmark_coords(boxes, "vot"), [[9, 19, 30, 40]])
    for layout in ("otb", "otb100", "uav123", "got10k", "lasot"):
        np.testing.assert_array_equal(results.benchmark_coords(boxes, layout), boxes)


# --------------------------------------------------------------------------------------------
# Arguments refused before any work


@pytest.mark.parametrize("extra, message", [
    (["--max-frames", "-3"], "argument --max-frames: must be a positive integer, got '-3'"),
    (["--max-frames", "0"], "argument --max-frames: must be a positive integer"),
    (["--workers", "0"], "argument --workers: must be a positive integer"),
])
def test_eval_refuses_non_positive_counts(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as e:
        cli.main(["eval", "--sequences", str(DEMO_DIR), "--output", str(tmp_path)] + extra)
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_eval_argument_errors_are_one_line_before_any_work(tmp_path, capsys):
    twin = tmp_path / "other" / DEMO_DIR.name
    shutil.copytree(DEMO_DIR, twin)
    out = tmp_path / "out"
    cases = [
        (["--sequences", str(DEMO_DIR), str(twin)], "two sequences are named 'demo'"),
        (["--trackers", "csrt:weights.npz"], "csrt (OpenCV) takes no weights"),
        (["--trackers", "a=gradhist", "a=vggm"], "labels must be distinct"),
        (["--trackers", "../up=gradhist"], "label usable as a folder name"),
        (["--trackers", "gradhist:some.npz"], "takes no --weights"),
        (["--trackers", "nope"], "unknown tracker 'nope'"),
    ]
    for extra, message in cases:
        argv = ["eval", "--output", str(out), "--sequences", str(DEMO_DIR), *extra]
        assert cli.main(argv, one_line_errors=True) == 2, extra
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("ctjax eval: error: ") and message in err, err
        assert not any(out.rglob("*.txt")), extra  # nothing was tracked
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="--output folder .* not a folder"):
        cli.main(["eval", "--sequences", str(DEMO_DIR), "--output", str(tmp_path / "file")])


# --------------------------------------------------------------------------------------------
# End to end: a damaged result is rerun, byte-identically


def test_damaged_and_stale_results_are_rerun_identically(tmp_path, capsys, stable_code):
    old = os.umask(0o022)
    try:
        args = ["eval", "--trackers", "x=gradhist", "--sequences", str(DEMO_DIR),
                "--max-frames", "12", "--workers", "1", "--output", str(tmp_path)]
        assert cli.main(args) == 0
        txt = tmp_path / "x" / f"{NAME}.txt"
        first = txt.read_bytes()
        for f in (txt, txt.with_suffix(".json"), tmp_path / "summary.json", tmp_path / "success.png"):
            assert f.stat().st_mode & 0o777 == 0o644, f
        txt.write_bytes(first[: len(first) // 2])  # truncated, as by a full disk
        capsys.readouterr()
        assert cli.main(args) == 0
        out = capsys.readouterr().out
        assert f"rerunning x/{NAME}: its box file is damaged" in out
        assert "1 to run, 0 already done" in out
        assert txt.read_bytes() == first  # deterministic, whole again
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert summary["x"]["sequences"][NAME]["auc"] > 0.3
        assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temporary file left
    finally:
        os.umask(old)


# --------------------------------------------------------------------------------------------
# The worker pool (plain Python tasks)


def _square(x):
    return x * x


def _raise(x):
    raise ValueError(f"bad input {x}\nsecond line")


def _die(x):
    os._exit(3)


def _record_and_sleep(folder, seconds):
    Path(folder, str(os.getpid())).write_text("")
    time.sleep(seconds)
    return seconds


def _run(tasks, fn, n=2):
    events = {}
    workers.run_pool(tasks, [0] * n, fn, lambda i, kind, value: events.setdefault(i, (kind, value)))
    return events


def test_pool_runs_tasks_and_reports_failures():
    assert _run([(k,) for k in range(6)], _square) == {k: ("done", k * k) for k in range(6)}
    assert _run([(7,)], _raise) == {0: ("failed", "ValueError: bad input 7 second line")}


def test_a_dying_worker_fails_its_task_and_the_others_go_on():
    events = _run([(1,), (2,), (3,)], _die, n=2)
    assert sorted(events) == [0, 1, 2]
    assert all(kind == "failed" for kind, _ in events.values())
    assert any("worker process died (exit code 3)" in v for _, v in events.values())
    assert all("died" in v or "no worker" in v for _, v in events.values())


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its reaper counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def _start_pool_parent(folder: Path, n_tasks: int):
    """A parent process running a pool of sleeping tasks; returns it once 2 workers run."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from ctjax.commands import workers
        import test_reliability_eval as t
        try:
            workers.run_pool([({str(folder)!r}, 60)] * {n_tasks}, [0, 0], t._record_and_sleep,
                             lambda *a: print(a, flush=True))
        except KeyboardInterrupt:
            sys.exit(130)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.monotonic() + 60
    while len(list(folder.iterdir())) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, "workers did not start"
        time.sleep(0.1)
    return proc, [int(p.name) for p in folder.iterdir()]


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _wait_gone(pids, seconds=10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_ends_the_workers_at_once(tmp_path):
    proc, worker_pids = _start_pool_parent(tmp_path, n_tasks=6)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole group
    assert proc.wait(timeout=20) == 130
    assert time.monotonic() - t0 < 15  # not the 6 x 60 s the queued tasks would take
    assert _wait_gone(worker_pids) == []
    assert len(list(tmp_path.iterdir())) == 2  # no queued task was started after Ctrl-C


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_the_parent_ends_every_child(tmp_path):
    proc, worker_pids = _start_pool_parent(tmp_path, n_tasks=4)
    children = _children(proc.pid)
    assert set(worker_pids) <= set(children)
    proc.kill()  # SIGKILL: the parent cannot clean up
    proc.wait()
    assert _wait_gone(children) == []  # workers and any helper process (no Manager left)


# --------------------------------------------------------------------------------------------
# Whole-command kill-and-resume (slow)


def _eval_cmd(out: Path, seq_dirs, frames=40):
    return [sys.executable, "-m", "ctjax", "eval", "--trackers", "x=gradhist", "--sequences",
            *map(str, seq_dirs), "--max-frames", str(frames), "--workers", "2",
            "--output", str(out)]


def _demo_copies(root: Path, n: int) -> list[Path]:
    """`n` sequences (distinct names) made of the demo clip's frames (symlinked)."""
    out = []
    for k in range(n):
        d = root / f"clip{k}"
        (d / "img").mkdir(parents=True)
        for f in DEMO.frame_paths:
            (d / "img" / f.name).symlink_to(f)
        shutil.copy(DEMO_DIR / "groundtruth_rect.txt", d)
        out.append(d)
    return out


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_eval_killed_with_9_resumes_to_the_uninterrupted_result(tmp_path):
    seqs = _demo_copies(tmp_path / "seqs", 6)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(_eval_cmd(whole, seqs), check=True, capture_output=True)
    proc = subprocess.Popen(_eval_cmd(killed, seqs), stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    for line in proc.stdout:  # kill as soon as the first result is in
        if line.startswith("[1/"):
            break
    children = _children(proc.pid)
    proc.kill()
    proc.wait()
    assert _wait_gone(children) == []
    done = sorted(p.name for p in (killed / "x").glob("*.json"))
    assert 1 <= len(done) < 6
    resumed = subprocess.run(_eval_cmd(killed, seqs), check=True, capture_output=True, text=True)
    assert f"{len(done)} already done" in resumed.stdout
    for s in seqs:
        a = (whole / "x" / f"{s.name}.txt").read_bytes()
        assert (killed / "x" / f"{s.name}.txt").read_bytes() == a, s.name
    assert json.loads((killed / "summary.json").read_text())["x"]["auc"] == \
        json.loads((whole / "summary.json").read_text())["x"]["auc"]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_eval_ctrl_c_stops_promptly_and_resumes(tmp_path):
    seqs = _demo_copies(tmp_path / "seqs", 6)
    out = tmp_path / "out"
    cmd = _eval_cmd(out, seqs, frames=100)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    for line in proc.stdout:
        if line.startswith("[1/"):
            break
    children = _children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    t0 = time.monotonic()
    assert proc.wait(timeout=30) == 130
    assert time.monotonic() - t0 < 15
    assert _wait_gone(children) == []
    assert "interrupted" in proc.stdout.read() + proc.stderr.read()
    assert len(list((out / "x").glob("*.json"))) < 6
    subprocess.run(cmd, check=True, capture_output=True)
    assert len(list((out / "x").glob("*.json"))) == 6 and (out / "summary.md").exists()


@pytest.mark.slow
def test_two_evals_into_one_folder_both_finish(tmp_path):
    seqs = _demo_copies(tmp_path / "seqs", 3)
    out = tmp_path / "out"
    procs = [subprocess.Popen(_eval_cmd(out, seqs, frames=30), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    for s in seqs:
        assert results.result_status(out / "x", s.name, json.loads(
            (out / "x" / f"{s.name}.json").read_text())["key"]) is None
    assert not [p for p in out.rglob(".*") if p.is_file()]


@pytest.mark.slow
def test_a_label_whose_preset_changes_is_rerun(tmp_path, capsys, stable_code):
    base = ["eval", "--sequences", str(DEMO_DIR), "--max-frames", "8", "--workers", "1",
            "--output", str(tmp_path)]
    assert cli.main(base + ["--trackers", "x=gradhist"]) == 0
    capsys.readouterr()
    assert cli.main(base + ["--trackers", "x=cfvggm-random"]) == 0
    out = capsys.readouterr().out
    assert f"rerunning x/{NAME}: it was made by a different preset (gradhist -> " \
           "cfvggm-random)" in out
    meta = json.loads((tmp_path / "x" / f"{NAME}.json").read_text())
    assert meta["preset"] == "cfvggm-random"
    assert "## x (cfvggm-random)" in (tmp_path / "summary.md").read_text()

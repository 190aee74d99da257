"""Sharded evaluation (issue 16): `ctjax eval --shard K/N` and `ctjax eval --merge`.

The reference for a merged run is an unsharded run of the same arguments: its raw box files
must be byte-identical and its summary the same (up to the measured speeds). The assignment
of tasks to shards is checked against a brute-force optimum, and the merge refuses a missing
shard, a shard given twice, shards of different runs and damaged results.

The fast tests run the command in this process with the worker pool replaced by a serial
loop (the pool has its own tests in test_reliability_eval.py) on short clips cut from the
shipped demo sequence; the slow test runs the real command line, shards in parallel, on
the demo and two shared sequences.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import need_data
from ctjax import commands as cli
from ctjax import evaluation, paths, results
from ctjax.commands import evaluate, workers
from ctjax.data import sequences

DEMO_DIR = sequences.demo_sequence().frame_paths[0].parents[1]
CODE = {"ctjax_version": "test", "source_sha256": "0" * 64, "git_commit": None}
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# Assignment and manifests


def test_parse_shard():
    assert evaluation.parse_shard("2/3") == (2, 3)
    assert evaluation.parse_shard("1/1") == (1, 1)
    for bad in ("0/3", "4/3", "3", "a/b", "-1/2", "1/0", ""):
        with pytest.raises(ValueError, match="K/N with 1 <= K <= N"):
            evaluation.parse_shard(bad)


def test_assignment_by_hand():
    # Longest first to the least-loaded shard: 5 -> 1, 4 -> 2, 3 -> 2, 3 -> 1, 3 -> 2.
    assert evaluation.assign_shards([5, 4, 3, 3, 3], 2) == [1, 2, 2, 1, 2]
    assert evaluation.assign_shards([1, 1, 1, 1], 3) == [1, 2, 3, 1]  # ties: task, shard order
    assert evaluation.assign_shards([7], 3) == [1]  # more shards than tasks: some get none
    assert evaluation.assign_shards([], 2) == []


def test_assignment_is_a_partition_within_the_lpt_bound_of_the_optimum():
    rng = np.random.default_rng(0)
    for _ in range(30):
        costs = rng.integers(1, 50, size=rng.integers(1, 8)).tolist()
        n = int(rng.integers(1, 4))
        shards = evaluation.assign_shards(costs, n)
        assert shards == evaluation.assign_shards(list(costs), n)  # deterministic
        assert all(1 <= k <= n for k in shards) and len(shards) == len(costs)
        load = max(sum(c for c, k in zip(costs, shards) if k == s) for s in range(1, n + 1))
        best = min(max(sum(c for c, k in zip(costs, a) if k == s) for s in range(n))
                   for a in itertools.product(range(n), repeat=len(costs)))  # brute force
        assert best <= load <= (4 / 3 - 1 / (3 * n)) * best + 1e-9, (costs, n, shards)


def _manifest(k, n, plan, run=None):
    return evaluation.shard_manifest(
        shard=k, shards=n, run=run or {"trackers": ["x"]}, plan=plan,
        results=[[l, s, {"key": f"{l}/{s}"}] for l, s, j in plan if j == k])


PLAN = [["a", "s1", 1], ["a", "s2", 2], ["b", "s1", 3], ["b", "s2", 1]]


def test_merge_checks_every_shard_once_and_one_run():
    manifests = [(f"d{k}/m.json", _manifest(k, 3, PLAN)) for k in (3, 1, 2)]
    run, tasks = evaluation.merge_shards(manifests)
    assert run == {"trackers": ["x"]}
    assert list(tasks) == [("a", "s1"), ("a", "s2"), ("b", "s1"), ("b", "s2")]  # plan order
    assert tasks["b", "s1"] == ("d3/m.json", {"key": "b/s1"})

    with pytest.raises(evaluation.ShardError, match=r"shard\(s\) 2/3 missing \(have 1/3, 3/3\)"):
        evaluation.merge_shards([manifests[0], manifests[1]])
    with pytest.raises(evaluation.ShardError, match="shard 1/3 is given twice: d1/m.json and e/m"):
        evaluation.merge_shards(manifests + [("e/m.json", _manifest(1, 3, PLAN))])
    other = _manifest(2, 3, PLAN, run={"trackers": ["y"]})
    with pytest.raises(evaluation.ShardError, match="different runs.*arguments or code"):
        evaluation.merge_shards(manifests[:2] + [("d2/m.json", other)])
    with pytest.raises(evaluation.ShardError, match="different runs.*numbers of shards"):
        evaluation.merge_shards(manifests[:2] + [("x", _manifest(2, 4, PLAN))])
    with pytest.raises(evaluation.ShardError, match="different runs.*task plans"):
        evaluation.merge_shards(manifests[:2] + [("x", _manifest(2, 3, PLAN[:3]))])
    short = dict(manifests[2][1], results=[])
    with pytest.raises(evaluation.ShardError, match="not exactly its share of the plan"):
        evaluation.merge_shards(manifests[:2] + [("d2/m.json", short)])
    with pytest.raises(evaluation.ShardError, match="not a ctjax eval shard manifest"):
        evaluation.merge_shards([("f.json", {"shard": 1})])
    with pytest.raises(evaluation.ShardError, match="no shard manifest"):
        evaluation.merge_shards([])


# --------------------------------------------------------------------------------------------
# The command, in this process


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    """Three OTB-format clips of different lengths (6, 8, 10 frames) cut from the demo."""
    root = tmp_path_factory.mktemp("clips")
    gt = (DEMO_DIR / "groundtruth_rect.txt").read_text().splitlines()
    out = []
    for name, start, n in (("alpha", 0, 6), ("beta", 20, 8), ("gamma", 40, 10)):
        (root / name / "img").mkdir(parents=True)
        for i in range(n):
            shutil.copy(DEMO_DIR / "img" / f"{start + i + 1:04d}.jpg",
                        root / name / "img" / f"{i + 1:04d}.jpg")
        (root / name / "groundtruth_rect.txt").write_text("\n".join(gt[start:start + n]) + "\n")
        out.append(root / name)
    return out


_COMPILED: dict = {}  # trackers compiled by the serial "workers", kept across tests


@pytest.fixture
def in_process(monkeypatch):
    """Tasks run serially in this process (no worker processes), code version fixed (so that
    edits to ctjax by others while the tests run cannot change the result keys)."""
    def serial_pool(tasks, cores, run_task, on_event, *, initializer=None):
        for i, args in enumerate(tasks):
            try:
                on_event(i, "done", run_task(*args))
            except Exception as e:  # as a worker reports it
                on_event(i, "failed", f"{type(e).__name__}: {e}")

    _COMPILED.setdefault("probe", "in-process test")
    monkeypatch.setattr(evaluate, "_WORKER", _COMPILED)
    monkeypatch.setattr(workers, "run_pool", serial_pool)
    monkeypatch.setattr(results, "code_version", lambda: dict(CODE))


def _eval(clips, output, *extra):
    return cli.main(["eval", "--trackers", "a=gradhist", "b=gradhist", "--sequences",
                     *map(str, clips), "--output", str(output), *extra])


def _boxes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob("*/*.txt"))}


def _scores(folder: Path) -> dict:
    """summary.json without the measured speeds."""
    def strip(d):
        return {k: strip(v) for k, v in d.items() if "fps" not in k} if isinstance(d, dict) else d
    return strip(json.loads((folder / "summary.json").read_text()))


@pytest.fixture
def unsharded(clips, in_process, tmp_path):
    assert _eval(clips, tmp_path / "whole") == 0
    return tmp_path / "whole"


def test_three_shards_merged_equal_one_unsharded_run(clips, unsharded, tmp_path, capsys):
    capsys.readouterr()
    for k in (1, 2, 3):
        assert _eval(clips, tmp_path / f"shard{k}", "--shard", f"{k}/3") == 0
        assert (tmp_path / f"shard{k}" / f"shard-{k}-of-3.json").is_file()
        assert not (tmp_path / f"shard{k}" / "summary.json").exists()
    out = capsys.readouterr().out
    assert "shard 2/3: 2 of 6 tasks" in out  # 6 tasks, balanced by frames: 2 per shard
    done = [set(_boxes(tmp_path / f"shard{k}")) for k in (1, 2, 3)]
    assert not (done[0] & done[1] or done[0] & done[2] or done[1] & done[2])  # disjoint
    assert cli.main(["eval", "--merge", *(str(tmp_path / f"shard{k}") for k in (3, 1, 2)),
                     "--output", str(tmp_path / "merged")]) == 0
    whole = _boxes(unsharded)
    assert len(whole) == 6 and _boxes(tmp_path / "merged") == whole  # byte-identical
    assert _scores(tmp_path / "merged") == _scores(unsharded)
    assert (tmp_path / "merged" / "success.png").is_file()
    # The merged folder is an ordinary output folder: an unsharded run finds all done.
    capsys.readouterr()
    assert _eval(clips, tmp_path / "merged") == 0
    assert "0 to run, 6 already done" in capsys.readouterr().out


def test_shards_sharing_one_folder_merge_in_place_and_resume(clips, unsharded, tmp_path, capsys):
    shared = tmp_path / "shared"
    for k in (2, 1):
        assert _eval(clips, shared, "--shard", f"{k}/2") == 0
    capsys.readouterr()
    assert _eval(clips, shared, "--shard", "1/2") == 0  # rerun: nothing to do, manifest again
    assert "0 to run, 3 already done" in capsys.readouterr().out
    assert cli.main(["eval", "--merge", str(shared), "--output", str(shared)]) == 0
    assert _boxes(shared) == _boxes(unsharded)
    assert _scores(shared) == _scores(unsharded)


def test_a_missing_duplicated_or_damaged_shard_is_a_clear_error(clips, in_process, tmp_path,
                                                                capsys):
    for k in (1, 2, 3):
        assert _eval(clips, tmp_path / f"s{k}", "--shard", f"{k}/3") == 0

    def merge(*folders, output="out"):
        return cli.main(["eval", "--merge", *map(str, folders), "--output",
                         str(tmp_path / output)], one_line_errors=True)

    capsys.readouterr()
    assert merge(tmp_path / "s1", tmp_path / "s3") == 2
    assert "shard(s) 2/3 missing (have 1/3, 3/3)" in capsys.readouterr().err
    shutil.copytree(tmp_path / "s2", tmp_path / "s2-again")
    assert merge(*(tmp_path / f"s{k}" for k in (1, 2, 3)), tmp_path / "s2-again") == 2
    err = capsys.readouterr().err
    assert "shard 2/3 is given twice" in err and "s2-again" in err
    assert merge(tmp_path / "s1", tmp_path / "s1") == 2
    assert "is given twice" in capsys.readouterr().err
    assert merge(tmp_path / "s1", tmp_path / "nothing") == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert merge(tmp_path / "s1", tmp_path / "empty") == 2
    assert "holds no shard manifest" in capsys.readouterr().err
    assert cli.main(["eval", "--merge", str(tmp_path / "s1"), "--trackers", "x", "--output",
                     str(tmp_path / "out")], one_line_errors=True) == 2
    assert "drop --trackers" in capsys.readouterr().err
    victim = next((tmp_path / "s2").glob("*/*.txt"))
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # damaged after the shard finished
    assert merge(*(tmp_path / f"s{k}" for k in (1, 2, 3))) == 2
    err = capsys.readouterr().err
    assert f"{victim.parent.name}/{victim.stem}" in err and "damaged" in err
    assert not (tmp_path / "out" / "summary.json").exists()


def test_a_shard_with_a_failed_task_writes_no_manifest(clips, in_process, tmp_path, monkeypatch,
                                                       capsys):
    def failing(*args):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(evaluate, "_run_task", failing)
    out = tmp_path / "s1"
    (out).mkdir()
    (out / "shard-1-of-2.json").write_text("{}")  # an older manifest must not survive
    assert _eval(clips, out, "--shard", "1/2") == 1
    assert not (out / "shard-1-of-2.json").exists()
    assert "injected failure" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# The command line, shards in parallel (slow)


@pytest.mark.slow
def test_command_line_shards_in_parallel_merge_to_the_unsharded_result(tmp_path):
    seqs = [str(DEMO_DIR), str(need_data(paths.sequence_dir, "Woman")),
            str(need_data(paths.sequence_dir, "Surfer"))]
    base = [sys.executable, "-m", "ctjax", "eval", "--trackers", "gradhist", "x=gradhist",
            "--sequences", *seqs, "--max-frames", "5", "--workers", "1"]
    runs = [base + ["--output", str(tmp_path / "whole")]] + \
        [base + ["--output", str(tmp_path / f"s{k}"), "--shard", f"{k}/3"] for k in (1, 2, 3)]
    procs = [subprocess.Popen(r, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=dict(os.environ)) for r in runs]
    try:
        outs = [p.communicate(timeout=900)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0] * 4, outs
    merge = subprocess.run([sys.executable, "-m", "ctjax", "eval", "--merge",
                            *(str(tmp_path / f"s{k}") for k in (1, 2, 3)), "--output",
                            str(tmp_path / "merged")], cwd=ROOT, capture_output=True, text=True,
                           timeout=600)
    assert merge.returncode == 0, merge.stderr
    whole = _boxes(tmp_path / "whole")
    assert len(whole) == 6 and _boxes(tmp_path / "merged") == whole
    assert _scores(tmp_path / "merged") == _scores(tmp_path / "whole")
    missing = subprocess.run([sys.executable, "-m", "ctjax", "eval", "--merge",
                              str(tmp_path / "s1"), str(tmp_path / "s2"), "--output",
                              str(tmp_path / "m2")], cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("ctjax eval: error: shard(s) 3/3 missing (have 1/3, "
                                      "2/3); a shard writes its manifest only when all its "
                                      "tasks succeeded")

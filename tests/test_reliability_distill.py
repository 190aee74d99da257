"""Bad-input corpus, part 3: distillation configs, run folders and checkpoints (issue 11).

Config values of the wrong type or range fail before anything is written; empty, corrupt or
wrong-type `config.json` / `summary.json` give one clear line; a damaged newest checkpoint
(garbage data, empty record, missing item, checksum mismatch) is skipped with its step and
reason, moved aside, and the run resumes from the previous step bit-identically with each
step logged once. The checkpoint and config cases need no data; the resume runs use the
shared `Woman` sequence (skipped naming `CTJAX_DATA` without it).
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import need_data
from ctjax import commands, paths
from ctjax.distill import checkpoint, config as distill_config, export, loop, steps
from ctjax.distill.config import DistillConfig, load_config

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SPEC = str(EXPERIMENTS / "distill_tracking.py")


# --------------------------------------------------------------------------------------------
# Config values


@pytest.mark.parametrize("override, message", [
    ("steps=abc", "config key steps: expected int, got 'abc' (str)"),
    ("steps=2.5", "config key steps: expected int, got 2.5"),
    ("steps=0", "config key steps must be >= 1, got 0"),
    ("batch_size=-2", "config key batch_size must be >= 1"),
    ("pairs.crop_size=abc", "config key pairs.crop_size: expected int, got 'abc'"),
    ("pairs.context=big", "config key pairs.context: expected float"),
    ("track_window=1", "config key track_window: expected bool, got 1 (int)"),
    ("lam=None", "config key lam: expected float, got None"),
    ("learning_rate=-0.1", "learning_rate must be > 0"),
    ("data_kind=vot", "data_kind must be one of"),
    ("layers=conv1", "layers must be (student stage, teacher stage) name pairs"),
    ("name=3", "config key name: expected str, got 3"),
])
def test_bad_override_values_are_refused(override, message):
    with pytest.raises(ValueError) as e:
        load_config(f"{SPEC}:{override}")
    assert message in str(e.value)


def test_numbers_are_normalised_and_round_trip():
    config = load_config(f"{SPEC}:lam=1,steps=7")
    assert config.lam == 1.0 and isinstance(config.lam, float) and config.steps == 7
    assert DistillConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


def test_a_bad_override_writes_nothing(tmp_path, capsys):
    workdir = tmp_path / "run"
    code = commands.main(["distill", "--config", f"{SPEC}:smoke,steps=abc",
                          "--workdir", str(workdir)], one_line_errors=True)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("ctjax distill: error: config key steps: expected int")
    assert not workdir.exists()  # the workdir is still usable with a corrected override


def test_stop_after_must_be_positive(tmp_path, capsys):
    code = commands.main(["distill", "--config", f"{SPEC}:smoke", "--workdir",
                          str(tmp_path / "run"), "--stop-after", "-3"], one_line_errors=True)
    assert code == 2 and "--stop-after must be a positive number of steps, got -3" in \
        capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content, message", [
    ("", "run config .*config.json is empty"),
    ("   \n", "run config .*config.json is empty"),
    ('{"steps": 3', "run config .*config.json is not valid JSON"),
    ("[1, 2]", "is invalid: a config must be a JSON object, got list"),
    ('{"steps": "abc"}', "is invalid: config key steps: expected int"),
    ('{"stepz": 3}', "is invalid: unknown config key"),
    ('{"pairs": 5}', "is invalid: config key pairs must be an object"),
])
def test_damaged_config_json_is_one_clear_line(tmp_path, capsys, content, message):
    import re

    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ValueError) as e:
        loop.train_and_evaluate(DistillConfig(steps=3), tmp_path, progress=False)
    assert re.search(message, str(e.value)) and "\n" not in str(e.value)
    assert (tmp_path / "config.json").read_text() == content  # left for the user to fix
    with pytest.raises(ValueError, match=message):
        export.export_run(tmp_path, tmp_path / "student")
    # The command line shows it as one line with status 2.
    assert commands.main(["export", "--workdir", str(tmp_path), "--output",
                          str(tmp_path / "s")], one_line_errors=True) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err)


def test_a_new_run_writes_config_json_atomically(tmp_path):
    config = DistillConfig(steps=3)
    loop._check_workdir(config, tmp_path / "run")
    saved = tmp_path / "run" / "config.json"
    assert DistillConfig.from_json(json.loads(saved.read_text())) == config
    assert saved.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json"]


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


# --------------------------------------------------------------------------------------------
# Checkpoints


TREE = {"w": jnp.arange(6.0), "n": jnp.int32(3)}


def _saved(tmp_path, steps_=(2, 4, 6)) -> Path:
    ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints", keep=5)
    for s in steps_:
        ckpt.save(s, jax.tree.map(lambda x: x * s, TREE), {"step": s})
    ckpt.wait()
    return tmp_path / "checkpoints"


def _damage(folder: Path, how: str) -> None:
    if how == "garbage data":
        for f in (folder / "state" / "d").iterdir():
            f.write_bytes(os.urandom(f.stat().st_size))
    elif how == "truncated data":
        for f in (folder / "state" / "d").iterdir():
            f.write_bytes(f.read_bytes()[:10])
    elif how == "empty record":
        (folder / "meta" / "metadata").write_text("")
    elif how == "missing state":
        import shutil
        shutil.rmtree(folder / "state")
    elif how == "checksum":  # what the record says no longer matches the arrays
        record = json.loads((folder / "meta" / "metadata").read_text())
        record[checkpoint.CHECKSUM_KEY] = "0" * 64
        (folder / "meta" / "metadata").write_text(json.dumps(record))


@pytest.mark.parametrize("how, reason", [
    ("garbage data", "unreadable"), ("truncated data", "unreadable"),
    ("empty record", "unreadable"), ("missing state", "unreadable"),
    ("checksum", "checksum mismatch"),
])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, how, reason):
    directory = _saved(tmp_path)
    _damage(directory / "6", how)
    skipped = []
    ckpt = checkpoint.Checkpointer(directory, keep=5)
    state, meta = ckpt.restore_latest(TREE, on_skip=lambda *a: skipped.append(a))
    chex.assert_trees_all_equal(state, jax.tree.map(lambda x: x * 4, TREE))
    assert meta == {"step": 4}  # the record without its checksum
    [(step, why, moved)] = skipped
    assert step == 6 and reason in why and "step 6" in why
    assert moved == tmp_path / "checkpoints.unreadable" / "6" and moved.is_dir()
    assert ckpt.steps() == [2, 4]
    ckpt.save(6, jax.tree.map(lambda x: x * 60, TREE), {"step": 6})  # the run goes on
    ckpt.wait()
    chex.assert_trees_all_equal(ckpt.restore_latest(TREE)[0], jax.tree.map(lambda x: x * 60, TREE))


def test_no_readable_checkpoint_starts_fresh(tmp_path):
    directory = _saved(tmp_path, (2, 4))
    for s in (2, 4):
        _damage(directory / str(s), "empty record")
    skipped = []
    assert checkpoint.Checkpointer(directory).restore_latest(
        TREE, on_skip=lambda *a: skipped.append(a[0])) is None
    assert skipped == [4, 2]
    assert sorted(p.name for p in (tmp_path / "checkpoints.unreadable").iterdir()) == ["2", "4"]


def test_restore_of_a_named_step_names_the_step(tmp_path):
    directory = _saved(tmp_path)
    _damage(directory / "4", "garbage data")
    ckpt = checkpoint.Checkpointer(directory, keep=5)
    with pytest.raises(checkpoint.CheckpointError, match="checkpoint step 4 .* unreadable"):
        ckpt.restore(4, TREE)
    with pytest.raises(checkpoint.CheckpointError, match="checkpoint step 4"):
        ckpt.restore_tree(4)


def test_export_skips_a_damaged_newest_checkpoint(tmp_path, capsys):
    config = DistillConfig()
    (tmp_path / "config.json").write_text(json.dumps(config.to_json()))
    ckpt = checkpoint.Checkpointer(tmp_path / "checkpoints", keep=5)
    for s in (2, 4):
        state = steps.TrainState(step=jnp.int32(s), opt_state=(), scales={},
                                 params={"student": {"params": {"conv1": {
                                     "kernel": jnp.full((3, 3, 3, 2), float(s))}}}})
        ckpt.save(s, state, {"wall_time": float(s)})
    ckpt.wait()
    _damage(tmp_path / "checkpoints" / "4", "garbage data")
    out = export.export_run(tmp_path, tmp_path / "student")
    assert "skipping checkpoint step 4" in capsys.readouterr().out
    info = json.loads((out / "student.json").read_text())
    assert info["training"]["checkpoint_step"] == 2
    with np.load(out / "params.npz") as params:
        np.testing.assert_array_equal(params["conv1/kernel"], np.full((3, 3, 3, 2), 2.0))
    with pytest.raises(checkpoint.CheckpointError, match="step 4"):  # asked for by name
        export.export_run(tmp_path, tmp_path / "student4", step=4)
    (tmp_path / "summary.json").write_text("")
    with pytest.raises(ValueError, match="run summary .*summary.json is empty"):
        export.export_run(tmp_path, tmp_path / "student")


# --------------------------------------------------------------------------------------------
# The log


def test_the_log_keeps_only_steps_up_to_the_restored_checkpoint(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    records = [{"step": s, "split": "train", "loss": 1.0 / s} for s in range(1, 7)]
    records.insert(4, {"step": 4, "split": "val", "loss": 0.3})
    log.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 7, "spl')
    loop._trim_log(log, 4)
    kept = [json.loads(l) for l in log.read_text().splitlines()]
    assert kept == [r for r in records if r["step"] <= 4]
    assert "dropped 3 record(s) after step 4" in capsys.readouterr().out
    before = log.read_bytes()
    loop._trim_log(log, 4)  # nothing more to drop: the file is left alone
    assert log.read_bytes() == before


# --------------------------------------------------------------------------------------------
# A real run resumed over a damaged newest checkpoint


def _smoke_config(**changes):
    need_data(paths.sequence_dir, "Woman")
    base = load_config(f"{SPEC}:smoke")
    return dataclasses.replace(base, **{"checkpoint_every": 2, "eval_every": 100, **changes})


def _train_steps(workdir: Path) -> list[int]:
    return [json.loads(l)["step"] for l in (workdir / "log.jsonl").read_text().splitlines()
            if json.loads(l)["split"] == "train"]


def _final_state(config, workdir: Path, step: int):
    setup, optimizer = steps.make_setup(config), steps.make_optimizer(config)
    target = steps.init_state(config, setup, optimizer, 0, {})
    return checkpoint.Checkpointer(workdir / "checkpoints").restore(step, target)[0]


def test_resume_over_a_damaged_newest_checkpoint_is_bit_identical(tmp_path, capsys):
    config = _smoke_config()
    run = tmp_path / "run"
    loop.train_and_evaluate(config, run, progress=False)
    reference = _final_state(config, run, 6)
    _damage(run / "checkpoints" / "6", "garbage data")
    capsys.readouterr()
    summary = loop.train_and_evaluate(config, run, progress=False)  # falls back to step 4
    out = capsys.readouterr().out
    assert "skipping checkpoint step 6: checkpoint step 6" in out and "unreadable" in out
    assert f"resuming {run} from checkpoint step 4" in out
    assert summary["complete"] and summary["steps"] == 6
    chex.assert_trees_all_equal(_final_state(config, run, 6), reference)
    assert _train_steps(run) == [1, 2, 3, 4, 5, 6]  # steps 5 and 6 logged once each
    assert (tmp_path / "run" / "checkpoints.unreadable" / "6").is_dir()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL semantics")
def test_distill_killed_with_9_resumes_bit_identically(tmp_path):
    """`ctjax distill` killed (-9) between checkpoints, restarted with the same command, ends
    with the parameters of an uninterrupted run and logs every step once."""
    need_data(paths.sequence_dir, "Woman")
    spec = f"{SPEC}:smoke,steps=30,checkpoint_every=5,eval_every=100"
    config = load_config(spec)

    def cmd(workdir):
        return [sys.executable, "-m", "ctjax", "distill", "--config", spec, "--workdir",
                str(workdir), "--no-progress"]

    subprocess.run(cmd(tmp_path / "whole"), check=True, capture_output=True)
    proc = subprocess.Popen(cmd(tmp_path / "killed"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    log = tmp_path / "killed" / "log.jsonl"
    deadline = time.monotonic() + 300
    while not (log.exists() and len(log.read_text().splitlines()) >= 13):
        assert proc.poll() is None and time.monotonic() < deadline, "run ended before the kill"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(_train_steps(tmp_path / "killed")) < 30
    subprocess.run(cmd(tmp_path / "killed"), check=True, capture_output=True)
    assert _train_steps(tmp_path / "killed") == list(range(1, 31))
    chex.assert_trees_all_equal(_final_state(config, tmp_path / "killed", 30),
                                _final_state(config, tmp_path / "whole", 30))

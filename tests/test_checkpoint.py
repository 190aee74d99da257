"""Tests for ctjax.distill.checkpoint and ctjax.distill.export: kill/resume, keep-last-N,
target-free restore, and exporting a run's student."""

import dataclasses
import json
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import need_data
from ctjax import paths
from ctjax.distill import checkpoint, config as distill_config, export, loop, steps
from ctjax.models import student

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def test_kill_and_resume_gives_bit_identical_parameters(tmp_path):
    """A run stopped after 3 of 6 steps and restarted ends with exactly (bit for bit, on CPU)
    the parameters and optimiser state of an uninterrupted run; its export is the student."""
    need_data(paths.sequence_dir, "Woman")
    config = dataclasses.replace(
        distill_config.load_config(str(EXPERIMENTS / "distill_tracking.py:smoke")),
        checkpoint_every=2, eval_every=100)
    whole = loop.train_and_evaluate(config, tmp_path / "whole", progress=False)
    killed = loop.train_and_evaluate(config, tmp_path / "killed", progress=False, stop_after=3)
    assert killed["steps"] == 3 and not killed["complete"]
    resumed = loop.train_and_evaluate(config, tmp_path / "killed", progress=False)
    assert whole["steps"] == resumed["steps"] == 6

    setup, optimizer = steps.make_setup(config), steps.make_optimizer(config)
    target = steps.init_state(config, setup, optimizer, 0, {})
    a, _ = checkpoint.Checkpointer(tmp_path / "whole" / "checkpoints").restore(6, target)
    b, _ = checkpoint.Checkpointer(tmp_path / "killed" / "checkpoints").restore(6, target)
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(a.params["student"]["params"]["conv1"]["kernel"],
                              target.params["student"]["params"]["conv1"]["kernel"])
    # The resumed run appended to the same log: steps 1..6 each logged exactly once.
    logged = [json.loads(l)["step"] for l in (tmp_path / "killed" / "log.jsonl").read_text()
              .splitlines() if json.loads(l)["split"] == "train"]
    assert logged == [1, 2, 3, 4, 5, 6]

    # Export reads only the student out of the checkpoint (no optimiser, no teacher).
    out = export.export_run(tmp_path / "killed", tmp_path / "student", step=4)
    loaded = student.read_student(out)
    c, _ = checkpoint.Checkpointer(tmp_path / "killed" / "checkpoints").restore(4, target)
    chex.assert_trees_all_equal(loaded.variables, c.params["student"])
    assert student.student_info(out)["training"]["checkpoint_step"] == 4
    with pytest.raises(ValueError, match="no checkpoint for step 5"):
        export.export_run(tmp_path / "killed", tmp_path / "other", step=5)


def test_keeps_the_newest_n_and_restores_into_the_target_structure(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path, keep=2)
    tree = {"w": jnp.arange(6.0).reshape(2, 3), "n": (jnp.int32(3), jnp.ones(2, jnp.bfloat16))}
    for step in range(1, 5):
        ckpt.save(step, jax.tree.map(lambda x: x * step, tree), {"step": step})
    ckpt.wait()
    assert ckpt.steps() == [3, 4]
    restored, meta = ckpt.restore_latest(tree)
    assert meta == {"step": 4}
    chex.assert_trees_all_equal(restored, jax.tree.map(lambda x: x * 4, tree))
    assert checkpoint.Checkpointer(tmp_path / "empty").restore_latest(tree) is None


def test_restore_tree_needs_no_target(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path)
    state = steps.TrainState(step=jnp.int32(7),
                             params={"student": {"params": {"conv1": {"kernel": jnp.ones((2, 3))}}}},
                             opt_state=(jnp.zeros(3),), scales={"conv1": jnp.float32(2.0)})
    ckpt.save(7, state, {"wall_time": 1.5})
    ckpt.wait()
    tree, meta = ckpt.restore_tree(7)
    assert meta == {"wall_time": 1.5}
    np.testing.assert_array_equal(tree["params"]["student"]["params"]["conv1"]["kernel"],
                                  np.ones((2, 3)))
    assert int(tree["step"]) == 7


def test_export_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a distillation run folder"):
        export.export_run(tmp_path, tmp_path / "s")
    (tmp_path / "config.json").write_text(json.dumps(distill_config.DistillConfig().to_json()))
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        export.export_run(tmp_path, tmp_path / "s")

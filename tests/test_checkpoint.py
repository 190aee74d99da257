"""Tests for ctjax.checkpoint: kill/resume, keep-last-N, student export and its validation."""

import dataclasses
import json
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctjax import paths
from ctjax.distill import checkpoint
from ctjax.distill import loop as train
from ctjax.models import registry
from ctjax.distill.loop import student_preprocessing

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def test_kill_and_resume_gives_bit_identical_parameters(tmp_path):
    """A run stopped after 3 of 6 steps and restarted ends with exactly (bit for bit, on CPU)
    the parameters and optimiser state of an uninterrupted run."""
    try:
        paths.sequence_dir("Woman")
    except paths.DataNotFoundError as e:
        pytest.skip(str(e))
    config = dataclasses.replace(
        train.load_config(str(EXPERIMENTS / "distill_tracking.py:smoke")), checkpoint_every=2,
        eval_every=100)
    whole = train.train_and_evaluate(config, tmp_path / "whole", progress=False)
    killed = train.train_and_evaluate(config, tmp_path / "killed", progress=False, stop_after=3)
    assert killed["steps"] == 3 and not killed["complete"]
    resumed = train.train_and_evaluate(config, tmp_path / "killed", progress=False)
    assert whole["steps"] == resumed["steps"] == 6

    setup, optimizer = train.make_setup(config), train.make_optimizer(config)
    target = train.init_state(config, setup, optimizer, 0, {})
    a, _ = checkpoint.Checkpointer(tmp_path / "whole" / "checkpoints").restore(6, target)
    b, _ = checkpoint.Checkpointer(tmp_path / "killed" / "checkpoints").restore(6, target)
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(a.params["student"]["params"]["conv1"]["kernel"],
                              target.params["student"]["params"]["conv1"]["kernel"])
    # The resumed run appended to the same log: steps 1..6 each logged exactly once.
    steps = [json.loads(l)["step"] for l in (tmp_path / "killed" / "log.jsonl").read_text()
             .splitlines() if json.loads(l)["split"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]


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


def _random_student(name="cf_vggm_r64", seed=0):
    config = registry.MODEL_CONFIGS[name]
    abstract = jax.eval_shape(registry.build_module(config).init, jax.random.key(0),
                              jnp.zeros((1, 96, 96, 3)))
    rng = np.random.default_rng(seed)
    variables = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), abstract)
    return config, variables


def test_export_round_trip_is_exact_and_small(tmp_path):
    config, variables = _random_student()
    out = checkpoint.export_student(tmp_path / "s", variables, config=config,
                                    preprocessing=student_preprocessing(),
                                    training={"steps": 5})
    loaded = checkpoint.load_student(out)
    assert loaded.config == config
    chex.assert_trees_all_equal(loaded.variables, jax.tree.map(jnp.asarray, variables))
    np.testing.assert_array_equal(loaded.preprocessing.mean, student_preprocessing().mean)
    assert loaded.preprocessing.std is None
    assert checkpoint.student_info(out)["training"] == {"steps": 5}
    assert sum(p.stat().st_size for p in out.iterdir()) < 500_000  # 103,760 float32 + JSON


@pytest.fixture
def exported(tmp_path):
    config, variables = _random_student()
    return checkpoint.export_student(tmp_path / "student", variables, config=config,
                                     preprocessing=student_preprocessing())


def _edit_json(path, **changes):
    meta = json.loads((path / checkpoint.STUDENT_JSON).read_text())
    meta.update(changes)
    (path / checkpoint.STUDENT_JSON).write_text(json.dumps(meta))


def test_clear_errors_for_bad_students(exported, tmp_path):
    err = checkpoint.StudentFileError
    with pytest.raises(err, match="not found"):
        checkpoint.load_student(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(err, match="not a ctjax student export"):
        checkpoint.load_student(tmp_path / "plain")
    with pytest.raises(err, match="not a ctjax student export"):
        checkpoint.load_student(exported / checkpoint.STUDENT_PARAMS)  # a file, not the folder

    data = bytearray((exported / checkpoint.STUDENT_PARAMS).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (exported / checkpoint.STUDENT_PARAMS).write_bytes(bytes(data))
    with pytest.raises(err, match="corrupt"):
        checkpoint.load_student(exported)


@pytest.mark.parametrize("changes, match", [
    ({"format_version": 99}, "format version 99"),
    ({"format": "something-else"}, "not a ctjax student"),
    ({"model": {"name": "cf_vggm_r64", "family": "vggm", "widths": [12, 32, 64, 64, 32]}},
     "registered"),
    ({"model": {"name": "cf_vggm_r96", "family": "vggm", "widths": [10, 26, 52, 52, 52]}},
     "shape"),
    ({"model": {"name": "efficientnet_lite0", "family": "efficientnet_lite0", "widths": None}},
     "VGG-M-family"),
])
def test_version_and_config_mismatches_are_named(exported, changes, match):
    _edit_json(exported, **changes)
    with pytest.raises(checkpoint.StudentFileError, match=match):
        checkpoint.load_student(exported)


def test_corrupt_json_is_named(exported):
    (exported / checkpoint.STUDENT_JSON).write_text("{not json")
    with pytest.raises(checkpoint.StudentFileError, match="corrupt"):
        checkpoint.load_student(exported)


def test_export_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("precious")
    config, variables = _random_student()
    with pytest.raises(FileExistsError):
        checkpoint.export_student(tmp_path / "data", variables, config=config,
                                  preprocessing=student_preprocessing())

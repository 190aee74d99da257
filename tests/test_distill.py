"""Tests for ctjax.train: every experiment's smoke run, the step contract, the CLI functions.

The smoke runs use the shared train-split data (`Woman`) and the EfficientNet-Lite0 teacher
file; they are skipped where the data folder is not installed.
"""

import argparse
import dataclasses
import json
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

from ctjax import paths
from ctjax.distill import checkpoint
from ctjax.distill import loop as train

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SMOKE_SPECS = ["distill_fid_track.py:smoke", "distill_fidelity.py:smoke",
               "distill_tracking.py:smoke", "distill_ratio.py:r96,smoke"]


def _require_data():
    try:
        paths.sequence_dir("Woman")
        paths.weights_file("efficientnet_lite0_imagenet_torch_layout.npz")
    except paths.DataNotFoundError as e:
        pytest.skip(str(e))


def _train_losses(workdir: Path) -> list[float]:
    lines = [json.loads(l) for l in (workdir / "log.jsonl").read_text().splitlines()]
    return [l["loss"] for l in lines if l["split"] == "train"]


def test_every_experiment_config_has_a_tested_smoke_variant():
    configs = sorted(p.name for p in EXPERIMENTS.glob("distill_*.py"))
    assert configs == sorted({s.split(":")[0] for s in SMOKE_SPECS})
    for spec in SMOKE_SPECS:
        config = train.load_config(str(EXPERIMENTS / spec))
        assert config.steps <= 10 and config.crop_size <= 96 and config.batch_size <= 4


@pytest.mark.parametrize("spec", SMOKE_SPECS[1:])
def test_smoke_run_loss_falls(spec, tmp_path):
    _require_data()
    config = train.load_config(str(EXPERIMENTS / spec))
    summary = train.train_and_evaluate(config, tmp_path, progress=False)
    assert summary["complete"] and summary["steps"] == config.steps
    assert summary["train_step_traces"] == 1
    losses = _train_losses(tmp_path)
    assert len(losses) == config.steps and np.all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0], losses
    assert (tmp_path / "summary.json").is_file()


def test_cli_distill_then_export_gives_a_student_the_tracker_loads(tmp_path):
    """The main experiment's smoke run through `run_distill` / `run_export` (the functions
    behind `ctjax distill` and `ctjax export`), then `ctjax track`'s loader."""
    _require_data()
    parser = train.add_distill_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--config", str(EXPERIMENTS / SMOKE_SPECS[0]), "--workdir",
                              str(tmp_path / "run"), "--no-progress"])
    assert train.run_distill(args) == 0
    losses = _train_losses(tmp_path / "run")
    assert losses[-1] < 0.9 * losses[0], losses

    export = checkpoint.add_export_arguments(argparse.ArgumentParser()).parse_args(
        ["--workdir", str(tmp_path / "run"), "--output", str(tmp_path / "student")])
    assert checkpoint.run_export(export) == 0
    loaded = checkpoint.load_student(tmp_path / "student")
    assert loaded.config.name == "cf_vggm_r64"
    info = checkpoint.student_info(tmp_path / "student")
    assert info["training"]["summary"]["steps"] == 6

    from ctjax.trackers import presets
    built = presets.build("cfvggm", weights=tmp_path / "student")
    assert built.weights == str(tmp_path / "student")
    via_tracker = presets.load_student(tmp_path / "student")
    chex.assert_trees_all_equal(via_tracker.variables, loaded.variables)


def _synthetic_batch(config, n=2, seed=0):
    rng = np.random.default_rng(seed)
    s = config.crop_size
    return {"template": rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8),
            "search": rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8),
            "shift": rng.choice([-16.0, 0.0, 16.0], (n, 2)).astype(np.float32)}


def test_step_traces_once_and_leaves_the_teacher_unchanged():
    """Teacher run inside the step (no cache): its variables are an argument, unchanged and
    not differentiated; the step compiles once over several batches."""
    try:
        from ctjax.models import weights
        teacher = weights.load_efficientnet_lite0()
    except weights.WeightFileError as e:
        pytest.skip(str(e))
    config = dataclasses.replace(train.load_config(str(EXPERIMENTS / SMOKE_SPECS[0])),
                                 crop_size=64, pool_pairs=0)
    setup = train.make_setup(config)
    optimizer = train.make_optimizer(config)
    scales = {s: 1.0 for s, _ in config.layers}
    state = train.init_state(config, setup, optimizer, 0, scales)
    before = jax.tree.map(np.array, teacher.variables)
    step = jax.jit(chex.assert_max_traces(
        train.make_train_step(setup=setup, config=config, optimizer=optimizer, cached=False), n=1))
    first = None
    for i in range(3):
        state, metrics = step(state, teacher.variables, _synthetic_batch(config, seed=i))
        first = first if first is not None else state.params
        assert np.isfinite(float(metrics["loss"]))
        assert set(metrics) >= {"loss", "fid/conv1", "fid/conv5", "track/conv1", "track/conv5",
                                "grad_norm", "lr"}
    assert int(state.step) == 3
    chex.assert_trees_all_equal(jax.tree.map(np.array, teacher.variables), before)
    # The student did move.
    assert not np.array_equal(np.asarray(first["student"]["params"]["conv1"]["kernel"]),
                              np.asarray(init_kernel(config, setup)))


def init_kernel(config, setup):
    return train.init_params(config, setup, 0)["student"]["params"]["conv1"]["kernel"]


def test_overrides_and_unknown_keys():
    config = train.load_config(str(EXPERIMENTS / "distill_fid_track.py:steps=7,lam=0.01"))
    assert config.steps == 7 and config.lam == 0.01
    with pytest.raises(ValueError, match="unknown config key"):
        train.load_config(str(EXPERIMENTS / "distill_fid_track.py:stepz=7"))
    with pytest.raises(ValueError, match="unknown config variant"):
        train.load_config(str(EXPERIMENTS / "distill_fid_track.py:smok"))
    assert train.load_config(str(EXPERIMENTS / "distill_fid_track.py:sequences=Woman+Surfer")
                             ).sequences == ("Woman", "Surfer")
    ratio = train.load_config(str(EXPERIMENTS / "distill_ratio.py:r16"))
    assert ratio.student == "cf_vggm_r16"
    with pytest.raises(ValueError):
        train.DistillConfig(fidelity_weight=0.0, tracking_weight=0.0)


def test_a_workdir_refuses_a_different_config(tmp_path):
    config = train.DistillConfig(steps=3)
    (tmp_path / "config.json").write_text(json.dumps(train.DistillConfig(steps=4).to_json()))
    with pytest.raises(ValueError, match="different config"):
        train.train_and_evaluate(config, tmp_path, progress=False)


def test_schedules_reach_their_final_value():
    for schedule in ("cosine", "exponential"):
        config = train.DistillConfig(steps=100, warmup_steps=10, schedule=schedule,
                                     learning_rate=1e-2, final_lr_fraction=1e-3)
        fn = train.make_schedule(config)
        assert float(fn(0)) == 0.0 and float(fn(10)) == pytest.approx(1e-2)
        assert float(fn(100)) == pytest.approx(1e-5, rel=1e-3)

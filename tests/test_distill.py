"""Tests for ctjax.distill: every experiment's smoke run, the step contract, the config and
its overrides, and the `ctjax distill` / `ctjax export` commands end to end.

The smoke runs use the shared train-split data (`Woman`) and the EfficientNet-Lite0 teacher
file; without them they skip naming `CTJAX_DATA` (CI makes that a failure).
"""

import dataclasses
import json
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

from conftest import need_data
from ctjax import commands, paths
from ctjax.data.pairs import PairConfig
from ctjax.distill import config as distill_config
from ctjax.distill import loop, steps
from ctjax.distill.config import DistillConfig, load_config
from ctjax.models import student

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SMOKE_SPECS = ["distill_fid_track.py:smoke", "distill_fidelity.py:smoke",
               "distill_tracking.py:smoke", "distill_ratio.py:r96,smoke"]


def _require_data():
    need_data(paths.sequence_dir, "Woman")
    need_data(paths.weights_file, "efficientnet_lite0_imagenet_torch_layout.npz")


def _train_losses(workdir: Path) -> list[float]:
    lines = [json.loads(l) for l in (workdir / "log.jsonl").read_text().splitlines()]
    return [l["loss"] for l in lines if l["split"] == "train"]


def test_every_experiment_config_has_a_tested_smoke_variant():
    configs = sorted(p.name for p in EXPERIMENTS.glob("distill_*.py"))
    assert configs == sorted({s.split(":")[0] for s in SMOKE_SPECS})
    for spec in SMOKE_SPECS:
        config = load_config(str(EXPERIMENTS / spec))
        assert config.steps <= 10 and config.pairs.crop_size <= 96 and config.batch_size <= 4


@pytest.mark.parametrize("spec", SMOKE_SPECS[1:])
def test_smoke_run_loss_falls(spec, tmp_path):
    _require_data()
    config = load_config(str(EXPERIMENTS / spec))
    summary = loop.train_and_evaluate(config, tmp_path, progress=False)
    assert summary["complete"] and summary["steps"] == config.steps
    assert summary["train_step_traces"] == 1
    losses = _train_losses(tmp_path)
    assert len(losses) == config.steps and np.all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0], losses
    assert (tmp_path / "summary.json").is_file()


def test_cli_distill_then_export_gives_a_student_the_tracker_loads(tmp_path):
    """The main experiment's smoke run through `ctjax distill` and `ctjax export`, then the
    trackers' loader."""
    _require_data()
    assert commands.main(["distill", "--config", str(EXPERIMENTS / SMOKE_SPECS[0]),
                          "--workdir", str(tmp_path / "run"), "--no-progress"]) == 0
    losses = _train_losses(tmp_path / "run")
    assert losses[-1] < 0.9 * losses[0], losses

    assert commands.main(["export", "--workdir", str(tmp_path / "run"),
                          "--output", str(tmp_path / "student")]) == 0
    loaded = student.read_student(tmp_path / "student")
    assert loaded.config.name == "cf_vggm_r64"
    info = student.student_info(tmp_path / "student")
    assert info["training"]["summary"]["steps"] == 6
    assert info["training"]["config"]["pairs"]["crop_size"] == 80

    from ctjax.trackers import presets
    built = presets.build("cfvggm", weights=tmp_path / "student")
    assert built.weights == str(tmp_path / "student")
    via_tracker = presets.load_student(tmp_path / "student")
    chex.assert_trees_all_equal(via_tracker.variables, loaded.variables)


def _synthetic_batch(config, n=2, seed=0):
    rng = np.random.default_rng(seed)
    s = config.pairs.crop_size
    return {"template": rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8),
            "search": rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8),
            "shift": rng.choice([-16.0, 0.0, 16.0], (n, 2)).astype(np.float32)}


def test_step_traces_once_and_leaves_the_teacher_unchanged():
    """Teacher run inside the step (no cache): its variables are an argument, unchanged and
    not differentiated; the step compiles once over several batches."""
    from ctjax.models import weights
    teacher = weights.load_efficientnet_lite0(
        need_data(paths.weights_file, "efficientnet_lite0_imagenet_torch_layout.npz"))
    config = distill_config.override(load_config(str(EXPERIMENTS / SMOKE_SPECS[0])),
                                     "pairs.crop_size=64,pool_pairs=0")
    setup = steps.make_setup(config)
    optimizer = steps.make_optimizer(config)
    scales = {s: 1.0 for s, _ in config.layers}
    state = steps.init_state(config, setup, optimizer, 0, scales)
    before = jax.tree.map(np.array, teacher.variables)
    step = jax.jit(chex.assert_max_traces(
        steps.make_train_step(setup=setup, config=config, optimizer=optimizer, cached=False), n=1))
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
    return steps.init_params(config, setup, 0)["student"]["params"]["conv1"]["kernel"]


def test_overrides_and_unknown_keys():
    config = load_config(str(EXPERIMENTS / "distill_fid_track.py:steps=7,lam=0.01"))
    assert config.steps == 7 and config.lam == 0.01
    with pytest.raises(ValueError, match="unknown config key"):
        load_config(str(EXPERIMENTS / "distill_fid_track.py:stepz=7"))
    with pytest.raises(ValueError, match="unknown config key.*pairs.gap"):
        load_config(str(EXPERIMENTS / "distill_fid_track.py:pairs.gap=3"))
    with pytest.raises(ValueError, match="unknown config key.*crop_size"):
        load_config(str(EXPERIMENTS / "distill_fid_track.py:crop_size=64"))  # it is pairs.*
    with pytest.raises(ValueError, match="unknown config variant"):
        load_config(str(EXPERIMENTS / "distill_fid_track.py:smok"))
    assert load_config(str(EXPERIMENTS / "distill_fid_track.py:sequences=Woman+Surfer")
                       ).sequences == ("Woman", "Surfer")
    nested = load_config(str(EXPERIMENTS / "distill_fid_track.py:smoke,pairs.max_gap=3"))
    assert nested.pairs == PairConfig(crop_size=80, max_gap=3) and nested.steps == 6
    ratio = load_config(str(EXPERIMENTS / "distill_ratio.py:r16"))
    assert ratio.student == "cf_vggm_r16"
    with pytest.raises(ValueError):
        DistillConfig(fidelity_weight=0.0, tracking_weight=0.0)


def test_config_nests_the_pair_config_and_reads_both_json_layouts():
    config = DistillConfig(pairs=PairConfig(crop_size=96, max_gap=4), steps=3)
    data = json.loads(json.dumps(config.to_json()))
    assert data["pairs"]["crop_size"] == 96 and "crop_size" not in data
    assert DistillConfig.from_json(data) == config
    legacy = {k: v for k, v in data.items() if k != "pairs"}
    legacy.update(crop_size=96, context=4.5, max_gap=4, max_jitter=16, jitter_step=16)
    assert DistillConfig.from_json(legacy) == config  # the first config.json layout


def test_a_workdir_refuses_a_different_config(tmp_path):
    config = DistillConfig(steps=3)
    (tmp_path / "config.json").write_text(json.dumps(DistillConfig(steps=4).to_json()))
    with pytest.raises(ValueError, match="different config"):
        loop.train_and_evaluate(config, tmp_path, progress=False)


def test_schedules_reach_their_final_value():
    for schedule in ("cosine", "exponential"):
        config = DistillConfig(steps=100, warmup_steps=10, schedule=schedule,
                               learning_rate=1e-2, final_lr_fraction=1e-3)
        fn = steps.make_schedule(config)
        assert float(fn(0)) == 0.0 and float(fn(10)) == pytest.approx(1e-2)
        assert float(fn(100)) == pytest.approx(1e-5, rel=1e-3)

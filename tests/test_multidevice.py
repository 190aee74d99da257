"""Distillation beyond one device (issue 16): forced host devices and jax.distributed.

The device count is fixed when jax starts, so every check with several devices or processes
runs in fresh interpreters (`tests/multidevice_run.py`, `python -m ctjax distill`) with
`--xla_force_host_platform_device_count`. What must hold, whatever the devices:
* the global batch is the same: row i of a step's batch is the same pair, built only by the
  process whose devices hold it (checked against the whole batch drawn on one host);
* the pool of pairs is the same when its chunks are split over hosts;
* the same run on 1 and 4 devices, or on 2 processes x 2 devices, logs the same losses to
  float tolerance (the reductions' order changes) and exports the same student to tolerance;
* several processes write one checkpoint (once, by Orbax's multi-host support) and every
  process restores it; a checkpoint from one mesh restores onto another.

The smoke runs use the shared train-split sequence `Woman` (skipped naming `CTJAX_DATA`
without it); the longer ones are marked slow.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import need_data
from ctjax import commands, paths
from ctjax.data import pairs, sequences
from ctjax.distill import config as distill_config
from ctjax.distill import export, parallel, pools, steps
from ctjax.models import student

ROOT = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).resolve().parent / "multidevice_run.py"
EXPERIMENTS = ROOT / "experiments"
# Teacher-free (cheap to compile), fresh pairs in every step (no pool): the per-row sampler.
TRACKING = (f"{EXPERIMENTS / 'distill_tracking.py'}:smoke,batch_size=4,pool_pairs=0,"
            "pairs.crop_size=64,steps=4,eval_every=2,checkpoint_every=4")
# The main experiment's smoke run: teacher targets cached in a pool.
FIDELITY = f"{EXPERIMENTS / 'distill_fid_track.py'}:smoke,batch_size=4,pool_pairs=8"
TIMEOUT = 900


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(devices: int, **extra) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    for name in (parallel.ENV_COORDINATOR, parallel.ENV_NUM_PROCESSES, parallel.ENV_PROCESS_ID):
        if name not in extra:
            env.pop(name, None)
    return env


def _run_all(commands_, envs, timeout=TIMEOUT) -> list[str]:
    """Runs the commands at once; fails naming the first that failed, with its output."""
    procs = [subprocess.Popen(c, env=e, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for c, e in zip(commands_, envs)]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for c, p, out in zip(commands_, procs, outputs):
        assert p.returncode == 0, f"{' '.join(map(str, c))} failed:\n{out[-4000:]}"
    return outputs


def _meshes(tmp: Path, config: str, devices: int, meshes: str, *extra) -> dict:
    _run_all([[sys.executable, str(HELPER), "meshes", "--host-devices", str(devices),
               "--config", config, "--workdir", str(tmp), "--cache-dir", str(tmp / "pools"),
               "--meshes", meshes, *extra]], [_env(devices)])
    return json.loads((tmp / "result.json").read_text())


def _train_log(log: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in log]


def _assert_same_log(a: list[dict], b: list[dict], rtol=1e-5):
    """Same records (steps, splits, metric names), every value equal to `rtol`."""
    a, b = _train_log(a), _train_log(b)
    assert [(r["step"], r["split"], sorted(r)) for r in a] == \
        [(r["step"], r["split"], sorted(r)) for r in b]
    for x, y in zip(a, b):
        for k in x:
            if k not in ("step", "split"):
                np.testing.assert_allclose(x[k], y[k], rtol=rtol, err_msg=f"step {x['step']} {k}")


def _student(workdir: Path, out: Path) -> dict:
    return student.read_student(export.export_run(workdir, out)).variables


def _assert_same_student(a: dict, b: dict, config_spec: str, atol=2e-4):
    """Equal to `atol`, and training moved the weights by far more than that (else the
    comparison would say nothing)."""
    config = distill_config.load_config(config_spec)
    init = steps.init_params(config, steps.make_setup(config), config.seed)["student"]
    moved = max(float(np.max(np.abs(np.asarray(x) - np.asarray(i))))
                for x, i in zip(jax.tree.leaves(a), jax.tree.leaves(init)))
    assert moved > 20 * atol, moved
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, atol=atol, rtol=0, err_msg=jax.tree_util.keystr(path))


# --------------------------------------------------------------------------------------------
# In process: rows of a global batch, pools split over hosts, start-up arguments


@pytest.fixture(scope="module")
def demo_sampler():
    return pairs.PairSampler(pairs.SequenceFrames([sequences.demo_sequence()]),
                             pairs.PairConfig(crop_size=48, max_jitter=16, jitter_step=16))


def test_each_row_of_a_batch_is_drawn_alone(demo_sampler):
    """What a host builds from its rows is exactly those rows of the whole batch."""
    whole = demo_sampler.batch(5, 3, 6)
    part = demo_sampler.batch(5, 3, 6, rows=[4, 1])
    for key in whole:
        np.testing.assert_array_equal(part[key], whole[key][[4, 1]])
    assert len({tuple(r) for r in whole["index"]}) > 1  # the rows are different pairs
    longer = demo_sampler.batch(5, 3, 8)  # a row does not depend on the batch size
    np.testing.assert_array_equal(longer["search"][:6], whole["search"])
    with pytest.raises(ValueError, match="rows must lie in 0..5"):
        demo_sampler.batch(5, 3, 6, rows=[6])


def test_rows_and_global_batch_on_one_device():
    mesh = parallel.data_mesh(jax.devices()[:1])
    sharding = parallel.batch_sharding(mesh)
    rows = parallel.local_rows(sharding, 4)
    np.testing.assert_array_equal(rows, [0, 1, 2, 3])
    x = np.arange(12.0).reshape(4, 3)
    batch = parallel.global_batch({"x": x}, rows, sharding, 4)
    np.testing.assert_array_equal(np.asarray(batch["x"]), x)
    assert batch["x"].sharding == sharding


class _ThreadHosts:
    """Two "hosts" as threads of this process, meeting at a barrier (jax.distributed stand-in)."""

    def __init__(self, index, count, barrier):
        self.index, self.count, self._barrier = index, count, barrier

    def sync(self, name):
        self._barrier.wait(timeout=120)


def test_pool_chunks_split_over_hosts_give_the_one_host_pool(demo_sampler, tmp_path, monkeypatch):
    config = distill_config.DistillConfig(fidelity_weight=0.0, pool_pairs=70, val_pairs=0,
                                          pairs=demo_sampler.config)
    args = dict(seed=3, teacher_fn=None, teacher_variables=None, config=config, desc="train")
    reference = pools.build_pool(demo_sampler, 70, cache_dir=None, **args)

    computed: dict = {}
    real_chunk = pools._chunk

    def recording_chunk(sampler, n, start, **kw):
        computed.setdefault(threading.current_thread().name, []).append(start)
        return real_chunk(sampler, n, start, **kw)

    monkeypatch.setattr(pools, "_chunk", recording_chunk)
    barrier, results = threading.Barrier(2), {}

    def host(k):
        results[k] = pools.build_pool(demo_sampler, 70, cache_dir=tmp_path,
                                      hosts=_ThreadHosts(k, 2, barrier), **args)

    threads = [threading.Thread(target=host, args=(k,), name=f"host{k}") for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert sorted(computed["host0"]) == [0, 64] and computed["host1"] == [32]
    for k in (0, 1):
        assert sorted(results[k]) == sorted(reference)
        for key in reference:
            np.testing.assert_array_equal(results[k][key], reference[key])
    folder = next(tmp_path.glob("train_*"))
    assert (folder / "complete").is_file() and not (folder / "parts").exists()
    cached = pools.build_pool(demo_sampler, 70, cache_dir=tmp_path, **args)  # read back
    np.testing.assert_array_equal(cached["search"], reference["search"])


def test_multi_process_start_up_needs_all_three_settings(monkeypatch, capsys):
    for name in (parallel.ENV_COORDINATOR, parallel.ENV_NUM_PROCESSES, parallel.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    assert parallel.initialize() == parallel.Hosts(0, 1)  # nothing set: one process
    with pytest.raises(ValueError, match="needs all three"):
        parallel.initialize("localhost:1234")
    monkeypatch.setenv(parallel.ENV_NUM_PROCESSES, "two")
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES must be an integer"):
        parallel.initialize()
    monkeypatch.setenv(parallel.ENV_NUM_PROCESSES, "2")
    with pytest.raises(ValueError, match=r"process id must be in 0..1, got 2"):
        parallel.initialize("localhost:1234", process_id=2)
    monkeypatch.delenv(parallel.ENV_NUM_PROCESSES)
    status = commands.main(["distill", "--config", FIDELITY, "--workdir", "unused",
                            "--process-id", "1"], one_line_errors=True)
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--coordinator, --num-processes, --process-id" in err
    assert not Path("unused").exists()


# --------------------------------------------------------------------------------------------
# Several processes: the mechanics (fast) and a whole smoke run (slow)


def test_two_processes_shard_rows_replicate_and_write_one_checkpoint(tmp_path):
    """Two processes x 2 CPU devices under jax.distributed: each holds its own rows of the
    global batch, reductions see all rows, process 0's value is broadcast, a checkpoint is
    written once and restored (replicated) by both, and reads back in this 1-device process."""
    port = _free_port()
    cmd = [sys.executable, str(HELPER), "mechanics", "--host-devices", "2", "--coordinator",
           f"localhost:{port}", "--num-processes", "2", "--dir", str(tmp_path)]
    _run_all([cmd + ["--process-id", str(k)] for k in (0, 1)], [_env(2), _env(2)], timeout=300)
    results = [json.loads((tmp_path / f"process-{k}.json").read_text()) for k in (0, 1)]
    full = np.arange(24, dtype=np.float32).reshape(8, 3)
    w = np.arange(3, dtype=np.float32)
    for k, r in enumerate(results):
        assert (r["index"], r["count"], r["global_devices"], r["local_devices"]) == (k, 2, 4, 2)
        assert r["total"] == float(np.sum(full @ w))  # every row, though each holds half
        assert r["w2"] == r["restored_w"] == (2 * w).tolist() and r["restored_step"] == 7
        assert r["restored_sharding_replicated"] and r["scale"] == 10.0
        assert r["meta"] == {"written_by": 0}  # the JSON record: written once, by process 0
    assert sorted(results[0]["rows"] + results[1]["rows"]) == list(range(8))
    assert not set(results[0]["rows"]) & set(results[1]["rows"])
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1"]
    from ctjax.distill import checkpoint
    tree, meta = checkpoint.Checkpointer(tmp_path / "checkpoints").restore_tree(1)
    np.testing.assert_array_equal(tree["w"], 2 * w)
    assert meta == {"written_by": 0}


@pytest.fixture(scope="module")
def tracking_reference(tmp_path_factory):
    """The teacher-free smoke run on meshes of 1 and 4 devices in one 4-device process."""
    need_data(paths.sequence_dir, "Woman")
    tmp = tmp_path_factory.mktemp("tracking")
    return tmp, _meshes(tmp, TRACKING, 4, "1,4")


def test_one_and_four_devices_give_the_same_losses_and_student(tracking_reference, tmp_path):
    tmp, result = tracking_reference
    assert result["devices"] == 4
    one, four = result["runs"]["1"], result["runs"]["4"]
    assert len(one["summary"]["devices"]) == 1 and len(four["summary"]["devices"]) == 4
    assert one["summary"]["complete"] and four["summary"]["train_step_traces"] == 1
    assert len([r for r in one["log"] if r["split"] == "train"]) == 4
    _assert_same_log(one["log"], four["log"])
    _assert_same_student(_student(tmp / "mesh1", tmp_path / "s1"),
                         _student(tmp / "mesh4", tmp_path / "s4"), TRACKING)


@pytest.mark.slow
def test_two_processes_complete_a_smoke_run_with_one_checkpoint_and_resume(
        tracking_reference, tmp_path):
    """`ctjax distill` as 2 processes x 2 devices (process 0 configured by flags, process 1 by
    JAX_* variables): stopped after 2 steps, then resumed by both processes from the one
    checkpoint; logs once, and matches the one-process run."""
    ref_dir, reference = tracking_reference
    workdir = tmp_path / "run"

    def launch(*extra):
        port = _free_port()
        base = [sys.executable, "-m", "ctjax", "distill", "--config", TRACKING, "--workdir",
                str(workdir), "--no-progress", *extra]
        first = base + ["--coordinator", f"localhost:{port}", "--num-processes", "2",
                        "--process-id", "0"]
        second_env = _env(2, **{parallel.ENV_COORDINATOR: f"localhost:{port}",
                                parallel.ENV_NUM_PROCESSES: "2", parallel.ENV_PROCESS_ID: "1"})
        return _run_all([first, base], [_env(2), second_env])

    launch("--stop-after", "2")
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2"]
    out = launch()
    assert "resuming" in out[0] and "resuming" not in out[1]  # process 0 alone reports
    assert '"complete": true' in out[0] and '"complete"' not in out[1]
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "4"]
    log = [json.loads(line) for line in (workdir / "log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in log] == \
        [(1, "train"), (2, "train"), (2, "val"), (3, "train"), (4, "train"), (4, "val")]
    _assert_same_log(log, reference["runs"]["1"]["log"])
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["processes"] == 2 and len(summary["devices"]) == 4
    _assert_same_student(_student(workdir, tmp_path / "s"),
                         _student(ref_dir / "mesh1", tmp_path / "s1"), TRACKING)


@pytest.mark.slow
def test_main_smoke_run_on_one_and_four_device_processes(tmp_path):
    """The main experiment's smoke run (teacher targets in a pool) in a 1-device and a
    4-device process: same losses, same student; a run stopped on 4 devices resumes on 2
    and ends like the others."""
    need_data(paths.sequence_dir, "Woman")
    need_data(paths.weights_file, "efficientnet_lite0_imagenet_torch_layout.npz")
    one = _meshes(tmp_path / "one", FIDELITY, 1, "1")
    four = _meshes(tmp_path / "four", FIDELITY, 4, "4", "--stop-after", "3", "--resume-mesh", "2")
    a, b = one["runs"]["1"], four["runs"]["4"]
    assert len(b["summary"]["devices"]) == 4
    _assert_same_log(a["log"], b["log"])
    _assert_same_log(a["log"], four["runs"]["resumed"]["log"])
    reference = _student(tmp_path / "one" / "mesh1", tmp_path / "s1")
    _assert_same_student(reference, _student(tmp_path / "four" / "mesh4", tmp_path / "s4"),
                         FIDELITY)
    _assert_same_student(reference, _student(tmp_path / "four" / "mesh4-then-2", tmp_path / "s42"),
                         FIDELITY)


def test_a_failing_process_ends_the_run_with_a_clear_error(tmp_path):
    """Process 1 given another --workdir fails at once, in one line naming the problem, and
    leaves without waiting for jax's shutdown barrier; process 0, blocked in a collective,
    then fails too (on CPU its collective sees the peer gone; elsewhere the coordination
    service's heartbeat timeout ends it) instead of hanging."""
    need_data(paths.sequence_dir, "Woman")
    port = _free_port()

    def cmd(k, workdir):
        return [sys.executable, "-m", "ctjax", "distill", "--config", TRACKING, "--workdir",
                str(workdir), "--no-progress", "--coordinator", f"localhost:{port}",
                "--num-processes", "2", "--process-id", str(k)]

    procs = [subprocess.Popen(cmd(k, tmp_path / f"run{k}"), cwd=ROOT, env=_env(1),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in (0, 1)]
    try:
        out1, err1 = procs[1].communicate(timeout=300)
        out0, err0 = procs[0].communicate(timeout=400)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert procs[1].returncode == 2
    assert err1.strip().splitlines()[-1].startswith("ctjax distill: error: ")
    assert "need a shared --workdir" in err1
    assert procs[0].returncode != 0
    from ctjax.commands import distill as distill_command  # its copy of main's conventions
    assert distill_command._USER_ERRORS == commands.USER_ERRORS
    assert (distill_command._EXIT_ERROR, distill_command._EXIT_INTERRUPTED) == \
        (commands.EXIT_ERROR, commands.EXIT_INTERRUPTED)

"""The distillation loop: data, state, steps, logging, validation and checkpoints.

Data: either fresh pairs each step with the teacher run inside the step (`pool_pairs = 0`; the
GPU setting), or a fixed pool of pairs whose teacher targets are computed once and cached
(`pool_pairs > 0`, `ctjax.distill.pools`). Batches are pure functions of (seed, step), so a
killed run resumes where it stopped with the same data. Batches are sharded over all devices
of all processes along the batch axis, each process building only its own rows; parameters
are replicated (`ctjax.distill.parallel`). The global batch and the schedule do not depend on
the device count. Checkpoints go through `ctjax.distill.checkpoint` (Orbax; every process
saves and restores, each array is written once); process 0 alone writes `config.json`, the
log and the summary. A finished run is turned into a student folder by `ctjax.distill.export`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

import ctjax
from ctjax import paths
from ctjax.distill import checkpoint, parallel
from ctjax.distill.config import DistillConfig, read_config
from ctjax.distill.pools import build_pool, estimate_scales, pool_batch
from ctjax.distill.steps import (init_state, make_eval_step, make_optimizer, make_setup,
                                 make_teacher_fn, make_train_step)
from ctjax.models import registry


def _load_teacher(config: DistillConfig, setup_hw):
    from ctjax.models import weights

    if not config.uses_teacher:
        return None, None
    if config.teacher_weights == "random":
        cfg = registry.get_config(config.teacher)
        variables = registry.init_variables(cfg, jax.random.PRNGKey(config.seed + 7),
                                            input_hw=setup_hw)
        return variables, "random init"
    if config.teacher != "efficientnet_lite0":
        raise ValueError(f"no weight loader for teacher {config.teacher!r}")
    loaded = weights.load_efficientnet_lite0(config.teacher_weights or None)
    return loaded.variables, Path(loaded.source).name  # no machine paths in shipped metadata


class _Data(NamedTuple):
    """The training frames, the pair sampler and the pools (None when not used)."""
    names: list
    sampler: Any
    pool: dict | None
    val_pool: dict | None


def _prepare_data(config: DistillConfig, workdir: Path, cache_dir, teacher_fn,
                  teacher_variables, hosts: parallel.Hosts) -> _Data:
    from ctjax.data import pairs

    def open_source():
        return pairs.training_source(config.sequences, data_dir=workdir / "tfds",
                                     manual_dir=config.manual_dir or None, kind=config.data_kind)

    # Process 0 prepares the frames in the shared work folder; the others then open them.
    source = open_source() if hosts.index == 0 else None
    hosts.sync("ctjax-frames-prepared")
    source = source or open_source()
    sampler = pairs.PairSampler(source, config.pairs)
    args = dict(teacher_fn=teacher_fn, teacher_variables=teacher_variables, config=config,
                cache_dir=Path(cache_dir) if cache_dir else workdir / "pools", hosts=hosts)
    pool = build_pool(sampler, config.pool_pairs, seed=config.seed, desc="train",
                      **args) if config.pool_pairs > 0 else None
    val_pool = build_pool(sampler, config.val_pairs, seed=config.seed + 1_000_003, desc="val",
                          **args) if config.val_pairs > 0 else None
    return _Data(list(source.names), sampler, pool, val_pool)


def _check_workdir(config: DistillConfig, workdir: Path, hosts: parallel.Hosts | None = None):
    """Writes `config.json` (atomically, process 0), or checks that a resumed run has the
    same config (every process, after process 0 wrote it)."""
    hosts = hosts or parallel.hosts()
    if hosts.index == 0:
        paths.check_writable_dir(workdir, "--workdir")
    config_file = workdir / "config.json"
    if hosts.index == 0 and not config_file.exists():
        paths.atomic_write(config_file, json.dumps(config.to_json(), indent=1) + "\n")
    hosts.sync("ctjax-config-written")
    if not config_file.exists():
        raise FileNotFoundError(f"{config_file} written by process 0 is not visible here: the "
                                "processes of a run need a shared --workdir")
    if read_config(workdir) != config:
        raise ValueError(f"{workdir} holds a run with a different config ({config_file}); "
                         "use another --workdir")


def _trim_log(log_file: Path, step: int) -> None:
    """Keeps the records of steps <= `step` (the restored checkpoint), so that steps rerun
    after a kill or a fallback to an older checkpoint are logged once; drops a torn line."""
    if not log_file.exists():
        return
    kept, dropped = [], 0
    for line in log_file.read_text().splitlines():
        try:
            record = json.loads(line)
            keep = isinstance(record, dict) and int(record["step"]) <= step
        except (ValueError, KeyError, TypeError):
            keep = False
        kept += [line] if keep else []
        dropped += not keep
    if dropped:
        paths.atomic_write(log_file, "".join(l + "\n" for l in kept))
        print(f"{log_file}: dropped {dropped} record(s) after step {step} (rerun from the "
              "checkpoint)", flush=True)


def _batch_fn(config: DistillConfig, data: _Data, sharding) -> Callable[[int], dict]:
    """`batch(step)`: the step's global training batch (a pure function of seed and step),
    of which this process builds only the rows its devices hold."""
    n = config.batch_size
    rows = parallel.local_rows(sharding, n)

    def batch(step: int) -> dict:
        if data.pool is not None:
            rng = np.random.default_rng([config.seed, 1, step])
            index = np.sort(rng.choice(config.pool_pairs, n, replace=False))
            out = pool_batch(data.pool, index[rows])
        else:
            out = data.sampler.batch(config.seed, step, n, rows=rows)
            out.pop("index")
        return parallel.global_batch(out, rows, sharding, n)

    return batch


def _evaluator(config: DistillConfig, eval_step, teacher_variables, val_pool, mesh) -> Callable:
    """`evaluate(params, scales) -> metrics`: means over the validation pool (its batches
    replicated: every device scores the whole batch, which needs no padding of a last
    partial batch and costs little next to training)."""
    def evaluate(params, scales) -> dict:
        if val_pool is None:
            return {}
        sums: dict = {}
        for lo in range(0, config.val_pairs, config.batch_size):
            idx = np.arange(lo, min(lo + config.batch_size, config.val_pairs))
            metrics = eval_step(params, scales, teacher_variables,
                                parallel.replicate(pool_batch(val_pool, idx), mesh))
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        return {k: v / config.val_pairs for k, v in sums.items()}

    return evaluate


def _mean_metrics(history: list[dict]) -> dict:
    return {k: float(np.mean([h[k] for h in history])) for k in history[0]} if history else {}


def train_and_evaluate(config: DistillConfig, workdir, *, stop_after: int | None = None,
                       progress: bool = True, cache_dir=None, devices=None) -> dict:
    """Runs (or resumes) a distillation run in `workdir`; returns the training summary.

    Args:
        config: the run's config; must equal `workdir/config.json` when resuming. Resuming
            restores the newest checkpoint that reads cleanly (an unreadable newer one is
            moved aside and reported) and drops the log records after its step.
        workdir: output folder: config.json, checkpoints/, log.jsonl (one JSON record per
            logged step, "split" train or val), summary.json, pools/, tfds/ (the prepared
            training frames).
        stop_after: stop (as if killed) once this many steps are done in total; the last
            step is checkpointed. None = run to `config.steps`.
        progress: show a tqdm bar.
        cache_dir: where pair pools with teacher targets are cached (default
            `workdir/pools`); runs with the same data settings can share one.
        devices: the devices to shard batches over (default `jax.devices()`: every device of
            every process); `config.batch_size` must be a multiple of their number.

    Returns:
        The summary (also written to `workdir/summary.json` when training is complete).
        "wall_time_s" adds up every launch of the run (process 0's clock), set-up included.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    workdir = Path(workdir)
    hosts = parallel.hosts()
    devices = list(devices) if devices is not None else jax.devices()
    if config.batch_size % len(devices):
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the "
                         f"{len(devices)} devices")
    _check_workdir(config, workdir, hosts)
    primary = hosts.index == 0
    setup = make_setup(config)
    teacher_variables, teacher_source = _load_teacher(config, (config.pairs.crop_size,) * 2)
    optimizer = make_optimizer(config)
    teacher_fn = jax.jit(make_teacher_fn(setup))  # pools and scales: on this process's device
    cached = config.pool_pairs > 0
    data = _prepare_data(config, workdir, cache_dir, teacher_fn, teacher_variables, hosts)

    mesh = parallel.data_mesh(devices)
    replicated = parallel.replicated(mesh)
    train_batch = _batch_fn(config, data, parallel.batch_sharding(mesh))
    # Every process computes the same normalisers from whole host-side data; process 0's
    # values are broadcast so that the replicated state is the same everywhere.
    scales = parallel.broadcast(estimate_scales(
        config, data.pool, lambda: teacher_fn(teacher_variables, data.sampler.batch(
            config.seed, 0, config.batch_size)["template"])))
    ckpt = checkpoint.Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints)
    fresh = parallel.replicate(init_state(config, setup, optimizer, config.seed,
                                          jax.tree.map(float, scales)), mesh)

    def skipped(step, reason, moved):
        if primary:
            print(f"skipping checkpoint step {step}: {reason}; moved to {moved}", flush=True)

    restored = ckpt.restore_latest(fresh, on_skip=skipped)  # into the replicated target
    state, meta = restored if restored is not None else (fresh, {"wall_time": 0.0})
    start, wall0 = int(state.step), float(meta.get("wall_time", 0.0))
    if restored is not None and primary:
        print(f"resuming {workdir} from checkpoint step {start}", flush=True)
    if primary:
        _trim_log(workdir / "log.jsonl", start)
    teacher_on_mesh = None if cached or teacher_variables is None else \
        parallel.replicate(teacher_variables, mesh)

    traces = []
    raw_step = make_train_step(setup=setup, config=config, optimizer=optimizer, cached=cached)

    def counted(*args):
        traces.append(1)  # runs at trace time only
        return raw_step(*args)

    train_step = jax.jit(counted, donate_argnums=(0,), out_shardings=replicated)
    evaluate = _evaluator(config, jax.jit(make_eval_step(setup=setup, config=config,
                                                         cached=cached),
                                          out_shardings=replicated),
                          teacher_on_mesh, data.val_pool, mesh)
    end = config.steps if stop_after is None else min(stop_after, config.steps)
    history: list[dict] = []
    last_val: dict = dict(meta.get("last_val", {}))
    with (workdir / "log.jsonl").open("a") if primary else open(os.devnull, "w") as log, tqdm(
            range(start, end), initial=start, total=config.steps,
            disable=not (progress and primary), desc=config.name, unit="step") as bar:
        for step in bar:
            state, metrics = train_step(state, teacher_on_mesh, train_batch(step))
            done = step + 1
            if done % config.log_every == 0 or done == end:
                history.append({k: float(v) for k, v in jax.device_get(metrics).items()})
                log.write(json.dumps({"step": done, "split": "train",
                                      "time": wall0 + time.perf_counter() - t0,
                                      **history[-1]}) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
            if done % config.eval_every == 0 or done == config.steps:
                last_val = evaluate(state.params, state.scales)
                log.write(json.dumps({"step": done, "split": "val", **last_val}) + "\n")
                log.flush()
            if done % config.checkpoint_every == 0 or done == end:
                ckpt.save(done, state, {"wall_time": wall0 + time.perf_counter() - t0,
                                        "last_val": last_val})
    ckpt.wait()
    if len(traces) > 1:
        raise RuntimeError(f"the train step was traced {len(traces)} times (expected once)")
    summary = {
        "name": config.name, "steps": int(state.step), "complete": int(state.step) >= config.steps,
        "wall_time_s": round(wall0 + time.perf_counter() - t0, 1),
        "train_step_traces": len(traces),
        "final_train": _mean_metrics(history[-max(1, 50 // config.log_every):]),
        "final_val": last_val, "teacher": config.teacher if config.uses_teacher else None,
        "teacher_weights": teacher_source, "student": config.student,
        "data": {"kind": config.data_kind, "sequences": data.names,
                 "pool_pairs": config.pool_pairs, "crop_size": config.pairs.crop_size},
        "devices": [str(d) for d in devices], "processes": hosts.count,
        "ctjax_version": ctjax.__version__,
    }
    if summary["complete"] and primary:
        paths.atomic_write(workdir / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary

"""Pair pools: template/search pairs with their aligned teacher targets, cached on disk.

On one CPU core the frozen teacher costs about ten times the student's forward and backward
pass, so by default (`pool_pairs > 0`) a fixed pool of pairs is drawn once, the teacher's
features are computed once (float16) and cached in a folder named by a fingerprint of
everything they depend on; runs with the same data settings (e.g. every compression ratio)
share it. Pools are pure functions of (config, seed), so a resumed run reuses its pool; they
are built in chunks of `CHUNK` pairs, each from its own generator, so with several hosts each
computes a share of the chunks and all end with the same pool (`build_pool(hosts=)`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from ctjax import paths
from ctjax.distill import parallel
from ctjax.distill.config import DistillConfig
from ctjax.models import registry

# Bump when the crops or targets of a pool change for the same config (pool caches are keyed
# by the fingerprint): 2 = crops by `ctjax.ops.crop.sample_window` (the trackers' crop).
POOL_VERSION = 2


def _fingerprint(config: DistillConfig, which: str) -> str:
    # Only the student's family matters (its grid geometry): every VGG-M width shares a pool.
    keys = ("teacher", "teacher_weights", "layers", "data_kind", "sequences", "manual_dir",
            "pool_pairs", "val_pairs", "seed", "fidelity_on_search", "fidelity_weight")
    data = {k: getattr(config, k) for k in keys}
    data.update(which=which, fidelity_weight=config.fidelity_weight > 0,
                student_family=registry.get_config(config.student).family,
                pairs=dataclasses.asdict(config.pairs), pool_version=POOL_VERSION)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


CHUNK = 32  # pairs drawn per generator (seed, start): the pool does not depend on the hosts


def _chunk(sampler, n: int, start: int, *, seed: int, teacher_fn, teacher_variables,
           config: DistillConfig) -> dict[str, np.ndarray]:
    """Pairs start..start+CHUNK-1 of a pool with their teacher targets (float16), flat keys."""
    batch = sampler.sample(np.random.default_rng([seed, start]), min(CHUNK, n - start))
    batch.pop("index")
    if config.uses_teacher:
        batch["teacher_template"] = teacher_fn(teacher_variables, batch["template"])
        if config.fidelity_on_search:
            batch["teacher_search"] = teacher_fn(teacher_variables, batch["search"])
    out = {}
    for key, value in batch.items():
        if key.startswith("teacher_"):
            for stage, arr in value.items():
                out[f"{key}.{stage}"] = np.asarray(arr, np.float16)
        else:
            out[key] = np.asarray(value)
    return out


def _shared_chunks(starts, compute, folder: Path | None, hosts, desc: str) -> list[dict]:
    """Every chunk of a pool, the work split over the hosts through part files in `folder`.

    Host h computes the chunks k with k % count == h (unless a part file from an interrupted
    build is there) and writes each as `folder/parts/<start>.npz`; after a barrier every host
    reads the others' parts, computing any it cannot read itself (a folder that is not on a
    shared file system costs time, not correctness).
    """
    parts = folder / "parts" if folder is not None else None
    if parts is not None:
        parts.mkdir(parents=True, exist_ok=True)

    def read(start):
        try:
            with np.load(parts / f"{start}.npz") as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError, EOFError, KeyError):
            return None

    for k, start in enumerate(starts):
        if k % hosts.count == hosts.index and parts is not None and read(start) is None:
            with paths.atomic_open(parts / f"{start}.npz") as f:
                np.savez(f, **compute(start))
    hosts.sync(f"ctjax-pool-parts-{desc}")
    return [(read(start) if parts is not None else None) or compute(start) for start in starts]


def build_pool(sampler, n: int, *, seed: int, teacher_fn, teacher_variables, config: DistillConfig,
               cache_dir: Path | None, desc: str, hosts=None) -> dict[str, np.ndarray]:
    """`n` pairs with their aligned teacher targets (float16), cached in `cache_dir`.

    The pool is a pure function of (config, seed), so a cached copy is reused on resume, and
    the same whatever the number of hosts. With several hosts (`hosts`, a
    `ctjax.distill.parallel.Hosts`) each computes a share of the chunks and every host ends
    with the whole pool; `cache_dir` should then be on a file system they share.
    """
    from tqdm import tqdm

    hosts = hosts or parallel.Hosts(0, 1)
    folder = cache_dir / f"{desc}_{_fingerprint(config, desc)}" if cache_dir is not None else None
    hosts.sync(f"ctjax-pool-check-{desc}")  # every host sees the same "complete" below
    if folder is not None and (folder / "complete").is_file():
        try:
            return {p.stem: np.load(p, mmap_mode="r") for p in folder.glob("*.npy")}
        except (OSError, ValueError) as e:  # a damaged cache is rebuilt, not trusted
            print(f"pair pool cache {folder} is unreadable ({e}); rebuilding it", flush=True)
            (folder / "complete").unlink(missing_ok=True)
    args = dict(seed=seed, teacher_fn=teacher_fn, teacher_variables=teacher_variables,
                config=config)
    starts = range(0, n, CHUNK)
    if hosts.count == 1:
        chunks = [_chunk(sampler, n, start, **args) for start in tqdm(
            starts, desc=f"{desc} pool: pairs + teacher", unit="chunk")]
    else:
        chunks = _shared_chunks(starts, lambda start: _chunk(sampler, n, start, **args),
                                folder, hosts, desc)
    pool = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "complete").is_file():  # another host may have written it already
            for key, value in pool.items():  # atomic: runs sharing the cache may read it
                with paths.atomic_open(folder / f"{key}.npy") as f:
                    np.save(f, value)
            paths.atomic_write(folder / "complete", "ok\n")
        hosts.sync(f"ctjax-pool-written-{desc}")
        if hosts.index == 0 and (folder / "parts").is_dir():
            shutil.rmtree(folder / "parts", ignore_errors=True)
    return pool


def pool_batch(pool: dict[str, np.ndarray], index: np.ndarray) -> dict:
    """Rows `index` of a pool, with teacher targets regrouped as {"teacher_template": {...}}."""
    batch: dict = {}
    for key, value in pool.items():
        rows = np.asarray(value[np.sort(index)])
        if "." in key:
            group, stage = key.split(".", 1)
            batch.setdefault(group, {})[stage] = rows
        else:
            batch[key] = rows
    return batch


def estimate_scales(config: DistillConfig, pool: dict | None, sample_targets: Callable) -> dict:
    """Fidelity normalisers: mean of teacher² per layer over the pool (or a few batches)."""
    if not config.uses_teacher:
        return {}
    if pool is not None:
        return {stage: float(np.mean(np.square(pool[f"teacher_template.{stage}"],
                                               dtype=np.float32)))
                for stage, _ in config.layers}
    targets = sample_targets()
    return {stage: float(np.mean(np.square(np.asarray(v)))) for stage, v in targets.items()}

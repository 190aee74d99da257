"""Pair pools: template/search pairs with their aligned teacher targets, cached on disk.

On one CPU core the frozen teacher costs about ten times the student's forward and backward
pass, so by default (`pool_pairs > 0`) a fixed pool of pairs is drawn once, the teacher's
features are computed once (float16) and cached in a folder named by a fingerprint of
everything they depend on; runs with the same data settings (e.g. every compression ratio)
share it. Pools are pure functions of (config, seed), so a resumed run reuses its pool.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np

from ctjax import paths
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


def build_pool(sampler, n: int, *, seed: int, teacher_fn, teacher_variables, config: DistillConfig,
               cache_dir: Path | None, desc: str) -> dict[str, np.ndarray]:
    """`n` pairs with their aligned teacher targets (float16), cached in `cache_dir`.

    The pool is a pure function of (config, seed), so a cached copy is reused on resume.
    """
    from tqdm import tqdm

    if cache_dir is not None:
        folder = cache_dir / f"{desc}_{_fingerprint(config, desc)}"
        if (folder / "complete").is_file():
            try:
                return {p.stem: np.load(p, mmap_mode="r") for p in folder.glob("*.npy")}
            except (OSError, ValueError) as e:  # a damaged cache is rebuilt, not trusted
                print(f"pair pool cache {folder} is unreadable ({e}); rebuilding it", flush=True)
                (folder / "complete").unlink(missing_ok=True)
    chunk = 32
    parts: dict[str, list] = {}
    for start in tqdm(range(0, n, chunk), desc=f"{desc} pool: pairs + teacher", unit="chunk"):
        batch = sampler.sample(np.random.default_rng([seed, start]), min(chunk, n - start))
        batch.pop("index")
        if config.uses_teacher:
            batch["teacher_template"] = teacher_fn(teacher_variables, batch["template"])
            if config.fidelity_on_search:
                batch["teacher_search"] = teacher_fn(teacher_variables, batch["search"])
        for key, value in batch.items():
            if key.startswith("teacher_"):
                for stage, arr in value.items():
                    parts.setdefault(f"{key}.{stage}", []).append(np.asarray(arr, np.float16))
            else:
                parts.setdefault(key, []).append(np.asarray(value))
    pool = {k: np.concatenate(v) for k, v in parts.items()}
    if cache_dir is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for key, value in pool.items():  # atomic: runs sharing the cache may read it meanwhile
            with paths.atomic_open(folder / f"{key}.npy") as f:
                np.save(f, value)
        paths.atomic_write(folder / "complete", "ok\n")
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

"""Training checkpoints (Orbax): the only module of ctjax that imports Orbax.

`Checkpointer` saves the whole `ctjax.distill.steps.TrainState` plus a small JSON record
(wall time, last validation metrics) every few steps under `<workdir>/checkpoints/<step>/`,
keeps the newest N, and restores the newest into an abstract target of the same structure
(bit-exact on CPU). `restore_tree` reads a checkpoint without any target (plain nested dicts
of NumPy arrays), which is all that exporting a student needs (`ctjax.distill.export`).

Each checkpoint's record also holds a SHA-256 of the saved state (`state_sha256`), checked on
every restore, so a damaged checkpoint is an error and never a silently different state.
`restore_latest` restores the newest checkpoint that reads cleanly: a newer one that does not
(damaged files, missing items, a checksum that differs) is moved aside to
`<directory>.unreadable/<step>` and reported with the reason, and the next older one is tried.

Several processes (`jax.distributed`): every process calls `save` and `restore` with the same
arguments; Orbax writes each replicated array and the JSON record once (process 0) and
restores into the target's shardings on every process, so a target of replicated
`jax.Array`s (`ctjax.distill.parallel.replicate`) comes back replicated. The directory must
be on a file system all processes share.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

CHECKSUM_KEY = "state_sha256"


class CheckpointError(ValueError):
    """A checkpoint cannot be read, or what it holds differs from what was saved."""


def tree_sha256(tree: Any) -> str:
    """SHA-256 over the sorted SHA-256s of a pytree's leaves (dtype, shape and bytes of each).

    Independent of the container types and leaf order, so a state and its target-free
    restore (`restore_tree`: NamedTuples become dicts, keys sorted) hash alike; any changed
    byte, dtype or shape changes it.
    """
    leaves = []
    for leaf in jax.tree.leaves(tree):
        a = np.ascontiguousarray(np.asarray(leaf))
        leaves.append(hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).digest())
    return hashlib.sha256(b"".join(sorted(leaves))).hexdigest()


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"


class Checkpointer:
    """Keeps the newest `keep` checkpoints of a run in `directory` (Orbax CheckpointManager)."""

    def __init__(self, directory, *, keep: int = 3):
        self.directory = Path(directory).absolute()
        self._keep = keep
        self._manager = self._open()

    def _open(self):
        return ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=self._keep,
                                                                 create=True),
            item_handlers={"state": ocp.StandardCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()})  # for `item_metadata`

    def save(self, step: int, state: Any, meta: dict | None = None):
        """Saves `state` (any pytree) and a JSON-serialisable `meta` as checkpoint `step`
        (with the state's checksum added to `meta`)."""
        meta = dict(meta or {}, **{CHECKSUM_KEY: tree_sha256(state)})
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

    def wait(self):
        """Blocks until asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def steps(self) -> list[int]:
        """Steps of the checkpoints on disk, oldest first."""
        return sorted(self._manager.all_steps())

    def _checked(self, step: int, out) -> tuple[Any, dict]:
        meta = dict(out.meta or {})
        saved = meta.pop(CHECKSUM_KEY, None)
        if saved is not None and tree_sha256(out.state) != saved:
            raise CheckpointError(f"checkpoint step {step} in {self.directory}: the restored "
                                  "state differs from the one saved (checksum mismatch)")
        return out.state, meta

    def restore(self, step: int, target: Any) -> tuple[Any, dict]:
        """Restores checkpoint `step` into the structure, shapes and dtypes of `target`.

        Raises:
          CheckpointError: the checkpoint is damaged, lacks an item, or its state's checksum
            differs from the saved one (the message names the step and the cause).
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            out = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        except Exception as e:  # Orbax / TensorStore raise many types for damaged files
            raise CheckpointError(f"checkpoint step {step} in {self.directory} is unreadable: "
                                  f"{_reason(e)}") from e
        return self._checked(step, out)

    def restore_latest(self, target: Any, *,
                       on_skip: Callable[[int, str, Path], None] | None = None
                       ) -> tuple[Any, dict] | None:
        """`restore` of the newest checkpoint that reads cleanly, or None when none does.

        A newer checkpoint that fails is moved to `<directory>.unreadable/<step>` (kept for
        inspection, out of the way of the run's next saves) and reported through
        `on_skip(step, reason, moved_to)`.
        """
        for step in reversed(self.steps()):
            try:
                return self.restore(step, target)
            except CheckpointError as e:
                moved = self._set_aside(step)
                if on_skip is not None:
                    on_skip(step, str(e), moved)
        return None

    def _set_aside(self, step: int) -> Path:
        """Moves checkpoint `step` to `<directory>.unreadable/` and reopens the manager
        (process 0 moves it; every process of a multi-process run waits for the move)."""
        self._manager.close()
        aside = self.directory.parent / f"{self.directory.name}.unreadable"
        dest, k = aside / str(step), 1
        if jax.process_index() == 0:
            aside.mkdir(parents=True, exist_ok=True)
            while dest.exists():
                dest, k = aside / f"{step}.{k}", k + 1
            shutil.move(str(self.directory / str(step)), str(dest))
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(f"ctjax-checkpoint-aside-{step}")
        self._manager = self._open()
        return dest

    def restore_tree(self, step: int) -> tuple[dict, dict]:
        """Checkpoint `step` without a target: the saved tree as nested dicts (NamedTuples by
        field name) of NumPy arrays, and its JSON record.

        Works whatever devices the checkpoint was saved from (e.g. a run sharded over 8 GPUs
        or several hosts, read on a laptop): every array is read whole onto this process's
        first device, using shapes and dtypes from the checkpoint's metadata.

        Raises:
          CheckpointError: as `restore`.
        """
        try:
            local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype,
                                                                   sharding=local),
                                    self._manager.item_metadata(step)["state"])
            out = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        except Exception as e:
            raise CheckpointError(f"checkpoint step {step} in {self.directory} is unreadable: "
                                  f"{_reason(e)}") from e
        state, meta = self._checked(step, out)
        return jax.tree.map(np.asarray, state), meta

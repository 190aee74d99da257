"""Training checkpoints (Orbax): the only module of ctjax that imports Orbax.

`Checkpointer` saves the whole `ctjax.distill.steps.TrainState` plus a small JSON record
(wall time, last validation metrics) every few steps under `<workdir>/checkpoints/<step>/`,
keeps the newest N, and restores the newest into an abstract target of the same structure
(bit-exact on CPU). `restore_tree` reads a checkpoint without any target (plain nested dicts
of NumPy arrays), which is all that exporting a student needs (`ctjax.distill.export`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Keeps the newest `keep` checkpoints of a run in `directory` (Orbax CheckpointManager)."""

    def __init__(self, directory, *, keep: int = 3):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

    def save(self, step: int, state: Any, meta: dict | None = None):
        """Saves `state` (any pytree) and a JSON-serialisable `meta` as checkpoint `step`."""
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {})))

    def wait(self):
        """Blocks until asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def steps(self) -> list[int]:
        """Steps of the checkpoints on disk, oldest first."""
        return sorted(self._manager.all_steps())

    def restore(self, step: int, target: Any) -> tuple[Any, dict]:
        """Restores checkpoint `step` into the structure, shapes and dtypes of `target`."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return out.state, dict(out.meta or {})

    def restore_latest(self, target: Any) -> tuple[Any, dict] | None:
        """`restore` of the newest checkpoint, or None when there is none."""
        step = self._manager.latest_step()
        return None if step is None else self.restore(step, target)

    def restore_tree(self, step: int) -> tuple[dict, dict]:
        """Checkpoint `step` without a target: the saved tree as nested dicts (NamedTuples by
        field name) of NumPy arrays, and its JSON record."""
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
        return out.state, dict(out.meta or {})

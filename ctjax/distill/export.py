"""Exporting a distillation run's student: checkpoint -> student folder.

The folder format belongs to `ctjax.models.student` (plain NumPy + JSON, read by the trackers
without any training code); this module only finds the run's checkpoint, reads the student's
parameters out of it (no optimiser, teacher or alignment is rebuilt) and writes them with
`ctjax.models.student.write_student`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctjax.distill.checkpoint import CheckpointError, Checkpointer
from ctjax.distill.config import read_config, read_json
from ctjax.models import registry
from ctjax.models.student import student_preprocessing, write_student


def export_run(workdir, output, *, step: int | None = None) -> Path:
    """Exports the student of checkpoint `step` (default: the newest that reads cleanly).

    Args:
        workdir: the run's folder (`ctjax distill --workdir`).
        output: the student folder to write.
        step: the checkpoint step; default the newest readable one (newer unreadable ones
            are reported and left in place).

    Returns:
        The student folder.

    Raises:
        FileNotFoundError: not a run folder, or no checkpoint.
        ValueError: no checkpoint for `step`; `config.json` or `summary.json` empty, not JSON
            or invalid; `CheckpointError` (a `ValueError`): the checkpoint is unreadable.
    """
    workdir = Path(workdir)
    if not (workdir / "config.json").is_file():
        raise FileNotFoundError(f"{workdir} is not a distillation run folder (no config.json)")
    config = read_config(workdir)
    ckpt = Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints)
    steps = ckpt.steps()
    if not steps:
        raise FileNotFoundError(f"{workdir / 'checkpoints'} holds no checkpoint")
    if step is not None and step not in steps:
        raise ValueError(f"no checkpoint for step {step}; available: {steps}")
    tree, meta, step = _restore(ckpt, [step] if step is not None else steps[::-1])
    student = {"params": _as_numpy(tree["params"]["student"]["params"])}
    summary_file = workdir / "summary.json"
    summary = read_json(summary_file, "run summary") if summary_file.is_file() else {}
    training = {"checkpoint_step": step, "config": config.to_json(), "summary": summary,
                "wall_time_s": meta.get("wall_time"), "last_val": meta.get("last_val")}
    return write_student(output, student, config=registry.get_config(config.student),
                         preprocessing=student_preprocessing(), training=training)


def _restore(ckpt: Checkpointer, steps: list[int]):
    """The first of `steps` that restores cleanly, reporting those that do not."""
    for k, step in enumerate(steps):
        try:
            tree, meta = ckpt.restore_tree(step)
            return tree, meta, step
        except CheckpointError as e:
            if k == len(steps) - 1:
                raise
            print(f"skipping checkpoint step {step}: {e}", flush=True)
    raise AssertionError("unreachable")


def _as_numpy(tree: dict) -> dict:
    return {k: _as_numpy(v) if isinstance(v, dict) else np.asarray(v) for k, v in tree.items()}

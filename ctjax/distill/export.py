"""Exporting a distillation run's student: checkpoint -> student folder.

The folder format belongs to `ctjax.models.student` (plain NumPy + JSON, read by the trackers
without any training code); this module only finds the run's checkpoint, reads the student's
parameters out of it (no optimiser, teacher or alignment is rebuilt) and writes them with
`ctjax.models.student.write_student`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ctjax.distill.checkpoint import Checkpointer
from ctjax.distill.config import DistillConfig
from ctjax.models import registry
from ctjax.models.student import student_preprocessing, write_student


def export_run(workdir, output, *, step: int | None = None) -> Path:
    """Exports the student of checkpoint `step` (default newest) of a run folder.

    Args:
        workdir: the run's folder (`ctjax distill --workdir`).
        output: the student folder to write.
        step: the checkpoint step; default the newest.

    Returns:
        The student folder.

    Raises:
        FileNotFoundError: not a run folder, or no checkpoint.
        ValueError: no checkpoint for `step`.
    """
    workdir = Path(workdir)
    config_file = workdir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{workdir} is not a distillation run folder (no config.json)")
    config = DistillConfig.from_json(json.loads(config_file.read_text()))
    ckpt = Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints)
    steps = ckpt.steps()
    if not steps:
        raise FileNotFoundError(f"{workdir / 'checkpoints'} holds no checkpoint")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise ValueError(f"no checkpoint for step {step}; available: {steps}")
    tree, meta = ckpt.restore_tree(step)
    student = {"params": _as_numpy(tree["params"]["student"]["params"])}
    summary_file = workdir / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    training = {"checkpoint_step": step, "config": config.to_json(), "summary": summary,
                "wall_time_s": meta.get("wall_time"), "last_val": meta.get("last_val")}
    return write_student(output, student, config=registry.get_config(config.student),
                         preprocessing=student_preprocessing(), training=training)


def _as_numpy(tree: dict) -> dict:
    return {k: _as_numpy(v) if isinstance(v, dict) else np.asarray(v) for k, v in tree.items()}

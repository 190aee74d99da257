"""`ctjax distill`: offline distillation of a student (fidelity + tracking loss); resumes when
--workdir holds a checkpoint. Batches are sharded over every device; several processes (hosts)
join one run with --coordinator/--num-processes/--process-id (or JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID, or --distributed under SLURM / Open MPI), all with the
same --config and a shared --workdir."""

from __future__ import annotations

import argparse
import json

HELP = "offline distillation (see --help)"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `ctjax distill`."""
    parser.add_argument("--config", required=True,
                        help="experiments/<name>.py[:arg], e.g. experiments/distill_fid_track.py:smoke")
    parser.add_argument("--workdir", required=True, help="output folder (checkpoints, logs)")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop once this many steps are done (resume later)")
    parser.add_argument("--cache-dir", default=None,
                        help="folder for cached pair pools + teacher targets (default "
                             "WORKDIR/pools); runs with the same data settings can share it")
    parser.add_argument("--single-core", action="store_true",
                        help="pin the process to one CPU core (ctjax.runtime.configure)")
    parser.add_argument("--no-progress", action="store_true")
    group = parser.add_argument_group("several processes (hosts); see README 'Beyond one machine'")
    group.add_argument("--coordinator", default=None,
                       help="HOST:PORT of process 0 (default $JAX_COORDINATOR_ADDRESS)")
    group.add_argument("--num-processes", type=int, default=None,
                       help="processes in the run (default $JAX_NUM_PROCESSES)")
    group.add_argument("--process-id", type=int, default=None,
                       help="this process, 0..N-1 (default $JAX_PROCESS_ID)")
    group.add_argument("--distributed", action="store_true",
                       help="let jax detect the processes (SLURM, Open MPI, Cloud TPU)")
    return parser


def run(args) -> int:
    """Runs `ctjax distill`; returns the exit status."""
    if args.stop_after is not None and args.stop_after <= 0:
        raise ValueError(f"--stop-after must be a positive number of steps, got {args.stop_after}")
    if args.single_core:  # before jax is imported, so the XLA flags take effect
        from ctjax import runtime
        print(runtime.configure(single_thread=True).summary())
    from ctjax.distill import parallel
    from ctjax.distill.config import load_config
    from ctjax.distill.loop import train_and_evaluate

    config = load_config(args.config)  # a bad config fails before joining the other processes
    hosts = parallel.initialize(args.coordinator, args.num_processes, args.process_id,
                                auto=args.distributed)  # before any computation
    try:
        summary = train_and_evaluate(config, args.workdir, stop_after=args.stop_after,
                                     progress=not args.no_progress, cache_dir=args.cache_dir)
    except BaseException as e:
        if hosts.count > 1:
            _leave_at_once(e, debug=getattr(args, "debug", False))
        raise
    if hosts.index != 0:
        return 0
    print(json.dumps({k: summary[k] for k in ("name", "steps", "complete", "wall_time_s",
                                              "final_train", "final_val")}, indent=1))
    return 0


# `ctjax.commands.main`'s exit statuses and user errors (importing them from ctjax.commands
# would be an import cycle): one line and 2 for these, 130 for Ctrl-C, a traceback and 1 else.
_USER_ERRORS, _EXIT_ERROR, _EXIT_INTERRUPTED = (ValueError, OSError, ImportError), 2, 130


def _leave_at_once(error: BaseException, *, debug: bool) -> None:
    """Ends a failed process of a multi-process run now, after printing the error as
    `ctjax.commands.main` would.

    A normal exit would run jax's distributed shutdown, which waits (up to 5 minutes) for
    the other processes, themselves blocked in a collective that waits for this one. Gone,
    this process makes their collective fail (CPU), or is noticed by the coordination
    service within its heartbeat timeout (100 s), which ends them.
    """
    import os
    import sys
    import traceback

    if isinstance(error, KeyboardInterrupt):
        print("ctjax distill: interrupted", file=sys.stderr)
        status = _EXIT_INTERRUPTED
    elif isinstance(error, _USER_ERRORS) and not debug and os.environ.get("CTJAX_DEBUG") != "1":
        print(f"ctjax distill: error: {' '.join(str(error).split()) or type(error).__name__}",
              file=sys.stderr)
        status = _EXIT_ERROR
    else:
        traceback.print_exception(error)
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)

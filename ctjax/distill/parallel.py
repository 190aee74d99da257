"""Data parallelism over devices and hosts: start-up, the mesh, global batches from host rows.

Distillation is plain SPMD data parallelism with JAX's own machinery: one 1-D mesh with axis
"data" over every device of every process (`jax.devices()`), batches sharded along their
first axis (`PartitionSpec("data")`), parameters, optimiser state and the teacher replicated
(`PartitionSpec()`); the jitted train step's gradient mean becomes an all-reduce. The global
batch is the config's `batch_size` whatever the number of devices or hosts, and row `i` of the
batch of step `t` is the same pair on any machine (`ctjax.data.pairs`, `ctjax.distill.pools`),
so runs on 1 CPU, 8 GPUs or several hosts see the same data and learning-rate schedule and
differ only by float rounding (the order of the reductions).

Several hosts: each process calls `initialize` (a thin wrapper of `jax.distributed.initialize`)
before any computation, then builds only its own rows of each global batch (`local_rows`,
`global_batch`); values that must agree everywhere (the fidelity normalisers) are broadcast
from process 0 (`broadcast`), and host-side files are written by process 0 only
(`is_primary`). Checkpoints use Orbax's multi-host support (`ctjax.distill.checkpoint`):
every process saves and restores, Orbax writes each replicated array once. All processes need
the same work folder on a shared file system.

Nothing here is jitted; everything works unchanged with one process and one device.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# The usual variables of multi-process launchers; jax itself reads only the first.
ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID = (
    "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


class Hosts(NamedTuple):
    """This process's place among the processes of a run (`hosts()`)."""
    index: int
    count: int

    def sync(self, name: str) -> None:
        """Waits until every process got here (a no-op with one process)."""
        if self.count > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(name)


def hosts() -> Hosts:
    """This process's index and the number of processes (1 unless `initialize` ran)."""
    return Hosts(jax.process_index(), jax.process_count())


def is_primary() -> bool:
    """Whether this process writes the run's host-side files (logs, config, summary)."""
    return jax.process_index() == 0


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {text!r}") from None


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, auto: bool = False) -> Hosts:
    """Joins a multi-process run (`jax.distributed.initialize`); call before any computation.

    Each argument left None is read from `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`,
    `JAX_PROCESS_ID`. With none of the three set anywhere, nothing happens (one process)
    unless `auto`, which lets jax detect the cluster (SLURM, Open MPI, Cloud TPU).

    Args:
        coordinator: "host:port" of process 0's coordinator service.
        num_processes: number of processes of the run (>= 1).
        process_id: this process's index, 0 <= process_id < num_processes.
        auto: let `jax.distributed.initialize` detect what is not given.

    Returns:
        This process's `Hosts`.

    Raises:
        ValueError: only some of the three are given, or they are out of range.
    """
    coordinator = coordinator or os.environ.get(ENV_COORDINATOR) or None
    num_processes = num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES)
    process_id = process_id if process_id is not None else _env_int(ENV_PROCESS_ID)
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if not any(given) and not auto:
        return hosts()
    if not auto and not all(given):
        raise ValueError("a multi-process run needs all three of the coordinator address, the "
                         "number of processes and the process id (--coordinator, "
                         f"--num-processes, --process-id, or {ENV_COORDINATOR}, "
                         f"{ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}); use --distributed to let "
                         "jax detect SLURM or Open MPI")
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"the number of processes must be >= 1, got {num_processes}")
    if num_processes is not None and process_id is not None and \
            not 0 <= process_id < num_processes:
        raise ValueError(f"the process id must be in 0..{num_processes - 1}, got {process_id}")
    jax.distributed.initialize(coordinator, num_processes, process_id)
    return hosts()


def data_mesh(devices: Sequence | None = None) -> Mesh:
    """The 1-D ("data",) mesh over `devices` (default: every device of every process)."""
    return Mesh(np.asarray(list(devices) if devices is not None else jax.devices()), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Arrays split along their first (batch) axis over the mesh."""
    return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    """Arrays held whole by every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def local_rows(sharding: NamedSharding, n: int) -> np.ndarray:
    """Rows of a global (n, ...) batch held by this process's devices, ascending (int64).

    A process builds only these rows of each batch (`global_batch` assembles the global
    array); with one process they are all n rows.
    """
    rows = set()
    for index in sharding.addressable_devices_indices_map((n,)).values():
        rows.update(range(n)[index[0]])
    return np.asarray(sorted(rows), np.int64)


def global_batch(local: Any, rows: np.ndarray, sharding: NamedSharding, n: int) -> Any:
    """Global (n, ...) arrays from this process's rows.

    Args:
        local: pytree of host arrays (len(rows), ...), row k being global row `rows[k]`.
        rows: `local_rows(sharding, n)`.
        sharding: how the global arrays are split (`batch_sharding`).
        n: the global batch size.

    Returns:
        The pytree of `jax.Array`s (n, ...) with that sharding.
    """
    position = {int(r): k for k, r in enumerate(rows)}

    def leaf(a):
        a = np.asarray(a)
        return jax.make_array_from_callback(
            (n,) + a.shape[1:], sharding,
            lambda index: a[[position[r] for r in range(n)[index[0]]]])

    return jax.tree.map(leaf, local)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Host values (the same in every process) as arrays replicated over the mesh."""
    sharding = replicated(mesh)

    def leaf(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding,
                                             lambda index: np.asarray(x[index]))

    return jax.tree.map(leaf, tree)


def broadcast(tree: Any) -> Any:
    """Process 0's value of a pytree of host arrays in every process (as NumPy arrays)."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils
    return jax.tree.map(np.asarray, multihost_utils.broadcast_one_to_all(tree))

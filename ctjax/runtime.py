"""The one place that makes a process single-threaded on the CPU backend.

The paper's speed claims are for one CPU core. With jax 0.10 on CPU the XLA flags
`--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1` are accepted but a conv
still uses every core the process may run on (CPU time / wall time about 1.9 on two cores);
only pinning the process to one core (`os.sched_setaffinity`) brings the ratio to 1.0. So
`configure` does all three, and `probe` measures what was achieved instead of trusting it.

Call `configure` from entry points (CLI, benchmarks, notebook cell 1) *before* `import jax`;
library modules never touch these settings. An unknown flag in `XLA_FLAGS` aborts the
process, so only the two flags above are ever added.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time

SINGLE_THREAD_XLA_FLAGS = ("--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1")


@dataclasses.dataclass(frozen=True)
class RuntimeReport:
    """What `configure` + `probe` achieved; printed by every benchmark and the CLI."""
    cores_allowed: tuple[int, ...]
    xla_flags: str
    platforms: str
    jax_was_imported: bool
    cpu_over_wall: float | None = None  # process CPU time / wall time of the probe conv
    machine: str = ""

    def summary(self) -> str:
        ratio = "not probed" if self.cpu_over_wall is None else f"{self.cpu_over_wall:.2f}"
        return (f"runtime: cores={list(self.cores_allowed)} JAX_PLATFORMS={self.platforms} "
                        f"XLA_FLAGS='{self.xla_flags}' cpu/wall={ratio} machine={self.machine}")


def machine_description() -> str:
    """CPU model, logical core count and Python version, for benchmark reports."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores, Python {platform.python_version()}"


def configure(*, single_thread: bool = True, core: int | None = None) -> RuntimeReport:
    """Selects the CPU backend and, by default, restricts the process to one core.

    Args:
        single_thread: add the XLA single-thread flags and pin the process to one core.
        core: which core to pin to; default the first core the process may use. Worker
            processes of an evaluation pass their own index so that they do not share a core.

    Returns:
        A `RuntimeReport` (not yet probed). If jax was imported already the XLA flags can no
        longer take effect; the report says so (`jax_was_imported`) and pinning still applies.
    """
    os.environ["JAX_PLATFORMS"] = "cpu"
    if single_thread:
        flags = os.environ.get("XLA_FLAGS", "").split()
        flags += [f for f in SINGLE_THREAD_XLA_FLAGS if f not in flags]
        os.environ["XLA_FLAGS"] = " ".join(flags)
        if hasattr(os, "sched_setaffinity"):
            allowed = sorted(os.sched_getaffinity(0))
            target = allowed[0] if core is None else core
            if target not in allowed:
                raise ValueError(f"core {target} is not available to this process (allowed: {allowed})")
            os.sched_setaffinity(0, {target})
    cores = tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else ()
    return RuntimeReport(cores_allowed=cores, xla_flags=os.environ.get("XLA_FLAGS", ""),
                                              platforms=os.environ["JAX_PLATFORMS"],
                                              jax_was_imported="jax" in sys.modules, machine=machine_description())


def probe(report: RuntimeReport, *, seconds: float = 0.5) -> RuntimeReport:
    """Runs a conv for about `seconds` and records process CPU time / wall time.

    1.0 means one core was used; about N means N cores were busy.
    """
    import jax
    import jax.numpy as jnp

    x = jnp.ones((1, 192, 192, 64), jnp.float32)
    w = jnp.ones((3, 3, 64, 64), jnp.float32) * 0.01
    conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
    conv(x, w).block_until_ready()  # compile outside the measurement
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        conv(x, w).block_until_ready()
    ratio = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    return dataclasses.replace(report, cpu_over_wall=ratio, jax_was_imported=True)

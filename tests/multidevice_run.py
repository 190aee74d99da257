"""Helper of tests/test_multidevice.py, run as a subprocess (not a test module).

The number of (forced) CPU devices is fixed when jax starts, so every multi-device or
multi-process check runs here, in a fresh interpreter whose `XLA_FLAGS` ask for
`--host-devices` CPU devices before jax is imported. Results go to a JSON file that the test
reads and checks against its own references.

    python tests/multidevice_run.py meshes --host-devices 4 --config SPEC --workdir W \\
        [--cache-dir C] [--meshes 1,4] [--stop-after S --resume-mesh K]
    python tests/multidevice_run.py mechanics --host-devices 2 --coordinator HOST:PORT \\
        --num-processes 2 --process-id K --dir D
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _parse(argv):
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["meshes", "mechanics"])
    p.add_argument("--host-devices", type=int, required=True)
    p.add_argument("--config")
    p.add_argument("--workdir")
    p.add_argument("--cache-dir")
    p.add_argument("--meshes", default="1,4")
    p.add_argument("--stop-after", type=int)
    p.add_argument("--resume-mesh", type=int)
    p.add_argument("--coordinator")
    p.add_argument("--num-processes", type=int)
    p.add_argument("--process-id", type=int)
    p.add_argument("--dir")
    return p.parse_args(argv)


def _losses(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "log.jsonl").read_text().splitlines()]


def meshes(args) -> None:
    """The same config trained with meshes of several sizes in this process; optionally a
    run stopped on the largest mesh and resumed on another (`--resume-mesh`)."""
    import jax

    from ctjax.distill import loop
    from ctjax.distill.config import load_config

    config = load_config(args.config)
    root, out = Path(args.workdir), {"devices": len(jax.devices()), "runs": {}}
    for k in (int(m) for m in args.meshes.split(",")):
        workdir = root / f"mesh{k}"
        summary = loop.train_and_evaluate(config, workdir, progress=False,
                                          cache_dir=args.cache_dir, devices=jax.devices()[:k])
        out["runs"][str(k)] = {"log": _losses(workdir), "summary": summary}
    if args.stop_after:
        big = max(int(m) for m in args.meshes.split(","))
        workdir = root / f"mesh{big}-then-{args.resume_mesh}"
        loop.train_and_evaluate(config, workdir, progress=False, cache_dir=args.cache_dir,
                                devices=jax.devices()[:big], stop_after=args.stop_after)
        summary = loop.train_and_evaluate(config, workdir, progress=False,
                                          cache_dir=args.cache_dir,
                                          devices=jax.devices()[:args.resume_mesh])
        out["runs"]["resumed"] = {"log": _losses(workdir), "summary": summary}
    (root / "result.json").write_text(json.dumps(out))


def mechanics(args) -> None:
    """One process of a multi-process run: rows, global batches, replication, broadcast and
    a checkpoint saved and restored by every process."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ctjax.distill import checkpoint, parallel

    hosts = parallel.initialize(args.coordinator, args.num_processes, args.process_id)
    mesh = parallel.data_mesh()
    sharding = parallel.batch_sharding(mesh)
    n = 2 * len(jax.devices())
    rows = parallel.local_rows(sharding, n)
    full = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    batch = parallel.global_batch({"x": full[rows]}, rows, sharding, n)
    w = parallel.replicate({"w": np.arange(3, dtype=np.float32)}, mesh)
    step = jax.jit(lambda w, b: (jax.tree.map(lambda v: v * 2, w), jnp.sum(b["x"] @ w["w"])),
                   out_shardings=parallel.replicated(mesh))
    w2, total = step(w, batch)
    scales = parallel.broadcast({"s": np.float32(10 + hosts.index)})
    folder = Path(args.dir)
    ckpt = checkpoint.Checkpointer(folder / "checkpoints", keep=2)
    state = {"w": w2["w"], "step": parallel.replicate(np.int32(7), mesh)}
    ckpt.save(1, state, {"written_by": hosts.index})
    ckpt.wait()
    restored, meta = ckpt.restore(1, state)
    result = {
        "index": hosts.index, "count": hosts.count, "global_devices": len(jax.devices()),
        "local_devices": len(jax.local_devices()), "rows": rows.tolist(), "total": float(total),
        "w2": np.asarray(w2["w"]).tolist(), "scale": float(scales["s"]),
        "restored_w": np.asarray(restored["w"]).tolist(), "restored_step": int(restored["step"]),
        "restored_sharding_replicated": bool(restored["w"].sharding.is_fully_replicated),
        "meta": meta,
    }
    (folder / f"process-{hosts.index}.json").write_text(json.dumps(result))
    hosts.sync("multidevice-run-done")


def main(argv=None) -> None:
    args = _parse(sys.argv[1:] if argv is None else argv)
    flags = os.environ.get("XLA_FLAGS", "")  # before jax is imported
    os.environ["XLA_FLAGS"] = (f"{flags} --xla_force_host_platform_device_count="
                               f"{args.host_devices}").strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    (meshes if args.mode == "meshes" else mechanics)(args)


if __name__ == "__main__":
    main()

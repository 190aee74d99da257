"""Per-crop forward time of the feature networks on one CPU core.

Times batch-1 forward passes of the VGG-M teacher, every CF-VGGM student of the paper's
compression-ratio study (PAPER.md 9.1) and the EfficientNet-Lite0 feature trunk, at 224x224
and at the trackers' crop sizes (fECO samples 200²..300² px, PAPER.md 8). Weights are random
for the VGG-M family (speed does not depend on their values; He-scaled so activations stay in
a normal float range) and the real ImageNet weights for EfficientNet-Lite0 when present.

What is timed: `jax.jit(module.apply)` on an already normalised float32 crop, full trunk
(VGG-M: conv1..conv5; EfficientNet: up to "stride32"), `block_until_ready` after each call.
XLA's CPU conv is erratic for VGG-M's 3-channel conv1 (17 or 24 outputs run ~7x slower than
12), so by default both conv1 implementations of `VGGM` (direct, space_to_depth; identical
outputs) are timed and the faster is reported (`--conv1`).
Compile time (lower + compile) is reported separately; the first two calls are warm-up; the
table shows the median wall time (and 10th-90th percentiles) over `--repeats` calls, the
median process CPU time per call, and CPU time / wall time over the calls (1.00 = one core
fully ours; below 1 the core was shared with other processes and wall times are inflated,
CPU times less so). MACs are analytic conv MACs
(`ctjax.models.cost.conv_macs`).

Usage:
    .venv/bin/python experiments/benchmark_models.py [--sizes 224,200,300] [--repeats 30]
        [--models vggm,cf_vggm_r64,...] [--conv1 best|direct|space_to_depth]
        [--multi-thread] [--output results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time

DEFAULT_MODELS = ("vggm", "cf_vggm_r1", "cf_vggm_r16", "cf_vggm_r32", "cf_vggm_r64", "cf_vggm_r96",
                  "efficientnet_lite0")


@dataclasses.dataclass
class Row:
    model: str
    params: int
    input_hw: tuple[int, int]
    gmac: float
    compile_s: float
    median_ms: float
    median_cpu_ms: float
    p10_ms: float
    p90_ms: float
    cpu_over_wall: float
    weights: str
    impl: str = "-"


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'224,200x180' -> [(224, 224), (200, 180)]."""
    sizes = []
    for item in text.split(","):
        h, _, w = item.strip().lower().partition("x")
        try:
            sizes.append((int(h), int(w or h)))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--sizes wants N or HxW items, got {item!r}") from None
    return sizes


def benchmark_variables(name: str):
    """Variables to time with: real EfficientNet weights if available, else random."""
    import jax
    import numpy as np

    from ctjax.models import registry, weights
    from ctjax.models.vggm import conv_shapes
    config = registry.get_config(name)
    if config.family == "vggm":
        rng = np.random.default_rng(0)
        params = {k: {"kernel": rng.normal(0, (2 / np.prod(s[:3])) ** 0.5, s).astype(np.float32),
                      "bias": np.zeros(s[-1], np.float32)}
                  for k, s in conv_shapes(config.widths).items()}
        return config, jax.tree_util.tree_map(jax.numpy.asarray, {"params": params}), "random"
    try:
        return config, weights.load_efficientnet_lite0().variables, "imagenet"
    except weights.WeightFileError:
        return config, registry.init_variables(config, jax.random.key(0)), "random"


def time_model(name: str, hw: tuple[int, int], repeats: int, *, conv1: str = "best") -> Row:
    """Times one model at one crop size; `conv1` picks VGG-M's conv1 implementation ("best":
    time both, return the faster)."""
    from ctjax.models import registry
    config = registry.get_config(name)
    if config.family != "vggm":
        return _time_one(name, hw, repeats, impl=None)
    if conv1 != "best":
        return _time_one(name, hw, repeats, impl=conv1)
    rows = [_time_one(name, hw, repeats, impl=i) for i in ("direct", "space_to_depth")]
    return min(rows, key=lambda r: r.median_ms)


def _time_one(name: str, hw: tuple[int, int], repeats: int, *, impl: str | None) -> Row:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ctjax.models import cost, registry
    config, variables, source = benchmark_variables(name)
    module = registry.build_module(config)
    if impl is not None:
        module = module.clone(conv1_impl=impl)
    x = jax.random.normal(jax.random.key(1), (1, *hw, 3), jnp.float32) * 60.0
    forward = jax.jit(lambda v, x: module.apply(v, x))
    start = time.perf_counter()
    compiled = forward.lower(variables, x).compile()
    compile_s = time.perf_counter() - start
    for _ in range(2):
        jax.block_until_ready(compiled(variables, x))
    times, cpu_times = [], []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(compiled(variables, x))
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    ratio = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    p10, p90 = np.percentile(times, [10, 90])
    return Row(model=name, params=registry.param_count(variables), input_hw=hw,
               gmac=cost.conv_macs(config, hw) / 1e9, compile_s=compile_s,
               median_ms=1e3 * statistics.median(times),
               median_cpu_ms=1e3 * statistics.median(cpu_times), p10_ms=1e3 * p10, p90_ms=1e3 * p90,
               cpu_over_wall=ratio, weights=source, impl=impl or "-")


def markdown_table(rows: list[Row]) -> str:
    teacher = {r.input_hw: r.median_ms for r in rows if r.model == "vggm"}
    lines = ["| model | params | input | GMAC | compile s | median ms/crop | p10-p90 ms "
             "| median CPU ms | crops/s | vs vggm | cpu/wall | conv1 |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        speedup = f"{teacher[r.input_hw] / r.median_ms:.1f}x" if r.input_hw in teacher else "-"
        lines.append(f"| {r.model} | {r.params:,} | {r.input_hw[0]}x{r.input_hw[1]} | "
                     f"{r.gmac:.3f} | {r.compile_s:.2f} | {r.median_ms:.2f} | "
                     f"{r.p10_ms:.2f}-{r.p90_ms:.2f} | {r.median_cpu_ms:.2f} | "
                     f"{1e3 / r.median_ms:.0f} | {speedup} | {r.cpu_over_wall:.2f} | {r.impl} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("224,200,300"),
                        help="crop sizes, N or HxW, comma separated (default 224,200,300)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma-separated registry names")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per row")
    parser.add_argument("--conv1", choices=("best", "direct", "space_to_depth"), default="best",
                        help="VGG-M conv1 implementation (default: time both, report the faster)")
    parser.add_argument("--multi-thread", action="store_true",
                        help="do not pin to one core (default: single-threaded, as the paper)")
    parser.add_argument("--output", help="also write the rows and runtime report as JSON")
    args = parser.parse_args(argv)

    from ctjax import runtime
    report = runtime.configure(single_thread=not args.multi_thread)  # before importing jax
    import jax

    from ctjax.models import registry
    report = runtime.probe(report)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    for name in names:
        registry.get_config(name)  # fail early on a typo
    print(report.summary())
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, repeats {args.repeats}")
    rows = []
    for hw in args.sizes:
        for name in names:
            rows.append(time_model(name, hw, args.repeats, conv1=args.conv1))
            print(f"  {name} {hw}: {rows[-1].median_ms:.2f} ms", file=sys.stderr, flush=True)
    print(markdown_table(rows))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"runtime": dataclasses.asdict(report), "jax": jax.__version__,
                       "repeats": args.repeats, "conv1": args.conv1,
                       "rows": [dataclasses.asdict(r) for r in rows]},
                      f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-call time of the hand-crafted features on one CPU core.

Times `jax.jit` of fHOG (`ctjax.features.fhog`, cells 4 and 6), colour names, the intensity
channel and the grey feature (`ctjax.features.colornames`, cell 4) on float32 RGB patches in
0..255 (what the trackers' crop returns), by default one 200x200 patch, plus the fDSST scale
filter's batch (17 patches of 16x32 px, fHOG cell 4). Lookup tables are passed as arguments,
as the trackers do. Compile time (lower + compile) is reported separately; the first two
calls are warm-up; the table shows the median wall time (10th-90th percentiles) over
`--repeats` calls, the median process CPU time, and CPU time / wall time (1.00 = the core was
ours; below 1 it was shared and wall times are inflated, CPU times less so).

Usage:
    .venv/bin/python experiments/benchmark_features.py [--size 200] [--repeats 200]
        [--multi-thread] [--output results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time


@dataclasses.dataclass
class Row:
    feature: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    compile_s: float
    median_ms: float
    median_cpu_ms: float
    p10_ms: float
    p90_ms: float
    cpu_over_wall: float


def cases(size: int):
    """(name, function of (image, cn_table, ic_table), input shape) for every timed row."""
    from ctjax.features import colornames, fhog

    return [
        ("fhog cell 4", lambda x, cn, ic: fhog.fhog(x, cell=4), (1, size, size, 3)),
        ("fhog cell 6", lambda x, cn, ic: fhog.fhog(x, cell=6), (1, size, size, 3)),
        ("fhog cell 4, scale batch", lambda x, cn, ic: fhog.fhog(x, cell=4), (17, 16, 32, 3)),
        ("colour names cell 4", lambda x, cn, ic: colornames.colour_names(x, cn, cell=4),
         (1, size, size, 3)),
        ("intensity channel cell 4",
         lambda x, cn, ic: colornames.intensity_channel(x, ic, cell=4), (1, size, size, 3)),
        ("grey cell 4", lambda x, cn, ic: colornames.grey(x, cell=4), (1, size, size, 3)),
    ]


def time_case(fn, shape, tables, repeats: int) -> Row:
    import jax
    import numpy as np

    x = jax.numpy.asarray(np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32))
    step = jax.jit(fn)
    start = time.perf_counter()
    compiled = step.lower(x, *tables).compile()
    compile_s = time.perf_counter() - start
    for _ in range(2):
        out = jax.block_until_ready(compiled(x, *tables))
    times, cpu_times = [], []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(compiled(x, *tables))
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    ratio = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    p10, p90 = np.percentile(times, [10, 90])
    return Row(feature="", input_shape=tuple(shape), output_shape=tuple(out.shape),
               compile_s=compile_s, median_ms=1e3 * statistics.median(times),
               median_cpu_ms=1e3 * statistics.median(cpu_times), p10_ms=1e3 * p10,
               p90_ms=1e3 * p90, cpu_over_wall=ratio)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| feature | input | output | compile s | median ms | p10-p90 ms | median CPU ms "
             "| cpu/wall |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        shape = lambda s: "x".join(map(str, s))  # noqa: E731
        lines.append(f"| {r.feature} | {shape(r.input_shape)} | {shape(r.output_shape)} | "
                     f"{r.compile_s:.2f} | {r.median_ms:.3f} | {r.p10_ms:.3f}-{r.p90_ms:.3f} | "
                     f"{r.median_cpu_ms:.3f} | {r.cpu_over_wall:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200, help="patch side in pixels (200)")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per row")
    parser.add_argument("--multi-thread", action="store_true",
                        help="do not pin to one core (default: single-threaded, as the paper)")
    parser.add_argument("--output", help="also write the rows and runtime report as JSON")
    args = parser.parse_args(argv)

    from ctjax import runtime
    report = runtime.configure(single_thread=not args.multi_thread)  # before importing jax
    import jax

    from ctjax.features import colornames
    tables = (colornames.load_colour_names_table(), colornames.load_intensity_table())
    report = runtime.probe(report)
    print(report.summary())
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, repeats {args.repeats}")
    rows = []
    for name, fn, shape in cases(args.size):
        rows.append(dataclasses.replace(time_case(fn, shape, tables, args.repeats), feature=name))
        print(f"  {name}: {rows[-1].median_ms:.3f} ms", file=sys.stderr, flush=True)
    print(markdown_table(rows))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"runtime": dataclasses.asdict(report), "jax": jax.__version__,
                       "repeats": args.repeats, "rows": [dataclasses.asdict(r) for r in rows]},
                      f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

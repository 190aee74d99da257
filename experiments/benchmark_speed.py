"""Single-threaded per-frame speed of every tracker preset, in one run.

    python experiments/benchmark_speed.py [--trackers feco released=feco:released eco-hc eco-vggm
        eco fdeepstrcf cfvggm csrt] [--frames 100] [--repeats 3] [--output speed.json]

Tracks the shipped demo clip (frames of 352x288, OTB `Woman`, train split) `--repeats` times
with every tracker, pinned to one core with the XLA single-thread flags
(`ctjax.runtime.configure`). Frame decoding is done once, before timing. Reported separately:
compile time, the first frame (initialisation: ECO's Gauss-Newton, the scale filter, ...), and
over all later frames of all repeats the median per-frame time, the mean, and FPS = frames /
total time (what `ctjax eval` reports; ECO trains every 6th frame, so its median frame and its
mean differ). Trackers are `LABEL=PRESET[:WEIGHTS]` or `PRESET` as in `ctjax eval`. Presets
with random weights (`eco-vggm`, `vggm`) stand for the teacher's cost, which does not depend
on weight values.
"""

from __future__ import annotations

import argparse
import json
import sys

from ctjax import runtime

DEFAULT = ["feco", "released=feco:released", "eco-hc", "eco-vggm", "eco", "fdeepstrcf",
           "cfvggm", "csrt"]
RATIOS = [("feco", "eco-vggm"), ("feco", "eco"), ("released", "eco-vggm"), ("fdeepstrcf", "deepstrcf")]


def _spec(text: str) -> tuple[str, str, str | None]:
    label, _, rest = text.partition("=") if "=" in text else (text, "", text)
    preset, _, weights = rest.partition(":")
    return label, preset, weights or None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trackers", nargs="+", default=DEFAULT)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", help="write the measurements as JSON")
    args = parser.parse_args(argv)

    report = runtime.probe(runtime.configure(single_thread=True))
    import numpy as np
    from ctjax.data import sequences
    from ctjax.trackers import presets
    from ctjax.trackers.csrt import track_frames_csrt
    from ctjax.trackers.run import compile_tracker, track_frames

    seq = sequences.demo_sequence()
    frames = [seq.frame(i) for i in range(min(args.frames, len(seq)))]
    rows = {}
    for spec in args.trackers:
        label, name, weights = _spec(spec)
        compile_s = 0.0
        if name == "csrt":
            run = lambda: track_frames_csrt(frames, seq.init_box)
        else:
            built = presets.build(name, weights=weights)
            compiled = compile_tracker(built.tracker, built.config, built.params)
            compile_s = compiled.compile_seconds
            run = lambda: track_frames(compiled, built.params, frames, seq.init_box)
        results = [run() for _ in range(args.repeats)]
        times = np.concatenate([r.frame_seconds[1:] for r in results])
        first = float(np.median([r.frame_seconds[0] for r in results]))
        median = float(np.median(times))
        rows[label] = {"preset": name, "weights": weights, "median_ms": 1e3 * median,
                       "mean_ms": 1e3 * float(times.mean()), "fps": float(times.size / times.sum()),
                       "p90_ms": 1e3 * float(np.percentile(times, 90)), "first_frame_ms": 1e3 * first,
                       "compile_s": compile_s, "frames_timed": int(times.size)}
        r = rows[label]
        print(f"{label:12s} median {r['median_ms']:7.2f} ms  mean {r['mean_ms']:7.2f} ms  "
              f"{r['fps']:7.1f} FPS  first frame {r['first_frame_ms']:.0f} ms  "
              f"(compile {compile_s:.1f} s)", flush=True)

    print(f"\n{report.summary()}")
    print(f"clip: {seq.name} {seq.image_hw[1]}x{seq.image_hw[0]}, {len(frames)} frames x "
          f"{args.repeats} repeats\n")
    print("| tracker | median ms/frame | mean ms/frame | FPS (frames / time) | p90 ms | first frame ms | compile s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, r in rows.items():
        print(f"| {label} | {r['median_ms']:.2f} | {r['mean_ms']:.2f} | {r['fps']:.1f} | "
              f"{r['p90_ms']:.2f} | {r['first_frame_ms']:.0f} | {r['compile_s']:.1f} |")
    for fast, slow in RATIOS:
        if fast in rows and slow in rows:
            print(f"{fast} / {slow} FPS ratio: {rows[fast]['fps'] / rows[slow]['fps']:.1f}x")
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"runtime": report.summary(), "trackers": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Single-threaded per-frame speed of the tracker with each feature extractor, in one run.

    python experiments/benchmark_speed.py [--trackers cfvggm effnet vggm gradhist csrt]
        [--weights PATH|released] [--frames 100] [--repeats 3] [--output speed.json]

Tracks the shipped demo clip (frames of 352x288, OTB `Woman`, train split) `--repeats` times
with every tracker, pinned to one core with the XLA single-thread flags
(`ctjax.runtime.configure`), and reports the median per-frame time over all tracked frames
of all repeats, the FPS it implies, and the compile time separately. Frame decoding is done
once, before timing. The `vggm` preset has random weights: the teacher's cost does not
depend on weight values. Expected (README): the student is >= 50 FPS, >= 8x the VGG-M
tracker and >= 3x the EfficientNet-Lite0 tracker.
"""

from __future__ import annotations

import argparse
import json
import sys

from ctjax import runtime


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trackers", nargs="+", default=["cfvggm", "effnet", "vggm", "gradhist", "csrt"])
    parser.add_argument("--weights", default=None, help="student weights for cfvggm (default: shipped)")
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
    for name in args.trackers:
        compile_s = 0.0
        if name == "csrt":
            run = lambda: track_frames_csrt(frames, seq.init_box)
        else:
            built = presets.build(name, weights=args.weights if name == "cfvggm" else None)
            compiled = compile_tracker(built.tracker, built.config, built.params)
            compile_s = compiled.compile_seconds
            run = lambda: track_frames(compiled, built.params, frames, seq.init_box)
        times = np.concatenate([run().frame_seconds[1:] for _ in range(args.repeats)])
        median = float(np.median(times))
        rows[name] = {"median_ms": 1e3 * median, "fps": 1.0 / median,
                      "p90_ms": 1e3 * float(np.percentile(times, 90)), "compile_s": compile_s,
                      "frames_timed": int(times.size)}
        print(f"{name:10s} {1e3 * median:7.2f} ms/frame  {1 / median:7.1f} FPS  "
              f"(compile {compile_s:.1f} s)", flush=True)

    print(f"\n{report.summary()}")
    print(f"clip: {seq.name} {seq.image_hw[1]}x{seq.image_hw[0]}, {len(frames)} frames x "
          f"{args.repeats} repeats\n")
    print("| tracker | median ms/frame | FPS | p90 ms | compile s |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['median_ms']:.2f} | {r['fps']:.1f} | {r['p90_ms']:.2f} | {r['compile_s']:.1f} |")
    if "cfvggm" in rows:
        for other in ("vggm", "effnet", "csrt", "gradhist"):
            if other in rows:
                print(f"student speed-up over {other}: {rows['cfvggm']['fps'] / rows[other]['fps']:.1f}x")
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"runtime": report.summary(), "trackers": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

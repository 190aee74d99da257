"""Background-aware online adaptation of the student in fECO (issue 14): ablation and cost.

    python experiments/online_adaptation.py ablation [--config experiments/online_adaptation.py:smoke]
    python experiments/online_adaptation.py timing

`ablation` tracks the TRAIN split (settings are chosen there only) with `feco` and with
`feco-online` variants (`ctjax.trackers.adapt_presets.online_feco` with the overrides in
`VARIANTS`), for the shipped and the released student, in one process pinned to one core;
per (student, variant) it writes `<output>/<student>/<variant>.json` (per-sequence AUC, P@20,
FPS; resumable) and prints the comparison table. `timing` measures, on one core and the
demo clip, the first-frame adaptation (`adapt` on one region) and one later update (on the
ring buffer), each compiled alone, and the trackers' first frame and per-frame times.

The eval split is then run ONCE with the chosen settings, through the CLI, inside the
ECO-family run of the README ("Online adaptation of the student": `online=feco-online`,
`released_online=feco-online:released`, `recent=feco-online-recent`,
`released_recent=feco-online-recent:released` beside `feco` and `feco:released`,
results/eval_eco). Measured there: no gain (-0.011 to -0.070 AUC), so it is off by default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from ctjax import runtime

# name -> AdaptSettings overrides of `adapt_presets.FECO_ONLINE`; None = plain `feco`.
VARIANTS: tuple[tuple[str, dict | None], ...] = (
    ("off", None),
    ("first-lr0.01-s10", {}),
    ("first-lr0.03-s10", {"learning_rate": 0.03}),
    ("first-lr0.1-s10", {"learning_rate": 0.1}),
    ("first-lr0.03-s10-nodecay", {"learning_rate": 0.03, "weight_decay": 0.0}),
    ("first-lr0.03-s10-fid", {"learning_rate": 0.03, "weight_decay": 0.0, "fidelity": 1.0}),
    ("recent2-every50-lr0.03", {"learning_rate": 0.03, "every": 50, "recent": 2}),
    ("recent4-every25-lr0.03", {"learning_rate": 0.03, "every": 25, "recent": 4}),
)


@dataclasses.dataclass(frozen=True)
class Config:
    """The ablation's settings.

    Attributes:
      split: the split of `splits.json` (settings are chosen on `train` only).
      sequences: explicit sequence names instead of the split (smoke runs).
      students: weights as `feco` takes them: "shipped" (None) or "released" or a path.
      variants: names from `VARIANTS` to run, each for every student in turn.
      max_frames: track only the first N frames of each sequence (smoke runs).
      output: results folder (resumable).
    """
    split: str = "train"
    sequences: tuple[str, ...] = ()
    students: tuple[str, ...] = ("shipped", "released")
    variants: tuple[str, ...] = ("off", "first-lr0.01-s10", "first-lr0.03-s10",
                                 "first-lr0.1-s10", "recent2-every50-lr0.03",
                                 "recent4-every25-lr0.03")
    max_frames: int | None = None
    output: str = "/work/runs/online_ablation"


SMOKE = dict(sequences=("Woman",), students=("shipped",), max_frames=12,
             variants=("off", "first-lr0.01-s10", "recent2-every50-lr0.03"),
             output="/tmp/ctjax_online_smoke")


def get_config(arg: str = "") -> Config:
    """`Config()`, or `smoke`, or comma-separated `key=value` overrides (unknown keys fail)."""
    config = Config()
    for item in filter(None, arg.split(",")):
        if item == "smoke":
            config = dataclasses.replace(config, **SMOKE)
            continue
        key, _, value = item.partition("=")
        if key not in {f.name for f in dataclasses.fields(Config)}:
            raise ValueError(f"unknown override {key!r}; fields: "
                             f"{[f.name for f in dataclasses.fields(Config)]}")
        field = type(getattr(config, key))
        value = tuple(value.split("+")) if field is tuple else \
            (None if value == "None" else (int(value) if key == "max_frames" else value))
        config = dataclasses.replace(config, **{key: value})
    return config


def _build(student: str, variant: str):
    from ctjax.trackers import adapt_presets, presets

    weights = None if student == "shipped" else student
    overrides = dict(VARIANTS)[variant]
    if overrides is None:
        return presets.build("feco", weights=weights)
    settings = dataclasses.replace(adapt_presets.FECO_ONLINE, **overrides)
    return adapt_presets.online_feco(f"feco-online[{variant}]", settings, weights=weights)


def _sequences(config: Config):
    from ctjax import paths
    from ctjax.data import sequences

    if config.sequences:
        seqs = [sequences.load_sequence(paths.sequence_dir(s)) for s in config.sequences]
    else:
        seqs = list(sequences.load_split(config.split, root=paths.sequences_dir()))
    if config.max_frames:
        seqs = [dataclasses.replace(s, frame_paths=s.frame_paths[:config.max_frames],
                                    boxes=s.boxes[:config.max_frames]) for s in seqs]
    return seqs


def ablation(config: Config) -> dict:
    """Runs every (student, variant) over the sequences; returns {student: {variant: row}}."""
    import numpy as np

    from ctjax import evaluation
    from ctjax.trackers.run import compile_tracker, track_frames

    seqs = _sequences(config)
    table = {}
    for variant in config.variants:
        for student in config.students:
            out = Path(config.output) / student / f"{variant}.json"
            if out.exists():
                table.setdefault(student, {})[variant] = json.loads(out.read_text())
                continue
            built = _build(student, variant)
            compiled = compile_tracker(built.tracker, built.config, built.params)
            results, firsts = [], []
            for seq in seqs:
                r = track_frames(compiled, built.params, seq.frames(), seq.init_box)
                results.append(evaluation.evaluate_sequence(r.boxes, seq.boxes, name=seq.name,
                                                            fps=r.fps))
                firsts.append(float(r.frame_seconds[0]))
            agg = evaluation.aggregate(results, name=variant)
            row = {"auc": agg.auc, "precision20": agg.precision20,
                   "median_fps": float(np.median([s.fps for s in agg.sequences])),
                   "first_frame_ms": 1e3 * float(np.median(firsts)),
                   "compile_s": compiled.compile_seconds, "weights": built.weights,
                   "overrides": dict(VARIANTS)[variant],
                   "sequences": {s.name: {"auc": s.auc, "precision20": s.precision20,
                                          "fps": s.fps} for s in agg.sequences}}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(row, indent=1))
            table.setdefault(student, {})[variant] = row
            per_seq = " ".join(f"{k} {v['auc']:.3f}" for k, v in row["sequences"].items())
            print(f"{student:9s} {variant:28s} AUC {row['auc']:.3f} P@20 "
                  f"{row['precision20']:.3f} FPS {row['median_fps']:.1f} "
                  f"({per_seq})",
                  flush=True)
    return table


def _best_of(fn, args, repeats: int = 5) -> float:
    import jax

    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return min(times)


def timing(frames: int = 110, repeats: int = 2) -> dict:
    """First-frame adaptation and per-update times on one core (demo clip, shipped student)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ctjax.data import sequences
    from ctjax.ops.crop import to_canvas
    from ctjax.trackers import adapt, adapt_presets, presets
    from ctjax.trackers.run import compile_tracker, track_frames

    seq = sequences.demo_sequence()
    images = [seq.frame(i) for i in range(min(frames, len(seq)))]
    rows = {}
    base = presets.build("feco")
    ex = base.extractor.parts[0].extractor
    cnn = base.params[0]
    frame = to_canvas(images[0], base.config.canvas_hw)
    box = np.asarray(seq.init_box, np.float32)
    for name, settings in (("first", adapt_presets.FECO_ONLINE),
                           ("recent", adapt_presets.FECO_ONLINE_RECENT)):
        side = adapt.region_side(settings, adapt.quantum(ex, settings))
        slots = (1 if settings.keep_first else 0) + settings.recent
        theta = {s: cnn["variables"]["params"][s] for s in settings.stages}

        def first(cnn, frame, box, settings=settings, side=side, theta=theta):
            region, size = adapt.region_at(settings, side, frame, box)
            return adapt.adapt(settings, ex, cnn, theta, region[None], size[None],
                               jnp.ones((1,)), jax.random.PRNGKey(0), steps=settings.steps)

        def update(cnn, frame, box, settings=settings, side=side, theta=theta, slots=slots):
            region, size = adapt.region_at(settings, side, frame, box)
            regions = jnp.broadcast_to(region, (slots,) + region.shape)
            sizes = jnp.broadcast_to(size, (slots, 2))
            return jax.lax.cond(box[0] > -1e9, lambda t: adapt.adapt(
                settings, ex, cnn, t, regions, sizes, jnp.ones((slots,)),
                jax.random.PRNGKey(0), steps=settings.update_steps)[0], lambda t: t, theta)

        rows[f"adapt_{name}_frame1_ms"] = 1e3 * _best_of(first, (cnn, frame, box))
        if settings.every:
            rows[f"adapt_{name}_update_ms"] = 1e3 * _best_of(update, (cnn, frame, box))
    for label in ("feco", "feco-online", "feco-online-recent"):
        built = presets.build(label)
        compiled = compile_tracker(built.tracker, built.config, built.params)
        res = [track_frames(compiled, built.params, images, seq.init_box)
               for _ in range(repeats)]
        t = np.concatenate([r.frame_seconds[1:] for r in res]) * 1e3
        rows[label] = {"first_frame_ms": 1e3 * float(np.median([r.frame_seconds[0] for r in res])),
                       "median_ms": float(np.median(t)), "mean_ms": float(t.mean()),
                       "compile_s": compiled.compile_seconds}
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("ablation", "timing"))
    parser.add_argument("--config", default="", help="overrides: smoke, key=value,...")
    args = parser.parse_args(argv)
    report = runtime.probe(runtime.configure(single_thread=True))
    print(report.summary(), flush=True)
    if args.mode == "timing":
        print(json.dumps(timing(), indent=1))
        return 0
    config = get_config(args.config.partition(":")[2] if ":" in args.config else args.config)
    table = ablation(config)
    print("\n| student | variant | AUC | P@20 | median FPS | first frame ms |")
    print("|---|---|---:|---:|---:|---:|")
    for student, rows in table.items():
        for variant, r in rows.items():
            print(f"| {student} | {variant} | {r['auc']:.3f} | {r['precision20']:.3f} | "
                  f"{r['median_fps']:.1f} | {r['first_frame_ms']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

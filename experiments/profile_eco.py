"""Profiles the ECO tracker on one CPU core: per-frame times and per-component times.

Runs `feco` (released CF-VGGM student) and `eco-hc` (skipped when
`ctjax/features/colornames.py` is missing) over the first frames of Woman through
`ctjax.trackers.run` and prints, per preset, the median / mean step time of training frames
(the sparse CG update) and of the others, the FPS over all steps, and the first-frame time.
`--components` also times the jitted pieces of a step on the shapes of the preset:
feature extraction, spectra + response + Newton, the sample-space update, `train_filter`
and the scale filter.

`--ref DIR` names a directory holding a package `ecoref` (an older copy of
`trackers/eco.py` and its ops, imports rewritten to `ecoref.*`); its tracker is then run
alternately with the current one on the same features and the boxes are compared. The
machine may be shared and loaded: trust ratios between alternating runs, not the absolute
numbers.

Usage:
  .venv/bin/python experiments/profile_eco.py [--frames 100] [--repeats 2] [--components]
      [--presets feco,eco-hc] [--ref /tmp/ecoref] [--save-boxes out.npz] [--donate]
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from ctjax import runtime

REPORT = runtime.configure()  # one core, before jax is imported

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ctjax import paths  # noqa: E402
from ctjax.data.sequences import load_sequence  # noqa: E402
from ctjax.ops.crop import to_canvas  # noqa: E402
from ctjax.trackers import eco, presets, run  # noqa: E402
import ctjax.trackers.eco_presets  # noqa: E402,F401  (registers the presets)


def _eco_hc_fallback():
    """eco-hc from `eco_presets`' parts when the preset cannot load its colour tables (the
    colour-names module and the preset are being changed by others), else None."""
    from ctjax.features import blocks, colornames
    from ctjax.trackers import eco_presets
    try:
        tables = {"cn": colornames.load_colour_names_table(),
                  "ic": colornames.load_intensity_table()}
    except (AttributeError, FileNotFoundError):
        return None
    features = blocks.FeatureSet((blocks.HogPart(6, 10), blocks.ColourPart(4, 3)),
                                 eco_presets.HC_SUPPORT)
    config = eco_presets.ECO_HC
    return presets.BuiltTracker("eco-hc", eco.make_tracker(config, features), ({}, tables),
                                config, features, "none")


def training_steps(config, n_steps: int) -> np.ndarray:
    """Which steps (0-based, frame 2 first) run the CG update, as `eco.step_fn` decides
    (ECO: `frames_since_last_train >= train_gap`, counted before the frame)."""
    out, since = [], 0
    for k in range(n_steps):
        frame_no = k + 2
        train = frame_no < config.skip_after_frame or since >= config.train_gap
        out.append(train)
        since = 0 if train else since + 1
    return np.asarray(out)


def compile_donating(tracker, config, params) -> run.CompiledTracker:
    """`run.compile_tracker` with the state donated to the step (in-place memory update)."""
    frame = to_canvas(np.zeros((8, 8, 3), np.uint8), config.canvas_hw)
    box = np.array([1, 1, 4, 4], np.float32)
    t0 = time.perf_counter()
    init = jax.jit(tracker.init_fn).lower(params, frame, box).compile()
    state = jax.eval_shape(tracker.init_fn, params, frame, box)
    step = jax.jit(tracker.step_fn, donate_argnums=1).lower(params, state, frame).compile()
    return run.CompiledTracker(init, step, config, time.perf_counter() - t0)


class CpuClock:
    """Wraps a frame list; records the process CPU time around each frame's processing.

    `track_frames` asks for frame i + 1 right after finishing frame i, so the CPU time between
    handing out a frame and being asked for the next is that frame's cost (init or step,
    canvas copy included). On a loaded machine this is closer to the cost on a dedicated
    core than the wall time `TrackResult.frame_seconds` records.
    """

    def __init__(self, frames):
        self.frames, self.marks = frames, []

    def __iter__(self):
        for f in self.frames:
            self.marks.append(time.process_time())
            yield f
            self.marks.append(time.process_time())

    def seconds(self) -> np.ndarray:
        m = np.asarray(self.marks)
        return m[1::2] - m[0::2]


def summarize(name: str, seconds: np.ndarray, train: np.ndarray, clock: str) -> dict:
    steps = seconds[1:] * 1e3
    t, o = steps[train], steps[~train]
    row = dict(first=seconds[0] * 1e3, train_med=np.median(t), train_mean=t.mean(),
               other_med=np.median(o), other_mean=o.mean(), fps=1e3 * len(steps) / steps.sum())
    print(f"  {name:10s} {clock} first {row['first']:6.0f} ms | train med {row['train_med']:6.1f} "
          f"mean {row['train_mean']:6.1f} ms | other med {row['other_med']:5.1f} "
          f"mean {row['other_mean']:5.1f} ms | {row['fps']:5.1f} FPS", flush=True)
    return row


def time_fn(fn, args, reps: int = 10) -> np.ndarray:
    """`(reps, 2)` seconds (wall, process CPU) of calls of a jitted function, blocked on."""
    out = []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        out.append((time.perf_counter() - t0, time.process_time() - c0))
    return np.asarray(out)


def components(mod, built, state, frame) -> list:
    """The jitted pieces of `mod`'s step on the state after some frames: (name, fn, args)."""
    config, features, params = built.config, built.extractor, built.params
    geo = mod.geometry(features)
    interp = tuple(mod.cfourier.interp_fourier(hw, a=config.interp_a) for hw in geo.filter_hw)
    scales = state.scale[None]
    min_weight = config.learning_rate * (1 - config.learning_rate) ** (2 * config.num_samples)

    crop = jax.jit(lambda f, pos, s: mod.samples_at(features, f, pos, s))
    samples = crop(frame, state.pos, scales)
    feats = jax.jit(lambda p, smp, c: features(p, smp, c))

    def detect(p, smp, st):
        xtf = mod.spectra(features, geo, p, smp, st.is_color, st.projection, interp)
        scores_f = mod.response(st.hf, xtf, geo.output_hw)
        return xtf, mod.newton_locate(config, geo, scores_f)
    detect_j = jax.jit(detect)
    xtf, _ = detect_j(params, samples, state)
    new_xf = tuple(x[0] for x in xtf)

    def proj_only(blocks, st):
        out = []
        for x, P, hw, (iy, ix) in zip(blocks, st.projection, geo.feature_hw, interp):
            x = jnp.einsum("nhwc,cd->nhwd", x, P)
            out.append(mod.cfourier.interpolate(mod.cfourier.cfft2(x * mod.cos_window(hw)),
                                                iy, ix))
        return tuple(out)
    blocks = feats(params, samples, state.is_color)

    # The memory layout and the kernels as each version's step passes them.
    layout = getattr(mod, "_channels_first", None)
    first = {} if layout is None else {"channels_first": True}
    new_xf = new_xf if layout is None else layout(new_xf)
    cross = getattr(mod, "_cross", lambda reg: reg)
    update = jax.jit(lambda mem, x: mod.sample_space.update_sample_space(
        mem, x, learning_rate=config.learning_rate, min_sample_weight=min_weight, **first)[0])
    train = jax.jit(lambda st: mod.eco_filter.train_filter(
        st.hf, st.cg, st.memory.samplesf, st.memory.prior_weights, st.yf, cross(st.reg),
        st.sample_energy, st.reg_energy, settings=config.filter, **first))
    rows = [("crop", crop, (frame, state.pos, scales)),
            ("features", feats, (params, samples, state.is_color)),
            ("proj+fft+interp", jax.jit(proj_only), (blocks, state)),
            ("spectra+resp+newton", detect_j, (params, samples, state)),
            ("sample_space.update", update, (state.memory, new_xf)),
            ("train_filter", train, (state,))]
    if config.use_scale_filter:
        ssamp = jax.jit(lambda f, pos, st: mod.scale_samples(config, f, pos, st.base_size,
                                                             st.scale))
        xs = ssamp(frame, state.pos, state)
        sf = jax.jit(lambda st, xs: (
            mod.scale_filter.locate_scale(st.scale_filter, xs, config.scale),
            mod.scale_filter.update_scale_filter(st.scale_filter, xs, config.scale)))
        rows += [("scale_samples", ssamp, (frame, state.pos, state)),
                 ("scale locate+update", sf, (state, xs))]
    step = jax.jit(mod.make_tracker(config, features).step_fn)
    for what, since in (("no train", 0), ("train", config.train_gap)):
        st = state._replace(since_train=jnp.int32(since))
        rows.append((f"step, {what} (no donation)", step, (params, st, frame)))
    for _, fn, args in rows:
        jax.block_until_ready(fn(*args))  # compile
    return rows


def time_components(tables: dict, rounds: int = 5) -> None:
    """Times every variant's components, alternating, and prints CPU medians and wall minima."""
    times = {label: [[] for _ in rows] for label, rows in tables.items()}
    for _ in range(rounds):
        for label, rows in tables.items():
            for i, (_, fn, args) in enumerate(rows):
                times[label][i].append(time_fn(fn, args))
    labels = list(tables)
    print("  components, ms: " + " | ".join(f"{l} cpu med / wall min" for l in labels))
    for i, (name, _, _) in enumerate(tables[labels[0]]):
        cols = []
        for label in labels:
            t = np.concatenate(times[label][i])
            cols.append(f"{1e3 * np.median(t[:, 1]):7.2f} / {1e3 * t[:, 0].min():7.2f}")
        print(f"    {name:26s} " + " | ".join(cols), flush=True)


def _rel(a, b) -> tuple[float, str]:
    """Largest |a - b| over the leaves of two pytrees, relative to each leaf's largest |a|,
    and the path of that leaf."""
    out, where = 0.0, ""
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0],
                            jax.tree_util.tree_leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        if x.size and np.issubdtype(x.dtype, np.inexact):
            scale = np.max(np.abs(x[np.isfinite(x)]), initial=0.0) or 1.0
            same = (x == y) | (np.isnan(x) & np.isnan(y))  # inf == inf, nan == nan
            with np.errstate(invalid="ignore"):
                d = float(np.max(np.where(same, 0.0, np.abs(x - y)))) / scale
            if d > out:
                out, where = d, jax.tree_util.keystr(path)
    return out, where


def _as_layout_of(state, template):
    """`state`'s leaves in `template`'s pytree and layouts: blocks stored `(..., Ho, Wh, C)` by
    the reference and `(..., C, Ho, Wh)` by the current version are transposed."""
    leaves = []
    for x, t in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(template)):
        if x.shape != t.shape and x.ndim >= 3 and jnp.moveaxis(x, -1, -3).shape == t.shape:
            x = jnp.moveaxis(x, -1, -3)
        leaves.append(x)
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), leaves)


def one_step_check(ref, cur, params, frames, init_box, canvas) -> None:
    """Runs the reference trajectory and, from each of its states, one step of the current
    version: same box and state up to float rounding, frame by frame.

    Over a whole sequence the trackers drift apart from float rounding alone (see
    `rounding_control`), so this is the comparison that can show a real difference.
    """
    copy = lambda t: jax.tree_util.tree_map(jnp.copy, t)  # noqa: E731 (steps may donate)
    box0 = np.asarray(init_box, np.float32)
    s_ref = ref.init(params, to_canvas(frames[0], canvas), box0)
    s_cur = cur.init(params, to_canvas(frames[0], canvas), box0)
    worst_init = _rel(_as_layout_of(s_ref, s_cur), s_cur)
    worst_box = worst_score = 0.0
    worst_state = (0.0, "")
    for f in frames[1:]:
        f = to_canvas(f, canvas)
        n_cur, b_cur, c_cur = cur.step(params, _as_layout_of(copy(s_ref), s_cur), f)
        s_ref, b_ref, c_ref = ref.step(params, s_ref, f)
        worst_box = max(worst_box, float(np.abs(np.asarray(b_ref) - np.asarray(b_cur)).max()))
        worst_score = max(worst_score, abs(float(c_ref) - float(c_cur)) / abs(float(c_ref)))
        worst_state = max(worst_state, _rel(_as_layout_of(s_ref, n_cur), n_cur))
    print(f"  one step from the reference's states: init state rel {worst_init[0]:.1e} "
          f"{worst_init[1]}; over {len(frames) - 1} steps max |box diff| {worst_box:.1e} px, "
          f"score rel {worst_score:.1e}, state rel {worst_state[0]:.1e} {worst_state[1]}",
          flush=True)


def rounding_control(ref, params, frames, init_box, canvas, eps: float = 2e-7) -> np.ndarray:
    """How far the reference drifts from itself when its filter is perturbed at float32
    rounding level (`hf *= 1 + eps cos(k)`) after every update: the (max |box diff|) per frame
    that any change of summation order can cause."""
    box0 = np.asarray(init_box, np.float32)
    pert = jax.jit(lambda st: st._replace(hf=tuple(
        h * (1 + eps * jnp.cos(jnp.arange(h.size).reshape(h.shape))) for h in st.hf)))
    a = ref.init(params, to_canvas(frames[0], canvas), box0)
    b = jax.tree_util.tree_map(jnp.copy, a)
    out = [0.0]
    for f in frames[1:]:
        f = to_canvas(f, canvas)
        a, box_a, _ = ref.step(params, a, f)
        b, box_b, _ = ref.step(params, b, f)
        if int(b.since_train) == 0:
            b = pert(b)
        out.append(float(np.abs(np.asarray(box_a) - np.asarray(box_b)).max()))
    return np.asarray(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--presets", default="feco,eco-hc")
    ap.add_argument("--components", action="store_true")
    ap.add_argument("--ref", default=None, help="directory holding the `ecoref` package")
    ap.add_argument("--donate", action="store_true", help="donate the state to the step")
    ap.add_argument("--save-boxes", default=None)
    ap.add_argument("--check-only", action="store_true",
                    help="with --ref: one tracking run each and the comparisons, no timing")
    args = ap.parse_args(argv)
    print(runtime.probe(REPORT).summary(), flush=True)

    seq = load_sequence(paths.sequence_dir("Woman"))
    frames = [seq.frame(i) for i in range(min(args.frames, len(seq)))]
    init_box = seq.init_box
    variants = [("current", eco)]
    if args.ref:
        sys.path.insert(0, args.ref)
        variants.insert(0, ("ref", importlib.import_module("ecoref.eco")))
    saved = {}
    for name in args.presets.split(","):
        colour = Path(eco.__file__).parents[1] / "features" / "colornames.py"
        if name == "eco-hc" and not colour.exists():
            print(f"{name}: skipped (ctjax/features/colornames.py missing)")
            continue
        try:
            built = presets.build(name, weights="released" if name == "feco" else None)
        except (ImportError, AttributeError, FileNotFoundError) as e:  # eco-hc's colour tables
            built = _eco_hc_fallback() if name == "eco-hc" else None
            if built is None:
                print(f"{name}: skipped ({type(e).__name__}: {e})")
                continue
            print(f"{name}: preset failed ({type(e).__name__}: {e}); built from its parts")
        config = built.config
        train = training_steps(config, len(frames) - 1)
        print(f"{name}: {len(frames)} frames of Woman, {train.sum()} training steps", flush=True)
        compiled, trackers = {}, {}
        for label, mod in variants:
            trackers[label] = mod.make_tracker(config, built.extractor)
            compile_fn = compile_donating if args.donate else run.compile_tracker
            compiled[label] = compile_fn(trackers[label], config, built.params)
            print(f"  {label}: compiled in {compiled[label].compile_seconds:.1f} s", flush=True)
        results = {label: [] for label, _ in variants}
        for rep in range(1 if args.check_only else args.repeats):
            for label, _ in variants:
                clock = CpuClock(frames)
                res = run.track_frames(compiled[label], built.params, clock, init_box)
                results[label].append((res, clock.seconds()))
                summarize(f"{label}#{rep}", res.frame_seconds, train, "wall")
                summarize(f"{label}#{rep}", clock.seconds(), train, "cpu ")
        for label, _ in variants:
            # Per frame, the fastest of the repeats: the least disturbed by other processes.
            best_wall = np.min([r.frame_seconds for r, _ in results[label]], axis=0)
            best_cpu = np.min([c for _, c in results[label]], axis=0)
            summarize(f"{label}:min", best_wall, train, "wall")
            summarize(f"{label}:min", best_cpu, train, "cpu ")
            saved[f"{name}/{label}"] = results[label][-1][0].boxes
            saved[f"{name}/{label}/scores"] = results[label][-1][0].scores
        if args.ref:
            canvas = config.canvas_hw

            def report(what, per_frame):
                above = np.flatnonzero(per_frame > 1e-3)
                print(f"  {what}: max {per_frame.max():.1e} px (frame {int(per_frame.argmax())}),"
                      f" first above 1e-3 px: {int(above[0]) if above.size else None}; every 10th"
                      " frame: " + " ".join(f"{v:.0e}" for v in per_frame[::10]), flush=True)

            report("|box(ref) - box(current)| over the sequence",
                   np.abs(saved[f"{name}/ref"] - saved[f"{name}/current"]).max(axis=1))
            report("control, |box(ref) - box(ref, hf rounding-perturbed)|",
                   rounding_control(compiled["ref"], built.params, frames, init_box, canvas))
            one_step_check(compiled["ref"], compiled["current"], built.params, frames, init_box,
                           canvas)
        if args.check_only:
            continue
        if args.components:
            tables = {}
            for label, mod in variants:
                c = compiled[label]
                canvas = config.canvas_hw
                state = c.init(built.params, to_canvas(frames[0], canvas),
                               np.asarray(init_box, np.float32))
                last = min(60, len(frames) - 1)  # a full memory from frame 51 (feco)
                for f in frames[1:last]:
                    state, _, _ = c.step(built.params, state, to_canvas(f, canvas))
                tables[label] = components(mod, built, state, to_canvas(frames[last], canvas))
            time_components(tables)
    if args.save_boxes:
        np.savez(args.save_boxes, **{k.replace("/", "__"): v for k, v in saved.items()})


if __name__ == "__main__":
    main()

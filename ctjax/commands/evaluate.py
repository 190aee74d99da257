"""`ctjax eval`: run trackers over sequences (OTB one-pass protocol) and report.

Layout of `--output DIR`:
    DIR/<label>/<sequence>.txt    raw boxes, one x,y,w,h line per frame (OTB format)
    DIR/<label>/<sequence>.json   frames, FPS (compile and decoding excluded), compile time,
                                  median frame time, weights, runtime report
    DIR/summary.md, summary.json  per-sequence tables and the comparison table
    DIR/success.png, precision.png

Work is split over one worker process per core, each pinned to its own core and
single-threaded (`ctjax.runtime.configure(core=k)`), so FPS is single-core FPS. A task whose
result and metadata files exist (with the expected frame count) is skipped: an interrupted
evaluation resumes where it stopped. Results are written atomically.

Trackers are given as `LABEL=PRESET[:WEIGHTS]` (or just `PRESET`), e.g.
`ours=cfvggm released=cfvggm:released effnet csrt`.
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np

HELP = "evaluate trackers on a list of sequences (OTB protocol)"


@dataclasses.dataclass(frozen=True)
class TrackerSpec:
    label: str
    preset: str
    weights: str | None = None

    @classmethod
    def parse(cls, text: str) -> "TrackerSpec":
        label, _, rest = text.rpartition("=")
        preset, _, weights = (rest or text).partition(":")
        return cls(label or preset, preset, weights or None)


def add_arguments(p) -> None:
    """Arguments of `ctjax eval`."""
    p.add_argument("--trackers", nargs="+", default=["cfvggm"],
                   help="LABEL=PRESET[:WEIGHTS] ...; presets: see `ctjax track --list`, "
                        "plus csrt (OpenCV)")
    p.add_argument("--split", default="eval", help="split of splits.json (default: eval)")
    p.add_argument("--sequences", nargs="+", help="sequence names or folders instead of --split")
    p.add_argument("--output", required=True, help="results folder (resumable)")
    p.add_argument("--workers", type=int, default=None, help="default: one per available core")
    p.add_argument("--max-frames", type=int, default=None,
                   help="track only the first N frames of each sequence (smoke runs)")


def _sequence_paths(args) -> list[Path]:
    from ctjax import paths
    from ctjax.data import sequences

    if args.sequences:
        return [Path(s) if Path(s).is_dir() else paths.sequence_dir(s) for s in args.sequences]
    root = paths.sequences_dir()
    return [Path(s.frame_paths[0]).parents[1] for s in sequences.load_split(args.split, root=root)]


def _load(path: Path, max_frames: int | None):
    from ctjax.data import sequences

    seq = sequences.load_sequence(path)
    if max_frames:
        seq = dataclasses.replace(seq, frame_paths=seq.frame_paths[:max_frames],
                                  boxes=seq.boxes[:max_frames])
    return seq


_WORKER: dict = {}


def _init_worker(cores) -> None:
    from ctjax import runtime

    _WORKER["report"] = runtime.configure(core=cores.get())


def _run_task(spec: TrackerSpec, seq_path: Path, out_dir: Path, max_frames: int | None) -> dict:
    from ctjax import evaluation, runtime
    from ctjax.trackers import presets
    from ctjax.trackers.run import compile_tracker, track_frames

    seq = _load(seq_path, max_frames)
    if spec.preset == "csrt":
        from ctjax.trackers.csrt import track_frames_csrt
        result, weights = track_frames_csrt(seq.frames(), seq.init_box), "none"
    else:
        if spec not in _WORKER:  # compile once per tracker per worker
            built = presets.build(spec.preset, weights=spec.weights)
            _WORKER[spec] = (built, compile_tracker(built.tracker, built.config, built.params))
        built, compiled = _WORKER[spec]
        result, weights = track_frames(compiled, built.params, seq.frames(), seq.init_box), built.weights
    evaluation.write_boxes(out_dir / f"{seq.name}.txt", result.boxes)
    if "probe" not in _WORKER:
        _WORKER["probe"] = runtime.probe(_WORKER["report"], seconds=0.3).summary()
    meta = {"sequence": seq.name, "tracker": spec.label, "preset": spec.preset,
            "weights": str(weights), "frames": len(result.boxes), "fps": result.fps,
            "median_frame_ms": 1e3 * float(np.median(result.frame_seconds[1:])),
            "compile_seconds": result.compile_seconds, "runtime": _WORKER["probe"]}
    tmp = out_dir / f".{seq.name}.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, out_dir / f"{seq.name}.json")
    return meta


def _done(out_dir: Path, name: str, frames: int) -> bool:
    meta = out_dir / f"{name}.json"
    return (out_dir / f"{name}.txt").exists() and meta.exists() and \
        json.loads(meta.read_text()).get("frames") == frames


def _report(specs, seqs, root: Path) -> str:
    from ctjax import evaluation

    overall, lines = {}, []
    for spec in specs:
        d = root / spec.label
        results = []
        for s in seqs:
            meta = json.loads((d / f"{s.name}.json").read_text())
            boxes = evaluation.read_boxes(d / f"{s.name}.txt", num_frames=len(s))
            results.append(evaluation.evaluate_sequence(boxes, s.boxes, name=s.name, fps=meta["fps"]))
        overall[spec.label] = evaluation.aggregate(results, name=spec.label)
        lines += [f"## {spec.label} ({spec.preset}{':' + spec.weights if spec.weights else ''})", "",
                  evaluation.summary_table(overall[spec.label]), ""]
    head = ["| tracker | AUC | P@20 | NormP@0.2 | median FPS per sequence |", "|---|---:|---:|---:|---:|"]
    rows = [f"| {k} | {v.auc:.3f} | {v.precision20:.3f} | {v.norm_precision:.3f} | "
            f"{np.median([r.fps for r in v.sequences]):.1f} |" for k, v in overall.items()]
    evaluation.plot_success(overall, root / "success.png")
    evaluation.plot_precision(overall, root / "precision.png")
    summary = {k: {"auc": v.auc, "precision20": v.precision20, "norm_precision": v.norm_precision,
                   "median_fps": float(np.median([r.fps for r in v.sequences])),
                   "sequences": {r.name: {"auc": r.auc, "precision20": r.precision20, "fps": r.fps}
                                 for r in v.sequences}} for k, v in overall.items()}
    (root / "summary.json").write_text(json.dumps(summary, indent=1))
    text = "\n".join(["# Evaluation summary", "", *head, *rows, "", *lines])
    (root / "summary.md").write_text(text)
    return "\n".join(head + rows)


def run(args) -> int:
    """Runs `ctjax eval` (the workers pin themselves, one core each); returns the exit
    status."""
    specs = [TrackerSpec.parse(t) for t in args.trackers]
    paths = _sequence_paths(args)
    seqs = [_load(p, args.max_frames) for p in paths]
    seq_paths = {s.name: p for s, p in zip(seqs, paths)}
    root = Path(args.output)
    tasks = []
    for spec in specs:
        (root / spec.label).mkdir(parents=True, exist_ok=True)
        tasks += [(spec, s) for s in seqs if not _done(root / spec.label, s.name, len(s))]
    print(f"{len(specs)} trackers x {len(seqs)} sequences: {len(tasks)} to run, "
          f"{len(specs) * len(seqs) - len(tasks)} already done (in {root})", flush=True)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    workers = max(1, min(args.workers or len(cores), len(cores), len(tasks) or 1))
    ctx = multiprocessing.get_context("spawn")
    core_queue = ctx.Manager().Queue()
    for c in cores[:workers]:
        core_queue.put(c)
    t0 = time.perf_counter()
    # Longest sequences first keeps the workers busy until the end.
    tasks.sort(key=lambda t: -len(t[1]))
    with futures.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=(core_queue,)) as pool:
        jobs = {pool.submit(_run_task, spec, seq_paths[s.name], root / spec.label, args.max_frames):
                (spec, s) for spec, s in tasks}
        for k, job in enumerate(futures.as_completed(jobs), 1):
            meta = job.result()
            print(f"[{k}/{len(tasks)}] {meta['tracker']:>12s} {meta['sequence']:<14s} "
                  f"{meta['frames']:5d} frames {meta['fps']:7.1f} FPS "
                  f"(elapsed {time.perf_counter() - t0:.0f} s)", flush=True)
    print(_report(specs, seqs, root))
    print(f"wrote {root / 'summary.md'}, success.png, precision.png")
    return 0

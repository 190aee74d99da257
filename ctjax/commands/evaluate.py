"""`ctjax eval`: run trackers over sequences (OTB one-pass protocol) and report.

Layout of `--output DIR` (result files, key and summary: `ctjax.results`):
    DIR/<label>/<sequence>.txt    raw boxes, one x,y,w,h line per frame (OTB format)
    DIR/<label>/<sequence>.scores.csv  per frame: the relative score and ok/lost flag of
                                  `ctjax.Tracker` (`ctjax.api.score_flags`), the raw peak,
                                  the tracking seconds (`ctjax.evaluation.write_frame_scores`)
    DIR/<label>/<sequence>.json   the result's key (below), frames, FPS (compile and decoding
                                  excluded), compile time, median frame time, weights,
                                  runtime report, the box and score files' checksums
    DIR/summary.md, summary.json  per-sequence tables and the comparison table (AUC, OP50,
                                  OP75, P@20, NormP@0.2, FPS), with the ground-truth rule
    DIR/success.png, precision.png
    DIR/got10k/<label>/<seq>/<seq>_001.txt, <seq>_time.txt   with --result-layout got10k
    DIR/pysot/<label>/<seq>.txt                               with --result-layout pysot

Sequences: `--split` (ctjax's data folder), or `--sequences` naming sequence folders,
benchmark folders or sequence names of the data folder; `--layout` says how folders are
read (detected by default; `ctjax.data.sources.resolve_sources`), frames aligned with
boxes by `ctjax.data.layouts`. Tracker settings: `--set [LABEL:]KEY=VALUE` (fields of the
presets' config dataclasses; part of the result key). Frames larger than a preset's canvas
get a larger canvas (part of the key, through the config). Scoring: `--gt-rule ctjax|otb`
(`ctjax.evaluation`; not part of the key: results are rescored, not rerun). Exported boxes are
in the benchmark's own coordinates (the inverse of the layout's reader: 0-based for VOT).

Work is split over one worker process per core, each pinned to its own core and
single-threaded (`ctjax.runtime.configure(core=k)`), so FPS is single-core FPS; Ctrl-C or
the death of this process ends the workers at once (`ctjax.commands.workers`). Progress:
a bar with the ETA over all frames on stderr when it is a terminal (`--no-progress` turns it
off), else a status line every `STATUS_SECONDS`; a line per finished task on stdout always.

Resuming (`ctjax.results.result_status`): a result is reused only if its `.json` holds the
same **key**, i.e. it was made by the same preset, weights (SHA-256 of the file or folder),
tracker config and `--set` settings, sequence (full path, layout, frame count, initial box,
frame file names and sizes) and code (ctjax version, jax and jaxlib versions, a SHA-256 of
ctjax's Python sources), and its box and score files are intact (right length, same
checksum). Anything else is rerun, with a line saying why. Every file is written
atomically (unique temporary name, then rename; normal permissions), so an interrupted or
concurrent evaluation never leaves a partial result.

Trackers are given as `LABEL=PRESET[:WEIGHTS]` (or just `PRESET`), e.g.
`ours=cfvggm released=cfvggm:released effnet csrt`.

Sharding (several machines): `--shard K/N` runs only shard K's share of the (tracker,
sequence) tasks (`ctjax.evaluation.assign_shards`: longest first to the least-loaded shard, a
function of the arguments only), then writes `DIR/shard-K-of-N.json` (the run's arguments and
code, the whole task plan, its results' keys) instead of the summary. `--merge DIR... --output
OUT` checks that the manifests make up one run with every shard once (`merge_shards`), that
every result is intact and matches its key, copies the results into OUT byte for byte and
writes the usual summary and plots; OUT is then an ordinary, resumable output folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ctjax import results
from ctjax.commands.track import add_setting_arguments
from ctjax.data.sources import SequenceSource, as_source, resolve_sources
from ctjax.results import TrackerSpec
from ctjax.trackers.settings import build_tracker, parse_setting, tracker_config

HELP = "evaluate trackers on a list of sequences (OTB protocol)"
STATUS_SECONDS = 30.0  # a progress line this often when stderr is not a terminal


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def add_arguments(p) -> None:
    """Arguments of `ctjax eval`."""
    p.add_argument("--trackers", nargs="+", default=None,
                   help="LABEL=PRESET[:WEIGHTS] ...; presets: see `ctjax track --list`, "
                        "plus csrt (OpenCV) (default: cfvggm)")
    p.add_argument("--split", default=None, help="split of splits.json (default: eval)")
    p.add_argument("--sequences", nargs="+", help="sequence names, sequence folders or "
                                                  "benchmark folders instead of --split")
    add_setting_arguments(p, labels=True)
    p.add_argument("--output", required=True, help="results folder (resumable)")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="default: one per available core")
    p.add_argument("--max-frames", type=_positive_int, default=None,
                   help="track only the first N frames of each sequence (smoke runs)")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="run only shard K of N of the (tracker, sequence) tasks, e.g. one job "
                        "of a SLURM array; combine the N outputs with --merge")
    p.add_argument("--merge", nargs="+", default=None, metavar="DIR",
                   help="merge the --output folders of `--shard K/N` runs into --output "
                        "(checks that every shard is there once) and write the summary")
    p.add_argument("--gt-rule", choices=("ctjax", "otb"), default="ctjax",
                   help="invalid ground truth: ctjax = frames without a usable box are left "
                        "out; otb = the OTB toolkit's calcSeqErrRobust (boxes not all > 0 "
                        "count with overlap -1, centre error -1)")
    p.add_argument("--result-layout", nargs="+", choices=("ctjax", "got10k", "pysot"),
                   default=["ctjax"], metavar="{ctjax,got10k,pysot}",
                   help="also write the results in these toolkits' layouts under "
                        "OUTPUT/got10k/ and OUTPUT/pysot/ (ctjax's own is always written)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (the per-task lines remain)")


# ---------------------------------------------------------------------------------------------
# Sequences and tasks


def _sequence_sources(args) -> list[SequenceSource]:
    """The sequences of `--sequences` (folders read by `--layout`, or names in the data
    folder) or of `--split`."""
    from ctjax import paths
    from ctjax.data import sequences

    layout = getattr(args, "layout", "auto")
    if args.sequences:
        return [src for s in args.sequences
                for src in resolve_sources(s if Path(s).is_dir() else paths.sequence_dir(s),
                                           layout)]
    if layout not in ("auto", "otb"):
        raise ValueError(f"--layout {layout} applies to --sequences folders; the --split "
                         "sequences are ctjax's OTB-format folders")
    root = paths.sequences_dir()
    return [SequenceSource("otb", Path(s.frame_paths[0]).parents[1])
            for s in sequences.load_split(args.split or "eval", root=root)]


def _load(source, max_frames: int | None):
    """The sequence of a `SequenceSource` (or an OTB-format folder), cut to `max_frames`."""
    return as_source(source).load(max_frames)


def _with_settings(specs: list[TrackerSpec], texts) -> list[TrackerSpec]:
    """Gives each tracker its `--set` settings: unlabelled ones apply to all, `LABEL:` ones
    to that tracker (after the unlabelled ones, so they win)."""
    parsed = [parse_setting(t, labels=True) for t in texts]
    labels = [s.label for s in specs]
    for label, key, value in parsed:
        if label is not None and label not in labels:
            raise ValueError(f"--set {label}:{key}={value}: no tracker is labelled {label!r} "
                             f"(labels: {', '.join(labels)})")
    out = []
    for spec in specs:
        general = [(k, v) for l, k, v in parsed if l is None]
        own = [(k, v) for l, k, v in parsed if l == spec.label]
        merged = dict(general)
        if len(merged) < len(general):
            keys = [k for k, _ in general]
            raise ValueError(f"--set {next(k for k in keys if keys.count(k) > 1)} is given "
                             "more than once")
        mine = dict(own)
        if len(mine) < len(own):
            keys = [k for k, _ in own]
            raise ValueError(f"--set {spec.label}:{next(k for k in keys if keys.count(k) > 1)} "
                             "is given more than once")
        merged.update(mine)
        out.append(dataclasses.replace(spec, settings=tuple(merged.items())))
    return out


def _check_names(seqs, seq_paths) -> None:
    """Results are stored by sequence name: two folders with one name would overwrite."""
    seen: dict[str, Path] = {}
    for s, p in zip(seqs, seq_paths):
        p = as_source(p).path
        if s.name in seen:
            raise ValueError(f"two sequences are named {s.name!r} ({seen[s.name]} and {p}); "
                             "results are stored by name, so one would overwrite the other: "
                             "rename one folder or evaluate them into separate --output folders")
        seen[s.name] = p


_WORKER: dict = {}


def _init_worker(core: int) -> None:
    from ctjax import runtime

    _WORKER["report"] = runtime.configure(core=core)


def _compiled(spec: TrackerSpec, image_hw):
    """(built, compiled tracker, default build) for `spec` on frames of `image_hw`, cached
    per worker: one compilation per tracker and canvas."""
    from ctjax.trackers import presets
    from ctjax.trackers.run import compile_tracker

    if ("default", spec) not in _WORKER:
        _WORKER["default", spec] = presets.build(spec.preset, weights=spec.weights)
    default = _WORKER["default", spec]
    config = tracker_config(default.config, spec.settings, image_hw)
    if (spec, repr(config)) not in _WORKER:
        built = build_tracker(spec.preset, weights=spec.weights, settings=spec.settings,
                              image_hw=image_hw, default=default)
        _WORKER[spec, repr(config)] = (built, compile_tracker(built.tracker, built.config,
                                                              built.params))
    return (*_WORKER[spec, repr(config)], default)


def _progress(n: int) -> None:
    from ctjax.commands import workers
    workers.report_progress(n)


def _run_task(spec: TrackerSpec, key: dict, source, out_dir: Path,
              max_frames: int | None, commit: str | None) -> dict:
    """Tracks one sequence with one tracker in a worker; writes its box file, score file
    and metadata."""
    from ctjax import evaluation, runtime
    from ctjax.api import score_flags
    from ctjax.trackers.run import track_frames

    source = as_source(source)
    seq = _load(source, max_frames)
    if spec.preset == "csrt":
        from ctjax.trackers.csrt import track_frames_csrt
        result = track_frames_csrt(seq.frames(), seq.init_box, progress=_progress)
        weights = "none"
    else:
        built, compiled, default = _compiled(spec, seq.image_hw)
        mine = results.result_key(results.tracker_fingerprint(spec, default, seq.image_hw),
                                  results.sequence_fingerprint(seq, source),
                                  {k: key[k] for k in ("ctjax_version", "source_sha256")})
        if results.canonical(mine) != results.canonical(key):
            raise RuntimeError(f"{spec.label}: the tracker or sequence changed on disk while "
                               "the evaluation ran (its key differs from the planned one)")
        result = track_frames(compiled, built.params, seq.frames(), seq.init_box,
                              progress=_progress)
        weights = built.weights
    relative, ok = score_flags(result.scores, spec.preset)
    if "probe" not in _WORKER:
        _WORKER["probe"] = runtime.probe(_WORKER["report"], seconds=0.3).summary()
    meta = {"sequence": seq.name, "tracker": spec.label, "preset": spec.preset,
            "weights": str(weights), "frames": len(result.boxes), "fps": result.fps,
            "median_frame_ms": 1e3 * float(np.median(result.frame_seconds[1:])),
            "compile_seconds": result.compile_seconds, "runtime": _WORKER["probe"],
            "lost_frames": int((~ok).sum()), "git_commit": commit, "key": key}
    return results.write_result(out_dir, seq.name, result.boxes, evaluation.FrameScores(
        score=relative, ok=ok, peak=result.scores, seconds=result.frame_seconds), meta)


# ---------------------------------------------------------------------------------------------
# Progress


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class FrameProgress:
    """Frames done over all of an evaluation's tasks, the time left, and how to show them.

    Args:
      totals: the frames of each task.
      bar: draw a tqdm bar (total: all frames; rate and ETA) on stderr, for a terminal.
      clock: a seconds clock (tests give their own).
      status_seconds: without a bar, `status_due` is True at most this often.
    """

    def __init__(self, totals, *, bar: bool = False, clock=time.perf_counter,
                 status_seconds: float = STATUS_SECONDS):
        self.totals = [int(t) for t in totals]
        self.done = [0] * len(self.totals)
        self.clock, self.status_seconds = clock, status_seconds
        self.t0 = self.last_status = clock()
        self.bar = None
        if bar:
            from tqdm import tqdm
            self.bar = tqdm(total=sum(self.totals), unit="frame", desc="eval", file=sys.stderr,
                            dynamic_ncols=True, smoothing=0.05)

    def update(self, i: int, frames: int) -> None:
        """Task `i` has `frames` frames done (never goes back, never past its total)."""
        frames = min(max(int(frames), self.done[i]), self.totals[i])
        delta, self.done[i] = frames - self.done[i], frames
        if self.bar is not None and delta:
            self.bar.update(delta)

    def finish(self, i: int) -> None:
        self.update(i, self.totals[i])

    def eta(self) -> float | None:
        """Seconds left at the mean rate so far (None before the first frame)."""
        done, total = sum(self.done), sum(self.totals)
        if done == 0:
            return None if total else 0.0
        return (self.clock() - self.t0) * (total - done) / done

    def status(self) -> str:
        eta = self.eta()
        return (f"{sum(self.done)}/{sum(self.totals)} frames, elapsed "
                f"{_duration(self.clock() - self.t0)}, ETA "
                f"{'?' if eta is None else _duration(eta)}")

    def status_due(self) -> bool:
        """True when a status line should be printed (no bar, and `status_seconds` passed)."""
        now = self.clock()
        if self.bar is not None or now - self.last_status < self.status_seconds:
            return False
        self.last_status = now
        return True

    def write(self, line: str) -> None:
        """Prints a line on stdout (above the bar, if any)."""
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line)
        sys.stdout.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------------------
# Planning and the command


def _default_builds(specs) -> dict:
    """Each tracker's default build (None for csrt); checks `--set` settings with a real
    build now, so a bad setting fails before any work."""
    from ctjax.trackers import presets

    out = {}
    for spec in specs:
        out[spec.label] = None if spec.preset == "csrt" else \
            presets.build(spec.preset, weights=spec.weights)
        if spec.settings and spec.preset != "csrt":
            try:
                build_tracker(spec.preset, weights=spec.weights, settings=spec.settings,
                              default=out[spec.label])
            except ValueError as e:
                raise ValueError(f"tracker {spec.label}: {e}") from None
    return out


def _plan(specs, seqs, sources, root: Path, code: dict, wanted=None):
    """Keys of every (tracker, sequence) (of those in `wanted`, default all) and the tasks to
    run, saying why each is rerun."""
    defaults = _default_builds(specs)
    base = {spec.label: results.tracker_fingerprint(spec, defaults[spec.label])
            for spec in specs}
    keys, tasks = {}, []
    for spec in specs:
        for s, p in zip(seqs, sources):
            if wanted is not None and (spec.label, s.name) not in wanted:
                continue
            fingerprint = dict(base[spec.label])
            if defaults[spec.label] is not None:  # the canvas is fitted to the frames
                fingerprint["config"] = repr(tracker_config(defaults[spec.label].config,
                                                            spec.settings, s.image_hw))
            keys[spec.label, s.name] = results.result_key(
                fingerprint, results.sequence_fingerprint(s, p), code)
            why = results.result_status(root / spec.label, s.name, keys[spec.label, s.name])
            if why is not None:
                if why != "no result yet":
                    print(f"rerunning {spec.label}/{s.name}: {why}", flush=True)
                tasks.append((spec, s, p))
    return keys, tasks, code["git_commit"]


def _shard_plan(specs, seqs, shards: int) -> list[tuple[str, str, int]]:
    """Every task as (label, sequence name, shard), in run order; cost = frames."""
    from ctjax import evaluation

    order = [(spec.label, s) for spec in specs for s in seqs]
    assigned = evaluation.assign_shards([len(s) for _, s in order], shards)
    return [(label, s.name, k) for (label, s), k in zip(order, assigned)]


def _run_description(args, specs, seqs, sources, code: dict) -> dict:
    """What every shard of one run must share (compared by `--merge`)."""
    sources = [as_source(p) for p in sources]
    out = {"trackers": [f"{s.label}={s.preset}" + (f":{s.weights}" if s.weights else "")
                        for s in specs],
           "sequences": [[s.name, str(p.path.resolve())] +
                         (p.describe() if p.layout != "otb" else [])
                         for s, p in zip(seqs, sources)],
           "max_frames": args.max_frames,
           "code": {k: code[k] for k in ("ctjax_version", "source_sha256")}}
    if any(spec.settings for spec in specs):
        out["settings"] = {spec.label: [list(kv) for kv in spec.settings] for spec in specs}
    return out


def _specs(args) -> list[TrackerSpec]:
    specs = [TrackerSpec.parse(t) for t in args.trackers or ["cfvggm"]]
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"--trackers: labels must be distinct, got {labels}")
    clash = sorted(set(labels) & (set(args.result_layout) - {"ctjax"}))
    if clash:
        raise ValueError(f"--trackers: label {clash[0]!r} would share its folder with "
                         f"--result-layout {clash[0]}; choose another label")
    return _with_settings(specs, args.settings)


def run(args) -> int:
    """Runs `ctjax eval` (the workers pin themselves, one core each); returns the exit
    status: 0, or 1 when a task failed (the other results are kept)."""
    from ctjax import evaluation, paths
    from ctjax.commands import workers

    if args.merge:
        return merge(args)
    shard = evaluation.parse_shard(args.shard) if args.shard else None
    specs = _specs(args)
    root = paths.check_writable_dir(args.output, "--output folder")
    sources = _sequence_sources(args)
    seqs = [_load(p, args.max_frames) for p in sources]
    _check_names(seqs, sources)
    code = results.code_version()
    plan = _shard_plan(specs, seqs, shard[1]) if shard else None
    wanted = {(l, n) for l, n, k in plan if k == shard[0]} if shard else None
    if shard:  # only a finished shard may vouch for its results
        (root / evaluation.shard_file_name(*shard)).unlink(missing_ok=True)
    keys, tasks, commit = _plan(specs, seqs, sources, root, code, wanted)
    for spec in specs:
        (root / spec.label).mkdir(parents=True, exist_ok=True)
    total = len(specs) * len(seqs) if wanted is None else len(wanted)
    print((f"shard {shard[0]}/{shard[1]}: {total} of {len(specs) * len(seqs)} tasks; " if shard
           else "") + f"{len(specs)} trackers x {len(seqs)} sequences: {len(tasks)} to run, "
          f"{total - len(tasks)} already done (in {root})", flush=True)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    n_workers = max(1, min(args.workers or len(cores), len(cores), len(tasks) or 1))
    tasks.sort(key=lambda t: -len(t[1]))  # longest first keeps the workers busy to the end
    failed, finished = [], []
    progress = FrameProgress([len(s) for _, s, _ in tasks],
                             bar=bool(tasks) and not args.no_progress and sys.stderr.isatty())

    def on_event(i, kind, payload):
        if kind == "progress":
            progress.update(i, payload)
            if not args.no_progress and progress.status_due():
                progress.write(f"progress: {progress.status()}")
            return
        spec, s, _ = tasks[i]
        finished.append(i)
        progress.finish(i)
        if kind == "failed":
            failed.append(f"{spec.label}/{s.name}: {payload}")
            progress.write(f"[{len(finished)}/{len(tasks)}] FAILED {spec.label} {s.name}: "
                           f"{payload}")
            return
        progress.write(f"[{len(finished)}/{len(tasks)}] {payload['tracker']:>12s} "
                       f"{payload['sequence']:<14s} {payload['frames']:5d} frames "
                       f"{payload['fps']:7.1f} FPS ({progress.status()})")

    work = [(spec, keys[spec.label, s.name], p, root / spec.label, args.max_frames, commit)
            for spec, s, p in tasks]
    try:
        if work:
            workers.run_pool(work, cores[:n_workers], _run_task, on_event, initializer=_init_worker)
    except KeyboardInterrupt:
        progress.close()
        print(f"interrupted: {len(finished) - len(failed)} of {len(tasks)} results written; "
              "run the same command again to resume", flush=True)
        raise
    finally:
        progress.close()
    if failed:
        print(f"{len(failed)} of {len(tasks)} tasks failed (the other results are kept; fix the "
              "cause and run the same command again to resume):\n  " + "\n  ".join(failed))
        return 1
    if shard:
        manifest = evaluation.shard_manifest(
            shard=shard[0], shards=shard[1],
            run=_run_description(args, specs, seqs, sources, code), plan=plan,
            results=[[l, n, keys[l, n]] for l, n, k in plan if k == shard[0]])
        out = paths.atomic_write(root / evaluation.shard_file_name(*shard),
                                 json.dumps(manifest, indent=1))
        print(f"wrote {out}; when all {shard[1]} shards are done: ctjax eval --merge "
              "FOLDER... --output OUT")
        return 0
    print(results.write_summary(specs, seqs, keys, root, gt_rule=args.gt_rule))
    exported = results.export_results(specs, seqs, sources, root, args.result_layout)
    print(f"wrote {root / 'summary.md'}, success.png, precision.png" +
          "".join(f"; {layout} results in {d}" for layout, d in
                  zip((x for x in dict.fromkeys(args.result_layout) if x != "ctjax"), exported)))
    return 0


# ---------------------------------------------------------------------------------------------
# Merging shards


def _read_manifests(folders: list[Path]) -> list[tuple[str, dict]]:
    from ctjax import evaluation

    seen: dict[Path, Path] = {}
    manifests = []
    for folder in folders:
        if folder.resolve() in seen:
            raise ValueError(f"--merge: {folder} is given twice")
        seen[folder.resolve()] = folder
        if not folder.is_dir():
            raise FileNotFoundError(f"--merge: {folder} is not a folder")
        found = sorted(folder.glob("shard-*-of-*.json"))
        if not found:
            raise evaluation.ShardError(
                f"--merge: {folder} holds no shard manifest (shard-K-of-N.json): it is not the "
                "--output of `ctjax eval --shard K/N`, or that shard has not finished (its "
                "manifest is written when all its tasks succeeded)")
        for f in found:
            try:
                manifests.append((str(f), json.loads(f.read_text())))
            except (OSError, ValueError) as e:
                raise evaluation.ShardError(f"shard manifest {f} is unreadable: "
                                            f"{' '.join(str(e).split())}") from None
    return manifests


def merge(args) -> int:
    """`ctjax eval --merge DIR... --output OUT`: checks the shards, copies their results into
    OUT (byte for byte) and writes the summary and plots (and `--result-layout` exports);
    returns 0.

    Raises:
      ShardError: a shard missing or given twice, shards of different runs.
      ResultFileError: a result missing, damaged, or not matching its shard's key.
      ValueError: options that belong to shard runs; a sequence changed since it was tracked.
    """
    from ctjax import evaluation, paths

    extra = [flag for flag, value in (("--trackers", args.trackers), ("--split", args.split),
                                      ("--sequences", args.sequences), ("--shard", args.shard),
                                      ("--max-frames", args.max_frames),
                                      ("--set", args.settings),
                                      ("--layout", args.layout != "auto")) if value]
    if extra:
        raise ValueError(f"--merge takes the trackers, sequences, settings and frame limit "
                         f"from the shards' manifests; drop {', '.join(extra)}")
    run_info, tasks = evaluation.merge_shards(_read_manifests([Path(d) for d in args.merge]))
    root = paths.check_writable_dir(args.output, "--output folder")
    settings = run_info.get("settings", {})
    specs = [TrackerSpec.parse(t) for t in run_info["trackers"]]
    specs = [dataclasses.replace(s, settings=tuple(tuple(kv) for kv in settings.get(s.label, [])))
             for s in specs]
    sources = [SequenceSource.from_description(e[2:]) if len(e) > 2 else
               SequenceSource("otb", Path(e[1])) for e in run_info["sequences"]]
    seqs = [_load(p, run_info["max_frames"]) for p in sources]
    keys = {}
    for (label, name), (where, key) in tasks.items():
        source = Path(where).parent / label
        problem = results.result_status(source, name, key)
        if problem is not None:
            raise evaluation.ResultFileError(f"result {source / name} ({where}): {problem}")
        keys[label, name] = key
    for s, p in zip(seqs, sources):  # the ground truth scored is that of the frames tracked
        fingerprint = results.sequence_fingerprint(s, p)
        for spec in specs:
            old = keys[spec.label, s.name]
            changed = [k for k in fingerprint
                       if results.canonical(old.get(k)) != results.canonical(fingerprint[k])]
            if changed:
                raise ValueError(f"sequence {p.path} changed since shard results were made "
                                 f"(its {', '.join(changed)} differ); rerun those shards")
    for (label, name), (where, _) in tasks.items():
        results.copy_result(Path(where).parent / label, root / label, name)
    print(results.write_summary(specs, seqs, keys, root, gt_rule=args.gt_rule))
    results.export_results(specs, seqs, sources, root, args.result_layout)
    print(f"merged {len({w for w, _ in tasks.values()})} shard(s), {len(tasks)} results, into "
          f"{root}; wrote summary.md, success.png, precision.png")
    return 0

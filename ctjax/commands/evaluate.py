"""`ctjax eval`: run trackers over sequences (OTB one-pass protocol) and report.

Layout of `--output DIR`:
    DIR/<label>/<sequence>.txt    raw boxes, one x,y,w,h line per frame (OTB format)
    DIR/<label>/<sequence>.json   the result's key (below), frames, FPS (compile and decoding
                                  excluded), compile time, median frame time, weights,
                                  runtime report, the box file's checksum
    DIR/summary.md, summary.json  per-sequence tables and the comparison table
    DIR/success.png, precision.png

Work is split over one worker process per core, each pinned to its own core and
single-threaded (`ctjax.runtime.configure(core=k)`), so FPS is single-core FPS; Ctrl-C or
the death of this process ends the workers at once (`ctjax.commands.workers`).

Resuming: a result is reused only if its `.json` holds the same **key**, i.e. it was made by
the same preset, weights (SHA-256 of the file or folder), tracker config, sequence (full path,
frame count, initial box, frame file names and sizes) and code (ctjax version, jax and jaxlib
versions, a SHA-256 of ctjax's Python sources), and its box file is intact (right length,
same checksum). Anything else is rerun, with a line saying why. Every file is written atomically (unique temporary
name, then rename; normal permissions), so an interrupted or concurrent evaluation never
leaves a partial result.

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
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

HELP = "evaluate trackers on a list of sequences (OTB protocol)"
_ROOT = Path(__file__).resolve().parents[1]  # the ctjax package


@dataclasses.dataclass(frozen=True)
class TrackerSpec:
    label: str
    preset: str
    weights: str | None = None

    @classmethod
    def parse(cls, text: str) -> "TrackerSpec":
        """`LABEL=PRESET[:WEIGHTS]` or `PRESET[:WEIGHTS]`; the label names a results folder."""
        label, _, rest = text.rpartition("=")
        preset, _, weights = (rest or text).partition(":")
        label = label or preset
        if not preset or label in (".", "..") or label.startswith(".") or \
                any(c in label for c in "/\\\0"):
            raise ValueError(f"--trackers {text!r}: expected LABEL=PRESET[:WEIGHTS], with a "
                             "label usable as a folder name")
        return cls(label, preset, weights or None)


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
    p.add_argument("--sequences", nargs="+", help="sequence names or folders instead of --split")
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


# ---------------------------------------------------------------------------------------------
# What produced a result: its key


def code_version() -> dict:
    """The ctjax version, a SHA-256 of its Python sources, the jax and jaxlib versions (XLA's
    numerics are part of a result), and the git commit (informative only, or None)."""
    from importlib import metadata

    h = hashlib.sha256()
    for f in sorted(_ROOT.rglob("*.py")):
        h.update(str(f.relative_to(_ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    try:
        commit = subprocess.run(["git", "-C", str(_ROOT), "rev-parse", "HEAD"], timeout=10,
                                capture_output=True, text=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    import ctjax
    jax_versions = []
    for package in ("jax", "jaxlib"):
        try:
            jax_versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            jax_versions.append(f"{package} missing")
    return {"ctjax_version": f"{ctjax.__version__} ({', '.join(jax_versions)})",
            "source_sha256": h.hexdigest(), "git_commit": commit}


def tracker_fingerprint(spec: TrackerSpec, built=None) -> dict:
    """Preset, weights (checksum when they are a file or folder) and config of a tracker.

    Builds the preset (no compilation) unless `built` is given; for `csrt` checks that
    OpenCV is installed. Raises what `presets.build` raises (unknown preset, weights for a
    preset that takes none, missing weights), before any sequence is tracked.
    """
    from ctjax import paths

    if spec.preset == "csrt":
        if spec.weights:
            raise ValueError(f"tracker {spec.label}: csrt (OpenCV) takes no weights, got "
                             f"{spec.weights!r}")
        try:
            import cv2
        except ImportError as e:
            raise ImportError("the csrt tracker needs OpenCV: pip install "
                              "'ctjax[baselines]'") from e
        return {"preset": "csrt", "weights": "none", "weights_sha256": None,
                "config": f"OpenCV {cv2.__version__} TrackerCSRT defaults"}
    if built is None:
        from ctjax.trackers import presets
        built = presets.build(spec.preset, weights=spec.weights)
    source = str(built.weights)
    sha = paths.digest(source) if source not in ("", "none") and Path(source).exists() else None
    return {"preset": spec.preset, "weights": source, "weights_sha256": sha,
            "config": repr(built.config)}


def sequence_fingerprint(seq, path: Path) -> dict:
    """Full path, frame count, initial box and a checksum of frame file names and sizes."""
    h = hashlib.sha256()
    for f in seq.frame_paths:
        h.update(f"{f.name}:{f.stat().st_size}\n".encode())
    return {"sequence_path": str(Path(path).resolve()), "frames": len(seq),
            "init_box": [float(v) for v in seq.boxes[0]], "frame_files_sha256": h.hexdigest()}


def result_key(tracker: dict, sequence: dict, code: dict) -> dict:
    """The key stored with a result; equal keys mean the same tracker, sequence and code
    (the weights path is left out when their checksum is known, so a moved file matches)."""
    tracker = dict(tracker)
    if tracker.get("weights_sha256"):
        tracker.pop("weights")
    return {**tracker, **sequence, "ctjax_version": code["ctjax_version"],
            "source_sha256": code["source_sha256"]}


def _canon(value) -> str:
    return json.dumps(value, sort_keys=True)


def _short(value) -> str:
    text = value if isinstance(value, str) else _canon(value)
    return text if len(text) <= 40 else text[:18] + "..." + text[-18:]


def result_status(out_dir: Path, name: str, key: dict) -> str | None:
    """None when `out_dir/<name>.txt/.json` is a valid result for `key`, else why it is not."""
    from ctjax import evaluation

    meta_file, box_file = out_dir / f"{name}.json", out_dir / f"{name}.txt"
    if not meta_file.exists() and not box_file.exists():
        return "no result yet"
    try:
        meta = json.loads(meta_file.read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        return f"its metadata {meta_file.name} is missing or unreadable ({' '.join(str(e).split())})"
    old = meta.get("key")
    if not isinstance(old, dict):
        return f"{meta_file.name} has no result key (written by an older ctjax)"
    changed = [k for k in key if _canon(old.get(k)) != _canon(key[k])]
    if changed:
        return "it was made by a different " + "; ".join(
            f"{k} ({_short(old.get(k))} -> {_short(key[k])})" for k in changed)
    try:
        text = box_file.read_bytes()
        evaluation.read_boxes(box_file, num_frames=key["frames"])
    except (OSError, ValueError) as e:
        return f"its box file is damaged: {' '.join(str(e).split())}"
    if hashlib.sha256(text).hexdigest() != meta.get("boxes_sha256"):
        return f"{box_file.name} changed since it was written (checksum differs)"
    return None


# ---------------------------------------------------------------------------------------------
# Sequences and tasks


def _sequence_paths(args) -> list[Path]:
    from ctjax import paths
    from ctjax.data import sequences

    if args.sequences:
        return [Path(s) if Path(s).is_dir() else paths.sequence_dir(s) for s in args.sequences]
    root = paths.sequences_dir()
    return [Path(s.frame_paths[0]).parents[1]
            for s in sequences.load_split(args.split or "eval", root=root)]


def _load(path: Path, max_frames: int | None):
    from ctjax.data import sequences

    seq = sequences.load_sequence(path)
    if max_frames is not None:
        seq = dataclasses.replace(seq, frame_paths=seq.frame_paths[:max_frames],
                                  boxes=seq.boxes[:max_frames])
    return seq


def _check_names(seqs, seq_paths) -> None:
    """Results are stored by sequence name: two folders with one name would overwrite."""
    seen: dict[str, Path] = {}
    for s, p in zip(seqs, seq_paths):
        if s.name in seen:
            raise ValueError(f"two sequences are named {s.name!r} ({seen[s.name]} and {p}); "
                             "results are stored by name, so one would overwrite the other: "
                             "rename one folder or evaluate them into separate --output folders")
        seen[s.name] = p


_WORKER: dict = {}


def _init_worker(core: int) -> None:
    from ctjax import runtime

    _WORKER["report"] = runtime.configure(core=core)


def _run_task(spec: TrackerSpec, key: dict, seq_path: Path, out_dir: Path,
              max_frames: int | None, commit: str | None) -> dict:
    """Tracks one sequence with one tracker in a worker; writes its box file and metadata."""
    from ctjax import evaluation, paths, runtime
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
        mine = result_key(tracker_fingerprint(spec, built), sequence_fingerprint(seq, seq_path),
                          {k: key[k] for k in ("ctjax_version", "source_sha256")})
        if _canon(mine) != _canon(key):
            raise RuntimeError(f"{spec.label}: the tracker or sequence changed on disk while "
                               "the evaluation ran (its key differs from the planned one)")
        result, weights = track_frames(compiled, built.params, seq.frames(), seq.init_box), built.weights
    # No old metadata may ever vouch for the new box file, even if we are killed in between.
    (out_dir / f"{seq.name}.json").unlink(missing_ok=True)
    box_file = evaluation.write_boxes(out_dir / f"{seq.name}.txt", result.boxes)
    if "probe" not in _WORKER:
        _WORKER["probe"] = runtime.probe(_WORKER["report"], seconds=0.3).summary()
    meta = {"sequence": seq.name, "tracker": spec.label, "preset": spec.preset,
            "weights": str(weights), "frames": len(result.boxes), "fps": result.fps,
            "median_frame_ms": 1e3 * float(np.median(result.frame_seconds[1:])),
            "compile_seconds": result.compile_seconds, "runtime": _WORKER["probe"],
            "git_commit": commit, "key": key,
            "boxes_sha256": hashlib.sha256(box_file.read_bytes()).hexdigest()}
    paths.atomic_write(out_dir / f"{seq.name}.json", json.dumps(meta, indent=1))
    return meta


# ---------------------------------------------------------------------------------------------
# Report and command


def _report(specs, seqs, keys, root: Path) -> str:
    from ctjax import evaluation, paths

    overall, lines = {}, []
    for spec in specs:
        d = root / spec.label
        results = []
        for s in seqs:
            problem = result_status(d, s.name, keys[spec.label, s.name])
            if problem is not None:
                raise evaluation.ResultFileError(f"result {d / s.name}: {problem}")
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
    paths.atomic_write(root / "summary.json", json.dumps(summary, indent=1))
    paths.atomic_write(root / "summary.md", "\n".join(["# Evaluation summary", "", *head, *rows, "",
                                                       *lines]))
    return "\n".join(head + rows)


def _plan(specs, seqs, seq_paths, root: Path, code: dict, wanted=None):
    """Keys of every (tracker, sequence) (of those in `wanted`, default all) and the tasks to
    run, saying why each is rerun."""
    fingerprints = {spec.label: tracker_fingerprint(spec) for spec in specs}
    keys, tasks = {}, []
    for spec in specs:
        for s, p in zip(seqs, seq_paths):
            if wanted is not None and (spec.label, s.name) not in wanted:
                continue
            keys[spec.label, s.name] = result_key(fingerprints[spec.label],
                                                  sequence_fingerprint(s, p), code)
            why = result_status(root / spec.label, s.name, keys[spec.label, s.name])
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


def _run_description(args, specs, seqs, seq_paths, code: dict) -> dict:
    """What every shard of one run must share (compared by `--merge`)."""
    return {"trackers": [f"{s.label}={s.preset}" + (f":{s.weights}" if s.weights else "")
                         for s in specs],
            "sequences": [[s.name, str(p.resolve())] for s, p in zip(seqs, seq_paths)],
            "max_frames": args.max_frames,
            "code": {k: code[k] for k in ("ctjax_version", "source_sha256")}}


def run(args) -> int:
    """Runs `ctjax eval` (the workers pin themselves, one core each); returns the exit
    status: 0, or 1 when a task failed (the other results are kept)."""
    from ctjax import evaluation, paths
    from ctjax.commands import workers

    if args.merge:
        return merge(args)
    shard = evaluation.parse_shard(args.shard) if args.shard else None
    specs = [TrackerSpec.parse(t) for t in args.trackers or ["cfvggm"]]
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"--trackers: labels must be distinct, got {labels}")
    root = paths.check_writable_dir(args.output, "--output folder")
    seq_paths = _sequence_paths(args)
    seqs = [_load(p, args.max_frames) for p in seq_paths]
    _check_names(seqs, seq_paths)
    code = code_version()
    plan = _shard_plan(specs, seqs, shard[1]) if shard else None
    wanted = {(l, n) for l, n, k in plan if k == shard[0]} if shard else None
    if shard:  # only a finished shard may vouch for its results
        (root / evaluation.shard_file_name(*shard)).unlink(missing_ok=True)
    keys, tasks, commit = _plan(specs, seqs, seq_paths, root, code, wanted)
    for spec in specs:
        (root / spec.label).mkdir(parents=True, exist_ok=True)
    total = len(specs) * len(seqs) if wanted is None else len(wanted)
    print((f"shard {shard[0]}/{shard[1]}: {total} of {len(specs) * len(seqs)} tasks; " if shard
           else "") + f"{len(specs)} trackers x {len(seqs)} sequences: {len(tasks)} to run, "
          f"{total - len(tasks)} already done (in {root})", flush=True)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    n_workers = max(1, min(args.workers or len(cores), len(cores), len(tasks) or 1))
    tasks.sort(key=lambda t: -len(t[1]))  # longest first keeps the workers busy to the end
    t0, failed, finished = time.perf_counter(), [], []

    def on_event(i, kind, payload):
        spec, s, _ = tasks[i]
        finished.append(i)
        if kind == "failed":
            failed.append(f"{spec.label}/{s.name}: {payload}")
            print(f"[{len(finished)}/{len(tasks)}] FAILED {spec.label} {s.name}: {payload}", flush=True)
            return
        print(f"[{len(finished)}/{len(tasks)}] {payload['tracker']:>12s} {payload['sequence']:<14s} "
              f"{payload['frames']:5d} frames {payload['fps']:7.1f} FPS "
              f"(elapsed {time.perf_counter() - t0:.0f} s)", flush=True)

    work = [(spec, keys[spec.label, s.name], p, root / spec.label, args.max_frames, commit)
            for spec, s, p in tasks]
    try:
        if work:
            workers.run_pool(work, cores[:n_workers], _run_task, on_event, initializer=_init_worker)
    except KeyboardInterrupt:
        print(f"interrupted: {len(finished) - len(failed)} of {len(tasks)} results written; "
              "run the same command again to resume", flush=True)
        raise
    if failed:
        print(f"{len(failed)} of {len(tasks)} tasks failed (the other results are kept; fix the "
              "cause and run the same command again to resume):\n  " + "\n  ".join(failed))
        return 1
    if shard:
        manifest = evaluation.shard_manifest(
            shard=shard[0], shards=shard[1],
            run=_run_description(args, specs, seqs, seq_paths, code), plan=plan,
            results=[[l, n, keys[l, n]] for l, n, k in plan if k == shard[0]])
        out = paths.atomic_write(root / evaluation.shard_file_name(*shard),
                                 json.dumps(manifest, indent=1))
        print(f"wrote {out}; when all {shard[1]} shards are done: ctjax eval --merge "
              "FOLDER... --output OUT")
        return 0
    print(_report(specs, seqs, keys, root))
    print(f"wrote {root / 'summary.md'}, success.png, precision.png")
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
    OUT (byte for byte) and writes the summary and plots; returns 0.

    Raises:
      ShardError: a shard missing or given twice, shards of different runs.
      ResultFileError: a result missing, damaged, or not matching its shard's key.
      ValueError: options that belong to shard runs; a sequence changed since it was tracked.
    """
    from ctjax import evaluation, paths

    extra = [flag for flag, value in (("--trackers", args.trackers), ("--split", args.split),
                                      ("--sequences", args.sequences), ("--shard", args.shard),
                                      ("--max-frames", args.max_frames)) if value]
    if extra:
        raise ValueError(f"--merge takes the trackers, sequences and frame limit from the "
                         f"shards' manifests; drop {', '.join(extra)}")
    run_info, tasks = evaluation.merge_shards(_read_manifests([Path(d) for d in args.merge]))
    root = paths.check_writable_dir(args.output, "--output folder")
    specs = [TrackerSpec.parse(t) for t in run_info["trackers"]]
    seq_paths = [Path(p) for _, p in run_info["sequences"]]
    seqs = [_load(p, run_info["max_frames"]) for p in seq_paths]
    keys = {}
    for (label, name), (where, key) in tasks.items():
        source = Path(where).parent / label
        problem = result_status(source, name, key)
        if problem is not None:
            raise evaluation.ResultFileError(f"result {source / name} ({where}): {problem}")
        keys[label, name] = key
    for s, p in zip(seqs, seq_paths):  # the ground truth scored is that of the frames tracked
        fingerprint = sequence_fingerprint(s, p)
        for spec in specs:
            changed = [k for k in fingerprint if _canon(keys[spec.label, s.name].get(k))
                       != _canon(fingerprint[k])]
            if changed:
                raise ValueError(f"sequence {p} changed since shard results were made (its "
                                 f"{', '.join(changed)} differ); rerun those shards")
    for (label, name), (where, _) in tasks.items():
        source, dest = Path(where).parent / label, root / label
        if source.resolve() != dest.resolve():
            (dest / f"{name}.json").unlink(missing_ok=True)  # no stale metadata vouching
            for suffix in (".txt", ".json"):
                paths.atomic_write(dest / f"{name}{suffix}",
                                   (source / f"{name}{suffix}").read_bytes())
    print(_report(specs, seqs, keys, root))
    print(f"merged {len({w for w, _ in tasks.values()})} shard(s), {len(tasks)} results, into "
          f"{root}; wrote summary.md, success.png, precision.png")
    return 0

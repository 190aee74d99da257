"""The package's layout: every module imports on its own, the import graph has no cycle, and
data flows one way (commands -> trackers / distill -> features, models, data, evaluation ->
ops, boxes), with `ctjax.trackers` and `ctjax.distill` never importing each other."""

import ast
import subprocess
import sys
from pathlib import Path

import ctjax

ROOT = Path(ctjax.__file__).resolve().parent
# Lower layers never import higher ones; a module may import its own layer or below.
LAYERS = {
    "ctjax": 0, "ctjax.paths": 0, "ctjax.runtime": 0, "ctjax.boxes": 0, "ctjax.ops": 0,
    "ctjax.features": 1, "ctjax.models": 1, "ctjax.data": 1, "ctjax.evaluation": 1,
    "ctjax.visualize": 1,
    "ctjax.trackers": 2, "ctjax.distill": 2,
    "ctjax.results": 2,  # eval's result store: keys hold tracker configs (trackers.settings)
    "ctjax.commands": 3, "ctjax.__main__": 3, "ctjax.api": 3, "ctjax.integrations": 3,
}
# The root package's `__getattr__` loads `ctjax.api` (the user-facing `ctjax.Tracker`) on first
# attribute access, never at import time; that lazy edge is the one allowed upward import.
LAZY = {("ctjax", "ctjax.api")}
APART = {"ctjax.trackers", "ctjax.distill"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("ctjax",) + path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """ctjax modules imported anywhere in a file (function-level imports included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            # `from ctjax.x import y` imports the submodule ctjax.x.y when there is one.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import ctjax.models.registry as r`
                target = target.rpartition(".")[0]
            if target.startswith("ctjax") and target != name:
                found.add(target)
    return found


GRAPH = {name: {t for t in _imports(name, path) if (name, t) not in LAZY}
         for name, path in MODULES.items()}


def _layer_key(name: str) -> str:
    return max((k for k in LAYERS if name == k or name.startswith(k + ".")), key=len)


def test_every_module_belongs_to_a_layer():
    assert all(_layer_key(m) for m in MODULES)


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_data_flows_one_way_and_trackers_and_distill_stay_apart():
    bad = []
    for module, targets in GRAPH.items():
        here = _layer_key(module)
        for target in targets:
            there = _layer_key(target)
            if LAYERS[there] > LAYERS[here]:
                bad.append(f"{module} (layer {LAYERS[here]}) imports {target} "
                           f"(layer {LAYERS[there]})")
            if {here, there} == APART:
                bad.append(f"{module} imports {target}")
    assert not bad, "\n".join(bad)


def test_the_graph_sees_known_edges():
    """Guards the checker itself: edges it must find."""
    assert "ctjax.ops.crop" in GRAPH["ctjax.trackers.dcf"]
    assert "ctjax.features.cnn" in GRAPH["ctjax.distill.losses"]
    assert "ctjax.distill.loop" in GRAPH["ctjax.commands.distill"]  # a function-level import
    assert "ctjax.trackers" in GRAPH["ctjax.trackers.dcf"]
    assert "ctjax.api" in _imports("ctjax", MODULES["ctjax"])  # the lazy edge is still seen
    assert "ctjax.trackers.settings" in GRAPH["ctjax.results"]
    assert {"ctjax.data.sources", "ctjax.results"} <= GRAPH["ctjax.commands.evaluate"]


def test_commands_define_no_library_logic_that_moved_out():
    """`ctjax/commands/*` is argparse, printing and orchestration: the settings, sequence
    sources and result store live in the library (and are imported from there)."""
    moved = {"ctjax.trackers.settings": ("parse_setting", "apply_settings", "tracker_config",
                                         "build_tracker", "fit_canvas"),
             "ctjax.data.sources": ("SequenceSource", "resolve_sources"),
             "ctjax.results": ("TrackerSpec", "code_version", "tracker_fingerprint",
                               "sequence_fingerprint", "result_key", "result_status",
                               "write_result", "write_summary", "export_results")}
    defined = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defined.setdefault(node.name, set()).add(name)
    for home, names in moved.items():
        for n in names:
            assert defined.get(n) == {home}, f"{n} defined in {sorted(defined.get(n, ()))}"


def test_every_module_imports_on_its_own():
    """Each module imported first in a clean ctjax namespace (third-party modules stay
    cached, so this takes seconds): an import-order dependency or a cycle fails here."""
    names = sorted(m for m in MODULES if m != "ctjax.__main__")
    code = ("import importlib, sys, traceback\n"
            f"names = {names!r}\n"
            "failed = []\n"
            "for name in names:\n"
            "    for key in [k for k in sys.modules if k == 'ctjax' or k.startswith('ctjax.')]:\n"
            "        del sys.modules[key]\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except Exception:\n"
            "        failed.append(name + ': ' + traceback.format_exc(limit=2))\n"
            "print('\\n'.join(failed) or 'ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr

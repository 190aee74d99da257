"""Every notebook under notebooks/ runs top to bottom, and prints the result it exists for.

Each notebook is executed in a fresh kernel with `CTJAX_NOTEBOOK_SMOKE=1` (few frames, few
steps, fewer trackers); then its printed output is checked against that notebook's own
markers, parsed and checked as numbers where the notebook computes a property with a known
answer (a circular shift moves the DCF peak by exactly that shift, autodiff agrees with a
central difference, ridge regression's training error grows with λ, ECO's regularisation
window has its minimum on the target, both distillation losses fall, OTB scores lie in [0, 1]).

Slow tests (`-m slow`) run the notebooks with smoke off (the real runs: the whole sequence
with every tracker, a longer distillation) and on a machine without `CTJAX_DATA`, where
they must still run and say what they skipped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import need_data
from ctjax import paths

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
NUMBER = r"([-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?)"


def execute(path: Path, tmp_path: Path, monkeypatch, *, smoke: bool,
            timeout: int = 3600) -> str:
    """Runs a notebook in a fresh kernel (cwd `tmp_path`) and returns its printed text.

    `timeout` (seconds per cell) only guards against a hung kernel: a compile on a loaded
    2-core machine can take many minutes."""
    nb = nbformat.read(path, as_version=4)
    monkeypatch.setenv("CTJAX_NOTEBOOK_SMOKE", "1" if smoke else "0")
    monkeypatch.setenv("CTJAX_NOTEBOOK_WORKDIR", str(tmp_path / "work"))
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)


def numbers(pattern: str, text: str) -> list[tuple[float, ...]]:
    """Every match of `pattern` (with NUMBER groups) in `text`, as tuples of floats."""
    found = re.findall(pattern, text)
    return [tuple(float(v) for v in (m if isinstance(m, tuple) else (m,))) for m in found]


def table(header_start: str, text: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header line starts with `header_start`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def has_data(accessor, *args) -> bool:
    try:
        accessor(*args)
        return True
    except paths.DataNotFoundError:
        return False


# ---------------------------------------------------------------------------------------------
# Per-notebook checks


def check_quickstart(text: str, *, smoke: bool) -> None:
    assert "AUC" in text and "peak shift" in text


def check_dcf(text: str, *, smoke: bool) -> None:
    """01: the shift property, the gradient check, the λ table and ECO's window."""
    (circular, crops), = numbers(rf"peak shift test: max error {NUMBER} cells \(circular roll\), "
                                 rf"{NUMBER} cells \(shifted crops\)", text)
    assert circular < 1e-3, "a circular roll of the features must move the peak exactly"
    assert crops < 0.5, "a real crop shifted by whole cells must move the peak within half a cell"
    shifts = numbers(r"peak shift expected \((-?\d+), (-?\d+)\) cells", text)
    assert len(shifts) >= 4 and any(s != (0.0, 0.0) for s in shifts)

    checks = numbers(rf"gradient check \w+: autodiff {NUMBER}, central difference {NUMBER}, "
                     rf"relative error {NUMBER}", text)
    assert len(checks) == 2
    for ad, fd, _ in checks:
        assert fd != 0 and abs(ad - fd) <= 1e-6 * abs(fd)
    (before, after), = numbers(rf"tracking loss {NUMBER} -> {NUMBER}", text)
    assert after < before, "a small step against the gradient must lower the loss"

    rows = table("| lambda | fit loss", text)
    assert len(rows) >= 3
    lams = [float(r[0]) for r in rows]
    fits = [float(r[1]) for r in rows]
    assert lams == sorted(lams)
    # Ridge regression: the training (fit) error never decreases as λ grows.
    assert all(b >= a - 1e-4 for a, b in zip(fits, fits[1:])) and fits[-1] > fits[0]

    (centre, w_min, corner), = numbers(rf"ECO window at the target centre {NUMBER} "
                                       rf"\(reg_window_min {NUMBER}\), .* at the crop corner "
                                       rf"{NUMBER}", text)
    assert abs(centre - w_min) <= 0.05 * w_min, "ECO sets the window's minimum to reg_window_min"
    assert corner > 100 * centre


def check_distill(text: str, *, smoke: bool) -> None:
    """02: a finished run whose fidelity and tracking losses both fall; the feature maps."""
    if not (has_data(paths.splits_file) and has_data(
            paths.weights_file, "efficientnet_lite0_imagenet_torch_layout.npz")):
        assert "SKIP" in text
        need_data(paths.splits_file)
        need_data(paths.weights_file, "efficientnet_lite0_imagenet_torch_layout.npz")
    assert "teacher efficientnet_lite0:" in text
    rows = table("| model | widths", text)
    assert [r[0] for r in rows] == ["vggm", "cf_vggm_r16", "cf_vggm_r32", "cf_vggm_r64",
                                    "cf_vggm_r96"]
    params = [int(r[2].replace(",", "")) for r in rows]
    assert params == sorted(params, reverse=True)
    (steps,), = numbers(r"done: (\d+) steps", text)
    assert steps == (6 if smoke else 300)
    for kind in ("fidelity", "tracking"):
        (first, last), = numbers(rf"{kind} loss: {NUMBER} -> {NUMBER} \(", text)
        assert last < first, f"the {kind} loss did not fall: {first} -> {last}"
    # The shipped (distilled) student explains more of the teacher's maps than random weights.
    (*shipped,), = numbers(rf"shipped r64 \(2500 steps\): conv1 {NUMBER}, conv3 {NUMBER}, "
                           rf"conv5 {NUMBER}", text)
    (*random,), = numbers(rf"r64, random weights: conv1 {NUMBER}, conv3 {NUMBER}, conv5 {NUMBER}",
                          text)
    assert all(0 <= r < s <= 1 for r, s in zip(random, shipped)), (random, shipped)


def check_track(text: str, *, smoke: bool) -> None:
    """03: the AUC table of every student, the speed table, a response map; full: the teacher
    and the online-adaptation comparison."""
    students = sorted(p.name for p in (Path(__file__).resolve().parents[1] / "ctjax" / "assets"
                                        / "students").iterdir() if (p / "student.json").is_file())
    expected = {f"feco:{s}" for s in students} | {"feco-random"}
    if not smoke:
        expected.add("eco (teacher)")
        if has_data(paths.released_student):
            expected.add("feco:released")
    scores = {r[0]: (float(r[1]), float(r[2])) for r in table("| tracker | AUC | P@20 |", text)}
    assert set(scores) == expected, scores
    for auc, p20 in scores.values():
        assert 0.0 <= auc <= 1.0 and 0.0 <= p20 <= 1.0
    speed = {r[0]: r for r in table("| tracker | frames | init ms | median ms/frame", text)}
    assert set(speed) == expected
    frames = {int(r[1]) for r in speed.values()}
    assert len(frames) == 1 and (frames == {12} if smoke else frames.pop() > 12)
    assert all(float(r[3]) > 0 for r in speed.values())
    # The shipped students and feco-random share the first student's compiled fECO.
    assert sorted(label for label, r in speed.items() if r[5] == "shared") == sorted(
        [f"feco:{s}" for s in students[1:]] + ["feco-random"])
    assert numbers(rf"response peak {NUMBER}", text)
    if not smoke:
        assert numbers(rf"feco-online AUC {NUMBER} P@20 {NUMBER}", text)


CHECKS = {
    "quickstart.ipynb": check_quickstart,
    "01_differentiable_dcf.ipynb": check_dcf,
    "02_distill_student.ipynb": check_distill,
    "03_track_and_compare.ipynb": check_track,
}


# ---------------------------------------------------------------------------------------------
# Tests


def test_every_notebook_has_its_checks():
    assert NOTEBOOKS, "notebooks/ holds no notebook"
    assert sorted(p.name for p in NOTEBOOKS) == sorted(CHECKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean(path):
    """No committed outputs; the numbered notebooks have the smoke switch in their first cell."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        assert not cell.get("outputs") and cell.get("execution_count") is None, \
            f"{path.name}: committed outputs (strip them)"
    if path.name[0].isdigit():
        assert "CTJAX_NOTEBOOK_SMOKE" in code[0].source and "runtime.configure" in code[0].source
        assert not any("sys.path" in c.source for c in code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_smoke_run(path, tmp_path, monkeypatch):
    text = execute(path, tmp_path, monkeypatch, smoke=True)
    CHECKS[path.name](text, smoke=True)


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.name[0].isdigit()],
                         ids=lambda p: p.name)
def test_notebook_full_run(path, tmp_path, monkeypatch):
    text = execute(path, tmp_path, monkeypatch, smoke=False)
    CHECKS[path.name](text, smoke=False)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_without_data(path, tmp_path, monkeypatch):
    """A clone without `CTJAX_DATA`: every notebook still runs and says what it skipped."""
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path / "no-data"))
    text = execute(path, tmp_path, monkeypatch, smoke=True)
    if path.name != "quickstart.ipynb":
        assert "SKIP" in text

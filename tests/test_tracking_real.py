"""Slow regression tests: real weights over whole real sequences (run with `-m slow`).

The thresholds sit well below what `ctjax eval` measured (README, Results), so they catch a
broken tracker or broken weights, not small numerical differences between machines.
"""

import pytest

from conftest import need_data
from ctjax import evaluation, paths
from ctjax.data import sequences
from ctjax.trackers import presets
from ctjax.trackers.run import compile_tracker, track_frames

pytestmark = pytest.mark.slow

# Measured in results/eval_quiet: released 0.625 / 0.731, ours 0.691 / 0.682.
CASES = [("released", "David", 0.5), ("released", "Jogging2", 0.6),
         (None, "David", 0.5), (None, "Jogging2", 0.5)]


@pytest.mark.parametrize("weights, name, min_auc", CASES)
def test_whole_sequence_accuracy(weights, name, min_auc):
    seq = sequences.load_sequence(need_data(paths.sequence_dir, name))
    if weights == "released":
        need_data(paths.released_student)
    built = presets.build("cfvggm", weights=weights)
    compiled = compile_tracker(built.tracker, built.config, built.params)
    result = track_frames(compiled, built.params, seq.frames(), seq.init_box)
    scores = evaluation.evaluate_sequence(result.boxes, seq.boxes, name=name)
    assert scores.auc > min_auc, (weights, name, scores.auc)

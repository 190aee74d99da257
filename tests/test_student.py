"""Tests for ctjax.models.student: the exported-student format (NumPy + JSON, no Orbax) and
the one loader the trackers use."""

import json
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctjax import paths
from ctjax.models import registry, student
from ctjax.models.student import student_preprocessing
from conftest import need_data


def _random_student(name="cf_vggm_r64", seed=0):
    config = registry.MODEL_CONFIGS[name]
    abstract = jax.eval_shape(registry.build_module(config).init, jax.random.key(0),
                              jnp.zeros((1, 96, 96, 3)))
    rng = np.random.default_rng(seed)
    variables = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), abstract)
    return config, variables


def test_write_read_round_trip_is_exact_and_small(tmp_path):
    config, variables = _random_student()
    out = student.write_student(tmp_path / "s", variables, config=config,
                                preprocessing=student_preprocessing(), training={"steps": 5})
    loaded = student.read_student(out)
    assert loaded.config == config
    chex.assert_trees_all_equal(loaded.variables, jax.tree.map(jnp.asarray, variables))
    np.testing.assert_allclose(loaded.preprocessing.mean, [123.68, 116.78, 103.94], rtol=1e-7)
    assert loaded.preprocessing.mean.dtype == np.float32
    assert loaded.preprocessing.std is None
    assert student.student_info(out)["training"] == {"steps": 5}
    assert sum(p.stat().st_size for p in out.iterdir()) < 500_000  # 103,760 float32 + JSON
    # The params file is a plain .npz, readable without ctjax.
    with np.load(out / student.STUDENT_PARAMS) as archive:
        np.testing.assert_array_equal(archive["conv1/kernel"],
                                      variables["params"]["conv1"]["kernel"])


def test_reading_a_student_needs_neither_orbax_nor_training_code(tmp_path):
    config, variables = _random_student()
    out = student.write_student(tmp_path / "s", variables, config=config,
                                preprocessing=student_preprocessing())
    code = ("import sys\n"
            "from ctjax.models.student import load_student\n"
            f"m = load_student({str(out)!r})\n"
            "print(m.config.name, sorted(k for k in sys.modules if k.startswith(('orbax', "
            "'optax', 'ctjax.distill', 'tensorflow'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["cf_vggm_r64", "[]"], out.stdout + out.stderr


def test_shipped_student_loads_by_default():
    loaded = student.load_student(None)
    assert loaded.config.name == "cf_vggm_r64"
    assert loaded.source == str(student.SHIPPED_STUDENT)
    assert registry.param_count(loaded.variables) == 103_760


def test_released_student_through_the_same_loader():
    need_data(paths.released_student)
    loaded = student.load_student("released")
    assert loaded.config.name == "cf_vggm_r64" and loaded.source.endswith("CF_VGGM.mat")


@pytest.fixture
def exported(tmp_path):
    config, variables = _random_student()
    return student.write_student(tmp_path / "student", variables, config=config,
                                 preprocessing=student_preprocessing())


def _edit_json(path, **changes):
    meta = json.loads((path / student.STUDENT_JSON).read_text())
    meta.update(changes)
    (path / student.STUDENT_JSON).write_text(json.dumps(meta))


def test_clear_errors_for_bad_students(exported, tmp_path):
    err = student.StudentFileError
    with pytest.raises(err, match="not found"):
        student.read_student(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(err, match="not a ctjax student export"):
        student.read_student(tmp_path / "plain")
    with pytest.raises(err, match="not a ctjax student export"):
        student.read_student(exported / student.STUDENT_PARAMS)  # a file, not the folder
    with pytest.raises(FileNotFoundError, match="weights not found"):
        student.load_student(tmp_path / "missing")

    data = bytearray((exported / student.STUDENT_PARAMS).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (exported / student.STUDENT_PARAMS).write_bytes(bytes(data))
    with pytest.raises(err, match="corrupt"):
        student.load_student(exported)


@pytest.mark.parametrize("changes, match", [
    ({"format_version": 99}, "format version 99"),
    ({"format": "something-else"}, "not a ctjax student"),
    ({"model": {"name": "cf_vggm_r64", "family": "vggm", "widths": [12, 32, 64, 64, 32]}},
     "registered"),
    ({"model": {"name": "cf_vggm_r96", "family": "vggm", "widths": [10, 26, 52, 52, 52]}},
     "shape"),
    ({"model": {"name": "efficientnet_lite0", "family": "efficientnet_lite0", "widths": None}},
     "VGG-M-family"),
])
def test_version_and_config_mismatches_are_named(exported, changes, match):
    _edit_json(exported, **changes)
    with pytest.raises(student.StudentFileError, match=match):
        student.read_student(exported)


def test_corrupt_json_is_named(exported):
    (exported / student.STUDENT_JSON).write_text("{not json")
    with pytest.raises(student.StudentFileError, match="corrupt"):
        student.read_student(exported)


def test_write_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("precious")
    config, variables = _random_student()
    with pytest.raises(FileExistsError):
        student.write_student(tmp_path / "data", variables, config=config,
                              preprocessing=student_preprocessing())

"""Tests of ctjax.features.fhog against Piotr Dollar's C code (reference outputs in
`../shared/reference/fhog_cases.npz`, tolerances from its README) and against properties that
follow from the definition of fHOG."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctjax import paths
from ctjax.features.fhog import fhog, fhog_from_mag_ori, gradient_mag_ori
from conftest import need_data

CASES = range(4)
CELLS = (4, 6)
# Jitted once per shape: eager dispatch of the many small ops is slower than compiling.
fhog_jit = jax.jit(fhog, static_argnames=("cell", "num_orients"))
fhog_from_mag_ori_jit = jax.jit(fhog_from_mag_ori, static_argnames=("cell", "num_orients"))
gradient_mag_ori_jit = jax.jit(gradient_mag_ori)


@pytest.fixture(scope="module")
def reference():
    # The reference folder sits beside the data folder (../shared/reference).
    path = need_data(paths.require, paths.data_root().parent / "reference" / "fhog_cases.npz",
                     "fHOG reference cases")
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("case", CASES)
def test_fhog_matches_dollar_c_code(reference, case, cell):
    want = reference[f"hog_{case}_c{cell}"]
    got = np.asarray(fhog_jit(reference[f"patch_{case}"], cell=cell))
    assert got.shape == want.shape and got.dtype == np.float32
    diff = np.abs(got - want)
    # README: exact arithmetic vs the C code's SSE approximations moves 1-3 pixels a bin.
    assert np.linalg.norm(got - want) / np.linalg.norm(want) <= 2e-2
    assert np.mean(diff > 1e-4 + 1e-3 * np.abs(want)) <= 0.06
    assert diff.max() <= 0.15


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("case", CASES)
def test_histogram_and_normalisation_from_reference_gradient(reference, case, cell):
    want = reference[f"hog_{case}_c{cell}"]
    got = np.asarray(fhog_from_mag_ori_jit(reference[f"mag_{case}"], reference[f"ori_{case}"],
                                       cell=cell))
    # README: rtol 1e-5 (cell 4) and 1e-3 (cell 6, where the C code steps the cell coordinate
    # by adding 1/6 in float32); fhog steps it the same way, which brings cell 6 to 1e-5 too.
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=0 if cell == 4 else 1e-6)


@pytest.mark.parametrize("case", CASES)
def test_gradient_magnitude_and_orientation(reference, case):
    mag, ori = (np.asarray(a) for a in gradient_mag_ori_jit(reference[f"patch_{case}"]))
    want_mag, want_ori = reference[f"mag_{case}"], reference[f"ori_{case}"]
    assert mag.shape == want_mag.shape and mag.dtype == np.float32
    moving = mag > 0
    # The C code's rsqrt/rcp approximations: relative error about 4e-4.
    np.testing.assert_allclose(mag[moving], want_mag[moving], rtol=1e-3)
    assert np.all(want_mag[~moving] < 1e-9)        # the C code's 1 / 1e10 for flat pixels
    assert np.all((ori >= 0) & (ori < 2 * np.pi))
    # Its acos table has a resolution of 0.0141 rad next to 0 and pi.
    angle = np.abs(np.angle(np.exp(1j * (ori.astype(np.float64) - want_ori))))
    assert angle[moving].max() < 0.03
    # Pure vertical gradients get exactly the C code's orientation, so they bin identically.
    vertical = np.isin(want_ori, np.float32([np.pi / 2, 3 * np.pi / 2]))
    assert vertical.any()
    np.testing.assert_array_equal(ori[vertical], want_ori[vertical])


@pytest.mark.parametrize("case", CASES)
def test_fast_binning_equals_orientation_path(reference, case):
    image = reference[f"patch_{case}"]
    direct = np.asarray(fhog_jit(image, cell=4))
    via_ori = np.asarray(fhog_from_mag_ori_jit(*gradient_mag_ori_jit(image), cell=4))
    np.testing.assert_allclose(direct, via_ori, atol=1e-5)


@pytest.mark.parametrize("sign, sensitive_bin", [(1, 5), (-1, 14)])
def test_pure_vertical_gradient_goes_to_upper_bin(sign, sensitive_bin):
    # I(y, x) = 100 + 3 y: gx = 0, gy = 3 everywhere; 90 degrees lies on the boundary of
    # bins 4 and 5 (20 degrees each); the C code puts it in the upper one (and 270 in 14).
    rows = 100.0 + sign * 3.0 * np.arange(40, dtype=np.float32)
    image = np.repeat(rows[:, None, None], 36, axis=1)
    via_ori = fhog_from_mag_ori_jit(*gradient_mag_ori_jit(image), cell=4)
    for out in (fhog_jit(image, cell=4), via_ori):
        out = np.asarray(out)
        sensitive, insensitive = out[..., :18], out[..., 18:27]
        assert np.all(sensitive[..., sensitive_bin] > 0.1)
        assert np.all(np.delete(sensitive, sensitive_bin, axis=-1) == 0)
        assert np.all(insensitive[..., 5] > 0.1)
        assert np.all(np.delete(insensitive, 5, axis=-1) == 0)


def test_flat_image_gives_zeros():
    out = np.asarray(fhog_jit(np.full((24, 28, 3), 77, np.uint8), cell=4))
    assert out.shape == (6, 7, 31)
    assert np.all(out == 0)


@pytest.mark.parametrize("shape, cell, cells", [((217, 198, 3), 4, (54, 49)),
                                                ((217, 198, 3), 6, (36, 33)),
                                                ((2, 31, 45, 1), 6, (5, 7))])
def test_shapes_for_odd_sizes_and_batches(shape, cell, cells):
    image = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    out = fhog_jit(image, cell=cell)
    assert out.shape == shape[:-3] + cells + (31,)
    assert out.dtype == jnp.float32
    if len(shape) == 4:  # a batch is the stack of its images
        for i in range(shape[0]):
            np.testing.assert_allclose(out[i], fhog_jit(image[i], cell=cell), atol=1e-6)


def test_jit_compiles_once_and_returns_float32(reference):
    traces = []

    def traced(image):
        traces.append(1)
        return fhog(image, cell=6)

    step = jax.jit(traced)
    image = jnp.asarray(reference["patch_1"])              # uint8 in, float32 out
    first, second = step(image), step(255 - image)
    assert len(traces) == 1
    assert first.dtype == second.dtype == jnp.float32
    np.testing.assert_array_equal(first, fhog_jit(image, cell=6))
    mag, ori = gradient_mag_ori_jit(image)
    assert mag.dtype == ori.dtype == jnp.float32


def test_too_small_image_is_an_error():
    with pytest.raises(ValueError, match="2x2 cells"):
        jax.eval_shape(functools.partial(fhog, cell=4), jnp.zeros((7, 40, 3), jnp.uint8))

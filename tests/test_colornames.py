"""Tests of ctjax.features.colornames against straightforward NumPy versions of ECO's
`table_lookup.m` (index convention from `<CTJAX_DATA>/lookup/SOURCES.md`),
`average_feature_region.m`, `rgb2gray` and `get_colorspace.m`."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctjax import paths
from ctjax.features import colornames as cn
from conftest import need_data

RNG = np.random.default_rng(7)


@pytest.fixture(scope="module")
def cn_table():
    return need_data(cn.load_colour_names_table)


@pytest.fixture(scope="module")
def ic_table():
    return need_data(cn.load_intensity_table)


def numpy_cn_lookup(image, table):
    """SOURCES.md: row = 1 + R//8 + 32*(G//8) + 1024*(B//8), 1-based."""
    r, g, b = (image[..., k].astype(np.int64) for k in range(3))
    row = 1 + r // 8 + 32 * (g // 8) + 1024 * (b // 8)
    return table[row - 1]


def numpy_cell_mean(x, cell):
    hb, wb = x.shape[0] // cell, x.shape[1] // cell
    out = np.zeros((hb, wb, x.shape[2]), np.float64)
    for i in range(hb):
        for j in range(wb):
            out[i, j] = x[i * cell:(i + 1) * cell, j * cell:(j + 1) * cell].mean(axis=(0, 1))
    return out


def numpy_rgb2gray_uint8(image):
    weights = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
    return np.floor(image.astype(np.float64) @ weights + 0.5).astype(np.int64)


def test_tables_load_with_their_shapes(cn_table, ic_table):
    assert cn_table.shape == (32768, 10) and cn_table.dtype == np.float32
    assert ic_table.shape == (256, 5) and ic_table.dtype == np.float32
    assert isinstance(cn_table, np.ndarray)


def test_colour_names_lookup_per_pixel(cn_table):
    image = RNG.integers(0, 256, (23, 17, 3)).astype(np.uint8)
    got = np.asarray(cn.colour_names(image, cn_table, cell=1))
    np.testing.assert_array_equal(got, numpy_cn_lookup(image, cn_table))


def test_colour_names_cell_average_on_odd_size(cn_table):
    image = RNG.integers(0, 256, (2, 37, 42, 3)).astype(np.uint8)
    got = np.asarray(cn.colour_names(image, cn_table, cell=4))
    assert got.shape == (2, 9, 10, 10) and got.dtype == np.float32
    for k in range(2):
        want = numpy_cell_mean(numpy_cn_lookup(image[k], cn_table), 4)
        np.testing.assert_allclose(got[k], want, rtol=1e-5, atol=1e-7)


def test_pure_colour_patch_gives_its_table_row(cn_table):
    colour = np.array([200, 30, 90], np.uint8)
    image = np.broadcast_to(colour, (12, 16, 3))
    got = np.asarray(cn.colour_names(image, cn_table, cell=4))
    row = 200 // 8 + 32 * (30 // 8) + 1024 * (90 // 8)
    np.testing.assert_allclose(got, np.broadcast_to(cn_table[row], (3, 4, 10)), rtol=1e-6)


def test_float_input_is_rounded_like_a_uint8_conversion(cn_table):
    image = RNG.integers(0, 256, (8, 8, 3)).astype(np.float32)
    near = np.clip(image + RNG.uniform(-0.49, 0.49, image.shape).astype(np.float32), 0, 255)
    np.testing.assert_array_equal(cn.colour_names(near, cn_table, cell=1),
                                  cn.colour_names(image.astype(np.uint8), cn_table, cell=1))
    # 7.5 rounds up to 8, which is the next colour bin (8 // 8 = 1); 300 clips to 255.
    edge = np.array([[[7.5, 300.0, -3.0]]], np.float32)
    np.testing.assert_array_equal(cn.colour_names(edge, cn_table, cell=1)[0, 0],
                                  cn_table[1 + 32 * 31])


def test_intensity_channel_on_rgb_uses_rgb2gray(ic_table):
    image = RNG.integers(0, 256, (40, 44, 3)).astype(np.uint8)
    got = np.asarray(cn.intensity_channel(image, ic_table, cell=1))
    want = ic_table[numpy_rgb2gray_uint8(image)]
    # float32 weights: a pixel within ~1e-5 of a half may round to the neighbouring level.
    mismatched = np.any(got != want, axis=-1)
    assert mismatched.mean() <= 1e-3
    got4 = np.asarray(cn.intensity_channel(image, ic_table, cell=4))
    assert got4.shape == (10, 11, 5)
    np.testing.assert_allclose(got4, numpy_cell_mean(got, 4), rtol=1e-5, atol=1e-7)


def test_intensity_channel_on_grey_indexes_by_value(ic_table):
    image = RNG.integers(0, 256, (12, 8, 1)).astype(np.uint8)
    got = np.asarray(cn.intensity_channel(image, ic_table, cell=4))
    np.testing.assert_allclose(got, numpy_cell_mean(ic_table[image[..., 0]], 4), rtol=1e-5)


def test_grey_feature_matches_get_colorspace():
    image = RNG.integers(0, 256, (21, 26, 3)).astype(np.uint8)
    weights = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
    want = numpy_cell_mean((image / 255.0 @ weights - 0.5)[..., None], 4)
    got = np.asarray(cn.grey(image, cell=4))
    assert got.shape == (5, 6, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-6)
    single = image[..., :1]
    want_single = numpy_cell_mean(single / 255.0 - 0.5, 4)
    np.testing.assert_allclose(cn.grey(single, cell=4), want_single, atol=1e-6)


def test_tables_are_arguments_of_jitted_code(cn_table, ic_table):
    image = jnp.asarray(RNG.integers(0, 256, (1, 20, 24, 3)).astype(np.float32))

    @jax.jit
    def features(image, cn_table, ic_table):
        return (cn.colour_names(image, cn_table, cell=4),
                cn.intensity_channel(image, ic_table, cell=4), cn.grey(image, cell=4))

    names, intensity, grey = features(image, cn_table, ic_table)
    assert names.shape == (1, 5, 6, 10) and intensity.shape == (1, 5, 6, 5)
    assert grey.shape == (1, 5, 6, 1)
    assert names.dtype == intensity.dtype == grey.dtype == jnp.float32
    # The tables were not baked in: a different table gives different features.
    changed, _, _ = features(image, cn_table[::-1].copy(), ic_table)
    assert not np.allclose(changed, names)


def test_colour_names_refuse_grey_images(cn_table):
    with pytest.raises(ValueError, match="RGB"):
        cn.colour_names(np.zeros((8, 8, 1), np.uint8), cn_table)


@pytest.mark.parametrize("loader, name", [(cn.load_colour_names_table, "CNnorm.mat"),
                                          (cn.load_intensity_table, "intensityChannelNorm6.mat")])
def test_loaders_name_the_setting_when_the_file_is_missing(monkeypatch, tmp_path, loader, name):
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))
    with pytest.raises(paths.DataNotFoundError, match=paths.ENV_VAR) as error:
        loader()
    assert name in str(error.value)


def test_average_cells_is_the_block_mean():
    x = RNG.normal(size=(3, 13, 11, 2)).astype(np.float32)
    got = np.asarray(cn.average_cells(x, cell=3))
    assert got.shape == (3, 4, 3, 2)
    for k in range(3):
        np.testing.assert_allclose(got[k], numpy_cell_mean(x[k], 3), rtol=1e-5, atol=1e-6)
    assert cn.average_cells(jnp.asarray(x), cell=1).shape == x.shape
    with pytest.raises(ValueError, match="smaller than one"):
        jax.eval_shape(functools.partial(cn.average_cells, cell=16), jnp.zeros((8, 8, 1)))

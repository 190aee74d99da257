"""Tests for ctjax.ops.fourier: DFT helpers, label, window, band-limited interpolation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ctjax.ops import fourier


@pytest.mark.parametrize("hw", [(6, 8), (7, 5)])
def test_rfft2_matches_numpy_and_round_trips(hw):
    x = np.random.default_rng(0).normal(size=(2, *hw, 3)).astype(np.float32)
    xf = fourier.rfft2(x)
    assert xf.shape == (2, hw[0], hw[1] // 2 + 1, 3)
    assert xf.dtype == jnp.complex64
    np.testing.assert_allclose(xf, np.fft.rfft2(x, axes=(-3, -2)), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(fourier.irfft2(xf, hw), x, atol=1e-5)
    y = x[..., 0]
    yf = fourier.rfft2_map(y)
    np.testing.assert_allclose(yf, xf[..., 0], rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(fourier.irfft2_map(yf, hw), y, atol=1e-5)


@pytest.mark.parametrize("hw", [(8, 8), (7, 10), (9, 5)])
def test_gaussian_label_peak_and_symmetry(hw):
    h, w = hw
    sigma = 1.7
    label = np.asarray(fourier.gaussian_label(hw, sigma))
    assert label.shape == hw and label.dtype == np.float32
    assert np.unravel_index(label.argmax(), hw) == (0, 0)
    assert label[0, 0] == 1.0
    # Circular symmetry: the value at (-i, -j) equals the value at (i, j).
    np.testing.assert_array_equal(label, np.roll(label[::-1, ::-1], (1, 1), axis=(0, 1)))
    np.testing.assert_allclose(label[1, 0], np.exp(-1 / (2 * sigma**2)), rtol=1e-6)
    np.testing.assert_allclose(label[h - 2, w - 1], np.exp(-5 / (2 * sigma**2)), rtol=1e-6)

    centered = np.asarray(fourier.gaussian_label(hw, sigma, centered=True))
    assert np.unravel_index(centered.argmax(), hw) == (h // 2, w // 2)
    np.testing.assert_array_equal(np.roll(centered, (-(h // 2), -(w // 2)), axis=(0, 1)), label)


def test_gaussian_label_dtype():
    with jax.enable_x64(True):
        assert fourier.gaussian_label((4, 4), 1.0, dtype=jnp.float64).dtype == jnp.float64


@pytest.mark.parametrize("hw", [(1, 1), (5, 8), (13, 13)])
def test_hann_window_is_matlab_hanning(hw):
    window = np.asarray(fourier.hann_window(hw))
    expected = np.outer(np.hanning(hw[0] + 2)[1:-1], np.hanning(hw[1] + 2)[1:-1])
    assert window.shape == hw and window.dtype == np.float32
    np.testing.assert_allclose(window, expected, rtol=1e-6)
    assert window.min() > 0  # MATLAB convention: no zero end-points


@pytest.mark.parametrize("hw,factor", [((6, 8), (2, 3)), ((5, 7), (3, 2)), ((4, 5), (1, 4))])
def test_interpolate_keeps_coarse_samples(hw, factor):
    r = np.random.default_rng(1).normal(size=(2, 3, *hw)).astype(np.float32)
    out_hw = (hw[0] * factor[0], hw[1] * factor[1])
    up = np.asarray(fourier.interpolate(r, out_hw))
    assert up.shape == (2, 3, *out_hw) and up.dtype == np.float32
    np.testing.assert_allclose(up[..., :: factor[0], :: factor[1]], r, atol=1e-5)


@pytest.mark.parametrize("hw,out_hw", [((8, 6), (24, 18)), ((7, 6), (10, 15)), ((6, 9), (6, 9))])
def test_interpolate_reproduces_band_limited_cosines(hw, out_hw):
    h, w = hw

    def signal(rows, cols):
        # Rows/cols are positions in coarse cells; includes the Nyquist cosine of even sizes.
        ii, jj = np.meshgrid(rows, cols, indexing="ij")
        value = np.cos(2 * np.pi * (2 * ii / h + 1 * jj / w) + 0.3) + 0.5
        if h % 2 == 0:
            value += 0.7 * np.cos(np.pi * ii)
        if w % 2 == 0:
            value -= 0.4 * np.cos(np.pi * jj) * np.cos(2 * np.pi * ii / h)
        return value

    coarse = signal(np.arange(h), np.arange(w))
    fine = signal(np.arange(out_hw[0]) * h / out_hw[0], np.arange(out_hw[1]) * w / out_hw[1])
    np.testing.assert_allclose(fourier.interpolate(jnp.asarray(coarse, jnp.float32), out_hw),
                               fine, atol=1e-5)


def test_interpolate_refuses_downsampling():
    with pytest.raises(ValueError, match="only upsamples"):
        fourier.interpolate(jnp.zeros((8, 8)), (4, 8))

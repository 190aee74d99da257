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


def _series_reference(r, u, v):
    """NumPy: the inverse DFT sum_k,l R[k,l] e^{2 pi i (k u / H + l v / W)} / (H W) at
    arbitrary (u, v), frequencies in NumPy's fftfreq order (Nyquist at -N/2)."""
    h, w = r.shape[-2:]
    rf = np.fft.fft2(r)
    ky, kx = np.fft.fftfreq(h) * h, np.fft.fftfreq(w) * w
    out = np.zeros(r.shape[:-2] + (len(u), len(v)))
    for a, uu in enumerate(u):
        for b, vv in enumerate(v):
            phase = np.exp(2j * np.pi * (ky[:, None] * uu / h + kx[None, :] * vv / w))
            out[..., a, b] = np.real(np.sum(rf * phase, axis=(-2, -1))) / (h * w)
    return out


@pytest.mark.parametrize("hw", [(12, 12), (9, 10), (7, 5)])
def test_sample_periodic_matches_the_dft_series(hw):
    r = np.random.default_rng(4).normal(size=(2, *hw)).astype(np.float32)
    u = np.array([0.0, 3.0, 2.5, -1.25, 8.75])
    v = np.array([0.5, -4.0, 1.125])
    out = np.asarray(fourier.sample_periodic(jnp.asarray(r), jnp.asarray(u, jnp.float32),
                                             jnp.asarray(v, jnp.float32)))
    assert out.shape == (2, 5, 3)
    np.testing.assert_allclose(out, _series_reference(r.astype(np.float64), u, v), atol=2e-5)
    # Integer positions give back the samples (wrapping around).
    ints = fourier.sample_periodic(jnp.asarray(r), jnp.array([0.0, -1.0]), jnp.array([2.0]))
    np.testing.assert_allclose(ints[:, :, 0], r[:, [0, -1], 2], atol=1e-5)


def test_sample_periodic_hits_samples_and_interpolates_cosines():
    h = w = 12
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    r = np.cos(2 * np.pi * 2 * yy / h) + np.sin(2 * np.pi * 1 * xx / w)
    u = jnp.array([0.0, 3.0, 2.5, -1.25])
    out = fourier.sample_periodic(jnp.asarray(r[None], jnp.float32), u, u)[0]
    expect = np.cos(2 * np.pi * 2 * u[:, None] / h) + np.sin(2 * np.pi * u[None, :] / w)
    np.testing.assert_allclose(out, expect, atol=1e-4)


@pytest.mark.parametrize("hw", [(8, 10), (7, 9)])
def test_phase_shift_integer_is_a_roll_and_fractional_moves_a_cosine(hw):
    x = np.random.default_rng(5).normal(size=(*hw, 3)).astype(np.float32)
    xf = fourier.rfft2(x)
    out = fourier.irfft2(fourier.phase_shift(xf, jnp.array([2.0, -3.0]), hw), hw)
    np.testing.assert_allclose(out, np.roll(x, (2, -3), axis=(0, 1)), atol=1e-5)
    # A band-limited cosine shifted by (0.4, -1.3) cells is the cosine at the moved phase.
    h, w = hw
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    wave = lambda dy, dx: np.cos(2 * np.pi * (yy - dy) / h + 2 * np.pi * 2 * (xx - dx) / w)
    moved = fourier.irfft2(fourier.phase_shift(fourier.rfft2(wave(0, 0)[..., None]),
                                               jnp.array([0.4, -1.3]), hw), hw)[..., 0]
    np.testing.assert_allclose(moved, wave(0.4, -1.3), atol=1e-5)


def test_label_sigma_is_factor_times_target_cells():
    # 208 px patch, window 4.5 x target: the target is 46.2 px = 11.56 cells of 4 px.
    assert fourier.label_sigma(208, 4.5, 4, factor=1 / 12) == pytest.approx(208 / 4.5 / 4 / 12)
    assert fourier.label_sigma(160, 4.5, 16, factor=0.1) == pytest.approx(0.1 * 160 / 4.5 / 16)

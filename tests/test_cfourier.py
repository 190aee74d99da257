"""ECO's continuous-domain Fourier helpers against NumPy transcriptions of ECO's MATLAB code
(cfft2.m, sample_fs.m, get_reg_filter.m, tracker.m's label) and closed forms / quadrature.

Layout reminder: ours(ky, kx) = conj(ECO(-ky, -kx)); the full spectrum of a half is rebuilt
here with `_full` (independently of the library).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from ctjax.ops import cfourier as cf

RNG = np.random.default_rng(0)


# --- independent NumPy helpers -------------------------------------------------------------

def _full(half):
    """Full centred (Ho, 2 Wh - 1) spectrum of a half spectrum (last two axes)."""
    mirror = np.conj(half[..., ::-1, :0:-1])
    return np.concatenate([mirror, half], axis=-1)


def _eco_cfft2(x):
    """ECO cfft2.m for one 2-D map (full centred spectrum, even sizes padded)."""
    h, w = x.shape
    xf = np.fft.fftshift(np.fft.fft2(x))
    if h % 2 and w % 2:
        return xf
    out = np.zeros((h + 1 - h % 2, w + 1 - w % 2), complex)
    out[:h, :w] = xf
    if out.shape[0] != h:
        out[-1, :] = np.conj(out[0, ::-1])
    if out.shape[1] != w:
        out[:, -1] = np.conj(out[::-1, 0])
    return out


def _eco_to_ours(full_eco):
    """compact_fourier_coeff (kx <= 0) then conjugate mirror to our kx >= 0 half."""
    half_eco = full_eco[:, :(full_eco.shape[1] + 1) // 2]
    return np.conj(half_eco[::-1, ::-1])


def _eco_sample_fs(full, grid=None):
    """ECO sample_fs.m on a full centred spectrum (2-D)."""
    sz = np.array(full.shape)
    if grid is None or tuple(grid) == tuple(sz):
        return np.prod(sz) * np.real(np.fft.ifft2(np.fft.ifftshift(full)))
    grid = np.array(grid)
    tot = grid - sz
    pad = np.ceil(tot / 2).astype(int)
    xp = np.pad(full, ((pad[0], pad[0]), (pad[1], pad[1])))
    xp = xp[:xp.shape[0] - tot[0] % 2, :xp.shape[1] - tot[1] % 2]
    return np.prod(grid) * np.real(np.fft.ifft2(np.fft.ifftshift(xp)))


def _eco_reg_filter(sz, target_sz, mn=1e-4, edge=1e-2, power=2, thr=0.05):
    """ECO get_reg_filter.m, line by line (the cropped real kernel)."""
    reg_scale = 0.5 * np.asarray(target_sz, float)
    wrg = np.arange(-(sz[0] - 1) / 2, (sz[0] - 1) / 2 + 0.5)
    wcg = np.arange(-(sz[1] - 1) / 2, (sz[1] - 1) / 2 + 0.5)
    wrs, wcs = np.meshgrid(wrg, wcg, indexing="ij")
    reg_window = (edge - mn) * (np.abs(wrs / reg_scale[0]) ** power
                                + np.abs(wcs / reg_scale[1]) ** power) + mn
    dft = np.fft.fft2(reg_window) / np.prod(sz)
    dft[np.abs(dft) < thr * np.max(np.abs(dft))] = 0
    sparse = np.real(np.fft.ifft2(dft))
    dft[0, 0] = dft[0, 0] - np.prod(sz) * sparse.min() + mn
    dft = np.fft.fftshift(dft)
    return np.real(dft[~np.all(dft == 0, axis=1)][:, ~np.all(dft == 0, axis=0)])


def _cubic_kernel(u, a):
    u = abs(u)
    if u <= 1:
        return (a + 2) * u ** 3 - (a + 3) * u ** 2 + 1
    if u < 2:
        return a * u ** 3 - 5 * a * u ** 2 + 8 * a * u - 4 * a
    return 0.0


def _random_half(shape):
    return (RNG.normal(size=shape) + 1j * RNG.normal(size=shape)).astype(np.complex64)


# --- cfft2, full_inner, symmetrize -----------------------------------------------------------

@pytest.mark.parametrize("hw", [(5, 7), (6, 7), (5, 8), (6, 8)])
def test_cfft2_matches_eco_cfft2(hw):
    x = RNG.normal(size=(2,) + hw + (3,)).astype(np.float32)
    ours = np.asarray(cf.cfft2(jnp.asarray(x)))
    assert ours.shape == (2, hw[0] + 1 - hw[0] % 2, hw[1] // 2 + 1, 3)
    assert ours.dtype == np.complex64
    for n in range(2):
        for c in range(3):
            ref = _eco_to_ours(_eco_cfft2(x[n, :, :, c].astype(np.float64)))
            np.testing.assert_allclose(ours[n, :, :, c], ref, atol=2e-5 * np.abs(ref).max())


def test_full_inner_is_the_full_spectrum_inner_product():
    a, b = _random_half((2, 7, 5, 3)), _random_half((2, 7, 5, 3))
    got = np.asarray(cf.full_inner(jnp.asarray(a), jnp.asarray(b)))
    fa, fb = _full(np.moveaxis(a, -1, 1)), _full(np.moveaxis(b, -1, 1))
    ref = np.real(np.sum(fa * np.conj(fb), axis=(1, 2, 3)))
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_symmetrize_projects_onto_spectra_of_real_maps():
    h = _random_half((9, 5, 2)).astype(np.complex128)
    got = np.asarray(cf.symmetrize(jnp.asarray(h.astype(np.complex64))))
    # Independent route: full spectrum -> complex map -> its real part -> spectrum again.
    full = _full(np.moveaxis(h, -1, 0))
    real_map = np.real(np.fft.ifft2(np.fft.ifftshift(full, axes=(-2, -1))))
    ref_full = np.fft.fftshift(np.fft.fft2(real_map), axes=(-2, -1))
    ref = np.moveaxis(ref_full[:, :, 4:], 0, -1)  # the kx >= 0 columns (Wo = 9)
    np.testing.assert_allclose(got, ref, atol=1e-5)


# --- interpolation -------------------------------------------------------------------------

@pytest.mark.parametrize("f", [0.0, 1e-3, 0.02, 1 / 7, 0.25, 0.3, 0.5, 0.8, 1.3, 2.7])
def test_cubic_spline_fourier_matches_quadrature(f):
    a = -0.75
    ref = 2 * sum(integrate.quad(lambda u: _cubic_kernel(u, a) * np.cos(2 * np.pi * f * u),
                                 lo, lo + 1, epsabs=1e-13, epsrel=1e-13)[0] for lo in (0, 1))
    assert abs(float(cf.cubic_spline_fourier(np.array(f), a)) - ref) < 1e-12
    # float32 (jit path) too, also at the small f where the closed form cancels.
    assert abs(float(jax.jit(lambda g: cf.cubic_spline_fourier(g, a))(jnp.float32(f))) - ref) < 1e-6


def _interp_coeffs_by_quadrature(n, centering, a=-0.75, nodes=12):
    """A[k, m] = (1/N) int_0^N kper(t - m - c) exp(-i 2 pi k t / N) dt for k = -(N-1)/2..,
    kper the N-periodic cubic kernel, c = 1/2 with centring; Gauss-Legendre on half cells
    (the integrand is a cubic times a smooth exponential on each)."""
    g, w = np.polynomial.legendre.leggauss(nodes)
    edges = np.arange(2 * n + 1) / 2
    t = ((edges[:-1, None] + edges[1:, None]) / 2 + g[None, :] / 4).ravel()
    wt = np.repeat(w[None, :] / 4, 2 * n, axis=0).ravel()
    c = 0.5 if centering else 0.0
    ks = np.arange(n) - (n - 1) // 2
    out = np.zeros((n, n), complex)
    for m in range(n):
        d = (t - m - c + n / 2) % n - n / 2   # wrapped distance, |d| <= N/2
        kv = np.array([_cubic_kernel(v, a) for v in d])
        out[:, m] = (np.exp(-2j * np.pi * ks[:, None] * t[None, :] / n) * (wt * kv)).sum(1) / n
    return out


@pytest.mark.parametrize("centering", [True, False])
def test_interpolation_gives_the_continuous_interpolant_coefficients(centering):
    hw = (7, 9)
    x = RNG.normal(size=hw)
    ay = _interp_coeffs_by_quadrature(hw[0], centering)
    ax = _interp_coeffs_by_quadrature(hw[1], centering)
    ref_full = ay @ x @ ax.T                      # (Ho, Wo) coefficients of J{x}
    with jax.enable_x64(True):
        iy, ix = cf.interp_fourier(hw, centering=centering, dtype=jnp.complex128)
        got = np.asarray(cf.interpolate(cf.cfft2(jnp.asarray(x)[..., None]), iy, ix))[..., 0]
    np.testing.assert_allclose(got, ref_full[:, (hw[1] - 1) // 2:], atol=1e-12)
    # The default complex64 tables agree with the float64 ones.
    iy32, ix32 = cf.interp_fourier(hw, centering=centering)
    assert iy32.dtype == jnp.complex64 and iy32.shape == (7, 1) and ix32.shape == (1, 5)
    np.testing.assert_allclose(np.asarray(iy32), np.asarray(iy), rtol=1e-6)


def test_interp_fourier_matches_eco_formula_and_rejects_even_sizes():
    sz = (13, 7)
    iy, ix = cf.interp_fourier(sz, a=-0.5)
    k1 = np.arange(-(sz[0] - 1) / 2, (sz[0] - 1) / 2 + 0.5)
    k2 = np.arange(-(sz[1] - 1) / 2, (sz[1] - 1) / 2 + 0.5)

    def eco_bf(f, a):  # cubic_spline_fourier.m, complex-exponential form
        f = np.where(f == 0, 1e-30, f)
        e = lambda s: np.exp(s * np.pi * f * 1j)  # noqa: E731
        bf = -(-12 * a + 12 * e(-2) + 12 * e(2) + 6 * a * e(-4) + 6 * a * e(4)
               + f * (np.pi * e(-2) * 12j) - f * (np.pi * e(2) * 12j)
               + a * f * (np.pi * e(-2) * 16j) - a * f * (np.pi * e(2) * 16j)
               + a * f * (np.pi * e(-4) * 4j) - a * f * (np.pi * e(4) * 4j) - 24
               ) / (16 * f ** 4 * np.pi ** 4)
        return np.where(np.abs(f) < 1e-20, 1, bf)

    i1 = np.real(eco_bf(k1 / sz[0], -0.5) / sz[0]) * np.exp(-1j * np.pi / sz[0] * k1)
    i2 = np.real(eco_bf(k2 / sz[1], -0.5) / sz[1]) * np.exp(-1j * np.pi / sz[1] * k2)
    np.testing.assert_allclose(np.asarray(iy)[:, 0], i1, atol=1e-7)
    # Our kx >= 0 half = conj of ECO's kx <= 0 half mirrored; the table is Hermitian.
    np.testing.assert_allclose(np.asarray(ix)[0], np.conj(i2[:4][::-1]), atol=1e-7)
    np.testing.assert_allclose(np.asarray(ix)[0], i2[3:], atol=1e-7)
    with pytest.raises(ValueError, match="odd"):
        cf.interp_fourier((12, 7))


# --- label ---------------------------------------------------------------------------------

def _periodic_gaussian(n, period, sigma, images=6):
    t = np.arange(n) * period / n
    return sum(np.exp(-(t - m * period) ** 2 / (2 * sigma ** 2))
               for m in range(-images, images + 1))


def test_label_samples_to_the_periodic_gaussian():
    sz, out_sz, sigma = (31, 27), (31, 27), np.array([2.1, 1.7])
    yf = np.asarray(cf.gaussian_label_fs(sz, sigma, out_sz))
    assert yf.shape == (31, 14) and yf.dtype == np.float32
    for grid in [None, (40, 33)]:
        got = np.asarray(cf.sample_fs(jnp.asarray(yf), grid))
        g = out_sz if grid is None else grid
        ref = np.outer(_periodic_gaussian(g[0], out_sz[0], sigma[0]),
                       _periodic_gaussian(g[1], out_sz[1], sigma[1]))
        np.testing.assert_allclose(got, ref, atol=2e-6)


def test_label_matches_eco_tracker_and_small_blocks_share_it():
    # tracker.m: sig_y = sqrt(prod(floor(base_target_sz))) * factor * output_sz / img_support_sz
    base, factor, support, out_sz, small = np.array([61.7, 40.2]), 1 / 12, 250, (63, 63), (15, 15)
    sig = np.sqrt(np.prod(np.floor(base))) * factor * np.array(out_sz) / support
    ky = np.arange(-(small[0] - 1) // 2, (small[0] - 1) // 2 + 1)
    kx_eco = np.arange(-(small[1] - 1) // 2, 1)
    yf_y = (np.sqrt(2 * np.pi) * sig[0] / out_sz[0]
            * np.exp(-2 * (np.pi * sig[0] * ky / out_sz[0]) ** 2))
    yf_x = (np.sqrt(2 * np.pi) * sig[1] / out_sz[1]
            * np.exp(-2 * (np.pi * sig[1] * kx_eco / out_sz[1]) ** 2))
    yf_eco = np.outer(yf_y, yf_x)                 # ECO's kx <= 0 half
    got = jax.jit(lambda s: cf.gaussian_label_fs(small, s, out_sz))(jnp.asarray(sig))
    np.testing.assert_allclose(np.asarray(got), np.conj(yf_eco[::-1, ::-1]), rtol=1e-5)
    big = cf.gaussian_label_fs(out_sz, sig, out_sz)
    np.testing.assert_allclose(np.asarray(cf.crop_from(big, small)), np.asarray(got), rtol=1e-6)


# --- sample_fs, pad_to / crop_from, shift_sample -------------------------------------------

@pytest.mark.parametrize("grid", [None, (9, 13), (12, 14), (11, 16), (10, 11)])
def test_sample_fs_matches_eco_sample_fs(grid):
    half = _random_half((3, 9, 6))
    half = np.asarray(cf.symmetrize(jnp.asarray(half)[..., None]))[..., 0]  # Hermitian DC column
    got = np.asarray(cf.sample_fs(jnp.asarray(half), grid))
    for s in range(3):
        ref = _eco_sample_fs(_full(half[s].astype(np.complex128)), grid)
        np.testing.assert_allclose(got[s], ref, atol=2e-4)


def test_sample_fs_takes_the_real_part_and_checks_the_grid():
    half = _random_half((9, 6))  # non-Hermitian kx = 0 column
    full = _full(half.astype(np.complex128))
    ref = np.prod(full.shape) * np.real(np.fft.ifft2(np.fft.ifftshift(full)))
    np.testing.assert_allclose(np.asarray(cf.sample_fs(jnp.asarray(half))), ref, atol=2e-4)
    # Channel axis last: the axes keyword.
    got = cf.sample_fs(jnp.asarray(np.stack([half, 2 * half], -1)), axes=(-3, -2))
    np.testing.assert_allclose(np.asarray(got)[..., 1], 2 * ref, atol=4e-4)
    with pytest.raises(ValueError, match="smaller"):
        cf.sample_fs(jnp.asarray(half), (9, 10))


def test_pad_to_and_crop_from():
    small = _random_half((2, 7, 4))            # full (7, 7)
    big = _random_half((2, 13, 9))             # full (13, 17)
    padded = np.asarray(cf.pad_to(jnp.asarray(small), (13, 17)))
    ref = np.zeros((2, 13, 9), np.complex64)
    pad_sz = ((13 - 7) // 2, (17 - 7) // 2)    # ECO's pad_sz on the full grid
    ref_full = np.zeros((2, 13, 17), complex)
    ref_full[:, pad_sz[0]:13 - pad_sz[0], pad_sz[1]:17 - pad_sz[1]] = _full(small)
    ref = ref_full[..., 8:]
    np.testing.assert_allclose(padded, ref, atol=0)
    np.testing.assert_allclose(np.asarray(cf.crop_from(jnp.asarray(padded), (7, 7))), small)
    # Adjoint in the full-spectrum inner product.
    a, b = jnp.asarray(small), jnp.asarray(big)
    lhs = cf.full_inner(cf.pad_to(a, (13, 17))[..., None], b[..., None])
    rhs = cf.full_inner(a[..., None], cf.crop_from(b, (7, 7))[..., None])
    np.testing.assert_allclose(np.asarray(lhs), np.asarray(rhs), rtol=1e-5)
    # Zero-padding the spectrum is upsampling the same function.
    np.testing.assert_allclose(np.asarray(cf.sample_fs(cf.pad_to(jnp.asarray(small), (13, 17)))),
                               np.asarray(cf.sample_fs(jnp.asarray(small), (13, 17))), atol=1e-5)
    # NHWC through the axes keyword; sizes are full odd sizes.
    nhwc = cf.pad_to(jnp.asarray(small)[..., None], (13, 17), axes=(-3, -2))
    assert nhwc.shape == (2, 13, 9, 1)
    with pytest.raises(ValueError, match="odd"):
        cf.pad_to(jnp.asarray(small), (13, 16))
    with pytest.raises(ValueError):
        cf.crop_from(jnp.asarray(small), (9, 7))


@pytest.mark.parametrize("hw", [(7, 9), (8, 6)])
def test_shift_sample_by_whole_cells_is_roll(hw):
    x = RNG.normal(size=(2,) + hw + (3,)).astype(np.float32)
    d = np.array([2, -3])
    xf = cf.cfft2(jnp.asarray(x))
    shift = jax.jit(lambda s: 2 * jnp.pi * s / jnp.asarray(hw, jnp.float32))(
        jnp.asarray(d, jnp.float32))
    got = cf.shift_sample(xf, shift, (xf.shape[1], 2 * xf.shape[2] - 1))
    ref = cf.cfft2(jnp.asarray(np.roll(x, -d, axis=(1, 2))))
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=2e-4)
    with pytest.raises(ValueError, match="does not match"):
        cf.shift_sample(xf, shift, (xf.shape[1], 2 * xf.shape[2]))


def test_shift_sample_subcell_evaluates_the_series_at_t_plus_d():
    half = np.asarray(cf.symmetrize(jnp.asarray(_random_half((7, 5)))[..., None]))[..., 0]
    d = np.array([0.37, -1.61])  # cells; the grid is (7, 9) cells per period
    got = cf.sample_fs(cf.shift_sample(jnp.asarray(half), 2 * np.pi * d / (7, 9), axes=(-2, -1)))
    full = _full(half.astype(np.complex128))
    ky = np.arange(-3, 4)[:, None, None, None]
    kx = np.arange(-4, 5)[None, :, None, None]
    t = (np.stack(np.meshgrid(np.arange(7), np.arange(9), indexing="ij"))[:, None, None]
         + d[:, None, None, None, None])
    terms = full[:, :, None, None] * np.exp(2j * np.pi * (ky * t[0] / 7 + kx * t[1] / 9))
    ref = np.real(np.sum(terms, (0, 1)))
    np.testing.assert_allclose(np.asarray(got), ref, atol=2e-4)


# --- regularisation kernel -----------------------------------------------------------------

@pytest.mark.parametrize("support,target", [
    ((250, 250), (55.0, 55.0)), ((217, 217), (20.3, 81.7)), ((249, 249), (90.0, 31.0)),
    ((200, 300), (44.4, 12.0)), ((313, 281), (70.2, 69.9)), ((250, 250), (9.0, 120.0))])
def test_reg_filter_matches_eco_get_reg_filter(support, target):
    eco = _eco_reg_filter(support, target)
    assert eco.shape[0] % 2 == 1 and eco.shape[1] % 2 == 1 and max(eco.shape) <= 7
    kernel, energy = cf.reg_filter(support, target)
    assert kernel.shape == (7, 7) and kernel.dtype == np.float32
    r0, r1 = (7 - eco.shape[0]) // 2, (7 - eco.shape[1]) // 2
    ref = np.zeros((7, 7))
    ref[r0:r0 + eco.shape[0], r1:r1 + eco.shape[1]] = eco
    np.testing.assert_allclose(kernel, ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(energy, np.sum(eco ** 2), rtol=1e-6)   # ECO's reg_energy
    if support[0] in (217, 200):
        # Inside a jitted init (traced target size): the same kernel in float32.
        traced = jax.jit(lambda t: cf.reg_filter(support, t))(jnp.asarray(target, jnp.float32))
        np.testing.assert_allclose(np.asarray(traced.kernel), ref, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("support,target", [
    ((208, 208), (40.0, 16.0)), ((212, 212), (30.0, 30.0)), ((217, 217), (20.3, 81.7)),
    ((250, 250), (9.0, 120.0))])
def test_reg_filter_kernel_is_a_cross(support, target):
    """The window is a function of y plus one of x, so its DFT is zero off the axes `kx = 0`,
    `ky = 0`: ECO's solver may convolve with the centre row and column only
    (`eco_filter.CrossKernel`). Host and traced paths."""
    host = cf.reg_filter(support, target).kernel
    traced = jax.jit(lambda t: cf.reg_filter(support, t))(jnp.asarray(target, jnp.float32))
    for k in (np.asarray(host), np.asarray(traced.kernel)):
        off = np.ones(k.shape, bool)
        off[k.shape[0] // 2, :] = off[:, k.shape[1] // 2] = False
        assert np.all(k[off] == 0)
        assert np.count_nonzero(k) >= 3


def test_reg_filter_kernel_bound():
    with pytest.raises(ValueError, match="max_kernel"):
        cf.reg_filter((250, 250), (55.0, 55.0), max_kernel=(3, 3))
    traced = jax.jit(lambda t: cf.reg_filter((250, 250), t, max_kernel=(3, 3)))(
        jnp.array([55.0, 55.0]))
    assert np.all(np.isnan(np.asarray(traced.kernel)))
    # A wider support threshold leaves a bigger kernel: a bigger static size holds it.
    eco = _eco_reg_filter((250, 250), (55.0, 55.0), thr=0.01)
    kernel, _ = cf.reg_filter((250, 250), (55.0, 55.0), reg_sparsity_threshold=0.01,
                              max_kernel=(15, 15))
    r = (15 - eco.shape[0]) // 2
    np.testing.assert_allclose(kernel[r:r + eco.shape[0], r:r + eco.shape[1]], eco,
                               rtol=1e-6, atol=1e-9)
    assert np.sum(kernel != 0) == np.sum(eco != 0)

"""ECO's Newton peak search against closed forms (Gaussians with a known sub-cell maximum)
and NumPy evaluations / optimisation of the full Fourier series."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from ctjax.ops import peak

HO, WO = 25, 31
WH = (WO + 1) // 2
KY = np.arange(HO) - (HO - 1) // 2
KX = np.arange(WH)


def _gaussian_fs(t0, cov, amp=1.0):
    """Half-spectrum coefficients of amp * the periodic Gaussian exp(-d' cov^-1 d / 2) centred
    at t0 = (y, x) cells (Poisson formula: its Fourier transform, sampled)."""
    nu = np.stack(np.meshgrid(KY / HO, KX / WO, indexing="ij"), -1)  # cycles per cell
    quad = np.einsum("hwi,ij,hwj->hw", nu, np.asarray(cov, float), nu)
    norm = 2 * np.pi * np.sqrt(np.linalg.det(cov)) / (HO * WO)
    phase = np.exp(-2j * np.pi * (nu[..., 0] * t0[0] + nu[..., 1] * t0[1]))
    return amp * norm * np.exp(-2 * np.pi ** 2 * quad) * phase


def _series(half, t):
    """Re of the full series at t = (y, x) cells, (N, 2) points."""
    t = np.atleast_2d(t)
    coef = np.concatenate([np.conj(half[::-1, :0:-1]), half], 1)  # c(-k) = conj c(k)
    kx = np.arange(-(WH - 1), WH)
    e = np.exp(2j * np.pi * (KY[None, :, None] * t[:, 0, None, None] / HO
                             + kx[None, None, :] * t[:, 1, None, None] / WO))
    return np.real(np.sum(coef[None] * e, (1, 2)))


def _wrap(d, n):
    return (d + n / 2) % n - n / 2


@pytest.mark.parametrize("t0,cov", [
    ((3.3, -7.71), [[4.0, 0.0], [0.0, 4.0]]),
    ((-12.4, 15.45), [[6.0, 0.0], [0.0, 2.5]]),       # near the wrap-around edge
    ((0.49, 0.51), [[5.0, 3.0], [3.0, 4.0]]),          # tilted: needs the mixed derivative
    ((7.77, -0.18), [[3.0, -2.2], [-2.2, 6.0]]),
])
def test_recovers_a_subcell_gaussian_maximum(t0, cov):
    cf = _gaussian_fs(t0, cov)
    got = jax.jit(peak.newton_peak)(jnp.asarray(cf[None], jnp.complex64))
    assert int(got.scale) == 0
    np.testing.assert_allclose(np.asarray(got.disp), _wrap(np.asarray(t0), np.array([HO, WO])),
                               atol=1e-3)
    np.testing.assert_allclose(float(got.score), _series(cf, t0)[0], rtol=1e-5)
    assert got.disp.dtype == jnp.float32 and got.scale.dtype == jnp.int32


def test_picks_the_best_scale():
    cfs = np.stack([_gaussian_fs((2.2, -3.1), [[4, 1], [1, 5]], 1.0),
                    _gaussian_fs((-5.6, 9.3), [[5, -1], [-1, 4]], 1.2),
                    _gaussian_fs((1.1, 0.3), [[4, 0], [0, 4]], 1.1)])
    got = peak.newton_peak(jnp.asarray(cfs, jnp.complex64), iterations=5)
    assert int(got.scale) == 1
    np.testing.assert_allclose(np.asarray(got.disp), [-5.6, 9.3], atol=1e-3)
    np.testing.assert_allclose(float(got.score), _series(cfs[1], (-5.6, 9.3))[0], rtol=1e-5)


def test_grid_search_alone_is_the_sampled_maximum():
    rng = np.random.default_rng(1)
    cf = _gaussian_fs((4.0, -6.0), [[9, 2], [2, 7]]) * 0.5
    cf = cf + 0.02 * (rng.normal(size=cf.shape) + 1j * rng.normal(size=cf.shape)) * np.exp(
        -0.01 * (KY[:, None] ** 2 + KX[None, :] ** 2))
    cf[:, 0] = 0.5 * (cf[:, 0] + np.conj(cf[::-1, 0]))  # Hermitian kx = 0 column
    grid = np.stack(np.meshgrid(np.arange(HO), np.arange(WO), indexing="ij"), -1).reshape(-1, 2)
    vals = _series(cf, grid)
    best = grid[np.argmax(vals)]
    got = peak.newton_peak(jnp.asarray(cf[None], jnp.complex64), iterations=0)
    np.testing.assert_allclose(np.asarray(got.disp), _wrap(best.astype(float), np.array([HO, WO])),
                               atol=1e-4)
    np.testing.assert_allclose(float(got.score), vals.max(), rtol=1e-5)


def test_matches_a_numerical_maximisation_of_a_non_gaussian_series():
    rng = np.random.default_rng(2)
    cf = _gaussian_fs((-2.3, 5.8), [[5, 1.5], [1.5, 3]])
    cf = cf + 0.004 * (rng.normal(size=cf.shape) + 1j * rng.normal(size=cf.shape)) * np.exp(
        -0.02 * (KY[:, None] ** 2 + KX[None, :] ** 2))
    cf[:, 0] = 0.5 * (cf[:, 0] + np.conj(cf[::-1, 0]))
    start = np.array([-2.3, 5.8])
    res = optimize.minimize(lambda t: -_series(cf, t)[0], start, method="Nelder-Mead",
                            options={"xatol": 1e-7, "fatol": 1e-12, "maxiter": 4000})
    assert np.linalg.norm(res.x - start) > 0.01  # the perturbation did move the maximum
    got = peak.newton_peak(jnp.asarray(cf[None], jnp.complex64))
    np.testing.assert_allclose(np.asarray(got.disp), res.x, atol=1e-3)
    np.testing.assert_allclose(float(got.score), -res.fun, rtol=1e-5)


def test_degenerate_response_keeps_the_grid_maximum_and_bad_shapes_raise():
    got = peak.newton_peak(jnp.zeros((2, 5, 4), jnp.complex64))  # singular Hessian -> NaN step
    assert int(got.scale) == 0 and float(got.score) == 0.0
    np.testing.assert_array_equal(np.asarray(got.disp), [0.0, 0.0])
    with pytest.raises(ValueError, match="S, Ho, Wh"):
        peak.newton_peak(jnp.zeros((5, 4), jnp.complex64))

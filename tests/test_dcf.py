"""Tests for ctjax.ops.dcf against an independent NumPy spatial-domain ridge regression."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ctjax.ops import dcf, fourier


def _circulant_data(x):
    """Rows A[τ] = x[p + τ] (circular) flattened over (p, d): A is (H W, H W D)."""
    h, w, _ = x.shape
    return np.stack([np.roll(x, (-ty, -tx), axis=(0, 1)).ravel()
                     for ty in range(h) for tx in range(w)])


def _numpy_ridge(x, y, z, lam_spatial):
    """Solves (AᵀA + λ' I) w = Aᵀ y directly; returns the filter and its response on z."""
    a = _circulant_data(x)
    w = np.linalg.solve(a.T @ a + lam_spatial * np.eye(a.shape[1]), a.T @ y.ravel())
    response = (_circulant_data(z) @ w).reshape(y.shape)
    return w.reshape(x.shape), response, a


def _spectra(x, z, y):
    return fourier.rfft2(x), fourier.rfft2(z), fourier.rfft2_map(y)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("shape", [(6, 6, 2), (7, 8, 3), (8, 7, 2)])
def test_matches_spatial_ridge_regression(shape, normalize):
    h, w, d = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(size=shape)
    z = x + 0.5 * rng.normal(size=shape)
    y = np.asarray(fourier.gaussian_label((h, w), 1.2), np.float64)
    lam = 1e-3 if normalize else 0.1
    lam_spatial = h * w * d * lam if normalize else lam  # λ' = M N D λ with normalisation
    w_ref, r_ref, a = _numpy_ridge(x, y, z, lam_spatial)

    xf, zf, yf = _spectra(jnp.asarray(x, jnp.float32), jnp.asarray(z, jnp.float32),
                          jnp.asarray(y, jnp.float32))
    hw = (h, w)
    alphaf = dcf.dual_filter(xf, yf, lam=lam, normalize=normalize, hw=hw)
    terms = dcf.filter_terms(xf, yf, normalize=normalize, hw=hw)
    r_dual = dcf.dual_response(alphaf, xf, zf, hw=hw, normalize=normalize)
    r_primal = dcf.primal_response(terms, zf, lam=lam, hw=hw)
    w_ours = np.asarray(dcf.spatial_filter(terms, lam=lam, hw=hw), np.float64)

    tol = 1e-5 * np.abs(r_ref).max()
    assert r_dual.shape == (h, w) and r_dual.dtype == jnp.float32
    np.testing.assert_allclose(r_dual, r_ref, atol=tol)
    np.testing.assert_allclose(r_primal, r_ref, atol=tol)
    np.testing.assert_allclose(w_ours, w_ref, atol=1e-5 * np.abs(w_ref).max())
    # The Fourier-domain filter itself satisfies the normal equations.
    lhs = (a.T @ a + lam_spatial * np.eye(a.shape[1])) @ w_ours.ravel()
    rhs = a.T @ y.ravel()
    assert np.linalg.norm(lhs - rhs) < 1e-5 * np.linalg.norm(rhs)


def test_batched_matches_per_example_ridge():
    h, w, d, lam = 6, 7, 2, 1e-3
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, h, w, d))
    z = rng.normal(size=(2, h, w, d))
    y = np.asarray(fourier.gaussian_label((h, w), 1.0), np.float64)
    xf, zf, yf = _spectra(jnp.asarray(x, jnp.float32), jnp.asarray(z, jnp.float32),
                          jnp.asarray(y, jnp.float32))
    alphaf = dcf.dual_filter(xf, yf, lam=lam, hw=(h, w))  # yf broadcasts over the batch
    response = dcf.dual_response(alphaf, xf, zf, hw=(h, w))
    assert response.shape == (2, h, w)
    for b in range(2):
        _, r_ref, _ = _numpy_ridge(x[b], y, z[b], h * w * d * lam)
        np.testing.assert_allclose(response[b], r_ref, atol=1e-5 * np.abs(r_ref).max())


@pytest.mark.parametrize("normalize", [True, False])
def test_dual_and_primal_forms_agree(normalize):
    hw, lam = (13, 13), 1e-4
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(3, *hw, 8)), jnp.float32)
    z = jnp.asarray(rng.normal(size=(3, *hw, 8)), jnp.float32)
    xf, zf, yf = _spectra(x, z, fourier.gaussian_label(hw, 1.3))
    alphaf = dcf.dual_filter(xf, yf, lam=lam, normalize=normalize, hw=hw)
    r_dual = dcf.dual_response(alphaf, xf, zf, hw=hw, normalize=normalize)
    terms = dcf.filter_terms(xf, yf, normalize=normalize, hw=hw)
    assert terms.numf.shape == (3, 13, 7, 8) and terms.denf.shape == (3, 13, 7)
    assert terms.numf.dtype == jnp.complex64
    r_primal = dcf.primal_response(terms, zf, lam=lam, hw=hw)
    np.testing.assert_allclose(r_primal, r_dual, atol=1e-5 * float(jnp.abs(r_dual).max()))


def _template(hw=(16, 16), d=4, seed=5):
    x = jnp.asarray(np.random.default_rng(seed).normal(size=(*hw, d)), jnp.float32)
    yf = fourier.rfft2_map(fourier.gaussian_label(hw, 1.5))
    xf = fourier.rfft2(x)
    return x, xf, dcf.dual_filter(xf, yf, lam=1e-3, hw=hw)


@pytest.mark.parametrize("dy,dx", [(3, -2), (-5, 7), (-1, -1), (8, 0), (0, -8), (-7, 4)])
def test_circular_shift_moves_peak_by_same_shift(dy, dx):
    hw = (16, 16)
    x, xf, alphaf = _template(hw)
    peak = jax.jit(dcf.subcell_peak)
    shift0, value0 = peak(dcf.dual_response(alphaf, xf, xf, hw=hw))
    np.testing.assert_allclose(shift0, [0.0, 0.0], atol=0.05)
    z = jnp.roll(x, (dy, dx), axis=(-3, -2))
    shift, value = peak(dcf.dual_response(alphaf, xf, fourier.rfft2(z), hw=hw))
    # Displacements are reported in (-H/2, H/2]: a roll by -8 of 16 cells reads as +8.
    expected = [d + 16 if d <= -8 else d for d in (dy, dx)]
    np.testing.assert_allclose(shift, np.asarray(shift0) + expected, atol=1e-3)
    np.testing.assert_allclose(value, value0, rtol=1e-4)


def test_subcell_peak_recovers_offset_of_sampled_gaussian():
    hw = (15, 20)
    truth = np.array([[[2.3, -3.7], [-0.45, 0.2]], [[7.3, 9.6], [-6.8, -0.05]]])  # (2, 2, 2)

    def wrapped(n, centre):  # circular distance of each index from a real-valued centre
        return (np.arange(n) - centre + n / 2) % n - n / 2

    rows = wrapped(hw[0], truth[..., 0:1])[..., :, None]
    cols = wrapped(hw[1], truth[..., 1:2])[..., None, :]
    maps = np.exp(-(rows**2 + cols**2) / (2 * 2.0**2))
    shift, value = dcf.subcell_peak(jnp.asarray(maps, jnp.float32))
    assert shift.shape == (2, 2, 2) and shift.dtype == jnp.float32 and value.shape == (2, 2)
    np.testing.assert_allclose(shift, truth, atol=0.05)
    np.testing.assert_allclose(value, maps.reshape(2, 2, -1).max(-1), rtol=1e-6)


def test_subcell_peak_displacement_convention_and_flat_map():
    even = jnp.zeros((8, 6)).at[4, 5].set(1.0)  # index 4 of 8 -> +4, index 5 of 6 -> -1
    shift, _ = dcf.subcell_peak(even)
    np.testing.assert_array_equal(shift, [4.0, -1.0])
    odd = jnp.zeros((7, 7)).at[3, 4].set(1.0)
    np.testing.assert_array_equal(dcf.subcell_peak(odd)[0], [3.0, -3.0])
    shift, value = dcf.subcell_peak(jnp.ones((5, 4)))
    np.testing.assert_array_equal(shift, [0.0, 0.0])
    assert value == 1.0


def test_subcell_peak_plateau_gives_half_cell():
    # A two-cell plateau puts the vertex exactly half-way between the two cells.
    r = jnp.zeros((6, 6)).at[0, 0].set(1.0).at[0, 1].set(1.0)
    shift, _ = dcf.subcell_peak(r)
    np.testing.assert_allclose(shift, [0.0, 0.5])


def test_parabola_refinement_is_clipped_and_safe():
    # At a true argmax |offset| <= 0.5 already; the clip guards rounding. Off-peak triples
    # show it acting: the vertex of (2, 1.5, 0) lies 1 cell to the left.
    left = jnp.array([2.0, 0.0, 1.0, 1.0])
    mid = jnp.array([1.5, 1.5, 1.0, 0.0])
    right = jnp.array([0.0, 2.0, 1.0, 1.0])  # ..., flat, convex: no refinement
    np.testing.assert_allclose(dcf._parabola_vertex(left, mid, right), [-0.5, 0.5, 0.0, 0.0])


def test_linear_update_on_filter_terms():
    rng = np.random.default_rng(6)
    hw = (6, 7)
    old = dcf.filter_terms(fourier.rfft2(jnp.asarray(rng.normal(size=(*hw, 2)), jnp.float32)),
                           fourier.rfft2_map(fourier.gaussian_label(hw, 1.0)), hw=hw)
    new = dcf.filter_terms(fourier.rfft2(jnp.asarray(rng.normal(size=(*hw, 2)), jnp.float32)),
                           fourier.rfft2_map(fourier.gaussian_label(hw, 1.0)), hw=hw)
    mixed = dcf.linear_update(old, new, rate=0.25)
    assert isinstance(mixed, dcf.FilterTerms)
    np.testing.assert_allclose(mixed.numf, 0.75 * old.numf + 0.25 * new.numf, rtol=1e-6)
    np.testing.assert_allclose(mixed.denf, 0.75 * old.denf + 0.25 * new.denf, rtol=1e-6)
    np.testing.assert_allclose(dcf.linear_update(old, new, rate=0.0).numf, old.numf)
    np.testing.assert_allclose(dcf.linear_update(old, new, rate=1.0).denf, new.denf)


def test_response_loss_per_example():
    label = fourier.gaussian_label((5, 6), 1.0)
    response = jnp.stack([label, label + 0.5])
    loss = dcf.response_loss(response, label)
    assert loss.shape == (2,)
    np.testing.assert_allclose(loss, [0.0, 30 * 0.25], rtol=1e-6)


def _dual_pipeline(x, z, y, hw, lam):
    xf = fourier.rfft2(x)
    alphaf = dcf.dual_filter(xf, fourier.rfft2_map(y), lam=lam, hw=hw)
    return dcf.dual_response(alphaf, xf, fourier.rfft2(z), hw=hw)


def _primal_pipeline(x, z, y, hw, lam):
    terms = dcf.filter_terms(fourier.rfft2(x), fourier.rfft2_map(y), hw=hw)
    return dcf.primal_response(terms, fourier.rfft2(z), lam=lam, hw=hw)


@pytest.mark.parametrize("pipeline", [_dual_pipeline, _primal_pipeline])
@pytest.mark.parametrize("hw", [(5, 6), (6, 5)])
def test_gradients_float64(pipeline, hw):
    rng = np.random.default_rng(7)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(*hw, 2)), jnp.float64)
        z = jnp.asarray(rng.normal(size=(*hw, 2)), jnp.float64)
        y = fourier.gaussian_label(hw, 1.0, dtype=jnp.float64)
        assert pipeline(x, z, y, hw, 0.1).dtype == jnp.float64
        check_grads(lambda a, b: pipeline(a, b, y, hw, 0.1), (x, z), order=2,
                    modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)


def test_loss_gradient_reaches_template_and_search():
    hw = (8, 8)
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.normal(size=(2, *hw, 3)), jnp.float32)
    z = jnp.asarray(rng.normal(size=(2, *hw, 3)), jnp.float32)
    y = fourier.gaussian_label(hw, 1.0)

    def loss(x, z):
        return jnp.mean(dcf.response_loss(_dual_pipeline(x, z, y, hw, 1e-2), y))

    gx, gz = jax.grad(loss, argnums=(0, 1))(x, z)
    gx_jit, _ = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, z)
    np.testing.assert_allclose(gx_jit, gx, rtol=1e-4, atol=1e-6)
    for g in (gx, gz):
        assert g.shape == x.shape and np.all(np.isfinite(g)) and float(jnp.abs(g).max()) > 0


def test_normalisation_needs_the_real_size():
    xf = fourier.rfft2(jnp.ones((6, 7, 2)))
    with pytest.raises(ValueError, match="hw=\\(H, W\\)"):
        dcf.kernel_correlation(xf, xf)
    with pytest.raises(ValueError, match="does not come from"):
        dcf.dual_filter(xf, xf[..., 0], hw=(6, 8))
    # Without normalisation the size is not needed.
    assert dcf.kernel_correlation(xf, xf, normalize=False).shape == (6, 4)


def _parabola_reference(a, b, c):
    """NumPy: vertex of the parabola through (-1, a), (0, b), (1, c), 0 unless concave."""
    curvature = a - 2 * b + c
    return float(np.clip(0.5 * (a - c) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0


def test_grid_peak_offset_matches_parabola_and_clamps_at_edges():
    rng = np.random.default_rng(6)
    grid = rng.normal(size=(7, 9)).astype(np.float32)
    for i, j in [(3, 4), (0, 4), (6, 8), (2, 0)]:
        g = grid.copy()
        g[i, j] = 5.0  # the peak
        dy, dx = dcf.grid_peak_offset(jnp.asarray(g), i, j)
        up, down = g[max(i - 1, 0), j], g[min(i + 1, 6), j]  # beyond an edge: the peak itself
        left, right = g[i, max(j - 1, 0)], g[i, min(j + 1, 8)]
        assert float(dy) == pytest.approx(_parabola_reference(up, 5.0, down), abs=1e-6)
        assert float(dx) == pytest.approx(_parabola_reference(left, 5.0, right), abs=1e-6)
    # On a sampled parabola-like peak the offset is recovered; jit-compatible indices.
    xs = np.arange(9) - 4.3
    g = np.exp(-(xs[None, :] ** 2 + (np.arange(7)[:, None] - 2.8) ** 2) / 8).astype(np.float32)
    i, j = np.unravel_index(g.argmax(), g.shape)
    dy, dx = jax.jit(dcf.grid_peak_offset)(jnp.asarray(g), i, j)
    np.testing.assert_allclose([i + dy, j + dx], [2.8, 4.3], atol=0.05)
